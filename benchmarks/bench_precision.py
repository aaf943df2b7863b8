"""The whole ``facelm predict`` at each precision, wall clock, one process per run (start-up included), the
precisions alternating so that a change of the machine's load hits them alike; medians over the rounds.

    python benchmarks/bench_precision.py IMAGES [--models models] [--rounds 3] [-- EXTRA PREDICT OPTIONS]

IMAGES is anything ``facelm predict`` takes (a folder, a list file). Prints one JSON document: per precision the
seconds of each round, the median images/s, and the median of the per-round int8/fp32 speed ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facelm.cpu_features import cpu_arch, cpu_flags, cpu_name, int8_dot_product


def run(images: str, models: str, precision: str, extra: list[str]) -> tuple[float, int]:
    exe = Path(sys.executable).with_name("facelm")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe) if exe.exists() else "facelm", "predict", images, "--models", models,
                        "--precision", precision, "-q", *extra], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"predict failed: {r.stderr.strip()[-1000:]}")
    return dt, sum(1 for line in r.stdout.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--models", default="models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,int8")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # options for facelm predict
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    precs = args.precisions.split(",")
    secs: dict[str, list[float]] = {p: [] for p in precs}
    n = 0
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for p in precs:
            dt, n = run(args.images, args.models, p, args.extra)
            secs[p].append(round(dt, 2))
        load.append(os.getloadavg()[0])
    flags = cpu_flags()
    out = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "int8_dot_product": int8_dot_product(flags, cpu_arch()), "avx2": "avx2" in flags,
           "images": n, "predict_options": args.extra, "load_avg_1m": [round(x, 2) for x in load],
           "seconds": secs, "images_s": {p: round(n / statistics.median(s), 2) for p, s in secs.items()}}
    if "fp32" in secs and "int8" in secs:
        per = [a / b for a, b in zip(secs["fp32"], secs["int8"])]
        out["int8_over_fp32"] = {"median": round(statistics.median(per), 3), "rounds": [round(x, 3) for x in per]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
