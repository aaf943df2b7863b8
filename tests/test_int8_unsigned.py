"""Full 8-bit int8 models on x86 CPUs without VNNI/AMX run with unsigned weights (``facelm.ort``): lossless, only
where needed, and only for the models it applies to. (That the AVX2 kernels saturate without it is measured under
emulation by ``benchmarks/bench_int8_unsigned.py --emulate``; this CPU may have exact kernels either way.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import facelm.ort as fort
from facelm.cpu_features import cpu_flags
from facelm.errors import ModelError

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED_INT8 = [MODELS / "cnn6.int8.onnx", MODELS / "cnn6r.int8.onnx"]


def _faces(n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 3, 8, 8)).astype(np.float32)
    x = np.kron(base, np.ones((1, 1, 8, 8), np.float32)) + rng.normal(0, 20, (n, 3, 64, 64))
    return np.clip(x, 0, 255).astype(np.float32)


def _weights(model) -> dict:
    inits = {t.name: t for t in model.graph.initializer}
    return {n.input[0]: inits[n.input[0]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(n.input) > 2}


@pytest.mark.parametrize("path", SHIPPED_INT8, ids=lambda p: p.name)
def test_unsigned_weights_are_lossless_on_the_shipped_int8_models(path):
    m = onnx.load(str(path))
    before = {k: numpy_helper.to_array(t).astype(np.int32) for k, t in _weights(m).items()
              if t.data_type == onnx.TensorProto.INT8}
    assert max(int(np.abs(a).max()) for a in before.values()) > 64  # full 8-bit weights: the case at hand
    assert fort.unsigned_int8_weights(m) == len(before) > 0
    after = _weights(m)
    for k, a in before.items():
        assert after[k].data_type == onnx.TensorProto.UINT8
        assert np.array_equal(numpy_helper.to_array(after[k]).astype(np.int32) - 128, a)
    x = _faces()
    ref = fort.create_session(path, threads=1).run(["landmarks"], {"images": x})[0]
    got = fort.create_session(m.SerializeToString(), threads=1).run(["landmarks"], {"images": x})[0]
    assert np.abs(got - ref).max() <= 1e-4  # same integers, same result


def test_seven_bit_weights_and_int8_activations_are_left_alone():
    m = onnx.load(str(SHIPPED_INT8[0]))
    for t in _weights(m).values():  # 7-bit weights (codes within -64..64) cannot saturate: u8 x s8 stays
        if t.data_type == onnx.TensorProto.INT8 and t.dims:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((a // 2).astype(np.int8), t.name))
    assert fort.unsigned_int8_weights(m) == 0
    m = onnx.load(str(SHIPPED_INT8[0]))
    inits = {t.name: t for t in m.graph.initializer}
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    zp = inits[q.input[2]]
    zp.CopyFrom(numpy_helper.from_array(np.zeros(numpy_helper.to_array(zp).shape, np.int8), zp.name))
    assert fort.unsigned_int8_weights(m) == 0  # int8 activations: onnxruntime has no s8 x u8 kernel


def test_create_session_makes_weights_unsigned_only_where_the_kernels_saturate(monkeypatch, tmp_path):
    calls = []
    real = fort.unsigned_int8_weights
    monkeypatch.setattr(fort, "unsigned_int8_weights", lambda m: calls.append(real(m)) or calls[-1])
    x = _faces(4)
    ref = fort.create_session(SHIPPED_INT8[0], threads=1).run(["landmarks"], {"images": x})[0]
    monkeypatch.setattr(fort, "int8_kernels_saturate", lambda *a, **k: False)
    fort.create_session(SHIPPED_INT8[0], threads=1)
    assert calls == []  # exact int8 kernels: the file as it is
    monkeypatch.setattr(fort, "int8_kernels_saturate", lambda *a, **k: True)
    got = fort.create_session(SHIPPED_INT8[0], threads=1).run(["landmarks"], {"images": x})[0]
    assert calls == [11] and np.abs(got - ref).max() <= 1e-4
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
