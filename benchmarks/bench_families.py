"""Speed of the two model families side by side: CNN-6, CNN-7 (coordinate regression) and the small hourglass and
SMT-Net (heatmaps), random weights, 68 points, on this machine's CPU.

* inference: each model exported to ONNX as ``facelm export`` does (decoding inside the graph for the heatmap
  models) and timed with onnxruntime, all sessions interleaved so background load hits them alike; crops/s at
  batch 32 (median batch time).
* training: one optimiser step (forward, loss, backward, AdamW) on a fixed batch of 16 crops, fp32, the models
  stepped round-robin for ``--seconds`` each; crops/s from the median step time. Heatmap models use the AWing loss
  with the weighted loss map on targets drawn from the batch's landmarks, as ``facelm train`` does.

Ratios are given against CNN-6 measured in the same run (the number to compare across machines).

    python benchmarks/bench_families.py --seconds 3 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from facelm.export import make_session
from facelm.heatmap.objective import HeatmapObjective, is_heatmap_model
from facelm.losses import create_loss
from facelm.models import create_model
from facelm.schemes import get_scheme

ARCHS = ("cnn6", "cnn7", "hourglass", "smt")


def _export(model: torch.nn.Module, size: int, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.full((2, 3, size, size), 127.0),), str(path), input_names=["images"],
                          output_names=["landmarks"], dynamic_axes={"images": {0: "b"}, "landmarks": {0: "b"}},
                          opset_version=17, dynamo=False)


def rng_feed(size: int, batch: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: all cores)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-batch", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    scheme = get_scheme("300w68")
    models = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        models[arch] = create_model(arch, 68).eval()

    # -- inference (ONNX) ------------------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        sizes = {}
        for arch, m in models.items():
            p = Path(tmp) / f"{arch}.onnx"
            _export(m, m.input_size, p)
            sessions[arch] = make_session(p, a.threads)
            sizes[arch] = m.input_size
        feeds = {arch: rng_feed(sizes[arch], a.batch) for arch in sessions}
        times = {arch: [] for arch in sessions}
        for arch, sess in sessions.items():  # warm-up
            sess.run(None, {"images": feeds[arch]})
        t_end = time.perf_counter() + a.seconds * len(sessions)
        while time.perf_counter() < t_end or min(len(t) for t in times.values()) < 3:
            for arch, sess in sessions.items():  # interleaved: background load hits every model alike
                t0 = time.perf_counter()
                sess.run(None, {"images": feeds[arch]})
                times[arch].append(time.perf_counter() - t0)
        cps = {arch: a.batch / float(np.median(t)) for arch, t in times.items()}
        infer = {arch: {"crops_per_s": round(v, 1), "vs_cnn6": round(v / cps["cnn6"], 4)} for arch, v in cps.items()}

    # -- training steps ----------------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    state = {}
    for arch, m in models.items():
        m.train()
        s = m.input_size
        x = torch.from_numpy(rng.uniform(0, 255, (a.train_batch, 3, s, s)).astype(np.float32))
        y = torch.from_numpy(rng.uniform(0.3 * s, 0.7 * s, (a.train_batch, 68, 2)).astype(np.float32))
        mask = torch.ones(a.train_batch, 68, dtype=torch.bool)
        if is_heatmap_model(m):
            obj = HeatmapObjective("awing", m, scheme, sigma=4.0 if arch == "smt" else 1.0,
                                   schedule="temporal" if arch == "smt" else "fixed", loss_map=True)

            def step(m=m, x=x, y=y, mask=mask, obj=obj):
                return obj(m.forward_train(x), y, mask, 0.5)
        else:
            loss = create_loss("wing", arch=arch)

            def step(m=m, x=x, y=y, mask=mask, loss=loss):
                return loss(m(x), y, mask)
        state[arch] = (step, torch.optim.AdamW(m.parameters(), lr=1e-4), [])
    for _ in range(2):  # warm-up
        for step, opt, _t in state.values():
            opt.zero_grad()
            step().backward()
            opt.step()
    t_end = time.perf_counter() + a.seconds * len(state)
    while time.perf_counter() < t_end or min(len(v[2]) for v in state.values()) < 3:
        for step, opt, times in state.values():
            t0 = time.perf_counter()
            opt.zero_grad()
            step().backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    train = {arch: round(a.train_batch / float(np.median(v[2])), 2) for arch, v in state.items()}
    out = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "threads": a.threads or os.cpu_count(), "loadavg": os.getloadavg()},
        "params": {arch: int(sum(p.numel() for p in m.parameters())) for arch, m in models.items()},
        "input_size": {arch: m.input_size for arch, m in models.items()},
        "inference_onnx_batch": a.batch, "inference": infer,
        "train_batch": a.train_batch,
        "train_crops_per_s": train, "train_vs_cnn6": {k: round(v / train["cnn6"], 4) for k, v in train.items()},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
