"""onnxruntime plumbing shared by prediction, detection, export checks and evaluation: provider choice (CUDA
when usable, else CPU), thread planning, and the one session factory.

Provider policy (``device``):

* ``auto``: CUDA when onnxruntime has the CUDA provider *and* a session on it really starts (the CUDA/cuDNN
  libraries load and a GPU is there), otherwise CPU, silently;
* ``cuda`` / ``cuda:N``: CUDA; if it is not usable a warning is given **once** per process and CPU is used;
* ``cpu``: CPU only.

The providers a session really got (``InferenceSession.get_providers()``) are what callers report.

Threads: ``threads=0`` means every core this process may use (``cpu_count()``, the affinity mask), everywhere.

int8 models with full 8-bit weights on x86 CPUs without VNNI/AMX: onnxruntime's u8 x s8 kernels there add each
pair of products in 16 bits (``vpmaddubsw``), which saturates with 8-bit weights and full 8-bit activations, so the
file would give other, worse numbers there than on a CPU with exact int8 dot products. ``create_session`` then
runs such a model with its activations at 7 bits (``seven_bit_activations``: scales x2, codes 0..128), whose pair
sums fit: the same fast kernels, no saturation. Checked under emulation (``benchmarks/bench_int8_avx2.py
--emulate``): the shipped stage 1 on an emulated Haswell CPU moved 0.12 px on average (up to 5.7 px, 64-px crops,
256 of them) from the exact int8 result as it was; with 7-bit activations it gives bit for bit what the rewritten
file gives on an exact CPU, whose held-out NME is within 0.5% of the file's own on every set (docs/export.md).

Importing this module lowers onnxruntime's default log level to errors: its warnings (nodes placed on CPU,
a CUDA library that does not load) are not for facelm's users; facelm reports the outcome itself.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facelm.errors import ModelError, UsageError

__all__ = ["cpu_count", "create_session", "cuda_usable", "int8_kernels_saturate", "parse_device", "plan_threads",
           "provider_names", "resolve_providers", "seven_bit_activations", "session_options"]

_warned: set[str] = set()
_warn_lock = threading.Lock()


def _ort():
    import onnxruntime as ort

    return ort


def cpu_count() -> int:
    """Cores this process may use (the affinity mask where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _set_log_level(level: int) -> None:
    try:
        _ort().set_default_logger_severity(level)
    except Exception:  # noqa: BLE001, S110 - very old onnxruntime: keep its default  # pragma: no cover
        pass


_set_log_level(3)


#: A serialised one-node ONNX model (``y = Relu(x)``, x and y float[1], opset 13, IR version 8) for the CUDA probe
#: below, kept as bytes so that ``predict`` does not import the ``onnx`` package (about 0.9 s) only to build it;
#: ``tests/test_gpu_check.py`` checks that ``onnx.helper`` still builds exactly these bytes.
_TINY_MODEL = (b'\x08\x08:7\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04\n'
               b'\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r')


@functools.cache
def cuda_usable(device_id: int = 0) -> tuple[bool, str]:
    """(usable, reason): can onnxruntime run a session on CUDA device ``device_id`` here?"""
    ort = _ort()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    _set_log_level(4)  # the failed library load is logged as an error by onnxruntime itself
    try:
        sess = ort.InferenceSession(_TINY_MODEL, providers=[("CUDAExecutionProvider", {"device_id": device_id}),
                                                               "CPUExecutionProvider"])
        ok = "CUDAExecutionProvider" in sess.get_providers()
        sess.run(None, {"x": np.zeros(1, np.float32)})
    except Exception as e:  # noqa: BLE001 - any failure means "not usable"
        return False, f"the CUDA provider failed to start ({str(e).splitlines()[0][:200]})"
    finally:
        _set_log_level(3)
    if not ok:
        return False, "the CUDA provider did not start (CUDA/cuDNN libraries missing or no GPU)"
    return True, "ok"


def resolve_providers(device: str = "auto", warn: Callable[[str], None] | None = None,
                      warned: set[str] | None = None) -> list:
    """onnxruntime providers for ``device`` (auto | cpu | cuda | cuda:N); see the module docstring.

    The CUDA fallback warning is given once per ``device`` string per ``warned`` set (this module's own set by
    default, i.e. once per process).
    """
    kind, dev_id = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "auto":
        ok, _ = cuda_usable(0)
        return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"] if ok else ["CPUExecutionProvider"]
    ok, reason = cuda_usable(dev_id)
    if ok:
        return [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
    d = (device or "auto").strip().lower()
    seen = _warned if warned is None else warned
    with _warn_lock:
        first = d not in seen
        seen.add(d)
    if first and warn is not None:
        warn(f"`device` {device}: CUDA is not usable here ({reason}); running on CPU")
    return ["CPUExecutionProvider"]


_DEVICE_RE = re.compile(r"(auto|cpu|cuda)(?::([0-9]+))?")


def parse_device(device: str | None) -> tuple[str, int]:
    """``(kind, CUDA index)`` of a device name: auto | cpu | cuda | cuda:N with N >= 0 (any case, ``None`` =
    auto); ``UsageError`` for anything else."""
    m = _DEVICE_RE.fullmatch((device if device is not None else "auto").strip().lower())
    if m is None or (m[2] is not None and m[1] != "cuda"):
        raise UsageError(f"unknown device {device!r} (auto, cpu, cuda or cuda:N)")
    return m[1], int(m[2] or 0)


def plan_threads(providers: list, streams: int = 0, threads: int = 0) -> tuple[int, int]:
    """(streams, intra-op threads per session) for ``predict``; 0 means automatic.

    On the CPU, two batches in flight with half the cores each (``streams = 2``) keep the cores busy while the
    reader threads take their share: one multi-threaded run stalls at every operator when one of its threads is
    pre-empted by a reader, two single-threaded runs do not. On CUDA one stream is enough.
    """
    cores = cpu_count()
    cuda = "CUDAExecutionProvider" in provider_names(providers)
    if streams <= 0:
        streams = 1 if cuda or cores < 2 else 2
    if threads <= 0:
        threads = max(1, cores // streams)
    return streams, threads


def session_options(threads: int = 0, spin: bool = False):
    """Session options: all graph optimisations, ``threads`` intra-op threads (0 = every core this process may
    use, ``cpu_count()``), no spinning.

    Spinning worker threads would take the cores the image readers and the detector need while the model waits
    for its next batch, so it is off unless ``spin``.
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads if threads > 0 else cpu_count()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def create_session(path: str | Path | bytes, providers: list | tuple = ("CPUExecutionProvider",), threads: int = 0,
                   spin: bool = False):
    """An ``InferenceSession`` (the one session factory of facelm: ``session_options`` for ``threads``/``spin``);
    ``ModelError`` when the file is not a loadable ONNX model."""
    ort = _ort()
    src = path if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes):
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"{p}: model file not found")
        if p.stat().st_size == 0:
            raise ModelError(f"{p}: empty file (0 bytes), not an ONNX model")
        if int8_kernels_saturate() and "CPUExecutionProvider" in provider_names(list(providers)):
            src = _non_saturating_int8(p) or src
    try:
        return ort.InferenceSession(src, session_options(threads, spin), providers=list(providers))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several types for bad files
        msg = " ".join(str(e).split())[:200]
        raise ModelError(f"{path}: not a loadable ONNX model ({msg})") from None


def int8_kernels_saturate(flags: frozenset[str] | set[str] | None = None, arch: str | None = None) -> bool:
    """True on x86 CPUs without VNNI/AMX (this CPU's when ``flags`` and ``arch`` are None): their int8 kernels add
    u8 x s8 products in 16-bit pairs, which saturates with full 8-bit weights."""
    if flags is None and arch is None:
        return _this_cpu_saturates()
    from facelm.cpu_features import cpu_arch, cpu_flags, int8_dot_product

    arch = cpu_arch() if arch is None else arch
    flags = cpu_flags() if flags is None else frozenset(flags)
    return arch == "x86" and int8_dot_product(flags, arch) is None


@functools.cache
def _this_cpu_saturates() -> bool:
    from facelm.cpu_features import cpu_arch, cpu_flags

    return int8_kernels_saturate(cpu_flags(), cpu_arch())


def seven_bit_activations(model) -> int:
    """Give the uint8 activations of a QDQ ``onnx.ModelProto`` half their range, in place, when its int8 weights
    use all 8 bits (codes outside -64..64; 7-bit weights cannot saturate, such models are left as they are): every
    activation scale x2 and zero point /2 (rounded), and every int32 bias code /2 with its scale x2, so that a bias
    scale stays the product of its input's and its weight's. Activations within the calibrated range then have
    codes 0..128, and two u8 x s8 products (|weight code| <= 127) fit the 16-bit sums of the AVX2 kernels. Costs
    the activations one bit of resolution (measured: held-out NME within 0.5%, docs/export.md). Only for models
    whose activations are uint8. Returns the number of activation tensors rewritten (0: the model is left as it was)."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    acts: dict[str, str] = {}  # activation scale name -> zero point name
    weights = []
    for node in g.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        x, s, zp = inits.get(node.input[0]), inits.get(node.input[1]), inits.get(node.input[2])
        if zp is None or s is None:
            return 0  # computed quantisation parameters: not a graph this knows
        if zp.data_type == onnx.TensorProto.UINT8 and x is None:
            acts[s.name] = zp.name
        elif node.op_type == "QuantizeLinear":
            return 0  # int8 activations: the s8 kernels are another matter
        elif x is not None and x.data_type == onnx.TensorProto.INT8:
            weights.append(numpy_helper.to_array(x))
    if not acts or not any(w.ndim and (w.min() < -64 or w.max() > 64) for w in weights):
        return 0
    consts = [n.input[:2] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    if set(acts) & {s for _, s in consts}:
        return 0  # a scale shared by an activation and a constant: not a graph this knows
    biases = {q: s for q, s in consts if inits[q].data_type == onnx.TensorProto.INT32}

    def put(name: str, a: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(a, name))

    # each initializer once, also where several nodes share it (a zero point or a bias scale used twice)
    for s in set(acts) | set(biases.values()):
        a = numpy_helper.to_array(inits[s])
        put(s, (a * 2).astype(a.dtype))
    for zp in set(acts.values()):
        put(zp, np.round(numpy_helper.to_array(inits[zp]) / 2).astype(np.uint8))
    for q in biases:
        put(q, np.round(numpy_helper.to_array(inits[q]).astype(np.int64) / 2).astype(np.int32))
    return len(acts)


def _non_saturating_int8(path: Path) -> bytes | None:
    """The bytes of ``path`` with 7-bit activations when it is an int8 model with full 8-bit weights (None when
    not, or when it cannot be parsed here: onnxruntime then reports the file)."""
    try:
        import onnx

        with open(path, "rb") as f:
            head = f.read()
        if b"DequantizeLinear" not in head:
            return None
        model = onnx.load_model_from_string(head)
    except Exception:  # noqa: BLE001 - a broken file is onnxruntime's to report
        return None
    return model.SerializeToString() if seven_bit_activations(model) else None


def provider_names(providers: list) -> list[str]:
    """Provider names of a providers list (entries may be ``(name, options)`` tuples)."""
    return [p[0] if isinstance(p, tuple) else p for p in providers]
