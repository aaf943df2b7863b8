"""facelm.checkpoint: finding, loading and rebuilding checkpoints; the torch device."""

from __future__ import annotations

import pytest
import torch

from facelm.checkpoint import load_checkpoint, pick_device, resolve_checkpoint
from facelm.errors import ModelError, UsageError


def test_resolve_checkpoint_prefers_best_then_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ModelError, match="no best.pt or last.pt"):
        resolve_checkpoint(run)
    (run / "last.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "last.pt"
    (run / "best.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "best.pt"
    assert resolve_checkpoint(run / "last.pt") == run / "last.pt"  # a file is taken as given


def test_load_checkpoint_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ModelError, match="not a facelm checkpoint"):
        load_checkpoint(foreign)


def test_a_pickle_of_python_objects_is_refused_without_torch_advice_or_warnings(tmp_path):
    """torch's refusal ends in advice to load the file unsafely (`weights_only=False`, which the CLI's message
    rewriting turned into a `--weights-only` option facelm does not have), after a UserWarning on stderr."""
    import pickle
    import warnings

    p = tmp_path / "objects.pt"
    p.write_bytes(pickle.dumps({"a": object}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ModelError) as e:
            load_checkpoint(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: not a readable checkpoint (the safe load refused it: Unsupported")
    assert "weights_only" not in msg and "\n" not in msg


def test_pick_device_names_its_parameter():
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(UsageError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="`device` cuda"):
            pick_device("cuda")


def test_one_device_grammar_for_the_cli_and_onnxruntime():
    """auto | cpu | cuda | cuda:N (N >= 0) in any case; onnxruntime's providers parse it as the CLI checks it (a
    negative index used to reach onnxruntime as device -1)."""
    from facelm.ort import parse_device, resolve_providers

    assert parse_device(None) == ("auto", 0) and parse_device(" CPU ") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0) and parse_device("cuda:3") == ("cuda", 3)
    for bad in ("", "cuda:-1", "cpu:0", "cuda:", "gpu", "cuda:1:2"):
        with pytest.raises(UsageError, match="unknown device"):
            parse_device(bad)
        with pytest.raises(UsageError, match="unknown device"):
            resolve_providers(bad)
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]


def test_cuda_probe_model_is_what_onnx_helper_builds_and_runs_without_importing_onnx():
    """The CUDA probe's model is stored as bytes so that ``predict`` skips importing ``onnx`` (~0.9 s per call);
    the bytes must stay the model ``onnx.helper`` builds, and onnxruntime must run it."""
    import subprocess
    import sys

    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from facelm.ort import _TINY_MODEL

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    assert m.SerializeToString() == _TINY_MODEL
    sess = ort.InferenceSession(_TINY_MODEL, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.array([-2.0], np.float32)})[0].tolist() == [0.0]
    probe = ("import sys; from facelm.ort import cuda_usable, resolve_providers; cuda_usable(0); "
             "resolve_providers('auto'); print('onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
