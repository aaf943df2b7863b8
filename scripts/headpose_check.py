"""Head pose of ``facelm predict`` against MTFL's human pose labels (1 left profile ... 5 right profile).

    python scripts/headpose_check.py [--split val] [--per-label 0] [--labels 1,2,3,4,5] [--models models]

Runs the default pipeline (YuNet, stage 1, flip TTA, levelling) on the MTFL faces of ``mtfl-train/training.txt``
whose identity is in ``--split`` (``val``: the 10% ``facelm prepare --holdout 0.1`` holds out; ``train``: the
rest), takes the predicted face nearest each labelled face, and prints per label the number of faces and the mean
and median yaw, pitch and roll, the Spearman correlation of yaw with the label, and the confusion of the labels
with yaw bins cut halfway between the label means. ``--split train --labels 3`` measured the generic face's pitch
zero (``facelm.headpose.PITCH_ZERO``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    from scipy.stats import spearmanr

    from facelm.datasets._base import RawFace
    from facelm.datasets.mtfl import read_mtfl
    from facelm.detectors import create_detector
    from facelm.imageio import read_image
    from facelm.prepare import _holdout_fraction, default_group
    from facelm.runtime import Landmarker, load_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mtfl-train" / "training.txt")
    ap.add_argument("--split", choices=("val", "train"), default="val")
    ap.add_argument("--per-label", type=int, default=0, help="at most N faces per label (0 = all)")
    ap.add_argument("--labels", default="1,2,3,4,5")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    a = ap.parse_args(argv)
    labels = {int(x) for x in a.labels.split(",")}
    faces: dict[int, list] = {}
    for f in read_mtfl(a.data):
        if isinstance(f, RawFace) and int(f.attrs["pose"]) in labels and \
                (_holdout_fraction(default_group(f.image)) < 0.1) == (a.split == "val"):
            faces.setdefault(int(f.attrs["pose"]), []).append(f)
    lm = Landmarker(load_models(a.models, threads=1), create_detector("auto"), workers=1)
    rows = []
    for k, fs in sorted(faces.items()):
        for f in fs[:a.per_label or None]:
            found = lm.predict_image(read_image(f.image)).faces
            if found:
                g = min(found, key=lambda x: np.linalg.norm(x.landmarks.mean(0) - f.landmarks.mean(0)))
                if g.pose:
                    rows.append((k, g.pose["yaw"], g.pose["pitch"], g.pose["roll"]))
    r = np.array(rows)
    out: dict = {"split": a.split, "faces": len(r), "by_label": {}}
    for k in sorted({int(x) for x in r[:, 0]}):
        s = r[r[:, 0] == k]
        out["by_label"][k] = {"n": len(s), **{f"{n}_{st}": round(float(fn(s[:, i])), 2) for i, n in
                                              ((1, "yaw"), (2, "pitch"), (3, "roll"))
                                              for st, fn in (("mean", np.mean), ("median", np.median))}}
    if len(out["by_label"]) > 1:
        out["yaw_spearman"] = round(float(spearmanr(r[:, 1], r[:, 0]).statistic), 3)
        ks = sorted(out["by_label"])
        means = [out["by_label"][k]["yaw_mean"] for k in ks]
        cuts = [(x + y) / 2 for x, y in zip(means, means[1:])]
        pred = np.array(ks)[np.searchsorted(cuts, r[:, 1])]
        out["confusion"] = {int(k): {int(p): int(((r[:, 0] == k) & (pred == p)).sum()) for p in ks} for k in ks}
        out["bin_accuracy"] = round(float((pred == r[:, 0]).mean()), 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
