"""``facelm predict``: two-stage landmarks for images, folders, globs, lists, stdin paths and videos;
``facelm fit-box-map``: fit a detector's box map on annotated data and store it in the stage-1 model."""

import os
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import check_device, check_not_empty, check_output_file, check_range, cli_message, emit_json, error, handle_errors, info, warn
from facelm._io import check_distinct_paths, check_folder_creatable
from facelm.cli._predict_sink import _CSV_HEAD, _CSV_TAIL, Fmt, _CsvLines, _Sink  # noqa: F401 - used by tests
from facelm.errors import DataError, ExitCode, ModelError, UsageError
from facelm.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

EPILOG = """Examples:

1. `facelm predict photo.jpg`  (one JSON line per image on stdout)

2. `find photos -name '*.jpg' | facelm predict - | jq '.faces[].angle'`

3. `facelm predict photos/ --recursive --draw annotated/ --format csv -o faces.csv`

4. `facelm predict clip.mp4 --vid-stride 5`  (every 5th frame; records carry "frame")

4b. `facelm predict clip.mp4 --smooth --min-quality 0.5`  (steady landmarks per "track"; unsure faces dropped)

5. `facelm predict crops/ --no-detect --stages 1`  (images that are already face crops; CNN-6 only)

6. `facelm predict shots/ --boxes boxes.json`  (your own face squares: JSON, JSONL or CSV)

7. `facelm predict shots/ --boxes earlier.jsonl`  (predict's own output: its detector boxes, `--boxes-kind auto`)

8. `facelm predict photos/ --to-scheme 5pt`  (5 points: eye centres, nose tip, mouth corners; docs/predict.md)

9. `facelm predict list.txt --shard $SLURM_ARRAY_TASK_ID/8 --resume -o out-$SLURM_ARRAY_TASK_ID.jsonl`
   (1/8 of the images, continuing after a kill; docs/scale.md)

10. `facelm predict photos/ -r -f parquet -o faces.parquet`  (needs `pip install 'facelm[parquet]'`)

Models: --models DIR holds the stage-1 and stage-2 ONNX files (`facelm export`), told apart by their metadata.
Detector: YuNet through onnxruntime: --detector-model or $FACELM_DETECTOR_MODEL, else the bundled
yunet_s_dynamic.onnx (Apache-2.0, shipped with facelm: works offline), else the cache ~/.cache/facelm, else a
download; or the `yuface` package. Photos are read with their EXIF orientation applied. Record format and
conventions: docs/predict.md.

At scale: --shard K/N (K = 0..N-1) keeps the files whose name hashes to K; --resume -o FILE skips the images
already in FILE and appends the rest (docs/scale.md). From Python: facelm.Landmarker (docs/python.md).

Exit codes: 0 ok, 1 some inputs failed (an error record each; the run goes on) or some --draw drawings could not
be written, 2 usage, 3 no images found (or a --resume file that is not predict's JSONL), 4 models missing, foreign
or not matching (stage-2 scheme), or no detector available.
"""

FIT_EPILOG = """Examples:

1. `facelm fit-box-map --data work/ytf --models models`  (YuNet; writes the map into the stage-1 model)

2. `facelm fit-box-map --data work/300w --models models --detector yuface --limit 500 --dry-run`

Runs the detector on the prepared dataset's images (its train split; a dataset without one is used whole, with a
warning: its held-out faces are then no longer held out), matches each annotated face to the detection that
overlaps its face square most, and fits centre offset and side scale by medians (docs/predict.md). Prints the map
as JSON.
Exit codes: 0 ok, 3 no face matched, 4 model or detector missing.
"""


class BoxesKind(str, Enum):
    auto = "auto"
    detector = "detector"
    square = "square"


_MODELS_HELP = ("Folder with the stage-1 and stage-2 ONNX models (told apart by their metadata); default: the repository's "
                "models/ (or the installed package's).")


_PREC_HELP = ("Landmark model precision: int8 (the models' quantised copies, cnn6.int8.onnx/cnn6r.int8.onnx), fp32, "
              "or auto: int8 on CPUs where it measured faster (VNNI, AMX, AVX2; ARM dot product), fp32 on CUDA and "
              "elsewhere. stderr says which and why.")

def _shown_quality(q: float) -> float:
    """A face's quality as its record shows it (``runtime/results._extras``): what ``--min-quality`` compares."""
    return round(float(q), 3)


_DRAW_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class _DrawNames:
    """Where ``--draw DIR`` puts each input's drawing: a distinct file per input, never an overwrite.

    A relative input path without ``..`` is mirrored under DIR (``imgs/a.jpg`` -> ``DIR/imgs/a.jpg``); so is an
    absolute one or one with ``..`` that lies under the working folder. Any other path keeps its file name plus
    a short hash of its folder (``DIR/a.1f3c9e2b.jpg``), so ``/x/a.jpg`` and ``/y/a.jpg`` give two files. Names
    that still collide within a run (the same input twice, ``a.ppm`` next to ``a.png``) get ``-2``, ``-3``, ...
    """

    def __init__(self, root: Path):
        self.root = root
        self.used: set[str] = set()
        self.cwd = os.path.abspath(os.getcwd())

    def _rel(self, name: str) -> Path:
        p = Path(name)
        if not p.is_absolute() and ".." not in p.parts:
            return p
        full = os.path.abspath(name)
        try:
            rel = os.path.relpath(full, self.cwd)
        except ValueError:  # another drive (Windows)
            rel = ".."
        if not rel.startswith(".."):
            return Path(rel)
        import hashlib

        tag = hashlib.sha1(os.path.dirname(full).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return Path(f"{p.stem}.{tag}{p.suffix}")

    def path(self, name: str, frame) -> Path:
        rel = self._rel(name)
        suffix = rel.suffix.lower() if rel.suffix.lower() in _DRAW_SUFFIXES else ".png"
        stem = rel.stem + (f"_f{int(frame):06d}" if frame is not None else "")
        if frame is not None:
            suffix = ".jpg"
        out = self.root / rel.parent / f"{stem}{suffix}"
        k = 2
        while os.path.normcase(str(out)) in self.used:
            out = self.root / rel.parent / f"{stem}-{k}{suffix}"
            k += 1
        self.used.add(os.path.normcase(str(out)))
        return out


def _fit_data(data: list[str], models: str | None) -> list[Path]:
    """fit-box-map's ``--data`` folders, each once; ``UsageError`` for an empty value (typed ``str``: Typer would
    read "" as the current folder) or a folder given twice (its faces would count twice)."""
    check_not_empty(*[("--data", d) for d in data], ("--models", models))
    check_distinct_paths("--data", data)
    return [Path(d) for d in data]


def _write_drawing(path: Path, bgr) -> None:
    import cv2

    from facelm._io import atomic_write

    ok, buf = cv2.imencode(path.suffix, bgr)
    if not ok:
        raise OSError(f"cannot encode {path.suffix}")
    with atomic_write(path, "wb") as f:
        f.write(buf.tobytes())


def _check_options(batch, vid_stride, stages, score_threshold, workers, threads, streams, boxes, no_detect,
                   tta) -> None:
    """The numeric ranges and exclusive options of ``facelm predict`` (usage errors, before any work)."""
    from facelm.runtime.setup import check_predict_options

    check_range("--vid-stride", vid_stride, 1)
    check_predict_options(batch=batch, stages=stages, score_threshold=score_threshold, workers=workers,
                          threads=threads, streams=streams, tta=tta, boxes=boxes, no_detect=no_detect)


def register(app: typer.Typer) -> None:
    from facelm._paths import default_detector_note, detector_model_help  # no runtime imported

    detector_note = f"\n\nFace detector file without --detector-model, here and now: {default_detector_note()}."
    @app.command(name="predict", epilog=EPILOG + detector_note, no_args_is_help=True)
    @handle_errors
    def predict_cmd(
        sources: Annotated[list[str], typer.Argument(
            help="Images, folders, globs, list files (.txt), videos, or '-' for paths on stdin.",
            show_default=False)],
        models: Annotated[Path | None, typer.Option("--models", "-m", help=_MODELS_HELP, envvar="FACELM_MODELS",
                                                    show_default=False)] = None,
        stages: Annotated[int | None, typer.Option(
            help="1: CNN-6 only; 2: CNN-6 then CNN-7 (default: 2 when the stage-2 model is there).")] = None,
        fmt: Annotated[Fmt, typer.Option("--format", "-f", help="jsonl (one line per image), csv (one row per "
                                                                "face), json (one array) or parquet (one row per "
                                                                "image; needs -o and pyarrow).")] = Fmt.jsonl,
        output: Annotated[str, typer.Option("--output", "-o", help="Write the records here ('-' = stdout).")
                          ] = "-",
        draw: Annotated[str | None, typer.Option(metavar="PATH",
                                                 help="Write annotated copies of the images into this folder.")
                        ] = None,
        batch: Annotated[int, typer.Option("--batch", "--batch-size",
                                           help="Faces per network call (batched across images).")] = 32,
        device: Annotated[str, typer.Option(help="auto (CUDA when usable), cpu, cuda or cuda:N.",
                                            envvar="FACELM_DEVICE")] = "auto",
        precision: Annotated[str, typer.Option(metavar="auto|fp32|int8", envvar="FACELM_PRECISION", help=_PREC_HELP)
                             ] = "auto",
        detector: Annotated[str, typer.Option(help="auto, yunet or yuface.")] = "auto",
        detector_model: Annotated[Path | None, typer.Option(
            "--detector-model", help=detector_model_help(), show_default=False)] = None,
        boxes: Annotated[Path | None, typer.Option(
            help="Face boxes per image from a JSON/JSONL/CSV file instead of a detector.", show_default=False)
        ] = None,
        boxes_kind: Annotated[BoxesKind, typer.Option(
            "--boxes-kind", help="What --boxes holds: detector boxes (mapped through the model's box map for "
                                 "--detector, as a live detection) or face squares; auto: detector for predict's "
                                 "own output, square for other files.")] = BoxesKind.auto,
        no_detect: Annotated[bool, typer.Option("--no-detect", help="Each image is one face crop (no detector).")
                             ] = False,
        score_threshold: Annotated[float, typer.Option(help="Detector score threshold.")] = 0.6,
        box_map_file: Annotated[Path | None, typer.Option(
            "--box-map", metavar="FILE", help="Detector box -> face square map from `facelm fit-box-map --dry-run` "
                                             "(default: the one stored in the stage-1 model).", show_default=False)
        ] = None,
        level: Annotated[bool, typer.Option("--level/--no-level", help="Level each face by stage 1's in-plane "
                                                                        "angle and run stage 1 again (faces at any "
                                                                        "angle); with --turned-looks, an image "
                                                                        "with no face found upright is also "
                                                                        "searched turned by 90, 180 and 270 "
                                                                        "degrees (then by 45, 135, 225, 315).")
                     ] = True,
        turned_looks: Annotated[bool, typer.Option("--turned-looks/--no-turned-looks", help="With --level: look "
                                                   "for faces in the turned image when none is found upright "
                                                   "(faces lying on their side, small faces at diagonal angles). "
                                                   "Costs nothing when a face is found upright, but an image "
                                                   "with no face at all takes 8 detector looks, 4 of them on a "
                                                   "larger canvas (docs/benchmarks.md); --no-turned-looks for "
                                                   "collections with many faceless images.")] = True,
        rescue: Annotated[bool, typer.Option("--rescue/--no-rescue", help="With --level: read a face whose "
                                             "quality after levelling is below 0.5 again from 36 other starting "
                                             "crops (its square scaled by 0.8, 1 and 1.25, turned in 30-degree "
                                             "steps) and keep the best reading (docs/predict.md, step 2b). Costs "
                                             "nothing for faces read well.")] = True,
        box_looks: Annotated[bool, typer.Option("--box-looks/--no-box-looks", help="With --boxes and --level: "
                                                "the detector (--detector, --detector-model) looks at each given "
                                                "face's patch turned by 0, 90, 180 and 270 degrees to find which "
                                                "way up it is, as for the faces it detects itself; when a turned "
                                                "look wins, its box replaces the given one (docs/predict.md, step "
                                                "2b). --no-box-looks: given faces start upright.")] = True,
        label_shift: Annotated[bool, typer.Option("--label-shift/--no-label-shift", help="Add the models' label "
                                                  "shift to the landmarks (300-W's annotators place points about "
                                                  "1.2% of the eye distance to the image right of where a "
                                                  "flip-trained network reads them; docs/predict.md, step 5). "
                                                  "--no-label-shift: the networks' mirror-symmetric reading.")
                       ] = True,
        tta: Annotated[str, typer.Option(metavar="full|flip|none", help="Test-time augmentation: flip averages "
                                                                        "each network's landmarks on the crop and "
                                                                        "its mirror image; full (default) also "
                                                                        "averages stage 2 over 7 framings of its "
                                                                        "square (lowest error, 1.2-1.7x flip's predict "
                                                                        "time: docs/predict.md); none: one pass.")
                       ] = "full",
        min_quality: Annotated[float, typer.Option(
            help="Drop faces whose quality (0..1, an estimate of the chance that their NME is <= 10%) is below "
                 "this (docs/predict.md).")] = 0.0,
        smooth: Annotated[bool, typer.Option("--smooth", help="Videos: smooth each face's landmarks across frames "
                                                             "(One-Euro filter per track; no effect on still "
                                                             "images).")] = False,
        smooth_min_cutoff: Annotated[float, typer.Option(
            help="--smooth: cutoff frequency (Hz) of a still face; lower is steadier.")] = DEFAULT_MIN_CUTOFF,
        smooth_beta: Annotated[float, typer.Option(
            help="--smooth: cutoff increase per face size per second of motion; higher lags less.")] = DEFAULT_BETA,
        recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
        vid_stride: Annotated[int, typer.Option(help="Use every N-th video frame.")] = 1,
        exif: Annotated[bool, typer.Option(help="Apply EXIF orientation (as photo viewers do).")] = True,
        workers: Annotated[int, typer.Option(help="Reader/detector threads (0 = number of cores).")] = 0,
        threads: Annotated[int, typer.Option(help="onnxruntime threads per model (0 = cores / streams).")] = 0,
        streams: Annotated[int, typer.Option(help="Batches run at once (0 = auto: 2 on a CPU with 2+ cores, "
                                                  "else 1).")] = 0,
        to_scheme: Annotated[str | None, typer.Option(
            "--to-scheme", metavar="SCHEME", help="Convert the landmarks to this scheme on the way out (e.g. 5pt) "
                                                  "through a scheme map; records name it.", show_default=False)
        ] = None,
        scheme_map: Annotated[list[Path] | None, typer.Option(
            "--scheme-map", metavar="FILE", help="A scheme-map file (JSON/TOML) for --to-scheme (repeatable).",
            show_default=False)] = None,
        shard: Annotated[str | None, typer.Option(
            metavar="K/N", help="Do shard K of N (K = 0..N-1) of the sources, chosen by a stable hash of each "
                                "file name (docs/scale.md).", show_default=False)] = None,
        resume: Annotated[bool, typer.Option(
            "--resume", help="Continue -o FILE (JSONL): skip the images already in it, append the rest.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")] = False,
    ) -> None:
        """Detect faces and predict their landmarks with the two-stage CNN-6/CNN-7 models (JSON lines out)."""
        from facelm.cli._predict_scale import RunScope, open_sink
        from facelm.runtime import annotate
        from facelm.runtime.setup import build_predict_run
        from facelm.sources import describe_sources, iter_sources

        _check_options(batch, vid_stride, stages, score_threshold, workers, threads, streams, boxes, no_detect,
                       tta)
        check_range("--min-quality", min_quality, 0.0, 1.0)
        check_range("--smooth-min-cutoff", smooth_min_cutoff, 0.0, lo_open=True)
        check_range("--smooth-beta", smooth_beta, 0.0)
        check_not_empty(("--output", output), ("--draw", draw), ("--precision", precision))  # not stdout, not "."
        check_device("--device", device)
        check_output_file("--output", output)  # before any work: a folder here used to fail after the whole run
        scope = RunScope(shard, resume, output, fmt.value)
        if draw is not None:
            draw = Path(draw)
            check_folder_creatable("--draw", draw)  # the drawings' folders are made in it as the run goes
        note = (lambda m: None) if quiet else info
        run = build_predict_run(models, detector=detector, detector_model=detector_model, boxes=boxes,
                                boxes_kind=boxes_kind.value, no_detect=no_detect, stages=stages, device=device,
                                precision=precision, to_scheme=to_scheme, scheme_maps=scheme_map or (),
                                score_threshold=score_threshold, box_map=box_map_file, level=level, tta=tta,
                                turned_looks=turned_looks, batch=batch, workers=workers, threads=threads,
                                streams=streams, exif=exif, label_shift=label_shift,
                                rescue=rescue, box_looks=box_looks, keep_images=draw is not None, info=note,
                                warn=warn)
        pair, conv, det, lm, streams, threads = run.pair, run.converter, run.detector, run.pipeline, run.streams, \
            run.threads
        for s in pair.skipped:
            note(cli_message(s) if "not run by default" in s else f"skipped {s}")
        box_map_note = f"; box map: {run.box_map_note}" if run.box_map_note else None
        s1, s2 = pair.stage1, pair.stage2
        note(f"models: {s1.path} (stage 1, {s1.arch}, {s1.scheme.name})"
             + (f" + {s2.path} (stage 2, {s2.arch})" if s2 else " (stage 1 only)"))
        note(f"precision: {pair.precision} ({pair.precision_reason})")
        note(f"onnxruntime providers: {', '.join(s1.providers)} ({streams} stream(s) x {threads} thread(s)); "
             f"detector: {det.describe()}"
             + (f"; box map: {lm.box_map_source}" if det.name not in ("boxes", "none") else box_map_note or "")
             + (f"; looking inside the boxes: {lm.box_looks.describe()}" if lm.box_looks not in (None, det) else ""))

        from facelm.runtime.tracking import FaceTracker

        # tracks and smoothing work on the model's points; --to-scheme converts after them
        tracker = FaceTracker(pair.scheme, smooth=smooth, min_cutoff=smooth_min_cutoff, beta=smooth_beta)
        tracker.seed(scope.tails)  # a video resumed mid-way goes on with its tracks (and filters) from the file
        if smooth and conv is not None and scope.tails:
            warn("--resume with --smooth and --to-scheme: the file holds converted points, not the model's, so a "
                 "video resumed mid-way starts its filters again (its track ids go on); the frames after the cut "
                 "differ slightly from an uninterrupted run")
        out_scheme, boundaries = (conv.name, conv.boundaries) if conv else (pair.scheme.name,
                                                                             pair.scheme.boundaries)
        n_out = conv.num_points if conv else pair.scheme.num_landmarks
        scope.check_scheme(out_scheme)  # before anything is appended
        sink = open_sink(fmt.value, output, resume, warn) or _Sink(fmt, output, n_out, conv and conv.points)
        draw_names = _DrawNames(draw) if draw is not None else None
        items = scope.items(iter_sources(sources, recursive=recursive, vid_stride=vid_stride, select=scope.select,
                                         warn=warn))
        n = failed = attempted = faces = undrawn = 0
        still_warned = False
        t0 = time.perf_counter()
        ok = False
        try:
            for res in lm.run(items):
                n += 1
                if smooth and res.frame is None and not res.error and not still_warned:
                    warn(f"--smooth: {res.name} is a still image; only video frames are smoothed")
                    still_warned = True
                tracker.update(res)
                res = conv.image(res) if conv else res
                if min_quality > 0:
                    res.faces = [f for f in res.faces
                                 if f.quality is None or _shown_quality(f.quality) >= min_quality]
                attempted += not res.source_error
                faces += len(res.faces)
                if res.error:
                    failed += 1
                    where = res.name + (f" frame {res.frame}" if res.frame is not None else "")
                    error(f"{where}: {res.error}")
                sink.write(res.record(out_scheme))
                if draw is not None and res.image is not None and not res.error:
                    try:
                        _write_drawing(draw_names.path(res.name, res.frame),
                                       annotate(res.image, res, dict(boundaries or {})))
                    except (OSError, UsageError) as e:  # the records go on; the exit code says the run is incomplete
                        undrawn += 1
                        warn(f"{res.name}: cannot write the drawing ({getattr(e, 'strerror', None) or e})")
                    res.image = None
            ok = True
        finally:
            sink.close(ok)
        dt = time.perf_counter() - t0
        if scope.note():
            note(scope.note())
        if attempted == 0 and not scope.found_any():
            hint = f"SOURCE can be {describe_sources()}"
            if not failed:
                raise DataError(f"no images found in {' '.join(sources)}; {hint}")
            note(f"no images found; {hint}")  # each source has had its one error line already
            raise typer.Exit(int(ExitCode.DATA))
        reread = f" ({lm.stats['reread']} read again: --rescue)" if lm.stats["reread"] else ""
        note(f"{n} images, {faces} faces{reread}, {failed} failed, {dt:.1f} s ({n / dt if dt > 0 else 0:.1f} "
             f"images/s, {faces / dt if dt > 0 else 0:.1f} faces/s, {pair.precision})")
        if undrawn:
            warn(f"{undrawn} drawing(s) could not be written into {draw}")
        if failed or undrawn:
            raise typer.Exit(int(ExitCode.PARTIAL))

    @app.command(name="fit-box-map", epilog=FIT_EPILOG + detector_note, no_args_is_help=True)
    @handle_errors
    def fit_box_map_cmd(
        data: Annotated[list[str], typer.Option("--data", "-d", help="Prepared dataset folder (`facelm prepare`); "
                                                 "repeat to fit on several (their train splits, else all their "
                                                 "faces, with a warning).",
                                                 show_default=False)],
        models: Annotated[str | None, typer.Option("--models", "-m", help=_MODELS_HELP, envvar="FACELM_MODELS",
                                                   show_default=False)] = None,
        detector: Annotated[str, typer.Option(help="auto, yunet or yuface.")] = "auto",
        detector_model: Annotated[Path | None, typer.Option("--detector-model", help=detector_model_help(),
                                                            show_default=False)] = None,
        limit: Annotated[int, typer.Option(help="Use at most N images (0 = all).")] = 0,
        min_iou: Annotated[float, typer.Option(help="Minimum IoU between a detection and the face square.")
                           ] = 0.3,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the map, do not write it.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr.")] = False,
    ) -> None:
        """Fit the mapping from a detector's boxes to the models' training face squares; store it in stage 1."""
        from facelm.detectors import create_detector
        from facelm.detectors.boxmap import fit_box_map, write_box_map
        from facelm.runtime import default_models_dir, load_models
        from facelm.runtime.session import int8_twins

        check_range("--limit", limit, 0)
        check_range("--min-iou", min_iou, 0.0, 1.0)
        data = _fit_data(data, models)
        note = (lambda m: None) if quiet else info
        try:
            pair = load_models(models if models is not None else default_models_dir(), 1, precision="fp32")
        except ModelError as e:  # the box map is stored in the float stage-1 file (its int8 copy shares it)
            raise ModelError(str(e).replace("`precision` fp32: ", "the float stage-1 model: ")) from None
        det = create_detector(detector, model=detector_model, info=note)
        note(f"fitting the {det.describe()} box map on {', '.join(map(str, data))} ...")
        m = fit_box_map(det, list(data), scheme=pair.scheme.name, limit=limit, min_iou=min_iou, warn=warn)
        for src, v in m.get("per_source", {}).items():
            if v["residuals"]:
                note(f"  {src}: {v['matched']} of {v['faces']} faces matched, mean IoU with the face squares "
                     f"{v['residuals']['iou_mean']:.3f}")
        r, r0 = m["residuals"], m["residuals_identity"]
        note(f"matched {m['matched']} of {m['faces']} faces; centre error {r['centre_err_median']:.3f} "
             f"(identity {r0['centre_err_median']:.3f}), side error {r['side_err_median']:.3f} "
             f"(identity {r0['side_err_median']:.3f}) of the face side")
        if not dry_run:
            for path in [pair.stage1.path, *int8_twins(pair.stage1.path)]:  # its int8 copy shares the map
                write_box_map(path, m)
                note(f"box map for {det.name} written into {path}")
        emit_json(m)
        if m["matched"] == 0:
            raise typer.Exit(int(ExitCode.DATA))
