"""Benchmarks of the prediction pipeline (``facelm bench``): the landmark networks as ``predict`` runs them, the
pipeline over real image files with and without the detector, where a face's time goes, and one provider set's
full measurement at each precision, repeated. The timing helpers are ``facelm.benchmark``.

Every measurement is repeated (``repeats``) and the median reported; the precisions are measured in turn within
each round, so a change of the machine's load hits them alike, and each ratio (pipeline / bare, int8 / fp32) is
the median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm.benchmark import detect_cycle, model_bench, timeit

__all__ = ["NOISE_NOTE", "BenchOptions", "bare_networks", "network_passes", "pipeline_run", "provider_run",
           "time_budget"]


@dataclass
class BenchOptions:
    """What ``facelm bench`` measures: ``precisions`` (fp32, int8, auto), each measure ``repeats`` times for
    ``seconds`` at ``batch``; the network work of ``predict`` with ``stages``/``level``/``tta``."""

    batch: int = 32
    seconds: float = 3.0
    repeats: int = 3
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    stages: int | None = None
    level: bool = True
    tta: str = "full"
    workers: int = 0
    detector: str = "auto"
    detector_model: Path | None = None


NOISE_NOTE = "above 1: measurement noise (the pipeline runs the same networks plus reading, detecting and cropping)"


def network_passes(pair, level: bool, tta: str) -> tuple[int, int]:
    """(stage-1, stage-2) network runs per face in ``predict``: stage 1 once plus ``LEVEL_PASSES`` levelled runs,
    stage 2 once (``tta="full"``: once per framing of ``STAGE2_FRAMINGS``); each twice with flip or full TTA.
    (Faces whose levelling does not settle take more: the fallback search.)"""
    from facelm.runtime.pipeline import LEVEL_PASSES, STAGE2_FRAMINGS

    k = 1 if tta == "none" else 2
    n2 = len(STAGE2_FRAMINGS) if tta == "full" else 1
    return k * (1 + (LEVEL_PASSES if level else 0)), (k * n2 if pair.stage2 is not None else 0)


def bare_networks(pair, batch: int, seconds: float, rng: np.random.Generator, *, level: bool = True,
                  tta: str = "full", streams: int = 1) -> float:
    """Faces/s of the landmark networks alone, run as ``predict`` runs them (:func:`network_passes`) on
    ready-made crops at ``batch``, with ``streams`` batches in flight (predict's plan): the pipeline's ceiling."""
    p1, p2 = network_passes(pair, level, tta)
    c1 = rng.integers(0, 256, (batch, pair.stage1.size, pair.stage1.size, 3), dtype=np.uint8)
    c2 = None if pair.stage2 is None else rng.integers(0, 256, (batch, pair.stage2.size, pair.stage2.size, 3),
                                                        dtype=np.uint8)

    def step() -> None:
        for _ in range(p1):
            pair.stage1.run(c1)
        for _ in range(p2):
            pair.stage2.run(c2)

    step()  # warm-up
    if streams <= 1:
        t = timeit(step, seconds)
        return round(batch * len(t) / sum(t), 1)
    done = [0] * streams
    t_end = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while done[i] < 1 or time.perf_counter() < t_end:
            step()
            done[i] += 1

    t0 = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(streams)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return round(batch * sum(done) / (time.perf_counter() - t0), 1)


def pipeline_run(pair, detector, files: list[Path], batch: int, seconds: float, faces_per_s: float,
                 workers: int, streams: int, level: bool = True, tta: str = "full") -> dict:
    from facelm.runtime import Landmarker
    from facelm.sources import iter_sources

    lm = Landmarker(pair, detector, batch=batch, workers=workers, streams=streams, level=level, tta=tta)
    for _ in lm.run(iter_sources([str(f) for f in files[:batch]])):  # warm-up
        pass
    # enough images for about `seconds` at the bare speed (at least two batches)
    n = max(2 * batch, int(faces_per_s * seconds))
    names = [str(files[i % len(files)]) for i in range(n)]
    lm.stats.update(dict.fromkeys(lm.stats, 0))  # every counter back to 0 after the warm-up, whatever it counts
    t0 = time.perf_counter()
    for _ in lm.run(iter_sources(names)):
        pass
    dt = time.perf_counter() - t0
    st = lm.stats
    # network_s: time inside the landmark networks, summed over the streams; network_calls: batches run (with the
    # orientation search's extra passes for faces whose levelling does not settle)
    return {"images": st["images"], "faces": st["faces"], "errors": st["errors"], "seconds": round(dt, 2),
            "images_s": round(st["images"] / dt, 1), "faces_s": round(st["faces"] / dt, 1),
            "network_s": round(st["infer_s"], 2), "network_calls": st["batches"]}


def time_budget(pair, detector, files: list[Path], batch: int, level: bool, tta: str, n_images: int = 32
                ) -> dict:
    """Where a face's time goes in ``predict``, in ms of one thread per face, over the first ``n_images`` files:
    reading (decode), detecting, the rest of the per-image work (which way up: the detector again on turned
    patches; crops), and the landmark networks (at the pair's threads)."""
    from facelm.imageio import read_image
    from facelm.runtime import Landmarker
    from facelm.sources import SourceItem

    lm = Landmarker(pair, detector, batch=batch, workers=1, level=level, tta=tta)
    paths = [Path(f) for f in files[:n_images]]
    t0 = time.perf_counter()
    imgs = [read_image(p, exif=True) for p in paths]
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p, im in zip(paths, imgs):
        detector.detect(im, str(p))
    t_det = time.perf_counter() - t0
    t0 = time.perf_counter()
    jobs = [lm.prepare(SourceItem(str(p), p)) for p in paths]
    t_prep = time.perf_counter() - t0
    faces = [f for j in jobs for f in j.faces]
    if not faces:
        return {"faces": 0}
    t0 = time.perf_counter()
    for i in range(0, len(faces), batch):
        lm._infer(faces[i:i + batch])
    t_net = time.perf_counter() - t0
    n = len(faces)
    parts = {"read": t_read, "detect": t_det, "orient_and_crop": max(0.0, t_prep - t_read - t_det),
             "networks": t_net}
    total = sum(parts.values())
    return {"images": len(paths), "faces": n, "ms_per_face": {k: round(1e3 * v / n, 2) for k, v in parts.items()},
            "networks_share": round(t_net / total, 3) if total > 0 else None}


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(statistics.median(xs)), 3) if xs else None


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def _load(mdir, providers, precision: str, threads: int, stages: int | None, note):
    """(pair for the model timings: both stages when there are two, the pair predict runs at the pipeline's
    threads) at ``precision``, or why that precision is not available (a str)."""
    from facelm.errors import ModelError
    from facelm.runtime import load_models

    try:
        run = load_models(mdir, stages, providers, threads, precision=precision)
    except ModelError as e:
        note(f"{precision}: not measured ({e})")
        return str(e)
    try:
        both = load_models(mdir, 2, providers, 0, precision=run.precision)
    except ModelError:
        both = load_models(mdir, 1, providers, 0, precision=run.precision)
    return both, run


class _Round:
    """The measures of one precision in one round."""

    def __init__(self, both, run, files, first, det, opts, rng, streams):
        self.both, self.run, self.files, self.first, self.det = both, run, files, first, det
        self.o, self.rng, self.streams = opts, rng, streams

    def measure(self) -> dict:
        from facelm.detectors import WholeImageDetector

        o, r = self.o, {}
        r["stage1"] = model_bench(self.both.stage1, o.batch, o.seconds, self.rng)
        r["stage2"] = model_bench(self.both.stage2, o.batch, o.seconds, self.rng) if self.both.stage2 else None
        bare = lambda s: bare_networks(self.run, o.batch, s, self.rng, level=o.level, tta=o.tta,
                                       streams=self.streams)
        r["bare_faces_s"] = bare(o.seconds)
        p = pipeline_run(self.run, WholeImageDetector(), self.files, o.batch, o.seconds, r["bare_faces_s"],
                         o.workers, self.streams, o.level, o.tta)
        p["bare_after_faces_s"] = bare(o.seconds / 2)
        p["ratio_to_bare"] = p["faces_s"] / ((r["bare_faces_s"] + p["bare_after_faces_s"]) / 2)
        r["pipeline"] = p
        if self.det is not None:
            lat = timeit(detect_cycle(self.det, self.first), o.seconds / 2)
            r["detector"] = {"name": self.det.describe(), "latency_ms": 1000 * float(np.median(lat))}
            q = pipeline_run(self.run, self.det, self.files, o.batch, o.seconds, r["bare_faces_s"], o.workers,
                             self.streams, o.level, o.tta)
            q["bare_after_faces_s"] = bare(o.seconds / 2)
            q["ratio_to_bare"] = q["faces_s"] / ((r["bare_faces_s"] + q["bare_after_faces_s"]) / 2)
            r["predict"] = q
        return r


_KEYS = {"stage1_latency_ms": ("stage1", "latency_ms"), "stage1_faces_s": ("stage1", "throughput_faces_s"),
         "stage2_latency_ms": ("stage2", "latency_ms"), "stage2_faces_s": ("stage2", "throughput_faces_s"),
         "bare_faces_s": ("bare_faces_s",), "detector_ms": ("detector", "latency_ms"),
         "pipeline_faces_s": ("pipeline", "faces_s"), "pipeline_ratio_to_bare": ("pipeline", "ratio_to_bare"),
         "predict_faces_s": ("predict", "faces_s"), "predict_ratio_to_bare": ("predict", "ratio_to_bare")}


def _get(r: dict, keys: tuple):
    v = r
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def _summarise(rounds: list[dict]) -> dict:
    """Medians over the rounds, each with its spread (min, max) and a noise note for ratios above 1."""
    out: dict = {}
    for name, keys in _KEYS.items():
        vals = [_get(r, keys) for r in rounds]
        med = _median(vals)
        if med is None:
            continue
        out[name] = med
        ok = [v for v in vals if v is not None]
        out.setdefault("spread", {})[name] = [round(min(ok), 3), round(max(ok), 3)]
        if name.endswith("ratio_to_bare") and med > 1:
            out.setdefault("notes", {})[name] = NOISE_NOTE
    return out


def provider_run(label, providers, mdir, files, first, opts, rng, synthetic, note, warn) -> dict:
    """One provider set's measures at each of ``opts.precisions``, ``opts.repeats`` rounds, summarised."""
    from facelm.detectors import DetectorUnavailable, create_detector
    from facelm.runtime.session import plan_threads

    streams, threads = plan_threads(providers)
    loaded = {p: _load(mdir, providers, p, threads, opts.stages, note) for p in opts.precisions}
    if all(isinstance(v, str) for v in loaded.values()):  # nothing to measure: not a result with an empty table
        from facelm.errors import ModelError

        raise ModelError("; ".join(dict.fromkeys(loaded.values())))  # (each names its precision)
    loaded = {p: v for p, v in loaded.items() if not isinstance(v, str)}
    det = None
    if not synthetic:
        try:
            det = create_detector(opts.detector, model=opts.detector_model, providers=providers, threads=1,
                                  download=False)
        except DetectorUnavailable as e:
            warn(f"detector not benchmarked: {e}")
    rounds: dict[str, list[dict]] = {p: [] for p in loaded}
    for i in range(opts.repeats):
        for p, (both, run) in loaded.items():
            note(f"[{label}] round {i + 1}/{opts.repeats}: {p}")
            rounds[p].append(_Round(both, run, files, first, det, opts, rng, streams).measure())
    res: dict = {"provider": label, "pipeline_plan": {"streams": streams, "threads_per_session": threads},
                 "precisions": {}}
    for p, (both, run) in loaded.items():
        s = _summarise(rounds[p])
        s.update(models=[run.stage1.path.name] + ([run.stage2.path.name] if run.stage2 else []),
                 timed_models=[both.stage1.path.name] + ([both.stage2.path.name] if both.stage2 else []),
                 chosen_because=run.precision_reason, network_passes=list(network_passes(run, opts.level, opts.tta)),
                 rounds=rounds[p])
        s["time_budget"] = time_budget(run, det if det is not None else _whole(), files, opts.batch, opts.level,
                                       opts.tta)
        res["precisions"][p] = s
    if "fp32" in rounds and "int8" in rounds:
        res["int8_over_fp32"] = {}
        for name, keys in _KEYS.items():
            if "ratio" in name or name == "detector_ms":
                continue
            per = [_ratio(_get(b, keys), _get(a, keys)) for a, b in zip(rounds["fp32"], rounds["int8"])]
            if "latency" in name:  # a speed ratio: fp32 time / int8 time
                per = [1 / x if x else None for x in per]
            med = _median(per)
            if med is not None:
                res["int8_over_fp32"][name.replace("_latency_ms", "_latency").replace("_faces_s", "")] = med
    return res


def _whole():
    from facelm.detectors import WholeImageDetector

    return WholeImageDetector()
