"""A held-out set with its faces partly hidden: the ``val`` images of a prepared dataset, each face covered by one
rectangle of natural texture, written as a prepared-dataset folder that ``facelm predict``, ``facelm evaluate``
and ``scripts/compare_tools.py`` read like the original::

    python scripts/occlude_set.py work/w300 work/w300occ [--seed 0]
    facelm predict work/w300occ/val_images.txt > occ.jsonl && facelm evaluate --data work/w300occ --split val occ.jsonl
    python scripts/compare_tools.py --data work/w300occ --out work/compare-occ/w300 --evaluate

Per face: a rectangle, each side a uniform 25-50% of the face box side, at a uniform place inside the box, filled
with a patch of another val image of the same set taken away from every annotated face of that image (background,
clothes, hair: texture, not a second face). The occluders differ from the random-colour rectangles of ``facelm
train --occlude``, so this is not the training augmentation measured on itself. Images go to OUT/images (JPEG
quality 95, the same file names); OUT/manifest.jsonl is the input's with the val faces pointing there (train faces
keep their images; the crop cache and prepare.json are linked/copied), OUT/val_images.txt lists the new images.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from facelm.manifest import load_manifest


@functools.cache
def _read(path: str) -> np.ndarray:
    """A val image, decoded once (patches are drawn from the same few hundred images again and again)."""
    return cv2.imread(path)


def _patch(paths: list[str], boxes_of: dict, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    for _ in range(200):
        p = paths[rng.integers(len(paths))]
        src = _read(p)
        H, W = src.shape[:2]
        if w >= W or h >= H:
            continue
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        if all(x + w <= b[0] or x >= b[2] or y + h <= b[1] or y >= b[3] for b in boxes_of.get(p, [])):
            return src[y:y + h, x:x + w]
    return np.full((h, w, 3), 128, np.uint8)


def occlude_set(data: Path, out: Path, seed: int = 0) -> int:
    full = load_manifest(data)
    val = full.split("val")
    if not len(val):
        raise SystemExit(f"{data}: no val faces (prepare it with --holdout)")
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    boxes_of: dict[str, list[np.ndarray]] = {}
    for i in range(len(val)):
        by.setdefault(str(val.image_path(i)), []).append(i)
    for i, s in enumerate(full.samples):
        boxes_of.setdefault(str(full.image_path(i)), []).append(np.array(s.box))
    paths = list(by)
    (out / "images").mkdir(parents=True, exist_ok=True)
    new: dict[str, str] = {}
    boxes = val.boxes()
    for p, idx in by.items():
        img = cv2.imread(p)
        if img is None:
            raise SystemExit(f"{p}: unreadable image")
        for i in idx:
            x1, y1, x2, y2 = boxes[i]
            w, h = x2 - x1, y2 - y1
            ow, oh = rng.uniform(0.25, 0.5) * w, rng.uniform(0.25, 0.5) * h
            ox, oy = x1 + rng.uniform(0, w - ow), y1 + rng.uniform(0, h - oh)
            a, b = int(max(ox, 0)), int(max(oy, 0))
            c, d = int(min(ox + ow, img.shape[1])), int(min(oy + oh, img.shape[0]))
            if c > a and d > b:
                img[b:d, a:c] = _patch(paths, boxes_of, c - a, d - b, rng)
        q = (out / "images" / Path(p).name).resolve()
        if str(q) in new.values():
            raise SystemExit(f"{p}: two val images share the file name {q.name}")
        cv2.imwrite(str(q), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        new[p] = str(q)
    write_set(data, out, full, new)
    return len(new)


def write_set(data: Path, out: Path, full, new: dict[str, str]) -> None:
    """OUT/manifest.jsonl (the val faces pointing at their new images ``new``: old path -> new path), prepare.json,
    the crop cache linked, OUT/val_images.txt (also used by ``scripts/degrade_set.py``)."""
    lines = []
    for i, s in enumerate(full.samples):
        r = s.model_dump(mode="json")
        r["image"] = new.get(str(full.image_path(i)), str(full.image_path(i)))
        lines.append(json.dumps(r))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(data / "prepare.json", out / "prepare.json")
    crops = out / full.info.get("crops", "crops.npy")
    if not crops.exists():
        crops.symlink_to((data / full.info.get("crops", "crops.npy")).resolve())
    (out / "val_images.txt").write_text("\n".join(new.values()) + "\n")


def set_args(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """DATA OUT [--seed S], the arguments of this script and of ``scripts/degrade_set.py``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="prepared dataset folder (facelm prepare --holdout)")
    ap.add_argument("out", type=Path, help="new folder")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = set_args(__doc__, argv)
    n = occlude_set(a.data, a.out, a.seed)
    print(json.dumps({"data": str(a.data), "out": str(a.out), "images": n, "seed": a.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
