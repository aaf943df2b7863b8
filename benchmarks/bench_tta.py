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
import statistics

from bench_precision import split_extra, take_turns  # benchmarks/: the same runs, by precision


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--models", default="models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="none,flip,full")
    own, extra = split_extra(argv)
    args = ap.parse_args(own)
    modes = args.modes.split(",")
    if len(set(modes)) != len(modes) or not set(modes) <= {"none", "flip", "full"}:
        ap.error(f"--modes {args.modes}: give distinct values of none, flip, full")
    out = take_turns(args.images, args.models, {m: ["--tta", m] for m in modes}, args.rounds, extra)
    secs = out["seconds"]
    if "flip" in secs:
        out["time_over_flip"] = {m: round(statistics.median(a / b for a, b in zip(s, secs["flip"])), 3)
                                 for m, s in secs.items() if m != "flip"}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
