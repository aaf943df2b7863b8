"""Each tool's NME over the same faces: the faces a reference tool found, or the faces every tool found.

    python scripts/common_faces.py OUT [--ref dlib-own] [--tools facelm-boxes,mediapipe-boxes]
                                       [--csv per-face-val.csv]

OUT is a folder written by ``scripts/compare_tools.py --evaluate`` (its per-face CSV: one row per tool and face,
``nme`` inf for a face the tool missed). NME over the faces a tool found rewards a tool that misses its hardest
faces; here every tool is scored on one set of faces: those ``--ref`` found (default dlib-68 with its own detector,
the tool that misses most), and those all tools found (``--tools``: only these tools are scored and
intersected). Prints one JSON object on stdout: per subset, the face
count and each tool's mean and median NME in % and its misses among them (a tool that
missed some has a null mean).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np


def read_per_face(path: Path) -> dict[str, dict[str, float]]:
    """``{tool: {face id: nme}}`` from a compare_tools per-face CSV (tool = the JSONL's name without suffixes)."""
    by: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            tool = Path(row["model"]).name.split(".")[0]
            by.setdefault(tool, {})[row["id"]] = float(row["nme"])
    return by


def _pct(x: float) -> float | None:
    return round(100 * x, 2) if math.isfinite(x) else None


def over(by: dict[str, dict[str, float]], ids: list[str]) -> dict[str, dict]:
    """Mean and median NME (%) of each tool over ``ids``, and how many of them it missed (a miss counts as an
    infinite error: the mean is then null, the median may not be)."""
    out = {}
    for tool, nme in by.items():
        v = np.array([nme.get(i, math.inf) for i in ids])
        out[tool] = {"mean": _pct(float(v.mean())), "median": _pct(float(np.median(v))),
                     "missed": int((~np.isfinite(v)).sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--ref", default="dlib-own")
    ap.add_argument("--tools", default="", help="comma list: score only these tools (default: all in the CSV)")
    ap.add_argument("--csv", default="per-face-val.csv")
    a = ap.parse_args(argv)
    path = a.out / a.csv
    if not path.is_file():
        print(f"error: {path}: no such file (run scripts/compare_tools.py --evaluate first)", file=sys.stderr)
        return 2
    by = read_per_face(path)
    if a.tools:
        wanted = [t.strip() for t in a.tools.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in by]
        if unknown:
            print(f"error: --tools {','.join(unknown)}: not in {path} (tools: {', '.join(sorted(by))})",
                  file=sys.stderr)
            return 2
        by = {t: by[t] for t in wanted}
        if a.ref not in by:
            a.ref = wanted[0]
    if a.ref not in by:
        print(f"error: --ref {a.ref}: not in {path} (tools: {', '.join(sorted(by))})", file=sys.stderr)
        return 2
    found = {t: {i for i, v in nme.items() if math.isfinite(v)} for t, nme in by.items()}
    ref = sorted(found[a.ref])
    common = sorted(set.intersection(*found.values()))
    print(json.dumps({"faces": len(by[a.ref]), f"found by {a.ref}": {"n": len(ref), **over(by, ref)},
                      "found by every tool": {"n": len(common), **over(by, common)}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
