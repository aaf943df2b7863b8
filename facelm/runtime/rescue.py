"""The second reading of doubtful faces, in step 2b of the prediction pipeline (``facelm.runtime.pipeline``;
docs/predict.md): a face whose levelled stage-1 reading has a low quality score is read again from other starting
crops.

Levelling starts from one crop: the face square, turned by the angle the orientation search found. When that crop
is badly framed (a detector box around a small or half-hidden face, a profile, an infant's large head) or turned
the wrong way, stage 1 reads something that is not the face and levelling by that reading cannot recover: the
result has a quality (``facelm.runtime.quality``) near 0. Here such a face starts again from
``len(RESCUE_SCALES) x len(RESCUE_TURNS)`` crops - the face square scaled, and turned in 30-degree steps from the
angle of the doubtful reading - each read by stage 1 and levelled once (trial readings, without flip averaging),
and the trial with the highest quality, if it beats the first reading by ``RESCUE_MARGIN``, is levelled once more
as usual and kept if its quality is still higher. A trial whose shape lies off the face square (centre more than
``RESCUE_MAX_SHIFT`` sides away) does not count: an enlarged crop at the edge of a face can take in a neighbouring
face, whose reading belongs to another box. Faces that are read well (almost all) cost nothing.

The quality of a reading chosen this way is the best of many tries. Measured on 66 replaced readings of
held-out faces (docs/predict.md, step 2b) it stayed usable as a probability (quality 0.8 and above: 34 of 35
right; below 0.2: 0 of 14; 0.2-0.5: 5 of 9), less so on infants. A reading below 0.5 is more likely wrong than
right, so that is where the second reading starts.
"""

from __future__ import annotations

import numpy as np

from facelm.geometry import point_boxes
from facelm.runtime.quality import quality_score, quality_signals

__all__ = ["RESCUE_MARGIN", "RESCUE_MAX_SHIFT", "RESCUE_QUALITY", "RESCUE_SCALES", "RESCUE_TURNS", "off_square",
           "pick_rescued", "qualities", "rescue_frames"]

#: a face whose quality after levelling is below this is read again: the quality estimates P(NME <= 10%), so below
#: 0.5 the reading is more likely wrong than right (0.2 until 2026-12-02: readings from badly framed given boxes
#: that were wrong with a quality of 0.2-0.5 kept them; docs/predict.md, step 2b)
RESCUE_QUALITY = 0.5
#: the face square's side is multiplied by each of these ...
RESCUE_SCALES = (0.8, 1.0, 1.25)
#: ... and turned by each of these (degrees, added to the doubtful reading's eye-line angle)
RESCUE_TURNS = tuple(float(a) for a in range(0, 360, 30))
#: a new reading replaces the first only when its quality is higher by at least this
RESCUE_MARGIN = 0.1
#: a trial whose shape's centre (of its bounding box) is further than this many face-square sides from the square's
#: centre is another face's reading, not this one's (the readings this search got right lay within 0.4)
RESCUE_MAX_SHIFT = 0.5


def qualities(spread: np.ndarray, err: np.ndarray) -> np.ndarray:
    """The quality score of each face from its mirror spread and levelling disagreement (``quality_signals``)."""
    return np.array([quality_score(s) for s in quality_signals(spread, err)], dtype=np.float64)


def rescue_frames(squares: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Starting frames ``(H * n, 4)`` (cx, cy, side, angle) for ``n`` faces with face squares ``(n, 3)`` and
    current angles ``(n,)``: one block of ``n`` per (scale, turn) hypothesis, hypotheses in the order of
    ``RESCUE_SCALES`` x ``RESCUE_TURNS``, faces in their order within each block."""
    sq = np.asarray(squares, dtype=np.float64).reshape(-1, 3)
    ang = np.asarray(angles, dtype=np.float64).reshape(-1)
    out = [np.column_stack([sq[:, :2], sq[:, 2] * s, (ang + t + 180.0) % 360.0 - 180.0])
           for s in RESCUE_SCALES for t in RESCUE_TURNS]
    return np.concatenate(out)


def off_square(shapes: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """True for each shape ``(N, L, 2)`` whose bounding-box centre lies more than ``RESCUE_MAX_SHIFT`` sides from
    the centre of its face square ``(N, 3)`` (cx, cy, side)."""
    box = point_boxes(shapes)  # NaN for a shape with no finite point: off its square
    sq = np.asarray(squares, dtype=np.float64).reshape(-1, 3)
    centre = (box[:, :2] + box[:, 2:]) / 2
    return ~(np.linalg.norm(centre - sq[:, :2], axis=1) <= RESCUE_MAX_SHIFT * sq[:, 2])


def pick_rescued(first: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For ``n`` faces with quality ``first`` ``(n,)`` and the qualities ``(H, n)`` of their ``H`` new readings:
    the index of the reading that replaces each face's first one, or -1 where none beats it by ``RESCUE_MARGIN``
    (the highest quality wins; ties: the earliest hypothesis)."""
    c = np.asarray(candidates, dtype=np.float64)
    best = np.argmax(np.where(np.isfinite(c), c, -np.inf), axis=0)
    top = c[best, np.arange(c.shape[1])]
    return np.where(top >= np.asarray(first, dtype=np.float64) + RESCUE_MARGIN, best, -1)
