"""Checkpoint -> ONNX with the model metadata inside the file, checked against torch (``facelm export``).

The ONNX contract (what ``predict``, ``evaluate`` and any other consumer rely on):

* input ``images``: ``(N, 3, H, W)`` float32, RGB pixel values in [0, 255] (normalisation is inside the graph);
* output ``landmarks``: ``(N, L, 2)`` float32, (x, y) in input-crop pixels, 0-based, pixel centres at integers;
* the batch axis is dynamic (unless exported with ``dynamic_batch=False``: then fixed at 1);
* ``metadata_props["facelm"]``: one JSON string, the checkpoint's ``meta`` (arch, stage, scheme, input size, crop
  convention, pixel normalisation, mean shape, loss, versions, training manifest hash) plus ``precision``,
  ``onnx`` (input/output names, opset, dynamic batch, versions) and, if set, ``label_shift``.

The fp16 and int8 variants keep float32 inputs and outputs, so a consumer needs no change for them:

* ``fp16``: every float tensor but the output layer is converted (``onnxruntime.transformers.float16``, IO kept
  float32). Meant for GPUs; on the CPU provider it runs through inserted casts and is slower than fp32.
* ``fp16w``: fp16 *storage* only. Weight matrices and conv kernels are stored as float16 and cast back to float32
  by ``Cast`` nodes, which onnxruntime folds into constants when it loads the model: the file is half the size and
  runs exactly as fast as fp32 on every provider; the rounding of the weights moves landmarks by ~0.01 px.
  Biases (the output layer's bias is the mean shape, up to 128 px) stay float32.
* ``int8w``: int8 *storage* (a scale per 32 weights, decoded by ``Cast``/``Mul``/``Reshape`` folded at load): 28%
  of the fp32 file, fp32 compute and speed; the weights' rounding moves landmarks by ~0.02 px (NME check with
  ``val``). How the shipped default models are stored: fp16w files of their size would not fit the size budget.
* ``int8``: onnxruntime static quantisation (QDQ, per-channel int8 weights, activations calibrated on real crops
  of a prepared dataset). The output layer stays float (8 bits would put landmarks on a half-pixel grid).

Checks (:func:`export`): the exported graph is run with onnxruntime (CPU provider) on sample crops and compared
with the torch model (:data:`PARITY_TOLERANCE`, crop pixels); when validation data is given, the NME of the fp32
and of the fp16/int8 graph are measured on it (:data:`MAX_NME_INCREASE`). Sample and validation crops are built
like training validation crops from the ground truth: the face square for a stage-1 model, the upright face square
from the ground-truth shape for a stage-2 model (so stage-2 NMEs here are on ground-truth-built crops).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm._io import atomic_path, stdout_to_stderr, sweep_stale_temps, temp_name, write_target
from facelm.benchmark import bench_sessions  # noqa: F401 - re-exported
from facelm.errors import UsageError
from facelm.export_formats import (  # noqa: F401 - re-exported under their old home
    ACTIVATION_TYPES, CALIB_METHODS, convert_fp16, convert_fp16_weights, convert_int8_weights, quantize_int8)
from facelm.manifest_predict import (  # noqa: F401 - the run/crop helpers are re-exported under their old names
    iter_manifest_crops, load_onnx_model, manifest_crops, mean_nme, onnx_predict_manifest, run_session)
from facelm.modelfile import (  # noqa: F401
    LABEL_SHIFT_LIMIT, META_KEY, check_meta_matches, meta_scheme, read_onnx_meta, set_onnx_meta)

__all__ = ["export_onnx", "read_onnx_meta", "set_onnx_meta", "META_KEY", "DEFAULT_OPSET", "PRECISIONS",
           "PARITY_TOLERANCE", "MAX_NME_INCREASE", "NME_ABS_FLOOR", "ExportOptions", "ExportResult", "export",
           "convert_fp16", "convert_fp16_weights", "convert_int8_weights", "quantize_int8", "make_session",
           "run_session", "bench_sessions", "manifest_crops", "iter_manifest_crops", "onnx_predict_manifest",
           "random_crops", "opencv_dnn_check", "check_meta_matches", "load_onnx_model"]

DEFAULT_OPSET = 17
MIN_OPSET = 13


def max_opset() -> int:
    """The newest opset torch's TorchScript exporter (the one used here) writes."""
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET

        return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except ImportError:  # older/newer torch without the constant
        return 20
PRECISIONS = ("fp32", "fp16", "fp16w", "int8w", "int8")

# Max |ONNX - torch| in crop pixels over the sample crops. fp32: measured 2e-6 .. 2e-5 px (kernel summation order
# only); 1e-2 px leaves a wide margin while still catching any real export bug (a wrong normalisation or layout
# moves points by pixels). fp16: measured 0.016 (CNN-6) and 0.033 px (CNN-7) with the output layer kept fp32.
# int8 changes outputs by design (0.8 px max, 0.08 px mean measured on a trained CNN-6): its difference is
# reported, and the check is the NME change on validation data instead.
# fp16w (fp16-stored weights, fp32 compute): measured 0.004 (CNN-6) and 0.009 px (CNN-7). int8w (int8-stored
# weights, a scale per 32), trained CNN-6 --convs 2: 0.12 px max on real crops, 1.6 on random (noisy) ones.
PARITY_TOLERANCE: dict[str, float | None] = {"fp32": 1e-2, "fp16": 0.25, "fp16w": 0.1, "int8w": 4.0, "int8": None}
# Largest accepted relative NME increase of the fp16/int8 graph over the fp32 graph on validation data.
MAX_NME_INCREASE = 0.03
# ... unless the absolute increase is below this (a relative change of a near-zero NME, e.g. on synthetic faces,
# is noise): 2e-4 is 0.02% of the normalising distance.
NME_ABS_FLOOR = 2e-4


# -- fp32 export and metadata -------------------------------------------------------------------------------------

def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True,
                extra_meta: dict | None = None) -> dict:
    """Export a facelm checkpoint to ONNX (fp32) atomically; returns the metadata written into the file."""
    import onnx  # onnx and torch are imported here: `facelm --help` and the other commands start without them
    import torch

    from facelm.checkpoint import load_model_from_checkpoint

    model, meta = load_model_from_checkpoint(checkpoint, "cpu")
    model = model.float().eval()
    size = int(meta["input_size"][0])
    # a fixed-batch export gets batch 1 (the latency case); the dynamic one traces with 2 to catch batch-1 folding
    dummy = torch.full((2 if dynamic_batch else 1, 3, size, size), 127.0)
    meta = {**meta, "precision": "fp32", **(extra_meta or {}),
            "onnx": {"input": "images", "output": "landmarks", "opset": opset, "dynamic_batch": dynamic_batch,
                     "onnx_version": onnx.__version__}}
    with atomic_path(out) as tmp:
        # The TorchScript-based exporter (dynamo=False) needs no extra packages and gives a plain static graph.
        # (stdout_to_stderr: on failure the exporter prints the graph IR, and stdout carries the CLI's JSON)
        with warnings.catch_warnings(), stdout_to_stderr():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter" notices, not for our users
            torch.onnx.export(model, (dummy,), str(tmp), input_names=["images"], output_names=["landmarks"],
                              dynamic_axes={"images": {0: "batch"}, "landmarks": {0: "batch"}} if dynamic_batch
                              else None, opset_version=opset, dynamo=False, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        set_onnx_meta(proto, meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return meta


# -- running ONNX models ------------------------------------------------------------------------------------------

def make_session(model: str | Path | bytes, threads: int = 0,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",), spin: bool = False):
    """An onnxruntime session for export checks (``facelm.ort.create_session``; CPU provider by default)."""
    from facelm.ort import create_session

    return create_session(model, providers, threads, spin)


def random_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Seeded random crops ``(n, 3, size, size)`` float32: smooth blobs plus noise, values in [0, 255]."""
    import cv2

    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (n, 3, 8, 8)).astype(np.float32)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(3):
            out[i, c] = cv2.resize(low[i, c], (size, size), interpolation=cv2.INTER_CUBIC)
    out += rng.normal(0, 12, out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.float32)


def opencv_dnn_check(path: str | Path, images: np.ndarray, reference: np.ndarray | None = None
                     ) -> tuple[bool, float | None, str | None]:
    """Load ``path`` with ``cv2.dnn.readNetFromONNX`` and run it on ``images`` (NCHW float32).

    OpenCV's default engine is tried first, then its classic importer (which reads QDQ int8 graphs that the new
    one does not, in OpenCV 5.0). OpenCV's own log is silenced meanwhile.

    Returns (loaded and ran, max |cv2 - reference| in px or None, the engine that worked or the error message).
    """
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)
    level = log.getLogLevel() if log else None
    if log:
        log.setLogLevel(log.LOG_LEVEL_SILENT)
    err = None
    try:
        engines = [("auto", None)]
        if hasattr(cv2.dnn, "ENGINE_CLASSIC"):
            engines.append(("classic", cv2.dnn.ENGINE_CLASSIC))
        for name, engine in engines:
            try:
                net = cv2.dnn.readNetFromONNX(str(path)) if engine is None else cv2.dnn.readNetFromONNX(str(path),
                                                                                                      engine)
                net.setInput(np.ascontiguousarray(images, dtype=np.float32))
                y = np.asarray(net.forward(), dtype=np.float32)
            except Exception as e:  # cv2.error and friends
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
                err = next((ln for ln in lines if "error:" in ln), lines[-1] if lines else type(e).__name__)[:200]
                continue
            if reference is None:
                return True, None, name
            ref = np.asarray(reference, np.float32)
            if y.size != ref.size:
                return True, None, f"{name}: output shape {tuple(y.shape)} differs from {tuple(ref.shape)}"
            return True, (float(np.max(np.abs(y.reshape(ref.shape) - ref))) if ref.size else 0.0), name
        return False, None, err
    finally:
        if log:
            log.setLogLevel(level)


# -- the export command -------------------------------------------------------------------------------------------

@dataclass
class ExportOptions:
    """What ``facelm export`` does.

    Attributes:
        checkpoint: facelm checkpoint (``.pt``) or a run folder holding ``best.pt``.
        out: the ``.onnx`` file to write.
        opset: ONNX opset.
        dynamic_batch: dynamic batch axis (else fixed at 1).
        precision: ``fp32``, ``fp16`` (GPU), ``fp16w`` / ``int8w`` (fp16-/int8-stored weights, fp32 compute) or
            ``int8`` (static quantisation, needs ``calib``).
        calib: prepared dataset for calibration crops (and parity crops); its ``val`` split is the default ``val``.
        val: prepared dataset for the NME check (its ``val`` split, else ``test``, else every face).
        calib_faces: calibration crops (seeded random faces of the calibration set's train split).
        max_val: at most this many validation faces (the first ones).
        activation_type / calib_method: int8 activation type and calibration method.
        reduce_range: int8 weights in 7 bits (no 16-bit saturation on x86 CPUs without VNNI; see ``quantize_int8``).
        max_nme_increase: fail when the fp16/int8 NME exceeds the fp32 one by more than this fraction.
        parity_crops: sample crops for the torch/ONNX comparison.
        tolerance: parity tolerance in crop px (None: :data:`PARITY_TOLERANCE` of the precision).
        bench_seconds / bench_batch: time per model (0: skip) and batch of the fp32-vs-variant speed comparison.
        threads: onnxruntime intra-op threads (0: every core this process may use).
        seed: seed for the calibration face choice and random sample crops.
        label_shift: written into the metadata when not 0 (``facelm.modelfile.label_shift``).
    """

    checkpoint: Path
    out: Path
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = True
    precision: str = "fp32"
    calib: Path | None = None
    val: Path | None = None
    calib_faces: int = 256
    max_val: int = 2000
    activation_type: str = "uint8"
    calib_method: str = "minmax"
    reduce_range: bool = True
    max_nme_increase: float = MAX_NME_INCREASE
    parity_crops: int = 32
    tolerance: float | None = None
    bench_seconds: float = 1.0
    bench_batch: int = 32
    threads: int = 0
    seed: int = 0
    label_shift: float = 0.0


@dataclass
class ExportResult:
    summary: dict
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _check_options(o: ExportOptions) -> None:
    if Path(o.out).suffix.lower() != ".onnx":
        raise UsageError(f"`out` {o.out}: the output must be an .onnx file")
    if o.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {o.precision!r} ({', '.join(PRECISIONS)})")
    if o.precision == "int8" and o.calib is None:
        raise UsageError("`precision` int8 needs `calib` (a prepared dataset for calibration crops)")
    if o.activation_type not in ACTIVATION_TYPES:
        raise UsageError(f"`activation_type` must be one of {', '.join(ACTIVATION_TYPES)}")
    if o.calib_method not in CALIB_METHODS:
        raise UsageError(f"`calib_method` must be one of {', '.join(CALIB_METHODS)}")
    if not MIN_OPSET <= o.opset <= max_opset():
        raise UsageError(f"`opset` must be in [{MIN_OPSET}, {max_opset()}], got {o.opset} (13: per-channel "
                         "quantisation and the exporter need it; the top: torch's TorchScript exporter)")
    if Path(o.out).is_dir():
        raise UsageError(f"`out` {o.out}: is a folder; give the .onnx file name")
    if o.calib_faces < 1 or o.parity_crops < 1 or o.bench_batch < 1:
        raise UsageError("`calib_faces`, `parity_crops` and `bench_batch` must be at least 1")
    if not abs(o.label_shift) <= LABEL_SHIFT_LIMIT:
        raise UsageError(f"`label_shift` {o.label_shift}: must be within +-{LABEL_SHIFT_LIMIT} eye distances")


def _val_split(m):
    for name in ("val", "test"):
        s = m.split(name)
        if len(s):
            return s, name
    return m, "all"


def _noop(msg: str) -> None:
    pass


@dataclass
class _ExportData:
    """The prepared data an export uses: calibration faces (int8), validation faces and their split."""

    calib_m: object = None
    val_m: object = None
    val_split: str | None = None
    quant_extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, opts: ExportOptions, ck_meta: dict, what: str) -> _ExportData:
        from facelm.manifest import load_manifest

        d = cls()
        if opts.calib is not None:
            full = load_manifest(opts.calib)
            check_meta_matches(ck_meta, full, what)
            d.calib_m = full.split("train") if len(full.split("train")) else full
            d.quant_extra["calib_manifest_sha256"] = full.content_hash()
            if opts.val is None and len(full.split("val")):
                d.val_m, d.val_split = full.split("val"), "val"
        if opts.val is not None:
            vfull = load_manifest(opts.val)
            check_meta_matches(ck_meta, vfull, what)
            d.val_m, d.val_split = _val_split(vfull)
        if d.val_m is not None and len(d.val_m) > opts.max_val:
            d.val_m = d.val_m.select(np.arange(len(d.val_m)) < opts.max_val)
        return d

    def parity_sample(self, opts: ExportOptions, ck_meta: dict, size: int) -> tuple[np.ndarray, str]:
        """Sample crops for the parity check: real ones when there is data, else seeded random images."""
        if self.val_m is not None or self.calib_m is not None:
            src_m = self.val_m if self.val_m is not None else self.calib_m
            return manifest_crops(ck_meta, src_m, opts.parity_crops, seed=opts.seed), "data"
        return random_crops(opts.parity_crops, size, seed=opts.seed), "random"


def _convert(opts: ExportOptions, fp32_path: Path, work: Path, ck_meta: dict, data: _ExportData,
             step: Callable[[str], None], warn: Callable[[str], None] = _noop) -> Path:
    """The file of the asked precision (``fp32_path`` itself for fp32)."""
    if opts.precision == "fp16":
        step("converting to fp16")
        final = work / "fp16.onnx"
        convert_fp16(fp32_path, final)
    elif opts.precision in ("fp16w", "int8w"):
        step(f"storing the weights as {opts.precision[:-1]}")
        final = work / f"{opts.precision}.onnx"
        (convert_fp16_weights if opts.precision == "fp16w" else convert_int8_weights)(fp32_path, final)
    elif opts.precision == "int8":
        step(f"calibrating int8 on {min(opts.calib_faces, len(data.calib_m))} crops ({opts.calib_method})")
        calib = manifest_crops(ck_meta, data.calib_m, opts.calib_faces, seed=opts.seed)
        final = work / "int8.onnx"
        quantize_int8(fp32_path, final, calib, activation_type=opts.activation_type, calib_method=opts.calib_method,
                      reduce_range=opts.reduce_range, extra_meta={"quantization": data.quant_extra}, warn=warn)
    else:
        final = fp32_path
    return final


def _parity_fp32(opts: ExportOptions, y32: np.ndarray, ref: np.ndarray, source: str, failures: list[str]) -> dict:
    d32 = np.abs(y32 - ref)
    tol32 = opts.tolerance if (opts.tolerance is not None and opts.precision == "fp32") \
        else PARITY_TOLERANCE["fp32"]
    parity = {"max_abs_px": float(d32.max()), "mean_abs_px": float(d32.mean()), "tolerance": tol32,
              "n_crops": int(len(ref)), "source": source, "provider": "CPUExecutionProvider"}
    if not bool(np.isfinite(d32).all() and d32.max() <= tol32):
        failures.append(f"fp32 ONNX differs from torch by {d32.max():.3g} crop px (tolerance {tol32:g}) on "
                        f"{len(ref)} crops")
    return parity


def _parity_variant(opts: ExportOptions, parity: dict, yq: np.ndarray, ref: np.ndarray, failures: list[str]
                    ) -> None:
    dq = np.abs(yq - ref)
    tolq = opts.tolerance if opts.tolerance is not None else PARITY_TOLERANCE[opts.precision]
    parity.update(fp32_max_abs_px=parity["max_abs_px"], fp32_tolerance=parity["tolerance"],
                  max_abs_px=float(dq.max()), mean_abs_px=float(dq.mean()), tolerance=tolq)
    if not np.isfinite(dq).all():
        failures.append(f"{opts.precision} ONNX gives non-finite landmarks")
    elif tolq is not None and dq.max() > tolq:
        failures.append(f"{opts.precision} ONNX differs from torch by {dq.max():.3g} crop px "
                        f"(tolerance {tolq:g}) on {len(ref)} crops")


def _speed(opts: ExportOptions, sess32, sess, size: int, step: Callable[[str], None]) -> dict:
    step(f"timing fp32 vs {opts.precision} (onnxruntime CPU, batch {opts.bench_batch})")
    b = bench_sessions({"fp32": sess32, opts.precision: sess}, size, batch=opts.bench_batch,
                       seconds=opts.bench_seconds, seed=opts.seed)
    speed = {
        "provider": "CPUExecutionProvider", "batch": b["fp32"]["batch"], "threads": opts.threads or None,
        "fp32_crops_per_s": b["fp32"]["crops_per_s"],
        f"{opts.precision}_crops_per_s": b[opts.precision]["crops_per_s"],
        "speedup": round(b[opts.precision]["crops_per_s"] / b["fp32"]["crops_per_s"], 3),
    }
    if opts.precision == "fp16":
        speed["note"] = "fp16 is meant for GPU providers; on the CPU provider it is no faster than fp32"
    return speed


def _nme_check(opts: ExportOptions, ck_meta: dict, data: _ExportData, sess32, sess, failures: list[str],
               step: Callable[[str], None]) -> dict:
    """fp32 NME on the validation faces, and the variant's (``sess``; None for fp32) against it."""
    from facelm.manifest_predict import default_normaliser

    val_m = data.val_m
    step(f"NME on {len(val_m)} validation faces")
    nme32 = mean_nme(onnx_predict_manifest(sess32, ck_meta, val_m), val_m)
    nme = {"data": str(val_m.path), "split": data.val_split, "faces": len(val_m),
           "normaliser": default_normaliser(val_m.scheme),
           "crops": "ground-truth face square" if int(ck_meta.get("stage", 1)) == 1
           else "ground-truth upright square",
           "fp32": nme32}
    if sess is not None:
        nq = mean_nme(onnx_predict_manifest(sess, ck_meta, val_m), val_m)
        rel = (nq - nme32) / nme32 if nme32 > 0 and np.isfinite(nme32) else float("nan")
        nme.update({opts.precision: nq, "relative_change": rel, "max_increase": opts.max_nme_increase,
                    "abs_floor": NME_ABS_FLOOR})
        nme["ok"] = bool(np.isfinite(nq) and not (rel > opts.max_nme_increase and nq - nme32 > NME_ABS_FLOOR))
        if not nme["ok"]:
            failures.append(f"{opts.precision} NME {nq:.5f} vs fp32 {nme32:.5f} on {len(val_m)} faces: "
                            f"{100 * rel:+.2f}% (limit +{100 * opts.max_nme_increase:g}%)")
    return nme


def _summary(opts: ExportOptions, ck_path: Path, ck_meta: dict, final: Path, fp32_path: Path, parity: dict,
             opencv: tuple) -> dict:
    """The export's JSON summary (docs/export.md) before the speed and NME checks are added."""
    import onnxruntime

    cv_ok, cv_diff, cv_note = opencv
    return {
        "checkpoint": str(ck_path), "out": str(opts.out), "arch": ck_meta["arch"],
        "stage": int(ck_meta.get("stage", 1)),
        "scheme": (ck_meta.get("scheme") or {}).get("name"), "num_landmarks": int(ck_meta["num_landmarks"]),
        "input_size": list(ck_meta["input_size"]), "opset": opts.opset, "precision": opts.precision,
        "dynamic_batch": opts.dynamic_batch, "bytes": final.stat().st_size,
        "fp32_bytes": fp32_path.stat().st_size, "parity": parity, "opencv_dnn": cv_ok,
        "opencv_dnn_engine": cv_note if cv_ok else None, "opencv_dnn_max_abs_px": cv_diff,
        "opencv_dnn_error": None if cv_ok else cv_note, "onnxruntime_version": onnxruntime.__version__,
    }


def export(opts: ExportOptions, *, warn: Callable[[str], None] = _noop, step: Callable[[str], None] = _noop
           ) -> ExportResult:
    """Export, check and (when asked) convert/quantise a checkpoint; see the module docstring. An ``.onnx``
    ``opts.checkpoint`` is an exported model to quantise (``facelm.export_int8.export_from_onnx``).

    The file is written to ``opts.out`` only when every check passes; otherwise ``result.failures`` says why
    (the CLI exits with code 4) and ``out`` is left untouched.

    Raises:
        UsageError: bad options (output not ``.onnx``, int8 without calibration data, ...).
        ModelError: unreadable or foreign checkpoint, or data of another landmark scheme.
        DataError: unreadable calibration/validation data.
    """
    # onnx, onnxruntime and torch are loaded here, before the temporary folder exists: a SIGTERM/Ctrl-C that
    # lands while a C extension is being imported can crash the process instead of stopping it cleanly
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch

    from facelm.checkpoint import load_model_from_checkpoint, resolve_checkpoint

    if Path(opts.checkpoint).suffix.lower() == ".onnx":  # an exported model: its int8 copy (facelm.export_int8)
        from facelm.export_int8 import export_from_onnx

        return export_from_onnx(opts, warn=warn, step=step)
    _check_options(opts)
    ck_path = resolve_checkpoint(opts.checkpoint)
    model, ck_meta = load_model_from_checkpoint(ck_path, "cpu")
    model = model.float().eval()
    size = int(ck_meta["input_size"][0])
    what = f"{ck_path} ({ck_meta['arch']}, {(ck_meta.get('scheme') or {}).get('name')})"
    data = _ExportData.load(opts, ck_meta, what)
    sample, sample_source = data.parity_sample(opts, ck_meta, size)
    with torch.no_grad():
        ref = model(torch.from_numpy(sample)).numpy()

    out = write_target(opts.out)  # a link keeps pointing at the new file
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out)  # what a killed export left here
    work = Path(tempfile.mkdtemp(prefix=temp_name(out), suffix=".tmp", dir=out.parent))
    failures: list[str] = []
    try:
        fp32_path = work / "fp32.onnx"
        step("exporting fp32 ONNX")
        export_onnx(ck_path, fp32_path, opset=opts.opset, dynamic_batch=opts.dynamic_batch,
                    extra_meta={"label_shift": opts.label_shift} if opts.label_shift else None)
        sess32 = make_session(fp32_path, opts.threads)
        parity = _parity_fp32(opts, run_session(sess32, sample), ref, sample_source, failures)
        final, sess = _convert(opts, fp32_path, work, ck_meta, data, step, warn), sess32
        if final is not fp32_path:
            sess = make_session(final, opts.threads)
            _parity_variant(opts, parity, run_session(sess, sample), ref, failures)
        parity["ok"] = not failures

        step("loading with OpenCV DNN")
        cv_ok, cv_diff, cv_note = opencv_dnn_check(final, sample[:4], run_session(sess, sample[:4]))
        if not cv_ok:
            warn(f"OpenCV DNN cannot load the {opts.precision} model ({cv_note}); onnxruntime can")

        summary = _summary(opts, ck_path, ck_meta, final, fp32_path, parity, (cv_ok, cv_diff, cv_note))
        if final is not fp32_path and opts.bench_seconds > 0:
            summary["speed"] = _speed(opts, sess32, sess, size, step)
        if data.val_m is not None and len(data.val_m):
            summary["nme"] = _nme_check(opts, ck_meta, data, sess32, sess if final is not fp32_path else None,
                                        failures, step)
        elif opts.precision == "int8":
            warn("no validation data (`val`, or a 'val' split in `calib`): the int8 NME change is not checked")

        summary["written"] = not failures
        if not failures:
            del sess, sess32
            os.replace(final, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(summary=summary, failures=failures)
