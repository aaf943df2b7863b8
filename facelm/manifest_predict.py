"""Run a landmark model (a torch module or an ONNX session) on the crops of a prepared dataset.

Training validation, export checks and evaluation all score a model the same way: each face of a manifest is
cropped with its ground-truth box (``facelm.crops.stage_frames``: the crop-cache face square for stage 1, the
upright square of the stage-1 prediction or of the ground truth for stage 2), the model runs on the plain crops,
and its outputs are mapped back through the crop and the crop-cache matrices to original-image pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from facelm.augment import render_batch
from facelm.crops import cache_landmarks, frame_matrices, stage_frames
from facelm.errors import DataError
from facelm.geometry import apply_affines, invert_affines
from facelm.manifest import Manifest
from facelm.metrics import normaliser, per_face_nme
from facelm.modelfile import check_meta_matches, meta_scheme, read_onnx_meta

__all__ = ["CropData", "default_normaliser", "iter_manifest_crops", "load_onnx_model", "load_split", "manifest_crops", "mean_nme",
           "onnx_predict_manifest", "predict_crops", "predict_manifest", "run_session", "validation_nme"]


def default_normaliser(scheme_name: str) -> str:
    """The normaliser used for validation NME: box width for AFLW-19, inter-ocular otherwise."""
    return "box-width" if scheme_name == "aflw19" else "inter-ocular"


def validation_nme(pred_img: np.ndarray, manifest: Manifest, scheme, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-face NME under the scheme's default normaliser; ``mask`` (N, L) leaves points out (unmapped ones)."""
    kind = default_normaliser(scheme.name)
    d = normaliser(manifest.landmarks, kind, scheme=scheme, boxes=manifest.boxes())
    return per_face_nme(pred_img, manifest.landmarks, d, mask)


def mean_nme(pred_img: np.ndarray, manifest: Manifest) -> float:
    """Mean validation NME over the faces where it is finite (``inf`` when none is)."""
    nme = validation_nme(pred_img, manifest, meta_scheme({"scheme": {"name": manifest.scheme}}))
    ok = np.isfinite(nme)
    return float(np.mean(nme[ok])) if ok.any() else float("inf")


@dataclass
class CropData:
    """Arrays for one split, ready for ``render_batch``."""

    manifest: Manifest
    crops: np.ndarray  # (M, S, S, 3) memory map
    index: np.ndarray  # (N,) rows of crops
    lm_cache: np.ndarray  # (N, L, 2) landmarks in cache pixels
    frames: np.ndarray  # (N, 4) base frames in cache pixels
    mask: np.ndarray  # (N, L) landmarks usable for the loss (finite)


def load_split(manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(crop cache, cache rows, landmarks in cache pixels with NaN as 0, finite-landmark mask) of a manifest."""
    if np.isnan(manifest.cache_matrix).any() or (manifest.cache_index < 0).any():
        raise DataError(f"{manifest.path}: some lines have no crop cache (run `facelm prepare` again)")
    crops = manifest.crops()
    lm = cache_landmarks(manifest.cache_matrix, manifest.landmarks)
    mask = np.isfinite(lm).all(-1)
    lm = np.nan_to_num(lm)
    return crops, manifest.cache_index, lm, mask


def _to_image(manifest: Manifest, pred_cache: np.ndarray) -> np.ndarray:
    return apply_affines(invert_affines(manifest.cache_matrix), pred_cache)


# -- torch models -------------------------------------------------------------------------------------------------

def predict_crops(model, data: CropData, frames: np.ndarray, device, flip_perm: np.ndarray, batch: int = 256,
                  precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` on plain crops of ``frames``; returns (pred in cache pixels (N, L, 2), crop matrices)."""
    import torch

    model.eval()
    size = model.input_size
    mats, flips = frame_matrices(frames, size)
    preds = []
    with torch.no_grad():
        for s in range(0, len(frames), batch):
            sl = slice(s, s + batch)
            imgs, _, _ = render_batch(data.crops, data.index[sl], data.lm_cache[sl], mats[sl], flips[sl], flip_perm,
                                      size)
            x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                y = model(x.contiguous(memory_format=torch.channels_last))
            preds.append(y.float().cpu().numpy())
    p = np.concatenate(preds).astype(np.float64)
    return apply_affines(invert_affines(mats), p), mats


def predict_manifest(model, manifest: Manifest, scheme, device, stage1_pred_cache: np.ndarray | None = None,
                     precision: str = "fp32") -> np.ndarray:
    """Predictions in original-image pixels ``(N, L, 2)`` for every face of ``manifest`` (ground-truth boxes)."""
    crops, index, lm_cache, mask = load_split(manifest)
    from facelm.models import model_stage

    stage = model_stage(model.arch)
    frames = stage_frames(stage, manifest.info, lm_cache, scheme, stage1_pred_cache)
    data = CropData(manifest, crops, index, lm_cache, frames, mask)
    p_cache, _ = predict_crops(model, data, frames, device, np.array(scheme.flip_perm), precision=precision)
    return _to_image(manifest, p_cache)


# -- ONNX models --------------------------------------------------------------------------------------------------

def load_onnx_model(path, threads: int = 0, providers: tuple[str, ...] = ("CPUExecutionProvider",)
                    ) -> tuple[object, dict]:
    """(onnxruntime session, facelm metadata) of an exported model; ``ModelError`` if it is not one."""
    from facelm.ort import create_session

    meta = read_onnx_meta(path)
    return create_session(path, providers, threads), meta


def run_session(session, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Run a facelm ONNX session on ``(N, 3, H, W)`` float32 crops -> ``(N, L, 2)`` float32 crop pixels.

    A fixed-batch model is fed exactly its batch size (the last chunk padded).
    """
    inp = session.get_inputs()[0]
    out_name = session.get_outputs()[0].name
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
    bs = fixed or max(1, int(batch))
    x = np.asarray(images, dtype=np.float32)
    outs = []
    for s in range(0, len(x), bs):
        chunk = x[s:s + bs]
        k = len(chunk)
        if fixed and k < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - k, *chunk.shape[1:]), np.float32)])
        outs.append(session.run([out_name], {inp.name: np.ascontiguousarray(chunk)})[0][:k])
    if not outs:
        shape = session.get_outputs()[0].shape
        return np.zeros((0, int(shape[1]), 2), np.float32)
    return np.concatenate(outs).astype(np.float32)


def iter_manifest_crops(meta: dict, manifest: Manifest, stage1_pred_cache: np.ndarray | None = None,
                        batch: int = 64, rows: np.ndarray | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Model crops of a manifest's faces, built as in training validation (plain, no augmentation).

    Stage 1: the face square of the crop cache; stage 2: the upright square of ``stage1_pred_cache`` (stage-1
    shapes in cache pixels, ``(N, L, 2)``) or, without it, of the ground-truth shape.

    Yields:
        (crops ``(n, 3, S, S)`` float32 RGB [0, 255], crop matrices ``(n, 2, 3)`` cache -> crop pixels,
        manifest rows ``(n,)``).
    """
    crops, index, lm_cache, _ = load_split(manifest)
    stage = int(meta.get("stage", 1))
    scheme = meta_scheme(meta) if stage == 2 else None
    frames = stage_frames(stage, manifest.info, lm_cache, scheme, stage1_pred_cache)
    size = int(meta["input_size"][0])
    mats, flips = frame_matrices(frames, size)
    rows = np.arange(len(index)) if rows is None else np.asarray(rows, dtype=np.int64)
    flip_perm = np.arange(lm_cache.shape[1])
    for s in range(0, len(rows), batch):
        r = rows[s:s + batch]
        imgs, _, _ = render_batch(crops, index[r], lm_cache[r], mats[r], flips[r], flip_perm, size)
        yield np.ascontiguousarray(imgs.transpose(0, 3, 1, 2), dtype=np.float32), mats[r], r


def manifest_crops(meta: dict, manifest: Manifest, n: int | None = None, seed: int = 0,
                   stage1_pred_cache: np.ndarray | None = None) -> np.ndarray:
    """``n`` crops (a seeded random choice of faces; all when ``n`` is None or larger) -> ``(n, 3, S, S)``."""
    rows = np.arange(len(manifest))
    if n is not None and n < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
    parts = [c for c, _, _ in iter_manifest_crops(meta, manifest, stage1_pred_cache, rows=rows)]
    size = int(meta["input_size"][0])
    return np.concatenate(parts) if parts else np.zeros((0, 3, size, size), np.float32)


def onnx_predict_manifest(session, meta: dict, manifest: Manifest, stage1_pred_cache: np.ndarray | None = None,
                          batch: int = 64, same_scheme: bool = True) -> np.ndarray:
    """Predictions ``(N, L, 2)`` in original-image pixels of an ONNX model for every face of ``manifest``.

    Faces are cropped with their ground-truth boxes like :func:`predict_manifest` (a stage-2 model on the upright
    square of ``stage1_pred_cache``, else of the ground truth); outputs are mapped back through the crop and the
    crop-cache matrices. ``same_scheme=False`` accepts data in another scheme (its face squares frame stage 1;
    a stage-2 model then needs ``stage1_pred_cache``); L is the model's.
    """
    if same_scheme:
        check_meta_matches(meta, manifest)
    pred_cache = np.zeros((len(manifest), int(meta["num_landmarks"]), 2), np.float64)
    for imgs, mats, rows in iter_manifest_crops(meta, manifest, stage1_pred_cache, batch=batch):
        p = run_session(session, imgs, batch).astype(np.float64)
        pred_cache[rows] = apply_affines(invert_affines(mats), p)
    return _to_image(manifest, pred_cache)
