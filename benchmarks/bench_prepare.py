"""``facelm prepare`` throughput with one and with two decoding threads.

    python benchmarks/bench_prepare.py [SOURCE] [--format auto] [--limit 0] [--repeat 1]

SOURCE defaults to ``../shared/data/ytf68-train`` (beside the checkout). Each run prepares SOURCE into a fresh
temporary folder (deleted afterwards) through ``facelm.prepare.prepare``, the same code as the CLI, and is timed
from the call to its return: annotation reading, image decoding, cropping, writing the cache and the manifest.
The image files are read once beforehand so that every timed run finds them in the page cache.

Prints one JSON object: images/s for ``workers=1`` and ``workers=2`` (best of ``--repeat`` runs, each run listed),
their ratio (the gain from the second core), the machine's core count and its load average, since other jobs
on the same cores lower the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ytf68-train"


def _warm_page_cache(faces_images: list[Path]) -> int:
    n = 0
    for p in faces_images:
        try:
            n += len(p.read_bytes())
        except OSError:
            pass
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE), help="dataset folder or annotation file")
    ap.add_argument("--format", default="auto", help="input format (default: auto)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N faces (0 = all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per worker count (the best is reported)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    args = ap.parse_args(argv)

    from facelm import __version__
    from facelm.datasets import RawFace, read_faces
    from facelm.prepare import PrepareOptions, prepare

    src = Path(args.source)
    if not src.exists():
        print(f"error: {src}: no such file or folder (give the dataset path as the first argument)",
              file=sys.stderr)
        return 3
    images = sorted({f.image for f in read_faces(src, args.format) if isinstance(f, RawFace)})
    warm_bytes = _warm_page_cache(images)

    counts = [int(w) for w in args.workers.split(",")]
    runs: dict[int, list[dict]] = {w: [] for w in counts}
    summary = None
    for _ in range(max(1, args.repeat)):
        for w in counts:  # interleaved, so slow drifts in machine load hit both counts alike
            with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
                opts = PrepareOptions(source=src, out=Path(tmp) / "out", fmt=args.format, workers=w,
                                      limit=args.limit)
                t0 = time.perf_counter()
                res = prepare(opts)
                dt = time.perf_counter() - t0
            summary = res.summary
            n_img = summary["images"] + len({x.get("image") for x in res.skipped if x.get("image")})
            runs[w].append({"seconds": round(dt, 3), "images": n_img, "faces": summary["faces"],
                            "images_per_s": round(n_img / dt, 1)})
            print(f"workers={w}: {n_img} images in {dt:.2f} s = {n_img / dt:.1f} images/s", file=sys.stderr)

    best = {w: max(r["images_per_s"] for r in runs[w]) for w in counts}
    out = {
        "benchmark": "prepare",
        "source": str(src.resolve()),
        "format": summary["format"] if summary else args.format,
        "faces": summary["faces"] if summary else 0,
        "skipped": summary["skipped"] if summary else 0,
        "image_bytes": warm_bytes,
        "cache_size": summary["cache"]["size"] if summary else None,
        "images_per_s": {f"workers={w}": best[w] for w in counts},
        "runs": {f"workers={w}": runs[w] for w in counts},
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "facelm_version": __version__,
    }
    if 1 in best and 2 in best:
        out["ratio_2_vs_1"] = round(best[2] / best[1], 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
