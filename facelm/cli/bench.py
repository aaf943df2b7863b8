"""``facelm bench``: per-stage latency and throughput of the landmark models, the detector and the pipeline.

What is measured, per onnxruntime provider (CPU always; CUDA too when it is usable):

* ``cnn6`` / ``cnn7``: latency at batch 1 (median ms) and throughput at ``--batch`` (faces/s) on crops;
* ``bare``: the two models back to back on ready-made crops at ``--batch`` (faces/s): the ceiling;
* ``detector``: latency per image (median ms) on the folder's images (CPU provider only for ``yuface``);
* ``pipeline``: ``predict``'s machinery without a detector (``--no-detect``: reading, cropping, stage 1, angle,
  stage 2, mapping back) over the folder's files, and its ratio to ``bare`` measured in the same run;
* ``predict``: the same with the face detector (the whole ``facelm predict``), and its ratio to ``bare``.
"""

import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from facelm.cli._common import check_output_file, check_range, emit_json, handle_errors, info, table, warn
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


def _markdown(path: Path, result: dict) -> None:
    from facelm._io import atomic_write_text

    lines = ["# Benchmarks", "", "Produced by `facelm bench` (this file is rewritten by `--markdown`).", "",
             f"Command: `{result['command']}`", "",
             (f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores), "
              f"onnxruntime {result['machine']['onnxruntime']}, {result['created']}. "
              f"Models: {result['models']['stage1']} + {result['models']['stage2']} "
              f"(widths {result['models']['widths']}), batch {result['batch']}, fp32."), ""]
    lines += [("| provider | CNN-6 ms (b=1) | CNN-6 faces/s | CNN-7 ms (b=1) | CNN-7 faces/s | bare two-stage "
               "faces/s | detector ms/img | pipeline faces/s (no detector) | pipeline / bare | predict faces/s "
               "| predict / bare |"), "|" + "---|" * 11]
    for r in result["results"]:
        c6, c7 = r["cnn6"], r.get("cnn7") or {}
        d, p, q = r.get("detector") or {}, r["pipeline"], r.get("predict") or {}
        lines.append(f"| {r['provider']} | {c6['latency_ms']} | {c6['throughput_faces_s']} | "
                     f"{c7.get('latency_ms', '-')} | {c7.get('throughput_faces_s', '-')} | {r['bare_faces_s']} | "
                     f"{d.get('latency_ms', '-')} | {p['faces_s']} | {p['ratio_to_bare']} | "
                     f"{q.get('faces_s', '-')} | {q.get('ratio_to_bare', '-')} |")
    lines += ["", "Raw result:", "", "```json", json.dumps(result, indent=2), "```", ""]
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
        models: Annotated[Path | None, typer.Option("--models", "-m", help="Folder with cnn6.onnx and cnn7.onnx.",
                                                    envvar="FACELM_MODELS", show_default=False)] = None,
        batch: Annotated[int, typer.Option("--batch", "--batch-size",
                                           help="Batch size for the throughput runs.")] = 32,
        seconds: Annotated[float, typer.Option(help="Seconds per measurement.")] = 3.0,
        device: Annotated[str, typer.Option(help="auto (CPU, plus CUDA when usable), cpu or cuda.")] = "auto",
        detector: Annotated[str, typer.Option(help="auto, yunet or yuface.")] = "auto",
        detector_model: Annotated[Path | None, typer.Option("--detector-model", help=detector_model_help(),
                                                            show_default=False)] = None,
        limit: Annotated[int, typer.Option(help="Use at most N images of FOLDER.")] = 256,
        workers: Annotated[int, typer.Option(help="Reader/detector threads (0 = number of cores).")] = 0,
        markdown: Annotated[Path | None, typer.Option(help="Also write the results as a Markdown page here.")
                            ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr.")] = False,
    ) -> None:
        """Latency and throughput of CNN-6, CNN-7, the detector and the whole pipeline (JSON on stdout)."""
        from facelm.cli.predict import MAX_BATCH, MAX_THREADS
        from facelm.runtime import cuda_usable

        check_range("--batch", batch, 1, MAX_BATCH)
        check_range("--seconds", seconds, 0.0, 3600.0, lo_open=True)
        check_range("--limit", limit, 1)
        check_range("--workers", workers, 0, MAX_THREADS)
        check_output_file("--markdown", markdown)
        if device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"--device must be auto, cpu or cuda, not {device!r}")
        cuda_ok, why = cuda_usable(0)
        provider_sets = []
        if device in ("auto", "cpu"):
            provider_sets.append(("CPUExecutionProvider", ["CPUExecutionProvider"]))
        if device in ("auto", "cuda"):
            if cuda_ok:
                provider_sets.append(("CUDAExecutionProvider", [("CUDAExecutionProvider", {"device_id": 0}),
                                                                "CPUExecutionProvider"]))
            elif device == "cuda":
                warn(f"--device cuda: CUDA is not usable here ({why}); measuring CPU only")
                provider_sets.append(("CPUExecutionProvider", ["CPUExecutionProvider"]))
        synthetic = folder is None
        src = _synthetic_folder(64) if synthetic else folder
        try:
            _bench(src, synthetic, folder, models, batch, seconds, detector, detector_model, limit, workers,
                   markdown, quiet, provider_sets, cuda_ok)
        finally:
            if synthetic:
                import shutil

                shutil.rmtree(src, ignore_errors=True)


def _bench(src, synthetic, folder, models, batch, seconds, detector, detector_model, limit, workers, markdown,
           quiet, provider_sets, cuda_ok) -> None:
    import onnxruntime as ort

    from facelm.benchmark import usable_images
    from facelm.errors import DataError
    from facelm.runtime import default_models_dir
    from facelm.runtime.benchmark import provider_run
    from facelm.runtime.session import cpu_count
    from facelm.sources import iter_sources

    note = (lambda m: None) if quiet else info
    files, skipped, first = usable_images(iter_sources([str(src)]), limit)
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
    results = []
    meta_models = {}
    for label, providers in provider_sets:
        r, meta_models = provider_run(label, providers, mdir, files, first, batch, seconds, rng, synthetic,
                                      detector, detector_model, workers, note, warn)
        results.append(r)
    argv = " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name in ("facelm", "__main__.py") else ""
    out = {
        "command": f"facelm {argv}".strip() if argv else "facelm bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cpu_count(),
                    "onnxruntime": ort.__version__, "cuda_usable": cuda_ok},
        "batch": batch, "seconds": seconds, "precision": "fp32",
        "images": {"folder": None if synthetic else str(folder), "synthetic": synthetic, "files": len(files),
                   "skipped": len(skipped)},
        "models": meta_models, "results": results,
    }
    try:  # a better CPU name where Linux gives one
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["machine"]["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not quiet:
        def cell(r, *keys):
            v = r
            for k in keys:
                v = (v or {}).get(k) if isinstance(v, dict) else None
            return "-" if v is None else str(v)

        spec = [("CNN-6 ms, batch 1", ("cnn6", "latency_ms")),
                (f"CNN-6 faces/s, batch {batch}", ("cnn6", "throughput_faces_s")),
                ("CNN-7 ms, batch 1", ("cnn7", "latency_ms")),
                (f"CNN-7 faces/s, batch {batch}", ("cnn7", "throughput_faces_s")),
                ("bare two-stage faces/s", ("bare_faces_s",)),
                ("detector ms/image", ("detector", "latency_ms")),
                ("pipeline faces/s (no detector)", ("pipeline", "faces_s")),
                ("pipeline / bare", ("pipeline", "ratio_to_bare")),
                ("predict faces/s (with detector)", ("predict", "faces_s")),
                ("predict / bare", ("predict", "ratio_to_bare"))]
        table(f"facelm bench (fp32, {out['machine']['cores']} cores)", ["measure"] + [r["provider"] for r in results],
              [[name] + [cell(r, *keys) for r in results] for name, keys in spec])
    if markdown is not None:
        _markdown(markdown, out)
        note(f"written {markdown}")
    emit_json(out)
