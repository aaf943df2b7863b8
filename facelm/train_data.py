"""Training data from one or several prepared datasets, possibly in other schemes than the model's.

A *source* is one prepared folder with a sampling weight. Its faces are labelled in scheme S; the model has
scheme M (the scheme of the first source). Through the scheme map ``A`` from M to S (``facelm.scheme_maps``)
a face contributes ``loss(A @ pred, label)`` over the points of S that have an equivalent in M; for S = M,
``A`` is the identity and nothing changes.

Model crops of an S face must be framed like those of an M face (the M face square), which S's own landmarks do
not give (a 5-point face square is much smaller than a 68-point one). facelm fits a similarity from the mapped
M *template* (the mean M shape in face-square units, levelled) to each face's valid S points, places the whole M
template through it (a *pseudo-shape*) and frames the crop from the pseudo-shape exactly as from a real M shape:
the axis-aligned face square for stage 1, the levelled square (``upright_frames``) for stage 2.

Batches: with one source the sample order is an epoch permutation (``default_rng([seed, epoch])``); with several,
each of the B slots of step ``s`` picks a source with probability proportional to its weight and a face of it
uniformly, from ``default_rng([seed, s, 2])``. Both are pure functions of the step, so a resumed run sees the
batches of the uninterrupted run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm.augment import (
    AugmentConfig,
    apply_occluders,
    apply_photometric,
    draw_blur,
    draw_occluders,
    draw_photometric,
    target_landmarks,
    warp_crops,
)
from facelm.crops import cache_geometry, cache_landmarks, face_frames, frame_matrices, upright_frames
from facelm.errors import DataError
from facelm.geometry import apply_affines, eye_angle, invert_affines
from facelm.manifest import Manifest, load_manifest
from facelm.manifest_predict import CropData, predict_crops, validation_nme
from facelm.scheme_maps import SchemeMap, get_map
from facelm.schemes import LandmarkScheme, get_scheme, list_schemes

__all__ = [
    "BatchPlan",
    "Source",
    "load_source",
    "load_sources",
    "m_template",
    "pick_batch",
    "plan_batch",
    "pseudo_shapes",
    "render_sources",
    "source_frames",
    "source_nme",
    "warp_plan",
]


@dataclass
class Source:
    """One prepared dataset's split, ready for ``render_batch``.

    Attributes:
        name: display name (the folder name).
        manifest: the split's manifest; scheme: its scheme (S); smap: the map from the model's scheme to S.
        crops: (M, S, S, 3) memory map; index: (N,) rows of crops; lm_cache: (N, K, 2) labels in cache pixels
        (NaN-free, see ``mask``); mask: (N, K) usable labels; frames: (N, 4) crop frames in cache pixels.
        weight: sampling weight.
    """

    name: str
    manifest: Manifest
    scheme: LandmarkScheme
    smap: SchemeMap
    crops: np.ndarray
    index: np.ndarray
    lm_cache: np.ndarray
    mask: np.ndarray
    frames: np.ndarray | None = None
    weight: float = 1.0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def same_scheme(self) -> bool:
        return self.smap.source == self.smap.target


def load_source(manifest: Manifest, model_scheme: str, name: str = "", weight: float = 1.0) -> Source:
    """Arrays of ``manifest`` (one split) for training a ``model_scheme`` model; frames are set later."""
    if np.isnan(manifest.cache_matrix).any() or (manifest.cache_index < 0).any():
        raise DataError(f"{manifest.path}: some lines have no crop cache (run `facelm prepare` again)")
    scheme = get_scheme(manifest.scheme)
    smap = get_map(model_scheme, scheme.name)
    lm = cache_landmarks(manifest.cache_matrix, manifest.landmarks)
    mask = np.isfinite(lm).all(-1) & smap.mapped[None, :]
    crops = manifest.crops()
    _check_crops(manifest, crops)
    return Source(name or manifest.path.parent.name, manifest, scheme, smap, crops, manifest.cache_index,
                  np.nan_to_num(lm), mask, None, float(weight))


def _check_crops(manifest: Manifest, crops: np.ndarray) -> None:
    """``DataError`` naming the crop cache when it is not ``(M, S, S, 3)`` or lacks rows the manifest points to
    (a cache cut short, or one of another prepare), before any batch reads past its end."""
    where = manifest.root / manifest.info.get("crops", "crops.npy")
    if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3:
        raise DataError(f"{where}: crop cache has shape {tuple(crops.shape)}, expected (N, S, S, 3) "
                        "(run `facelm prepare` again)")
    need = int(manifest.cache_index.max()) + 1 if len(manifest.cache_index) else 0
    if crops.shape[0] < need:
        raise DataError(f"{where}: crop cache has {crops.shape[0]} crops, the manifest {manifest.path} points to "
                        f"row {need - 1} (run `facelm prepare` again)")


def m_template(shapes: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """The mean shape ``(L, 2)`` of M-scheme ``shapes`` (N, L, 2), each levelled by its eye line and expressed in
    units of its face square (centre 0, side 1: ``face_box_scale x`` the larger side of the levelled shape)."""
    lm = np.asarray(shapes, dtype=np.float64)
    ok = np.isfinite(lm).all((1, 2))
    if not ok.any():
        raise DataError(f"no complete {scheme.name} shape to build the crop template from")
    lm = lm[ok]
    le, re = scheme.eye_centres(lm)
    t = np.radians(eye_angle(le, re))
    c, s = np.cos(t), np.sin(t)
    ctr = (lm.min(1) + lm.max(1)) / 2
    d = lm - ctr[:, None]
    ux = c[:, None] * d[..., 0] + s[:, None] * d[..., 1]
    uy = -s[:, None] * d[..., 0] + c[:, None] * d[..., 1]
    u = np.stack([ux, uy], -1)
    lo, hi = u.min(1), u.max(1)
    u = (u - ((lo + hi) / 2)[:, None]) / (scheme.face_box_scale * (hi - lo).max(1))[:, None, None]
    return u.mean(0)


def pseudo_shapes(labels: np.ndarray, mask: np.ndarray, smap: SchemeMap, template: np.ndarray) -> np.ndarray:
    """M-scheme pseudo-shapes ``(N, L, 2)``: the template placed on each face by the least-squares similarity
    from the mapped template (with the map's offsets, as the labels carry them) to the face's valid labels (NaN
    rows where fewer than 2 labels are valid)."""
    tpl = np.nan_to_num(smap.apply(template))  # (K, 2); unmapped rows 0, as in the map's matrix
    z_t = tpl[:, 0] + 1j * tpl[:, 1]
    z_p = labels[..., 0] + 1j * labels[..., 1]
    w = mask.astype(np.float64)
    n = w.sum(1)
    good = n >= 2
    n = np.maximum(n, 1)
    mu_t = (w * z_t[None]).sum(1) / n
    mu_p = (w * z_p).sum(1) / n
    tc = z_t[None] - mu_t[:, None]
    pc = z_p - mu_p[:, None]
    den = (w * np.abs(tc) ** 2).sum(1)
    good &= den > 1e-12
    a = (w * np.conj(tc) * pc).sum(1) / np.where(den > 0, den, 1)
    z_m = template[:, 0] + 1j * template[:, 1]
    out = a[:, None] * (z_m[None] - mu_t[:, None]) + mu_p[:, None]
    res = np.stack([out.real, out.imag], -1)
    res[~good] = np.nan
    return res


def source_frames(src: Source, arch_stage: int, model_scheme: LandmarkScheme, template: np.ndarray | None,
                  cache_size: int, margin: float, shapes: np.ndarray | None = None) -> np.ndarray:
    """Crop frames ``(N, 4)`` in cache pixels (module docstring).

    ``shapes``: M-scheme shapes to frame stage-2 crops from (stage-1 predictions); default: the labels (same
    scheme) or the pseudo-shapes (other schemes).
    """
    if shapes is None and not src.same_scheme:
        if template is None:
            raise DataError(f"{src.name}: a {src.scheme.name} source needs a {model_scheme.name} source to build "
                            "its crop template from")
        shapes = pseudo_shapes(src.lm_cache, src.mask, src.smap, template)
        bad = ~np.isfinite(shapes).all((1, 2))
        if bad.any():  # fewer than two usable points: the face cannot be framed; it gives no loss
            src.mask[bad] = False
            shapes[bad] = template[None] * (cache_size / margin) + (cache_size - 1) / 2
    if arch_stage == 1:
        if shapes is None:
            return face_frames(len(src), cache_size, margin)
        lo, hi = shapes.min(1), shapes.max(1)
        ctr = (lo + hi) / 2
        side = (hi - lo).max(1) * model_scheme.face_box_scale
        return np.column_stack([ctr, np.maximum(side, 1e-6), np.zeros(len(src))])
    if shapes is None:
        shapes = src.lm_cache
    le, re = model_scheme.eye_centres(shapes)
    return upright_frames(shapes, le, re, model_scheme.face_box_scale)


def pick_batch(sources: list[Source], step: int, batch_size: int, seed: int, *, rank: int = 0,
               world: int = 1) -> list[tuple[int, np.ndarray]]:
    """(source number, face indices) groups of this rank's share of step ``step``'s batch (module docstring)."""
    per_rank = max(1, batch_size // world)
    if len(sources) == 1:
        n = len(sources[0])
        steps_per_epoch = max(1, n // batch_size) if n >= batch_size else 1
        epoch, k = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        if n < batch_size:
            perm = np.resize(perm, batch_size)
        b = perm[k * batch_size:(k + 1) * batch_size]
        return [(0, b[rank * per_rank:(rank + 1) * per_rank])]
    rng = np.random.default_rng([seed, step, 2])
    w = np.array([s.weight for s in sources], dtype=np.float64)
    which = rng.choice(len(sources), size=batch_size, p=w / w.sum())
    faces = np.array([rng.integers(len(sources[i])) for i in which])
    which, faces = which[rank * per_rank:(rank + 1) * per_rank], faces[rank * per_rank:(rank + 1) * per_rank]
    return [(i, faces[which == i]) for i in range(len(sources)) if (which == i).any()]


@dataclass
class BatchPlan:
    """Everything of a training batch but its pixels: which crop each face is cut from, how, and its targets.

    Attributes:
        source: (B,) source number of each face; rows: (B,) its row of that source's crop cache.
        mats: (B, 2, 3) cache -> input pixel matrices (augmentation drawn in); blur: (B,) blurred crops.
        landmarks: (B, K, 2) float32 targets in input pixels; mask: (B, K) usable targets.
        maps: (B, K, L) float32 scheme maps, or None when every face is of the model's scheme and K = L.
        occluders: (B, 7) int32 (``facelm.augment.draw_occluders``), or None when occlusion is off.
        photometric: (B, 10) (``facelm.augment.draw_photometric``), or None when it is off.
    """

    source: np.ndarray
    rows: np.ndarray
    mats: np.ndarray
    blur: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    maps: np.ndarray | None
    occluders: np.ndarray | None = None
    photometric: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def part(self, k: int, parts: int) -> BatchPlan:
        """The ``k``-th of ``parts`` equal shares (a distributed rank's share of the global batch)."""
        n = len(self) // parts
        sl = slice(k * n, (k + 1) * n)
        return BatchPlan(self.source[sl], self.rows[sl], self.mats[sl], self.blur[sl], self.landmarks[sl],
                         self.mask[sl], None if self.maps is None else self.maps[sl],
                         None if self.occluders is None else self.occluders[sl],
                         None if self.photometric is None else self.photometric[sl])


def plan_batch(sources: list[Source], groups: list[tuple[int, np.ndarray]], input_size: int,
               num_model_points: int, k_max: int, rng: np.random.Generator | None,
               aug: AugmentConfig | None) -> BatchPlan:
    """The batch of source ``groups`` (``pick_batch``), with the augmentation drawn from ``rng`` group by group:
    ``frame_matrices``, then ``draw_blur``, then ``draw_occluders``, then ``draw_photometric``."""
    srcs, rows, mats_l, blurs, lms, masks, maps, occs, phs = [], [], [], [], [], [], [], [], []
    for i, b in groups:
        src = sources[i]
        mats, flips = frame_matrices(src.frames[b], input_size, rng, aug)
        blur = draw_blur(len(b), rng, aug)
        occs.append(draw_occluders(len(b), input_size, rng, aug))
        phs.append(draw_photometric(len(b), rng, aug))
        lm, msk = target_landmarks(src.lm_cache[b], mats, flips, np.array(src.scheme.flip_perm), input_size, aug)
        m2 = src.mask[b].copy()
        if flips.any():
            m2[flips] = m2[flips][:, list(src.scheme.flip_perm)]
        msk &= m2
        k = lm.shape[1]
        pad = k_max - k
        srcs.append(np.full(len(b), i))
        rows.append(src.index[b])
        mats_l.append(mats)
        blurs.append(blur)
        lms.append(np.pad(lm, ((0, 0), (0, pad), (0, 0))))
        masks.append(np.pad(msk, ((0, 0), (0, pad))))
        a = np.zeros((k_max, num_model_points), np.float32)
        a[:k] = src.smap.matrix
        maps.append(np.broadcast_to(a, (len(b), k_max, num_model_points)))
    all_same = all(sources[i].same_scheme for i, _ in groups) and k_max == num_model_points
    return BatchPlan(np.concatenate(srcs), np.concatenate(rows), np.concatenate(mats_l), np.concatenate(blurs),
                     np.concatenate(lms), np.concatenate(masks), None if all_same else np.concatenate(maps),
                     None if occs[0] is None else np.concatenate(occs),
                     None if phs[0] is None else np.concatenate(phs))


def warp_plan(sources: list[Source], plan: BatchPlan, input_size: int, sigma: float = 1.0) -> np.ndarray:
    """The crops of ``plan`` warped on the CPU (OpenCV, ``facelm.augment.warp_crops``), occluders painted over,
    photometric changes applied: (B, S, S, 3) uint8."""
    out = np.empty((len(plan), input_size, input_size, 3), np.uint8)
    for i in np.unique(plan.source):
        sel = np.flatnonzero(plan.source == i)
        out[sel] = warp_crops(sources[i].crops, plan.rows[sel], plan.mats[sel], input_size, plan.blur[sel], sigma)
    return apply_photometric(apply_occluders(out, plan.occluders), plan.photometric)


def render_sources(sources: list[Source], groups: list[tuple[int, np.ndarray]], input_size: int,
                   num_model_points: int, k_max: int, rng: np.random.Generator | None,
                   aug: AugmentConfig | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Render a batch from source groups on the CPU (``plan_batch``, then ``warp_plan``).

    Returns (crops (B, S, S, 3) uint8, targets (B, K, 2) float32 in input pixels, mask (B, K) bool, maps
    (B, K, L) float32 or None when every face is of the model's scheme and K = L).
    """
    plan = plan_batch(sources, groups, input_size, num_model_points, k_max, rng, aug)
    imgs = warp_plan(sources, plan, input_size, aug.blur_sigma if aug is not None else 1.0)
    return imgs, plan.landmarks, plan.mask, plan.maps


def load_sources(cfg) -> tuple[list[Source], list[Source | None], object, dict, str]:
    """Training sources and their val splits (``None`` where a source has none); the model's scheme; the first
    source's prepare info; the sha256 of the training data (the first folder's manifest hash, or with several
    folders the sha256 of their hashes). The model's scheme is the first folder's; every other folder needs a
    scheme map.

    ``cfg`` is a ``facelm.config.TrainConfig`` (``data_list``, ``weight_list``, ``scheme_maps``, ``val``,
    ``max_val``)."""
    from facelm.scheme_maps import load_map_file

    for f in cfg.scheme_maps:
        load_map_file(f)
    sources, vals, hashes = [], [], []
    scheme = None
    info: dict = {}
    for k, (path, w) in enumerate(zip(cfg.data_list, cfg.weight_list)):
        full = load_manifest(path)
        hashes.append(full.content_hash())
        if full.scheme not in set(list_schemes()):
            raise DataError(f"{full.path}: unknown scheme {full.scheme!r}; register it with a scheme file")
        if scheme is None:
            scheme, info = get_scheme(full.scheme), full.info
        elif cache_geometry(full.info) != cache_geometry(info):
            raise DataError(f"{full.path}: its crop cache (size/margin) differs from {cfg.data_list[0]}'s; "
                            "prepare all `data` folders with the same `cache_size` and `margin`")
        tr = full.split("train")
        if len(tr) == 0:
            raise DataError(f"{full.path}: no faces in the 'train' split (splits here: "
                            f"{sorted({s.split for s in full.samples})})")
        sources.append(load_source(tr, scheme.name, Path(path).name, w))
        if k == 0 and cfg.val:
            vm = load_manifest(cfg.val, scheme=scheme.name)
            vm = vm.split("val") if len(vm.split("val")) else vm.split("test") or vm
        else:
            vm = full.split("val")
        if len(vm) > cfg.max_val:
            vm = vm.select(np.arange(len(vm)) < cfg.max_val)
        vals.append(load_source(vm, scheme.name, Path(path).name) if len(vm) else None)
    digest = hashes[0] if len(hashes) == 1 else hashlib.sha256(" ".join(hashes).encode()).hexdigest()
    return sources, vals, scheme, info, digest  # (a source of weight 0 is validated on but never sampled)


def source_nme(model, src: Source, device) -> np.ndarray:
    """Per-face NME of ``model`` on a source's faces (its frames), in the source's scheme and its default
    normaliser (other schemes through the scheme map)."""
    data = CropData(src.manifest, src.crops, src.index, src.lm_cache, src.frames, src.mask)
    p_cache, _ = predict_crops(model, data, src.frames, device, np.arange(model.num_landmarks))
    pred = apply_affines(invert_affines(src.manifest.cache_matrix), p_cache)
    pred = src.smap.apply(pred)
    mask = np.broadcast_to(src.smap.mapped, pred.shape[:2])
    return validation_nme(pred, src.manifest, src.scheme, None if src.same_scheme else mask)
