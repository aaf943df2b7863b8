"""``facelm.integrations.ray``: on a local Ray instance over real faces, ``read_binary_files -> map_batches
-> write_parquet`` gives the landmarks ``facelm predict`` gives on the same files, and a bad image is an error row,
not a failed job. Without Ray, the callable on a batch dict gives the API's records."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.integrations.ray import FacelmLandmarker

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [str(REPO / "examples" / "astronaut.jpg"), str(REPO / "examples" / "camera.jpg")]


def _cli(paths: list[str], *extra: str) -> list[dict]:
    r = CliRunner().invoke(app, ["predict", *paths, "--device", "cpu", "--threads", "1", "-q", *extra])
    assert r.exit_code in (0, 1), r.output
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def _need(module: str):
    if os.environ.get("CI"):  # CI installs the extras (.ci/run): there the test must run, not skip
        return importlib.import_module(module)  # the submodule itself (__import__ gives the top package)
    return pytest.importorskip(module)


def test_the_callable_on_a_batch_gives_predict_records_and_error_rows():
    _need("pyarrow")
    f = FacelmLandmarker()
    batch = {"bytes": np.array([Path(p).read_bytes() for p in PHOTOS] + [b"\xff\xd8\xff garbage"], dtype=object),
             "path": np.array(PHOTOS + ["bad.jpg"])}
    rows = f(batch).to_pylist()
    want = _cli(PHOTOS)
    assert [r["image"] for r in rows] == PHOTOS + ["bad.jpg"]
    for row, rec in zip(rows, want):
        assert [{k: v for k, v in face.items() if v is not None} for face in row["faces"]] == rec["faces"]
    assert rows[2]["faces"] == [] and "truncated JPEG" in rows[2]["error"]
    # decoded images (read_images), named by row when there is no path column
    import cv2

    rgb = cv2.cvtColor(cv2.imread(PHOTOS[0]), cv2.COLOR_BGR2RGB)
    (row,) = f({"image": rgb[None]}).to_pylist()
    assert row["image"].startswith("<row ") and row["faces"][0]["landmarks"] == want[0]["faces"][0]["landmarks"]
    with pytest.raises(KeyError, match="neither a 'bytes' nor an 'image' column"):
        f({"text": np.array(["x"])})


@pytest.mark.shared_data
def test_ray_data_job_equals_facelm_predict(shared_data, tmp_path):
    ray = _need("ray")
    pq = _need("pyarrow.parquet")
    folder = shared_data("w300-train", "afw")
    photos = sorted(str(p) for p in folder.glob("*.jpg"))[:4]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(Path(photos[0]).read_bytes()[:2000])  # a cut JPEG
    want = {r["image"]: r for r in _cli([*photos, str(bad)], "--to-scheme", "5pt")}

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to send (CI is offline)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ds = ray.data.read_binary_files([*photos, str(bad)], include_paths=True)
        # one 1-CPU actor: the other CPU is left to the read tasks (actors holding every CPU starve them)
        ds = ds.map_batches(FacelmLandmarker, fn_constructor_kwargs={"to_scheme": "5pt"}, batch_size=2,
                            concurrency=1, num_cpus=1)
        ds.write_parquet(str(tmp_path / "out"))
    finally:
        ray.shutdown()
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(r["image"] for r in rows) == sorted(want)  # every image once, the bad one included
    for row in rows:
        rec = want[row["image"]]
        assert row["error"] == rec["error"] and len(row["faces"]) == len(rec["faces"])
        for got, exp in zip(row["faces"], rec["faces"]):
            assert got["scheme"] == "5pt" and got["box"] == exp["box"]
            np.testing.assert_allclose(got["landmarks"], exp["landmarks"], atol=0.011)
    assert sum(len(r["faces"]) for r in rows) >= 4 and want[str(bad)]["error"]
