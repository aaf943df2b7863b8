"""Pose-based data balancing (PDB, the Wing paper's "hard sample mining", docs/balance.md): ``facelm balance``.

The recipe, and the choices this implementation makes where the paper is silent (see docs/balance.md):

1. **Alignment.** The training faces' landmarks are aligned to their mean shape by generalised Procrustes
   analysis (similarity transforms: translation, scale, in-plane rotation; no reflection). The mean shape is
   centred, has unit RMS size and is turned so that its eye line (the scheme's angle normaliser, image-left eye
   to image-right eye) is horizontal, so the aligned frame's x axis is the face's left-right axis. Only faces
   with every point annotated take part in the fit.
2. **PCA** of the aligned shapes (``2L``-vectors minus the mean shape).
3. **Choosing the pose component.** The pose (yaw) eigenvector is *not* assumed to be the first one. Each of the
   first :data:`N_CANDIDATES` components is scored by the Spearman correlation of its coefficients with a signed
   left/right asymmetry measure (:func:`yaw_proxy`): in the aligned frame, the mean x of the scheme's
   self-symmetric landmarks (``flip_perm[i] == i``: nose, lip centres, chin) minus the mean x of its paired
   landmarks. When the head turns, the points on the face's mid-line (which stand out of the face: the nose
   most) shift sideways relative to the paired points, so this proxy is proportional to ``sin(yaw)`` for a
   rigid face seen orthographically. The component with the largest ``|rho|`` wins; below
   :func:`min_asymmetry_corr` (0.3, more on fewer than 137 faces) no pose component is found (``DataError``).
4. **Sign.** The component is signed so that its coefficient correlates *positively* with the proxy:
   **positive pose coordinate = the face is turned toward the image right** (the nose tip lies right of the
   face's centre in the image: the subject looks toward their own left). Results are therefore the same
   whatever sign the SVD returns.
5. **Pose coordinate** of a face (training or any other set): Procrustes-align its landmarks to the mean shape
   (removing translation, scale and in-plane rotation; the paper's "original shapes" are understood this way, since
   raw pixel coordinates would mix the face's position and size into the projection), subtract the mean shape
   and project on the signed unit component, divided by ``sqrt(L)``. Units: the mean shape's RMS point
   distance from its centre (so values compare across schemes: about -0.3..0.3 on YouTube-Faces frames).
   Faces with missing (NaN) points are aligned on their annotated points and their missing points count as the
   mean shape (they add nothing to the projection); faces with fewer than 2 distinct annotated
   points get NaN (no bin).
6. **Histogram**: K equal-width bins between the 0.5th and 99.5th percentiles of the training coordinates
   (:data:`ROBUST_LIMITS`), so that a few outliers do not stretch the range and leave most bins empty; faces
   outside those limits fall into the end bins. K defaults to 17 for ``aflw19`` and 9 for ``300w68`` (the
   paper's values) and to 9 for every other scheme (:func:`default_bins`).
7. **Balancing** (:func:`balance_indices`): ``target="uniform"`` brings every non-empty bin up to the count of
   the most populated bin, ``target="sqrt"`` to the geometric mean of its own count and that maximum (a
   milder flattening). Each face is copied at most ``max_dup`` times (default :data:`DEFAULT_MAX_DUP` = 10,
   so a bin can grow at most 11-fold and a bin of three faces is not copied a thousand times); empty bins
   stay empty. Within a bin the copies are spread evenly: every face gets ``floor(extra / n)`` copies and
   ``extra mod n`` faces, drawn by a seeded RNG (``numpy.random.default_rng([seed, bin])``), one more.
   The result depends only on the data, K, target, cap and seed.

The balanced folder (:func:`balance_manifest`) holds ``manifest.jsonl`` (every original line, in the original
order, with ``image`` rewritten relative to the new folder, then the duplicated training lines: ``id`` is the
original id plus ``#dupK``, ``dup_of`` the index of the original line in this manifest, everything else
copied, the crop-cache pointer included), ``prepare.json`` (the original one, with ``crops`` pointing at the
*original* crop cache by a relative path, so no image data is copied) and ``pose_model.json`` (the fitted
:class:`PoseModel`, to bin other sets: ``facelm evaluate --pose-model``). Training draws a fresh random
augmentation (rotation, box perturbation, flip, colour) every time it draws a line, so the copies of a face
are seen as different samples.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm import __version__
from facelm._io import atomic_write, atomic_write_json, check_folder_creatable
from facelm.errors import DataError, UsageError
from facelm.manifest import CROPS_NAME, MANIFEST_NAME, PREPARE_NAME, load_manifest, write_manifest
from facelm.schemes import get_scheme
from facelm.pose import (  # noqa: F401 - the pose model is re-exported under its old home
    DEFAULT_BINS,
    DEFAULT_BINS_OTHER,
    DIRECTION,
    MIN_ASYMMETRY_CORR,
    N_CANDIDATES,
    POSE_MODEL_NAME,
    ROBUST_LIMITS,
    PoseModel,
    align_to_mean,
    assign_bins,
    bin_tag,
    canonical_procrustes,
    coordinate_bins,
    default_bins,
    fit_pose_model,
    histogram,
    load_pose_model,
    min_asymmetry_corr,
    pose_coordinate,
    save_pose_model,
    spearman,
    yaw_proxy,
    _ids_text,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_BINS_OTHER",
    "DEFAULT_MAX_DUP",
    "DIRECTION",
    "MIN_ASYMMETRY_CORR",
    "N_CANDIDATES",
    "POSE_MODEL_NAME",
    "ROBUST_LIMITS",
    "TARGETS",
    "BalanceResult",
    "PoseModel",
    "align_to_mean",
    "assign_bins",
    "balance_indices",
    "balance_manifest",
    "bin_tag",
    "canonical_procrustes",
    "coordinate_bins",
    "default_bins",
    "fit_pose_model",
    "histogram",
    "load_pose_model",
    "min_asymmetry_corr",
    "plot_histograms",
    "pose_coordinate",
    "save_pose_model",
    "spearman",
    "yaw_proxy",
]

DEFAULT_MAX_DUP = 10
TARGETS = ("uniform", "sqrt")

Warn = Callable[[str], None]


def _noop(msg: str) -> None:
    pass


# -- balancing ----------------------------------------------------------------------------------------------------

def _bin_targets(counts: np.ndarray, target: str) -> np.ndarray:
    """The count each bin is brought up to, before the cap (empty bins: 0)."""
    counts = np.asarray(counts, dtype=np.int64)
    n_max = int(counts.max()) if counts.size else 0
    if target == "uniform":
        want = np.full_like(counts, n_max)
    else:
        want = np.rint(np.sqrt(counts * n_max)).astype(np.int64)
    return np.where(counts > 0, np.maximum(want, counts), 0)


def balance_indices(bins: np.ndarray, k: int, target: str = "uniform", max_dup: int = DEFAULT_MAX_DUP,
                    seed: int = 0) -> np.ndarray:
    """Indices of the balanced set: ``arange(N)`` (every face once) followed by the duplicates, sorted.

    Args:
        bins: ``(N,)`` bin of each face (``-1``: no bin; never duplicated).
        k: number of bins.
        target: ``uniform`` (every non-empty bin up to the largest bin's count) or ``sqrt`` (up to
            ``round(sqrt(n_b * n_max))``).
        max_dup: at most this many copies of one face (so a bin grows at most ``1 + max_dup``-fold).
        seed: which faces of a bin get the one extra copy when copies do not divide evenly.

    Raises:
        UsageError: unknown target, negative ``max_dup``, ``k < 1``, or a seed not in [0, 2**63).
    """
    if target not in TARGETS:
        raise UsageError(f"`target` must be one of {', '.join(TARGETS)}, not {target!r}")
    if max_dup < 0:
        raise UsageError(f"`max_dup` must be 0 or more, got {max_dup}")
    if k < 1:
        raise UsageError(f"need at least one bin, got {k}")
    _check_seed(seed)
    b = np.asarray(bins, dtype=np.int64)
    counts = histogram(b, k)
    wants = _bin_targets(counts, target)
    copies = np.zeros(len(b), dtype=np.int64)
    for j in range(k):
        n = int(counts[j])
        if n == 0:
            continue
        extra = min(int(wants[j]), n * (1 + max_dup)) - n
        if extra <= 0:
            continue
        members = np.flatnonzero(b == j)
        q, r = divmod(extra, n)
        copies[members] += q
        if r:
            rng = np.random.default_rng([seed, j])
            copies[rng.choice(members, size=r, replace=False)] += 1
    return np.concatenate([np.arange(len(b)), np.repeat(np.arange(len(b)), copies)])


@dataclass
class BalanceResult:
    """What :func:`balance_manifest` did. ``summary`` is the JSON that ``facelm balance`` prints."""

    summary: dict
    model: PoseModel
    coords: np.ndarray  # (N_train,) pose coordinate of each training face
    bins: np.ndarray  # (N_train,) its bin (-1: none)
    train_ids: list[str] = field(default_factory=list)


def _rel(target: Path, start: Path) -> str:
    """``target`` relative to folder ``start`` (POSIX separators), or absolute when on another drive."""
    try:
        return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(os.path.abspath(target)).as_posix()


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise UsageError(f"`seed` must be an int in [0, 2**63), got {seed!r}")


def _is_balance_output(folder: Path) -> bool:
    """Does ``folder`` hold what an earlier :func:`balance_manifest` wrote (a pose model and a ``prepare.json``
    with its ``balance`` record)?"""
    import json

    try:
        info = json.loads((folder / PREPARE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "balance" in info and (folder / POSE_MODEL_NAME).is_file()


def _check_out(out) -> Path:
    """The output folder, checked before any work: a path, not a file, in a folder this process can write into
    (whether it is new, empty or an earlier balance's output: :func:`_load_for_balance`)."""
    if out is None or str(out) == "":
        raise UsageError("`out` is empty; give the folder for the balanced manifest")
    out = Path(out)
    check_folder_creatable("`out`", out.absolute(), shown=out)
    return out


def _load_for_balance(data, out, target: str, max_dup: int, bins: int | None, seed: int = 0):
    """The options and the data checked: (manifest, out folder, scheme, rows of the training faces)."""
    if target not in TARGETS:
        raise UsageError(f"`target` must be one of {', '.join(TARGETS)}, not {target!r}")
    if max_dup < 0:
        raise UsageError(f"`max_dup` must be 0 or more, got {max_dup}")
    if bins is not None and bins < 2:
        raise UsageError(f"`bins` must be at least 2, got {bins}")
    _check_seed(seed)
    out = _check_out(out)
    m = load_manifest(data)
    if out.resolve() == m.root.resolve():
        raise UsageError(f"`out` {out}: is the source folder; write the balanced manifest to a new folder")
    if (out / CROPS_NAME).exists():
        raise UsageError(f"`out` {out}: holds a crop cache ({CROPS_NAME}), so it is a prepared dataset; choose "
                         "another folder")
    if out.is_dir() and any(out.iterdir()) and not _is_balance_output(out):
        raise UsageError(f"`out` {out}: is a folder that is not empty (and not an earlier balance's output); "
                         "give a new folder")
    try:
        sch = get_scheme(m.scheme)
    except KeyError:
        raise DataError(f"{m.path}: unknown landmark scheme {m.scheme!r}; register it with a scheme file"
                        ) from None
    dups = [s.id for s in m.samples if s.dup_of is not None]
    if dups:
        raise DataError(f"{m.path}: already balanced ({len(dups)} duplicated lines, e.g. {dups[0]}); balance the "
                        "folder written by `facelm prepare` instead")
    train = np.flatnonzero([s.split == "train" for s in m.samples])
    if train.size == 0:
        have = sorted({s.split for s in m.samples})
        raise DataError(f"{m.path}: no faces in the 'train' split (splits here: {', '.join(have)}); pose "
                        "balancing is fitted on training faces only")
    return m, out, sch, train


def _balanced_samples(m, out: Path, train: np.ndarray, dup_local: np.ndarray) -> tuple[list, dict[int, int]]:
    """The new manifest: every original line (image re-rooted to ``out``), then the copies (``#dupN`` ids,
    ``dup_of`` the original line); and the number of copies per original line."""
    samples = []
    for s in m.samples:
        img = s.image if Path(s.image).is_absolute() else _rel(m.root / s.image, out)
        samples.append(s.model_copy(update={"image": img}))
    ids = {s.id for s in samples}
    n_copy: dict[int, int] = {}
    for j in dup_local:
        orig = int(train[j])
        c = n_copy.get(orig, 0) + 1
        n_copy[orig] = c
        new_id = f"{samples[orig].id}#dup{c}"
        if new_id in ids:
            raise DataError(f"{m.path}: id {new_id!r} already exists; cannot name the duplicate of line "
                            f"{orig + 1}")
        ids.add(new_id)
        samples.append(samples[orig].model_copy(update={"id": new_id, "dup_of": orig}, deep=True))
    return samples, n_copy


def balance_manifest(data: str | Path, out: str | Path, bins: int | None = None, *, target: str = "uniform",
                     max_dup: int = DEFAULT_MAX_DUP, seed: int = 0, component: int | None = None,
                     warn: Warn = _noop) -> BalanceResult:
    """Balance a prepared dataset's training split into a new folder ``out`` (see the module docstring).

    Raises:
        UsageError: bad K/target/cap/seed; ``out`` is empty, a file, not writable, the source folder, a prepared
            folder with its own crop cache, or a folder that is neither empty nor an earlier balance's output.
        DataError: invalid manifest (mixed schemes, ...), no training split, an already balanced manifest,
            degenerate faces, fewer faces than bins, no pose component found.
    """
    m, out, sch, train = _load_for_balance(data, out, target, max_dup, bins, seed)
    train_ids = [m.samples[i].id for i in train]
    lm = m.landmarks[train]
    model = fit_pose_model(lm, sch, bins, component=component, ids=train_ids, source=str(m.path))
    k = model.bins
    coords = pose_coordinate(model, lm)
    b = coordinate_bins(model, coords)
    unbinned = int((b < 0).sum())
    if unbinned:
        warn(f"{unbinned} training face(s) have too few annotated points for a pose coordinate; they are kept "
             "once and never duplicated")
    idx = balance_indices(b, k, target, max_dup, seed)
    dup_local = idx[len(train):]

    samples, n_copy = _balanced_samples(m, out, train, dup_local)

    hist_before = histogram(b, k)
    hist_after = histogram(b[idx], k)
    counts_nonempty = hist_after[hist_before > 0]
    capped = [j for j, w in enumerate(_bin_targets(hist_before, target)) if hist_before[j] * (1 + max_dup) < w]
    crops_src = m.root / m.info.get("crops", CROPS_NAME)
    info = dict(m.info)
    absolute = Path(m.info.get("crops", CROPS_NAME)).is_absolute()
    info["crops"] = str(crops_src) if absolute else _rel(crops_src, out)
    summary = {
        "out": str(out), "source": str(m.path), "scheme": sch.name, "bins": k, "target": target, "seed": seed,
        "component": model.component_index, "component_forced": model.component_forced,
        "explained_variance": model.explained_variance, "asymmetry_corr": model.asymmetry_corr,
        "sign": model.sign, "direction": DIRECTION, "candidates": model.candidates,
        "faces_before": len(train), "faces_after": len(idx), "unbinned": unbinned,
        "hist_before": hist_before.tolist(), "hist_after": hist_after.tolist(), "bin_edges": model.bin_edges,
        "max_dup": max_dup, "capped_bins": capped, "duplicated_faces": len(n_copy),
        "added_lines": len(dup_local), "lines_total": len(samples),
        "flatness_after": (float(counts_nonempty.max() / counts_nonempty.min()) if counts_nonempty.size else None),
        "crops": info["crops"], "pose_model": str(out / POSE_MODEL_NAME),
    }
    info["balance"] = {k2: summary[k2] for k2 in ("source", "bins", "target", "seed", "max_dup", "component",
                                                  "sign", "faces_before", "faces_after", "added_lines")}
    info["balance"]["facelm_version"] = __version__

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # checked above; gone since (another process)
        raise UsageError(f"`out` {out}: cannot create the output folder ({e.strerror or e})") from None
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # no stale manifest next to new metadata if we stop halfway
    save_pose_model(out / POSE_MODEL_NAME, model)
    atomic_write_json(out / PREPARE_NAME, info)
    write_manifest(out / MANIFEST_NAME, samples)
    return BalanceResult(summary=summary, model=model, coords=coords, bins=b, train_ids=train_ids)


# -- plot ---------------------------------------------------------------------------------------------------------

def plot_histograms(path: str | Path, hist_before: list[int] | np.ndarray, hist_after: list[int] | np.ndarray,
                    edges: list[float] | np.ndarray, title: str) -> Path:
    """Draw the before/after pose histograms side by side in each bin, to an image file, atomically.

    Raises:
        UsageError: an image type matplotlib cannot write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(7.0, 4.5), dpi=100)
    canvas = FigureCanvasAgg(fig)
    fmt = path.suffix.lower().lstrip(".")
    kinds = canvas.get_supported_filetypes()
    if fmt not in kinds:
        raise UsageError(f"`plot` {path}: unknown image type; use one of "
                         f"{', '.join('.' + t for t in sorted(kinds))}")
    e = np.asarray(edges, dtype=np.float64)
    centres, width = (e[:-1] + e[1:]) / 2, np.diff(e)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(centres - width * 0.2, hist_before, width=width * 0.4, label=f"before ({int(np.sum(hist_before))})",
           color="#888888")
    ax.bar(centres + width * 0.2, hist_after, width=width * 0.4, label=f"after ({int(np.sum(hist_after))})",
           color="#1f77b4")
    ax.set_xlabel("pose coordinate (+ = face turned toward the image right)")
    ax.set_ylabel("training faces")
    ax.set_title(title)
    top = max([1, *np.asarray(hist_before).tolist(), *np.asarray(hist_after).tolist()])
    ax.set_ylim(0, top * 1.2)  # room for the legend above the bars
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path

