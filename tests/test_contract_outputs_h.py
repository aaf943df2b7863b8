"""predict's outputs at their edges: Parquet's fixed schema (every documented face field a column from the start),
Parquet to a pipe or terminal (exit 2 before any work), names that are not UTF-8 in Parquet (escaped, one
warning), and temporary names of long targets (within the 255 bytes of a file name, still swept)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
ASTRONAUT = REPO / "examples" / "astronaut.jpg"
# the cheapest real run: the shipped CNN-6 on whole images, one pass
FAST = ["--models", str(MODELS), "--no-detect", "--stages", "1", "--tta", "none", "--no-level", "--threads", "1",
        "--workers", "1", "-q"]
runner = CliRunner()
FACE = {"box": [0.0, 0.0, 1.0, 1.0], "score": 1.0, "angle": 0.0, "landmarks": [[1.0, 2.0]], "scheme": "300w68"}
DEAD_PID = 4194999  # above Linux's largest pid_max (4194304): never a live process


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _pq():
    return pytest.importorskip("pyarrow.parquet")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "FACELM_DEVICE": "cpu"}


def _child(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m facelm ARGS`` in a child with pipes for stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "facelm", *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=timeout, check=False)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# 1. every documented face field is a column from the start


def test_parquet_face_fields_are_columns_even_when_the_first_row_group_has_no_faces(tmp_path):
    pq = _pq()
    from facelm.record_table import ParquetRecordWriter

    warned: list[str] = []
    w = ParquetRecordWriter(tmp_path / "x.parquet", rows=2, warn=warned.append)
    for name in ("a", "b"):  # the first row group: no faces at all
        w.write({"image": name, "width": 2, "height": 1, "faces": [], "error": None})
    pose = {"yaw": 1.5, "pitch": -2.0, "roll": 3.0}
    w.write({"image": "v.mp4", "frame": 3, "width": 9, "height": 9, "error": None,
             "faces": [{**FACE, "pose": pose, "quality": 0.75, "track": 2}]})
    w.write({"image": "c", "width": 9, "height": 9, "error": None, "faces": [{**FACE, "points": [0, 4]}]})
    w.close()
    table = pq.read_table(tmp_path / "x.parquet")
    face_type = table.schema.field("faces").type.value_type
    names = {face_type.field(i).name for i in range(face_type.num_fields)}
    assert {"box", "score", "angle", "landmarks", "scheme", "points", "pose", "quality", "track"} <= names
    rows = table.to_pylist()
    (f,), (g,) = rows[2]["faces"], rows[3]["faces"]
    assert (f["pose"], f["quality"], f["track"], f["points"]) == (pose, 0.75, 2, None)
    assert (g["pose"], g["quality"], g["track"], g["points"]) == (None, None, None, [0, 4])
    assert warned == []


def test_predict_parquet_keeps_pose_and_quality_after_1030_faceless_images(tmp_path):
    pq = _pq()
    d = tmp_path / "d"
    d.mkdir()
    for i in range(1030):  # more than a row group (1024) of images without a face
        assert cv2.imwrite(str(d / f"a{i:04d}.png"), np.zeros((1, 2, 3), np.uint8))
    (d / "z.jpg").write_bytes(ASTRONAUT.read_bytes())
    out = tmp_path / "x.parquet"
    r = _invoke("predict", d, "--models", MODELS, "--threads", "1", "-q", "-f", "parquet", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "left out" not in r.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 1031
    faces = [f for row in rows for f in row["faces"]]
    assert faces and all(f["quality"] is not None and set(f["pose"]) == {"yaw", "pitch", "roll"} for f in faces)
    assert all(f["track"] is None for f in faces)  # a still image: no track, but the column is there


# ---------------------------------------------------------------------------------------------------------------
# 2. Parquet cannot be written to a pipe or a terminal: exit 2 before any work; /dev/null is written and discarded


def test_predict_parquet_to_a_pipe_is_one_usage_error_line():
    _pq()
    r = _child("predict", ASTRONAUT, *FAST, "-f", "parquet", "-o", "/dev/stdout")
    assert r.returncode == 2, r.stderr
    line = _error_line(r.stderr)
    assert "--output /dev/stdout" in line and "seek" in line and "pipe" in line
    assert r.stdout == ""


def test_predict_parquet_to_a_fifo_or_a_terminal_is_a_usage_error(tmp_path):
    _pq()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # in a child: a run that did not check would wait forever for a reader of the FIFO
    r = _child("predict", ASTRONAUT, *FAST, "-f", "parquet", "-o", fifo, timeout=120)
    assert r.returncode == 2 and f"--output {fifo}" in _error_line(r.stderr)
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        r = _invoke("predict", ASTRONAUT, *FAST, "-f", "parquet", "-o", tty)
        assert r.exit_code == 2, r.stderr
        assert "a terminal" in _error_line(r.stderr)
    finally:
        os.close(master)
        os.close(slave)


def test_parquet_writer_refuses_a_pipe_and_takes_dev_null(tmp_path):
    _pq()
    from facelm.record_table import ParquetRecordWriter

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="seek"):
        ParquetRecordWriter(fifo)
    r = _invoke("predict", ASTRONAUT, *FAST, "-f", "parquet", "-o", "/dev/null")
    assert r.exit_code == 0, r.stderr
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()


# ---------------------------------------------------------------------------------------------------------------
# 3. names that are not UTF-8: escaped in Parquet, one warning


def _bytes_named(folder: Path, names: list[bytes]) -> None:
    for n in names:
        try:
            fd = os.open(os.fsencode(folder) + b"/" + n, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError:
            pytest.skip("this file system takes only UTF-8 names")
        os.write(fd, ASTRONAUT.read_bytes())
        os.close(fd)


def test_predict_parquet_escapes_names_that_are_not_utf8(tmp_path):
    pq = _pq()
    d = tmp_path / "d"
    d.mkdir()
    _bytes_named(d, [b"i\xff\xfe.jpg", b"j\xff.jpg", b"ok.jpg"])
    out = tmp_path / "x.parquet"
    r = _invoke("predict", d, *FAST, "-f", "parquet", "-o", out)
    assert r.exit_code == 0, r.stderr
    names = sorted(Path(x).name for x in pq.read_table(out).column("image").to_pylist())
    assert names == ["i\\xff\\xfe.jpg", "j\\xff.jpg", "ok.jpg"]
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "UTF-8" in warnings[0], r.stderr


def test_records_table_escapes_surrogates():
    _pq()
    from facelm.record_table import records_table, utf8_text

    bad = os.fsdecode(b"a\xff.jpg")
    rows = records_table([{"image": bad, "width": None, "height": None, "faces": [],
                           "error": f"cannot read {bad}"}]).to_pylist()
    assert rows[0]["image"] == "a\\xff.jpg" and rows[0]["error"] == "cannot read a\\xff.jpg"
    assert utf8_text("é.jpg") == "é.jpg" and utf8_text("\ud800") == "\\ud800"


# ---------------------------------------------------------------------------------------------------------------
# 4. temporary names of long targets fit in 255 bytes and are still swept


LONG = "x" * 239 + ".jsonl"  # 245 bytes: a valid name, too long for ".NAME.PID.<random>.tmp"


def _longest(folder: Path) -> int:
    return max(len(os.fsencode(p)) for p in os.listdir(folder))


@pytest.mark.parametrize("name", [LONG, "é" * 121 + ".png", "a" * 255])
def test_atomic_writers_take_a_long_target_name(tmp_path, name):
    from facelm._io import atomic_path, atomic_write, stream_path

    target = tmp_path / name
    with atomic_write(target) as f:
        f.write("1")
        assert _longest(tmp_path) <= 255
    assert target.read_text() == "1"
    with atomic_path(target) as p:
        assert p.name.endswith(".tmp" + target.suffix) and p.parent == tmp_path  # savefig sees the format
        p.write_text("2")
    assert target.read_text() == "2"
    tmp = stream_path(target)
    tmp.write_text("3")
    os.replace(tmp, target)
    assert target.read_text() == "3" and os.listdir(tmp_path) == [name]


def test_sweep_recognises_shortened_temps_and_only_its_own(tmp_path):
    from facelm._io import sweep_stale_temps, temp_name, temp_stem

    mine = tmp_path / LONG
    other = tmp_path / (LONG[:-6] + "y.jsonl")  # the same first 238 bytes: another target all the same
    assert temp_stem(mine.name) != temp_stem(other.name)
    here = f".{os.getpid()}."
    stale = [temp_name(mine, "tmp").replace(here, f".{DEAD_PID}."),
             temp_name(mine).replace(here, f".{DEAD_PID}.") + "abcd1234.tmp.jsonl"]
    kept = [temp_name(other, "tmp").replace(here, f".{DEAD_PID}."),
            temp_name(mine, "tmp"),  # this process's own
            f".a.{DEAD_PID}.{os.getpid()}.tmp"]  # a live writer's temp of the target "a.<DEAD_PID>"
    for n in stale + kept:
        assert len(os.fsencode(n)) <= 255
        (tmp_path / n).write_text("")
    assert sorted(p.name for p in sweep_stale_temps(mine)) == sorted(stale)
    assert sweep_stale_temps(tmp_path / "a") == []
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_predict_writes_a_long_output_name_and_draws_a_long_named_image(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    img = d / ("p" * 241 + ".jpg")
    img.write_bytes(ASTRONAUT.read_bytes())
    out = tmp_path / LONG
    r = _invoke("predict", img, *FAST, "-o", out, "--draw", tmp_path / "drawn")
    assert r.exit_code == 0, r.stderr
    assert out.read_text().count("\n") == 1
    assert len(list((tmp_path / "drawn").rglob("*.jpg"))) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
