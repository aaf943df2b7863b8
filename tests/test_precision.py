"""int8 or fp32: the CPU flags (parsed, mocked), the ``auto`` choice, model loading by precision (missing, stale,
int8-only folders), int8 copies of exported ONNX models (``facelm export MODEL.onnx --quantize int8``), and the
CLI (``predict --precision``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.cpu_features import cpu_arch, cpu_flags, cpu_name, int8_dot_product, parse_cpuinfo
from facelm.errors import ModelError, UsageError
from facelm.runtime import precision as P

X86_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma
"""
X86_VNNI = X86_AVX2.replace("avx2 fma", "avx2 fma avx512f avx512_vnni")
X86_AVXVNNI = X86_AVX2.replace("avx2 fma", "avx2 fma avx_vnni")
X86_AMX = X86_AVX2.replace("avx2 fma", "avx2 avx512f amx_tile amx_int8")
X86_OLD = X86_AVX2.replace(" avx avx2 fma", "")
ARM_DOT = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp\n"
ARM_PLAIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"


def test_cpuinfo_parsing():
    name, flags = parse_cpuinfo(X86_VNNI)
    assert name == "AMD EPYC 7B12" and {"avx2", "avx512_vnni"} <= flags
    assert cpu_flags(ARM_DOT) >= {"asimd", "asimddp"}
    assert cpu_name(X86_AVX2) == "AMD EPYC 7B12"
    assert (cpu_arch("x86_64"), cpu_arch("AMD64"), cpu_arch("aarch64"), cpu_arch("arm64"), cpu_arch("riscv64")) \
        == ("x86", "x86", "arm", "arm", "other")
    assert int8_dot_product(cpu_flags(X86_VNNI), "x86") == "AVX-512 VNNI"
    assert int8_dot_product(cpu_flags(X86_AVXVNNI), "x86") == "AVX-VNNI"
    assert int8_dot_product(cpu_flags(X86_AMX), "x86") == "AMX-INT8"
    assert int8_dot_product(cpu_flags(X86_AVX2), "x86") is None
    assert "dot product" in int8_dot_product(cpu_flags(ARM_DOT), "arm")
    assert int8_dot_product(cpu_flags(ARM_PLAIN), "arm") is None
    assert int8_dot_product(cpu_flags(ARM_DOT), "x86") is None  # flags are read per architecture
    assert isinstance(cpu_flags(), frozenset) and cpu_name()  # this machine: whatever it is, no crash


@pytest.mark.parametrize("cpuinfo, arch, expect", [
    (X86_VNNI, "x86", "int8"), (X86_AVXVNNI, "x86", "int8"), (X86_AMX, "x86", "int8"),
    (X86_AVX2, "x86", "int8"),  # no VNNI, but measured faster and as accurate (7-bit weights)
    (X86_OLD, "x86", "fp32"), (ARM_DOT, "arm", "int8"), (ARM_PLAIN, "arm", "fp32"), ("flags: avx2", "other", "fp32"),
])
def test_auto_choice_by_cpu(cpuinfo, arch, expect):
    c = P.choose_precision("auto", cuda=False, int8_missing=None, flags=cpu_flags(cpuinfo), arch=arch)
    assert (c.precision, c.requested) == (expect, "auto")
    assert c.reason.startswith("auto: ")
    if expect == "int8":
        assert "this CPU has" in c.reason
    else:
        assert "not known to be faster" in c.reason


@pytest.mark.parametrize("cpuinfo, arch, expect", [
    (X86_VNNI, "x86", "int8"), (X86_AVXVNNI, "x86", "int8"), (X86_AMX, "x86", "int8"), (ARM_DOT, "arm", "int8"),
    (X86_AVX2, "x86", "int8"),  # 8-bit weights: 7-bit activations there, so the 16-bit pair sums cannot saturate
    (X86_OLD, "x86", "fp32"),
])
def test_auto_runs_full_range_int8_where_int8_is_faster(cpuinfo, arch, expect):
    c = P.choose_precision("auto", cuda=False, int8_missing=None, flags=cpu_flags(cpuinfo), arch=arch,
                           full_range=True)
    assert c.precision == expect
    assert ("7-bit activations" in c.reason) == (cpuinfo is X86_AVX2)
    # asked for explicitly, it runs (the user's choice); where the kernels would saturate, with 7-bit activations
    c = P.choose_precision("int8", cuda=False, int8_missing=None, flags=cpu_flags(cpuinfo), arch=arch,
                           full_range=True)
    assert c.precision == "int8" and ("7-bit activations" in c.reason) == (cpuinfo in (X86_AVX2, X86_OLD))


def test_load_models_tells_full_range_int8_files(tiny, tmp_path, monkeypatch):
    """load_models passes the int8 files' weight range to the choice: on an AVX2 CPU without VNNI auto runs both
    int8, and says that full 8-bit copies run with 7-bit activations there."""
    import onnx

    import facelm.runtime.precision as prec
    from facelm.modelfile import read_onnx_meta, set_onnx_meta
    from facelm.runtime import load_models

    monkeypatch.setattr(prec, "cpu_flags", lambda: cpu_flags(X86_AVX2))
    monkeypatch.setattr(prec, "cpu_arch", lambda: "x86")
    d = _folder(tiny, tmp_path, "cnn6.onnx", "cnn7.onnx", "cnn6.int8.onnx", "cnn7.int8.onnx")
    pair = load_models(d)
    assert pair.precision == "int8" and "7-bit" not in pair.precision_reason  # tiny's copies have 7-bit weights
    for name in ("cnn6.int8.onnx", "cnn7.int8.onnx"):
        meta = read_onnx_meta(d / name)
        meta["quantization"]["reduce_range"] = False
        proto = onnx.load(str(d / name))
        set_onnx_meta(proto, meta)
        onnx.save(proto, str(d / name))
    pair = load_models(d)
    assert pair.precision == "int8" and "8-bit weights run with 7-bit activations" in pair.precision_reason


def test_choice_cuda_missing_and_explicit():
    vnni = cpu_flags(X86_VNNI)
    c = P.choose_precision("auto", cuda=True, int8_missing=None, flags=vnni, arch="x86")
    assert c.precision == "fp32" and "CUDA" in c.reason
    c = P.choose_precision("auto", cuda=False, int8_missing="no int8 models in m", flags=vnni, arch="x86")
    assert c.precision == "fp32" and "no int8 models in m" in c.reason
    old = cpu_flags(X86_OLD)
    assert P.choose_precision("int8", cuda=False, int8_missing=None, flags=old, arch="x86").precision == "int8"
    assert P.choose_precision("FP32", cuda=False, int8_missing=None, flags=vnni, arch="x86").precision == "fp32"
    with pytest.raises(UsageError, match="`precision` must be one of auto, fp32, int8"):
        P.choose_precision("int4", cuda=False, int8_missing=None, flags=vnni, arch="x86")


# ------------------------------------------------------------------------------------------------------------
# tiny models, their int8 copies, and loading by precision


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset
    from facelm.train import train

    root = tmp_path_factory.mktemp("prec")
    csv, _ = make_dataset(root / "raw", n=16, seed=0)
    prepare(PrepareOptions(source=csv, out=root / "prep", fmt="csv", holdout=0.25, workers=1))
    models = root / "models"
    for arch in ("cnn6", "cnn7"):
        cfg = TrainConfig(data=str(root / "prep"), out=str(root / arch), arch=arch, steps=2, batch_size=4,
                          width=0.125, threads=1, val_every=100, warmup=0).filled()
        train(cfg)
        export_onnx(root / arch / "best.pt", models / f"{arch}.onnx")
    for arch in ("cnn6", "cnn7"):
        r = CliRunner().invoke(app, ["export", str(models / f"{arch}.onnx"), "--out", str(models / f"{arch}.int8.onnx"),
                                     "--quantize", "int8", "--calib", str(root / "prep"), "--calib-faces", "8",
                                     "--max-nme-increase", "inf", "--bench-seconds", "0", "--threads", "1", "-q"])
        assert r.exit_code == 0, r.stderr
    return {"root": root, "models": models, "prep": root / "prep", "raw": root / "raw"}


def _folder(tiny, tmp_path, *names) -> Path:
    d = tmp_path / "m"
    d.mkdir(parents=True)
    for n in names:
        shutil.copy(tiny["models"] / n, d / n)
    return d


def _as_cpu(monkeypatch, cpuinfo: str, arch: str = "x86") -> None:
    monkeypatch.setattr(P, "cpu_flags", lambda: cpu_flags(cpuinfo))
    monkeypatch.setattr(P, "cpu_arch", lambda: arch)


def test_int8_copy_of_an_onnx_model_records_its_source_and_checks(tiny):
    from facelm.modelfile import read_onnx_meta

    for arch in ("cnn6", "cnn7"):
        src, q = read_onnx_meta(tiny["models"] / f"{arch}.onnx"), read_onnx_meta(tiny["models"] / f"{arch}.int8.onnx")
        assert q["precision"] == "int8" and q["stage"] == src["stage"] and q["scheme"] == src["scheme"]
        quant = q["quantization"]
        assert quant["source"]["file"] == f"{arch}.onnx" and quant["source"]["created"] == src["created"]
        assert quant["reduce_range"] is True and quant["weights"] == "int8, 7-bit range"
        nme = quant["nme_check"]
        assert nme["split"] == "val" and nme["faces"] > 0 and nme["normaliser"] == "inter-ocular"
        assert {"fp32", "int8", "int8_reference", "relative_change", "relative_change_reference"} <= set(nme)
        assert nme["measured_on"]["cpu"]


def test_export_from_onnx_usage_errors(tiny, tmp_path):
    m, prep = tiny["models"], tiny["prep"]
    run = lambda *a: CliRunner().invoke(app, ["export", *map(str, a), "--bench-seconds", "0", "-q"])
    r = run(m / "cnn6.onnx", "--out", tmp_path / "a.onnx", "--weights", "fp16")
    assert r.exit_code == 2 and "only an int8 copy" in r.stderr and "--quantize" not in r.stdout
    r = run(m / "cnn6.int8.onnx", "--out", tmp_path / "a.onnx", "--quantize", "int8", "--calib", prep)
    assert r.exit_code == 2 and "is int8" in r.stderr
    assert run(m / "nope.onnx", "--out", tmp_path / "a.onnx", "--quantize", "int8", "--calib", prep).exit_code == 4
    # a limit that the int8 copy cannot meet: nothing is written, exit 4, the JSON still printed
    r = run(m / "cnn6.onnx", "--out", tmp_path / "b.onnx", "--quantize", "int8", "--calib", prep,
            "--calib-faces", "4", "--tolerance", "0")
    assert r.exit_code == 4 and not (tmp_path / "b.onnx").exists() and json.loads(r.stdout)["written"] is False


def test_restore_fp32_weights_undoes_fp16_storage(tiny, tmp_path):
    import onnx

    from facelm.export import convert_fp16_weights, make_session, random_crops, run_session
    from facelm.export_formats import restore_fp32_weights

    w = tmp_path / "w.onnx"
    convert_fp16_weights(tiny["models"] / "cnn6.onnx", w, min_elements=1)
    proto = onnx.load(str(w))
    n_cast = sum(n.op_type == "Cast" for n in proto.graph.node)
    assert n_cast > 0 and restore_fp32_weights(proto) == n_cast
    assert not any(n.op_type == "Cast" for n in proto.graph.node)
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in proto.graph.initializer)
    r = tmp_path / "r.onnx"
    onnx.save(proto, str(r))
    x = random_crops(3, 64, seed=1)
    np.testing.assert_array_equal(run_session(make_session(w), x), run_session(make_session(r), x))
    assert restore_fp32_weights(proto) == 0  # nothing left to restore


def test_int8_stored_weights_decode_restore_and_warm_start(tiny, tmp_path):
    """--weights int8 (precision int8w): a quarter-size file that onnxruntime runs in float32 with the decoded
    weights; restore_fp32_weights gives those weights back exactly (the int8 quantiser starts from them), and
    --init / --stage1 read them (load_init_weights)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from facelm.checkpoint import load_init_weights, load_model_from_checkpoint
    from facelm.export import convert_int8_weights, make_session, random_crops, run_session
    from facelm.export_formats import INT8_BLOCK, _int8_blocks, restore_fp32_weights

    src = tiny["models"] / "cnn6.onnx"
    w = tmp_path / "w8.onnx"
    meta = convert_int8_weights(src, w, min_elements=1)
    assert meta["precision"] == "int8w" and meta["int8w"]["compute"] == "float32"
    assert meta["int8w"]["weight_bytes"] < 0.35 * meta["int8w"]["weight_bytes_fp32"]
    proto = onnx.load(str(w))
    codes = [i for i in proto.graph.initializer if i.name.endswith("__int8")]
    assert codes and all(i.data_type == onnx.TensorProto.INT8 for i in codes)
    x = random_crops(3, 64, seed=1)
    y_src, y_w = run_session(make_session(src), x), run_session(make_session(w), x)
    assert 0 < np.abs(y_w - y_src).max() < 0.5  # rounded weights move the points a little, not far
    # every block's largest weight is exact and the rest are within half a step of their block's scale
    original = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    restored = onnx.load(str(w))
    n = restore_fp32_weights(restored)
    assert n == len(codes) and not any(nd.op_type in ("Cast", "Reshape") for nd in restored.graph.node
                                       if nd.name.endswith(("__cast", "__reshape")))
    back = {i.name: numpy_helper.to_array(i) for i in restored.graph.initializer}
    for name in (c.name.removesuffix("__int8") for c in codes):
        _, scale = _int8_blocks(original[name])
        assert back[name].shape == original[name].shape
        err = np.abs(back[name] - original[name]).reshape(len(scale), scale.shape[1], -1)
        assert np.all(err <= scale / 2 + 1e-7)
    r = tmp_path / "r.onnx"
    onnx.save(restored, str(r))
    np.testing.assert_allclose(run_session(make_session(r), x), y_w, atol=1e-4)
    assert restore_fp32_weights(restored) == 0
    assert INT8_BLOCK == 32
    # an int8 (QDQ) copy can be made from it like from an fp16-stored file
    from facelm.export_formats import quantize_int8

    q = tmp_path / "q.onnx"
    quantize_int8(w, q, random_crops(16, 64, seed=2))
    assert any(nd.op_type == "QuantizeLinear" for nd in onnx.load(str(q)).graph.node)
    assert np.isfinite(run_session(make_session(q), x)).all()
    # a warm start or a --stage1 model reads the decoded weights
    model, _ = load_model_from_checkpoint(w)
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), y_w, atol=1e-3)
    fresh = type(model)(model.num_landmarks, width=model.width)
    load_init_weights(fresh, w)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, model.state_dict()[k])


def test_load_models_by_precision(tiny, tmp_path, monkeypatch):
    from facelm.runtime import load_models

    d = _folder(tiny, tmp_path, "cnn6.onnx", "cnn7.onnx", "cnn6.int8.onnx", "cnn7.int8.onnx")
    _as_cpu(monkeypatch, X86_VNNI)
    pair = load_models(d)
    assert pair.precision == "int8" and "AVX-512 VNNI" in pair.precision_reason
    assert (pair.stage1.path.name, pair.stage2.path.name) == ("cnn6.int8.onnx", "cnn7.int8.onnx")
    assert pair.stage1.meta["precision"] == "int8"
    _as_cpu(monkeypatch, X86_OLD)
    pair = load_models(d)
    assert pair.precision == "fp32" and (pair.stage1.path.name, pair.stage2.path.name) == ("cnn6.onnx", "cnn7.onnx")
    pair = load_models(d, 1, precision="int8")
    assert pair.stage1.path.name == "cnn6.int8.onnx" and pair.stage2 is None
    assert load_models(d, precision="fp32", providers=["CPUExecutionProvider"]).stage1.path.name == "cnn6.onnx"
    with pytest.raises(UsageError, match="`precision`"):
        load_models(d, precision="bf16")


def test_missing_incomplete_stale_and_int8_only_folders(tiny, tmp_path, monkeypatch):
    from facelm.modelfile import read_onnx_meta, set_onnx_meta
    from facelm.runtime import load_models

    _as_cpu(monkeypatch, X86_VNNI)
    d = _folder(tiny, tmp_path, "cnn6.onnx", "cnn7.onnx", "cnn6.int8.onnx")
    pair = load_models(d)  # stage 2 runs by default, and has no int8 copy: fp32 for both
    assert pair.precision == "fp32" and "no int8 stage-2 model" in pair.precision_reason
    with pytest.raises(ModelError, match="`precision` int8: no int8 stage-2 model"):
        load_models(d, precision="int8")
    assert load_models(d, 1).precision == "int8"  # stage 1 alone has its copy
    (d / "cnn6.int8.onnx").unlink()
    assert "no int8 models in" in load_models(d).precision_reason
    # stale: the float model was replaced (another `created`) after the int8 copy was made
    shutil.copy(tiny["models"] / "cnn6.int8.onnx", d / "cnn6.int8.onnx")
    import onnx

    proto = onnx.load(str(d / "cnn6.onnx"))
    set_onnx_meta(proto, {**read_onnx_meta(d / "cnn6.onnx"), "created": "2099-01-01T00:00:00Z"})
    onnx.save(proto, str(d / "cnn6.onnx"))
    pair = load_models(d, 1)
    assert pair.precision == "fp32" and "rerun scripts/export_int8.sh" in pair.precision_reason
    with pytest.raises(ModelError, match="was made from another cnn6.onnx"):
        load_models(d, 1, precision="int8")
    # a folder of int8 models only
    only = _folder(tiny, tmp_path / "x", "cnn6.int8.onnx")
    assert load_models(only).precision == "int8"
    with pytest.raises(ModelError, match="holds only int8 models"):
        load_models(only, precision="fp32")


def test_int8_and_fp32_agree_on_the_tiny_models(tiny, monkeypatch):
    """The same faces through both precisions: close, but not identical (int8 really ran)."""
    from facelm.detectors import WholeImageDetector
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker, load_models

    imgs = [read_image(p) for p in sorted((tiny["raw"]).rglob("*.png"))[:4]]
    out = {}
    for prec in ("fp32", "int8"):
        lm = Landmarker(load_models(tiny["models"], precision=prec), WholeImageDetector(), level=False)
        out[prec] = np.stack([lm.predict_image(im).faces[0].landmarks for im in imgs])
    d = np.abs(out["int8"] - out["fp32"])
    assert 0 < d.max() and d.mean() < 2.0  # image px on 128-px synthetic faces; untrained tiny models


def test_predict_cli_precision(tiny, tmp_path, monkeypatch):
    img = next(iter(sorted(tiny["raw"].rglob("*.png"))))
    run = lambda *a: CliRunner().invoke(app, ["predict", str(img), "--no-detect", *map(str, a)])
    r = run("--models", tiny["models"], "--precision", "int8")
    assert r.exit_code == 0, r.stderr
    assert "precision: int8 (asked for" in r.stderr and json.loads(r.stdout)["faces"]
    r = run("--models", tiny["models"], "--precision", "fp32", "-q")
    assert r.exit_code == 0 and "precision" not in r.stderr
    r = run("--models", tiny["models"], "--precision", "half")
    assert r.exit_code == 2 and "--precision" in r.stderr and r.stdout == ""
    d = _folder(tiny, tmp_path, "cnn6.onnx", "cnn7.onnx")
    r = run("--models", d, "--precision", "int8")
    assert r.exit_code == 4 and "no int8 models" in r.stderr
    monkeypatch.setenv("FACELM_PRECISION", "fp32")
    r = run("--models", tiny["models"])
    assert r.exit_code == 0 and "precision: fp32 (asked for" in r.stderr


def test_int8_twins_share_the_box_map(tiny, tmp_path):
    from facelm.detectors.boxmap import write_box_map
    from facelm.modelfile import read_onnx_meta
    from facelm.runtime.session import int8_twins

    d = _folder(tiny, tmp_path, "cnn6.onnx", "cnn7.onnx", "cnn6.int8.onnx", "cnn7.int8.onnx")
    assert int8_twins(d / "cnn6.onnx") == [d / "cnn6.int8.onnx"]
    assert int8_twins(d / "cnn7.onnx") == [d / "cnn7.int8.onnx"]
    for p in [d / "cnn6.onnx", *int8_twins(d / "cnn6.onnx")]:
        write_box_map(p, {"detector": "yunet", "cx": 0.0, "cy": 0.1, "side": 0.8})
    assert read_onnx_meta(d / "cnn6.int8.onnx")["detector_box_maps"]["yunet"]["cy"] == 0.1


# ------------------------------------------------------------------------------------------------------------
# facelm bench: fp32 and int8 side by side, medians of repeats, noise labelled


def test_bench_summary_takes_medians_and_labels_ratios_above_1_as_noise():
    from facelm.cli.bench import _cell
    from facelm.runtime.benchmark import NOISE_NOTE, _summarise

    rounds = [{"bare_faces_s": b, "pipeline": {"faces_s": f, "ratio_to_bare": f / b}}
              for b, f in ((10.0, 10.5), (12.0, 12.24), (11.0, 9.9))]
    s = _summarise(rounds)
    assert s["bare_faces_s"] == 11.0 and s["pipeline_faces_s"] == 10.5
    assert s["pipeline_ratio_to_bare"] == 1.02 and s["spread"]["pipeline_ratio_to_bare"] == [0.9, 1.05]
    assert s["notes"]["pipeline_ratio_to_bare"] == NOISE_NOTE and "predict_faces_s" not in s
    assert _cell({"precisions": {"fp32": s}}, "fp32", "pipeline_ratio_to_bare") == "1.02 (noise: > 1)"
    s = _summarise(rounds[2:])
    assert "notes" not in s and _cell({"precisions": {"fp32": s}}, "fp32", "pipeline_ratio_to_bare") == "0.9"


def test_bench_reports_fp32_and_int8_side_by_side(tiny, tmp_path):
    r = CliRunner().invoke(app, ["bench", "--models", str(tiny["models"]), "--seconds", "0.02", "--repeats", "2",
                                 "--batch", "4", "--device", "cpu", "--markdown", str(tmp_path / "b.md")])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["precisions"] == ["fp32", "int8"] and out["repeats"] == 2
    assert out["auto"]["precision"] in ("fp32", "int8") and out["auto"]["reason"]
    assert out["machine"]["cpu"] and out["machine"]["int8_kernels"]
    (res,) = out["results"]
    for prec, files in (("fp32", ["cnn6.onnx", "cnn7.onnx"]), ("int8", ["cnn6.int8.onnx", "cnn7.int8.onnx"])):
        d = res["precisions"][prec]
        assert d["models"] == files and len(d["rounds"]) == 2
        # stage 1 with two levelled runs, stage 2 on its 7 framings; each twice (the default, full TTA)
        assert d["network_passes"] == [6, 14]
        assert d["stage1_faces_s"] > 0 and d["stage2_faces_s"] > 0 and d["bare_faces_s"] > 0 and d["pipeline_faces_s"] > 0
        assert d["time_budget"]["faces"] > 0 and d["time_budget"]["ms_per_face"]["networks"] > 0
    assert {"stage1", "stage1_latency", "stage2", "bare", "pipeline"} <= set(res["int8_over_fp32"])
    assert "int8 / fp32 speed" in (tmp_path / "b.md").read_text() and "int8 / fp32 speed" in r.stderr
    r = CliRunner().invoke(app, ["bench", "--models", str(tiny["models"]), "--precision", "fp32,bf16"])
    assert r.exit_code == 2 and "--precision" in r.stderr


def test_bench_with_nothing_it_can_measure_is_one_error_line(tiny, tmp_path):
    """`--precision int8` against a folder of float models measured nothing and exited 0 with an empty table; an
    empty item in the list was dropped; an empty folder gave a warning and an error for one cause."""
    import shutil

    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    for f in tiny["models"].glob("*.onnx"):
        if ".int8." not in f.name:
            shutil.copy(f, fp32 / f.name)
    r = CliRunner().invoke(app, ["bench", "--models", str(fp32), "--seconds", "0.02", "--repeats", "1",
                                 "--precision", "int8", "-q"])
    assert r.exit_code == 4 and r.stdout == "", (r.exit_code, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "int8" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["bench", "--models", str(tiny["models"]), "--precision", "fp32,,int8"])
    assert r.exit_code == 2 and "an empty item" in r.stderr
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "empty"), "--models", str(tiny["models"]), "-q"])
    assert r.exit_code == 3 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {tmp_path / 'empty'}: no images to benchmark on ("), r.stderr
