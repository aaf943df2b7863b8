"""Training throughput: the real data pipeline versus synthetic tensors, in the same run.

    python benchmarks/bench_train.py [PREPARED_DIR] [--steps-cnn6 60] [--steps-cnn7 15] [--batch 32]

For each network it measures images/s of
  * ``bare``: the same model, optimiser (AdamW) and Wing loss stepping on one fixed pre-made batch (no data work);
  * ``pipeline``: ``facelm.train.train`` on the prepared dataset (cache reads, augmentation warps, blur, prefetch
    thread), timed from its own step log (validation excluded).
and prints JSON with the ratio pipeline/bare (the target: the pipeline costs at most 10%, ratio >= 0.90).
Without PREPARED_DIR a synthetic set is prepared in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from facelm.config import TrainConfig
from facelm.losses import create_loss
from facelm.models import create_model, model_input_size
from facelm.train import resolve_precision, train


def bare(arch: str, steps: int, batch: int, threads: int, precision: str) -> float:
    torch.set_num_threads(threads)
    size = model_input_size(arch)
    model = create_model(arch, 68).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = create_loss("wing", arch=arch)
    x = (torch.rand(batch, 3, size, size) * 255).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 68, 2) * size
    warm = 3
    for i in range(steps + warm):
        if i == warm:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            p = model(x)
        loss = loss_fn(p.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t)


def pipeline(arch: str, data: Path, steps: int, batch: int, threads: int, out: Path) -> float:
    cfg = TrainConfig(data=str(data), out=str(out / arch), arch=arch, loss="wing", steps=steps + 3,
                      batch_size=batch, threads=threads, val_every=10 ** 9, log_every=1, warmup=0,
                      max_val=1).filled()
    res = train(cfg, force=True)
    logs = [r for r in res.history if "loss" in r]
    # images/s over the steps after the first 3 (same warm-up as bare), from the run's own clock
    t0 = next(r["elapsed"] for r in logs if r["step"] == 3)
    t1 = logs[-1]["elapsed"]
    return (logs[-1]["step"] - 3) * batch / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="prepared dataset folder (default: a synthetic one)")
    ap.add_argument("--steps-cnn6", type=int, default=60)
    ap.add_argument("--steps-cnn7", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else None
        if data is None:
            from facelm.prepare import PrepareOptions, prepare
            from facelm.synthetic import make_dataset

            csv, _ = make_dataset(tmp / "raw", n=256, size=160)
            prepare(PrepareOptions(source=csv, out=tmp / "prep", fmt="csv", holdout=0.05))
            data = tmp / "prep"
        precision = resolve_precision("auto", torch.device("cpu"))
        result = {"data": str(data), "batch": args.batch, "threads": args.threads, "precision": precision,
                  "torch": str(torch.__version__), "cpu_count": os.cpu_count()}
        for arch, steps in (("cnn6", args.steps_cnn6), ("cnn7", args.steps_cnn7)):
            b = bare(arch, steps, args.batch, args.threads, precision)
            p = pipeline(arch, data, steps, args.batch, args.threads, tmp / "runs")
            b2 = bare(arch, steps, args.batch, args.threads, precision)  # again: machines drift
            base = (b + b2) / 2
            result[arch] = {"bare_img_s": round(base, 1), "bare_runs": [round(b, 1), round(b2, 1)],
                            "pipeline_img_s": round(p, 1), "ratio": round(p / base, 3)}
            print(f"{arch}: bare {base:.1f} img/s, pipeline {p:.1f} img/s, ratio {p / base:.3f}", file=sys.stderr)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
