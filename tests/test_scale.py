"""``facelm predict`` at scale: ``--shard K/N`` (disjoint, covering, stable), ``--resume`` (every image exactly
once after a kill), ``--format parquet`` (the same records as JSONL) and ``--to-scheme`` (scheme maps on the way
out)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.errors import DataError, UsageError
from facelm.shard import parse_shard, read_done, shard_of
from facelm.sources import iter_sources

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
# the cheapest real run: the shipped CNN-6 on whole small images, one pass
FAST = ["--models", str(MODELS), "--no-detect", "--stages", "1", "--tta", "none", "--no-level", "--threads", "1",
        "--workers", "1", "-q"]
runner = CliRunner()


def _images(folder: Path, n: int, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        assert cv2.imwrite(str(p), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        out.append(str(p))
    return out


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def _predict(args: list[str], stdin: str | None = None):
    return runner.invoke(app, ["predict", *args], input=stdin)


# ---------------------------------------------------------------------------------------------------------------
# shards


@pytest.mark.parametrize("text", ["3/2", "2/2", "0/0", "-1/2", "a/b", "1", "1/2/3", ""])
def test_bad_shards_are_usage_errors(text):
    with pytest.raises(UsageError, match="`shard`"):
        parse_shard(text)


def test_shard_hash_is_stable_across_processes_and_versions():
    # blake2b of the UTF-8 name: fixed values, so a switch to Python's salted hash() or another hash fails here
    names = ("photos/a.jpg", "b.png", "ü/ß.jpg")
    assert [shard_of(n, 1000) for n in names] == [177, 385, 43]
    code = f"from facelm.shard import shard_of; print([shard_of(n, 1000) for n in {names!r}])"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in (1, 2)}
    assert runs == {"[177, 385, 43]"}


def test_shards_are_disjoint_cover_everything_and_survive_added_files(tmp_path, monkeypatch):
    # relative names: a shard is a hash of the name as given, and a name holding the (changing) temporary folder
    # made the balance check below fail about once in 200 runs
    monkeypatch.chdir(tmp_path)
    files = _images(Path("d"), 40)
    for n in (1, 2, 3, 7):
        parts = [[i.name for i in iter_sources(["d"], select=parse_shard(f"{k}/{n}").keep)]
                 for k in range(n)]
        flat = [x for p in parts for x in p]
        assert sorted(flat) == sorted(files) and len(flat) == len(set(flat))
        if n == 3:
            assert all(5 <= len(p) <= 25 for p in parts)  # balanced statistically
            before = parts
    _images(Path("d2"), 10, seed=1)
    for k in range(3):  # more input: the old files keep their shard
        after = [i.name for i in iter_sources(["d", "d2"], select=parse_shard(f"{k}/3").keep)]
        assert [x for x in after if x.startswith("d/")] == before[k]


def test_a_video_of_another_shard_is_not_decoded(tmp_path, monkeypatch):
    import facelm.sources as sources

    vid = tmp_path / "clip.avi"
    vid.write_bytes(b"not decoded")
    monkeypatch.setattr(sources, "_video_frames", lambda *a: (_ for _ in ()).throw(AssertionError("decoded")))
    assert list(iter_sources([str(vid)], select=lambda name: False)) == []
    # a missing source is reported by one shard only
    assert len([i for k in range(3) for i in iter_sources([str(tmp_path / "gone.jpg")],
                                                          select=parse_shard(f"{k}/3").keep)]) == 1


def test_cli_shards_split_the_run_and_an_empty_shard_is_ok(tmp_path):
    files = _images(tmp_path / "d", 12)
    seen = []
    for k in range(3):
        r = _predict([str(tmp_path / "d"), *FAST, "--shard", f"{k}/3"])
        assert r.exit_code == 0, r.output
        seen += [rec["image"] for rec in _lines(r.stdout)]
    assert sorted(seen) == sorted(files)
    # one image, 64 shards: most shards get nothing, which is not "no images found" (exit 3)
    one = files[:1]
    codes = {_predict([*one, *FAST, "--shard", f"{k}/64"]).exit_code for k in range(8)}
    assert codes == {0}
    r = _predict([str(tmp_path / "d"), *FAST, "--shard", "3/3"])
    assert r.exit_code == 2 and "--shard 3/3" in r.output


# ---------------------------------------------------------------------------------------------------------------
# resume


def test_read_done_drops_a_cut_last_line_and_rejects_garbage(tmp_path):
    p = tmp_path / "out.jsonl"
    assert read_done(p) == set()  # no file yet: nothing done
    p.write_text('{"image": "a.png", "faces": []}\n{"image": "v.mp4", "frame": 5}\n{"image": "b.p')
    assert read_done(p) == {("a.png", None), ("v.mp4", 5)}
    assert p.read_text().endswith('"frame": 5}\n')  # the cut line is gone, appending starts on a fresh line
    p.write_text('{"image": "a.png"}\nnot json\n{"image": "c.png"}\n')
    with pytest.raises(DataError, match="line 2"):
        read_done(p)


@pytest.mark.parametrize("tail", ["my important notes, not jsonl", "{", '{"im', '{"image": "b.p'])
def test_read_done_cuts_only_the_start_of_a_record_never_another_files_text(tmp_path, tail):
    """A last line without its newline is cut only when it can be a record a killed run was writing; a file that is
    not predict's output (notes without a final newline) is refused, not cut."""
    p = tmp_path / "out.jsonl"
    for head in ("", '{"image": "a.png", "faces": []}\n'):
        p.write_text(head + tail)
        if '{"image": '.startswith(tail) or tail.startswith('{"image": '):
            assert read_done(p) == ({("a.png", None)} if head else set())
            assert p.read_text() == head
        else:
            with pytest.raises(DataError, match=f"line {2 if head else 1} is not a `facelm predict` JSONL"):
                read_done(p)
            assert p.read_text() == head + tail  # untouched


def test_resume_options(tmp_path):
    img = _images(tmp_path, 1)
    r = _predict([*img, *FAST, "--resume"])
    assert r.exit_code == 2 and "--resume needs -o" in r.output
    r = _predict([*img, *FAST, "--resume", "-o", str(tmp_path / "o.csv"), "-f", "csv"])
    assert r.exit_code == 2 and "jsonl" in r.output


def _moving_face_clip(path: Path, n: int = 14) -> Path:
    """A face drifting right and down by ~2 px a frame (crops of examples/astronaut.jpg), ``n`` frames, 10 fps."""
    from conftest import write_video

    img = cv2.cvtColor(cv2.imread(str(REPO / "examples" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    frames = [cv2.resize(img[20 + 3 * i:320 + 3 * i, 90 - 3 * i:390 - 3 * i], (160, 160)) for i in range(n)]
    return write_video(path, frames)


def test_a_resumed_smoothed_video_goes_on_with_its_tracks_and_filters(tmp_path):
    """`--resume --smooth` on a video cut after 6 of 14 frames: the frames after the cut read as in an uninterrupted
    run (the tracks and the filters go on from the file's last records), not restarted from the raw reading."""
    clip = _moving_face_clip(tmp_path / "clip.avi")
    base = [str(clip), "--models", str(MODELS), "--stages", "1", "--tta", "none", "--threads", "1", "--workers",
            "1", "-q", "--smooth"]
    full = tmp_path / "full.jsonl"
    assert _predict([*base, "-o", str(full)]).exit_code == 0
    whole = _lines(full.read_text())
    assert len(whole) == 14 and all(len(r["faces"]) == 1 for r in whole)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in whole[:6]))
    r = _predict([*base, "--resume", "-o", str(part)])
    assert r.exit_code == 0, r.output
    resumed = _lines(part.read_text())
    assert [x["frame"] for x in resumed] == list(range(14))
    gap = [np.abs(np.array(a["faces"][0]["landmarks"]) - np.array(b["faces"][0]["landmarks"])).max()
           for a, b in zip(whole[6:], resumed[6:])]
    assert max(gap) < 0.25, gap  # restarting the filter at frame 6 moved points by about a pixel there
    assert [a["faces"][0]["track"] for a in resumed] == [b["faces"][0]["track"] for b in whole]


def test_a_resumed_video_keeps_its_track_ids_past_ones_that_ended(tmp_path):
    """The file's largest track id of the video is where new ids go on: an id never names two faces."""
    from facelm.runtime.results import FaceResult, ImageResult
    from facelm.runtime.tracking import FaceTracker
    from facelm.schemes import get_scheme

    p = tmp_path / "o.jsonl"
    face = {"box": [0, 0, 10, 10], "track": 1, "landmarks": None}
    p.write_text(json.dumps({"image": "v.mp4", "frame": 0, "faces": [{**face, "track": 4}]}) + "\n"
                 + json.dumps({"image": "v.mp4", "frame": 1, "faces": [face]}) + "\n"
                 + json.dumps({"image": "v.mp4", "frame": 2, "faces": [face]}) + "\n")
    tails: dict = {}
    read_done(p, tails=tails)
    assert tails["v.mp4"]["max_track"] == 4 and [r["frame"] for r in tails["v.mp4"]["records"]] == [1, 2]
    tr = FaceTracker(get_scheme("300w68"))
    tr.seed(tails)
    same, new = (FaceResult(box=np.array(b, float), score=1.0, angle=0.0, landmarks=np.zeros((68, 2)),
                            stage1=np.zeros((68, 2)), square=np.array([0, 0, 10.0]))
                 for b in ([0, 0, 10, 10], [50, 50, 60, 60]))
    tr.update(ImageResult("v.mp4", 3, 100, 100, [same, new], fps=10.0))
    assert (same.track, new.track) == (1, 5)


def test_resume_refuses_to_append_faces_of_another_scheme(tmp_path):
    """A run resumed with another --to-scheme than the file's would mix 68- and 5-point faces in one file."""
    img = _images(tmp_path / "d", 2)
    out = tmp_path / "o.jsonl"
    r = _predict([img[0], *FAST, "--resume", "-o", str(out)])
    assert r.exit_code == 0, r.output
    before = out.read_text()
    assert _lines(before)[0]["faces"][0]["scheme"] == "300w68"
    r = _predict([*img, *FAST, "--resume", "-o", str(out), "--to-scheme", "5pt"])
    assert r.exit_code == 2, r.output
    assert "--resume" in r.output and "300w68" in r.output and "5pt" in r.output
    assert out.read_text() == before  # nothing appended
    r = _predict([*img, *FAST, "--resume", "-o", str(out)])  # the same scheme goes on
    assert r.exit_code == 0, r.output
    assert len(_lines(out.read_text())) == 2


def _start(out: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "facelm", "predict", "-", *FAST, "--batch", "1", "--resume",
                             "-o", str(out)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _wait_lines(path: Path, n: int, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} records after {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_resume_after_a_kill_gives_every_image_exactly_once(tmp_path, sig):
    files = _images(tmp_path / "d", 24)
    ref = {rec["image"]: rec for rec in _lines(_predict([str(tmp_path / "d"), *FAST]).stdout)}
    out = tmp_path / "out.jsonl"
    # the first run gets the first 10 paths on stdin and is killed while it waits for more: mid-run for certain
    proc = _start(out, tmp_path)
    proc.stdin.write("".join(f + "\n" for f in files[:10]))
    proc.stdin.flush()
    _wait_lines(out, 10)
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130), proc.stderr.read()
    assert len(_lines(out.read_text())) == 10
    with open(out, "a") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"image": "' + files[10] + '", "wid')
    # the restart gets the whole list again (as a requeued array task would)
    r = subprocess.run([sys.executable, "-m", "facelm", "predict", "-", *FAST, "--resume", "-o", str(out)],
                       input="".join(f + "\n" for f in files), capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    recs = _lines(out.read_text())
    assert sorted(rec["image"] for rec in recs) == sorted(files)  # every image, none twice
    for rec in recs:
        assert rec["faces"] == ref[rec["image"]]["faces"]
    # a third run has nothing left to do and says so
    r = subprocess.run([sys.executable, "-m", "facelm", "predict", str(tmp_path / "d"), *FAST[:-1], "--resume",
                        "-o", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "24 images already done" in r.stderr, r.stderr
    assert len(_lines(out.read_text())) == 24


# ---------------------------------------------------------------------------------------------------------------
# parquet


def _pyarrow():
    if os.environ.get("CI"):  # CI installs the extras: there, this must run
        import pyarrow.parquet as pq
        return pq
    return pytest.importorskip("pyarrow.parquet")


def test_parquet_holds_the_jsonl_records(tmp_path):
    pq = _pyarrow()
    files = _images(tmp_path / "d", 5)
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    jsonl = _lines(_predict([str(tmp_path / "d"), *FAST]).stdout)
    out = tmp_path / "faces.parquet"
    r = _predict([str(tmp_path / "d"), *FAST, "-f", "parquet", "-o", str(out)])
    assert r.exit_code == 1  # the broken file: an error row, as in JSONL
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(files) + 1
    for row, rec in zip(rows, jsonl):
        assert row["frame"] is None and row["image"] == rec["image"] and row["error"] == rec["error"]
        assert (row["width"], row["height"]) == (rec["width"], rec["height"])
        assert [{k: v for k, v in f.items() if v is not None} for f in row["faces"]] == rec["faces"]
    r = _predict([*files, *FAST, "-f", "parquet"])
    assert r.exit_code == 2 and "-o FILE" in r.output


def test_parquet_keeps_new_face_fields_and_warns_about_late_ones(tmp_path):
    pq = _pyarrow()
    from facelm.record_table import ParquetRecordWriter

    warned = []
    w = ParquetRecordWriter(tmp_path / "x.parquet", rows=2, warn=warned.append)
    face = {"box": [0, 0, 1, 1], "score": 1.0, "angle": 0.0, "landmarks": [[1, 2]], "scheme": "5pt"}
    w.write({"image": "a", "width": 1, "height": 1, "faces": [{**face, "quality": 0.5, "track": None}],
             "error": None})
    w.write({"image": "b", "width": None, "height": None, "faces": [], "error": "bad"})
    w.write({"image": "c", "width": 1, "height": 1, "faces": [{**face, "quality": 0.7, "late": 1}], "error": None})
    w.close()
    rows = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert [f["quality"] for r in rows for f in r["faces"]] == [0.5, 0.7]
    assert "late" not in rows[2]["faces"][0] and len(warned) == 1 and "faces.late" in warned[0]


# ---------------------------------------------------------------------------------------------------------------
# scheme conversion


def test_to_scheme_5pt_is_the_scheme_map_of_the_68_points(tmp_path):
    from facelm.scheme_maps import get_map

    files = _images(tmp_path / "d", 3)
    full = _lines(_predict([*files, *FAST]).stdout)
    five = _lines(_predict([*files, *FAST, "--to-scheme", "5pt"]).stdout)
    m = get_map("300w68", "5pt")
    for a, b in zip(full, five):
        (fa,), (fb,) = a["faces"], b["faces"]
        assert fb["scheme"] == "5pt" and "points" not in fb and fb["box"] == fa["box"]
        want = m.apply(np.array(fa["landmarks"]))
        np.testing.assert_allclose(fb["landmarks"], want, atol=0.011)  # (both rounded to 0.01 px)
        # the image-left eye centre: the mean of 36..41 plus the map's offset in the face's eye frame
        lm = np.array(fa["landmarks"])
        u = lm[42:48].mean(0) - lm[36:42].mean(0)
        (ox, oy) = m.offsets[0]
        np.testing.assert_allclose(fb["landmarks"][0], lm[36:42].mean(0) + ox * u + oy * np.array([-u[1], u[0]]),
                                   atol=0.011)


def test_to_scheme_partial_map_writes_only_mapped_points_and_names_them(tmp_path):
    from facelm.scheme_maps import get_map

    files = _images(tmp_path / "d", 2)
    (rec,) = _lines(_predict([files[0], *FAST, "--to-scheme", "cofw29"]).stdout)
    (face,) = rec["faces"]
    want = [int(i) for i in np.flatnonzero(get_map("300w68", "cofw29").mapped)]
    assert face["scheme"] == "cofw29" and face["points"] == want and len(face["landmarks"]) == len(want) == 18
    r = _predict([*files, *FAST, "--to-scheme", "cofw29", "-f", "csv"])
    header = r.stdout.splitlines()[0].split(",")
    assert [h for h in header if h.startswith("x")] == [f"x{i}" for i in want]


def test_to_scheme_without_a_map_is_a_usage_error(tmp_path, no_aflw19_map):
    # (no_aflw19_map also restores the registry after the map file below registers a map)
    img = _images(tmp_path, 1)
    r = _predict([*img, *FAST, "--to-scheme", "aflw19"])
    assert r.exit_code == 2 and "--to-scheme 'aflw19': no scheme map from the model's scheme '300w68'" in r.output
    r = _predict([*img, *FAST, "--to-scheme", "nope"])
    assert r.exit_code == 2 and "no such scheme" in r.output
    # a user map file makes it work
    mapfile = tmp_path / "m.json"
    mapfile.write_text(json.dumps({"from": "300w68", "to": "aflw19", "points": [[17]] * 19}))
    r = _predict([*img, *FAST, "--to-scheme", "aflw19", "--scheme-map", str(mapfile)])
    assert r.exit_code == 0 and len(_lines(r.stdout)[0]["faces"][0]["landmarks"]) == 19


def test_predict_help_lists_the_scale_options():
    r = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert r.exit_code == 0
    for flag in ("--to-scheme", "--scheme-map", "--shard", "--resume", "parquet", "docs/scale.md"):
        assert flag in r.output, flag


def test_a_resumed_smoothed_video_in_another_scheme_says_its_filters_restart(tmp_path):
    """With --to-scheme the file holds converted points: the filters cannot go on from them (about 2 px off at the
    cut on the clip), which a warning says; the track ids still go on."""
    clip = _moving_face_clip(tmp_path / "clip.avi", n=8)
    base = [str(clip), "--models", str(MODELS), "--stages", "1", "--tta", "none", "--threads", "1", "--workers",
            "1", "-q", "--smooth", "--to-scheme", "5pt"]
    part = tmp_path / "part.jsonl"
    assert _predict([*base, "-o", str(part)]).exit_code == 0
    part.write_text("".join(ln + "\n" for ln in part.read_text().splitlines()[:4]))
    r = _predict([*base, "--resume", "-o", str(part)])
    assert r.exit_code == 0 and sum("--to-scheme" in ln and "filters" in ln for ln in r.stderr.splitlines()) == 1
    assert [x["faces"][0]["track"] for x in _lines(part.read_text())] == [0] * 8
