"""Benchmarks of the prediction pipeline (``facelm bench``): the two-stage pipeline over real image files, and
one provider set's full measurement (models, bare two-stage, pipeline, detector, predict). The timing helpers are
``facelm.benchmark``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facelm.benchmark import bare_two_stage, detect_cycle, model_bench, pair_threads, timeit

__all__ = ["pipeline_run", "provider_run"]


def pipeline_run(pair, detector, files: list[Path], batch: int, seconds: float, faces_per_s: float,
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


def provider_run(label, providers, mdir, files, first, batch, seconds, rng, synthetic, detector, detector_model,
                  workers, note, warn) -> tuple[dict, dict]:
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
    r["cnn6"] = model_bench(pair.stage1, batch, seconds, rng)
    r["cnn7"] = model_bench(pair.stage2, batch, seconds, rng) if pair.stage2 else None
    r["bare_faces_s"] = bare_two_stage(pair, batch, seconds, rng)
    # predict's own thread plan (streams x threads) for the pipeline runs; bare runs use all cores
    streams, threads = plan_threads(providers)
    ppair = pair if threads == pair_threads(pair) else load_models(mdir, None, providers, threads)
    r["pipeline_plan"] = {"streams": streams, "threads_per_session": threads}
    note(f"[{label}] bare two-stage {r['bare_faces_s']} faces/s")
    # the machine's load may change during the run: each ratio uses bare runs right before and after
    p = pipeline_run(ppair, WholeImageDetector(), files, batch, seconds, r["bare_faces_s"], workers, streams)
    p["bare_after_faces_s"] = bare_two_stage(pair, batch, seconds / 2, rng)
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
        lat = timeit(detect_cycle(det, imgs), seconds / 2)
        r["detector"] = {"name": det.describe(), "latency_ms": round(1000 * float(np.median(lat)), 2),
                         "images_s": round(len(lat) / sum(lat), 1)}
        before = bare_two_stage(pair, batch, seconds / 2, rng)
        q = pipeline_run(ppair, det, files, batch, seconds, r["bare_faces_s"], workers, streams)
        q["bare_around_faces_s"] = [before, bare_two_stage(pair, batch, seconds / 2, rng)]
        q["ratio_to_bare"] = round(q["faces_s"] / (sum(q["bare_around_faces_s"]) / 2), 3)
        r["predict"] = q
    else:
        r["detector"] = r["predict"] = None
    return r, meta_models
