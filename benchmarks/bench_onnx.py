"""fp32 vs int8 (and optionally fp16) ONNX speed of CNN-6 and CNN-7 with plain onnxruntime on the CPU.

For each architecture: export an fp32 ONNX (full width, random weights, or a given checkpoint), quantise it to
int8 exactly as ``facelm export --quantize int8`` does (QDQ, per-channel int8 weights, uint8 activations, MinMax
calibration; here on random-ish calibration crops unless ``--calib DATA`` is given), then time both sessions
interleaved (so background load hits both alike): crops/s at batch 32 (median batch time) and latency at batch 1.
Prints one JSON document with the int8/fp32 ratios.

    python benchmarks/bench_onnx.py                       # both archs, random weights, onnxruntime's threads
    python benchmarks/bench_onnx.py --threads 1 --seconds 5
    python benchmarks/bench_onnx.py --arch cnn6 --checkpoint runs/cnn6/best.pt --calib work/ytf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facelm.checkpoint import save_checkpoint
from facelm.cpu_features import cpu_flags, cpu_name
from facelm.export import (
    bench_sessions, convert_fp16, export_onnx, make_session, manifest_crops, quantize_int8, random_crops,
    run_session,
)
from facelm.models import create_model, model_input_size
from facelm.schemes import get_scheme


def _random_checkpoint(arch: str, path: Path, num_landmarks: int = 68, seed: int = 0) -> Path:
    """A full-width, random-weight checkpoint with the metadata an export needs."""
    torch.manual_seed(seed)
    model = create_model(arch, num_landmarks, width=1.0)
    size = model_input_size(arch)
    scheme = get_scheme("300w68")
    meta = {"arch": arch, "stage": 2 if arch == "cnn7" else 1, "width": 1.0, "scheme": scheme.to_dict(),
            "num_landmarks": num_landmarks, "input_size": [size, size], "channels": "RGB",
            "pixel_norm": {"input_range": [0, 255], "mean": 127.5, "std": 128.0, "applied": "inside the model"},
            "coord_frame": "crop_pixels", "note": "random weights (benchmark)"}
    save_checkpoint({"format": "facelm-checkpoint", "format_version": 1, "arch": arch, "model": model.state_dict(),
                     "meta": meta, "config": {}}, path)
    return path


def _cpu_flags() -> list[str]:
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or "vnni" in f)


def bench_arch(arch: str, work: Path, args) -> dict:
    ck = Path(args.checkpoint) if args.checkpoint else _random_checkpoint(arch, work / f"{arch}.pt")
    f32 = work / f"{arch}.onnx"
    meta = export_onnx(ck, f32)
    size = int(meta["input_size"][0])
    if args.calib:
        from facelm.manifest import load_manifest

        m = load_manifest(args.calib)
        calib = manifest_crops(meta, m.split("train") if len(m.split("train")) else m, args.calib_crops)
    else:
        calib = random_crops(args.calib_crops, size, seed=1)
    t0 = time.perf_counter()
    q8 = work / f"{arch}-int8.onnx"
    quantize_int8(f32, q8, calib)
    t_quant = time.perf_counter() - t0
    paths = {"fp32": f32, "int8": q8}
    if args.fp16:
        paths["fp16"] = work / f"{arch}-fp16.onnx"
        convert_fp16(f32, paths["fp16"])
    sessions = {k: make_session(p, args.threads) for k, p in paths.items()}
    x = random_crops(8, size, seed=2)
    ref = run_session(sessions["fp32"], x)
    diffs = {k: float(np.abs(run_session(s, x) - ref).max()) for k, s in sessions.items() if k != "fp32"}
    thr = bench_sessions(sessions, size, batch=args.batch, seconds=args.seconds)
    lat = bench_sessions(sessions, size, batch=1, seconds=args.seconds / 2)
    res = {
        "checkpoint": str(ck) if args.checkpoint else "random weights, width 1",
        "input_size": size,
        "bytes": {k: p.stat().st_size for k, p in paths.items()},
        "quantize_seconds": round(t_quant, 1),
        "max_abs_px_vs_fp32": diffs,
        f"crops_per_s_batch{args.batch}": {k: v["crops_per_s"] for k, v in thr.items()},
        "latency_ms_batch1": {k: v["ms_per_batch"] for k, v in lat.items()},
        "runs": {k: v["runs"] for k, v in thr.items()},
    }
    res["ratio_int8_over_fp32_throughput"] = round(thr["int8"]["crops_per_s"] / thr["fp32"]["crops_per_s"], 3)
    res["ratio_fp32_over_int8_latency"] = round(lat["fp32"]["ms_per_batch"] / lat["int8"]["ms_per_batch"], 3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="cnn6,cnn7", help="comma-separated: cnn6, cnn7")
    ap.add_argument("--checkpoint", help="a checkpoint instead of random weights (only with one --arch)")
    ap.add_argument("--calib", help="prepared dataset for calibration crops (default: random-ish crops)")
    ap.add_argument("--calib-crops", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per model and batch size")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--fp16", action="store_true", help="also time the fp16 model (slow on CPU)")
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if args.checkpoint and len(archs) != 1:
        ap.error("--checkpoint needs exactly one --arch")
    import onnxruntime

    out = {"onnxruntime": onnxruntime.__version__, "cpu": cpu_name(), "cpu_flags": _cpu_flags(),
           "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "threads": args.threads or "onnxruntime default", "load_avg_1m": os.getloadavg()[0],
           "provider": "CPUExecutionProvider", "results": {}}
    with tempfile.TemporaryDirectory(prefix="facelm-bench-") as d:
        for arch in archs:
            print(f"benchmarking {arch}...", file=sys.stderr, flush=True)
            out["results"][arch] = bench_arch(arch, Path(d), args)
    out["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
