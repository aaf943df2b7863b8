"""The pose model of pose-based data balancing (``facelm balance``, docs/balance.md): faces aligned by
Procrustes, a signed pose coordinate from the leading shape components (the one that best correlates with a
yaw proxy), robust limits and equal-width pose bins. Evaluation breaks scores down by these bins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from facelm import __version__
from facelm._io import atomic_write_json
from facelm.errors import DataError, ModelError, UsageError
from facelm.geometry import align_shapes, generalized_procrustes
from facelm.schemes import LandmarkScheme, get_scheme

__all__ = ["DEFAULT_BINS", "DEFAULT_BINS_OTHER", "DIRECTION", "MIN_ASYMMETRY_CORR", "N_CANDIDATES",
           "POSE_MODEL_NAME", "ROBUST_LIMITS", "PoseModel", "align_to_mean", "assign_bins", "bin_tag",
           "canonical_procrustes", "coordinate_bins", "default_bins", "fit_pose_model", "histogram",
           "load_pose_model", "min_asymmetry_corr", "pose_coordinate", "save_pose_model", "spearman",
           "yaw_proxy"]

DEFAULT_BINS = {"aflw19": 17, "300w68": 9}
DEFAULT_BINS_OTHER = 9
MIN_ASYMMETRY_CORR = 0.3
N_CANDIDATES = 5
ROBUST_LIMITS = (0.5, 99.5)
POSE_MODEL_NAME = "pose_model.json"
DIRECTION = ("positive = face turned toward the image right (nose tip right of the face centre in the image; "
             "the subject looks toward their own left)")

Warn = Callable[[str], None]


def _noop(msg: str) -> None:
    pass


def default_bins(scheme: str) -> int:
    """K: 17 for ``aflw19``, 9 for ``300w68`` (the paper's values), :data:`DEFAULT_BINS_OTHER` otherwise."""
    return DEFAULT_BINS.get(scheme, DEFAULT_BINS_OTHER)


def bin_tag(b: int) -> str:
    """The tag of pose bin ``b`` in evaluation breakdowns: ``pose-bin-03``; ``pose-bin-none`` for ``b < 0``."""
    return f"pose-bin-{b:02d}" if b >= 0 else "pose-bin-none"


# -- the fitted model ---------------------------------------------------------------------------------------------

class PoseModel(BaseModel):
    """A fitted pose model (``pose_model.json``): everything needed to put any face of the scheme in a bin.

    Attributes:
        scheme, num_landmarks: the landmark scheme it was fitted on.
        mean_shape: ``(L, 2)`` canonical mean shape (centred, unit RMS size, eye line horizontal).
        component: ``(L, 2)`` unit eigenvector as PCA returned it (before ``sign``).
        component_index: which principal component (0-based, by decreasing variance) was chosen.
        sign: +1 or -1; the pose coordinate is ``sign * <aligned - mean, component>``.
        explained_variance: fraction of the aligned shapes' variance along the chosen component.
        asymmetry_corr: Spearman correlation of the signed pose coordinate with :func:`yaw_proxy` on the
            training faces (positive by construction, unless the component was forced).
        candidates: per candidate component: index, explained variance fraction, signed correlation.
        bins: K. bin_edges: K + 1 increasing edges; the end bins also take everything beyond them.
        limits_percentiles: the percentiles of the training coordinates the edges span.
        train_faces: faces the model was fitted on.
        direction: what a positive coordinate means.
    """

    model_config = ConfigDict(extra="forbid")
    format_version: int = 1
    kind: Literal["facelm-pose-model"] = "facelm-pose-model"
    scheme: str
    num_landmarks: int
    mean_shape: list[list[float]]
    component: list[list[float]]
    component_index: int
    component_forced: bool = False
    sign: int
    explained_variance: float
    asymmetry_corr: float
    candidates: list[dict]
    bins: int
    bin_edges: list[float]
    limits_percentiles: list[float]
    train_faces: int
    direction: str = DIRECTION
    source: str = ""
    facelm_version: str = __version__

    @property
    def edges(self) -> np.ndarray:
        return np.asarray(self.bin_edges, dtype=np.float64)


def save_pose_model(path: str | Path, model: PoseModel) -> Path:
    atomic_write_json(path, model.model_dump())
    return Path(path)


def load_pose_model(path: str | Path) -> PoseModel:
    """Read a ``pose_model.json``; a folder written by ``facelm balance`` is accepted too.

    Raises:
        ModelError: missing, unreadable or invalid file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / POSE_MODEL_NAME
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"{p}: cannot read the pose model ({e.strerror or e}); it is the pose_model.json that "
                         "`facelm balance` writes") from None
    try:
        model = PoseModel.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ModelError(f"{p}: not a facelm pose model ({loc + ': ' if loc else ''}{first['msg']})") from None
    if model.format_version != 1:
        raise ModelError(f"{p}: pose model format_version {model.format_version}; this facelm reads version 1")
    L = model.num_landmarks
    if (np.shape(model.mean_shape) != (L, 2) or np.shape(model.component) != (L, 2)
            or len(model.bin_edges) != model.bins + 1 or model.bins < 1
            or not np.all(np.diff(model.bin_edges) > 0) or model.sign not in (-1, 1)):
        raise ModelError(f"{p}: inconsistent pose model (shapes, bin edges or sign)")
    # every face would fall into one bin (a zero component) or none (NaN): a damaged file, not a pose model
    if not (np.isfinite(model.mean_shape).all() and np.isfinite(model.component).all()
            and np.isfinite(model.bin_edges).all()):
        raise ModelError(f"{p}: pose model holds NaN or infinite numbers")
    if not np.isclose(np.linalg.norm(model.component), 1.0, atol=1e-3):
        raise ModelError(f"{p}: pose model component is not a unit vector (norm "
                         f"{np.linalg.norm(model.component):.3g})")
    return model


# -- alignment ----------------------------------------------------------------------------------------------------

def canonical_procrustes(shapes: np.ndarray, scheme: str | LandmarkScheme, iters: int = 50, tol: float = 1e-10
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis with a canonical frame: ``(aligned (N, L, 2), mean (L, 2))``.

    :func:`facelm.geometry.generalized_procrustes` (shapes must be complete and non-degenerate), after which the
    mean shape is rotated so that the scheme's eye line (image-left eye -> image-right eye) points along +x; every
    shape is then aligned to that mean. A set that is already aligned this way is returned unchanged (up to
    rounding).
    """
    sch = get_scheme(scheme)
    try:
        _, mean = generalized_procrustes(shapes, iters=iters, tol=tol)
    except ValueError as e:
        raise DataError(str(e)) from None
    a, b = sch.eye_centres(mean)
    ang = np.arctan2(b[1] - a[1], b[0] - a[0])
    c, s_ = np.cos(-ang), np.sin(-ang)
    mean = mean @ np.array([[c, s_], [-s_, c]])  # rotate the eye line onto +x (centred, unit size kept)
    return align_shapes(shapes, mean), mean


def align_to_mean(landmarks: np.ndarray, mean_shape: np.ndarray) -> np.ndarray:
    """Similarity-align faces ``(N, L, 2)`` to ``mean_shape`` ``(L, 2)``; NaN points stay NaN, degenerate faces
    (fewer than 2 distinct annotated points) come back all NaN."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    return align_shapes(lm, mean_shape)


def _self_symmetric(sch: LandmarkScheme) -> tuple[list[int], list[int]]:
    mid = [i for i, j in enumerate(sch.flip_perm) if i == j]
    paired = [i for i, j in enumerate(sch.flip_perm) if i != j]
    return mid, paired


def yaw_proxy(aligned: np.ndarray, scheme: str | LandmarkScheme) -> np.ndarray:
    """Signed left/right asymmetry ``(N,)`` of aligned shapes ``(N, L, 2)`` (canonical frame, unit size).

    ``mean x of the self-symmetric landmarks - mean x of the paired landmarks`` (NaN points ignored): positive
    when the mid-line (nose) lies right of the paired points, i.e. the face is turned toward the image right.

    Raises:
        DataError: the scheme has no self-symmetric landmark or no flip pair.
    """
    sch = get_scheme(scheme)
    mid, paired = _self_symmetric(sch)
    if not mid or not paired:
        raise DataError(f"scheme {sch.name} has no landmark on the face's mid-line (flip_perm[i] == i) or no flip "
                        "pair: the left/right asymmetry that identifies the pose component cannot be measured")
    a = np.asarray(aligned, dtype=np.float64)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return np.nanmean(a[:, mid, 0], axis=1) - np.nanmean(a[:, paired, 0], axis=1)


class _quiet_nanmean:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two ``(N,)`` arrays over the pairs where both are finite (0.0 when
    undefined: fewer than 3 pairs or a constant array)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return 0.0
    return float(spearmanr(a[ok], b[ok]).statistic)


# -- fitting and applying -----------------------------------------------------------------------------------------

def _ids_text(ids: list[str], limit: int = 10) -> str:
    return ", ".join(ids[:limit]) + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def min_asymmetry_corr(n: int) -> float:
    """The ``|rho|`` a component needs to count as the pose component among ``n`` faces:
    ``max(MIN_ASYMMETRY_CORR, 3.5 / sqrt(n - 1))``. The second term is 3.5 standard deviations of a rank
    correlation between unrelated variables, so that on a few faces a noise component cannot pass by chance."""
    return max(MIN_ASYMMETRY_CORR, 3.5 / np.sqrt(max(n - 1, 1)))


def _complete_faces(lm: np.ndarray, k: int, ids: list[str]) -> tuple[np.ndarray, int]:
    """(faces with every point annotated, their number); ``DataError`` for degenerate faces (named) or fewer
    complete faces than bins."""
    complete = np.isfinite(lm).all(axis=(1, 2))
    spread = np.where(complete, np.nan_to_num(lm).std(axis=1).sum(-1), 0.0)
    degenerate = complete & ~(spread > 1e-9 * np.maximum(1.0, np.nan_to_num(np.abs(lm)).max(axis=(1, 2))))
    if degenerate.any():
        bad = [ids[i] for i in np.flatnonzero(degenerate)]
        raise DataError(f"{len(bad)} training face(s) have degenerate landmarks (all points at one place): "
                        f"{_ids_text(bad)}; fix or remove them")
    use = complete
    n = int(use.sum())
    if n < k:
        extra = f" ({int((~complete).sum())} more have missing points)" if (~complete).any() else ""
        raise DataError(f"{n} training face(s) with complete landmarks{extra}, fewer than the {k} bins; "
                        "use fewer `bins` or more faces")
    if n < 3:
        raise DataError(f"only {n} complete training faces: too few to fit a pose model")
    return use, n


def fit_pose_model(landmarks: np.ndarray, scheme: str | LandmarkScheme, bins: int | None = None, *,
                   component: int | None = None, ids: list[str] | None = None, source: str = "") -> PoseModel:
    """Fit the pose model on training faces ``(N, L, 2)`` (see the module docstring).

    Args:
        landmarks: training landmarks in any pixel frame; faces with NaN points are left out of the fit.
        scheme: landmark scheme (name or object).
        bins: K, default :func:`default_bins`.
        component: force this principal component (0-based) instead of choosing it; its sign is still fixed by
            the asymmetry proxy.
        ids: face ids, to name degenerate faces in errors.
        source: recorded in the model.

    Raises:
        UsageError: K < 2, or a forced component out of range.
        DataError: wrong landmark count, degenerate faces (named), fewer complete faces than bins, or no component
            correlating with the left/right asymmetry (``|rho| <`` :data:`MIN_ASYMMETRY_CORR`).
    """
    sch = get_scheme(scheme)
    lm = np.asarray(landmarks, dtype=np.float64)
    k = default_bins(sch.name) if bins is None else int(bins)
    if k < 2:
        raise UsageError(f"`bins` must be at least 2, got {k}")
    if lm.ndim != 3 or lm.shape[1:] != (sch.num_landmarks, 2):
        raise DataError(f"landmarks must be (N, {sch.num_landmarks}, 2) for scheme {sch.name}, got {lm.shape}")
    use, n = _complete_faces(lm, k, ids if ids is not None else [str(i) for i in range(len(lm))])

    aligned, mean = canonical_procrustes(lm[use], sch)
    x = (aligned - mean).reshape(n, -1)
    # PCA by the eigen-decomposition of the (2L x 2L) scatter matrix: cheaper than an SVD of the (N x 2L) data
    evals, evecs = np.linalg.eigh(x.T @ x)
    order = np.argsort(evals)[::-1][:min(n, x.shape[1])]
    var = np.clip(evals[order], 0.0, None)
    vt = evecs[:, order].T
    sv = np.sqrt(var)
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    proxy = yaw_proxy(aligned, sch)
    n_cand = min(N_CANDIDATES, len(sv))
    scores = x @ vt[:n_cand].T
    corrs = [spearman(scores[:, c], proxy) for c in range(n_cand)]
    candidates = [{"index": c, "explained_variance": float(ratio[c]), "asymmetry_corr": corrs[c]}
                  for c in range(n_cand)]
    if component is None:
        best = int(np.argmax(np.abs(corrs)))
        need = min_asymmetry_corr(n)
        if abs(corrs[best]) < need:
            table = ", ".join(f"PC{c}: {corrs[c]:+.2f}" for c in range(n_cand))
            raise DataError(f"no pose component found: none of the first {n_cand} shape components correlates "
                            f"with the left/right asymmetry (|rho| < {need:.2f} for {n} faces; {table}); the "
                            "training faces may have too little yaw variation to balance (`component` forces one)")
        forced = False
    else:
        if not 0 <= component < len(sv):
            raise UsageError(f"`component` must be in 0..{len(sv) - 1}, got {component}")
        best = int(component)
        forced = True
    vec = vt[best]
    corr = corrs[best] if best < n_cand else spearman(x @ vec, proxy)
    if best >= n_cand:
        candidates.append({"index": best, "explained_variance": float(ratio[best]), "asymmetry_corr": corr})
    sign = 1 if corr >= 0 else -1
    coord = sign * (x @ vec) / np.sqrt(sch.num_landmarks)
    lo, hi = np.percentile(coord, ROBUST_LIMITS)
    if not hi > lo:
        lo, hi = float(coord.min()), float(coord.max())
    if not hi > lo:
        raise DataError("all training faces have the same pose coordinate: nothing to balance")
    edges = np.linspace(lo, hi, k + 1)
    return PoseModel(
        scheme=sch.name, num_landmarks=sch.num_landmarks, mean_shape=mean.tolist(),
        component=vec.reshape(-1, 2).tolist(), component_index=best, component_forced=forced, sign=sign,
        explained_variance=float(ratio[best]), asymmetry_corr=float(abs(corr)),
        candidates=candidates, bins=k, bin_edges=edges.tolist(), limits_percentiles=list(ROBUST_LIMITS),
        train_faces=n, source=source,
    )


def pose_coordinate(model: PoseModel, landmarks: np.ndarray) -> np.ndarray:
    """Signed pose coordinate ``(N,)`` of faces ``(N, L, 2)`` (NaN for faces that cannot be aligned)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.shape[1:] != (model.num_landmarks, 2):
        raise DataError(f"the pose model ({model.scheme}) needs (N, {model.num_landmarks}, 2) landmarks, got "
                        f"{lm.shape}")
    mean = np.asarray(model.mean_shape, dtype=np.float64)
    aligned = align_to_mean(lm, mean)
    resid = np.where(np.isfinite(aligned), aligned - mean, 0.0).reshape(len(lm), -1)
    vec = np.asarray(model.component, dtype=np.float64).reshape(-1)
    c = model.sign * (resid @ vec) / np.sqrt(model.num_landmarks)
    c[~np.isfinite(aligned).any(axis=(1, 2))] = np.nan
    return c


def coordinate_bins(model: PoseModel, coords: np.ndarray) -> np.ndarray:
    """Bin ``(N,)`` int of pose coordinates: 0..K-1 (values beyond the edges go to the end bins), -1 for NaN."""
    c = np.asarray(coords, dtype=np.float64)
    b = np.searchsorted(model.edges[1:-1], np.nan_to_num(c), side="right").astype(np.int64)
    b = np.clip(b, 0, model.bins - 1)
    b[~np.isfinite(c)] = -1
    return b


def assign_bins(model: PoseModel, landmarks: np.ndarray) -> np.ndarray:
    """Pose bin ``(N,)`` of each face: 0..K-1, or -1 when its pose coordinate is undefined."""
    return coordinate_bins(model, pose_coordinate(model, landmarks))


def histogram(bins: np.ndarray, k: int) -> np.ndarray:
    """Counts ``(K,)`` of bin labels (labels < 0 are ignored)."""
    b = np.asarray(bins, dtype=np.int64)
    return np.bincount(b[b >= 0], minlength=k)[:k]
