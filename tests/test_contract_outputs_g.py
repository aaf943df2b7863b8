"""``facelm predict``'s outputs read back as they were written (probe F):

* a CSV boxes file's names match exactly as written (``" lead.jpg"`` is not ``"lead.jpg"``); stray spaces of
  hand-made files are trimmed only as an unambiguous fallback;
* a quoted CSV name keeps its line breaks (``\\n``, ``\\r``, U+2028, U+0085, form feed), and so do JSONL names;
* predict's CSV quotes a field holding a lone ``\\r``, byte-identical otherwise;
* a file name that is not UTF-8 goes into the CSV (``-o FILE`` and stdout) as its bytes, and reads back as boxes;
* ``--min-quality`` compares the quality as the record prints it;
* a given box's score is the file's (docs/predict.md says so).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.detectors.boxes import BoxesFileDetector, BoxLookupError
from facelm.errors import DataError

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "predict.md").read_text()
IMG = np.zeros((8, 8, 3), np.uint8)
BAD_NAME = os.fsdecode(b"i\xff\xfe.png")  # "i\udcff\udcfe.png": the name of a file whose name is not UTF-8


def invoke(*args):
    return CliRunner().invoke(app, ["predict", *[str(a) for a in args]])


def _boxes(d: BoxesFileDetector, name: str) -> list[list[float]]:
    return [f.box.tolist() for f in d.detect(IMG, name)]


def _png(path: Path | bytes, size: tuple[int, int]) -> None:
    ok, buf = cv2.imencode(".png", np.full((size[1], size[0], 3), 100, np.uint8))
    assert ok
    with open(path, "wb") as fh:  # a bytes path: a name that is not UTF-8
        fh.write(buf.tobytes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from conftest import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny"))["models"]


# ------------------------------------------------------------------------------------------------------------
# item 1: CSV boxes names match exactly as written


def test_csv_boxes_names_match_exactly_as_written(tmp_path, monkeypatch):
    """predict's own CSV (box_x1 ... columns) names its images exactly: " lead.jpg" and "lead.jpg" are two files.
    A hand-made CSV's names are trimmed (`a.jpg , 1, 2, 30, 40` means a.jpg), as they always were."""
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "b.csv"
    f.write_text("image,box_x1,box_y1,box_x2,box_y2\n lead.jpg,1,2,30,40\nlead.jpg,5,6,70,80\n")
    d = BoxesFileDetector(f)
    assert _boxes(d, " lead.jpg") == [[1, 2, 30, 40]]  # was: "no boxes for this image"
    assert _boxes(d, "lead.jpg") == [[5, 6, 70, 80]]  # was: both boxes, the other photo's first
    f.write_text("a.jpg ,1,2,30,40\n b.jpg,1,2,30,40\nb.jpg  ,5,6,70,80\n")
    d = BoxesFileDetector(f)
    assert _boxes(d, "a.jpg") == [[1, 2, 30, 40]]
    assert _boxes(d, str(tmp_path / "a.jpg")) == [[1, 2, 30, 40]]  # as a path too
    assert _boxes(d, "b.jpg") == [[1, 2, 30, 40], [5, 6, 70, 80]]


def test_predicts_csv_fed_back_as_boxes_keeps_names_with_spaces_apart(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / " lead.png", (40, 30))
    _png(tmp_path / "lead.png", (24, 36))
    common = ["--models", tiny, "-q"]
    r0 = invoke(" lead.png", "lead.png", "--no-detect", *common, "-f", "csv", "-o", "o.csv")
    assert r0.exit_code == 0, r0.stderr
    first = {row["image"]: [float(row[f"box_{k}"]) for k in ("x1", "y1", "x2", "y2")]
             for row in csv.DictReader(io.StringIO(Path("o.csv").read_bytes().decode(), newline=""))}
    assert set(first) == {" lead.png", "lead.png"} and first[" lead.png"] != first["lead.png"]
    r1 = invoke(" lead.png", "lead.png", "--boxes", "o.csv", *common)
    assert r1.exit_code == 0, r1.stderr
    recs = [json.loads(line) for line in r1.stdout.splitlines()]
    assert [(r["image"], r["error"]) for r in recs] == [(" lead.png", None), ("lead.png", None)]
    assert {r["image"]: r["faces"][0]["box"] for r in recs} == first


# ------------------------------------------------------------------------------------------------------------
# item 2: quoted CSV names keep their line breaks (and raw separators stay inside JSONL strings)

ODD = ["c\nnew.jpg", "u\u2028sep.jpg", "x\x85nel.jpg", "f\x0cff.jpg", "k\rcr.jpg", "w\r\nboth.jpg", "plain.jpg"]


def test_csv_boxes_quoted_names_keep_their_line_breaks(tmp_path):
    f = tmp_path / "b.csv"
    with open(f, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)  # \r\n rows, quoting the names with \r or \n
        w.writerow(["image", "x1", "y1", "x2", "y2"])
        for i, n in enumerate(ODD):
            w.writerow([n, i, i, i + 10, i + 10])
    d = BoxesFileDetector(f)  # was: DataError "row 2: expected image,x1,y1,..." for U+2028
    for i, n in enumerate(ODD):
        assert _boxes(d, n) == [[i, i, i + 10, i + 10]], repr(n)


def test_jsonl_boxes_names_keep_raw_line_separators(tmp_path):
    f = tmp_path / "b.jsonl"
    lines = [json.dumps({"image": n, "boxes": [[i, i, i + 10, i + 10]]}, ensure_ascii=False) for i, n in
             enumerate(ODD)]
    f.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    d = BoxesFileDetector(f)
    for i, n in enumerate(ODD):
        assert _boxes(d, n) == [[i, i, i + 10, i + 10]], repr(n)


# ------------------------------------------------------------------------------------------------------------
# item 3: predict's CSV quotes a field with a lone \r; ordinary rows are unchanged


def _rec(name: str) -> dict:
    face = {"box": [1.5, 2.0, 30.25, 40.0], "score": 0.93, "angle": -7.42, "landmarks": [[1.0, 2.5], [3.0, 4.0]],
            "quality": 0.998, "pose": {"yaw": 1.0, "pitch": 2.0, "roll": -3.0}}
    return {"image": name, "width": 64, "height": 48, "faces": [face, dict(face, box=[0, 0, 9, 9])], "error": None}


def _sink_csv(tmp_path: Path, names: list[str]) -> bytes:
    from facelm.cli.predict import Fmt, _Sink

    out = tmp_path / "o.csv"
    sink = _Sink(Fmt.csv, str(out), 2)
    for n in names:
        sink.write(_rec(n))
    sink.close()
    return out.read_bytes()


def test_predict_csv_quotes_a_lone_carriage_return(tmp_path):
    from facelm.cli.predict import _CSV_HEAD, _CSV_TAIL, _Sink

    names = ["k\rcr.jpg", "c\nnew.jpg", "plain.jpg"]
    rows = list(csv.reader(io.StringIO(_sink_csv(tmp_path, names).decode(), newline="")))
    assert [r[0] for r in rows] == ["image", *[n for n in names for _ in range(2)]]  # was: the \r row split in two
    assert {len(r) for r in rows} == {len(rows[0])}
    # ordinary names (a comma, a quote, spaces): byte for byte what csv.writer(lineterminator="\n") wrote
    plain = ["a,comma.jpg", 'b"quote.jpg', " lead.jpg", "fé.jpg"]
    want = io.StringIO(newline="")
    w = csv.writer(want, lineterminator="\n")
    w.writerow(_CSV_HEAD + ["x0", "y0", "x1", "y1"] + _CSV_TAIL)
    sink = _Sink.__new__(_Sink)
    sink.n, sink.ids = 2, [0, 1]
    for n in plain:
        for row in sink._csv_rows(_rec(n)):
            w.writerow(["" if v is None else v for v in row])
    assert _sink_csv(tmp_path, plain) == want.getvalue().encode()


# ------------------------------------------------------------------------------------------------------------
# item 4: names that are not UTF-8: their bytes in the CSV (file and stdout), read back as boxes


def test_predict_csv_writes_a_non_utf8_name_as_its_bytes(tmp_path, monkeypatch):
    from facelm.cli.predict import Fmt, _Sink

    data = _sink_csv(tmp_path, [BAD_NAME])  # was: UnicodeEncodeError, no file
    assert b"\ni\xff\xfe.png,," in data
    # stdout under a UTF-8 locale (strict errors) writes the same bytes
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="utf-8", errors="strict", newline=""))
    sink = _Sink(Fmt.csv, "-", 2)
    sink.write(_rec(BAD_NAME))
    sink.close()
    assert buf.getvalue() == data


def test_boxes_file_with_a_non_utf8_name_reads_back(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(b"image,frame,face,box_x1,box_y1,box_x2,box_y2,score\ni\xff\xfe.png,,0,1,2,30,40,0.5\n")
    d = BoxesFileDetector(f, kind="auto")  # was: DataError "cannot read ('utf-8' codec can't decode ...)"
    assert d.kind == "detector"
    assert _boxes(d, BAD_NAME) == [[1, 2, 30, 40]] and d.detect(IMG, BAD_NAME)[0].score == 0.5
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match="binary"):
        BoxesFileDetector(f)


def test_cli_round_trip_of_a_non_utf8_name(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _png(os.fsencode(BAD_NAME), (40, 30))
    common = ["--models", tiny, "-q"]
    r = invoke(BAD_NAME, "--no-detect", *common, "-f", "csv", "-o", "o.csv")
    assert r.exit_code == 0, r.stderr  # was: exit 1, a UnicodeEncodeError traceback
    assert Path("o.csv").read_bytes().split(b"\n")[1].startswith(b"i\xff\xfe.png,")
    rj = invoke(BAD_NAME, "--no-detect", *common, "-o", "o.jsonl")
    assert '"image": "i\\udcff\\udcfe.png"' in Path("o.jsonl").read_text(encoding="ascii")
    for boxes in ("o.csv", "o.jsonl"):
        rb = invoke(BAD_NAME, "--boxes", boxes, *common)
        assert rb.exit_code == rj.exit_code == 0, rb.stderr
        assert json.loads(rb.stdout)["faces"][0]["box"] == [-0.5, -0.5, 39.5, 29.5]
    assert "CSV" in DOC and "\\udcXX" in DOC and "bytes as they are on disk" in DOC


# ------------------------------------------------------------------------------------------------------------
# item 5: --min-quality compares the printed (rounded) quality; item 6: a given box keeps the file's score


@pytest.mark.parametrize(("raw", "kept"), [(0.99996, 1), (0.9994, 0)])
def test_min_quality_compares_the_quality_as_printed(tiny, tmp_path, monkeypatch, raw, kept):
    monkeypatch.setattr("facelm.runtime.pipeline.quality_score", lambda *a, **k: raw)
    _png(tmp_path / "a.png", (32, 32))
    r = invoke(tmp_path / "a.png", "--no-detect", "--models", tiny, "-q")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["faces"][0]["quality"] == round(raw, 3)
    r = invoke(tmp_path / "a.png", "--no-detect", "--models", tiny, "-q", "--min-quality", "1")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["faces"]) == kept  # 1.0 printed: was dropped by --min-quality 1
    assert "quality as\n  printed (rounded)" in DOC and "as the record prints it (rounded to 3 decimals)" in DOC


def test_a_given_box_keeps_the_files_score_as_documented(tiny, tmp_path):
    img = tmp_path / "a.png"
    _png(img, (64, 48))
    given = tmp_path / "b.json"
    given.write_text(json.dumps({str(img): [[0, 0, 30, 30, 0.5], [10, 10, 40, 40]]}))
    r = invoke(img, "--boxes", given, "--models", tiny, "-q")
    assert r.exit_code == 0, r.stderr
    assert [f["score"] for f in json.loads(r.stdout)["faces"]] == [0.5, 1.0]
    assert "1.0 for given boxes" not in DOC
    assert "with `--boxes`, the box's score from the file" in DOC


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_an_error_record_in_predicts_output_is_no_box_not_no_face(tmp_path, kind):
    """An image predict failed on, given its own output back as --boxes, used to read as an image with no faces
    (exit 0, `error: null`): the failure turned silent. Its boxes are not known: it is missing from the file."""
    from facelm.detectors.boxes import read_boxes_file

    if kind == "jsonl":
        text = ('{"image": "bad.jpg", "width": null, "height": null, "faces": [], "error": "file not found"}\n'
                '{"image": "empty.jpg", "width": 8, "height": 8, "faces": [], "error": null}\n')
    else:
        text = ("image,frame,face,box_x1,box_y1,box_x2,box_y2,score,angle,x0,y0,width,height,error\n"
                "bad.jpg,,,,,,,,,,,,,file not found\n"
                "empty.jpg,,,,,,,,,,,8,8,\n")
    p = tmp_path / f"b.{kind}"
    p.write_text(text)
    assert read_boxes_file(p) == {"empty.jpg": []}


def test_a_hand_made_csv_names_its_images_with_spaces_trimmed(tmp_path):
    """`a.jpg ,...` in a hand-made boxes file (no box_x1 header) means a.jpg, as before names were matched exactly:
    both rows are a.jpg's (predict's own CSV keeps its names exactly, leading spaces and all)."""
    from facelm.detectors.boxes import read_boxes_file

    p = tmp_path / "two.csv"
    p.write_text("a.jpg,10,10,60,60\na.jpg ,178,63,268,176\n b.jpg,1,1,9,9\n")
    t = read_boxes_file(p)
    assert sorted(t) == ["a.jpg", "b.jpg"] and len(t["a.jpg"]) == 2


def test_a_boxes_file_that_is_not_utf8_says_so_when_a_name_does_not_match(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"caf\xe9.jpg,178,63,268,176\n")
    det = BoxesFileDetector(p)
    with pytest.raises(BoxLookupError, match="not UTF-8"):
        det.detect(np.zeros((8, 8, 3), np.uint8), name="café.jpg")


def test_csv_to_an_ascii_stdout_is_utf8_not_a_traceback(tiny, tmp_path):
    """A locale whose stdout is ASCII (PYTHONIOENCODING=ascii, LANG=C on old systems) crashed CSV output of a name
    with "é" (UnicodeEncodeError); data goes out as UTF-8 whatever the locale."""
    import os
    import subprocess
    import sys

    _png(tmp_path / "é.png", (32, 32))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    p = subprocess.run([sys.executable, "-m", "facelm", "predict", str(tmp_path / "é.png"), "--models", str(tiny),
                        "--no-detect", "-f", "csv", "-q"], capture_output=True, env=env, cwd=REPO, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert "é.png".encode() in p.stdout
