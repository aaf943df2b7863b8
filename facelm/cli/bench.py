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


def _timeit(fn, seconds: float, min_iters: int = 3) -> list[float]:
    """Wall times of repeated ``fn()`` calls: at least ``min_iters``, until ``seconds`` have passed."""
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _model_bench(session, batch: int, seconds: float, rng: np.random.Generator) -> dict:
    s = session.size
    one = rng.integers(0, 256, (1, s, s, 3), dtype=np.uint8)
    many = rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    session.run(one)
    session.run(many)  # warm-up
    lat = _timeit(lambda: session.run(one), seconds / 2)
    thr = _timeit(lambda: session.run(many), seconds / 2)
    return {"latency_ms": round(1000 * float(np.median(lat)), 3),
            "throughput_faces_s": round(batch * len(thr) / sum(thr), 1)}


def _cycle(det, imgs):
    """A callable detecting the next image of ``imgs`` at each call."""
    state = {"i": 0}

    def one():
        det.detect(imgs[state["i"] % len(imgs)])
        state["i"] += 1

    return one


def _bare(pair, batch: int, seconds: float, rng: np.random.Generator) -> float:
    c1 = rng.integers(0, 256, (batch, pair.stage1.size, pair.stage1.size, 3), dtype=np.uint8)
    c2 = None if pair.stage2 is None else rng.integers(0, 256, (batch, pair.stage2.size, pair.stage2.size, 3),
                                                        dtype=np.uint8)

    def step():
        pair.stage1.run(c1)
        if c2 is not None:
            pair.stage2.run(c2)

    step()
    t = _timeit(step, seconds)
    return round(batch * len(t) / sum(t), 1)


def _pipeline(pair, detector, files: list[Path], batch: int, seconds: float, faces_per_s: float,
              workers: int, streams: int) -> dict:
    from facelm.runtime import Landmarker
    from facelm.sources import iter_sources

    lm = Landmarker(pair, detector, batch=batch, workers=workers, streams=streams)
    warm = [str(f) for f in files[:batch]]
    for _ in lm.run(iter_sources(warm)):
        pass
    # enough images for about `seconds` at the bare speed (at least two batches)
    n = max(2 * batch, int(faces_per_s * seconds))
    names = [str(files[i % len(files)]) for i in range(n)]
    lm.stats.update(images=0, faces=0, errors=0)
    t0 = time.perf_counter()
    for _ in lm.run(iter_sources(names)):
        pass
    dt = time.perf_counter() - t0
    st = lm.stats
    return {"images": st["images"], "faces": st["faces"], "errors": st["errors"], "seconds": round(dt, 2),
            "images_s": round(st["images"] / dt, 1), "faces_s": round(st["faces"] / dt, 1)}


def _usable_images(items, limit: int) -> tuple[list, list[tuple[str, str]], list]:
    """Up to ``limit`` readable still image paths from source items, the skipped ones
    as ``(name, reason)`` and the first 32 images decoded: zero-byte, text, truncated files, dangling links, FIFOs (what predict reports as
    error records) must not stop a benchmark."""
    from facelm.imageio import ImageReadError, read_image

    files: list = []
    first: list = []  # the first 32 decoded images, for the detector timing
    skipped: list[tuple[str, str]] = []
    for it in items:
        if len(files) >= limit:
            break
        if it.frame is not None:
            continue
        if it.error is not None:
            skipped.append((it.name, it.error))
            continue
        try:
            img = read_image(it.path, exif=True)
        except ImageReadError as e:
            skipped.append((it.name, str(e)))
            continue
        files.append(it.path)
        if len(first) < 32:
            first.append(img)
    return files, skipped, first


def pair_threads(pair) -> int:
    """Intra-op threads the pair's sessions were made with."""
    return int(pair.stage1.session.get_session_options().intra_op_num_threads)


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


def _provider_run(label, providers, mdir, files, first, batch, seconds, rng, synthetic, detector, detector_model,
                  workers, note) -> tuple[dict, dict]:
    """One provider set's measures (models, bare two-stage, pipeline, detector and predict) and the models'
    description."""
    from facelm.detectors import DetectorUnavailable, WholeImageDetector, create_detector
    from facelm.runtime import load_models
    from facelm.runtime.session import plan_threads

    pair = load_models(mdir, None, providers)
    meta_models = {"stage1": pair.stage1.path.name, "stage2": pair.stage2.path.name if pair.stage2 else None,
                   "widths": [pair.stage1.meta.get("width"),
                              pair.stage2.meta.get("width") if pair.stage2 else None],
                   "scheme": pair.scheme.name}
    note(f"[{label}] models {pair.stage1.path} + {pair.stage2.path if pair.stage2 else '-'} "
         f"(providers {', '.join(pair.stage1.providers)})")
    r: dict = {"provider": label, "providers_used": pair.stage1.providers}
    r["cnn6"] = _model_bench(pair.stage1, batch, seconds, rng)
    r["cnn7"] = _model_bench(pair.stage2, batch, seconds, rng) if pair.stage2 else None
    r["bare_faces_s"] = _bare(pair, batch, seconds, rng)
    # predict's own thread plan (streams x threads) for the pipeline runs; bare runs use all cores
    streams, threads = plan_threads(providers)
    ppair = pair if threads == pair_threads(pair) else load_models(mdir, None, providers, threads)
    r["pipeline_plan"] = {"streams": streams, "threads_per_session": threads}
    note(f"[{label}] bare two-stage {r['bare_faces_s']} faces/s")
    # the machine's load may change during the run: each ratio uses bare runs right before and after
    p = _pipeline(ppair, WholeImageDetector(), files, batch, seconds, r["bare_faces_s"], workers, streams)
    p["bare_after_faces_s"] = _bare(pair, batch, seconds / 2, rng)
    p["ratio_to_bare"] = round(p["faces_s"] / ((r["bare_faces_s"] + p["bare_after_faces_s"]) / 2), 3)
    r["pipeline"] = p
    det = None
    if not synthetic:
        try:
            det = create_detector(detector, model=detector_model, providers=providers, threads=1,
                                  download=False)
        except DetectorUnavailable as e:
            warn(f"detector not benchmarked: {e}")
    if det is not None:
        imgs = first
        det.detect(imgs[0])
        lat = _timeit(_cycle(det, imgs), seconds / 2)
        r["detector"] = {"name": det.describe(), "latency_ms": round(1000 * float(np.median(lat)), 2),
                         "images_s": round(len(lat) / sum(lat), 1)}
        before = _bare(pair, batch, seconds / 2, rng)
        q = _pipeline(ppair, det, files, batch, seconds, r["bare_faces_s"], workers, streams)
        q["bare_around_faces_s"] = [before, _bare(pair, batch, seconds / 2, rng)]
        q["ratio_to_bare"] = round(q["faces_s"] / (sum(q["bare_around_faces_s"]) / 2), 3)
        r["predict"] = q
    else:
        r["detector"] = r["predict"] = None
    return r, meta_models


def _bench(src, synthetic, folder, models, batch, seconds, detector, detector_model, limit, workers, markdown,
           quiet, provider_sets, cuda_ok) -> None:
    import onnxruntime as ort

    from facelm.errors import DataError
    from facelm.runtime import default_models_dir
    from facelm.runtime.session import cpu_count
    from facelm.sources import iter_sources

    note = (lambda m: None) if quiet else info
    files, skipped, first = _usable_images(iter_sources([str(src)]), limit)
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
        r, meta_models = _provider_run(label, providers, mdir, files, first, batch, seconds, rng, synthetic,
                                       detector, detector_model, workers, note)
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
