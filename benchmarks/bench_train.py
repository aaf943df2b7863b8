"""Training throughput: the whole training loop against the bare model step, in the same run.

    python benchmarks/bench_train.py [PREPARED_DIR] [--device cpu|cuda] [--augment-on cpu device]
        [--steps-cnn6 60] [--steps-cnn7 15] [--batch 32] [--batch-cnn6 N] [--batch-cnn7 N] [--compile]
        [--repeats N]

For each network it measures crops (images) per second of
  * ``bare``: the training step of ``facelm.train`` (same model, optimiser, loss, precision, layout, compile) on
    one fixed batch already on the device: no data work at all; measured before, between and after the pipelines;
  * ``pipeline``: ``facelm.train.train`` on the prepared dataset with each ``--augment-on`` path (``cpu``: OpenCV
    warps one face at a time; ``device``: the whole batch warped on the training device), timed from the run's own
    step log after the warm-up steps (validation and checkpoints excluded);
and prints one JSON line with each ratio pipeline / bare (the target: >= 0.90), the ratio of the two paths
(``device_over_cpu``) and ``augment_only_crops_s`` (crops/s of making batches alone, each path, one thread). With
``--repeats N`` every measurement is taken N times, interleaved, and the medians are compared (a shared machine
drifts by more than the differences measured). On CUDA it adds the peak memory and the mean GPU utilisation
(``nvidia-smi``/NVML samples) of each pipeline run. Without PREPARED_DIR a synthetic set is prepared in a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from facelm.config import TrainConfig
from facelm.cpu_features import cpu_name
from facelm.losses import create_loss
from facelm.models import create_model, model_input_size
from facelm.train import _load_data, _Objective, _Setup, _Stepper, resolve_precision, train
from facelm.train_batches import Batch, BatchSampler


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(cfg: TrainConfig, device: torch.device, precision: str, steps: int, warm: int) -> float:
    """Crops/s of ``facelm.train``'s own step on one fixed batch on the device."""
    size = model_input_size(cfg.arch)
    torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as facelm.train sets it
    torch.manual_seed(0)
    model = create_model(cfg.arch, 68, width=cfg.width).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    obj = _Objective(model, model, create_loss("wing", arch=cfg.arch), False, opt, {}, scaler)
    step = _Stepper(cfg, obj, _Setup(0, 1, 0, device, precision, cfg.threads))
    b = cfg.batch_size
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = (torch.rand(b, 3, size, size, device=device) * 255).round().contiguous(memory_format=fmt)
    y = torch.rand(b, 68, 2, device=device) * size
    batch = Batch(x, y, torch.ones(b, 68, dtype=torch.bool, device=device), None)
    for i in range(steps + warm):
        if i == warm:
            _sync(device)
            t = time.perf_counter()
        step(batch, i)
    _sync(device)
    return steps * b / (time.perf_counter() - t)


def augment_only(cfg: TrainConfig, device: torch.device, paths: list[str], batches: int) -> dict:
    """Crops/s of making batches alone (plan, warp, blur, on the device), one thread, each path in turn."""
    torch.set_num_threads(cfg.threads)
    data = _load_data(cfg, device)
    out = {}
    for path in paths:
        if path == "cpu" and not _cv2_available():
            continue
        c = cfg.model_copy(update={"augment_on": path, "loader_threads": 1})
        sampler = BatchSampler(c, data.sources, data.input_size, data.scheme.num_landmarks, data.k_max, device)
        sampler.make(0)
        t = time.perf_counter()
        for s in range(1, batches + 1):
            sampler.make(s)
        out[path] = round(batches * cfg.batch_size / (time.perf_counter() - t), 1)
        sampler.close()
    return out


class GpuSampler:
    """Samples GPU utilisation (%) every 0.1 s in a thread: NVML through torch when present, else nvidia-smi."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.stop = device, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml: ask nvidia-smi
            idx = self.device.index or 0
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", str(idx)], capture_output=True, text=True, timeout=5).stdout
                return float(out.strip().splitlines()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return None

    def _run(self) -> None:
        while not self.stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append((time.perf_counter(), v))
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def mean(self, t0: float, t1: float) -> float | None:
        vals = [v for t, v in self.samples if t0 <= t <= t1]
        return round(sum(vals) / len(vals), 1) if vals else None


def pipeline(cfg: TrainConfig, device: torch.device, steps: int, warm: int) -> dict:
    """Crops/s of the whole training loop between the end of step ``warm`` and the last step."""
    clock = {}

    def on_log(rec: dict) -> None:
        if "loss" in rec:
            clock[rec["step"]] = (time.perf_counter(), rec["elapsed"])

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with GpuSampler(device) if device.type == "cuda" else _Null() as gpu:
        res = train(cfg, force=True, on_log=on_log)
    (w0, _), (w1, _) = clock[warm], clock[warm + steps]
    # the wall clock between the two log records: their own `elapsed` is rounded to 10 ms, which a fast CPU's
    # few tiny steps can fit inside (a zero interval)
    out = {"img_s": round(steps * cfg.batch_size / max(w1 - w0, 1e-9), 1), "setup": res.summary["setup"]}
    if device.type == "cuda":
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        out["gpu_util_pct"] = gpu.mean(w0, w1)
    return out


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _cv2_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def run_arch(arch: str, data: Path, args, device: torch.device, precision: str, out: Path) -> dict:
    batch = {"cnn6": args.batch_cnn6, "cnn7": args.batch_cnn7}[arch] or args.batch
    steps = {"cnn6": args.steps_cnn6, "cnn7": args.steps_cnn7}[arch]
    warm = args.warmup_steps
    steps = -(-steps // warm) * warm  # a whole number of log intervals
    cfg = TrainConfig(data=str(data), out=str(out / arch), arch=arch, loss="wing", steps=warm + steps,
                      batch_size=batch, threads=args.threads, val_every=10 ** 9, log_every=warm, warmup=0,
                      max_val=1, device=str(device), precision=precision, compile=args.compile,
                      width=args.width).filled()
    res: dict = {"batch": batch, "steps": steps, "repeats": args.repeats}
    bares, loops = [], {path: [] for path in args.augment_on}
    for _ in range(args.repeats):  # interleaved, so that a machine's drift hits every measurement alike
        bares.append(bare(cfg, device, precision, steps, warm))
        for path in args.augment_on:
            if path == "cpu" and not _cv2_available():
                res[f"pipeline_{path}"] = "skipped: OpenCV is not installed here"
                continue
            loops[path].append(pipeline(cfg.model_copy(update={"augment_on": path}), device, steps, warm))
    bares.append(bare(cfg, device, precision, steps, warm))
    res["augment_only_crops_s"] = augment_only(cfg, device, args.augment_on, args.augment_batches)
    base = statistics.median(bares)
    res["bare_img_s"], res["bare_runs"] = round(base, 1), [round(b, 1) for b in bares]
    for path, runs in loops.items():
        if not runs:
            continue
        p = dict(runs[len(runs) // 2])  # the setup and GPU figures of one run
        p["img_s"] = round(statistics.median(r["img_s"] for r in runs), 1)
        p["runs"] = [r["img_s"] for r in runs]
        p["ratio"] = round(p["img_s"] / base, 3)
        res[f"pipeline_{path}"] = p
        print(f"{arch} {path}: bare {base:.1f} crops/s, loop {p['img_s']:.1f} crops/s, ratio {p['ratio']:.3f}",
              file=sys.stderr)
    if isinstance(res.get("pipeline_cpu"), dict) and isinstance(res.get("pipeline_device"), dict):
        res["device_over_cpu"] = round(res["pipeline_device"]["img_s"] / res["pipeline_cpu"]["img_s"], 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="prepared dataset folder (default: a synthetic one)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--augment-on", nargs="+", default=["cpu", "device"], choices=["cpu", "device"])
    ap.add_argument("--archs", nargs="+", default=["cnn6", "cnn7"], choices=["cnn6", "cnn7"])
    ap.add_argument("--steps-cnn6", type=int, default=60)
    ap.add_argument("--steps-cnn7", type=int, default=15)
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (also the log interval)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batch-cnn6", type=int, default=0)
    ap.add_argument("--batch-cnn7", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats of every measurement (medians)")
    ap.add_argument("--augment-batches", type=int, default=10, help="batches timed for augment_only_crops_s")
    ap.add_argument("--width", type=float, default=1.0, help="channel width (1 = the paper's networks)")
    args = ap.parse_args()
    args.threads = args.threads or os.cpu_count() or 1
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else None
        if data is None:
            from facelm.prepare import PrepareOptions, prepare
            from facelm.synthetic import make_dataset

            csv, _ = make_dataset(tmp / "raw", n=256, size=160)
            prepare(PrepareOptions(source=csv, out=tmp / "prep", fmt="csv", holdout=0.05))
            data = tmp / "prep"
        result = {"data": str(data), "device": str(device), "precision": precision, "threads": args.threads,
                  "compile": args.compile, "width": args.width, "torch": str(torch.__version__),
                  "cpu": cpu_name(), "cpu_count": os.cpu_count(),
                  "date": time.strftime("%Y-%m-%d")}
        if device.type == "cuda":
            result["gpu"] = torch.cuda.get_device_name(device)
        for arch in args.archs:
            result[arch] = run_arch(arch, data, args, device, precision, tmp / "runs")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
