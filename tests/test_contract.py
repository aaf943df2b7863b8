"""Every command keeps its contract under bad input, bad options and signals (issue 13).

* a generated bad-input corpus (zero-byte, text-as-jpg, truncated, 1x1, 16-bit, RGBA, CMYK, animated GIF, WebP,
  EXIF-rotated, unicode/space/newline names, dangling symlink, FIFO, a folder named ``x.jpg``) through ``predict``,
  ``prepare``, ``evaluate`` and ``bench``: no traceback, stdout parses line by line, one record per input, the
  documented exit code;
* a table of invalid option values for every numeric option of every command: exit 2, one ``error:`` line on
  stderr naming the option, nothing on stdout and nothing written;
* ``predict --format csv`` rows have the header's field count and read back to the JSONL values.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
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

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args, stdin: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def jsonl(out: str) -> list[dict]:
    """Every stdout line is one JSON document."""
    return [json.loads(line) for line in out.splitlines()]


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def no_traceback(r) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


# ------------------------------------------------------------------------------------------------------------
# fixtures: tiny random-weight models, a small prepared dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from facelm.config import TrainConfig
    from facelm.export import export_onnx
    from facelm.prepare import PrepareOptions, prepare
    from facelm.synthetic import make_dataset
    from facelm.train import train

    root = tmp_path_factory.mktemp("tiny")
    csv_file, _ = make_dataset(root / "raw", n=8, seed=0)
    prepare(PrepareOptions(source=csv_file, out=root / "prep", fmt="csv", workers=1, holdout=0.0))
    for arch in ("cnn6", "cnn7"):
        cfg = TrainConfig(data=str(root / "prep"), out=str(root / arch), arch=arch, steps=1, batch_size=4,
                          width=0.125, threads=1, val_every=100, warmup=0).filled()
        train(cfg)
        export_onnx(root / arch / "best.pt", root / "models" / f"{arch}.onnx")
    return {"root": root, "models": root / "models", "prep": root / "prep", "raw": root / "raw",
            "ckpt": root / "cnn6" / "best.pt"}


def _png(path: Path, img: np.ndarray | None = None, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img is None:
        img = np.full((size, size, 3), 128, np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


# ------------------------------------------------------------------------------------------------------------
# item 1: CSV rows have the header's width and read back to the JSONL values


def test_predict_csv_rows_match_the_header_and_the_jsonl(tiny, tmp_path):
    d = tmp_path / "in"
    _png(d / "a.png", size=40)
    (d / "b_text.jpg").write_text("not an image")
    _png(d / "c.png", size=48)
    (d / "d_zero.png").write_bytes(b"")
    common = [d, "--models", tiny["models"], "--no-detect", "-q"]
    rj = invoke("predict", *common)
    rc = invoke("predict", *common, "-f", "csv")
    assert rj.exit_code == rc.exit_code == 1, rc.stderr
    recs = jsonl(rj.stdout)
    rows = list(csv.reader(io.StringIO(rc.stdout)))
    head = rows[0]
    assert all(len(r) == len(head) for r in rows), [len(r) for r in rows]
    got = list(csv.DictReader(io.StringIO(rc.stdout)))
    assert len(got) == sum(max(1, len(x["faces"])) for x in recs)
    k = 0
    for rec in recs:
        for i, face in enumerate(rec["faces"] or [None]):
            row = got[k]
            k += 1
            assert row["image"] == rec["image"]
            assert row["width"] == ("" if rec["width"] is None else str(rec["width"]))
            assert row["height"] == ("" if rec["height"] is None else str(rec["height"]))
            assert row["error"] == (rec["error"] or "")
            if face is None:
                assert row["face"] == "" and row["x0"] == "" and row["score"] == ""
                continue
            assert int(row["face"]) == i
            assert [float(row[c]) for c in ("box_x1", "box_y1", "box_x2", "box_y2")] == face["box"]
            assert float(row["score"]) == face["score"] and float(row["angle"]) == face["angle"]
            pts = [[float(row[f"x{j}"]), float(row[f"y{j}"])] for j in range(len(face["landmarks"]))]
            assert pts == face["landmarks"]
    assert k == len(got)


# ------------------------------------------------------------------------------------------------------------
# item 3: invalid option values are usage errors: exit 2, one line naming the option, nothing written

# (command, option, bad value): every numeric option of prepare, predict, fit-box-map, bench, export, evaluate
# and balance (train's own sweep lives with train), plus the output paths that name an existing folder
SWEEP = [
    ("prepare", "--cache-size", "100000"), ("prepare", "--cache-size", "31"), ("prepare", "--cache-size", "x"),
    ("prepare", "--margin", "0.5"), ("prepare", "--margin", "nan"), ("prepare", "--margin", "inf"),
    ("prepare", "--holdout", "1"), ("prepare", "--holdout", "-0.1"), ("prepare", "--holdout", "nan"),
    ("prepare", "--workers", "-1"), ("prepare", "--limit", "-1"),
    ("predict", "--score-threshold", "-1"), ("predict", "--score-threshold", "1.5"),
    ("predict", "--score-threshold", "nan"), ("predict", "--batch", "0"), ("predict", "--batch", "-4"),
    ("predict", "--batch", "1e9"), ("predict", "--vid-stride", "0"), ("predict", "--stages", "3"),
    ("predict", "--workers", "-1"), ("predict", "--threads", "-1"), ("predict", "--streams", "100"),
    ("predict", "--streams", "-1"), ("predict", "--output", "DIR"),
    ("fit-box-map", "--min-iou", "2"), ("fit-box-map", "--min-iou", "-0.1"), ("fit-box-map", "--min-iou", "nan"),
    ("fit-box-map", "--limit", "-1"),
    ("bench", "--limit", "-5"), ("bench", "--limit", "0"), ("bench", "--batch", "0"), ("bench", "--seconds", "0"),
    ("bench", "--seconds", "nan"), ("bench", "--seconds", "inf"), ("bench", "--workers", "-2"),
    ("bench", "--markdown", "DIR"),
    ("export", "--opset", "999"), ("export", "--opset", "12"), ("export", "--tolerance", "-1"),
    ("export", "--tolerance", "nan"), ("export", "--calib-faces", "0"), ("export", "--max-val", "0"),
    ("export", "--max-nme-increase", "-0.1"), ("export", "--max-nme-increase", "nan"),
    ("export", "--parity-crops", "0"), ("export", "--bench-seconds", "-1"), ("export", "--threads", "-1"),
    ("export", "--out", "DIR"),
    ("evaluate", "--per-face", "DIR"), ("evaluate", "--plot", "DIR"), ("evaluate", "--ced-csv", "DIR"),
    ("evaluate", "--fail-above", "-1"), ("evaluate", "--fail-above", "nan"),
    ("balance", "--bins", "1"), ("balance", "--max-dup", "-1"),
]


def _base_args(cmd: str, tiny: dict, out: Path) -> list:
    return {
        "prepare": ["prepare", tiny["raw"], "--format", "csv", "--out", out / "prep"],
        "predict": ["predict", tiny["raw"], "--models", tiny["models"], "--no-detect", "-o", out / "p.jsonl",
                    "--draw", out / "drawn"],
        "fit-box-map": ["fit-box-map", "--data", tiny["prep"], "--models", tiny["models"], "--dry-run"],
        "bench": ["bench", tiny["raw"], "--models", tiny["models"], "--seconds", "0.01", "--markdown", out / "b.md"],
        "export": ["export", tiny["ckpt"], "--out", out / "m.onnx"],
        "evaluate": ["evaluate", tiny["ckpt"], "--data", tiny["prep"], "--per-face", out / "pf.csv"],
        "balance": ["balance", tiny["prep"], "--out", out / "bal"],
    }[cmd]


@pytest.mark.parametrize("cmd,opt,value", SWEEP, ids=[f"{c}{o}={v}" for c, o, v in SWEEP])
def test_invalid_option_value_is_one_line_exit_2_and_writes_nothing(tiny, tmp_path, cmd, opt, value):
    out = tmp_path / "out"
    out.mkdir()
    taken = tmp_path / "existing-folder"
    taken.mkdir()
    args = _base_args(cmd, tiny, out)
    if value == "DIR":
        i = args.index(opt) if opt in args else None
        if i is not None:
            args[i + 1] = taken
        else:
            args += [opt, taken]
    else:
        args += [opt, value]
    before = sorted(p.name for p in tiny["root"].rglob("*"))
    r = invoke(*args)
    no_traceback(r)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == ""
    line = one_error_line(r.stderr)
    assert opt in line, line
    assert list(out.iterdir()) == [] and list(taken.iterdir()) == []
    assert sorted(p.name for p in tiny["root"].rglob("*")) == before
