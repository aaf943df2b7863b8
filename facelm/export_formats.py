"""The fp16 and int8 variants of an exported fp32 ONNX model (``facelm export --half / --weights fp16 /
--quantize int8``); float32 inputs and outputs are kept, so a consumer needs no change. See ``facelm.export``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facelm._io import atomic_path, sha256_file, sweep_stale_temps, temp_name
from facelm.errors import ModelError, UsageError
from facelm.modelfile import read_onnx_meta, set_onnx_meta, stored_weights

if TYPE_CHECKING:
    import onnx

__all__ = ["ACTIVATION_TYPES", "CALIB_METHODS", "convert_fp16", "convert_fp16_weights", "convert_int8_weights",
           "quantize_int8", "restore_fp32_weights"]

ACTIVATION_TYPES = ("uint8", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")


def _save_atomic(proto: onnx.ModelProto, out: Path) -> None:
    import onnx

    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))


def _output_layer(proto: onnx.ModelProto) -> str | None:
    """Name of the last Gemm/MatMul node: the output layer, whose (N, 2L) result becomes the landmarks."""
    names = [n.name for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")]
    return names[-1] if names else None


# -- fp16 and int8 variants ---------------------------------------------------------------------------------------

def _toposort(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Put the graph's nodes in topological order (the ONNX spec requires it; the fp16 converter appends its
    input casts at the end, which onnxruntime tolerates and OpenCV's importer does not)."""
    g = proto.graph
    avail = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                ordered.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ModelError("the converted graph has a cycle or an undefined input")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
    return proto


def convert_fp16(src: str | Path, out: str | Path) -> dict:
    """Write an fp16 copy of the fp32 facelm ONNX ``src`` to ``out``; returns its metadata.

    Inputs and outputs stay float32 (``keep_io_types``) and the output layer stays fp32 (fp16 has a 1/32 px grid
    at 64-128 px, too coarse for landmark coordinates). Meant for GPU providers.
    """
    import onnx

    import onnxruntime
    from onnxruntime.transformers.float16 import convert_float_to_float16

    meta = read_onnx_meta(src)
    proto = onnx.load(str(src))
    head = _output_layer(proto)
    block = [head] if head else None
    fp16 = _toposort(convert_float_to_float16(proto, keep_io_types=True, node_block_list=block))
    onnx.checker.check_model(fp16)
    meta = {**meta, "precision": "fp16",
            "fp16": {"keep_io_types": True, "fp32_nodes": block or [],
                     "onnxruntime_version": onnxruntime.__version__}}
    set_onnx_meta(fp16, meta)
    _save_atomic(fp16, Path(out))
    return meta


def convert_fp16_weights(src: str | Path, out: str | Path, min_elements: int = 64) -> dict:
    """Write a copy of the fp32 facelm ONNX ``src`` whose weights are *stored* as float16 (``precision: fp16w``).

    Every float32 initializer of rank >= 2 with at least ``min_elements`` values (conv kernels, FC matrices) is
    replaced by a float16 initializer and a ``Cast`` to float32 at the top of the graph. Computation stays
    float32: onnxruntime constant-folds the casts at load time, so speed is unchanged and the file about halves.
    Biases and small tensors stay float32.
    """
    return _store_weights(src, out, "fp16", min_elements)


def convert_int8_weights(src: str | Path, out: str | Path, min_elements: int = 64) -> dict:
    """Write a copy of the fp32 facelm ONNX ``src`` whose weights are *stored* as int8 (``precision: int8w``).

    As :func:`convert_fp16_weights`, but each weight tensor W becomes ``NAME__int8`` (``round(W / s)``, int8),
    ``NAME__scale`` (s = max |W| / 127 over each block of :data:`INT8_BLOCK` consecutive weights of an output
    channel, float32) and ``NAME__shape``, turned back into float32 by ``Cast``, ``Mul`` and ``Reshape`` nodes
    that onnxruntime constant-folds at load time: 28% of the fp32 file, fp32 compute and speed. On a trained CNN-6
    the NME of ground-truth crops moved by under 0.2% (per-channel scales: +0.65%); export's NME check on
    validation data measures it for each model.
    """
    return _store_weights(src, out, "int8", min_elements)


INT8_BLOCK = 32  # weights per int8 scale (along each output channel's flattened weights)


def _int8_blocks(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes ``(O, nb, B)`` and float32 scales ``(O, nb, 1)``: one scale per block of
    :data:`INT8_BLOCK` consecutive weights of an output channel (one per channel when its weights do not split into
    such blocks)."""
    rows = arr.reshape(len(arr), -1)
    block = INT8_BLOCK if rows.shape[1] % INT8_BLOCK == 0 else rows.shape[1]
    blocks = rows.reshape(len(arr), -1, block)
    peak = np.abs(blocks).max(axis=2, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(blocks / scale), -127, 127).astype(np.int8), scale


def _store_weights(src: str | Path, out: str | Path, storage: str, min_elements: int) -> dict:
    import onnx

    import onnxruntime
    from onnx import helper, numpy_helper

    meta = read_onnx_meta(src)
    proto = onnx.load(str(src))
    g = proto.graph
    decode, converted, before, after = [], [], 0, 0
    keep = []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        before += arr.nbytes
        if not (init.data_type == onnx.TensorProto.FLOAT and arr.ndim >= 2 and arr.size >= min_elements):
            keep.append(init)
            after += arr.nbytes
            continue
        converted.append(init.name)
        if storage == "fp16":
            half = numpy_helper.from_array(arr.astype(np.float16), name=f"{init.name}__fp16")
            keep.append(half)
            decode.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                           name=f"{init.name}__cast"))
            after += arr.size * 2
        else:
            codes, scale = _int8_blocks(arr)
            n = init.name
            keep += [numpy_helper.from_array(codes, f"{n}__int8"), numpy_helper.from_array(scale, f"{n}__scale"),
                     numpy_helper.from_array(np.array(arr.shape, np.int64), f"{n}__shape")]
            decode += [helper.make_node("Cast", [f"{n}__int8"], [f"{n}__int8f"], to=onnx.TensorProto.FLOAT,
                                        name=f"{n}__cast"),
                       helper.make_node("Mul", [f"{n}__int8f", f"{n}__scale"], [f"{n}__deq"],
                                        name=f"{n}__dequant"),
                       helper.make_node("Reshape", [f"{n}__deq", f"{n}__shape"], [n], name=f"{n}__reshape")]
            after += codes.nbytes + scale.nbytes
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(decode + nodes)
    onnx.checker.check_model(proto)
    precision = f"{storage}w"
    meta = {**meta, "precision": precision,
            precision: {f"stored_{storage}": len(converted), "compute": "float32",
                        "weight_bytes_fp32": int(before), "weight_bytes": int(after),
                        "onnxruntime_version": onnxruntime.__version__}}
    if storage == "int8":
        meta[precision]["scales"] = f"symmetric, per {INT8_BLOCK} weights of an output channel"
    set_onnx_meta(proto, meta)
    _save_atomic(proto, Path(out))
    return meta


def restore_fp32_weights(proto: onnx.ModelProto) -> int:
    """Undo :func:`convert_fp16_weights` / :func:`convert_int8_weights` in place: each stored weight becomes a
    float32 initializer ``NAME`` again (the values are the stored ones, exactly). Returns how many were restored
    (0 for a model stored in float32). The quantiser needs float32 weights to compute its scales."""
    from onnx import numpy_helper

    g = proto.graph
    weights, nodes, stored = stored_weights(proto)
    if weights:
        rest = [i for i in g.initializer if i.name not in stored]
        keep = [n for k, n in enumerate(g.node) if k not in nodes]
        del g.initializer[:]
        g.initializer.extend([numpy_helper.from_array(a, name=k) for k, a in weights.items()] + rest)
        del g.node[:]
        g.node.extend(keep)
    return len(weights)


class _CropReader:
    """onnxruntime ``CalibrationDataReader`` over an in-memory ``(N, 3, H, W)`` float32 array."""

    def __init__(self, images: np.ndarray, name: str = "images", batch: int = 16, fixed_batch: int | None = None):
        self.images, self.name, self.batch, self.fixed = images, name, (fixed_batch or batch), fixed_batch
        self.pos = 0

    def get_next(self) -> dict | None:
        if self.pos >= len(self.images):
            return None
        x = self.images[self.pos:self.pos + self.batch]
        self.pos += self.batch
        if self.fixed and len(x) < self.fixed:
            x = np.concatenate([x, np.repeat(x[-1:], self.fixed - len(x), 0)])
        return {self.name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)


def quantize_int8(src: str | Path, out: str | Path, calib_images: np.ndarray, *, activation_type: str = "uint8",
                  calib_method: str = "minmax", per_channel: bool = True, preprocess: bool = True,
                  reduce_range: bool = True, extra_meta: dict | None = None,
                  warn: Callable[[str], None] | None = None) -> dict:
    """Write a statically quantised (QDQ) int8 copy of the fp32 facelm ONNX ``src`` to ``out``; what onnxruntime's
    quantiser logs (raw ``WARNING:root:`` lines otherwise) is summed up in one line through ``warn``.

    Args:
        src: fp32 facelm ONNX.
        out: where to write the int8 model (atomically).
        calib_images: ``(N, 3, H, W)`` float32 RGB [0, 255] calibration crops (a few hundred real crops).
        activation_type: ``uint8`` (onnxruntime's fast u8s8 path on x86) or ``int8``.
        calib_method: ``minmax``, ``entropy`` or ``percentile`` (activation range calibration).
        per_channel: per-output-channel weight scales (recommended for convs).
        reduce_range: 7-bit weights ([-64, 63]). On x86 CPUs without VNNI, onnxruntime's u8 x s8 kernels add pairs
            of products in 16 bits (``vpmaddubsw``), which saturates with full 8-bit weights: measured on the
            shipped CNN-6 (300-W val, ground-truth squares), NME +4.3% with 8-bit weights against +0.1% with 7-bit
            ones, at the same speed. VNNI, AMX and ARM dot-product kernels add in 32 bits and are exact either way.
        preprocess: run ``quant_pre_process`` (shape inference + graph optimisation) first.
        extra_meta: merged into the metadata (e.g. the calibration manifest's hash).

    Returns:
        The metadata written into ``out`` (``precision: int8`` and a ``quantization`` record).
    """
    import onnx

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static

    if activation_type not in ACTIVATION_TYPES:
        raise UsageError(f"unknown activation type {activation_type!r} ({', '.join(ACTIVATION_TYPES)})")
    if calib_method not in CALIB_METHODS:
        raise UsageError(f"unknown calibration method {calib_method!r} ({', '.join(CALIB_METHODS)})")
    if calib_images is None or len(calib_images) == 0:
        raise UsageError("int8 quantisation needs calibration crops")
    meta = read_onnx_meta(src)
    if meta.get("precision") in ("int8", "fp16"):
        raise UsageError(f"{src}: is already {meta['precision']}; quantise an fp32 (or fp16-stored) model")
    out = Path(out)
    if out.parent.is_dir():
        sweep_stale_temps(out)
    work = Path(tempfile.mkdtemp(prefix=temp_name(out, "int8-"), suffix=".tmp",
                                 dir=out.parent if out.parent.is_dir() else None))
    try:
        model_in = _float_input(src, work, preprocess)
        proto = onnx.load(str(model_in))
        head = _output_layer(proto)
        shape0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
        fixed = shape0.dim_value if shape0.HasField("dim_value") and shape0.dim_value > 0 else None

        reader_cls = type("CropReader", (_CropReader, CalibrationDataReader), {})
        reader = reader_cls(np.asarray(calib_images, np.float32), "images", 16, fixed)
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[calib_method]
        act = QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8
        # (not CalibMaxIntermediateOutputs: onnxruntime 1.31 drops the batches it collected when that is reached)
        q = work / "int8.onnx"
        # the histogram calibrators print progress on stdout, which carries the CLI's JSON: swallow it
        with contextlib.redirect_stdout(io.StringIO()), _quantiser_log(warn):
            quantize_static(str(model_in), str(q), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=act, weight_type=QuantType.QInt8, calibrate_method=method,
                            nodes_to_exclude=[head] if head else None, reduce_range=reduce_range)
        qp = onnx.load(str(q))
        meta = _int8_meta(src, meta, extra_meta, {
            "weights": "int8, 7-bit range" if reduce_range else "int8", "reduce_range": reduce_range,
            "per_channel": per_channel, "activations": activation_type, "calibration": calib_method,
            "calib_crops": int(len(calib_images)), "preprocess": preprocess, "float_nodes": [head] if head else []})
        set_onnx_meta(qp, meta)
        _save_atomic(qp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return meta


@contextlib.contextmanager
def _quantiser_log(warn: Callable[[str], None] | None):
    """Collect what is logged on the root logger meanwhile (onnxruntime's quantiser logs there, and a first
    ``logging.warning`` would install a handler printing ``WARNING:root:...`` on stderr); one line through ``warn``."""
    import logging

    class _Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.msgs: list[str] = []

        def emit(self, record):
            self.msgs.append(record.getMessage())

    root, keep = logging.getLogger(), _Keep()
    saved = root.handlers[:]
    root.handlers = [keep]
    try:
        yield
    finally:
        root.handlers = saved
        if keep.msgs and warn is not None:
            more = f" (and {len(keep.msgs) - 1} more)" if len(keep.msgs) > 1 else ""
            warn(f"onnxruntime's quantiser: {' '.join(keep.msgs[0].split())}{more}")


def _float_input(src: str | Path, work: Path, preprocess: bool) -> Path:
    """The float32 graph to quantise: fp16-stored weights (the shipped models) cast back to float32 first, then
    onnxruntime's ``quant_pre_process`` (shape inference + graph optimisation) when ``preprocess``."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_in = Path(src)
    proto = onnx.load(str(src))
    if restore_fp32_weights(proto):
        model_in = work / "fp32.onnx"
        onnx.save(proto, str(model_in))
    if preprocess:
        pre = work / "pre.onnx"
        quant_pre_process(str(model_in), str(pre), skip_symbolic_shape=True)
        model_in = pre
    return model_in


def _int8_meta(src: str | Path, meta: dict, extra_meta: dict | None, settings: dict) -> dict:
    """The int8 copy's metadata: the source's, its float-only records dropped, ``precision: int8`` and a
    ``quantization`` record with the source's identity (so a runtime can tell when the int8 copy no longer matches
    the model beside it)."""
    import onnxruntime

    source = {"file": Path(src).name, "precision": meta.get("precision"), "created": meta.get("created"),
              "sha256": sha256_file(src)}
    base = {k: v for k, v in meta.items() if k not in ("fp16", "fp16w", "int8w", "quantization")}
    return {**base, **(extra_meta or {}), "precision": "int8",
            "quantization": {"method": "onnxruntime.quantize_static", "format": "QDQ", "source": source, **settings,
                             "onnxruntime_version": onnxruntime.__version__,
                             **(extra_meta or {}).get("quantization", {})}}
