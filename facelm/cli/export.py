"""``facelm export``: a checkpoint -> ONNX (fp32, fp16 or int8), checked against torch, metadata inside."""


import os
from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import check_not_empty, check_output_file, check_range, emit_json, error, handle_errors, info, table, warn
from facelm.errors import ExitCode, UsageError
from facelm.export import CALIB_METHODS, DEFAULT_OPSET, MAX_NME_INCREASE, PARITY_TOLERANCE

# help texts are module globals: Typer evaluates the annotations in this module's namespace
_TOL = ", ".join(f"{k} {v:g}" if v is not None else f"{k}: reported only" for k, v in PARITY_TOLERANCE.items())
_METHODS = ", ".join(CALIB_METHODS)

EPILOG = f"""Examples:

1. `facelm export runs/cnn6/best.pt --out models/cnn6.onnx`  (fp32, dynamic batch, parity checked on random crops)

2. `facelm export runs/cnn7/best.pt --out models/cnn7.onnx --val work/ytf`  (parity on real crops + val NME)

3. `facelm export runs/cnn6/best.pt --out models/cnn6-int8.onnx --quantize int8 --calib work/ytf`  (static int8,
calibrated on the train split; NME change checked on the val split)

4. `facelm export runs/cnn7/best.pt --out models/cnn7-fp16.onnx --half --val work/ytf`  (fp16 for GPUs)

5. `facelm export runs/cnn7/best.pt --out models/cnn7.onnx --weights fp16 --val work/ytf`  (half-size file, fp32
compute and speed: how the shipped models are stored)

6. `facelm export models/cnn6.onnx --out models/cnn6.int8.onnx --quantize int8 --calib work/w300
--max-nme-increase 0.01`  (the int8 copy of an exported model, checked against it: scripts/export_int8.sh)

7. `facelm export runs/s1/last.pt --out models/cnn6.onnx --weights fp16 --label-shift 0.012`  (predict and evaluate
move this model's landmarks by 1.2% of the eye-centre distance along the eye line: the 300-W annotation offset,
measured by scripts/fit_label_shift.py; docs/export.md)

ONNX contract: input `images` (N, 3, H, W) float32 RGB 0..255, output `landmarks` (N, L, 2) float32 (x, y) in
crop pixels, batch axis dynamic; the checkpoint's metadata (plus `precision`) is one JSON string under
`metadata_props["facelm"]`. fp16/int8 files keep float32 inputs and outputs.

Checks: onnxruntime (CPU) vs torch on sample crops, max |diff| in crop px ({_TOL}); with validation data, the
fp16/int8 NME may exceed the fp32 one by at most {100 * MAX_NME_INCREASE:g}% (`--max-nme-increase`). A stage-2
model's NME here is on upright crops built from the ground truth. The file is written only if the checks pass.
Prints one JSON summary on stdout; see docs/export.md.

Exit codes: 0 ok, 2 usage (output not .onnx, --quantize without --calib, --half with --quantize, --half or
--quantize with --weights fp16/int8, --label-shift outside +-0.1 or with an .onnx input), 3 bad data
(unreadable --calib/--val), 4 model (checkpoint missing, corrupt or not facelm; data of another scheme; parity
or NME check failed: the JSON is still printed).
"""


def _px(v) -> str:
    return "-" if v is None else f"{v:.2g}"


def register(app: typer.Typer) -> None:
    @app.command(name="export", epilog=EPILOG, no_args_is_help=True)
    @handle_errors
    def export_cmd(
        checkpoint: Annotated[Path, typer.Argument(help="facelm checkpoint (.pt) or a run folder holding best.pt; or "
                                                        "an exported facelm .onnx model to quantise (--quantize "
                                                        "int8).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.", show_default=False)],
        opset: Annotated[int, typer.Option(help="ONNX opset.")] = DEFAULT_OPSET,
        dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch",
                                                    help="Dynamic batch axis (static: fixed batch 1).")] = True,
        half: Annotated[bool, typer.Option("--half", help="fp16 weights and activations (GPU; IO stays float32).")
                        ] = False,
        weights: Annotated[str, typer.Option(help="Weight storage: fp32, fp16 (half-size file) or int8 (28%; a "
                                                  "scale per 32 weights), fp32 compute either way: "
                                                  "onnxruntime folds the decoding at load; same speed.")] = "fp32",
        quantize: Annotated[str | None, typer.Option(help="int8: onnxruntime static quantisation (QDQ, needs "
                                                          "--calib).", show_default=False)] = None,
        calib: Annotated[str | None, typer.Option(help="Prepared dataset: calibration crops (train split) and "
                                                        "parity crops; its val split is the default --val.",
                                                   show_default=False)] = None,
        val: Annotated[str | None, typer.Option(help="Prepared dataset for the NME check (val split, else test, "
                                                      "else all faces).", show_default=False)] = None,
        calib_faces: Annotated[int, typer.Option(help="Calibration crops (seeded random faces).")] = 256,
        calib_method: Annotated[str, typer.Option(help=f"int8 activation calibration: {_METHODS}.")] = "minmax",
        activations: Annotated[str, typer.Option(help="int8 activation type: uint8 (fast u8s8 kernels on x86) "
                                                      "or int8.")] = "uint8",
        reduce_range: Annotated[bool, typer.Option("--reduce-range/--full-range", help="int8 weights in 7 bits; "
                                                   "--full-range keeps 8 (x86 CPUs without VNNI then run the "
                                                   "activations in 7 bits; docs/export.md).")] = True,
        max_val: Annotated[int, typer.Option(help="At most this many validation faces.")] = 2000,
        max_nme_increase: Annotated[float, typer.Option(
            help="Largest relative NME increase of fp16/int8 over fp32 (inf: no limit).")] = MAX_NME_INCREASE,
        tolerance: Annotated[float | None, typer.Option(
            help="Parity tolerance in crop px (default per precision).", show_default=False)] = None,
        parity_crops: Annotated[int, typer.Option(help="Sample crops for the torch/ONNX comparison.")] = 32,
        bench_seconds: Annotated[float, typer.Option(help="Seconds per model for the fp32-vs-fp16/int8 speed "
                                                          "comparison (0: skip).")] = 1.0,
        threads: Annotated[int, typer.Option(help="onnxruntime threads (0 = its default, all cores).")] = 0,
        seed: Annotated[int, typer.Option(help="Seed for the calibration faces and random sample crops.")] = 0,
        label_shift: Annotated[float, typer.Option(
            help="Written into the model's metadata: predict and evaluate move its final landmarks along the eye "
                 "line by this fraction of the eye-centre distance (the annotation side offset a flip-trained "
                 "network cannot learn; scripts/fit_label_shift.py measures it). 0: none.")] = 0.0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table or progress on stderr.")] = False,
    ) -> None:
        """Export a checkpoint to ONNX, check it against torch, optionally as fp16 or int8."""
        from facelm.export import ExportOptions, export

        from facelm.limits import MAX_BATCH, MAX_THREADS
        from facelm.modelfile import LABEL_SHIFT_LIMIT

        check_output_file("--out", out)
        check_not_empty(("--calib", calib), ("--val", val))
        calib, val = (Path(v) if v is not None else None for v in (calib, val))
        check_range("--seed", seed, 0)
        check_range("--calib-faces", calib_faces, 1)
        check_range("--max-val", max_val, 1)
        check_range("--max-nme-increase", max_nme_increase, 0.0, allow_inf=True)
        check_range("--tolerance", tolerance, 0.0)
        check_range("--parity-crops", parity_crops, 1, MAX_BATCH)  # more would only cost memory
        check_range("--bench-seconds", bench_seconds, 0.0, 3600.0)
        check_range("--threads", threads, 0, MAX_THREADS)
        check_range("--label-shift", label_shift, -LABEL_SHIFT_LIMIT, LABEL_SHIFT_LIMIT)
        if half and quantize:
            raise UsageError("--half and --quantize are alternatives; choose one")
        if weights.lower() not in ("fp32", "fp16", "int8"):
            raise UsageError(f"--weights {weights}: must be fp32, fp16 or int8")
        if weights.lower() != "fp32" and (half or quantize):
            raise UsageError(f"--weights {weights} is an fp32-compute storage option; it does not combine with "
                             "--half or --quantize")
        if quantize is not None and quantize.lower() != "int8":
            raise UsageError(f"--quantize {quantize}: only int8 is supported")
        if quantize is not None and calib is None:
            raise UsageError("--quantize int8 needs --calib DATA (a prepared dataset for calibration crops)")
        if Path(checkpoint).suffix.lower() == ".onnx" and quantize is None:
            raise UsageError(f"CHECKPOINT {checkpoint}: from an ONNX model only an int8 copy can be made "
                             "(--quantize int8 --calib DATA); export the checkpoint for other precisions")
        if Path(checkpoint).exists() and Path(out).exists() and os.path.samefile(checkpoint, out):
            raise UsageError(f"--out {out}: is the model being exported; write the copy to another file")
        precision = "fp16" if half else "int8" if quantize else \
            "fp32" if weights.lower() == "fp32" else f"{weights.lower()}w"
        opts = ExportOptions(checkpoint=checkpoint, out=out, opset=opset, dynamic_batch=dynamic_batch,
                             precision=precision, calib=calib, val=val, calib_faces=calib_faces,
                             calib_method=calib_method.lower(), activation_type=activations.lower(),
                             reduce_range=reduce_range, max_val=max_val,
                             max_nme_increase=max_nme_increase, tolerance=tolerance, parity_crops=parity_crops,
                             bench_seconds=bench_seconds, threads=threads, seed=seed, label_shift=label_shift)

        def step(msg: str) -> None:
            if not quiet:
                info(f"{msg}...", style="dim")

        result = export(opts, warn=warn, step=step)
        s = result.summary
        if not quiet:
            _show(s)
        emit_json(s)
        if not result.ok:
            error("; ".join(result.failures) + f"; {out} was not written")
            raise typer.Exit(int(ExitCode.MODEL))
        if not quiet:
            _hints(s)


def _show(s: dict) -> None:
    p = s["parity"]
    tol = _px(p["tolerance"]) if p["tolerance"] is not None else "none: int8 is reported"
    rows = [
        ("model", f"{s['arch']} (stage {s['stage']}, {s['scheme']}, {s['input_size'][0]} px)"),
        ("precision", f"{s['precision']}, opset {s['opset']}, "
                      f"{'dynamic' if s['dynamic_batch'] else 'fixed'} batch"),
        ("size", f"{s['bytes'] / 1e6:.2f} MB" + (f" (fp32 {s['fp32_bytes'] / 1e6:.2f} MB)"
                                                   if s["precision"] != "fp32" else "")),
        (f"parity vs {p.get('against', 'torch')}", f"max {_px(p['max_abs_px'])} px (tolerance {tol}) on {p['n_crops']} "
                            f"{p['source']} crops" + (f"; fp32 graph {_px(p['fp32_max_abs_px'])} px"
                                                      if "fp32_max_abs_px" in p else "")),
        ("OpenCV DNN", f"loads ({s['opencv_dnn_engine']} engine, max diff {_px(s['opencv_dnn_max_abs_px'])} px)"
                       if s["opencv_dnn"] else f"cannot load: {s.get('opencv_dnn_error')}"),
    ]
    sp = s.get("speed")
    if sp:
        q = s["precision"]
        rows.append(("speed (ORT CPU)", f"fp32 {sp['fp32_crops_per_s']:.0f} vs {q} {sp[f'{q}_crops_per_s']:.0f} "
                                        f"crops/s at batch {sp['batch']} ({sp['speedup']:.2f}x)"))
    nme = s.get("nme")
    if nme:
        txt = f"fp32 {nme['fp32']:.5f}"
        q = s["precision"]
        if q != "fp32" and nme.get(q) is not None:  # an fp32 export has one NME: shown once
            rel = nme.get("relative_change")
            txt += f", {q} {nme[q]:.5f} ({100 * rel:+.2f}%)" if rel is not None else f", {q} {nme[q]:.5f}"
        if "int8_reference" in nme:
            txt += f", int8 reference arithmetic {nme['int8_reference']:.5f} " \
                   f"({100 * nme['relative_change_reference']:+.2f}%)"
        rows.append((f"NME ({nme['split']}, {nme['faces']} faces)", f"{txt}; {nme['normaliser']}, {nme['crops']}"))
    rows.append(("written", s["out"] if s["written"] else "no"))
    table(f"export {s['checkpoint']}", ["what", "value"], rows)


def _hints(s: dict) -> None:
    out = Path(s["out"])
    if "source_precision" in s:  # the int8 copy of an exported model
        info(f"next: facelm predict IMAGES --models {out.parent} --precision int8  (or auto: int8 where it is "
             "faster; docs/predict.md)")
        return
    other = "cnn7 (stage 2)" if s["stage"] == 1 else "cnn6 (stage 1)"
    info(f"next: facelm export <{other} checkpoint> --out {out.parent}/{other[:4]}.onnx  "
         "(predict runs both stages when both are there; --stages 1 runs CNN-6 alone)")
    info(f"      facelm predict IMAGES --models {out.parent}  (finds the stage models there by their metadata)")
