"""``facelm bench``: the landmark models, the detector and the whole ``predict``, at fp32 and int8 side by side.

What is measured, per onnxruntime provider (CPU always; CUDA too when it is usable) and per precision (``--precision``,
default fp32 and int8 when the int8 models are there), each measure ``--repeats`` times (median reported; the
precisions take turns within each round, so a change of the machine's load hits them alike):

* ``cnn6`` / ``cnn7``: latency at batch 1 (median ms) and throughput at ``--batch`` (faces/s) on crops;
* ``bare``: the landmark networks exactly as ``predict`` runs them per face (stage 1 once plus two levelled runs,
  stage 2 when it runs; twice each with flip TTA), on ready-made crops, with predict's streams: the ceiling;
* ``detector``: latency per image (median ms) on the folder's images;
* ``pipeline``: ``predict``'s machinery without a detector (reading, cropping, the networks, mapping back) over the
  folder's files, and its ratio to ``bare`` measured in the same round (a ratio above 1 is labelled noise);
* ``predict``: the same with the face detector (the whole ``facelm predict``), and its ratio to ``bare``;
* ``time_budget``: where a face's time goes (ms of one thread: read, detect, orientation and crops, networks);
* ``int8_over_fp32``: the speed ratio of each measure (median of the per-round ratios), and what ``--precision auto``
  picks on this machine and why.
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from facelm.cli._common import (
    check_device,
    check_output_file,
    check_range,
    emit_json,
    handle_errors,
    info,
    table,
    warn,
)
from facelm.errors import UsageError

EPILOG = """Examples:

1. `facelm bench ../shared/data/ytf68-train --models models`

2. `facelm bench --models models --seconds 5 --markdown bench.md`  (synthetic faces; also writes a Markdown page)

3. `facelm bench photos/ --device cuda --batch 64`

Prints one JSON object on stdout (and a table on stderr). Without FOLDER, synthetic face images are used (the
detector cannot find cartoon faces, so its numbers are then left out). Unreadable files in FOLDER (empty, text,
truncated, dangling links, FIFOs) are skipped with a warning. Exit codes: 0 ok, 2 usage, 3 no images,
4 models or detector missing.
"""


def _synthetic_folder(n: int) -> Path:
    import tempfile

    from facelm.synthetic import make_dataset

    d = Path(tempfile.mkdtemp(prefix="facelm-bench-"))
    make_dataset(d, n=n, size=128, seed=0)
    return d


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


_ROWS = [("stage 1 ms, batch 1", "stage1_latency_ms"), ("stage 1 faces/s", "stage1_faces_s"),
         ("stage 2 ms, batch 1", "stage2_latency_ms"), ("stage 2 faces/s", "stage2_faces_s"),
         ("bare networks faces/s", "bare_faces_s"), ("detector ms/image", "detector_ms"),
         ("pipeline faces/s (no detector)", "pipeline_faces_s"), ("pipeline / bare", "pipeline_ratio_to_bare"),
         ("predict faces/s (with detector)", "predict_faces_s"), ("predict / bare", "predict_ratio_to_bare")]
_RATIO_OF = {"stage1_latency_ms": "stage1_latency", "stage1_faces_s": "stage1",
             "stage2_latency_ms": "stage2_latency", "stage2_faces_s": "stage2", "bare_faces_s": "bare", "pipeline_faces_s": "pipeline",
             "predict_faces_s": "predict"}


def _cell(res: dict, prec: str, key: str) -> str:
    d = res["precisions"].get(prec) or {}
    v = d.get(key)
    if v is not None and key.endswith("ratio_to_bare") and v > 1:
        return f"{v:g} (noise: > 1)"
    return _fmt(v)


def _rows(res: dict) -> tuple[list[str], list[list[str]]]:
    precs = list(res["precisions"])
    both = "int8_over_fp32" in res
    head = ["measure", *precs] + (["int8 / fp32 speed"] if both else [])
    rows = []
    for name, key in _ROWS:
        row = [name] + [_cell(res, p, key) for p in precs]
        if both:
            row.append(_fmt((res["int8_over_fp32"] or {}).get(_RATIO_OF.get(key, ""))))
        rows.append(row)
    for p in precs:
        tb = (res["precisions"][p].get("time_budget") or {}).get("ms_per_face")
        if tb:
            rows.append([f"{p}: ms per face (1 thread)"] + [""] * (len(head) - 1))
            rows[-1][1] = ", ".join(f"{k} {v:g}" for k, v in tb.items())
    return head, rows


def _markdown(path: Path, result: dict) -> None:
    from facelm._io import atomic_write_text

    m = result["machine"]
    lines = ["# Benchmarks", "", "Produced by `facelm bench` (this file is rewritten by `--markdown`).", "",
             f"Command: `{result['command']}`", "",
             (f"Machine: {m['cpu']} ({m['cores']} cores; int8 kernels: {m['int8_kernels']}), onnxruntime "
              f"{m['onnxruntime']}, {result['created']}. Batch {result['batch']}, {result['repeats']} rounds of "
              f"{result['seconds']} s per measure (medians). `--precision auto` here: {result['auto']['precision']} "
              f"({result['auto']['reason']})."), ""]
    for r in result["results"]:
        head, rows = _rows(r)
        lines += [f"## {r['provider']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    lines += ["Raw result:", "", "```json", json.dumps(result, indent=2), "```", ""]
    atomic_write_text(path, "\n".join(lines))


def register(app: typer.Typer) -> None:
    from facelm._paths import default_detector_note, detector_model_help  # no runtime imported

    detector_note = f"\n\nFace detector file without --detector-model, here and now: {default_detector_note()}."
    @app.command(name="bench", epilog=EPILOG + detector_note)
    @handle_errors
    def bench_cmd(
        folder: Annotated[Path | None, typer.Argument(help="Images for the detector and pipeline runs "
                                                           "(default: synthetic faces).", show_default=False)
                          ] = None,
        models: Annotated[Path | None, typer.Option("--models", "-m", help="Folder with the stage models (default: the shipped ones).",
                                                    envvar="FACELM_MODELS", show_default=False)] = None,
        precision: Annotated[str, typer.Option(metavar="LIST", help="Comma-separated precisions to measure side "
                                                                    "by side: fp32, int8, auto.")] = "fp32,int8",
        batch: Annotated[int, typer.Option("--batch", "--batch-size",
                                           help="Batch size for the throughput runs.")] = 32,
        seconds: Annotated[float, typer.Option(help="Seconds per measurement.")] = 2.0,
        repeats: Annotated[int, typer.Option(help="Rounds of every measurement (medians are reported).")] = 3,
        stages: Annotated[int | None, typer.Option(help="As predict's --stages (default: as predict runs).",
                                                   show_default=False)] = None,
        level: Annotated[bool, typer.Option("--level/--no-level", help="As predict's --level.")] = True,
        tta: Annotated[str, typer.Option(metavar="full|flip|none", help="As predict's --tta.")] = "full",
        device: Annotated[str, typer.Option(help="auto (CPU, plus CUDA device 0 when usable), cpu, cuda or "
                                                 "cuda:N (CUDA device N).")] = "auto",
        detector: Annotated[str, typer.Option(help="auto, yunet or yuface.")] = "auto",
        detector_model: Annotated[Path | None, typer.Option("--detector-model", help=detector_model_help(),
                                                            show_default=False)] = None,
        limit: Annotated[int, typer.Option(help="Use at most N images of FOLDER.")] = 256,
        workers: Annotated[int, typer.Option(help="Reader/detector threads (0 = number of cores).")] = 0,
        markdown: Annotated[Path | None, typer.Option(help="Also write the results as a Markdown page here.")
                            ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr.")] = False,
    ) -> None:
        """Latency and throughput of CNN-6, CNN-7, the detector and the whole predict, fp32 and int8 (JSON)."""
        from facelm.limits import MAX_BATCH, MAX_THREADS
        from facelm.runtime.benchmark import BenchOptions
        from facelm.runtime.precision import check_precision

        check_range("--batch", batch, 1, MAX_BATCH)
        check_range("--seconds", seconds, 0.0, 3600.0, lo_open=True)
        check_range("--repeats", repeats, 1, 100)
        check_range("--limit", limit, 1)
        check_range("--workers", workers, 0, MAX_THREADS)
        check_output_file("--markdown", markdown)
        if not all(p.strip() for p in precision.split(",")):
            raise UsageError(f"--precision {precision!r}: an empty item; give a comma-separated list of fp32, int8, "
                             "auto")
        precs = [check_precision(p) for p in precision.split(",")]
        if len(set(precs)) != len(precs):
            raise UsageError(f"--precision {precision}: give distinct values of fp32, int8, auto")
        if stages not in (None, 1, 2):
            raise UsageError(f"--stages must be 1 or 2, got {stages}")
        from facelm.runtime.pipeline import TTA_MODES

        if tta not in TTA_MODES:
            raise UsageError(f"--tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
        check_device("--device", device)
        opts = BenchOptions(batch=batch, seconds=seconds, repeats=repeats, precisions=precs, stages=stages,
                            level=level, tta=tta, workers=workers, detector=detector, detector_model=detector_model)
        provider_sets, cuda_ok = _provider_sets(device)
        synthetic = folder is None
        src = _synthetic_folder(64) if synthetic else folder
        try:
            _bench(src, synthetic, folder, models, opts, limit, markdown, quiet, provider_sets, cuda_ok)
        finally:
            if synthetic:
                import shutil

                shutil.rmtree(src, ignore_errors=True)


def _provider_sets(device: str) -> tuple[list, bool]:
    """(``[(label, onnxruntime providers), ...]`` to measure, whether CUDA is usable) for ``--device``: auto = the
    CPU, plus CUDA device 0 when it is usable; cpu; cuda or cuda:N = that CUDA device (the CPU, with a warning,
    when it is not usable)."""
    from facelm.ort import cuda_usable, parse_device

    kind, dev_id = parse_device(device)
    cuda_ok, why = cuda_usable(dev_id)
    cpu = ("CPUExecutionProvider", ["CPUExecutionProvider"])
    sets = [cpu] if kind in ("auto", "cpu") else []
    if kind in ("auto", "cuda"):
        if cuda_ok:
            sets.append(("CUDAExecutionProvider", [("CUDAExecutionProvider", {"device_id": dev_id}),
                                                   "CPUExecutionProvider"]))
        elif kind == "cuda":
            warn(f"--device {device}: CUDA is not usable here ({why}); measuring CPU only")
            sets.append(cpu)
    return sets, cuda_ok


def _bench(src, synthetic, folder, models, opts, limit, markdown, quiet, provider_sets, cuda_ok) -> None:
    import onnxruntime as ort

    from facelm.benchmark import usable_images
    from facelm.cpu_features import cpu_arch, cpu_flags, cpu_name, int8_dot_product
    from facelm.errors import DataError
    from facelm.runtime import default_models_dir, load_models
    from facelm.runtime.benchmark import provider_run
    from facelm.runtime.session import cpu_count

    note = (lambda m: None) if quiet else info
    load_before = _loadavg()
    files, skipped, first = usable_images(iter_sources_of(src), limit)
    if not files and len(skipped) == 1:  # the one reason in the one error line (a missing or empty folder)
        name, why = skipped[0]
        raise DataError(f"{src}: no images to benchmark on ({name}: {why})")
    for name, why in skipped[:10]:
        warn(f"{name}: skipped ({why})")
    if len(skipped) > 10:
        warn(f"... and {len(skipped) - 10} more unreadable files skipped")
    if not files:
        raise DataError(f"{src}: no images to benchmark on" + (f" ({len(skipped)} unreadable files skipped)"
                                                               if skipped else ""))
    note(f"using {len(files)} images of {src}" + (f" ({len(skipped)} unreadable skipped)" if skipped else ""))
    rng = np.random.default_rng(0)
    mdir = models if models is not None else default_models_dir()
    auto = load_models(mdir, opts.stages, ["CPUExecutionProvider"], 1, precision="auto")
    note(f"--precision auto here: {auto.precision} ({auto.precision_reason})")
    results = [provider_run(label, providers, mdir, files, first, opts, rng, synthetic, note, warn)
               for label, providers in provider_sets]
    argv = " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("facelm", "__main__.py") else ""
    flags = cpu_flags()
    out = {
        "command": f"facelm {argv}".strip() if argv else "facelm bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu_name(), "cores": cpu_count(), "onnxruntime": ort.__version__, "cuda_usable": cuda_ok,
                    "int8_kernels": int8_dot_product(flags, cpu_arch()) or ("AVX2, 16-bit sums (no VNNI)"
                                                                            if "avx2" in flags else "none known"),
                    "load_avg_1m": load_before},
        "batch": opts.batch, "seconds": opts.seconds, "repeats": opts.repeats, "precisions": opts.precisions,
        "predict_options": {"stages": opts.stages, "level": opts.level, "tta": opts.tta},
        "auto": {"precision": auto.precision, "reason": auto.precision_reason},
        "images": {"folder": None if synthetic else str(folder), "synthetic": synthetic, "files": len(files),
                   "skipped": len(skipped)},
        "results": results,
    }
    out["machine"]["load_avg_1m_after"] = _loadavg()
    if not quiet:
        for r in results:
            head, rows = _rows(r)
            table(f"facelm bench ({r['provider']}, {out['machine']['cores']} cores, medians of {opts.repeats})",
                  head, rows)
            for p, d in r["precisions"].items():
                for k, v in (d.get("notes") or {}).items():
                    warn(f"{p} {k} {d[k]:g}: {v}")
    if markdown is not None:
        _markdown(markdown, out)
        note(f"written {markdown}")
    emit_json(out)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def iter_sources_of(src):
    from facelm.sources import iter_sources

    return iter_sources([str(src)])
