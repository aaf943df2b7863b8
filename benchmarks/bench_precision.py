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


def run(images: str, models: str, options: list[str]) -> tuple[float, int]:
    """Seconds of one ``facelm predict IMAGES --models MODELS -q OPTIONS`` process, and its output lines."""
    exe = Path(sys.executable).with_name("facelm")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe) if exe.exists() else "facelm", "predict", images, "--models", models, "-q",
                        *options], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"predict failed: {r.stderr.strip()[-1000:]}")
    return dt, sum(1 for line in r.stdout.splitlines() if line.strip())


def split_extra(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """(this script's arguments, the predict options after ``--``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        return argv, []
    return argv[:argv.index("--")], argv[argv.index("--") + 1:]


def take_turns(images: str, models: str, variants: dict[str, list[str]], rounds: int, extra: list[str]) -> dict:
    """Each variant's predict options (plus ``extra``) run once per round, the variants taking turns; the machine,
    the load, the seconds of every run and the median images/s per variant."""
    secs: dict[str, list[float]] = {v: [] for v in variants}
    n = 0
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for v, opts in variants.items():
            dt, n = run(images, models, [*opts, *extra])
            secs[v].append(round(dt, 2))
        load.append(os.getloadavg()[0])
    flags = cpu_flags()
    return {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "int8_dot_product": int8_dot_product(flags, cpu_arch()), "avx2": "avx2" in flags,
            "images": n, "predict_options": extra, "load_avg_1m": [round(x, 2) for x in load],
            "seconds": secs, "images_s": {v: round(n / statistics.median(s), 2) for v, s in secs.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--models", default="models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,int8")
    own, extra = split_extra(argv)
    args = ap.parse_args(own)
    out = take_turns(args.images, args.models, {p: ["--precision", p] for p in args.precisions.split(",")},
                     args.rounds, extra)
    secs = out["seconds"]
    if "fp32" in secs and "int8" in secs:
        per = [a / b for a, b in zip(secs["fp32"], secs["int8"])]
        out["int8_over_fp32"] = {"median": round(statistics.median(per), 3), "rounds": [round(x, 3) for x in per]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
