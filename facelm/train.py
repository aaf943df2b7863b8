"""The training loop (one stage: CNN-6 or CNN-7), read top to bottom.

Data: faces come from the crop cache of a prepared dataset (``facelm prepare``); each batch is cut from the
memory-mapped cache on the CPU (one OpenCV warp per face) or on the training device (the whole batch at once),
ahead of the loop in background threads (``facelm.train_batches``). Augmentation draws from
``numpy.random.default_rng([seed, step, 0, 1])`` and the sample order from ``default_rng([seed, epoch])``, so a
resumed run sees exactly the batches the uninterrupted run would have, and N processes the batches of one.

Compute: bf16 autocast (fp16 with a gradient scaler on GPUs without bf16), channels-last, optionally
``torch.compile``; the loss is checked for NaN at each log and validation step, not each step, so that a GPU is
never waited for in between.

Stage 2 (CNN-7) crops are upright: the face box and the in-plane angle are rebuilt from a shape, either the
stage-1 model's prediction on the plain crop (``stage1=...``, as at inference) or the ground truth, with the
paper's ±10° rotation and 5% box noise on top.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from facelm import __version__
from facelm._io import atomic_write_json
from facelm.checkpoint import (  # noqa: F401 - load_init_weights, load_model_from_checkpoint, pick_device: re-exported
    build_meta,
    load_init_weights,
    load_model_from_checkpoint,
    pick_device,
)
from facelm.config import TrainConfig
from facelm.crops import cache_geometry, frame_matrices
from facelm.errors import DataError, ModelError, UsageError
from facelm.geometry import apply_affines
from facelm.heatmap.objective import HeatmapObjective, TrainView, is_heatmap_model
from facelm.losses import create_loss, loss_params
from facelm.manifest_predict import (  # noqa: F401 - predict_manifest, validation_nme: re-exported
    CropData as _Data,
    default_normaliser,
    load_split as _load_split,
    predict_crops,
    predict_manifest,
    validation_nme,
)
from facelm.models import create_model, list_models, model_input_size, model_stage
from facelm.train_batches import Batch, BatchSampler
from facelm.train_data import (  # noqa: F401 - source_nme: re-exported
    Source,
    load_sources,
    m_template,
    source_frames,
    source_nme,
)
from facelm import _signals
from facelm.train_run import (  # noqa: F401 - DivergedError: re-exported
    DivergedError,
    RunFolder,
    SigtermFlag,
    check_run_folder,
    shielded_from_signals,
)

__all__ = ["train", "TrainResult", "default_normaliser", "lr_at", "predict_manifest", "DivergedError"]


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at ``step`` (0-based).

    1. linear warm-up over ``cfg.warmup`` steps to ``cfg.lr``;
    2. then ``loglinear``: geometric decay from ``lr`` to ``lr_end`` (the paper's choice, docs/training.md), or
       ``cosine``: half-cosine from ``lr`` to ``lr_end``.
    """
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup - 1)
    p = min(1.0, max(0.0, (step - cfg.warmup) / span))
    if cfg.schedule == "loglinear":
        return float(math.exp(math.log(cfg.lr) + p * (math.log(cfg.lr_end) - math.log(cfg.lr))))
    return float(cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * p)))


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 autocast on CUDA GPUs with bf16 (else fp16 with a gradient scaler) and on CPUs with native
    bf16 (AVX512-BF16/AMX), else fp32. ``fp16`` needs CUDA.

    On CPUs without it, bf16 autocast is emulated and measured here more than 10x *slower* than fp32.
    """
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("`precision` fp16 (with a gradient scaler) needs CUDA; use bf16 or fp32 on this device")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cpu = getattr(torch, "cpu", None)
    fast = False
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        fast = fast or bool(fn and fn())
    return "bf16" if fast else "fp32"


@dataclass
class TrainResult:
    summary: dict
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


@dataclass
class _Setup:
    """Where and how a run computes: distributed rank/world, device, precision, torch threads."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    precision: str
    threads: int

    def settings(self) -> dict:
        return {"device": str(self.device), "world": self.world, "threads": self.threads,
                "precision": self.precision}


def _setup(cfg: TrainConfig) -> _Setup:
    rank, world, local_rank = _dist_info()
    if cfg.arch not in list_models():
        raise UsageError(f"unknown `arch` {cfg.arch!r} (known: {', '.join(list_models())})")
    if cfg.batch_size % world:
        raise UsageError(f"`batch_size` {cfg.batch_size} does not split evenly over {world} processes (the global "
                         "batch is shared out equally)")
    device = pick_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest convolutions
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    return _Setup(rank, world, local_rank, device, precision, threads)


@dataclass
class _TrainData:
    """The training sources with their crop frames, their val splits, and what the model is sized from."""

    sources: list[Source]
    vals: list[Source | None]
    scheme: object
    info: dict
    manifest_sha256: str  # of the training data (facelm.train_data.load_sources)
    input_size: int
    val_m: object  # the val faces "best" follows (the first source's)
    k_max: int  # rows of the largest scheme-map matrix (targets are padded to it)
    mean_shape: np.ndarray  # (L, 2) in input pixels: the network starts there

    @property
    def faces(self) -> int:
        return sum(len(s) for s in self.sources)


def _load_data(cfg: TrainConfig, device: torch.device) -> _TrainData:
    """Sources (facelm.train_data), their frames (stage-2 ones from the stage-1 model's shapes when given), and
    the mean shape of the plain training crops of the model's scheme."""
    sources, vals, scheme, info, manifest_sha256 = load_sources(cfg)
    train_m = sources[0].manifest
    try:
        input_size = model_input_size(cfg.arch, **cfg.model_options())
    except (TypeError, ValueError) as e:
        raise UsageError(f"`arch` {cfg.arch}: {e}") from None
    cache_size, margin = cache_geometry(info)
    stage = model_stage(cfg.arch)
    m_srcs = [s for s in sources if s.same_scheme]
    template = m_template(np.concatenate([s.lm_cache[s.mask.all(1)] for s in m_srcs]), scheme) if m_srcs else None

    # -- stage 1 for CNN-7 crops ---------------------------------------------------------------------------
    stage1_model = None
    if cfg.stage1:
        if stage != 2:
            raise UsageError("`stage1` only applies to stage-2 architectures (`arch` cnn7 or cnn6r)")
        stage1_model, s1_meta = load_model_from_checkpoint(cfg.stage1, device)
        if s1_meta.get("stage", 1) != 1 or model_stage(s1_meta["arch"]) != 1:
            raise ModelError(f"{cfg.stage1}: a stage-2 {s1_meta['arch']} model; `stage1` takes a stage-1 model "
                             "(cnn6, or a heatmap model)")
        if s1_meta["scheme"]["name"] != scheme.name:
            raise ModelError(f"{cfg.stage1}: stage-1 scheme {s1_meta['scheme']['name']!r} does not match the "
                             f"data's {scheme.name!r}")
    for src in [*sources, *(v for v in vals if v is not None)]:
        s1_shapes = None
        if stage1_model is not None:
            f1 = source_frames(src, 1, scheme, template, cache_size, margin)
            d1 = _Data(src.manifest, src.crops, src.index, src.lm_cache, f1, src.mask)
            s1_shapes, _ = predict_crops(stage1_model, d1, f1, device, np.array(scheme.flip_perm))
        src.frames = source_frames(src, stage, scheme, template, cache_size, margin, s1_shapes)
    val_m = vals[0].manifest if vals[0] is not None else train_m.select(np.zeros(len(train_m), bool))
    k_max = max(scheme.num_landmarks, *(s.smap.matrix.shape[0] for s in sources))

    # mean shape of the plain training crops of the model's scheme, in input pixels: the network starts there
    base = m_srcs[0] if m_srcs else sources[0]
    m0, _ = frame_matrices(base.frames, input_size)
    if m_srcs:
        lm_in = apply_affines(m0, base.lm_cache)
    else:
        raise DataError(f"no `data` folder is in the model's scheme {scheme.name!r}: the first folder sets it")
    return _TrainData(sources, vals, scheme, info, manifest_sha256, input_size, val_m, k_max, lm_in.mean(0))


@dataclass
class _Objective:
    """The network, what the loss is computed on (``train_module``: the model or its heatmap view), the loss, the
    optimiser, and the metadata its checkpoints carry."""

    model: torch.nn.Module
    train_module: torch.nn.Module
    loss_fn: object
    heatmap: bool
    opt: torch.optim.Optimizer
    meta: dict
    scaler: object = None  # torch.amp.GradScaler with fp16


def _build_objective(cfg: TrainConfig, data: _TrainData, env: _Setup, resume: bool) -> _Objective:
    scheme, device = data.scheme, env.device
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(cfg.arch, scheme.num_landmarks, mean_shape=data.mean_shape, width=cfg.width,
                             **cfg.model_options()).to(device)
    except (TypeError, ValueError) as e:
        raise UsageError(f"`arch` {cfg.arch}: {e}") from None
    if cfg.init and not resume:
        load_init_weights(model, cfg.init)
    if cfg.dropout:
        model.dropout = cfg.dropout  # CNN-6/7 (config checks the arch); active in training mode only
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    heatmap = is_heatmap_model(model)
    if heatmap:
        if getattr(model, "boundary", False) and not scheme.boundaries:
            raise UsageError(f"`boundary` needs landmark curves, and scheme {scheme.name!r} defines none")
        loss_fn = HeatmapObjective(cfg.loss, model, scheme, sigma=cfg.sigma, schedule=cfg.sigma_schedule,
                                   delta=cfg.sigma_delta, loss_map=cfg.loss_map)
        loss_fn.init_model(model)  # (a resumed run loads its weights over this below)
        train_module = TrainView(model)
    else:
        loss_fn = create_loss(cfg.loss, arch=cfg.arch, wing_w=cfg.wing_w, wing_eps=cfg.wing_eps)
        train_module = model
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    manifest_hash = data.manifest_sha256
    meta = build_meta(cfg=cfg, scheme=scheme, input_size=data.input_size, mean_shape=data.mean_shape,
                      loss=loss_fn.params() if heatmap else loss_params(loss_fn), manifest_sha256=manifest_hash,
                      prepare_info=data.info, stage1=cfg.stage1, width=cfg.width,
                      model_options=cfg.model_options())
    scaler = torch.amp.GradScaler(device.type) if env.precision == "fp16" else None
    return _Objective(model, train_module, loss_fn, heatmap, opt, meta, scaler)


_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _Stepper:
    """One optimiser step: the module (DDP-wrapped with several processes, ``torch.compile``d when asked), autocast
    at the run's precision, the gradient scaler with fp16."""

    def __init__(self, cfg: TrainConfig, obj: _Objective, env: _Setup):
        self.cfg, self.obj = cfg, obj
        module = obj.train_module
        if env.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            module = DDP(module, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        self.module = torch.compile(module) if cfg.compile else module
        self.device, self.dtype = env.device, _AUTOCAST.get(env.precision)

    def __call__(self, batch: Batch, step: int) -> torch.Tensor:
        """Forward, backward and update on ``batch``; returns the loss (on the device: not waited for)."""
        obj, cfg = self.obj, self.cfg
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            pred = self.module(batch.x)
        if obj.heatmap:  # heatmap targets are drawn from the landmarks here, on the device
            loss = obj.loss_fn(pred, batch.y, batch.mask, step / max(1, cfg.steps))
        else:
            pred = pred.float()
            if batch.maps is not None:  # faces of other schemes: the loss of the mapped points (scheme_maps)
                pred = torch.einsum("nkl,nlc->nkc", batch.maps, pred)
            loss = obj.loss_fn(pred, batch.y, batch.mask)
        obj.opt.zero_grad(set_to_none=True)
        scaler = obj.scaler
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if cfg.grad_clip > 0:
            if scaler is not None:
                scaler.unscale_(obj.opt)
            torch.nn.utils.clip_grad_norm_(obj.model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(obj.opt)
            scaler.update()
        else:
            obj.opt.step()
        return loss.detach()


class _LossWatch:
    """The losses of the steps since the last check, kept on the device (reading each one would wait for the GPU
    every step); ``check`` reads them, stops a diverged run at its first non-finite loss, and adds them up for the
    log."""

    def __init__(self, run: RunFolder):
        self.run, self.pending, self.first = run, [], 0
        self.total, self.count = 0.0, 0

    def add(self, step: int, loss: torch.Tensor) -> None:
        if not self.pending:
            self.first = step
        self.pending.append(loss.float())
        if len(self.pending) >= 1000:  # with rare log steps: read them now and then all the same
            self.check()

    def check(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).cpu().tolist()
        self.pending = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise self.run.diverged(v, self.first + i)
        self.total, self.count = self.total + sum(values), self.count + len(values)

    def mean(self) -> float:
        """The mean loss since the last ``mean`` (after a ``check``)."""
        m = self.total / max(1, self.count)
        self.total, self.count = 0.0, 0
        return m


def _validate(model: torch.nn.Module, data: _TrainData, device: torch.device) -> tuple[float, dict]:
    """Mean NME on the first source's val split (the one "best" follows) and on every source's."""
    per = {}
    for src, v in zip(data.sources, data.vals):
        if v is not None:
            nme = source_nme(model, v, device)
            per[src.name] = float(np.mean(nme[np.isfinite(nme)])) if np.isfinite(nme).any() else float("inf")
    model.train()
    first = per.get(data.sources[0].name, float("nan")) if data.vals[0] is not None else float("nan")
    return first, per


def _validate_and_save(run: RunFolder, data: _TrainData, device: torch.device) -> float:
    """Validate, log, save ``last.pt`` (and ``best.pt`` when better); returns the val NME."""
    val, per_source = _validate(run.obj.model, data, device)
    # without validation data "best" is simply the latest checkpoint
    improved = val < run.best_nme if len(data.val_m) else True
    if improved:
        run.best_nme, run.best_step = (val if len(data.val_m) else run.best_nme), run.step
    rec = {"step": run.step, "val_nme": val, "best_nme": run.best_nme, "best_step": run.best_step}
    if len(data.sources) > 1:
        rec["val_nme_by_source"] = per_source
    run.log(rec)
    run.save("last.pt")
    if improved:
        run.save("best.pt")
    return val


def train(cfg: TrainConfig, *, resume: bool = False, force: bool = False,
          on_log: Callable[[dict], None] | None = None, on_start: Callable[[dict], None] | None = None,
          warn: Callable[[str], None] | None = None) -> TrainResult:
    """Train one model as configured; see the module docstring. Returns the summary written to stdout."""
    if _dist_info()[0] == 0:
        check_run_folder(cfg, resume, force)  # before any work
    env = _setup(cfg)
    data = _load_data(cfg, env.device)
    obj = _build_objective(cfg, data, env, resume)
    run = RunFolder(cfg, obj, env.rank, on_log)
    sampler = BatchSampler(cfg, data.sources, data.input_size, data.scheme.num_landmarks, data.k_max, env.device,
                           env.rank, env.world)
    stepper = _Stepper(cfg, obj, env)
    run.open(resume, force)  # config.json: only once the run is built
    run.setup = {**env.settings(), "channels_last": cfg.channels_last, "compile": cfg.compile,
                 **sampler.settings()}
    stop, watch = SigtermFlag(), _LossWatch(run)
    if on_start:
        on_start({"faces": data.faces, "val_faces": len(data.val_m), "steps": cfg.steps, "start_step": run.step,
                  **run.setup})
    obj.model.train()
    t_start = time.perf_counter()
    seen, last_val, interrupted = 0, float("nan"), False
    sampler.start(run.step)
    try:
        while run.step < cfg.steps:
            if stop.raised:
                raise KeyboardInterrupt
            batch = sampler.next(run.step)
            lr = lr_at(cfg, run.step)
            for g in obj.opt.param_groups:
                g["lr"] = lr
            watch.add(run.step, stepper(batch, run.step))
            run.step += 1
            seen += len(batch) * env.world
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                watch.check()
                el = time.perf_counter() - t_start
                run.log({"step": run.step, "loss": watch.mean(), "lr": lr,
                         "img_s": seen / el if el > 0 else None, "elapsed": round(el, 2)})
            if run.step % cfg.val_every == 0 or run.step == cfg.steps:
                watch.check()
                if env.rank == 0:
                    last_val = _validate_and_save(run, data, env.device)
                if env.world > 1:
                    import torch.distributed as dist

                    dist.barrier()
    except KeyboardInterrupt:
        interrupted = True
        _signals.mark_stopping()  # the command's later signals are ignored (facelm._signals; a no-op in a library)
        with shielded_from_signals():  # a second Ctrl-C must not lose the run
            watch.check()  # (a diverged run keeps its last good checkpoint)
            if run.step > 0:
                run.save("last.pt")
    finally:
        sampler.close()
        stop.restore()
    summary = _summary(cfg, run, data, last_val, seen, time.perf_counter() - t_start, interrupted)
    if env.rank == 0 and not interrupted:
        atomic_write_json(run.out / "summary.json", summary)
    if env.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return TrainResult(summary=summary, interrupted=interrupted, history=run.history)


def _summary(cfg: TrainConfig, run: RunFolder, data: _TrainData, last_val: float, seen: int, elapsed: float,
             interrupted: bool) -> dict:
    out, scheme = run.out, data.scheme
    return {
        "run": str(out), "arch": cfg.arch, "loss": cfg.loss, "recipe": cfg.recipe, "scheme": scheme.name,
        "steps": run.step, "target_steps": cfg.steps, "batch_size": cfg.batch_size, "train_faces": data.faces,
        "sources": [{"data": str(sr.manifest.path.parent), "scheme": sr.scheme.name, "weight": sr.weight,
                     "train_faces": len(sr), "val_faces": len(v) if v is not None else 0}
                    for sr, v in zip(data.sources, data.vals)],
        "val_faces": len(data.val_m), "val_normaliser": default_normaliser(scheme.name),
        "final_val_nme": last_val, "best_val_nme": run.best_nme if math.isfinite(run.best_nme) else None,
        "best_step": run.best_step, "seconds": round(elapsed, 2),
        "img_per_s": round(seen / elapsed, 1) if elapsed > 0 else None, "device": run.setup["device"],
        "precision": run.setup["precision"], "setup": run.setup,
        "interrupted": interrupted, "checkpoint": _checkpoint(run), "last": _existing(out / "last.pt"),
        "facelm_version": __version__,
    }


def _existing(p) -> str | None:
    return str(p) if p.is_file() else None


def _checkpoint(run: RunFolder) -> str | None:
    """best.pt once a validation saved it; before that (interrupted early) last.pt, or None when nothing was
    saved."""
    return str(run.out / "best.pt") if run.best_step >= 0 else _existing(run.out / "last.pt")
