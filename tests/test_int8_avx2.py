"""Full 8-bit int8 models on x86 CPUs without VNNI/AMX run with 7-bit activations (``facelm.ort``), so that
onnxruntime's u8 x s8 kernels there (16-bit pair sums) cannot saturate: the rewrite keeps the model's function,
applies only where needed and only to the models it is for. (That the AVX2 kernels saturate without it, and give
this CPU's result bit for bit with it, is measured under emulation by ``benchmarks/bench_int8_avx2.py
--emulate``; this CPU may have exact kernels either way.)"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import facelm.ort as fort
from facelm.cpu_features import cpu_flags
from facelm.errors import ModelError
from facelm.modelfile import read_onnx_meta

MODELS = Path(__file__).resolve().parents[1] / "models"
EXAMPLES = MODELS.parent / "examples"
SHIPPED_INT8 = [MODELS / "cnn6.int8.onnx", MODELS / "cnn6r.int8.onnx"]


@functools.cache
def _real_crops(size: int = 64) -> np.ndarray:
    """Stage-1 crops of the two example photos' faces (the default pipeline's own framing), each also mirrored and
    shifted: 8 real face crops, (8, 3, size, size) float32 (resized from 64 px for a model of another input size,
    such as the 128-px stage 2). (Random pixels are no test of an activation range calibrated on faces.)"""
    import cv2

    import facelm
    from facelm.sources import SourceItem

    pipe = facelm.Landmarker(precision="fp32", threads=1).pipeline
    faces = [f.crop1 for p in sorted(EXAMPLES.glob("*.jpg")) for f in pipe.prepare(SourceItem(str(p), p)).faces]
    assert len(faces) == 2
    crops = [v for c in faces for v in (c, c[:, ::-1], np.roll(c, 3, axis=1), np.roll(c, -3, axis=0))]
    crops = [c if c.shape[0] == size else cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR)
             for c in crops]
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32)


def _qparams(model) -> tuple[dict, dict]:
    """({activation scale name: (scale, zero point)}, {bias code name: (codes, scale)}) as arrays, from the QDQ
    nodes of ``model``."""
    inits = {t.name: t for t in model.graph.initializer}
    arr = lambda n: numpy_helper.to_array(inits[n])  # noqa: E731
    acts, biases = {}, {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in inits:
            acts[n.input[1]] = (arr(n.input[1]), arr(n.input[2]))
        elif n.op_type == "DequantizeLinear" and inits[n.input[0]].data_type == onnx.TensorProto.INT32:
            biases[n.input[0]] = (arr(n.input[0]), arr(n.input[1]))
    return acts, biases


@pytest.mark.parametrize("path", SHIPPED_INT8, ids=lambda p: p.name)
def test_seven_bit_activations_on_the_shipped_int8_models(path):
    m = onnx.load(str(path))
    acts0, biases0 = _qparams(m)
    assert fort.seven_bit_activations(m) == len(acts0) > 0
    acts, biases = _qparams(m)
    for k, (s, z) in acts0.items():
        s2, z2 = acts[k]
        assert z2.dtype == np.uint8 and np.allclose(s2, 2 * s) and np.array_equal(z2, np.round(z / 2))
        # the old range's top (code 255) now has a code of at most 128: two products with |w| <= 127 fit 16 bits
        top = (255 - z.astype(float)) * s / s2 + z2
        assert top.max() <= 128.5 and 128 * 127 * 2 <= 32767
    for k, (q, s) in biases0.items():  # bias scale x2, codes /2: the float bias is kept (to half a new step)
        q2, s2 = biases[k]
        assert np.allclose(s2, 2 * s) and np.all(np.abs(q2 * s2.astype(float) - q * s.astype(float)) <= s2)
    x = _real_crops(read_onnx_meta(path)["input_size"][0])
    ref = fort.create_session(str(path).replace(".int8", ""), threads=1).run(["landmarks"], {"images": x})[0]
    int8 = fort.create_session(path, threads=1).run(["landmarks"], {"images": x})[0]
    got = fort.create_session(m.SerializeToString(), threads=1).run(["landmarks"], {"images": x})[0]
    err = lambda a: np.linalg.norm(a - ref, axis=-1).mean()  # noqa: E731 - mean px from the float model
    # one bit less per activation: about as far from the float model as int8 itself (measured 0.19 / 0.16 px
    # against int8's 0.20 / 0.12; the activations rescaled without the biases: 0.33 / 0.35)
    assert err(got) < 1.5 * err(int8) + 0.03


def test_seven_bit_weights_and_int8_activations_are_left_alone():
    m = onnx.load(str(SHIPPED_INT8[0]))
    for t in m.graph.initializer:  # 7-bit weights (codes within -64..64) cannot saturate: left as they are
        if t.data_type == onnx.TensorProto.INT8 and t.dims:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((a // 2).astype(np.int8), t.name))
    assert fort.seven_bit_activations(m) == 0
    m = onnx.load(str(SHIPPED_INT8[0]))
    inits = {t.name: t for t in m.graph.initializer}
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    zp = inits[q.input[2]]
    zp.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(zp).shape, np.int8), zp.name))
    before = m.SerializeToString()
    assert fort.seven_bit_activations(m) == 0  # int8 activations: not this kernel's problem
    assert m.SerializeToString() == before


def test_create_session_rewrites_only_where_the_kernels_saturate(monkeypatch, tmp_path):
    calls = []
    real = fort.seven_bit_activations
    monkeypatch.setattr(fort, "seven_bit_activations", lambda m: calls.append(real(m)) or calls[-1])
    x = _real_crops()
    ref = fort.create_session(SHIPPED_INT8[0], threads=1).run(["landmarks"], {"images": x})[0]
    monkeypatch.setattr(fort, "int8_kernels_saturate", lambda *a, **k: False)
    fort.create_session(SHIPPED_INT8[0], threads=1)
    assert calls == []  # exact int8 kernels: the file as it is
    monkeypatch.setattr(fort, "int8_kernels_saturate", lambda *a, **k: True)
    got = fort.create_session(SHIPPED_INT8[0], threads=1).run(["landmarks"], {"images": x})[0]
    assert calls == [12] and 0 < np.abs(got - ref).max() < 2  # the rewritten file ran
    calls.clear()
    fort.create_session(MODELS / "cnn6.onnx", threads=1)  # float model (int8-stored weights, no DequantizeLinear)
    fort.create_session(sorted((MODELS / "detectors").glob("*.onnx"))[0], threads=1)  # the detector
    assert calls == []
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"DequantizeLinear and nothing else")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):  # a broken file: onnxruntime reports it
        fort.create_session(bad, threads=1)


@pytest.mark.parametrize("flags, arch, expect", [
    ({"avx2", "fma"}, "x86", True), ({"avx2", "avx512_vnni"}, "x86", False), ({"avx2", "avx_vnni"}, "x86", False),
    ({"avx2", "amx_int8"}, "x86", False), ({"sse4_1"}, "x86", True), ({"asimd"}, "arm", False),
    ({"asimd", "asimddp"}, "arm", False), (set(), "other", False),
])
def test_which_cpus_saturate(flags, arch, expect):
    assert fort.int8_kernels_saturate(flags, arch) is expect
    assert isinstance(fort.int8_kernels_saturate(), bool)
    assert fort.int8_kernels_saturate(cpu_flags(), None) is fort.int8_kernels_saturate()


def test_shared_initializers_are_rewritten_once():
    """A zero point or a bias scale that several nodes share is halved / doubled once, not once per node."""
    m = onnx.load(str(SHIPPED_INT8[0]))
    inits = {t.name: t for t in m.graph.initializer}
    acts = [n for n in m.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in inits]
    zp = next(n.input[2] for n in acts if numpy_helper.to_array(inits[n.input[2]]).item() == 128)  # the input's
    for n in acts[-3:]:
        n.input[2] = zp
    bias = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    bias[1].input[1] = bias[0].input[1]
    scale = numpy_helper.to_array(inits[bias[0].input[1]]).copy()
    assert fort.seven_bit_activations(m) > 0
    inits = {t.name: t for t in m.graph.initializer}
    assert numpy_helper.to_array(inits[zp]).item() == 64
    assert np.allclose(numpy_helper.to_array(inits[bias[0].input[1]]), 2 * scale)
