"""ONNX export: torch/onnxruntime parity, dynamic batch, metadata, OpenCV DNN, fp16/int8 and the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from facelm.checkpoint import load_checkpoint  # noqa: E402
from facelm.cli import app  # noqa: E402
from facelm.config import TrainConfig  # noqa: E402
from facelm.errors import ModelError, UsageError  # noqa: E402
from facelm.export import (  # noqa: E402
    PARITY_TOLERANCE, ExportOptions, export, export_onnx, make_session, onnx_predict_manifest, random_crops,
    read_onnx_meta, run_session
)
from facelm.manifest import load_manifest  # noqa: E402
from facelm.prepare import PrepareOptions, prepare  # noqa: E402
from facelm.schemes import get_scheme  # noqa: E402
from facelm.synthetic import make_dataset  # noqa: E402
from facelm.train import load_model_from_checkpoint, predict_manifest, train  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    csv, _ = make_dataset(root / "raw", n=24)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", holdout=0.25, workers=1))
    cks = {}
    for arch in ("cnn6", "cnn7"):
        train(TrainConfig(data=str(root / "prep"), out=str(root / arch), arch=arch, steps=5, batch_size=8,
                          width=0.25, val_every=5, threads=1).filled())
        cks[arch] = root / arch / "best.pt"
    return root, cks


@pytest.fixture(scope="module")
def exported(work):
    """fp32 exports of both stages, checked on the synthetic val split."""
    root, cks = work
    res = {}
    for arch, ck in cks.items():
        r = export(ExportOptions(checkpoint=ck, out=root / f"{arch}.onnx", val=root / "prep"))
        res[arch] = r
    return res


def _torch(ck, x):
    model, _ = load_model_from_checkpoint(ck)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_parity_within_tolerance_for_both_stages(work, exported, arch):
    root, cks = work
    r = exported[arch]
    assert r.ok and r.summary["written"], r.failures
    p = r.summary["parity"]
    assert p["ok"] and p["source"] == "data" and p["n_crops"] > 0
    assert p["max_abs_px"] <= p["tolerance"] == PARITY_TOLERANCE["fp32"]
    # independently of export(): random crops, batch of 5
    size = 64 if arch == "cnn6" else 128
    x = random_crops(5, size, seed=7)
    y = run_session(make_session(root / f"{arch}.onnx"), x)
    np.testing.assert_allclose(y, _torch(cks[arch], x), atol=1e-4)
    s = r.summary
    assert (s["arch"], s["stage"], s["precision"], s["dynamic_batch"]) == (arch, 1 if arch == "cnn6" else 2,
                                                                          "fp32", True)
    assert s["nme"]["crops"] == ("ground-truth face square" if arch == "cnn6" else "ground-truth upright square")
    assert s["bytes"] == (root / f"{arch}.onnx").stat().st_size


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_dynamic_batch_runs_batch_1_and_7(work, exported, arch):
    root, _ = work
    sess = make_session(root / f"{arch}.onnx")
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    assert (inp.name, out.name) == ("images", "landmarks")
    assert not isinstance(inp.shape[0], int) and inp.type == "tensor(float)"
    size = inp.shape[2]
    x = random_crops(7, size, seed=3)
    y7 = sess.run(["landmarks"], {"images": x})[0]
    y1 = sess.run(["landmarks"], {"images": x[:1]})[0]
    assert y7.shape == (7, 68, 2) and y1.shape == (1, 68, 2)
    np.testing.assert_allclose(y1[0], y7[0], atol=1e-4)


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_metadata_round_trip(work, exported, arch):
    root, cks = work
    meta = read_onnx_meta(root / f"{arch}.onnx")
    ck_meta = load_checkpoint(cks[arch])["meta"]
    for k, v in ck_meta.items():
        assert meta[k] == v, k
    assert meta["precision"] == "fp32"
    assert meta["onnx"]["input"] == "images" and meta["onnx"]["output"] == "landmarks"
    assert meta["onnx"]["dynamic_batch"] is True
    props = {p.key: p.value for p in onnx.load(str(root / f"{arch}.onnx")).metadata_props}
    assert json.loads(props["facelm"]) == meta  # one JSON string under one key


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_opencv_dnn_loads_and_agrees_with_onnxruntime(work, exported, arch):
    cv2 = pytest.importorskip("cv2")
    root, _ = work
    path = root / f"{arch}.onnx"
    assert exported[arch].summary["opencv_dnn"] is True
    net = cv2.dnn.readNetFromONNX(str(path))
    size = 64 if arch == "cnn6" else 128
    blob = random_crops(3, size, seed=11)  # NCHW float32 RGB 0..255, as the contract says
    net.setInput(blob)
    y_cv = np.asarray(net.forward()).reshape(3, 68, 2)
    y_ort = run_session(make_session(path), blob)
    np.testing.assert_allclose(y_cv, y_ort, atol=1e-3)


@pytest.mark.parametrize("arch", ["cnn6", "cnn7"])
def test_onnx_predict_manifest_matches_torch(work, exported, arch):
    root, cks = work
    m = load_manifest(root / "prep").split("val")
    sess = make_session(root / f"{arch}.onnx")
    meta = read_onnx_meta(root / f"{arch}.onnx")
    p_onnx = onnx_predict_manifest(sess, meta, m)
    model, _ = load_model_from_checkpoint(cks[arch])
    p_torch = predict_manifest(model, m, get_scheme(m.scheme), torch.device("cpu"))
    assert p_onnx.shape == (len(m), 68, 2)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-3)


def test_int8_quantisation(work, exported):
    root, cks = work
    out = root / "cnn6-int8.onnx"
    r = export(ExportOptions(checkpoint=cks["cnn6"], out=out, precision="int8", calib=root / "prep",
                             bench_seconds=0.05))
    assert r.ok, r.failures
    s = r.summary
    assert s["precision"] == "int8" and out.is_file()
    assert s["bytes"] < s["fp32_bytes"] and out.stat().st_size < (root / "cnn6.onnx").stat().st_size
    meta = read_onnx_meta(out)
    assert meta["precision"] == "int8"
    q = meta["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] and q["calib_crops"] > 0 and q["float_nodes"]
    assert len(q["calib_manifest_sha256"]) == 64
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # int8 parity is reported, not enforced; the NME change is checked on the calib set's val split
    assert s["parity"]["tolerance"] is None and s["parity"]["max_abs_px"] < 1.0
    assert s["parity"]["fp32_max_abs_px"] <= PARITY_TOLERANCE["fp32"]
    assert s["nme"]["split"] == "val" and s["nme"]["ok"] and "int8" in s["nme"]
    assert s["speed"]["fp32_crops_per_s"] > 0 and s["speed"]["int8_crops_per_s"] > 0 and s["speed"]["speedup"] > 0
    y = run_session(make_session(out), random_crops(2, 64))
    assert y.shape == (2, 68, 2) and np.isfinite(y).all()


def test_half_gives_fp16_model_with_float32_io(work, exported):
    root, cks = work
    out = root / "cnn7-fp16.onnx"
    r = export(ExportOptions(checkpoint=cks["cnn7"], out=out, precision="fp16", bench_seconds=0))
    assert r.ok, r.failures
    assert r.summary["parity"]["max_abs_px"] <= PARITY_TOLERANCE["fp16"]
    proto = onnx.load(str(out))
    fp16 = onnx.TensorProto.FLOAT16
    assert any(t.data_type == fp16 for t in proto.graph.initializer)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_onnx_meta(out)["precision"] == "fp16"
    sess = make_session(out)
    y = run_session(sess, random_crops(3, 128))
    assert y.dtype == np.float32 and y.shape == (3, 68, 2)


def test_fp16_weight_storage_halves_the_file_and_keeps_fp32_compute(work, exported):
    root, cks = work
    out = root / "cnn6-fp16w.onnx"
    r = export(ExportOptions(checkpoint=cks["cnn6"], out=out, precision="fp16w", bench_seconds=0))
    assert r.ok, r.failures
    s = r.summary
    assert s["bytes"] < 0.55 * s["fp32_bytes"]
    assert s["parity"]["max_abs_px"] <= PARITY_TOLERANCE["fp16w"]
    proto = onnx.load(str(out))
    kinds = {t.name: t.data_type for t in proto.graph.initializer}
    assert any(v == onnx.TensorProto.FLOAT16 for v in kinds.values())
    # biases stay float32 (the output bias holds the mean shape in pixels)
    assert all(v == onnx.TensorProto.FLOAT for k, v in kinds.items() if k.endswith("bias"))
    # computation is float32: every cast goes to float32, and no fp16 value reaches a compute node
    casts = [n for n in proto.graph.node if n.op_type == "Cast"]
    assert casts and all(a.i == onnx.TensorProto.FLOAT for n in casts for a in n.attribute if a.name == "to")
    meta = read_onnx_meta(out)
    assert meta["precision"] == "fp16w" and meta["fp16w"]["compute"] == "float32"
    x = random_crops(3, 64)
    np.testing.assert_allclose(run_session(make_session(out), x), _torch(cks["cnn6"], x), atol=0.1)


def test_static_batch_export(work, tmp_path):
    _, cks = work
    out = tmp_path / "static.onnx"
    meta = export_onnx(cks["cnn6"], out, dynamic_batch=False)
    assert meta["onnx"]["dynamic_batch"] is False
    sess = make_session(out)
    assert sess.get_inputs()[0].shape[0] == 1
    x = random_crops(3, 64)
    np.testing.assert_allclose(run_session(sess, x), _torch(cks["cnn6"], x), atol=1e-4)


def test_read_onnx_meta_rejects_foreign_files(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    p = tmp_path / "other.onnx"
    onnx.save(helper.make_model(g), str(p))
    with pytest.raises(ModelError, match="not a facelm model"):
        read_onnx_meta(p)
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ModelError):
        read_onnx_meta(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="not found"):
        read_onnx_meta(tmp_path / "missing.onnx")


def test_bad_options_are_usage_errors(work, tmp_path):
    _, cks = work
    with pytest.raises(UsageError):
        export(ExportOptions(checkpoint=cks["cnn6"], out=tmp_path / "x.txt"))
    with pytest.raises(UsageError):
        export(ExportOptions(checkpoint=cks["cnn6"], out=tmp_path / "x.onnx", precision="int8"))


# -- CLI ----------------------------------------------------------------------------------------------------------

def _run(args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def test_cli_success_prints_one_json_document(work, tmp_path):
    root, cks = work
    out = tmp_path / "m" / "cnn6.onnx"
    r = _run([cks["cnn6"].parent, "--out", out, "--calib", root / "prep"])  # a run folder works too
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert r.stdout.count("\n") == 1
    for k in ("checkpoint", "out", "arch", "stage", "scheme", "opset", "precision", "dynamic_batch", "bytes",
              "parity", "opencv_dnn", "nme"):
        assert k in doc
    assert set(doc["parity"]) >= {"max_abs_px", "tolerance", "n_crops", "ok"}
    assert doc["out"] == str(out) and out.is_file() and doc["written"] is True
    assert "next: facelm" in r.stderr


def test_cli_weights_fp16_int8_and_their_usage_errors(work, tmp_path):
    _, cks = work
    out = tmp_path / "w.onnx"
    r = _run([cks["cnn6"], "--out", out, "--weights", "fp16", "--bench-seconds", "0", "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["precision"] == "fp16w" and read_onnx_meta(out)["precision"] == "fp16w"
    out8 = tmp_path / "w8.onnx"
    r = _run([cks["cnn6"], "--out", out8, "--weights", "int8", "--bench-seconds", "0", "-q"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["precision"] == "int8w" and read_onnx_meta(out8)["precision"] == "int8w"
    assert doc["parity"]["max_abs_px"] <= PARITY_TOLERANCE["int8w"] and out8.stat().st_size < out.stat().st_size
    for bad in (["--weights", "fp16", "--half"], ["--weights", "int4"],
                ["--weights", "int8", "--quantize", "int8"]):
        r = _run([cks["cnn6"], "--out", tmp_path / "x.onnx", *bad])
        assert r.exit_code == 2 and r.stdout == "" and "--weights" in r.stderr
        assert not (tmp_path / "x.onnx").exists()


def test_cli_label_shift_is_written_and_checked(work, tmp_path):
    _, cks = work
    out = tmp_path / "s.onnx"
    r = _run([cks["cnn6"], "--out", out, "--label-shift", "0.012", "--bench-seconds", "0", "-q"])
    assert r.exit_code == 0, r.stderr
    assert read_onnx_meta(out)["label_shift"] == 0.012
    r = _run([cks["cnn6"], "--out", tmp_path / "p.onnx", "--bench-seconds", "0", "-q"])
    assert r.exit_code == 0 and "label_shift" not in read_onnx_meta(tmp_path / "p.onnx")
    for bad, why in ((["--label-shift", "0.5"], "--label-shift must be in"),
                     (["--label-shift", "nan"], "--label-shift must be in")):
        r = _run([cks["cnn6"], "--out", tmp_path / "x.onnx", *bad])
        assert r.exit_code == 2 and why in r.stderr and not (tmp_path / "x.onnx").exists()
    r = _run([out, "--out", tmp_path / "q.onnx", "--quantize", "int8", "--calib", tmp_path,
              "--label-shift", "0.01"])
    assert r.exit_code == 2 and "an int8 copy keeps its source's" in r.stderr


def test_cli_exit_codes(work, tmp_path):
    root, cks = work
    ck = cks["cnn6"]
    r = _run([tmp_path / "missing.pt", "--out", tmp_path / "a.onnx"])
    assert r.exit_code == 4 and r.stdout == ""
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [f"error: {tmp_path / 'missing.pt'}: checkpoint "
                                                                  "not found"]
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    assert _run([tmp_path / "corrupt.pt", "--out", tmp_path / "a.onnx"]).exit_code == 4
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    r = _run([tmp_path / "foreign.pt", "--out", tmp_path / "a.onnx"])
    assert r.exit_code == 4 and "not a facelm checkpoint" in r.stderr and r.stdout == ""
    assert _run([ck, "--out", tmp_path / "a.txt"]).exit_code == 2
    assert _run([ck, "--out", tmp_path / "a.onnx", "--quantize", "int8"]).exit_code == 2
    assert _run([ck, "--out", tmp_path / "a.onnx", "--quantize", "int4", "--calib", root / "prep"]).exit_code == 2
    assert _run([ck, "--out", tmp_path / "a.onnx", "--half", "--quantize", "int8", "--calib", root / "prep"]
                ).exit_code == 2
    assert _run([ck, "--out", tmp_path / "a.onnx", "--calib", tmp_path / "nowhere"]).exit_code == 3
    # data of another landmark scheme: exit 4 (model/data mismatch, as in `facelm evaluate`)
    other = tmp_path / "other"
    other.mkdir()
    text = (root / "prep" / "manifest.jsonl").read_text().replace('"scheme":"300w68"', '"scheme":"my68"')
    assert '"my68"' in text
    (other / "manifest.jsonl").write_text(text)
    shutil.copy(root / "prep" / "prepare.json", other / "prepare.json")
    r = _run([ck, "--out", tmp_path / "a.onnx", "--calib", other])
    assert r.exit_code == 4 and "scheme" in r.stderr
    assert not (tmp_path / "a.onnx").exists()


def test_cli_parity_failure_exits_4_with_numbers(work, tmp_path, monkeypatch):
    import facelm.export as fe

    _, cks = work
    real = fe.run_session
    monkeypatch.setattr(fe, "run_session", lambda s, x, batch=64: real(s, x, batch) + 0.5)
    out = tmp_path / "bad.onnx"
    r = _run([cks["cnn7"], "--out", out, "-q"])
    assert r.exit_code == 4
    doc = json.loads(r.stdout)
    assert doc["parity"]["ok"] is False and doc["parity"]["max_abs_px"] == pytest.approx(0.5, abs=1e-3)
    assert doc["written"] is False and not out.exists()
    assert "differs from torch by 0.5" in r.stderr
    assert not list(tmp_path.glob(".bad.onnx*"))  # no temporary files left behind


def test_the_quantisers_log_lines_become_one_warning(capsys):
    """onnxruntime's quantiser logs on the root logger; a first `logging.warning` there installs a handler that
    printed 25 raw `WARNING:root:...` lines for an hourglass model. They are summed up in one line now."""
    import logging

    from facelm.export_formats import _quantiser_log

    root = logging.getLogger()
    before = root.handlers[:]
    got: list[str] = []
    with _quantiser_log(got.append):
        logging.warning("Axis 1 is out-of-range for weight %r", "a")  # noqa: LOG015 - as onnxruntime logs
        logging.warning("Axis 1 is out-of-range for weight %r", "b")  # noqa: LOG015
        logging.info("not a warning")  # noqa: LOG015
    assert got == ["onnxruntime's quantiser: Axis 1 is out-of-range for weight 'a' (and 1 more)"]
    assert root.handlers == before
    assert "WARNING:root" not in capsys.readouterr().err
