"""Benchmarking helpers shared by ``facelm export`` (fp32 vs fp16/int8 speed), ``facelm bench`` and the scripts
in ``benchmarks/``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["bench_sessions"]


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
