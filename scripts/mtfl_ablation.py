"""Does training on MTFL's 5-point faces (through the 68 -> 5 scheme map) help a 68-point model on turned faces?

    python scripts/mtfl_ablation.py RUN_WITH RUN_WITHOUT [--work work]

RUN_WITH and RUN_WITHOUT are two ``facelm train`` runs that differ only in whether ``--data work/mtfl`` is one of
their sources (same init, recipe, steps and seed; ``scripts/train_default.sh`` documents the command). Each
checkpoint is scored on held-out faces from the ground-truth boxes:

* MTFL val (5 points through the map, eye-centre normaliser), per MTFL pose label (1 left profile ... 5 right
  profile);
* w300 val, all faces and the AFW faces (AFW has the most turned faces of 300-W), inter-ocular NME on 68 points.

Prints one JSON document and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def score(run: Path, work: Path) -> dict:
    import torch

    from facelm.manifest import load_manifest
    from facelm.schemes import get_scheme
    from facelm.train import load_model_from_checkpoint, source_nme
    from facelm.train_data import load_source, m_template, source_frames

    model, meta = load_model_from_checkpoint(run / "best.pt", "cpu")
    scheme = get_scheme(meta["scheme"]["name"])
    info = load_manifest(work / "w300").info
    size, margin = int(info.get("cache_size", 192)), float(info.get("margin", 1.8))
    w300_train = load_source(load_manifest(work / "w300").split("train"), scheme.name)
    tpl = m_template(w300_train.lm_cache[w300_train.mask.all(1)], scheme)
    out: dict = {"run": str(run), "step": None}
    torch.set_num_threads(1)
    for name in ("w300", "mtfl"):
        m = load_manifest(work / name).split("val")
        src = load_source(m, scheme.name, name)
        src.frames = source_frames(src, 1, scheme, tpl, size, margin)
        nme = source_nme(model, src, torch.device("cpu"))
        out[name] = float(np.mean(nme))
        if name == "w300":
            afw = np.array(["afw/" in s.image for s in m.samples])
            out["w300_afw"] = float(np.mean(nme[afw]))
            out["w300_afw_n"] = int(afw.sum())
        else:
            pose = np.array([int(s.attrs.get("pose", 0)) for s in m.samples])
            out["mtfl_pose"] = {str(p): {"n": int((pose == p).sum()), "nme": float(np.mean(nme[pose == p]))}
                                for p in sorted(set(pose.tolist()))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_with", type=Path)
    ap.add_argument("run_without", type=Path)
    ap.add_argument("--work", type=Path, default=Path("work"))
    a = ap.parse_args()
    res = {"with_mtfl": score(a.run_with, a.work), "without_mtfl": score(a.run_without, a.work)}
    print(json.dumps(res, indent=1))
    w, wo = res["with_mtfl"], res["without_mtfl"]
    rows = [("w300 val, all", "w300"), ("w300 val, AFW", "w300_afw"), ("MTFL val, all", "mtfl")]
    rows += [(f"MTFL val, pose {p}", ("pose", p)) for p in w["mtfl_pose"]]
    print("\n| faces | NME % with MTFL | NME % without | change |\n|---|---|---|---|", file=sys.stderr)
    for label, key in rows:
        a_, b_ = ((w["mtfl_pose"][key[1]]["nme"], wo["mtfl_pose"][key[1]]["nme"]) if isinstance(key, tuple)
                  else (w[key], wo[key]))
        print(f"| {label} | {100 * a_:.2f} | {100 * b_:.2f} | {100 * (a_ - b_) / b_:+.1f}% |", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
