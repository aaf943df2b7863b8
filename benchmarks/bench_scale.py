"""Throughput of predict at scale: the Ray Data integration per actor (= per core) against plain
``facelm predict``, on the same images, in the same run (docs/scale.md).

Configurations, run in turn ``--repeats`` times (interleaved, so background load hits all alike), each over the
same ``--limit`` images:

* ``predict``: ``facelm predict LIST -o FILE`` with its defaults (all cores: 2 streams, readers = cores);
* ``predict-1core``: the same with ``--threads 1 --streams 1 --workers 1`` (one core's worth of work);
* ``ray-1actor``: ``read_binary_files -> map_batches(FacelmLandmarker, concurrency=1, num_cpus=1) ->
  write_parquet`` on a local Ray instance (one CPU left to the reads);
* ``ray-2actors``: the same with two actors (``ray.init(num_cpus=3)``: two actors and one CPU for the reads).

Two measures each: **images/s** (wall clock: ``facelm predict``'s own summary line, i.e. the run loop after the
models are loaded; for Ray the whole ``map_batches`` job, actor start and model loading included) and **images per
CPU second** (the throughput one core gives, which a machine shared with other jobs does not distort: for predict
the process's CPU time less that of a one-image run, i.e. less start-up and model loading; for Ray the actor
processes' CPU time inside the batches). Prints one JSON document; ratios are against ``predict`` in the same run.

    python benchmarks/bench_scale.py ../shared/data/w300-train/afw --limit 120 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facelm.cpu_features import cpu_name


def _predict(listfile: Path, out: Path, extra: list[str]) -> dict:
    """``facelm predict`` on a list: images/s from its summary line, and the CPU seconds of the process."""
    proc = subprocess.Popen([sys.executable, "-m", "facelm", "predict", str(listfile), "-o", str(out), "--device",
                             "cpu", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"(\d+) images, .*\(([\d.]+) images/s", err)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"facelm predict failed: {err[-500:]}")
    return {"images": int(m[1]), "images_s": float(m[2]), "cpu_s": usage.ru_utime + usage.ru_stime}


def _per_cpu_s(full: dict, one: dict) -> float:
    """Images per CPU second of a predict run, less the fixed cost (start, model loading) of a one-image run."""
    return (full["images"] - one["images"]) / max(full["cpu_s"] - one["cpu_s"], 1e-9)


class _Timed:
    """FacelmLandmarker plus each batch's time inside the actor (a ``busy_s`` column)."""

    def __init__(self, **kw):
        from facelm.integrations.ray import FacelmLandmarker

        self.inner = FacelmLandmarker(**kw)

    def __call__(self, batch):
        import pyarrow as pa

        t0, c0 = time.perf_counter(), time.process_time()  # the actor process's CPU time, all its threads
        table = self.inner(batch)
        n = table.num_rows
        table = table.append_column("busy_s", pa.array([(time.perf_counter() - t0) / n] * n))
        return table.append_column("cpu_s", pa.array([(time.process_time() - c0) / n] * n))


def _ray(paths: list[str], actors: int, out: Path, batch: int) -> dict:
    import pyarrow.parquet as pq
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=actors + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        t0 = time.perf_counter()
        ds = ray.data.read_binary_files(paths, include_paths=True)
        ds.map_batches(_Timed, batch_size=batch, concurrency=actors, num_cpus=1).write_parquet(str(out))
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    table = pq.read_table(out)
    busy, cpu = sum(table.column("busy_s").to_pylist()), sum(table.column("cpu_s").to_pylist())
    # each actor's images / its busy time, averaged over the actors = all images / all busy time
    return {"job_images_s": len(paths) / wall, "per_actor_images_s": len(paths) / busy if busy > 0 else 0.0,
            "images_per_cpu_s": len(paths) / cpu if cpu > 0 else 0.0, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="Ray batch size (rows per map_batches call)")
    args = ap.parse_args()
    paths = sorted(str(p) for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:args.limit]
    if not paths:
        sys.exit(f"no .jpg/.png files in {args.folder}")
    res: dict[str, list] = {k: [] for k in ("predict", "predict-1core", "ray-1actor", "ray-2actors")}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        listfile, onefile = t / "images.txt", t / "one.txt"
        listfile.write_text("\n".join(paths) + "\n")
        onefile.write_text(paths[0] + "\n")
        one_core = ["--threads", "1", "--streams", "1", "--workers", "1"]
        for rep in range(args.repeats):
            for key, extra in (("predict", []), ("predict-1core", one_core)):
                full, one = _predict(listfile, t / "a.jsonl", extra), _predict(onefile, t / "b.jsonl", extra)
                res[key].append({"images_s": full["images_s"], "images_per_cpu_s": _per_cpu_s(full, one)})
            res["ray-1actor"].append(_ray(paths, 1, t / f"r1_{rep}", args.batch))
            res["ray-2actors"].append(_ray(paths, 2, t / f"r2_{rep}", args.batch))
            print(f"repeat {rep + 1}/{args.repeats}: {json.dumps(res)}", file=sys.stderr)
    med = lambda k, f: statistics.median(r[f] for r in res[k])  # noqa: E731
    base_wall, base_cpu = med("predict", "images_s"), med("predict", "images_per_cpu_s")
    summary = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
               "images": len(paths), "folder": str(args.folder), "repeats": args.repeats}
    for k in res:
        wall = med(k, "job_images_s" if k.startswith("ray") else "images_s")
        cpu = med(k, "images_per_cpu_s")
        summary[k] = {"images_s": wall, "images_per_cpu_s": cpu, "images_s_vs_predict": wall / base_wall,
                      "images_per_cpu_s_vs_predict": cpu / base_cpu}
    summary["runs"] = res
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
