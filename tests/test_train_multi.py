"""Several prepared sources in one training run, other schemes through scheme maps, warm starts, option checks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facelm.cli import app
from facelm.config import TrainConfig, resolve_train_config
from facelm.errors import ModelError, UsageError
from facelm.prepare import PrepareOptions, prepare
from facelm.scheme_maps import get_map
from facelm.synthetic import make_dataset
from facelm.train import load_init_weights, train
from facelm.transforms import AugmentConfig, frame_matrices


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A 68-point set and a 5-point set (the same kind of synthetic faces labelled through the 68 -> 5 map)."""
    root = tmp_path_factory.mktemp("multi")
    csv, _ = make_dataset(root / "raw68", n=24, seed=1)
    prepare(PrepareOptions(source=csv, out=root / "p68", fmt="csv", holdout=0.25, workers=1))
    csv5, lm = make_dataset(root / "raw5", n=24, seed=2)
    five = get_map("300w68", "5pt").apply(lm)
    rows = [line.split(",")[0] for line in csv5.read_text().splitlines()[1:]]
    csv5.write_text("," + ",".join(str(k) for k in range(10)) + "\n" + "\n".join(
        name + "," + ",".join(f"{v:.3f}" for v in p.reshape(-1)) for name, p in zip(rows, five)) + "\n")
    prepare(PrepareOptions(source=csv5, out=root / "p5", fmt="csv", scheme="5pt", holdout=0.25, workers=1))
    np.save(root / "p5_truth68.npy", lm)  # the 68 points the 5-point labels were mapped from
    (root / "p5_names.txt").write_text("\n".join(rows))
    return root / "p68", root / "p5"


def _cfg(data, out, **kw):
    base = dict(data=data, out=str(out), arch="cnn6", loss="wing", steps=12, batch_size=8, width=0.25,
                warmup=2, lr=2e-3, val_every=6, log_every=3, threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base).filled()


def test_two_schemes_train_one_model_with_per_source_validation(sources, tmp_path):
    p68, p5 = sources
    res = train(_cfg([str(p68), str(p5)], tmp_path / "run", weights=[1.0, 1.0]))
    s = res.summary
    assert s["scheme"] == "300w68"
    assert [(x["scheme"], x["weight"]) for x in s["sources"]] == [("300w68", 1.0), ("5pt", 1.0)]
    vals = [r for r in res.history if "val_nme" in r]
    assert vals and set(vals[-1]["val_nme_by_source"]) == {p68.name, p5.name}
    assert all(np.isfinite(v) for v in vals[-1]["val_nme_by_source"].values())
    assert vals[-1]["val_nme"] == vals[-1]["val_nme_by_source"][p68.name]


def test_multi_source_batches_follow_the_weights_and_resume_exactly(sources, tmp_path):
    from facelm.train_data import pick_batch

    class S:
        def __init__(self, n, w):
            self.n, self.weight = n, w

        def __len__(self):
            return self.n

    srcs = [S(100, 3.0), S(10, 1.0)]
    counts = np.zeros(2)
    for step in range(200):
        for i, b in pick_batch(srcs, step, 16, seed=5):
            counts[i] += len(b)
            assert b.max() < srcs[i].n
    assert counts[0] / counts.sum() == pytest.approx(0.75, abs=0.03)
    a = pick_batch(srcs, 17, 16, seed=5)
    b = pick_batch(srcs, 17, 16, seed=5)
    assert all(i == j and np.array_equal(x, y) for (i, x), (j, y) in zip(a, b))
    # a zero weight is validated on but never drawn
    srcs[1].weight = 0.0
    assert all(i == 0 for step in range(50) for i, _ in pick_batch(srcs, step, 16, seed=5))


def test_other_scheme_faces_only_train_their_mapped_points(sources, tmp_path, monkeypatch):
    """The loss of a 5-point face sees the 68-point prediction only through the map."""
    import facelm.train_batches as tb

    p68, p5 = sources
    seen = {}
    orig = tb.plan_batch

    def spy(*a, **k):
        out = orig(*a, **k)
        seen.setdefault("maps", []).append(out.maps)
        seen.setdefault("mask", []).append(out.mask)
        return out

    monkeypatch.setattr(tb, "plan_batch", spy)
    train(_cfg([str(p68), str(p5)], tmp_path / "r", steps=2, val_every=2, weights=[0.0001, 1.0]))
    amap = next(m for m in seen["maps"] if m is not None)
    assert amap.shape[1:] == (68, 68)
    # a 5-point face: rows 0..4 are the 68 -> 5 map, the rest zero and masked out
    five = [i for i in range(len(amap)) if not np.allclose(amap[i], np.eye(68))]
    assert five
    np.testing.assert_allclose(amap[five[0]][:5], get_map("300w68", "5pt").matrix, atol=1e-7)
    mask = next(m for m, a in zip(seen["mask"], seen["maps"]) if a is not None)
    assert not mask[five[0], 5:].any()


@pytest.mark.parametrize("kw,match", [
    (dict(weights=[1.0]), "2 `data`"),
    (dict(weights=[1.0, -1.0]), "weights"),
    (dict(weights=[0.0, 0.0]), "weights"),
    (dict(weights=[1.0, float("nan")]), "weights"),
])
def test_bad_weights_are_usage_errors(sources, tmp_path, kw, match):
    p68, p5 = sources
    with pytest.raises(UsageError, match=match):
        resolve_train_config(dict(data=[str(p68), str(p5)], out=str(tmp_path / "o"), **kw))


def test_scheme_without_a_map_is_a_usage_error_naming_both(sources, tmp_path, no_aflw19_map):
    from facelm.manifest import load_manifest, write_manifest

    p68, _ = sources
    m = load_manifest(p68)
    other = tmp_path / "aflw"
    other.mkdir()
    import shutil

    for f in ("crops.npy", "prepare.json"):
        shutil.copy(p68 / f, other / f)
    write_manifest(other / "manifest.jsonl", [s.model_copy(update={
        "scheme": "aflw19", "landmarks": s.landmarks[:19], "image": str((p68 / s.image).resolve())})
        for s in m.samples])
    with pytest.raises(UsageError, match=r"'300w68'.*'aflw19'"):
        train(_cfg([str(p68), str(other)], tmp_path / "run"))


@pytest.mark.parametrize("flag,value", [
    ("--steps", "0"), ("--steps", "-1"), ("--batch-size", "0"), ("--batch-size", "-4"), ("--lr", "-1"),
    ("--lr", "nan"), ("--val-every", "0"), ("--log-every", "0"), ("--threads", "-1"), ("--wing-w", "0"),
    ("--wing-eps", "0"), ("--width", "0"), ("--full-turn", "1.5"), ("--rotate", "-3"), ("--max-val", "0"),
    ("--occlude", "-0.1"), ("--occlude", "nan"), ("--convs", "0"), ("--convs", "5"),
])
def test_invalid_train_numbers_are_usage_errors(sources, tmp_path, flag, value):
    p68, _ = sources
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--data", str(p68), "--out", str(out), flag, value])
    assert r.exit_code == 2, r.output
    assert flag in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_explicit_zero_warmup_and_weight_decay_are_kept(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("warmup = 0\nweight_decay = 0.0\n")
    c = resolve_train_config({"data": "d", "out": "o"}, p)
    assert (c.warmup, c.weight_decay) == (0, 0.0)
    d = TrainConfig(data="d", out="o").filled()
    assert (d.warmup, d.weight_decay, d.steps, d.batch_size) == (200, 1e-4, 3000, 32)


def test_full_turn_rotations_cover_the_circle_and_leave_other_runs_unchanged():
    frames = np.tile([[50.0, 50.0, 40.0, 0.0]], (4000, 1))
    plain = AugmentConfig(rotate=30)
    m0, _ = frame_matrices(frames, 64, np.random.default_rng(1), plain)
    m1, _ = frame_matrices(frames, 64, np.random.default_rng(1), AugmentConfig(rotate=30, full_turn=0.0))
    np.testing.assert_array_equal(m0, m1)
    m2, _ = frame_matrices(frames, 64, np.random.default_rng(1), AugmentConfig(rotate=30, full_turn=0.5))
    ang = np.degrees(np.arctan2(m2[:, 0, 1], np.abs(m2[:, 0, 0]) * np.sign(m2[:, 1, 1])))
    assert np.mean(np.abs(ang) > 45) == pytest.approx(0.5 * 0.75, abs=0.04)


def test_warm_start_from_checkpoint_and_onnx(sources, tmp_path):
    from facelm.export import ExportOptions, export
    from facelm.models import create_model

    p68, _ = sources
    res = train(_cfg(str(p68), tmp_path / "a", steps=4, val_every=4))
    ck = res.summary["checkpoint"]
    fresh = create_model("cnn6", 68, width=0.25)
    load_init_weights(fresh, ck)
    ref = torch.load(ck, map_location="cpu", weights_only=False)["model"]
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, ref[k])
    onnx_path = tmp_path / "a.onnx"
    export(ExportOptions(checkpoint=Path(ck), out=onnx_path, precision="fp16w", bench_seconds=0))
    again = create_model("cnn6", 68, width=0.25)
    load_init_weights(again, onnx_path)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=2e-3, rtol=2e-3)  # fp16-stored weights
    with pytest.raises(ModelError, match="cnn7"):
        load_init_weights(create_model("cnn7", 68, width=0.25), ck)
    refiner = create_model("cnn6r", 68, width=0.25)  # the same network as stage 2: CNN-6 weights start it
    load_init_weights(refiner, onnx_path)
    for k, v in refiner.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=2e-3, rtol=2e-3)
    # a run started from it records where it came from
    res2 = train(_cfg(str(p68), tmp_path / "b", steps=2, val_every=2, init=str(onnx_path)))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["init"] == str(onnx_path)
    assert res2.summary["steps"] == 2


def test_a_deeper_run_starts_from_a_shallower_model_and_exports(sources, tmp_path):
    """--convs 2 --init a paper-depth (convs 1) ONNX model: the run starts from the same function (its first
    validation before any step would equal the shallow model's), records `convs`, and its checkpoint exports to an
    ONNX model that agrees with the torch network."""
    import onnxruntime as ort

    from facelm.checkpoint import load_model_from_checkpoint
    from facelm.export import ExportOptions, export
    from facelm.models import create_model

    p68, _ = sources
    res = train(_cfg(str(p68), tmp_path / "a", steps=4, val_every=4))
    shallow_onnx = tmp_path / "a.onnx"
    export(ExportOptions(checkpoint=Path(res.summary["checkpoint"]), out=shallow_onnx, bench_seconds=0))
    out = tmp_path / "deep"
    r = CliRunner().invoke(app, ["train", "--data", str(p68), "--out", str(out), "--arch", "cnn6", "--convs", "2",
                                 "--init", str(shallow_onnx), "--width", "0.25", "--steps", "3", "--batch-size", "8",
                                 "--val-every", "3", "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["convs"] == 2
    model, meta = load_model_from_checkpoint(out / "last.pt")
    assert model.convs == 2 and meta["model_options"] == {"convs": 2}
    deep_onnx = tmp_path / "deep.onnx"
    export(ExportOptions(checkpoint=out / "last.pt", out=deep_onnx, bench_seconds=0))
    x = torch.rand(2, 3, 64, 64) * 255
    sess = ort.InferenceSession(str(deep_onnx), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got.reshape(2, -1, 2), model.eval()(x).numpy(), atol=1e-3)
    again, _ = load_model_from_checkpoint(deep_onnx)  # the ONNX file rebuilds the deeper network (--stage1, --init)
    assert again.convs == 2
    # the identity-grown start computes what the shallow model did
    fresh = create_model("cnn6", 68, width=0.25, convs=2)
    load_init_weights(fresh, shallow_onnx)
    sess0 = ort.InferenceSession(str(shallow_onnx), providers=["CPUExecutionProvider"])
    ref = sess0.run(None, {sess0.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(fresh.eval()(x).numpy(), ref.reshape(2, -1, 2), atol=1e-3)
    # `convs` is for the regressors only
    r = CliRunner().invoke(app, ["train", "--data", str(p68), "--out", str(tmp_path / "hg"), "--arch", "hourglass",
                                 "--convs", "2"])
    assert r.exit_code == 2 and "convs" in r.output


def test_resume_after_a_kill_keeps_one_record_per_step(sources, tmp_path):
    """kill -9 after the last checkpoint leaves metrics of later steps; the resumed run must not repeat them."""
    p68, _ = sources
    out = tmp_path / "run"
    cfg = _cfg(str(p68), out, steps=12, val_every=6, log_every=3)
    train(cfg.model_copy(update={"steps": 6}))  # checkpoint at step 6
    (out / "summary.json").unlink()
    with open(out / "metrics.jsonl", "a") as f:  # what the killed run logged after its last checkpoint
        f.write(json.dumps({"step": 9, "loss": 1.0, "lr": 0.1, "img_s": 1.0, "elapsed": 1.0}) + "\n")
        f.write('{"step": 10, "lo')  # cut short by the kill
    train(cfg, resume=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert steps == [3, 6, 9, 12]


def test_divergence_message_names_only_what_exists_and_real_flags(sources, tmp_path, monkeypatch):
    from facelm.train import DivergedError

    p68, _ = sources
    import facelm.train as tr

    orig = tr.create_loss

    def nan_loss(*a, **k):
        f = orig(*a, **k)
        fwd = f.forward
        f.forward = lambda pred, y, mask=None: fwd(pred, y, mask) * float("nan")
        return f

    monkeypatch.setattr(tr, "create_loss", nan_loss)
    with pytest.raises(DivergedError) as e:
        train(_cfg(str(p68), tmp_path / "d", steps=3, val_every=3))
    assert "no checkpoint was saved yet" in str(e.value) and "--grad-clip 1" in str(e.value)
    r = CliRunner().invoke(app, ["train", "--help"])
    assert "--grad-clip" in r.output


def test_evaluate_scores_68_point_predictions_on_5_point_data_through_the_map(sources, tmp_path):
    p68, p5 = sources
    lm = np.load(p5.parent / "p5_truth68.npy")
    names = (p5.parent / "p5_names.txt").read_text().splitlines()
    preds = tmp_path / "preds.jsonl"
    with open(preds, "w") as f:
        for name, pts in zip(names, lm):
            f.write(json.dumps({"image": str(p5.parent / "raw5" / name), "faces": [
                {"box": [0, 0, 1, 1], "score": 1.0, "angle": 0.0, "scheme": "300w68",
                 "landmarks": (pts + 1.0).tolist()}], "error": None}) + "\n")  # 1 px off everywhere
    r = CliRunner().invoke(app, ["evaluate", "--data", str(p5), "--split", "all", str(preds), "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["details"]["scheme_map"]["points_scored"] == 5 and rec["missing"] == 0
    # every mapped point is off by sqrt(2) px: the NME is sqrt(2) / the eye-centre distance, face by face
    five = get_map("300w68", "5pt").apply(lm)
    expect = np.mean(np.sqrt(2) / np.linalg.norm(five[:, 0] - five[:, 1], axis=1))
    assert rec["nme"] == pytest.approx(expect, rel=1e-3)
    # no map between the schemes: a one-line model error
    bad = tmp_path / "bad.jsonl"
    bad.write_text(preds.read_text().replace('"300w68"', '"aflw19"'))
    r = CliRunner().invoke(app, ["evaluate", "--data", str(p5), "--split", "all", str(bad), "-q"])
    assert r.exit_code == 4 and "scheme map" in r.output


def test_user_scheme_map_file_is_used_by_train(sources, tmp_path, monkeypatch):
    from facelm import scheme_maps

    monkeypatch.setattr(scheme_maps, "_MAPS", dict(scheme_maps._MAPS))  # the built-in maps come back afterwards
    p68, p5 = sources
    mp = tmp_path / "eyes_only.json"
    mp.write_text(json.dumps({"from": "300w68", "to": "5pt", "points": [list(range(36, 42)), list(range(42, 48)),
                                                                          None, None, None]}))
    res = train(_cfg([str(p68), str(p5)], tmp_path / "run", scheme_maps=[str(mp)], steps=2, val_every=2))
    assert res.summary["sources"][1]["scheme"] == "5pt"
    from facelm.scheme_maps import get_map as gm

    assert gm("300w68", "5pt").mapped.tolist() == [True, True, False, False, False]


def test_a_128px_refiner_starts_from_a_64px_model_trains_exports_and_predicts(sources, tmp_path):
    """`--arch cnn6r --input-size 128 --init` a 64-px model: Wing's defaults double with the crop (20, 4 px), the
    run records the option, its checkpoint exports to an ONNX model that agrees with the torch network at 128 px,
    and a models folder with it as stage 2 predicts (the pipeline cuts 128-px stage-2 crops at the file's size)."""
    import cv2
    import onnxruntime as ort

    import facelm
    from facelm.checkpoint import load_model_from_checkpoint
    from facelm.export import ExportOptions, export

    p68, _ = sources
    s1 = train(_cfg(str(p68), tmp_path / "s1", steps=4, val_every=4))
    models = tmp_path / "models"
    export(ExportOptions(checkpoint=Path(s1.summary["checkpoint"]), out=models / "cnn6.onnx", bench_seconds=0))
    out = tmp_path / "s2"
    r = CliRunner().invoke(app, ["train", "--data", str(p68), "--out", str(out), "--arch", "cnn6r", "--input-size",
                                 "128", "--init", str(models / "cnn6.onnx"), "--stage1", str(models / "cnn6.onnx"),
                                 "--width", "0.25", "--steps", "3", "--batch-size", "8", "--val-every", "3",
                                 "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["input_size"], cfg["wing_w"], cfg["wing_eps"]) == (128, 20.0, 4.0)
    model, meta = load_model_from_checkpoint(out / "last.pt")
    assert model.input_size == 128 and meta["model_options"] == {"input_size": 128}
    export(ExportOptions(checkpoint=out / "last.pt", out=models / "cnn6r.onnx", bench_seconds=0))
    x = torch.rand(2, 3, 128, 128) * 255
    sess = ort.InferenceSession(str(models / "cnn6r.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got.reshape(2, -1, 2), model.eval()(x).numpy(), atol=1e-3)
    from facelm.manifest import load_manifest

    m = load_manifest(p68)
    s = m.samples[0]
    image = cv2.imread(str((m.root / s.image).resolve()))
    x0, y0, x1, y1 = s.box
    side = max(x1 - x0, y1 - y0)
    square = [(x0 + x1 - side) / 2, (y0 + y1 - side) / 2, (x0 + x1 + side) / 2, (y0 + y1 + side) / 2]
    faces = facelm.Landmarker(models, box_looks=False, device="cpu", threads=1)(image, boxes=[square])
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all() and faces[0].landmarks.shape == (68, 2)
    # the option's bad values, and on a network without it, are usage errors
    for arch, size in (("cnn6r", "96"), ("cnn6", "128")):
        r = CliRunner().invoke(app, ["train", "--data", str(p68), "--out", str(tmp_path / f"bad{size}"), "--arch",
                                     arch, "--input-size", size])
        assert r.exit_code == 2 and "input_size" in r.output.replace("-", "_"), r.output
