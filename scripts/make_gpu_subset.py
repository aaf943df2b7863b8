"""Build what ``scripts/gpu_check.sh`` carries to a GPU machine: a small prepared subset of real faces and the
wheels facelm's training needs beyond torch and numpy.

    python scripts/make_gpu_subset.py --data work/w300 --faces 200 --out work/gpu_check

writes ``OUT/subset.tar.xz`` (a prepared folder: ``manifest.jsonl``, ``crops.npy``, ``prepare.json``, with the
first FACES faces of the ``train`` split of DATA, every one of them in the ``train`` split, so that the check
needs no validation and no OpenCV) and, unless ``--no-wheels``, ``OUT/wheels/`` (pydantic and its dependencies
for CPython 3.10-3.13 on x86-64 Linux, from ``pip download``). The subset is derived from licensed data: it is
never committed (``work/`` is ignored); carry it (``run``'s ``carry``) or copy it next to the repository.

The repository, the subset and the wheels must together stay within what the GPU machine may receive (64 MiB):
the script prints the sizes and fails when ``--budget-mib`` is exceeded (the tracked files count too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from facelm.manifest import CROPS_NAME, MANIFEST_NAME, PREPARE_NAME, load_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
WHEELS = ["pydantic>=2.5"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def make_subset(data: Path, faces: int, out: Path) -> Path:
    """``out/subset.tar.xz``: the first ``faces`` training faces of ``data`` as a prepared folder of their own."""
    m = load_manifest(data).split("train")
    if len(m) < faces:
        sys.exit(f"error: {data} has {len(m)} training faces, fewer than --faces {faces}")
    crops = m.crops()
    rows = m.cache_index[:faces]
    samples = []
    for i, s in enumerate(m.samples[:faces]):
        samples.append(s.model_copy(update={"split": "train", "cache": s.cache.model_copy(update={"index": i}),
                                            "dup_of": None}))
    info = dict(m.info)
    info.pop("crops", None)
    info["subset_of"] = str(data)
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / "subset.tar.xz"
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_manifest(t / MANIFEST_NAME, samples)
        np.save(t / CROPS_NAME, np.ascontiguousarray(crops[rows]))
        (t / PREPARE_NAME).write_text(json.dumps(info, indent=1))
        with tarfile.open(tar_path, "w:xz", preset=6) as tar:
            for name in (MANIFEST_NAME, CROPS_NAME, PREPARE_NAME):
                tar.add(t / name, arcname=f"subset/{name}")
    return tar_path


def download_wheels(out: Path) -> None:
    """pydantic (with pydantic-core) for each CPython of ``PYTHONS``: the GPU machine has no internet."""
    wheels = out / "wheels"
    for py in PYTHONS:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version",
                        py, "--platform", "manylinux2014_x86_64", "--implementation", "cp", "-d", str(wheels),
                        *WHEELS], check=True)


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a prepared folder with a train split")
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "work" / "gpu_check")
    ap.add_argument("--no-wheels", action="store_true", help="skip pip download (the machine has pydantic)")
    ap.add_argument("--budget-mib", type=float, default=64.0)
    args = ap.parse_args()
    tar_path = make_subset(args.data, args.faces, args.out)
    if not args.no_wheels:
        download_wheels(args.out)
    carried = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    repo = tracked_bytes()
    sizes = {"subset": str(tar_path), "faces": args.faces, "carried_mib": round(carried / 2 ** 20, 2),
             "repository_mib": round(repo / 2 ** 20, 2), "total_mib": round((carried + repo) / 2 ** 20, 2)}
    print(json.dumps(sizes))
    if carried + repo > args.budget_mib * 2 ** 20:
        sys.exit(f"error: {sizes['total_mib']} MiB exceeds --budget-mib {args.budget_mib}; use fewer --faces")


if __name__ == "__main__":
    main()
