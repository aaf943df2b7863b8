"""The model card's numbers (models/README.md) for a pair of stage models, on held-out faces of every set.

    python scripts/score_default.py [--work work] [--models models] [--out work/scores] [--set-default]

For each prepared set under WORK (w300, mtfl, helen29, infan: human labels; ytf, utk: machine labels), on its
``val`` split (identities held out of training):

1. **Ground-truth boxes** (68-point sets): ``facelm evaluate`` of stage 1 alone and of the pair.
2. **End to end**: ``facelm predict`` (YuNet, the box map in the model) on the val images, in six variants (stage 1;
   stage 1 without levelling; stage 1 with flip TTA; the pair; the pair with flip TTA; the pair with full TTA,
   predict's default), each scored by ``facelm evaluate`` against the
   ground truth: 68-point sets directly, MTFL (5 points) and HELEN-29 through the scheme maps; a face the detector
   missed counts as a failure. MTFL is also broken down by its pose label (1 left profile ... 5 right profile).
3. **Any in-plane angle**: 40 w300 val images rotated by 0, 45, ..., 315 degrees (canvas grown to keep the whole
   image): per angle, the median error of the reported angle and of the points against the upright prediction
   rotated, in % of the inter-ocular distance.
4. With ``--set-default``: the stage-2 model runs by default only if the pair beats stage 1 alone end to end on
   the w300 val faces (human labels); otherwise the stage-2 file (``cnn6r.onnx`` or ``cnn7.onnx``) gets
   ``"predict_default": false``.

Writes OUT/scores.json and OUT/scores.md (the tables of the model card) and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

SETS = [("w300", "300-W AFW+HELEN (human, 68)"), ("mtfl", "MTFL / AFLW (human, 5 points)"),
        ("helen29", "HELEN-29 (human, 29 points)"), ("infan", "InfAnFace (human, infants, 68)"),
        ("ytf", "YouTube Faces (automatic labels, 68)"), ("utk", "UTKFace (dlib labels, 68)")]
VARIANTS = [("s1", ["--stages", "1", "--tta", "none"]), ("s1-nolevel", ["--stages", "1", "--no-level", "--tta", "none"]),
            ("s1-tta", ["--stages", "1", "--tta", "flip"]), ("pair", ["--stages", "2", "--tta", "none"]),
            ("pair-tta", ["--stages", "2", "--tta", "flip"]), ("pair-full", ["--stages", "2", "--tta", "full"])]


def facelm(*args: str, stdout=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("facelm")
    return subprocess.run([str(exe) if exe.exists() else "facelm", *args], stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)


def evaluate(data: Path, files: list[str], per_face: Path | None = None) -> list[dict]:
    args = ["evaluate", "--data", str(data), "--split", "val", *files, "-q"]
    if per_face is not None:
        args += ["--per-face", str(per_face)]
    r = facelm(*args)
    if r.returncode not in (0, 1):
        raise SystemExit(f"evaluate failed on {data}: {r.stderr.strip()}")
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def row(rec: dict) -> dict:
    return {"n": rec["n"], "missing": rec["missing"], "nme": rec["nme"], "median": rec["median"],
            "fr10": rec.get("fr@0.1"), "auc10": rec.get("auc@0.1")}


def end_to_end(work: Path, models: Path, out: Path) -> dict:
    from facelm.manifest import load_manifest

    res: dict = {}
    for name, _ in SETS:
        data = work / name
        if not (data / "manifest.jsonl").is_file():
            continue
        m = load_manifest(data).split("val")
        if not len(m):
            continue
        imgs = sorted({str((m.root / s.image).resolve()) for s in m.samples})
        lst = out / f"{name}_val_images.txt"
        lst.write_text("\n".join(imgs) + "\n")
        files = []
        for var, extra in VARIANTS:
            f = out / f"{name}_{var}.jsonl"
            if not f.is_file():
                with open(f, "w") as fh:
                    r = facelm("predict", str(lst), "--models", str(models), *extra, "-q", stdout=fh)
                if r.returncode not in (0, 1):
                    raise SystemExit(f"predict failed on {name}: {r.stderr.strip()}")
            files.append(str(f))
        recs = evaluate(data, files, out / f"{name}_per_face.csv")
        res[name] = {var: row(r) for (var, _), r in zip(VARIANTS, recs)}
        if name == "mtfl":
            res["mtfl_pose"] = pose_breakdown(m, out / f"{name}_per_face.csv")
    return res


def pose_breakdown(m, per_face: Path) -> dict:
    import csv

    pose = {s.id: int(s.attrs.get("pose", 0)) for s in m.samples}
    by: dict = {}
    with open(per_face) as f:
        for r in csv.DictReader(f):
            var = Path(r["model"]).stem.split("_", 1)[1]
            nme = float(r["nme"]) if r["nme"] not in ("", "inf", "nan") else math.inf
            by.setdefault(var, {}).setdefault(pose.get(r["id"], 0), []).append(nme)
    return {var: {str(p): {"n": len(v), "nme": float(np.mean([x for x in v if math.isfinite(x)] or [math.nan])),
                           "fr10": float(np.mean([not (x <= 0.1) for x in v]))}
                  for p, v in sorted(d.items())} for var, d in by.items()}


def stage_files(models: Path) -> tuple[Path, Path]:
    """The float stage-1 and stage-2 files of ``models``, found by their metadata as ``facelm predict`` finds them."""
    from facelm.runtime import load_models

    pair = load_models(models, stages=2, precision="fp32")
    return pair.stage1.path, pair.stage2.path


def gt_boxes(work: Path, models: Path) -> dict:
    out = {}
    s1, s2 = stage_files(models)
    pair = f"{s1}+{s2}"
    for name in ("w300", "infan", "ytf", "utk"):
        data = work / name
        if name not in dict(SETS):
            continue
        if (data / "manifest.jsonl").is_file():
            one, two = evaluate(data, [str(s1), pair])
            out[name] = {"s1": row(one), "pair": row(two)}
    return out


def rotation(work: Path, models: Path, n_images: int = 40) -> dict:
    from facelm.detectors import create_detector
    from facelm.geometry import turn_image
    from facelm.imageio import read_image
    from facelm.manifest import load_manifest
    from facelm.runtime import Landmarker, load_models

    m = load_manifest(work / "w300").split("val")
    imgs = sorted({str((m.root / s.image).resolve()) for s in m.samples})[:n_images]
    pair = load_models(models)
    lm = Landmarker(pair, create_detector("auto"))
    out: dict = {}
    for path in imgs:
        img = read_image(path)
        base = lm.predict_image(img, path).faces
        if not base:
            continue
        f0 = max(base, key=lambda f: f.score)
        io = float(np.linalg.norm(f0.landmarks[36] - f0.landmarks[45]))
        for a in range(0, 360, 45):
            rot, mat = turn_image(img, a)
            expect = f0.landmarks @ mat[:, :2].T + mat[:, 2]
            faces = lm.predict_image(rot, path).faces
            rec = out.setdefault(a, {"angle_err": [], "point_err": [], "missed": 0})
            if not faces:
                rec["missed"] += 1
                continue
            f = min(faces, key=lambda g: np.linalg.norm(g.landmarks.mean(0) - expect.mean(0)))
            rec["point_err"].append(float(np.linalg.norm(f.landmarks - expect, axis=1).mean() / io))
            truth = f0.angle - a  # cv2 turns the image counter-clockwise by a: the eye line turns by -a
            rec["angle_err"].append(abs((f.angle - truth + 180) % 360 - 180))
    return {str(a): {"images": len(v["point_err"]) + v["missed"], "missed": v["missed"],
                     "angle_err_median": float(np.median(v["angle_err"])) if v["angle_err"] else None,
                     "angle_err_max": float(np.max(v["angle_err"])) if v["angle_err"] else None,
                     "point_err_median": float(np.median(v["point_err"])) if v["point_err"] else None,
                     "point_err_p90": float(np.percentile(v["point_err"], 90)) if v["point_err"] else None}
            for a, v in out.items()}


def set_default(models: Path, e2e: dict) -> str:
    import onnx

    from facelm._io import atomic_path
    from facelm.export import read_onnx_meta, set_onnx_meta

    one, two = e2e["w300"]["s1"], e2e["w300"]["pair"]
    path = stage_files(models)[1]
    meta = {k: v for k, v in read_onnx_meta(path).items() if not k.startswith("predict_default")}
    if two["nme"] >= one["nme"]:
        meta["predict_default"] = False
        meta["predict_default_reason"] = (f"the pair scored NME {100 * two['nme']:.2f}% against "
                                          f"{100 * one['nme']:.2f}% for stage 1 alone, YuNet boxes, "
                                          f"{one['n']} held-out w300 faces")
    proto = onnx.load(str(path))
    set_onnx_meta(proto, meta)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return "both stages" if meta.get("predict_default", True) else "stage 1 only"


def markdown(s: dict) -> str:
    pct = lambda v: "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}"  # noqa: E731
    lines = ["### End to end: `facelm predict` (YuNet), held-out val faces, inter-ocular NME", "",
             "| set | faces | missed | stage 1 | stage 1, no levelling | stage 1 + flip TTA | pair | pair + flip TTA | "
             "pair + full TTA (default) | FR@10% (stage 1 + flip TTA / default) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    names = dict(SETS)
    for name, d in s["end_to_end"].items():
        if name == "mtfl_pose":
            continue
        lines.append(f"| {names[name]} | {d['s1']['n']} | {d['s1']['missing']} | {pct(d['s1']['nme'])} | "
                     f"{pct(d['s1-nolevel']['nme'])} | {pct(d['s1-tta']['nme'])} | {pct(d['pair']['nme'])} | "
                     f"{pct(d['pair-tta']['nme'])} | {pct(d['pair-full']['nme'])} | {pct(d['s1-tta']['fr10'])} / "
                     f"{pct(d['pair-full']['fr10'])} |")
    if "mtfl_pose" in s["end_to_end"]:
        lines += ["", "MTFL by pose label (end to end; stage 1 and pair with flip TTA, default: full TTA), "
                  "NME % / FR@10% %:", "", "| pose | faces | stage 1 | pair | default |", "|---|---|---|---|---|"]
        labels = {"1": "left profile", "2": "left", "3": "frontal", "4": "right", "5": "right profile"}
        pose = s["end_to_end"]["mtfl_pose"]
        for p, v in pose.get("s1-tta", {}).items():
            w = pose.get("pair-tta", {}).get(p, {"nme": None, "fr10": None})
            d = pose.get("pair-full", {}).get(p, {"nme": None, "fr10": None})
            lines.append(f"| {p} {labels.get(p, '')} | {v['n']} | {pct(v['nme'])} / {pct(v['fr10'])} | "
                         f"{pct(w['nme'])} / {pct(w['fr10'])} | {pct(d['nme'])} / {pct(d['fr10'])} |")
    lines += ["", "### Ground-truth face squares (`facelm evaluate` of the ONNX files), val faces", "",
              "| set | faces | stage 1 NME | pair NME | pair FR@10% | pair AUC@10% |", "|---|---|---|---|---|---|"]
    for name, d in s["gt_boxes"].items():
        lines.append(f"| {names[name]} | {d['pair']['n']} | {pct(d['s1']['nme'])} | {pct(d['pair']['nme'])} | "
                     f"{pct(d['pair']['fr10'])} | {d['pair']['auc10']:.3f} |")
    lines += ["", "### Any in-plane angle: 40 w300 val images rotated (YuNet, default pipeline)", "",
              "| rotation | images | missed | angle error median / max (deg) | point error median / p90 (% IOD) |",
              "|---|---|---|---|---|"]
    for a, v in s["rotation"].items():
        if v["angle_err_median"] is None:
            lines.append(f"| {a} | {v['images']} | {v['missed']} | - | - |")
            continue
        lines.append(f"| {a} | {v['images']} | {v['missed']} | {v['angle_err_median']:.1f} / "
                     f"{v['angle_err_max']:.1f} | {100 * v['point_err_median']:.2f} / {100 * v['point_err_p90']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("work"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set-default", action="store_true")
    ap.add_argument("--skip-rotation", action="store_true")
    ap.add_argument("--sets", default=",".join(n for n, _ in SETS), help="comma list of the sets to score")
    a = ap.parse_args()
    out = a.out or a.work / "scores"
    out.mkdir(parents=True, exist_ok=True)
    SETS[:] = [x for x in SETS if x[0] in a.sets.split(",")]
    s = {"models": str(a.models), "end_to_end": end_to_end(a.work, a.models, out),
         "gt_boxes": gt_boxes(a.work, a.models),
         "rotation": {} if a.skip_rotation else rotation(a.work, a.models)}
    if a.set_default:
        s["predict_default"] = set_default(a.models, s["end_to_end"])
    (out / "scores.json").write_text(json.dumps(s, indent=1))
    md = markdown(s)
    (out / "scores.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
