"""The scores of ``facelm evaluate``: one :class:`ModelScore` per model (NME, failure rates, AUC, subsets, pose
bins, per-landmark error), the :class:`EvalReport` that gathers them, and the files written from it (per-face
CSV, CED plot and CSV).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facelm import __version__
from facelm._io import atomic_write
from facelm.errors import DataError, ModelError, UsageError
from facelm.manifest import Manifest
from facelm.metrics import (
    breakdown, ced_curve, metric_key, per_face_nme, per_landmark_error, plot_ced, save_ced_csv, summary
)

if TYPE_CHECKING:
    from facelm.evaluate import EvalSet

__all__ = ["EvalReport", "ModelScore", "plot_report", "report_title", "save_report_ced_csv", "short_labels",
           "write_per_face_csv"]


@dataclass
class ModelScore:
    """One model's result on an :class:`EvalSet`.

    Attributes:
        pred: ``(N, L, 2)`` predictions in original-image pixels (NaN where missing).
        missing: ``(N,)`` True where the model gave no prediction.
        nme: ``(N,)`` per-face NME (``inf`` for missing or non-finite predictions).
        keep: ``(N,)`` faces counted (all, unless ``skip_missing`` dropped the missing ones).
        record: the JSON record (see :meth:`EvalReport.records`).
    """

    label: str
    kind: str
    pred: np.ndarray
    missing: np.ndarray
    nme: np.ndarray
    keep: np.ndarray
    record: dict
    details: dict


@dataclass
class EvalReport:
    eval_set: EvalSet
    scores: list[ModelScore]
    skip_missing: bool = False

    def records(self) -> list[dict]:
        """One JSON-ready dict per model (floats may be NaN/inf; the CLI writes those as null)."""
        return [s.record for s in self.scores]

    def ced(self, n_points: int = 1001) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{label: (thresholds, fraction)}`` on ``[0, protocol.ced_max]`` for each model."""
        t = self.eval_set.protocol.ced_max
        return {_unique_label(self.scores, s): ced_curve(s.nme[s.keep], t, n_points) for s in self.scores}


def _unique_label(scores: list[ModelScore], s: ModelScore) -> str:
    same = [x for x in scores if x.label == s.label]
    # by identity: == on the dataclass compares its numpy arrays (ambiguous truth value)
    k = next(i for i, x in enumerate(same) if x is s)
    return s.label if len(same) == 1 else f"{s.label} #{k + 1}"


def _fields(s: dict) -> dict:
    """A :func:`facelm.metrics.summary` dict with ``mean`` named ``nme``."""
    out = {"n": s["n"], "nme": s["mean"], "median": s["median"], "std": s["std"], "n_nonfinite": s["n_nonfinite"]}
    out.update({k: v for k, v in s.items() if "@" in k})
    return out


def _score(label: str, kind: str, pred: np.ndarray, missing: np.ndarray, details: dict, ev: EvalSet,
           skip_missing: bool) -> ModelScore:
    m = ev.manifest
    mapped = (details.get("scheme_map") or {}).get("mapped")
    pmask = np.broadcast_to(np.array(mapped, bool), pred.shape[:2]) if mapped is not None else None
    nme = per_face_nme(pred, m.landmarks, ev.norm, pmask)
    keep = ~missing if skip_missing else np.ones(len(m), dtype=bool)
    if not keep.any():
        raise DataError(f"{label}: no evaluated face has a prediction (all {len(m)} are missing)")
    nonfinite = int(np.sum(~np.isfinite(nme) & ~missing & keep))
    e = nme[keep]
    s = _fields(summary(e, ev.thresholds))
    ok = keep & np.isfinite(nme)
    if ok.any():
        per_lm = per_landmark_error(pred[ok], m.landmarks[ok], ev.norm[ok], None if pmask is None else pmask[ok])
    else:
        per_lm = np.full(m.landmarks.shape[1], np.nan)
    tags = [m.samples[i].subset for i in np.flatnonzero(keep)]
    wanted = ev.protocol.subsets  # None: every tag, in order of first appearance
    if wanted is not None:
        tags = [[t for t in ts if t in wanted] for ts in tags]
    got = breakdown(e, tags, ev.thresholds)
    subsets = {t: _fields(got[t]) for t in (got if wanted is None else wanted) if t in got}
    rec = {
        "model": label, "kind": kind, "protocol": ev.protocol.name, "normaliser": ev.normaliser,
        "normaliser_definition": ev.normaliser_definition, "scheme": ev.scheme, "split": ev.split,
        "selection": ev.selection, "boxes": "ground-truth", "data": str(ev.data),
        "n": s["n"], "n_failed_nonfinite": nonfinite, "missing": int(missing.sum()),
        "skip_missing": skip_missing, "nme": s["nme"], "median": s["median"], "std": s["std"],
    }
    for t in ev.thresholds:
        rec[metric_key("fr", t)] = s[metric_key("fr", t)]
        rec[metric_key("auc", t)] = s[metric_key("auc", t)]
    rec.update({"thresholds": list(ev.thresholds), "ced_max": ev.protocol.ced_max, "subsets": subsets,
                "per_landmark": per_lm.tolist(), "details": details, "facelm_version": __version__})
    if ev.pose_bins is not None:
        rec["pose_model"] = ev.pose_model_path
        rec["pose_bins"] = _pose_breakdown(e, ev.pose_bins[keep], ev.pose_model, ev.thresholds)
    return ModelScore(label, kind, pred, missing, nme, keep, rec, details)


def _pose_bins(path: str | Path, sel: Manifest) -> tuple[object, np.ndarray]:
    """Load a pose model (``facelm balance``) and bin the selected faces by their ground-truth landmarks.

    Raises:
        ModelError: unreadable pose model, or one fitted on another scheme.
    """
    from facelm.pose import assign_bins, load_pose_model

    pm = load_pose_model(path)
    if pm.scheme != sel.scheme or pm.num_landmarks != sel.landmarks.shape[1]:
        raise ModelError(f"{path}: the pose model is for scheme {pm.scheme!r} ({pm.num_landmarks} points), the "
                         f"data is {sel.scheme!r} ({sel.landmarks.shape[1]} points)")
    return pm, assign_bins(pm, sel.landmarks)


def _pose_breakdown(nme: np.ndarray, bins: np.ndarray, pm, thresholds: Sequence[float]) -> dict[str, dict]:
    """``{pose-bin-NN: fields + range}`` for the non-empty bins in bin order (``pose-bin-none`` last)."""
    from facelm.pose import bin_tag

    got = breakdown(nme, [bin_tag(int(b)) for b in bins], thresholds)
    edges = pm.bin_edges
    out = {}
    for b in sorted({int(v) for v in bins}, key=lambda v: (v < 0, v)):
        f = _fields(got[bin_tag(b)])
        f["bin"] = b
        f["range"] = [edges[b], edges[b + 1]] if b >= 0 else None
        out[bin_tag(b)] = f
    return out


# -- files ---------------------------------------------------------------------------------------------------

def write_per_face_csv(path: str | Path, report: EvalReport) -> Path:
    """Write ``model,id,image,subset,nme,status`` (one row per face per model), atomically.

    ``subset`` is the face's tags joined by ``;``; ``nme`` is ``inf`` for a failed face; ``status`` is ``ok``,
    ``nonfinite`` (NaN/inf predicted coordinates), ``missing`` (no prediction) or ``skipped`` (missing and left
    out by ``skip_missing``).
    """
    path = Path(path)
    m = report.eval_set.manifest
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "id", "image", "subset", "nme", "status"])
        for s in report.scores:
            for i, smp in enumerate(m.samples):
                status = ("skipped" if not s.keep[i] else "missing" if s.missing[i]
                          else "ok" if np.isfinite(s.nme[i]) else "nonfinite")
                w.writerow([s.label, smp.id, smp.image, ";".join(smp.subset), repr(float(s.nme[i])), status])
    return path


def short_labels(labels: list[str]) -> list[str]:
    """Short model labels for tables and legends: the last two path components (run folder + file), more when
    needed to tell the models apart."""

    def cut(label: str, k: int) -> str:
        return "+".join("/".join(Path(p).parts[-k:]) for p in label.split("+"))

    for k in range(2, 64):
        short = [cut(lb, k) for lb in labels]
        if len(set(short)) == len(set(labels)):
            return short
    return labels


def report_title(report: EvalReport) -> str:
    ev = report.eval_set
    sel = f", {ev.selection}" if ev.selection else ""
    return f"CED: {ev.protocol.name} ({ev.split}{sel}, n={len(ev.manifest)}), normaliser {ev.normaliser}"


def plot_report(path: str | Path, report: EvalReport) -> Path:
    """Draw the CED curves of all models on one figure titled with the protocol and normaliser."""
    curves = {}
    ced = report.ced()
    for label, (_, curve), s in zip(short_labels(list(ced)), ced.items(), report.scores):
        mean = s.record["nme"]
        curves[f"{label} (NME {mean:.4f})" if np.isfinite(mean) else label] = curve
    try:
        return plot_ced(path, curves, title=report_title(report), xlabel=f"NME ({report.eval_set.normaliser})")
    except ValueError as e:
        raise UsageError(f"`plot`: {e}") from None


def save_report_ced_csv(path: str | Path, report: EvalReport) -> Path:
    """Write the CED curves (``threshold,<model>,...``) as CSV."""
    return save_ced_csv(path, report.ced())
