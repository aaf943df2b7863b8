"""int8 copies of exported facelm ONNX models (``facelm export MODEL.onnx --quantize int8 --calib DATA``).

The source is a facelm ONNX file, fp32 or with fp16-stored weights (how the shipped models are stored: the
weights are cast back to float32 first, exactly). The copy is quantised like a checkpoint export
(``facelm.export_formats.quantize_int8``: static QDQ, per-channel 7-bit weights, activations calibrated on the
train split of ``calib``), then checked against the source ONNX instead of torch:

* parity: max and mean |int8 - source| in crop px on sample crops (reported);
* NME on the validation faces (``val``, else the ``val`` split of ``calib``; ground-truth crops as in the export
  checks) of the source, of the int8 copy run by this CPU's onnxruntime kernels, and of the int8 copy's reference
  arithmetic (the QDQ graph evaluated in float, without the fused int8 kernels: what kernels that accumulate in
  32 bits, VNNI/AMX/ARM dot product, compute up to rounding). Both int8 figures must stay within
  ``max_nme_increase`` of the source, else nothing is written;
* the speed of both on this CPU.

The NME record, the CPU it was measured on and the source's identity (file, ``created``, sha256) go into the
int8 file's metadata (``quantization.nme_check``, ``quantization.source``), so a runtime can tell a stale copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facelm._io import sweep_stale_temps, temp_name, write_target
from facelm.cpu_features import cpu_arch, cpu_flags, cpu_name, int8_dot_product
from facelm.errors import UsageError
from facelm.export import (
    ExportOptions,
    ExportResult,
    _check_options,
    _ExportData,
    _nme_check,
    _noop,
    _speed,
    make_session,
    opencv_dnn_check,
)
from facelm.export_formats import quantize_int8
from facelm.manifest_predict import manifest_crops, mean_nme, onnx_predict_manifest, run_session
from facelm.modelfile import load_proto, proto_meta, read_onnx_meta, set_onnx_meta

__all__ = ["export_from_onnx", "reference_session"]


def reference_session(path: str | Path, threads: int = 0):
    """An onnxruntime session of a QDQ int8 model with graph optimisations off: the quantised arithmetic
    evaluated in float (no fused int8 kernels, so no 16-bit saturation), the reference for the NME check."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = max(0, threads)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _cpu_record() -> dict:
    flags, arch = cpu_flags(), cpu_arch()
    return {"cpu": cpu_name(), "int8_dot_product": int8_dot_product(flags, arch),
            "avx2": "avx2" in flags, "arch": arch}


def _reference_nme(opts: ExportOptions, meta: dict, data: _ExportData, path: Path, nme: dict,
                   failures: list[str]) -> None:
    val_m = data.val_m
    ref = mean_nme(onnx_predict_manifest(reference_session(path, opts.threads), meta, val_m), val_m)
    rel = (ref - nme["fp32"]) / nme["fp32"] if nme["fp32"] > 0 else float("nan")
    nme.update(int8_reference=ref, relative_change_reference=rel)
    if not (np.isfinite(ref) and (rel <= opts.max_nme_increase or ref - nme["fp32"] <= nme["abs_floor"])):
        nme["ok"] = False
        failures.append(f"int8 reference arithmetic NME {ref:.5f} vs {nme['fp32']:.5f} on {len(val_m)} faces: "
                        f"{100 * rel:+.2f}% (limit +{100 * opts.max_nme_increase:g}%)")


def _record(q: Path, nme: dict | None, speed: dict | None) -> None:
    """Write the measured NME (and the CPU it was measured on) into the int8 file's metadata."""
    import onnx

    proto = load_proto(q)
    meta = proto_meta(proto, q)
    quant = dict(meta.get("quantization") or {})
    if nme is not None:
        quant["nme_check"] = {**nme, "measured_on": _cpu_record()}
    if speed is not None:
        quant["speed_on_this_cpu"] = {k: v for k, v in speed.items() if k != "threads"}
    meta["quantization"] = quant
    set_onnx_meta(proto, meta)
    onnx.save(proto, str(q))


def _parity(opts: ExportOptions, src: Path, yq: np.ndarray, ref: np.ndarray, sample_source: str,
            failures: list[str]) -> dict:
    """The int8 copy against its source on the same crops (onnxruntime both); a failure is added to ``failures``."""
    d = np.abs(yq - ref)
    parity = {"max_abs_px": float(d.max()), "mean_abs_px": float(d.mean()), "tolerance": opts.tolerance,
              "n_crops": len(ref), "source": sample_source, "against": f"{src.name} (onnxruntime)",
              "provider": "CPUExecutionProvider"}
    if not np.isfinite(d).all():
        failures.append("int8 ONNX gives non-finite landmarks")
    elif opts.tolerance is not None and d.max() > opts.tolerance:
        failures.append(f"int8 ONNX differs from {src.name} by {d.max():.3g} crop px (tolerance "
                        f"{opts.tolerance:g}) on {len(ref)} crops")
    parity["ok"] = not failures
    return parity


def export_from_onnx(opts: ExportOptions, *, warn: Callable[[str], None] = _noop,
                     step: Callable[[str], None] = _noop) -> ExportResult:
    """Quantise the facelm ONNX ``opts.checkpoint`` to int8 at ``opts.out`` (see the module docstring).

    Raises:
        UsageError: a precision other than int8, an int8 or fp16 source, bad options.
        ModelError: not a facelm ONNX model; data of another scheme.
        DataError: unreadable calibration/validation data.
    """
    import onnxruntime

    _check_options(opts)
    if opts.label_shift:
        raise UsageError("`label_shift` is set when a checkpoint is exported; an int8 copy keeps its source's")
    src = Path(opts.checkpoint)
    if opts.precision != "int8":
        raise UsageError(f"`checkpoint` {src}: from an ONNX model only an int8 copy can be made (`precision` "
                         "int8); export the checkpoint for other precisions")
    meta = read_onnx_meta(src)
    if meta.get("precision") not in ("fp32", "fp16w", "int8w"):
        raise UsageError(f"`checkpoint` {src}: is {meta.get('precision')}; quantise an fp32 or fp16/int8-stored "
                         "model")
    size = int(meta["input_size"][0])
    what = f"{src} ({meta.get('arch')}, {(meta.get('scheme') or {}).get('name')})"
    data = _ExportData.load(opts, meta, what)
    sample, sample_source = data.parity_sample(opts, meta, size)
    out = write_target(opts.out)  # a link keeps pointing at the new file
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out)
    work = Path(tempfile.mkdtemp(prefix=temp_name(out), suffix=".tmp", dir=out.parent))
    failures: list[str] = []
    try:
        sess_src = make_session(src, opts.threads)
        ref = run_session(sess_src, sample)
        step(f"calibrating int8 on {min(opts.calib_faces, len(data.calib_m))} crops ({opts.calib_method})")
        calib = manifest_crops(meta, data.calib_m, opts.calib_faces, seed=opts.seed)
        q = work / "int8.onnx"
        qmeta = quantize_int8(src, q, calib, activation_type=opts.activation_type, calib_method=opts.calib_method,
                              reduce_range=opts.reduce_range, extra_meta={"quantization": data.quant_extra},
                              warn=warn)
        sess = make_session(q, opts.threads)
        yq = run_session(sess, sample)
        parity = _parity(opts, src, yq, ref, sample_source, failures)
        step("loading with OpenCV DNN")
        cv_ok, cv_diff, cv_note = opencv_dnn_check(q, sample[:4], yq[:4])
        if not cv_ok:
            warn(f"OpenCV DNN cannot load the int8 model ({cv_note}); onnxruntime can")
        summary: dict = {
            "checkpoint": str(src), "source_precision": meta.get("precision"), "out": str(out),
            "arch": meta.get("arch"), "stage": int(meta.get("stage", 1)),
            "scheme": (meta.get("scheme") or {}).get("name"), "num_landmarks": int(meta["num_landmarks"]),
            "input_size": list(meta["input_size"]), "opset": (meta.get("onnx") or {}).get("opset"),
            "precision": "int8", "dynamic_batch": (meta.get("onnx") or {}).get("dynamic_batch", True),
            "bytes": q.stat().st_size, "fp32_bytes": src.stat().st_size, "parity": parity,
            "quantization": {k: qmeta["quantization"][k] for k in ("weights", "activations", "calibration",
                                                                   "calib_crops", "source")},
            "opencv_dnn": cv_ok, "opencv_dnn_engine": cv_note if cv_ok else None, "opencv_dnn_max_abs_px": cv_diff,
            "opencv_dnn_error": None if cv_ok else cv_note, "onnxruntime_version": onnxruntime.__version__,
        }
        if opts.bench_seconds > 0:
            summary["speed"] = _speed(opts, sess_src, sess, size, step)
        nme = None
        if data.val_m is not None and len(data.val_m):
            nme = _nme_check(opts, meta, data, sess_src, sess, failures, step)
            _reference_nme(opts, meta, data, q, nme, failures)
            summary["nme"] = nme
        else:
            warn("no validation data (`val`, or a 'val' split in `calib`): the int8 NME change is not checked")
        summary["written"] = not failures
        if not failures:
            del sess, sess_src
            _record(q, nme, summary.get("speed"))
            os.replace(q, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(summary=summary, failures=failures)
