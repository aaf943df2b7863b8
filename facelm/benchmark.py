"""Benchmarking helpers shared by ``facelm export`` (fp32 vs fp16/int8 speed), ``facelm bench`` and the scripts
in ``benchmarks/``: interleaved session timing, model latency/throughput, the bare two-stage speed, usable images.
The pipeline benchmarks (which need the runtime) are ``facelm.runtime.benchmark``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["bare_two_stage", "bench_sessions", "detect_cycle", "model_bench", "pair_threads", "timeit",
           "usable_images"]


def bench_sessions(sessions: dict, size: int, *, batch: int = 32, seconds: float = 1.0, seed: int = 0
                   ) -> dict[str, dict]:
    """Throughput of several sessions on the same random batch, measured interleaved (fair under load).

    Returns ``{name: {"batch", "crops_per_s", "ms_per_batch", "runs"}}``; the median batch time is used.
    A fixed-batch model is timed at its own batch size.
    """
    rng = np.random.default_rng(seed)
    feeds, times = {}, {}
    for name, s in sessions.items():
        inp = s.get_inputs()[0]
        b = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else batch
        feeds[name] = (inp.name, s.get_outputs()[0].name,
                       rng.integers(0, 256, (b, 3, size, size)).astype(np.float32))
        times[name] = []
        for _ in range(2):  # warm-up (allocations, first-run kernel selection)
            s.run([feeds[name][1]], {feeds[name][0]: feeds[name][2]})
    t_end = time.perf_counter() + max(0.0, seconds) * len(sessions)
    rounds = 0
    while rounds < 3 or time.perf_counter() < t_end:
        for name, s in sessions.items():
            i, o, x = feeds[name]
            t0 = time.perf_counter()
            s.run([o], {i: x})
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    res = {}
    for name, t in times.items():
        med = float(np.median(t))
        b = len(feeds[name][2])
        res[name] = {"batch": b, "crops_per_s": round(b / med, 1), "ms_per_batch": round(1e3 * med, 3),
                     "runs": len(t)}
    return res


def timeit(fn, seconds: float, min_iters: int = 3) -> list[float]:
    """Wall times of repeated ``fn()`` calls: at least ``min_iters``, until ``seconds`` have passed."""
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def model_bench(session, batch: int, seconds: float, rng: np.random.Generator) -> dict:
    s = session.size
    one = rng.integers(0, 256, (1, s, s, 3), dtype=np.uint8)
    many = rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    session.run(one)
    session.run(many)  # warm-up
    lat = timeit(lambda: session.run(one), seconds / 2)
    thr = timeit(lambda: session.run(many), seconds / 2)
    return {"latency_ms": round(1000 * float(np.median(lat)), 3),
            "throughput_faces_s": round(batch * len(thr) / sum(thr), 1)}


def detect_cycle(det, imgs):
    """A callable detecting the next image of ``imgs`` at each call."""
    state = {"i": 0}

    def one():
        det.detect(imgs[state["i"] % len(imgs)])
        state["i"] += 1

    return one


def bare_two_stage(pair, batch: int, seconds: float, rng: np.random.Generator) -> float:
    c1 = rng.integers(0, 256, (batch, pair.stage1.size, pair.stage1.size, 3), dtype=np.uint8)
    c2 = None if pair.stage2 is None else rng.integers(0, 256, (batch, pair.stage2.size, pair.stage2.size, 3),
                                                        dtype=np.uint8)

    def step():
        pair.stage1.run(c1)
        if c2 is not None:
            pair.stage2.run(c2)

    step()
    t = timeit(step, seconds)
    return round(batch * len(t) / sum(t), 1)


def usable_images(items, limit: int) -> tuple[list, list[tuple[str, str]], list]:
    """Up to ``limit`` readable still image paths from source items, the skipped ones as ``(name, reason)`` and
    the first 32 images decoded: zero-byte, text, truncated files, dangling links, FIFOs (what predict reports as
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
