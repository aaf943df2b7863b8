"""``facelm evaluate`` against the CLI contract (docs/cli.md): one error line and the documented exit code for bad
input, checked before any work; outputs never replace inputs; labels, counts and coordinates read as stated.

The data is a hand-made 68-point manifest (no images: predictions files never open them)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facelm.cli import app
from facelm.errors import UsageError
from facelm.evaluate import EvalOptions, evaluate
from facelm.manifest import Sample, write_manifest

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(r) -> str:
    assert "Traceback" not in r.stderr and (r.exception is None or isinstance(r.exception, SystemExit)), r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert r.stdout == ""
    return lines[0]


def _landmarks(rng, k: int) -> np.ndarray:
    lm = rng.uniform(0, 90, size=(68, 2)) + [3.0 * k, 2.0 * k]
    lm[36], lm[45] = [10.0 + 3 * k, 20.0 + 2 * k], [70.0 + 3 * k, 20.0 + 2 * k]  # inter-ocular 60 px
    return lm


def _dataset(folder: Path, n: int = 4, split: str = "test") -> tuple[Path, list[np.ndarray]]:
    """``n`` faces, one per image, in ``folder`` (with a prepare.json and a stand-in crops.npy beside them)."""
    rng = np.random.default_rng(0)
    lms = [_landmarks(rng, k) for k in range(n)]
    samples = [Sample(id=f"f{k}", image=f"imgs/img{k}.png", width=400, height=300,
                      box=[3.0 * k, 2.0 * k, 120.0 + 3 * k, 90.0 + 2 * k], landmarks=lm.tolist(), scheme="300w68",
                      split=split) for k, lm in enumerate(lms)]
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder / "manifest.jsonl", samples)
    (folder / "prepare.json").write_text("{}")
    (folder / "crops.npy").write_bytes(b"stand-in")
    return folder, lms


def _preds(path: Path, lms: list[np.ndarray], ids=None) -> Path:
    ids = range(len(lms)) if ids is None else ids
    path.write_text("".join(json.dumps({"id": f"f{k}", "landmarks": (lms[k] + 0.5).tolist()}) + "\n" for k in ids))
    return path


@pytest.fixture
def case(tmp_path) -> dict:
    data, lms = _dataset(tmp_path / "data")
    return {"data": data, "lms": lms, "preds": _preds(tmp_path / "p.jsonl", lms), "tmp": tmp_path}


def _snapshot(*folders: Path) -> dict:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


# -- 1. the same model twice: CED curves under unique labels --------------------------------------------------------

def test_same_model_twice_writes_ced_csv_and_plot_with_unique_labels(case):
    out = case["tmp"] / "out"
    r = invoke("evaluate", "-q", "--data", case["data"], case["preds"], case["preds"],
               "--ced-csv", out / "dup.csv", "--plot", out / "dup.png")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    with open(out / "dup.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["threshold", f"{case['preds']} #1", f"{case['preds']} #2"]
    assert (out / "dup.png").stat().st_size > 0


# -- 2. an output never replaces an input, nor another output -------------------------------------------------------

@pytest.mark.parametrize("opt", ["--per-face", "--ced-csv", "--plot"])
@pytest.mark.parametrize("target", ["manifest.jsonl", "prepare.json", "crops.npy", "PREDS", "POSE", "LINK",
                                    "HARDLINK"])
def test_an_output_that_is_an_input_is_exit_2_before_any_work(case, opt, target):
    data, tmp = case["data"], case["tmp"]
    pose = tmp / "pose_model.json"
    pose.write_text("{}")  # never read: the check comes first
    (tmp / "link.csv").symlink_to(data / "manifest.jsonl")
    os.link(case["preds"], tmp / "hard.jsonl")
    path = {"PREDS": case["preds"], "POSE": pose, "LINK": tmp / "link.csv", "HARDLINK": tmp / "hard.jsonl"
            }.get(target, data / target)
    if opt == "--plot":  # a plot needs an image ending: reach the same file through a link
        (tmp / "plot.png").symlink_to(path)
        path = tmp / "plot.png"
    before = _snapshot(tmp)
    r = invoke("evaluate", "--data", data, case["preds"], "--pose-model", pose, opt, path)
    line = one_error_line(r)
    assert r.exit_code == 2 and opt in line and "input" in line, line
    assert _snapshot(tmp) == before


@pytest.mark.parametrize("a,b", [("--per-face", "--ced-csv"), ("--ced-csv", "--per-face"), ("--per-face", "--plot")])
def test_two_outputs_on_one_file_are_exit_2(case, a, b):
    out = case["tmp"] / "out"
    out.mkdir()
    f = out / ("same.svg" if "--plot" in (a, b) else "same.csv")
    r = invoke("evaluate", "--data", case["data"], case["preds"], a, f, b, out / ".." / "out" / f.name)
    line = one_error_line(r)
    assert r.exit_code == 2 and a in line and b in line, line
    assert list(out.iterdir()) == []


def test_outputs_to_dev_null_may_repeat(case):
    r = invoke("evaluate", "-q", "--data", case["data"], case["preds"], "--per-face", "/dev/null",
               "--ced-csv", "/dev/null")
    assert r.exit_code == 0, r.stderr


# -- 3. an empty path is not the current folder ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["--data", "--pose-model", "MODEL", "PAIR"])
def test_an_empty_path_is_exit_2_naming_it(case, monkeypatch, where):
    monkeypatch.chdir(case["data"])  # "" read as "." would find a dataset here
    args = {"--data": ["--data", "", case["preds"]],
            "--pose-model": ["--data", case["data"], case["preds"], "--pose-model", ""],
            "MODEL": ["--data", case["data"], ""],
            "PAIR": ["--data", case["data"], f"{case['preds']}+"]}[where]
    r = invoke("evaluate", *args)
    line = one_error_line(r)
    assert r.exit_code == 2 and ("MODEL" if where == "PAIR" else where) in line.replace("STAGE1+STAGE2", "MODEL")


def test_the_library_refuses_an_empty_data_path(case, monkeypatch):
    monkeypatch.chdir(case["data"])
    with pytest.raises(UsageError, match="`data` is an empty path"):
        evaluate([str(case["preds"])], EvalOptions(data=""))
    with pytest.raises(UsageError, match="MODEL"):
        evaluate([""], EvalOptions(data=case["data"]))


# -- 4. a MODEL is one of the documented kinds; Parquet is named as such ---------------------------------------------

@pytest.mark.parametrize("name,content", [("pred.parquet", b"PAR1\x15\x04\x15\x80"), ("pred.txt", None),
                                          ("weights.bin", b"\x80\x04junk")])
def test_a_model_of_no_known_kind_is_exit_2_listing_the_kinds(case, name, content):
    f = case["tmp"] / name
    if content is None:  # JSONL under another ending: not guessed either
        f.write_text(case["preds"].read_text())
    else:
        f.write_bytes(content)
    r = invoke("evaluate", "--data", case["data"], f)
    line = one_error_line(r)
    assert r.exit_code == 2 and name in line, line
    assert ".jsonl" in line and ".onnx" in line and ".pt" in line
    if name.endswith(".parquet"):
        assert "convert" in line


# -- 5. the missing-faces warning counts every missing face ---------------------------------------------------------

def test_missing_faces_warning_counts_beyond_the_listed_ids(tmp_path):
    data, lms = _dataset(tmp_path / "data", n=60)
    preds = _preds(tmp_path / "p.jsonl", lms, ids=[0])
    warnings: list[str] = []
    rep = evaluate([str(preds)], EvalOptions(data=data), warn=warnings.append)
    assert rep.records()[0]["missing"] == 59
    (msg,) = [w for w in warnings if "no prediction" in w]
    assert "59 of 60 faces" in msg and "(56 more)" in msg, msg


# -- 6. coordinates in JSON are numbers or null ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, "1", "12.5"])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "xy"])
def test_a_boolean_or_string_coordinate_is_exit_4_naming_file_and_line(case, value, fmt):
    lms = case["lms"]
    recs = [{"id": f"f{k}", "landmarks": (lms[k] + 0.5).tolist()} for k in range(len(lms))]
    recs[2]["landmarks"][5][1] = value
    f = case["tmp"] / f"bad.{'json' if fmt == 'json' else 'jsonl'}"
    if fmt == "xy":
        lm = recs[2]["landmarks"]
        recs[2]["landmarks"] = {"x": [p[0] for p in lm], "y": [p[1] for p in lm]}
    f.write_text(json.dumps(recs) if fmt == "json" else "".join(json.dumps(r) + "\n" for r in recs))
    r = invoke("evaluate", "--data", case["data"], f)
    line = one_error_line(r)
    assert r.exit_code == 4 and "not a number" in line, line
    assert f"{f}:3" in line or f"{f} record 3" in line, line
