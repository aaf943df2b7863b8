"""A held-out set photographed badly: the ``val`` images of a prepared dataset, each made grey, dark and flat,
noisy, JPEG-compressed or colour-cast (one of these per image, drawn from a seeded generator), written as a
prepared-dataset folder that ``facelm predict``, ``facelm evaluate`` and ``scripts/score_pair.sh`` read like the
original::

    python scripts/degrade_set.py work/w300 work/w300bad [--seed 0]
    facelm predict work/w300bad/val_images.txt > bad.jsonl && facelm evaluate --data work/w300bad --split val bad.jsonl

The changes are stronger than and drawn differently from ``facelm train --photometric`` (whole images, not
64-px crops; JPEG at 8-20 quality on a face-sized copy; noise sigma 12-20), so this is not the training
augmentation measured on itself. Kinds (``KINDS``), each on a fifth of the images:

* ``grey``: black and white; ``dark``: grey levels x 0.25-0.45 and contrast halved (an underexposed photo);
* ``noise``: Gaussian noise of sigma 12-20 grey levels; ``jpeg``: the image scaled so its first face is 100 px
  wide, saved at JPEG quality 8-20 and scaled back (a heavily compressed video frame);
* ``cast``: colour balance 0.6-1.4x per channel (tungsten or green fluorescent light).

Images go to OUT/images (PNG, so nothing more is lost), OUT/manifest.jsonl points the val faces there, and
OUT/kinds.json lists each image's kind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from occlude_set import set_args, write_set

from facelm.manifest import load_manifest

KINDS = ("grey", "dark", "noise", "jpeg", "cast")


def degrade(img: np.ndarray, kind: str, face_width: float, rng: np.random.Generator) -> np.ndarray:
    """``img`` (BGR uint8) changed by ``kind``."""
    f = img.astype(np.float32)
    if kind == "grey":
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    if kind == "dark":
        f = (f - f.mean()) * 0.5 + f.mean()
        f *= rng.uniform(0.25, 0.45)
    elif kind == "noise":
        f += rng.normal(0, rng.uniform(12, 20), f.shape)
    elif kind == "cast":
        f *= rng.uniform(0.6, 1.4, 3)
    elif kind == "jpeg":
        s = min(1.0, 100.0 / max(face_width, 1.0))
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        _, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(8, 21))])
        return cv2.resize(cv2.imdecode(buf, cv2.IMREAD_COLOR), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def degrade_set(data: Path, out: Path, seed: int = 0) -> dict[str, str]:
    full = load_manifest(data)
    val = full.split("val")
    if not len(val):
        raise SystemExit(f"{data}: no val faces (prepare it with --holdout)")
    rng = np.random.default_rng(seed)
    first: dict[str, float] = {}
    boxes = val.boxes()
    for i in range(len(val)):
        first.setdefault(str(val.image_path(i)), float(boxes[i][2] - boxes[i][0]))
    (out / "images").mkdir(parents=True, exist_ok=True)
    new: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for k, (p, fw) in enumerate(first.items()):
        img = cv2.imread(p)
        if img is None:
            raise SystemExit(f"{p}: unreadable image")
        kind = KINDS[k % len(KINDS)]
        q = (out / "images" / (Path(p).stem + ".png")).resolve()
        if str(q) in new.values():
            raise SystemExit(f"{p}: two val images share the file name {q.name}")
        cv2.imwrite(str(q), degrade(img, kind, fw, rng))
        new[p], kinds[str(q)] = str(q), kind
    write_set(data, out, full, new)
    (out / "kinds.json").write_text(json.dumps(kinds, indent=1) + "\n")
    return kinds


def main(argv: list[str] | None = None) -> int:
    a = set_args(__doc__, argv)
    kinds = degrade_set(a.data, a.out, a.seed)
    counts = {k: list(kinds.values()).count(k) for k in KINDS}
    print(json.dumps({"data": str(a.data), "out": str(a.out), "images": len(kinds), "kinds": counts, "seed": a.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
