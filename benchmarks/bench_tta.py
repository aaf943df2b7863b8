"""The whole ``facelm predict`` with each test-time augmentation (``--tta none``, ``flip``, ``full``), wall clock,
one process per run (start-up included), the modes taking turns so that a change of the machine's load hits them
alike; medians over the rounds, and each mode's time as a ratio of ``flip``'s in the same round.

    python benchmarks/bench_tta.py IMAGES [--models models] [--rounds 3] [--modes none,flip,full] [-- EXTRA OPTIONS]

IMAGES is anything ``facelm predict`` takes (a folder, a list file). Prints one JSON document (docs/benchmarks.md,
"Test-time augmentation").
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


def run(images: str, models: str, tta: str, extra: list[str]) -> tuple[float, int]:
    exe = Path(sys.executable).with_name("facelm")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe) if exe.exists() else "facelm", "predict", images, "--models", models,
                        "--tta", tta, "-q", *extra], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"predict failed: {r.stderr.strip()[-1000:]}")
    return dt, sum(1 for line in r.stdout.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--models", default="models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="none,flip,full")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # options for facelm predict
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    modes = args.modes.split(",")
    if len(set(modes)) != len(modes) or not set(modes) <= {"none", "flip", "full"}:
        ap.error(f"--modes {args.modes}: give distinct values of none, flip, full")
    secs: dict[str, list[float]] = {m: [] for m in modes}
    n = 0
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for m in modes:
            dt, n = run(args.images, args.models, m, extra)
            secs[m].append(round(dt, 2))
        load.append(os.getloadavg()[0])
    flags = cpu_flags()
    out = {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "int8_dot_product": int8_dot_product(flags, cpu_arch()), "avx2": "avx2" in flags,
           "images": n, "predict_options": extra, "load_avg_1m": [round(x, 2) for x in load],
           "seconds": secs, "images_s": {m: round(n / statistics.median(s), 2) for m, s in secs.items()}}
    if "flip" in secs:
        out["time_over_flip"] = {m: round(statistics.median(a / b for a, b in zip(s, secs["flip"])), 3)
                                 for m, s in secs.items() if m != "flip"}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
