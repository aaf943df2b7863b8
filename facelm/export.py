"""Checkpoint -> ONNX with the model metadata inside the file.

The ONNX contract (what ``predict``, ``evaluate`` and any other consumer rely on):

* input ``images``: ``(N, 3, H, W)`` float32, RGB pixel values in [0, 255] (normalisation is inside the graph);
* output ``landmarks``: ``(N, L, 2)`` float32, (x, y) in input-crop pixels, 0-based, pixel centres at integers;
* the batch axis is dynamic;
* ``metadata_props["facelm"]``: one JSON string, the checkpoint's ``meta`` (arch, stage, scheme, input size, crop
  convention, pixel normalisation, mean shape, loss, versions, training manifest hash).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import onnx
import torch

from facelm.errors import ModelError

__all__ = ["export_onnx", "read_onnx_meta", "META_KEY", "DEFAULT_OPSET"]

META_KEY = "facelm"
DEFAULT_OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                extra_meta: dict | None = None) -> dict:
    """Export a facelm checkpoint to ONNX (fp32) atomically; returns the metadata written into the file."""
    from facelm.train import load_model_from_checkpoint

    model, meta = load_model_from_checkpoint(checkpoint, "cpu")
    model = model.float().eval()
    size = int(meta["input_size"][0])
    dummy = torch.full((2, 3, size, size), 127.0)
    meta = {**meta, **(extra_meta or {}), "onnx": {"input": "images", "output": "landmarks", "opset": opset,
                                                   "dynamic_batch": dynamic_batch}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        # The TorchScript-based exporter (dynamo=False) needs no extra packages and gives a plain static graph.
        torch.onnx.export(model, (dummy,), tmp, input_names=["images"], output_names=["landmarks"],
                          dynamic_axes={"images": {0: "batch"}, "landmarks": {0: "batch"}} if dynamic_batch else None,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(tmp)
        set_onnx_meta(proto, meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def set_onnx_meta(proto: onnx.ModelProto, meta: dict) -> None:
    for p in list(proto.metadata_props):
        if p.key == META_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "facelm"


def read_onnx_meta(path: str | Path) -> dict:
    """The facelm metadata of an ONNX file; ``ModelError`` if the file is not a facelm model."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: ONNX file not found")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf decode errors have many types
        raise ModelError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    for prop in proto.metadata_props:
        if prop.key == META_KEY:
            try:
                return json.loads(prop.value)
            except ValueError:
                raise ModelError(f"{p}: corrupt facelm metadata in the ONNX file") from None
    raise ModelError(f"{p}: not a facelm model (no '{META_KEY}' metadata; export it with `facelm export`)")


