"""Fit and check predict's quality score (``facelm/runtime/quality.py``) and measure head pose, on held-out faces.

    python scripts/quality_calibrate.py --work ../main/work --out work/quality [--sets w300 mtfl helen29 infan]
                                        [--turns 0,90,180,270] [--fit w300,helen29,infan] [--threads 1] [--no-rescue]
                                        [--box-looks] [--box-scales 1,0.55,2.4]

For every prepared set under WORK (``facelm prepare --holdout 0.1``), on its ``val`` split (identities held out of
the shipped models' training), each image is turned by each of ``--turns`` degrees (canvas grown to keep it all),
and run two ways with the shipped models and predict's defaults (stage 1, flip TTA, levelling):

* ``detect``: YuNet on the turned image, as ``facelm predict IMAGE`` does;
* ``boxes``: the YuNet box of the upright image, turned with it, given as a detector box without a live detector
  (as ``facelm predict --boxes --no-box-looks``): nothing tells the pipeline which way up the face is except its
  own levelling; with ``--box-looks``, YuNet looks inside each given box first (as ``facelm predict --boxes``).
  With ``--box-scales``, each box is also given scaled about its centre by each factor other than 1 (mode
  ``boxes0.55`` etc.): the badly framed boxes a user's own detector can give, whose readings the score must doubt.

Each ground-truth face (turned the same way) takes the predicted face whose landmark centroid is nearest its box
centre (as ``facelm evaluate``); its NME is ``facelm evaluate``'s (inter-ocular normaliser of the set's scheme;
68 points scored directly, MTFL's 5 and HELEN's 29 through the scheme maps). Faces without a prediction are
counted as misses and have no score.

Writes OUT/faces.jsonl (one row per face, turn and mode: set, id, turn, mode, nme, signals, quality, pose, MTFL
pose label) and OUT/report.json: the logistic fit of ``P(NME <= 10%)`` on the ``--fit`` sets (all turns and
modes), and per set / mode / turn the AUC of the score for telling faces with NME > 10% (ranked first by low
quality), the number of such faces, and the mean NME of the kept faces at quality thresholds. ``--fit ''`` only
scores with the shipped calibration.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def turn_image(img: np.ndarray, turn: float) -> tuple[np.ndarray, np.ndarray]:
    """``img`` turned counter-clockwise on screen by ``turn`` degrees (cv2's sense), canvas grown; and the
    affine."""
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), turn, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = round(h * s + w * c), round(h * c + w * s)
    m[0, 2] += (nw - 1) / 2 - (w - 1) / 2
    m[1, 2] += (nh - 1) / 2 - (h - 1) / 2
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR), m


def auc_bad_first(quality: np.ndarray, bad: np.ndarray) -> float:
    """AUC of ranking bad faces (``bad`` True) below good ones by ``quality`` (ties count half); NaN if one class
    is empty. Equals the Mann-Whitney U statistic / (n_bad n_good)."""
    q, b = np.asarray(quality, float), np.asarray(bad, bool)
    nb, ng = int(b.sum()), int((~b).sum())
    if nb == 0 or ng == 0:
        return math.nan
    from scipy.stats import rankdata

    r = rankdata(-q)  # the lower the quality, the higher the rank
    return float((r[b].sum() - nb * (nb + 1) / 2) / (nb * ng))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 100) -> np.ndarray:
    """Weights ``(1 + D,)`` (intercept first) of a logistic regression of ``y`` (0/1) on ``x`` ``(N, D)``, by
    Newton's method with a small ridge on the slopes."""
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    reg = np.full(a.shape[1], l2)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -50, 50)))
        g = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def features(signals: list[dict]) -> np.ndarray:
    from facelm.runtime.quality import _FLOOR

    return np.array([[math.log(max(s["mirror"], _FLOOR)), math.log(max(s["level"], _FLOOR))] for s in signals])


def _nme(pred68: np.ndarray, gt: np.ndarray, scheme: str) -> float:
    from facelm.metrics import normaliser
    from facelm.scheme_maps import get_map

    p = pred68 if scheme == "300w68" else get_map("300w68", scheme).apply(pred68)
    ok = np.isfinite(gt).all(-1) & np.isfinite(p).all(-1)
    d = float(normaliser(gt[None], "inter-ocular", scheme=scheme)[0])
    return float(np.linalg.norm(p[ok] - gt[ok], axis=-1).mean() / d)


def scale_boxes(boxes: np.ndarray, s: float) -> np.ndarray:
    """``(n, 4)`` boxes (x0, y0, x1, y1) scaled by ``s`` about their centres."""
    c, h = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * s / 2
    return np.concatenate([c - h, c + h], axis=1)


def run_set(name: str, work: Path, turns: list[float], lm_detect, lm_boxes, out,
            modes: tuple[str, ...] = ("detect", "boxes"), scales: tuple[float, ...] = (1.0,)) -> int:
    """Predict every val face of set ``name`` in every turn and mode; write one row per face to ``out``."""
    from facelm.imageio import read_image
    from facelm.manifest import load_manifest

    m = load_manifest(work / name).split("val")
    by_image: dict[str, list] = {}
    for s in m.samples:
        by_image.setdefault(str((m.root / s.image).resolve()), []).append(s)
    rows = 0
    for path, samples in sorted(by_image.items()):
        img = read_image(path)
        up = lm_detect.predict_image(img, path).faces
        for turn in turns:
            rot, mat = turn_image(img, turn)
            gts = [np.asarray(s.landmarks, float) @ mat[:, :2].T + mat[:, 2] for s in samples]
            preds = {"detect": lm_detect.predict_image(rot, path).faces} if "detect" in modes else {}
            if up and "boxes" in modes:
                corners = [np.array([[f.box[0], f.box[1]], [f.box[2], f.box[1]], [f.box[0], f.box[3]],
                                     [f.box[2], f.box[3]]]) @ mat[:, :2].T + mat[:, 2] for f in up]
                boxes = np.array([[c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()] for c in corners])
                from facelm.runtime.quality import add_head_poses
                from facelm.runtime.results import ImageResult

                for sc in scales:
                    res = lm_boxes.predict_boxes(rot, scale_boxes(boxes, sc), kind="detector")
                    r = ImageResult(path, None, rot.shape[1], rot.shape[0], res)
                    add_head_poses(r, lm_boxes.scheme)
                    preds["boxes" if sc == 1 else f"boxes{sc:g}"] = r.faces
            for mode, faces in preds.items():
                free = list(range(len(faces)))
                for s, gt in zip(samples, gts):
                    row = {"set": name, "id": s.id, "turn": turn, "mode": mode, "pose_label": s.attrs.get("pose")
                           if s.attrs else None}
                    ok = np.isfinite(gt).all(-1)
                    centre = gt[ok].mean(0)
                    if free:
                        k = min(free, key=lambda j: np.linalg.norm(faces[j].landmarks.mean(0) - centre))
                        free.remove(k)
                        f = faces[k]
                        row.update(nme=_nme(f.landmarks, gt, m.scheme), signals=f.signals, quality=f.quality,
                                   pose=f.pose, score=f.score)
                    else:
                        row.update(nme=None)
                    out.write(json.dumps(row) + "\n")
                    rows += 1
        print(f"\r{name}: {rows} rows", end="", file=sys.stderr)
    print(file=sys.stderr)
    return rows


def report(rows: list[dict], fit_sets: list[str]) -> dict:
    from facelm.runtime.quality import CALIBRATION, quality_score

    found = [r for r in rows if r["nme"] is not None]
    rep: dict = {"calibration_used": dict(CALIBRATION)}
    if fit_sets:
        fit = [r for r in found if r["set"] in fit_sets]
        x, y = features([r["signals"] for r in fit]), np.array([r["nme"] <= 0.1 for r in fit], float)
        w, w1 = fit_logistic(x, y), fit_logistic(x[:, :1], y)
        cal = {"intercept": float(w[0]), "mirror": float(w[1]), "level": float(w[2]),
               "no_level": {"intercept": float(w1[0]), "mirror": float(w1[1])}}
        rep["fit"] = {"sets": fit_sets, "faces": len(fit), "bad": int(sum(r["nme"] > 0.1 for r in fit)), **cal}
        for r in found:
            r["quality"] = quality_score(r["signals"], cal)
    groups: dict = {}
    for r in found:
        for key in (f"{r['set']}", f"{r['set']}/{r['mode']}", f"{r['set']}/{r['mode']}/{r['turn']:g}"):
            groups.setdefault(key, []).append(r)
    rep["auc"] = {}
    for key, g in sorted(groups.items()):
        q, nme = np.array([r["quality"] for r in g]), np.array([r["nme"] for r in g])
        bad = nme > 0.1
        entry = {"faces": len(g), "bad": int(bad.sum()), "auc": auc_bad_first(q, bad),
                 "nme_all": float(np.mean(nme))}
        for t in (0.3, 0.5):
            keep = q >= t
            entry[f"kept@{t}"] = int(keep.sum())
            entry[f"bad_kept@{t}"] = int((bad & keep).sum())
            entry[f"bad_dropped@{t}"] = int((bad & ~keep).sum())
        rep["auc"][key] = entry
    rep["pose"] = {name: pose_report([r for r in found if r["set"] == name and r["mode"] == "detect"])
                   for name in sorted({r["set"] for r in found})}
    return rep


def pose_report(rows: list[dict]) -> dict:
    """Yaw by MTFL pose label (upright images) and roll against the turn (all turns), on the detect mode."""
    from scipy.stats import spearmanr

    out: dict = {}
    up = [r for r in rows if r["turn"] == 0 and r.get("pose") and r.get("pose_label")]
    if up:
        yaw = np.array([r["pose"]["yaw"] for r in up])
        lab = np.array([r["pose_label"] for r in up])
        out["yaw_by_label"] = {int(k): {"n": int((lab == k).sum()), "mean": float(yaw[lab == k].mean()),
                                        "median": float(np.median(yaw[lab == k]))} for k in sorted(set(lab))}
        out["yaw_spearman"] = float(spearmanr(yaw, lab).statistic)
    base = {r["id"]: r["pose"]["roll"] for r in rows if r["turn"] == 0 and r.get("pose")}
    for turn in sorted({r["turn"] for r in rows if r["turn"] != 0}):
        d = [((r["pose"]["roll"] - (base[r["id"]] - turn) + 180) % 360 - 180) for r in rows
             if r["turn"] == turn and r.get("pose") and r["id"] in base and r["nme"] <= 0.1]
        if d:
            out[f"roll_error_turn_{turn:g}"] = {"n": len(d), "median_abs": float(np.median(np.abs(d))),
                                                "p90_abs": float(np.percentile(np.abs(d), 90))}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("work"))
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--out", type=Path, default=Path("work/quality"))
    ap.add_argument("--sets", nargs="+", default=["w300", "mtfl", "helen29", "infan"])
    ap.add_argument("--turns", default="0,90,180,270")
    ap.add_argument("--fit", default="w300,helen29,infan", help="sets to fit the calibration on ('' = none)")
    ap.add_argument("--modes", default="detect,boxes")
    ap.add_argument("--box-scales", default="1",
                    help="boxes mode: also give each box scaled about its centre by these (comma-separated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-rescue", action="store_true", help="predict without the second reading of doubtful faces")
    ap.add_argument("--box-looks", action="store_true",
                    help="boxes mode: YuNet looks inside each given box for which way up the face is (predict's "
                         "--box-looks; without it, nothing but levelling tells)")
    ap.add_argument("--reuse", action="store_true", help="score OUT/faces.jsonl again without predicting")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    faces = a.out / "faces.jsonl"
    if not a.reuse:
        from facelm.detectors import create_detector
        from facelm.detectors.boxmap import resolve_box_map
        from facelm.runtime import Landmarker, load_models

        pair = load_models(a.models, threads=a.threads)
        lm_detect = Landmarker(pair, create_detector("auto", threads=1), workers=1, rescue=not a.no_rescue)
        ymap, _ = resolve_box_map(pair.stage1.meta, "yunet")
        looks = create_detector("auto", threads=1) if a.box_looks else None
        lm_boxes = Landmarker(pair, create_detector(no_detect=True), workers=1, box_map=ymap,
                              rescue=not a.no_rescue, box_looks=looks)
        turns = [float(t) for t in a.turns.split(",")]
        with open(faces, "w") as out:
            for name in a.sets:
                if (a.work / name / "manifest.jsonl").is_file():
                    run_set(name, a.work, turns, lm_detect, lm_boxes, out, tuple(a.modes.split(",")),
                            tuple(float(x) for x in a.box_scales.split(",")))
    rows = [json.loads(x) for x in faces.read_text().splitlines() if x.strip()]
    rep = report(rows, [s for s in a.fit.split(",") if s])
    (a.out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
