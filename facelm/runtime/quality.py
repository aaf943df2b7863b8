"""Per-face extras of the prediction pipeline: the quality score and the head pose.

**Quality** (``FaceResult.quality``, 0..1): how far the landmarks can be trusted, from two signals the pipeline
has anyway (docs/predict.md, "Quality"):

* ``mirror``: the mean distance between stage 1's landmarks on the final (levelled) crop and on its mirror image,
  mirrored back, in crop sides. Flip TTA computes both passes; with ``--tta none`` the mirror pass runs for this
  alone. A face the network recognises gives the same points both ways; a face it does not (upside down, not a
  face, half outside the crop) gives two different guesses.
* ``level``: the mean distance between the last two levelled stage-1 passes, in inter-ocular distances (NaN with
  ``--no-level``). A face whose shape keeps moving when the crop is re-levelled by it has not converged.

The score is a logistic function of their logarithms, fitted on held-out faces (:data:`CALIBRATION`): an estimate
of the probability that the face's inter-ocular NME is at most 10%. Without levelling (``--no-level``) it is the
fit on ``mirror`` alone (``CALIBRATION["no_level"]``; fitted on levelled crops, so only approximate there).
"""

from __future__ import annotations

import math

import numpy as np

from facelm.headpose import head_pose

__all__ = ["CALIBRATION", "add_head_poses", "quality_score", "quality_signals"]

#: logistic fit of P(NME <= 10%) on log(mirror) and log(level) (``scripts/quality_calibrate.py``, docs/predict.md)
CALIBRATION = {"intercept": -16.890, "mirror": -4.3338, "level": -0.6984,
               "no_level": {"intercept": -20.498, "mirror": -5.6757}}
_FLOOR = 1e-4  # signals below this are as good as perfect (log of 0)


def quality_signals(mirror: np.ndarray, level: np.ndarray) -> list[dict]:
    """Per-face raw signals: ``mirror`` (crop sides), ``level`` (inter-ocular units; NaN without levelling)."""
    return [{"mirror": float(m), "level": float(e)} for m, e in zip(mirror, level)]


def quality_score(signals: dict, calibration: dict | None = None) -> float:
    """The 0..1 quality of one face from its :func:`quality_signals` (module docstring)."""
    c = calibration or CALIBRATION
    m, e = signals.get("mirror", math.nan), signals.get("level", math.nan)
    if not math.isfinite(m):
        return 0.0
    if math.isfinite(e):
        z = c["intercept"] + c["mirror"] * math.log(max(m, _FLOOR)) + c["level"] * math.log(max(e, _FLOOR))
    else:
        z = c["no_level"]["intercept"] + c["no_level"]["mirror"] * math.log(max(m, _FLOOR))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def add_head_poses(result, scheme) -> None:
    """Set ``pose`` on each face of ``result`` (an ``ImageResult``) when the scheme is the 68-point 300-W one."""
    if scheme.name != "300w68" or scheme.num_landmarks != 68 or not result.width:
        return
    for f in result.faces:
        f.pose = head_pose(f.landmarks, result.width, result.height)
