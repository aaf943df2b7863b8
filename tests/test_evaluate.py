"""facelm.protocols, facelm.evaluate and ``facelm evaluate``: golden NMEs, matching, parity, CLI contract."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from facelm.errors import DataError, ModelError, UsageError
from facelm.evaluate import EvalOptions, evaluate, parse_model_spec, read_predictions
from facelm.manifest import Sample, load_manifest, write_manifest
from facelm.metrics import NORMALISERS
from facelm.protocols import PROTOCOLS, get_protocol

# --- a hand-made 300w68 manifest (no images needed: predictions files never open them) ---------------------------

_EYE_OFFSETS = np.array([[-10, 0], [-3, -2], [3, -2], [10, 0], [3, 2], [-3, 2]], dtype=float)
# normaliser of every hand face: outer corners 36/45 at x=10/70, eye centres at x=20/60, box 120 x 90
EXPECTED_D = {"inter-ocular": 60.0, "inter-pupil": 40.0, "box-width": 120.0, "box-height": 90.0,
              "box-max-side": 120.0, "box-diagonal": 150.0, "box-sqrt-area": float(np.sqrt(120.0 * 90.0))}


def _face(rng, tx: float = 0.0, ty: float = 0.0) -> tuple[np.ndarray, list[float]]:
    lm = rng.uniform(0, 90, size=(68, 2))
    lm[36:42] = np.array([20.0, 20.0]) + _EYE_OFFSETS
    lm[42:48] = np.array([60.0, 20.0]) + _EYE_OFFSETS
    return lm + [tx, ty], [tx, ty, tx + 120.0, ty + 90.0]


def _write_hand(folder: Path, faces: list[dict]) -> Path:
    """faces: dicts with image, split, subset, and optional tx/ty/lm."""
    rng = np.random.default_rng(1)
    samples = []
    for k, f in enumerate(faces):
        lm, box = _face(rng, f.get("tx", 0.0), f.get("ty", 0.0))
        if "lm" in f:
            lm = f["lm"]
        samples.append(Sample(id=f.get("id", f"f{k}"), image=f["image"], width=400, height=300, box=box,
                              landmarks=lm.tolist(), scheme="300w68", split=f.get("split", "test"),
                              subset=f.get("subset", [])))
    write_manifest(folder / "manifest.jsonl", samples)
    return folder


@pytest.fixture
def hand(tmp_path):
    """8 test faces on 6 images (two images hold two faces), 300W tags, and 2 train faces."""
    faces = []
    for k in range(6):
        tags = ["300w-common", "300w-full"] if k < 4 else ["300w-challenging", "300w-full"]
        faces.append({"image": f"imgs/img{k}.png", "subset": tags, "tx": 5.0 * k, "ty": 3.0})
    faces.append({"image": "imgs/img0.png", "subset": ["300w-common", "300w-full"], "tx": 250.0, "ty": 150.0})
    faces.append({"image": "imgs/img5.png", "subset": ["300w-challenging", "300w-full"], "tx": 260.0, "ty": 180.0})
    faces.append({"image": "imgs/train0.png", "split": "train", "subset": ["afw"]})
    faces.append({"image": "imgs/train1.png", "split": "train", "subset": ["afw"]})
    return _write_hand(tmp_path / "hand", faces)


def _write_preds(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _per_image_records(m, pred: np.ndarray, image_of=None) -> list[dict]:
    """The `facelm predict` format: one line per image, faces listed."""
    by_img: dict[str, list[int]] = {}
    for i, s in enumerate(m.samples):
        by_img.setdefault(s.image, []).append(i)
    recs = []
    for img, idx in by_img.items():
        name = image_of(img) if image_of else str((m.root / img).resolve())
        faces = [{"box": m.samples[i].box, "score": 0.9, "angle": 0.0,
                  "landmarks": [[None if not np.isfinite(v) else float(v) for v in p] for p in pred[i]]}
                 for i in reversed(idx)]  # reversed: matching must not rely on order
        recs.append({"image": name, "width": 400, "height": 300, "faces": faces, "error": None})
    return recs


# --- protocol registry -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, scheme, norm, thresholds", [
    ("aflw-full", "aflw19", "box-width", (0.07, 0.10)),
    ("300w", "300w68", "inter-ocular", (0.08, 0.10)),
    ("300w-private", "300w68", "inter-ocular", (0.08, 0.10)),
    ("cofw", "cofw29", "inter-pupil", (0.10,)),
    ("wflw", "wflw98", "inter-ocular", (0.10,)),
    ("custom", None, None, (0.08, 0.10)),
])
def test_protocol_registry(name, scheme, norm, thresholds):
    p = get_protocol(name)
    assert (p.scheme, p.normaliser, p.thresholds) == (scheme, norm, thresholds)
    assert p.resolve_norm(None, "300w68") == (norm or "inter-ocular")
    assert set(p.norms) <= set(NORMALISERS)


def test_protocol_choices():
    assert set(PROTOCOLS) == {"aflw-full", "300w", "300w-private", "cofw", "wflw", "custom"}
    assert get_protocol("300w").resolve_norm("inter-pupil") == "inter-pupil"
    assert get_protocol("custom").resolve_norm(None, "aflw19") == "box-width"
    assert get_protocol("300w").subsets == ("300w-common", "300w-challenging", "300w-full")
    assert get_protocol("wflw").subsets == ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
    with pytest.raises(UsageError, match="custom `norm` box-width"):
        get_protocol("300w").resolve_norm("box-width")
    with pytest.raises(UsageError, match="did you mean 'inter-pupil'"):
        get_protocol("custom").resolve_norm("inter-pupils")
    with pytest.raises(UsageError, match="did you mean 'wflw'"):
        get_protocol("wflv")


# --- golden numbers through evaluate() ---------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMALISERS)
def test_known_shift_gives_known_nme(hand, tmp_path, norm):
    m = load_manifest(hand).split("test")
    preds = _write_preds(tmp_path / "p.jsonl", _per_image_records(m, m.landmarks + [3.0, 4.0]))
    rep = evaluate([preds], EvalOptions(hand, protocol="custom", norm=norm))
    r = rep.records()[0]
    d = EXPECTED_D[norm]
    assert r["normaliser"] == norm and r["split"] == "test" and r["n"] == 8 and r["kind"] == "predictions"
    assert r["nme"] == pytest.approx(5.0 / d, rel=1e-12)
    assert r["median"] == pytest.approx(5.0 / d, rel=1e-12)
    assert np.allclose(r["per_landmark"], 5.0 / d)
    assert r["missing"] == 0 and r["n_failed_nonfinite"] == 0
    assert r["thresholds"] == [0.08, 0.1] and "fr@0.08" in r and "auc@0.1" in r


def test_300w_protocol_subsets_and_inter_pupil(hand, tmp_path):
    m = load_manifest(hand).split("test")
    preds = _write_preds(tmp_path / "p.jsonl", _per_image_records(m, m.landmarks + [3.0, 4.0]))
    r = evaluate([preds], EvalOptions(hand, protocol="300w", norm="inter-pupil")).records()[0]
    assert r["protocol"] == "300w" and r["selection"] == "300w-full" and r["scheme"] == "300w68"
    assert "landmarks 36-41" in r["normaliser_definition"]
    assert list(r["subsets"]) == ["300w-common", "300w-challenging", "300w-full"]
    assert [r["subsets"][k]["n"] for k in r["subsets"]] == [5, 3, 8]
    assert r["subsets"]["300w-challenging"]["nme"] == pytest.approx(5.0 / 40.0)


def test_fr_auc_exact_and_ced_monotone(hand, tmp_path):
    m = load_manifest(hand).split("test")
    shift = np.array([0.0, 3.0, 9.0, 12.0, 0.0, 3.0, 9.0, 12.0])  # x-shift / 60 -> NME 0, .05, .15, .2
    pred = m.landmarks + np.stack([shift, np.zeros(8)], 1)[:, None, :]
    preds = _write_preds(tmp_path / "p.jsonl", _per_image_records(m, pred))
    rep = evaluate([preds], EvalOptions(hand, protocol="custom"))
    r = rep.records()[0]
    assert np.allclose(np.sort(rep.scores[0].nme), np.repeat([0.0, 0.05, 0.15, 0.2], 2))
    assert r["fr@0.08"] == pytest.approx(0.5) and r["fr@0.1"] == pytest.approx(0.5)
    assert r["auc@0.08"] == pytest.approx((0.08 + 0.03) / 4 / 0.08)
    assert r["auc@0.1"] == pytest.approx((0.10 + 0.05) / 4 / 0.10)
    t, f = rep.ced()[str(preds)]
    assert t[0] == 0.0 and t[-1] == pytest.approx(0.1)
    assert np.all(np.diff(f) >= 0) and f[-1] == pytest.approx(0.5)


# --- predictions files: formats, matching, bad input -------------------------------------------------------------

def test_matching_by_id_by_file_name_and_nearest_face(hand, tmp_path):
    m = load_manifest(hand).split("test")
    pred = m.landmarks + [3.0, 4.0]
    recs = []
    for i, s in enumerate(m.samples):
        lm = pred[i].tolist()
        if i == 0:
            recs.append({"id": s.id, "landmarks": lm})  # by id, no image
        elif i % 2:
            recs.append({"image": f"/nowhere/{Path(s.image).name}", "face": 0, "landmarks": lm})  # by name
        else:
            rel = os.path.relpath(m.root / s.image, tmp_path)  # relative to the predictions file
            recs.append({"image": rel, "landmarks": {"x": [p[0] for p in lm], "y": [p[1] for p in lm]}})
    recs.append({"image": "unrelated/other.png", "landmarks": pred[0].tolist()})
    warnings: list[str] = []
    rep = evaluate([_write_preds(tmp_path / "p.jsonl", recs[::-1])], EvalOptions(hand), warn=warnings.append)
    r = rep.records()[0]
    assert r["missing"] == 0 and r["nme"] == pytest.approx(5.0 / 60.0)
    assert r["details"]["unmatched_images"] == 1
    assert any("match no image" in w for w in warnings)


def test_a_collapsed_second_shape_near_the_face_centre_does_not_take_the_face(hand, tmp_path):
    """A second detection's shape that collapsed inside the face (a small, wrong shape) may lie nearer the face's
    centre than the right, full-size shape; the face takes the shape whose points overlap its own most."""
    m = load_manifest(hand).split("test")
    pred = m.landmarks + [3.0, 4.0]
    recs = _per_image_records(m, pred)
    g, box = m.landmarks[0], m.boxes()[0]
    centre = (box[:2] + box[2:]) / 2
    small = centre + (g - g.mean(0)) * 0.2  # a fifth of the size, centred on the face's box
    rec = next(r for r in recs if r["image"] == str((m.root / m.samples[0].image).resolve()))
    rec["faces"].insert(0, {"box": [0, 0, 10, 10], "score": 0.5, "angle": 0.0, "landmarks": small.tolist()})
    r = evaluate([_write_preds(tmp_path / "p.jsonl", recs)], EvalOptions(hand)).records()[0]
    assert r["missing"] == 0 and r["nme"] == pytest.approx(5.0 / 60.0)
    # the centroid of the full-size shape is further from the box centre than the collapsed one's: the rule
    # before (nearest centroid to the box centre) gave the face the collapsed shape
    full_c = pred[0].mean(0)
    assert np.linalg.norm(small.mean(0) - centre) < np.linalg.norm(full_c - centre)


def test_missing_and_nan_predictions_are_failures(hand, tmp_path):
    m = load_manifest(hand).split("test")
    pred = m.landmarks + [3.0, 4.0]
    pred[2, 5] = np.nan
    recs = _per_image_records(m, pred)
    recs = [r for r in recs if not r["image"].endswith("img3.png")]  # one face lost
    recs.append({"image": str((m.root / "imgs/img3.png").resolve()), "faces": [], "error": "unreadable"})
    p = _write_preds(tmp_path / "p.jsonl", recs)
    warnings: list[str] = []
    r = evaluate([p], EvalOptions(hand), warn=warnings.append).records()[0]
    assert (r["n"], r["missing"], r["n_failed_nonfinite"]) == (8, 1, 1)
    assert r["fr@0.1"] == pytest.approx(2 / 8) and r["nme"] == pytest.approx(5.0 / 60.0)
    assert any("NaN" in w for w in warnings) and any("no prediction" in w for w in warnings)
    assert any("unreadable" in w for w in warnings)
    r2 = evaluate([p], EvalOptions(hand, skip_missing=True)).records()[0]
    assert (r2["n"], r2["missing"], r2["fr@0.1"]) == (7, 1, pytest.approx(1 / 7))


def test_bad_inputs(hand, tmp_path):
    m = load_manifest(hand).split("test")
    short = _write_preds(tmp_path / "short.jsonl", [{"image": m.samples[0].image, "landmarks": [[0, 0]] * 19}])
    with pytest.raises(ModelError, match="short.jsonl.*19 landmarks"):
        evaluate([short], EvalOptions(hand))
    other = _write_preds(tmp_path / "o.jsonl",
                         [{"image": "a.png", "scheme": "wflw98", "landmarks": [[0, 0]] * 68}])
    with pytest.raises(ModelError, match="scheme 'wflw98'"):
        evaluate([other], EvalOptions(hand))
    ragged = _write_preds(tmp_path / "r.jsonl", [{"image": "a.png", "landmarks": [[0, 0]] * 68},
                                                 {"image": "b.png", "landmarks": [[0, 0]] * 67}])
    with pytest.raises(ModelError, match="r.jsonl:2"):
        read_predictions(ragged)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ModelError, match="bad.jsonl:1"):
        read_predictions(tmp_path / "bad.jsonl")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0")
    with pytest.raises(ModelError, match="one kind"):
        parse_model_spec(f"{onnx}+{tmp_path / 'o.jsonl'}")
    with pytest.raises(ModelError, match="m.onnx"):
        evaluate([onnx], EvalOptions(hand))
    with pytest.raises(ModelError, match="no such model file"):
        parse_model_spec(str(tmp_path / "nothing.pt"))
    with pytest.raises(DataError, match="no faces in split 'val'"):
        evaluate([short], EvalOptions(hand, split="val"))
    with pytest.raises(UsageError, match="needs aflw19"):
        evaluate([short], EvalOptions(hand, protocol="aflw-full"))


def test_huge_predicted_coordinates_are_failures_without_numpy_warnings(hand, tmp_path):
    """1e308 is finite JSON, but its distances overflow: numpy's RuntimeWarnings went to stderr (two lines each,
    not `warning: ...`)."""
    import warnings

    m = load_manifest(hand).split("test")
    pred = m.landmarks + [3.0, 4.0]
    pred[1] = 1e308
    p = _write_preds(tmp_path / "p.jsonl", _per_image_records(m, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate([p], EvalOptions(hand), warn=lambda m: None).records()[0]
    assert r["n"] == 8 and r["fr@0.1"] == pytest.approx(1 / 8)


def test_a_repeated_image_record_is_warned_about_and_video_frames_are_not(hand, tmp_path):
    """Two runs concatenated into one file give each image twice; all its faces then compete for the ground truth,
    silently. Per-face lines and the frames of one video repeat an image by design."""
    m = load_manifest(hand).split("test")
    recs = _per_image_records(m, m.landmarks + [3.0, 4.0])
    warned: list[str] = []
    r = evaluate([_write_preds(tmp_path / "once.jsonl", recs)], EvalOptions(hand), warn=warned.append).records()[0]
    assert not any("repeat" in w for w in warned) and r["details"]["repeated_images"] == 0
    r = evaluate([_write_preds(tmp_path / "twice.jsonl", recs + recs[:2])], EvalOptions(hand),
                 warn=warned.append).records()[0]
    assert [w for w in warned if "2 per-image record(s) repeat an image" in w and "twice.jsonl" in w], warned
    assert r["details"]["repeated_images"] == 2
    frames = [{**recs[0], "frame": k} for k in range(3)]  # a video: one image name, three frames
    warned.clear()
    r = evaluate([_write_preds(tmp_path / "video.jsonl", frames + recs[1:])], EvalOptions(hand),
                 warn=warned.append).records()[0]
    assert not any("repeat" in w for w in warned) and r["details"]["repeated_images"] == 0


def test_zero_normaliser_names_the_faces(tmp_path):
    rng = np.random.default_rng(0)
    lm, _ = _face(rng)
    lm[45] = lm[36]  # outer eye corners coincide
    folder = _write_hand(tmp_path / "z", [{"image": "a.png"}, {"image": "b.png", "id": "bad-face", "lm": lm}])
    p = _write_preds(tmp_path / "p.jsonl", [{"image": "a.png", "landmarks": lm.tolist()}])
    with pytest.raises(DataError, match="zero or undefined.*bad-face"):
        evaluate([p], EvalOptions(folder))
    r = evaluate([p], EvalOptions(folder, norm="inter-pupil")).records()[0]  # pupils still apart
    assert r["n"] == 2


def test_default_split_falls_back(hand, tmp_path):
    m = load_manifest(hand)
    train_only = _write_hand(tmp_path / "t", [{"image": "a.png", "split": "train"}])
    p = _write_preds(tmp_path / "p.jsonl", [{"image": "a.png", "landmarks": m.landmarks[0].tolist()}])
    r = evaluate([p], EvalOptions(train_only)).records()[0]
    assert r["split"] == "all" and r["n"] == 1


# --- a real prepared dataset and checkpoint ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """24 synthetic faces prepared with the csv reader (splits set here: 16 train, 8 test), and a 10-step CNN-6."""
    from facelm.config import TrainConfig
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset
    from facelm.train import train

    tmp = tmp_path_factory.mktemp("ev")
    csv_path, _ = make_dataset(tmp / "raw", n=24)
    prepare(PrepareOptions(source=csv_path, out=tmp / "prep", fmt="csv", holdout=0.25, workers=1))
    m = load_manifest(tmp / "prep")
    samples = [s.model_copy(update={"split": "test" if k >= 16 else "train"}) for k, s in enumerate(m.samples)]
    write_manifest(m.path, samples)
    cfg = TrainConfig(data=str(tmp / "prep"), out=str(tmp / "run"), arch="cnn6", loss="wing", steps=10,
                      batch_size=8, width=0.25, val_every=10, log_every=5, threads=1, precision="fp32").filled()
    train(cfg)
    ckpt = tmp / "run" / "best.pt"
    return tmp, tmp / "prep", ckpt


@pytest.fixture(scope="module")
def parity_preds(trained):
    """The checkpoint's predictions (predict_manifest) on the test faces, written in the predict format."""
    from facelm.schemes import get_scheme
    from facelm.train import load_model_from_checkpoint, predict_manifest

    tmp, prep, ckpt = trained
    m = load_manifest(prep).split("test")
    import torch

    model, _ = load_model_from_checkpoint(ckpt, "cpu")
    pred = predict_manifest(model, m, get_scheme(m.scheme), torch.device("cpu"))
    out = tmp / "preds"
    out.mkdir(exist_ok=True)
    # image paths relative to the predictions file's folder (not the CWD, not the manifest)
    recs = _per_image_records(m, pred, image_of=lambda img: os.path.relpath(m.root / img, out))
    return _write_preds(out / "cnn6.jsonl", recs), pred


def test_checkpoint_and_predictions_file_agree(trained, parity_preds):
    _, prep, ckpt = trained
    preds, pred = parity_preds
    rep = evaluate([ckpt, preds], EvalOptions(prep, device="cpu"))
    a, b = rep.records()
    assert (a["kind"], b["kind"]) == ("checkpoint", "predictions")
    assert a["split"] == b["split"] == "test" and a["n"] == b["n"] == 8
    assert a["details"]["arch"] == "cnn6" and b["missing"] == 0
    assert np.allclose(rep.scores[0].pred, pred, atol=1e-6)
    assert abs(a["nme"] - b["nme"]) < 1e-6
    assert np.allclose(rep.scores[0].nme, rep.scores[1].nme, atol=1e-6)


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from facelm.cli import app

    res = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def test_cli_outputs(trained, parity_preds, tmp_path):
    _, prep, ckpt = trained
    preds, _ = parity_preds
    res = _cli(["--data", prep, "--protocol", "300w", "--device", "cpu", ckpt, preds,
                "--per-face", tmp_path / "faces.csv", "--plot", tmp_path / "ced.png",
                "--ced-csv", tmp_path / "c.csv"])
    assert res.exit_code == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["kind"] for r in recs] == ["checkpoint", "predictions"]
    assert {r["protocol"] for r in recs} == {"300w"} and {r["normaliser"] for r in recs} == {"inter-ocular"}
    assert abs(recs[0]["nme"] - recs[1]["nme"]) < 1e-6
    assert "normaliser inter-ocular" in res.stderr and "NME %" in res.stderr
    assert "tagged '300w-full'" in res.stderr  # synthetic data has no 300W tags: said, not hidden
    assert (tmp_path / "ced.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "faces.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 8 and set(rows[0]) == {"model", "id", "image", "subset", "nme", "status"}
    assert {r["status"] for r in rows} == {"ok"}
    with open(tmp_path / "c.csv", newline="") as f:
        assert next(csv.reader(f)) == ["threshold", str(ckpt), str(preds)]


def test_cli_exit_codes(trained, parity_preds, tmp_path):
    _, prep, _ = trained
    preds, pred = parity_preds
    res = _cli(["--data", prep, "--fail-above", "0.0", preds])
    assert res.exit_code == 1 and "fail-above" in res.stderr and len(res.stdout.splitlines()) == 1

    m = load_manifest(prep).split("test")
    wrong = _write_preds(tmp_path / "wrong.jsonl", [{"image": str(m.image_path(0)), "landmarks": [[1, 2]] * 5}])
    res = _cli(["--data", prep, wrong])
    assert res.exit_code == 4 and "wrong.jsonl" in res.stderr and res.stdout == ""

    res = _cli(["--data", prep, "--split", "val", preds])
    assert res.exit_code == 3 and "no faces in split 'val'" in res.stderr

    res = _cli(["--data", prep, "--protocol", "nope", preds])
    assert res.exit_code == 2 and "unknown protocol" in res.stderr

    res = _cli(["--data", prep, tmp_path / "a.onnx+b.onnx"])
    assert res.exit_code == 4 and "a.onnx" in res.stderr

    # two faces without predictions, one with a NaN point
    bad = pred.copy()
    bad[0, 3, 1] = np.nan
    recs = _per_image_records(m, bad)[:-2]
    partial = _write_preds(tmp_path / "partial.jsonl", recs)
    res = _cli(["--data", prep, partial])
    assert res.exit_code == 1
    r = json.loads(res.stdout)
    assert (r["n"], r["missing"], r["n_failed_nonfinite"]) == (8, 2, 1)
    assert r["fr@0.1"] >= 3 / 8 and "NaN" in res.stderr and "no prediction" in res.stderr
    res = _cli(["--data", prep, "--skip-missing", partial])
    assert res.exit_code == 0 and json.loads(res.stdout)["n"] == 6


def test_onnx_export_scores_like_its_checkpoint(trained, tmp_path):
    from facelm.export import export_onnx

    _, prep, ckpt = trained
    onnx = tmp_path / "cnn6.onnx"
    export_onnx(ckpt, onnx)
    rep = evaluate([ckpt, onnx], EvalOptions(prep, device="cpu"))
    a, b = rep.records()
    assert b["kind"] == "onnx" and b["details"]["arch"] == "cnn6" and b["n"] == a["n"]
    assert abs(a["nme"] - b["nme"]) < 1e-5
    assert np.abs(rep.scores[0].pred - rep.scores[1].pred).max() < 1e-2


def test_an_onnx_models_label_shift_moves_what_evaluate_scores(trained, tmp_path):
    """``facelm export --label-shift`` writes the shift into the metadata; evaluate adds it to the model's final
    landmarks along each face's eye line (checked against the same file without it)."""
    from facelm.export import export_onnx
    from facelm.modelfile import read_onnx_meta
    from facelm.schemes import get_scheme

    _, prep, ckpt = trained
    plain, shifted = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_onnx(ckpt, plain)
    export_onnx(ckpt, shifted, extra_meta={"label_shift": 0.05})
    assert read_onnx_meta(shifted)["label_shift"] == 0.05
    rep = evaluate([plain, shifted], EvalOptions(prep, device="cpu"))
    a, b = rep.scores[0].pred, rep.scores[1].pred
    le, re = get_scheme("300w68").eye_centres(a)
    np.testing.assert_allclose(b - a, np.broadcast_to(0.05 * (re - le)[:, None], a.shape), atol=1e-6)
    assert rep.records()[0]["nme"] != rep.records()[1]["nme"]
