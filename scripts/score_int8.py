"""End-to-end accuracy of the int8 models against the float ones: the default ``facelm predict`` (YuNet, levelling,
flip TTA) at ``--precision fp32`` and ``--precision int8`` on the held-out val images of human-labelled sets, both
scored by ``facelm evaluate`` (misses count as failures).

    python scripts/score_int8.py [--work work] [--models models] [--out work/scores-int8] [--record]
                                 [--max-increase 0.01] [--reuse]

Sets: w300 (300-W AFW + HELEN, 68 points) and mtfl (MTFL/AFLW, 5 points through the 68 -> 5 scheme map), each with
stage 1 alone (``--stages 1``) and the pair (``--stages 2``). Prints a JSON record per set and variant with the NME of each precision,
the relative change and how far the int8 points lie from the fp32 ones (mean, in % of the inter-ocular distance of
the fp32 points). With ``--record`` the results go into the int8 files' metadata (``quantization.end_to_end``:
stage 1's into the stage-1 int8 file, the pair's into the stage-2 one). Exit code 1 when an int8 NME exceeds the fp32 one by
more than ``--max-increase`` (relative): such int8 files must not be shipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

VARIANTS = {"s1": ["--stages", "1"], "pair": ["--stages", "2"]}
SETS = {"w300": ("300-W AFW+HELEN val (human, 68 points)", VARIANTS),
        "mtfl": ("MTFL/AFLW val (human, 5 points)", VARIANTS)}


def facelm(*args: str, stdout=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("facelm")
    return subprocess.run([str(exe) if exe.exists() else "facelm", *args], stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)


def val_images(data: Path, out: Path) -> Path:
    from facelm.manifest import load_manifest

    m = load_manifest(data).split("val")
    lst = out / f"{data.name}_val_images.txt"
    lst.write_text("\n".join(sorted({str((m.root / s.image).resolve()) for s in m.samples})) + "\n")
    return lst


def predict(lst: Path, models: Path, precision: str, extra: list[str], out: Path, reuse: bool = False) -> Path:
    f = out / f"{lst.stem}_{'_'.join(extra) or 'default'}_{precision}.jsonl"
    if reuse and f.is_file() and f.stat().st_size:
        return f
    with open(f, "w") as fh:
        r = facelm("predict", str(lst), "--models", str(models), "--precision", precision, *extra, "-q",
                   stdout=fh)
    if r.returncode not in (0, 1) or not f.stat().st_size:
        raise SystemExit(f"predict failed: {r.stderr.strip()[-2000:]}")
    return f


def agreement(a: Path, b: Path) -> dict:
    """How far apart the points of the same faces are in two prediction files: per face the mean point distance in
    % of the inter-ocular distance (outer eye corners 36-45) of ``a``'s points; the median and mean over the faces
    and how many differ by more than 5% (a face the orientation search turned differently)."""
    def faces(p: Path) -> dict:
        out = {}
        for line in p.read_text().splitlines():
            rec = json.loads(line)
            for i, f in enumerate(rec["faces"]):
                out[(rec["image"], i)] = np.asarray(f["landmarks"], dtype=np.float64)
        return out

    fa, fb = faces(a), faces(b)
    d = [np.linalg.norm(fa[k] - fb[k], axis=1).mean() / np.linalg.norm(fa[k][36] - fa[k][45])
         for k in fa if k in fb and fa[k].shape == fb[k].shape]
    d = 100 * np.asarray(d)
    return {"faces": int(d.size), "median": float(np.median(d)) if d.size else None,
            "mean": float(d.mean()) if d.size else None, "above_5pct": int((d > 5).sum())}


def score(work: Path, models: Path, out: Path, reuse: bool = False) -> list[dict]:
    rows = []
    for name, (label, variants) in SETS.items():
        data = work / name
        if not (data / "manifest.jsonl").is_file():
            print(f"{data}: not prepared, skipped", file=sys.stderr)
            continue
        lst = val_images(data, out)
        for var, extra in variants.items():
            files = [predict(lst, models, p, extra, out, reuse) for p in ("fp32", "int8")]
            r = facelm("evaluate", "--data", str(data), "--split", "val", *map(str, files), "-q")
            if r.returncode not in (0, 1):
                raise SystemExit(f"evaluate failed on {data}: {r.stderr.strip()}")
            recs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
            if len(recs) != 2:
                raise SystemExit(f"evaluate gave {len(recs)} records on {data}: {r.stderr.strip()[-2000:]}")
            f32, i8 = recs
            rows.append({"set": name, "label": label, "variant": var, "faces": f32["n"],
                         "missing": [f32["missing"], i8["missing"]], "normaliser": f32.get("normaliser"),
                         "fp32": f32["nme"], "int8": i8["nme"], "relative_change": i8["nme"] / f32["nme"] - 1,
                         "fr10": [f32.get("fr@0.1"), i8.get("fr@0.1")],
                         "int8_vs_fp32_points_pct_iod": agreement(*files),
                         "command": f"facelm predict {lst.name} --precision fp32|int8 {' '.join(extra)}".strip()})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def record(models: Path, rows: list[dict]) -> None:
    import onnx

    from facelm.cpu_features import cpu_name
    from facelm.modelfile import load_proto, proto_meta, set_onnx_meta

    from facelm.runtime import load_models

    pair = load_models(models, stages=2, precision="int8")
    for p, var in ((pair.stage1.path, "s1"), (pair.stage2.path, "pair")):
        mine = [r for r in rows if r["variant"] == var]
        if not p.is_file() or not mine:
            continue
        proto = load_proto(p)
        meta = proto_meta(proto, p)
        meta.setdefault("quantization", {})["end_to_end"] = {
            "what": "default facelm predict (YuNet, levelling, flip TTA) at --precision fp32 vs int8, scored by "
                    "facelm evaluate on held-out val images", "cpu": cpu_name(),
            "results": [{k: r[k] for k in ("set", "faces", "normaliser", "fp32", "int8", "relative_change",
                                           "int8_vs_fp32_points_pct_iod")} for r in mine]}
        set_onnx_meta(proto, meta)
        onnx.save(proto, str(p))
        print(f"recorded in {p}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("work"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--out", type=Path, default=None, help="default: WORK/scores-int8")
    ap.add_argument("--record", action="store_true", help="write the results into the int8 files' metadata")
    ap.add_argument("--max-increase", type=float, default=0.01)
    ap.add_argument("--reuse", action="store_true", help="keep the prediction files already in OUT")
    args = ap.parse_args(argv)
    out = args.out or args.work / "scores-int8"
    out.mkdir(parents=True, exist_ok=True)
    rows = score(args.work, args.models, out, args.reuse)
    (out / "scores.json").write_text(json.dumps(rows, indent=2) + "\n")
    bad = [r for r in rows if not r["relative_change"] <= args.max_increase]
    for r in bad:
        print(f"{r['set']} {r['variant']}: int8 NME {r['int8']:.5f} vs fp32 {r['fp32']:.5f} "
              f"({100 * r['relative_change']:+.2f}%, limit +{100 * args.max_increase:g}%)", file=sys.stderr)
    if args.record and not bad:
        record(args.models, rows)
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
