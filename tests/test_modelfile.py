"""facelm.modelfile: the ONNX metadata contract (one key, one reader/writer, one mismatch check)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

from facelm.errors import ModelError
from facelm.modelfile import (
    META_KEY, check_meta_matches, label_shift, meta_from_session, meta_scheme, read_onnx_meta, set_onnx_meta,
    shift_landmarks
)


def _tiny(path, meta=None):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [1])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["landmarks"])], "t", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    if meta is not None:
        set_onnx_meta(m, meta)
        set_onnx_meta(m, meta)  # written twice: still one entry
        assert sum(p.key == META_KEY for p in m.metadata_props) == 1
    path.write_bytes(m.SerializeToString())
    return path


def test_metadata_round_trips_and_foreign_files_are_named(tmp_path):
    meta = {"arch": "cnn6", "stage": 1, "scheme": {"name": "300w68"}, "num_landmarks": 68}
    assert read_onnx_meta(_tiny(tmp_path / "a.onnx", meta)) == meta
    with pytest.raises(ModelError, match="not a facelm model"):
        read_onnx_meta(_tiny(tmp_path / "b.onnx"))
    with pytest.raises(ModelError, match="not found"):
        read_onnx_meta(tmp_path / "missing.onnx")
    (tmp_path / "c.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError):
        read_onnx_meta(tmp_path / "c.onnx")


def test_wire_reader_gives_what_onnx_reads_and_leaves_bad_files_to_onnx(tmp_path):
    """``read_onnx_meta`` reads the metadata off the protobuf wire format (no ``onnx`` import, no graph parse): the
    same string as ``onnx.load`` for every shipped file and for entries written in either field order, with other
    entries around; truncated, empty or foreign files fall back to ``onnx`` and keep its error messages."""
    from pathlib import Path

    from facelm.modelfile import _wire_meta, load_proto

    for f in sorted((Path(__file__).resolve().parents[1] / "models").rglob("*.onnx")):
        proto = load_proto(f, load_external_data=False)
        assert _wire_meta(f) == next((p.value for p in proto.metadata_props if p.key == META_KEY), None), f
    meta = {"arch": "cnn6", "stage": 2, "note": "é ✓"}
    path = _tiny(tmp_path / "m.onnx", meta)
    raw = path.read_bytes()
    assert _wire_meta(path) == json.dumps(meta)
    # an unrelated entry first, and ours with value before key (protobuf allows either order)
    other = b"\x0a\x03abc\x12\x01z"
    value = json.dumps({"stage": 1}).encode()
    ours = b"\x12" + bytes([len(value)]) + value + b"\x0a\x06facelm"
    swapped = tmp_path / "s.onnx"
    swapped.write_bytes(_strip_meta(raw) + b"\x72" + bytes([len(other)]) + other + b"\x72" + bytes([len(ours)]) + ours)
    assert read_onnx_meta(swapped) == {"stage": 1}
    for name, data in [("cut.onnx", raw[:-5]), ("empty.onnx", b""), ("bad.onnx", b"\x0f\xff\xff")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            _wire_meta(tmp_path / name)
        with pytest.raises(ModelError, match=f"{name}: not a readable ONNX file|{name}: not a facelm model"):
            read_onnx_meta(tmp_path / name)


def _strip_meta(raw: bytes) -> bytes:
    """``raw`` (a serialised ModelProto) without its metadata_props entries (field 14)."""
    import onnx

    m = onnx.load_from_string(raw)
    del m.metadata_props[:]
    return m.SerializeToString()


def test_loading_the_shipped_models_does_not_import_onnx():
    """predict's model scan reads metadata without ``onnx`` (whose import costs about 1 s per call)."""
    import subprocess
    import sys

    probe = ("import sys; from facelm.runtime.session import load_models; from facelm._paths import "
             "default_models_dir; load_models(default_models_dir(), 2, ['CPUExecutionProvider'], 1); "
             "print(sorted(m for m in sys.modules if m == 'onnx' or m.startswith('onnx.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_session_metadata_reader():
    class Sess:
        def __init__(self, m):
            self.m = m

        def get_modelmeta(self):
            return SimpleNamespace(custom_metadata_map=self.m)

    assert meta_from_session(Sess({META_KEY: '{"stage": 2}'}), "m.onnx") == {"stage": 2}
    with pytest.raises(ModelError, match="not a facelm model"):
        meta_from_session(Sess({}), "m.onnx")
    with pytest.raises(ModelError, match="corrupt"):
        meta_from_session(Sess({META_KEY: "{"}), "m.onnx")


def test_scheme_and_mismatch_checks():
    assert meta_scheme({"scheme": {"name": "300w68"}}).num_landmarks == 68
    manifest = SimpleNamespace(scheme="300w68", path="data/manifest.jsonl", landmarks=np.zeros((3, 68, 2)))
    check_meta_matches({"scheme": {"name": "300w68"}, "num_landmarks": 68}, manifest)
    with pytest.raises(ModelError, match="predicts scheme 'aflw19'"):
        check_meta_matches({"scheme": {"name": "aflw19"}, "num_landmarks": 19}, manifest, "m.onnx")
    with pytest.raises(ModelError, match="predicts 67 landmarks"):
        check_meta_matches({"scheme": {"name": "300w68"}, "num_landmarks": 67}, manifest)


def test_label_shift_is_read_checked_and_follows_the_eye_line():
    from facelm.schemes import get_scheme
    from facelm.synthetic import template_68

    assert label_shift({}) == 0.0 and label_shift({"label_shift": 0.012}) == 0.012
    for bad in ("x", None, float("nan"), 0.5, -0.2):
        with pytest.raises(ModelError, match="m.onnx: label_shift"):
            label_shift({"label_shift": bad}, "m.onnx")
    sch = get_scheme("300w68")
    face = template_68() * 100 + 50
    t = np.radians(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    for shape in (face, face @ rot.T * 2.0):  # upright, and turned by 30 degrees at twice the size
        le, re = sch.eye_centres(shape)
        moved = shift_landmarks(shape, 0.02, sch)
        np.testing.assert_allclose(moved - shape, np.broadcast_to(0.02 * (re - le), shape.shape), atol=1e-9)
    # a batch, and the turned face's move is the upright move turned the same way and scaled
    both = shift_landmarks(np.stack([face, face @ rot.T * 2.0]), 0.02, sch)
    np.testing.assert_allclose((both[1] - face @ rot.T * 2.0), (both[0] - face) @ rot.T * 2.0, atol=1e-9)
    assert shift_landmarks(face, 0.0, sch) is not None and np.array_equal(shift_landmarks(face, 0.0, sch), face)
