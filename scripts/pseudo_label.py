"""68-point labels read by the shipped pair and checked against a set's own labels: each face of a prepared set's
train split is read by ``facelm predict`` (the default pipeline, without the label shift), its reading is mapped to
the set's scheme through the built-in map (the identity for a 68-point set), and it is kept when the mapped points
lie within ``--max-nme`` of the set's own ones (inter-ocular NME of the set's scheme) and its quality is at least
``--min-quality``. The kept readings are written as a plain landmark CSV for ``facelm prepare``.

    python scripts/pseudo_label.py work/mtfl --out work/pp [--models models] [--max-nme 0.08] [--min-quality 0.5]
    facelm prepare work/pp/mtfl.68.csv --out work/mtfl68p --holdout 0

Only the train split is read, so the held-out identities stay out of training. The labels are the pair's own
reading: they teach a network what the pair reads, on faces and poses whose human labels have fewer points
(MTFL's 5: the eye centres, nose tip and mouth corners), or in place of machine labels (UTKFace's dlib outputs, the
YouTube frames' automatic ones: models/HISTORY.md, "Round H6"). Prints one JSON object on stdout (faces, matched,
kept, the median NME of the matched faces); exit 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a prepared set (facelm prepare) in a scheme with a map from 300w68")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    ap.add_argument("--max-nme", type=float, default=0.08)
    ap.add_argument("--min-quality", type=float, default=0.5)
    a = ap.parse_args(argv)
    if not 0 < a.max_nme <= 1 or not 0 <= a.min_quality <= 1:
        print("error: --max-nme must be in (0, 1] and --min-quality in [0, 1]", file=sys.stderr)
        return 2

    from facelm.errors import FacelmError
    from facelm.manifest import load_manifest
    from facelm.metrics import normaliser
    from facelm.scheme_maps import get_map

    try:
        m = load_manifest(a.data).split("train")
        to_set = get_map("300w68", m.scheme)
    except FacelmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    by_image: dict[str, list] = {}
    for s in m.samples:
        by_image.setdefault(str((m.root / s.image).resolve()), []).append(s)
    a.out.mkdir(parents=True, exist_ok=True)
    name = a.data.name
    readings = a.out / f"{name}.predict.jsonl"
    if not readings.is_file():  # the slow part: kept, so a second run with other thresholds reuses it
        part = readings.with_suffix(".part")
        with open(part, "w") as f:
            subprocess.run([sys.executable, "-m", "facelm", "predict", "-", "--models", str(a.models),
                            "--no-label-shift", "-q"], input="\n".join(by_image) + "\n", text=True, stdout=f,
                           check=True)
        part.replace(readings)
    kept, errors = [], []
    for line in readings.read_text().splitlines():
        r = json.loads(line)
        for s in by_image.get(str(Path(r["image"]).resolve()), []):
            gt = np.asarray(s.landmarks, dtype=np.float64)
            d = float(normaliser(gt[None], "inter-ocular", scheme=m.scheme)[0])
            ok = np.isfinite(gt).all(-1)
            best = None
            for f in r.get("faces") or []:
                p = np.asarray(f["landmarks"], dtype=np.float64)
                e = float(np.linalg.norm(to_set.apply(p)[ok] - gt[ok], axis=-1).mean() / d)
                if best is None or e < best[0]:
                    best = (e, p, float(f.get("quality", 0.0)))
            if best is None:
                continue
            errors.append(best[0])
            if best[0] <= a.max_nme and best[2] >= a.min_quality:
                kept.append((r["image"], best[1]))
    csv = a.out / f"{name}.68.csv"
    tmp = csv.with_suffix(".part")
    with open(tmp, "w") as f:
        f.write("image," + ",".join(f"x{i},y{i}" for i in range(68)) + "\n")
        for image, p in kept:
            f.write(image + "," + ",".join(f"{v:.2f}" for v in p.reshape(-1)) + "\n")
    tmp.replace(csv)
    print(json.dumps({"faces": len(m), "matched": len(errors), "kept": len(kept), "csv": str(csv),
                      "median_nme": round(float(np.median(errors)), 4) if errors else None,
                      "max_nme": a.max_nme, "min_quality": a.min_quality}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
