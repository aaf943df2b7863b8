"""Evaluation metrics: NME, normalisers, failure rate, CED curve and its AUC. Pure numpy (docs/protocols.md).

Shapes: ``N`` faces, ``L`` landmarks. Landmarks are ``(N, L, 2)`` float ``(x, y)`` pixels (any frame, as long as
prediction, ground truth and normaliser share it). Boxes are ``(N, 4)`` ``[x1, y1, x2, y2]``.

Definitions used throughout (so every number can be traced):

* **NME of one face** ``e = (1/|V|) * sum_{j in V} ||p_j - g_j||_2 / d``, where ``V`` is the set of *usable*
  landmarks (mask True and finite ground truth) and ``d`` the face's normaliser. A non-finite prediction on a
  usable landmark makes ``e = inf``: the face counts as a failure at every threshold.
* **CED** (cumulative error distribution) is the empirical CDF of the per-face NMEs over *all* ``n`` faces,
  ``F(x) = #{i : e_i <= x} / n``: a right-continuous step function. Non-finite NMEs never enter it, so
  ``F`` tops out at ``1 - n_nonfinite / n``.
* **FR@t** ``= #{i : e_i > t} / n = 1 - F(t)`` (a face with ``e == t`` is not a failure; NaN counts as one).
* **AUC@t** ``= (1/t) * integral_0^t F(x) dx``, integrated *exactly*: since ``F`` is a sum of steps,
  ``AUC@t = (1/n) * sum_i max(t - e_i, 0) / t``. A perfect model (all ``e = 0``) scores 1.0, a model with every
  ``e >= t`` scores 0.0. Implementations that integrate a sampled CED with the trapezoid rule on a grid of step
  ``h`` (e.g. HRNet's 1e-4 grid) differ from this by at most ``h / (2 t)``.

Example:
    >>> import numpy as np
    >>> gt = np.zeros((1, 2, 2)); pred = gt + [3.0, 4.0]
    >>> per_face_nme(pred, gt, np.array([50.0]))
    array([0.1])
    >>> s = summary(np.array([0.0, 0.05, 0.2]), thresholds=(0.1,))
    >>> s[metric_key("fr", 0.1)], s[metric_key("auc", 0.1)]
    (0.3333333333333333, 0.5)
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from facelm._io import atomic_path, atomic_write
from facelm.schemes import LandmarkScheme, get_scheme

__all__ = [
    "NORMALISERS", "SCHEME_NORMALISERS", "BOX_NORMALISERS",
    "per_face_nme", "per_landmark_error", "normaliser", "metric_key", "summary", "ced_curve", "auc",
    "failure_rate", "breakdown", "save_ced_csv", "plot_ced",
]

SCHEME_NORMALISERS = ("inter-ocular", "inter-pupil")
BOX_NORMALISERS = ("box-width", "box-height", "box-max-side", "box-diagonal", "box-sqrt-area")
NORMALISERS = SCHEME_NORMALISERS + BOX_NORMALISERS

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _list_indices(idx: np.ndarray, limit: int = 10) -> str:
    idx = [int(i) for i in np.asarray(idx).ravel()]
    shown = ", ".join(map(str, idx[:limit]))
    return shown + (f", ... ({len(idx) - limit} more)" if len(idx) > limit else "")


def _check_inputs(pred, gt, norm, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    norm = np.asarray(norm, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[-1] != 2:
        raise ValueError(f"ground truth must have shape (N, L, 2), got {gt.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}")
    n, n_lm = gt.shape[:2]
    if norm.shape != (n,):
        raise ValueError(f"normaliser must have shape ({n},), got {norm.shape}")
    bad = np.flatnonzero(~np.isfinite(norm) | (norm <= 0))
    if bad.size:
        raise ValueError(f"normaliser is zero, negative or not finite for face(s) {_list_indices(bad)}")
    if mask is None:
        mask = np.ones((n, n_lm), dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (n, n_lm):
            raise ValueError(f"mask must have shape ({n}, {n_lm}), got {mask.shape}")
        mask = mask.astype(bool)
    usable = mask & np.isfinite(gt).all(axis=-1)
    return pred, gt, norm, usable


def _normalised_errors(pred, gt, norm, mask) -> tuple[np.ndarray, np.ndarray]:
    """Errors ``(N, L)`` divided by the normaliser (inf where the prediction is not finite) and the usable
    mask ``(N, L)``; unusable entries hold 0."""
    pred, gt, norm, usable = _check_inputs(pred, gt, norm, mask)
    with np.errstate(invalid="ignore", over="ignore"):  # 1e308 coordinates: an inf error
        err = np.linalg.norm(pred - gt, axis=-1) / norm[:, None]
    err[usable & ~np.isfinite(pred).all(axis=-1)] = np.inf
    err[~usable] = 0.0
    return err, usable


def per_face_nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised mean error of each face.

    Args:
        pred: predicted landmarks ``(N, L, 2)``.
        gt: ground-truth landmarks ``(N, L, 2)``; a landmark with a NaN coordinate is left out of its face's mean.
        norm: normalising distance of each face ``(N,)`` (see :func:`normaliser`), same units as the landmarks.
        mask: optional ``(N, L)`` bool; landmarks with False are left out of the mean (e.g. occluded points).

    Returns:
        ``(N,)`` float64: mean over usable landmarks of ``||pred - gt||_2 / norm``. ``inf`` for a face with a
        non-finite prediction on a usable landmark (a failed prediction: it counts as a failure in
        :func:`summary`, which reports how many there were in ``n_nonfinite``).

    Raises:
        ValueError: on mismatched shapes, a zero, negative or non-finite normaliser, or a face with no usable
            landmark (its error is undefined); the message names the offending face indices.
    """
    err, usable = _normalised_errors(pred, gt, norm, mask)
    count = usable.sum(axis=1)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        raise ValueError(f"no usable ground-truth landmark (all masked or NaN) for face(s) {_list_indices(empty)}")
    return err.sum(axis=1) / count


def per_landmark_error(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """Mean normalised error of each landmark over the faces.

    Args:
        pred: predicted landmarks ``(N, L, 2)``.
        gt: ground-truth landmarks ``(N, L, 2)`` (NaN = not annotated, left out).
        norm: normaliser of each face ``(N,)``.
        mask: optional ``(N, L)`` bool; False entries are left out.

    Returns:
        ``(L,)`` float64: for landmark j, the mean over faces where it is usable of ``||pred - gt|| / norm``.
        ``inf`` if any usable prediction of that landmark is non-finite (drop failed faces first if that is
        not wanted); NaN for a landmark usable in no face.
    """
    err, usable = _normalised_errors(pred, gt, norm, mask)
    count = usable.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = err.sum(axis=0) / count
    out[count == 0] = np.nan
    return out


def normaliser(gt: np.ndarray, kind: str, *, scheme: str | LandmarkScheme | None = None,
               boxes: np.ndarray | None = None) -> np.ndarray:
    """Normalising distance of each face.

    Args:
        gt: ground-truth landmarks ``(N, L, 2)`` (used by the scheme normalisers; may be None for box ones).
        kind: one of :data:`NORMALISERS`:
            ``inter-ocular`` / ``inter-pupil``: distance between the means of the scheme's two normaliser
            groups (outer eye corners / eye centres; see :mod:`facelm.schemes`).
            ``box-width`` ``x2 - x1``; ``box-height`` ``y2 - y1``; ``box-max-side`` ``max(w, h)`` (mmpose's
            AFLW ``bbox_size``); ``box-diagonal`` ``sqrt(w^2 + h^2)``; ``box-sqrt-area`` ``sqrt(w * h)``.
        scheme: the landmark scheme (name or object); required for the scheme normalisers.
        boxes: ``(N, 4)`` ``[x1, y1, x2, y2]`` boxes in the landmarks' frame; required for the box normalisers.

    Returns:
        ``(N,)`` float64 distances, not checked here (:func:`per_face_nme` rejects zero or non-finite ones).

    Raises:
        ValueError: unknown ``kind`` (the message lists the valid ones), or a missing/mis-shaped input.
    """
    if kind in SCHEME_NORMALISERS:
        if scheme is None:
            raise ValueError(f"normaliser {kind!r} needs the landmark scheme")
        sch = get_scheme(scheme)
        lm = np.asarray(gt, dtype=np.float64)
        if lm.ndim != 3 or lm.shape[1:] != (sch.num_landmarks, 2):
            raise ValueError(f"scheme {sch.name} needs landmarks of shape (N, {sch.num_landmarks}, 2), "
                             f"got {lm.shape}")
        return sch.normaliser_distance(lm, kind)
    if kind in BOX_NORMALISERS:
        if boxes is None:
            raise ValueError(f"normaliser {kind!r} needs the face boxes")
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4) [x1, y1, x2, y2], got {b.shape}")
        if gt is not None and len(b) != len(gt):
            raise ValueError(f"{len(b)} boxes for {len(gt)} faces")
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        with np.errstate(invalid="ignore"):
            return {
                "box-width": lambda: w,
                "box-height": lambda: h,
                "box-max-side": lambda: np.maximum(w, h),
                "box-diagonal": lambda: np.hypot(w, h),
                "box-sqrt-area": lambda: np.sqrt(w * h),
            }[kind]()
    raise ValueError(f"unknown normaliser {kind!r}; valid: {', '.join(NORMALISERS)}")


def metric_key(name: str, t: float) -> str:
    """Key of a thresholded metric, e.g. ``metric_key("fr", 0.10) == "fr@0.1"``, ``"auc@0.08"``."""
    return f"{name}@{float(t):g}"


def _check_nme(nme) -> np.ndarray:
    e = np.asarray(nme, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"NME must have shape (N,), got {e.shape}")
    if e.size == 0:
        raise ValueError("no faces to summarise (empty NME array)")
    if np.any(e < 0):
        raise ValueError(f"negative NME for face(s) {_list_indices(np.flatnonzero(e < 0))}")
    return e


def _check_threshold(t: float) -> float:
    t = float(t)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"threshold must be a positive finite number, got {t}")
    return t


def failure_rate(nme: np.ndarray, t: float) -> float:
    """FR@t: fraction of faces with NME ``> t`` (``(N,)`` -> float); non-finite NMEs are failures."""
    e, t = _check_nme(nme), _check_threshold(t)
    return float(np.mean(~(e <= t)))


def auc(nme: np.ndarray, t: float) -> float:
    """AUC@t: exact area under the CED step function on ``[0, t]``, divided by ``t`` (``(N,)`` -> float).

    Equals ``mean(max(t - e, 0)) / t``; non-finite NMEs contribute 0. See the module docstring.
    """
    e, t = _check_nme(nme), _check_threshold(t)
    reached = e <= t  # False for NaN and inf
    contrib = np.zeros_like(e)
    contrib[reached] = (t - e[reached]) / t
    return float(contrib.mean())


def ced_curve(nme: np.ndarray, t_max: float, n_points: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """The CED sampled on ``n_points`` evenly spaced thresholds in ``[0, t_max]``.

    Args:
        nme: per-face NMEs ``(N,)``; non-finite ones count in ``N`` but are never reached.
        t_max: last threshold (> 0).
        n_points: number of samples (>= 2).

    Returns:
        ``(thresholds, fraction)``, both ``(n_points,)``: ``fraction[k] = #{e <= thresholds[k]} / N``, exact at
        each sample and non-decreasing. ``np.trapz(fraction, thresholds) / t_max`` approximates
        :func:`auc` ``(nme, t_max)`` to within ``1 / (2 (n_points - 1))``; use :func:`auc` for reported numbers.
    """
    e, t_max = _check_nme(nme), _check_threshold(t_max)
    if int(n_points) < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    thresholds = np.linspace(0.0, t_max, int(n_points))
    finite = np.sort(e[np.isfinite(e)])
    fraction = np.searchsorted(finite, thresholds, side="right") / e.size
    return thresholds, fraction


def summary(nme: np.ndarray, thresholds: Sequence[float] = (0.08, 0.10), ced_max: float | None = None) -> dict:
    """Summary statistics of per-face NMEs.

    Args:
        nme: per-face NMEs ``(N,)`` (from :func:`per_face_nme`; ``inf``/NaN mark failed predictions).
        thresholds: the ``t`` of the ``fr@t`` and ``auc@t`` entries.
        ced_max: if given, also return the CED curve sampled on ``[0, ced_max]`` (1001 points) under ``"ced"``.

    Returns:
        A JSON-serialisable dict: ``n`` (all faces), ``n_nonfinite`` (failed predictions), ``mean``,
        ``median``, ``std`` (population, ddof=0) over the *finite* NMEs (NaN if there are none), and for each
        threshold ``fr@t`` and ``auc@t`` over *all* faces (a non-finite NME is a failure and adds nothing to the
        AUC), defined exactly as in the module docstring. With ``ced_max``: ``"ced": {"threshold": [...],
        "fraction": [...]}``.
    """
    e = _check_nme(nme)
    finite = e[np.isfinite(e)]
    has = finite.size > 0
    out: dict = {
        "n": int(e.size),
        "mean": float(finite.mean()) if has else float("nan"),
        "median": float(np.median(finite)) if has else float("nan"),
        "std": float(finite.std()) if has else float("nan"),
        "n_nonfinite": int(e.size - finite.size),
    }
    for t in thresholds:
        out[metric_key("fr", t)] = failure_rate(e, t)
        out[metric_key("auc", t)] = auc(e, t)
    if ced_max is not None:
        thr, frac = ced_curve(e, ced_max)
        out["ced"] = {"threshold": thr.tolist(), "fraction": frac.tolist()}
    return out


def breakdown(nme: np.ndarray, tags: Sequence[Sequence[str]] | Sequence[str],
              thresholds: Sequence[float] = (0.08, 0.10)) -> dict[str, dict]:
    """:func:`summary` of each tagged subset (e.g. WFLW's pose/expression/... or 300W common/challenging).

    Args:
        nme: per-face NMEs ``(N,)``.
        tags: ``N`` entries, each a single tag (str) or a list of tags (a face may be in several subsets, or none).
        thresholds: passed to :func:`summary`.

    Returns:
        ``{tag: summary}`` in order of first appearance of each tag.
    """
    e = np.asarray(nme, dtype=np.float64)
    if e.ndim != 1 or len(tags) != e.size:
        raise ValueError(f"{len(tags)} tag entries for NME of shape {e.shape}")
    members: dict[str, list[int]] = {}
    for i, entry in enumerate(tags):
        for tag in ([entry] if isinstance(entry, str) else entry):
            idx = members.setdefault(str(tag), [])
            if not idx or idx[-1] != i:
                idx.append(i)
    return {tag: summary(e[idx], thresholds) for tag, idx in members.items()}


def _check_curves(curves: Curves) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    if not curves:
        raise ValueError("no CED curves given")
    labels, fracs, t0 = [], [], None
    for label, (t, f) in curves.items():
        t, f = np.asarray(t, dtype=np.float64), np.asarray(f, dtype=np.float64)
        if t.ndim != 1 or t.shape != f.shape:
            raise ValueError(f"curve {label!r}: thresholds {t.shape} and fractions {f.shape} must be equal 1-D")
        if t0 is None:
            t0 = t
        elif t.shape != t0.shape or not np.allclose(t, t0, rtol=1e-9, atol=0.0):
            raise ValueError(f"curve {label!r} is sampled on different thresholds from the first curve")
        labels.append(str(label))
        fracs.append(f)
    return t0, labels, fracs


def save_ced_csv(path: str | Path, curves: Curves) -> Path:
    """Write CED curves as CSV ``threshold,<label1>,<label2>,...`` (one row per threshold), atomically.

    Args:
        path: output file; its folder is created if needed.
        curves: ``{label: (thresholds, fraction)}``, each ``(K,)``, all on the same thresholds (as
            :func:`ced_curve` gives for the same ``t_max`` and ``n_points``).

    Returns:
        The path written.
    """
    t, labels, fracs = _check_curves(curves)
    path = Path(path)
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["threshold", *labels])
        for k in range(t.size):
            w.writerow([f"{t[k]:.10g}", *(f"{f[k]:.10g}" for f in fracs)])
    return path


def plot_ced(path: str | Path, curves: Curves, title: str = "Cumulative error distribution",
             xlabel: str = "NME") -> Path:
    """Plot CED curves to an image file (format from the extension: .png, .pdf, .svg, ...), atomically.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change). The figure is saved to a
    temporary file with the same extension in the target folder, then renamed over ``path``.

    Args:
        path: output image path.
        curves: ``{label: (thresholds, fraction)}`` as from :func:`ced_curve`; the label goes in the legend.
        title: figure title (say which normaliser and test set).
        xlabel: x-axis label, e.g. ``"NME (inter-ocular)"``.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("no CED curves given")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise ValueError(f"cannot write a plot to {path.name!r}: use one of "
                         f"{', '.join('.' + k for k in sorted(canvas.get_supported_filetypes()))}")
    ax = fig.add_subplot(1, 1, 1)
    t_max = 0.0
    for label, (t, f) in curves.items():
        t, f = np.asarray(t, dtype=np.float64), np.asarray(f, dtype=np.float64)
        ax.plot(t, f, label=str(label), drawstyle="steps-post", linewidth=1.5)
        if t.size:
            t_max = max(t_max, float(t.max()))
    ax.set_xlim(0.0, t_max if t_max > 0 else None)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Fraction of faces")
    ax.set_title(title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower right")
    fig.tight_layout()

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)
    return path
