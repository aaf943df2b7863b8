"""Training batches, ready on the training device, rendered ahead of the loop in background threads.

Every batch starts as a *plan* (``facelm.train_data.plan_batch``): the faces of step ``s`` and the augmentation
drawn for them from ``numpy.random.default_rng([seed, s, 0, 1])``, for the whole global batch; a distributed rank
takes its share of the plan, so N processes see exactly the faces and draws of one process with the same global
batch. The plan is a pure function of the step, so a resumed run sees the batches of the uninterrupted run.

The pixels are then cut from the crop cache in one of two ways (``augment_on``):

* ``cpu``: OpenCV, one ``warpAffine`` (and blur) per face (``facelm.augment.warp_crops``), as facelm always did;
* ``device``: the cache rows of the whole batch are read at once (or held on the device, ``device_cache``),
  moved to the training device once per batch, and warped there with ``affine_grid``/``grid_sample`` by the same
  matrices, then blurred with the same Gaussian kernel by a separable convolution. Bilinear, zero border, rounded
  to integers like the uint8 crops of the CPU path, and the occluders (``--occlude``) painted with the same
  rectangles and colours: the two paths differ by interpolation error only (tests/test_train_batches.py), and the
  targets are identical (``facelm.augment.target_landmarks``). The photometric changes (``--photometric``) are
  made by the CPU path's own code on a host copy of the crops they touch (JPEG has no device kernel), so they
  cost the device path one round trip of those crops.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facelm.augment import AugmentConfig, apply_photometric, gaussian_kernel
from facelm.train_data import BatchPlan, Source, pick_batch, plan_batch, warp_plan

__all__ = ["Batch", "BatchSampler", "DevicePixels", "crop_theta", "occlude_on_device", "photometric_on_device",
           "resolve_augment_on", "warp_on_device"]

#: ``device_cache`` auto: the training crops are held on a CUDA device when they take at most this share of it.
DEVICE_CACHE_SHARE = 0.25


@dataclass
class Batch:
    """A training batch on the device: crops ``x`` (B, 3, S, S) float RGB in [0, 255], targets ``y`` (B, K, 2),
    ``mask`` (B, K) bool, scheme ``maps`` (B, K, L) or None."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.x)

    def record_stream(self, stream) -> None:
        """Tell the CUDA caching allocator that ``stream`` uses these tensors (they were made on a side stream)."""
        for t in (self.x, self.y, self.mask, self.maps):
            if t is not None:
                t.record_stream(stream)


def resolve_augment_on(augment_on: str, device: torch.device) -> str:
    """``auto`` -> ``device`` on CUDA, ``cpu`` elsewhere (measured no faster on a CPU, docs/benchmarks.md)."""
    if augment_on == "auto":
        return "device" if device.type == "cuda" else "cpu"
    return augment_on


def crop_theta(mats: np.ndarray, src_size: int, out_size: int) -> np.ndarray:
    """``affine_grid`` matrices ``(N, 2, 3)`` float32 (normalised output -> normalised source coordinates,
    ``align_corners=False``) of the cache -> input pixel matrices ``mats``: the same sampling as
    ``cv2.warpAffine(src, mats[i], (out_size, out_size))``."""
    m = np.asarray(mats, dtype=np.float64)  # the inverses (input -> source pixels), vectorised: no loop per face
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    a = np.stack([np.stack([m[:, 1, 1], -m[:, 0, 1]], 1), np.stack([-m[:, 1, 0], m[:, 0, 0]], 1)], 1)
    a /= det[:, None, None]
    t = -np.einsum("nij,nj->ni", a, m[:, :, 2])
    half = (out_size - 1) / 2.0
    theta = np.empty((len(m), 2, 3))
    theta[:, :, :2] = a * (out_size / src_size)
    theta[:, :, 2] = (2.0 / src_size) * (a.sum(2) * half + t) + 1.0 / src_size - 1.0
    return theta.astype(np.float32)


def warp_on_device(src: torch.Tensor, theta: torch.Tensor, out_size: int, blur_rows: torch.Tensor | None,
                   kernel: torch.Tensor) -> torch.Tensor:
    """Crops ``(N, 3, out, out)`` float32 from source crops ``src`` ``(N, S, S, 3)`` uint8 on the device.

    Bilinear with a zero border (``cv2.INTER_LINEAR``, ``cv2.BORDER_CONSTANT``), rounded to integers; the rows
    ``blur_rows`` are then blurred with the 1-D ``kernel`` along x and y with a mirrored border
    (``cv2.BORDER_REFLECT_101``) and rounded again, as OpenCV blurs a uint8 crop.
    """
    x = src.permute(0, 3, 1, 2).float()  # (channels-last in memory: the cheap conversion)
    out = F.grid_sample(x, _grid(theta, out_size), mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.round_()
    if blur_rows is not None and len(blur_rows):
        k = len(kernel)
        r = k // 2
        sel = F.pad(out.index_select(0, blur_rows), (r, r, 0, 0), mode="reflect")
        sel = F.conv2d(sel, kernel.view(1, 1, 1, k).expand(3, 1, 1, k), groups=3)
        sel = F.pad(sel, (0, 0, r, r), mode="reflect")
        sel = F.conv2d(sel, kernel.view(1, 1, k, 1).expand(3, 1, k, 1), groups=3).round_()
        out.index_copy_(0, blur_rows, sel)
    return out


def occlude_on_device(x: torch.Tensor, occ: np.ndarray | None) -> torch.Tensor:
    """``x`` (B, 3, S, S) with the occluders of ``facelm.augment.draw_occluders`` painted over (the CPU path's
    ``apply_occluders`` on the device: the same rectangles and colours)."""
    if occ is None:
        return x
    o = torch.from_numpy(np.ascontiguousarray(occ)).to(x.device)
    idx = torch.arange(x.shape[-1], device=x.device)
    cols = (idx[None] >= o[:, 0:1]) & (idx[None] < o[:, 2:3])  # (B, S)
    rows = (idx[None] >= o[:, 1:2]) & (idx[None] < o[:, 3:4])
    inside = (rows[:, :, None] & cols[:, None, :])[:, None]  # (B, 1, S, S)
    return torch.where(inside, o[:, 4:7].to(x.dtype)[:, :, None, None], x)


def photometric_on_device(x: torch.Tensor, ph: np.ndarray | None) -> torch.Tensor:
    """``x`` (B, 3, S, S), integer-valued, with the photometric changes of ``facelm.augment.draw_photometric``
    made by the CPU path's ``apply_photometric`` on a host copy of the crops they touch."""
    if ph is None:
        return x
    rows = np.flatnonzero(ph[:, 0] > 0)
    if not len(rows):
        return x
    idx = torch.from_numpy(rows).to(x.device)
    host = x.index_select(0, idx).permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    done = torch.from_numpy(apply_photometric(np.ascontiguousarray(host), ph[rows])).to(x.device)
    return x.index_copy(0, idx, done.permute(0, 3, 1, 2).to(x.dtype))


def _grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, size, size), align_corners=False)``, by broadcasting (cheaper on a CPU)."""
    u = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1
    t = theta[:, :, None, None, :]  # (N, 2, 1, 1, 3)
    g = t[..., 0] * u[None, None, None, :] + t[..., 1] * u[None, None, :, None] + t[..., 2]  # (N, 2, size, size)
    return g.permute(0, 2, 3, 1)


class DevicePixels:
    """The source crops of the device path: read per batch from the memory-mapped caches and moved to the device
    (pinned host memory on CUDA), or copied to the device once (``resident``) and indexed there."""

    def __init__(self, sources: list[Source], device: torch.device, resident: bool):
        self.sources, self.device, self.resident = sources, device, resident
        self.rows: list[np.ndarray] = []
        self.tensors: list[torch.Tensor] = []
        if resident:
            for src in sources:
                uniq = np.unique(src.index)
                t = torch.empty((len(uniq), *src.crops.shape[1:]), dtype=torch.uint8, device=device)
                for s in range(0, len(uniq), 2048):  # in chunks: no second copy of a large cache in host memory
                    t[s:s + 2048] = torch.from_numpy(np.ascontiguousarray(src.crops[uniq[s:s + 2048]])).to(device)
                self.rows.append(uniq)
                self.tensors.append(t)

    @staticmethod
    def nbytes(sources: list[Source]) -> int:
        """Bytes the training crops of ``sources`` take (what ``resident`` copies to the device)."""
        return sum(len(np.unique(s.index)) * int(np.prod(s.crops.shape[1:])) for s in sources)

    def gather(self, plan: BatchPlan) -> torch.Tensor:
        """The source crops of ``plan`` on the device, ``(B, S, S, 3)`` uint8."""
        shape = (len(plan), *self.sources[0].crops.shape[1:])
        if self.resident:
            out = torch.empty(shape, dtype=torch.uint8, device=self.device)
            for i in np.unique(plan.source):
                sel = np.flatnonzero(plan.source == i)
                pos = torch.from_numpy(np.searchsorted(self.rows[i], plan.rows[sel])).to(self.device)
                out[torch.from_numpy(sel).to(self.device)] = self.tensors[i].index_select(0, pos)
            return out
        host = torch.empty(shape, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        h = host.numpy()
        groups = np.unique(plan.source)
        if len(groups) == 1:
            np.take(self.sources[groups[0]].crops, plan.rows, axis=0, out=h)
        else:
            for i in groups:
                sel = np.flatnonzero(plan.source == i)
                h[sel] = self.sources[i].crops[plan.rows[sel]]
        return host.to(self.device, non_blocking=True)


class BatchSampler:
    """Seeded batches (module docstring), made ``threads`` steps ahead of the loop on worker threads (each with
    its own CUDA stream), ready on the device."""

    def __init__(self, cfg, sources: list[Source], input_size: int, num_points: int, k_max: int,
                 device: torch.device, rank: int = 0, world: int = 1):
        self.cfg, self.sources, self.device, self.rank, self.world = cfg, sources, device, rank, world
        self.input_size, self.num_points, self.k_max = input_size, num_points, k_max
        self.aug = AugmentConfig.for_arch(cfg.arch, cfg.rotate, cfg.full_turn, cfg.occlude,
                                          cfg.photometric) if cfg.augment else None
        self.augment_on = resolve_augment_on(cfg.augment_on, device)
        self.threads = cfg.loader_threads or (1 if device.type != "cuda" else 4)
        self.resident = False
        if self.augment_on == "device":
            self.resident = cfg.device_cache if cfg.device_cache is not None else _fits_on_device(sources, device)
            self.pixels = DevicePixels(sources, device, self.resident)
            self.kernel = torch.from_numpy(gaussian_kernel(self.aug.blur_sigma if self.aug else 1.0)).float()
            self.kernel = self.kernel.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the copies above are done before the loader streams read them
        self.pool = ThreadPoolExecutor(max_workers=self.threads)
        self.local = threading.local()
        self.futures: dict[int, Future] = {}

    def settings(self) -> dict:
        """What the data path resolved to (printed at the start and stored with the run)."""
        return {"augment_on": self.augment_on, "device_cache": self.resident, "loader_threads": self.threads}

    def plan(self, s: int) -> BatchPlan:
        """This rank's share of step ``s``'s global batch."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, s, 0, 1])
        groups = pick_batch(self.sources, s, cfg.batch_size, cfg.seed)
        plan = plan_batch(self.sources, groups, self.input_size, self.num_points, self.k_max, rng, self.aug)
        return plan.part(self.rank, self.world) if self.world > 1 else plan

    def make(self, s: int) -> Batch:
        """The batch of step ``s`` on the device (blocking; the worker threads call this)."""
        if self.device.type != "cuda":
            return self._make(s)
        stream = getattr(self.local, "stream", None)
        if stream is None:  # a new worker thread: its current device is cuda:0 until set (torchrun ranks use others)
            torch.cuda.set_device(self.device)
            stream = self.local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            batch = self._make(s)
        stream.synchronize()
        return batch

    def _make(self, s: int) -> Batch:
        plan = self.plan(s)
        dev = self.device
        if self.augment_on == "device":
            theta = torch.from_numpy(crop_theta(plan.mats, self.sources[0].crops.shape[1], self.input_size))
            blur = np.flatnonzero(plan.blur)
            x = warp_on_device(self.pixels.gather(plan), theta.to(dev), self.input_size,
                               torch.from_numpy(blur).to(dev) if len(blur) else None, self.kernel)
            x = photometric_on_device(occlude_on_device(x, plan.occluders), plan.photometric)
        else:
            sigma = self.aug.blur_sigma if self.aug is not None else 1.0
            imgs = torch.from_numpy(warp_plan(self.sources, plan, self.input_size, sigma))
            x = imgs.to(dev).permute(0, 3, 1, 2).float()
        x = x.contiguous(memory_format=torch.channels_last if self.cfg.channels_last else torch.contiguous_format)
        maps = None if plan.maps is None else torch.from_numpy(np.ascontiguousarray(plan.maps)).to(dev)
        return Batch(x, torch.from_numpy(plan.landmarks).to(dev), torch.from_numpy(plan.mask).to(dev), maps)

    def start(self, step: int) -> None:
        for s in range(step, min(step + self.threads, self.cfg.steps)):
            self.futures[s] = self.pool.submit(self.make, s)

    def next(self, step: int) -> Batch:
        """The batch of ``step``; the batch ``threads`` steps ahead is started."""
        batch = self.futures.pop(step).result()
        ahead = step + self.threads
        if ahead < self.cfg.steps:
            self.futures[ahead] = self.pool.submit(self.make, ahead)
        if self.device.type == "cuda":
            batch.record_stream(torch.cuda.current_stream(self.device))
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _fits_on_device(sources: list[Source], device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return DevicePixels.nbytes(sources) <= DEVICE_CACHE_SHARE * total
