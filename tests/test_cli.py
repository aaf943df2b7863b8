"""The ``facelm`` command line: version, help, and ``prepare``'s streams and exit codes.

stdout carries data only (one JSON document for ``prepare``); tables, progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import facelm.prepare as prep_mod
from facelm import __version__
from facelm.cli import app
from facelm.manifest import CROPS_NAME, MANIFEST_NAME, PREPARE_NAME, load_manifest
from facelm.synthetic import make_dataset, template_68

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("prepare", "balance", "train", "evaluate", "export", "predict")
SUMMARY_KEYS = {"out", "format", "scheme", "faces", "images", "skipped", "splits", "subsets", "cache", "seconds",
                "images_per_s", "skipped_faces"}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_json(stdout: str) -> dict:
    """stdout must be exactly one JSON document on one line."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, stdout
    return json.loads(stdout)


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def synth_src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    make_dataset(root / "src", 6, size=64, seed=5)
    return root / "src"


# ------------------------------------------------------------------------------------------------------------
# the application


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0
    assert r.stdout == f"facelm {__version__}\n"


def test_help_lists_the_six_commands():
    for flag in ("--help", "-h"):
        r = invoke(flag)
        assert r.exit_code == 0
        for c in COMMANDS:
            assert c in r.stdout, c
    r = invoke("prepare", "--help")
    assert r.exit_code == 0
    for opt in ("--out", "--format", "--scheme", "--split", "--holdout", "--cache-size", "--margin", "--workers",
                "--limit", "--quiet"):
        assert opt in r.stdout, opt


def test_unknown_command_and_option_are_usage():
    assert invoke("frobnicate").exit_code == 2
    assert invoke("prepare", "x", "--out", "y", "--bogus").exit_code == 2


def test_the_group_speaks_as_its_commands_do():
    """`facelm` alone: help on stderr (stdout carries data only), exit 2; an unknown command or top-level option:
    one `error:` line, exit 2 (it used to be a boxed usage text, and the help went to stdout)."""
    r = invoke()
    assert r.exit_code == 2 and r.stdout == "" and "prepare" in r.stderr and "predict" in r.stderr
    for args, what in ((["frobnicate"], "No such command 'frobnicate'"), (["--bogus"], "No such option: --bogus")):
        r = invoke(*args)
        assert r.exit_code == 2 and r.stdout == "" and what in error_line(r.stderr), r.stderr


EMPTY_VALUES = [  # a path given as "" used to be read as Path("."), the current folder (prepare wrote into it)
    (["prepare", "SRC", "--out", ""], "--out must not be empty, got ''"),
    (["prepare", "SRC", "-o", " "], "--out must not be empty, got ' '"),
    (["prepare", "", "--out", "OUT"], "a SOURCE argument is an empty string"),
    (["predict", "SRC", "--models", ""], "--models must not be empty, got ''"),
    (["predict", "SRC", "--box-map="], "--box-map must not be empty, got ''"),
    (["predict", "SRC", "--boxes", "", "--no-detect"], "--boxes must not be empty, got ''"),
    (["predict", "SRC", "--detector-model", ""], "--detector-model must not be empty, got ''"),
    (["predict", "SRC", "--", ""], "empty string"),
    (["bench", "SRC", "--markdown", ""], "--markdown must not be empty, got ''"),
    (["export", "", "--out", "x.onnx"], "empty string"),
    (["export", "SRC", "--out", ""], "--out must not be empty, got ''"),
    (["balance", "", "--out", "OUT"], "empty string"),
    (["balance", "SRC", "--out", "OUT", "--plot", ""], "--plot must not be empty, got ''"),
    (["evaluate", "--data", "SRC", "--ced-csv", "", "m.jsonl"], "--ced-csv must not be empty, got ''"),
]


@pytest.mark.parametrize("args,message", EMPTY_VALUES, ids=[" ".join(a) for a, _ in EMPTY_VALUES])
def test_an_empty_value_is_a_usage_error_before_any_work(synth_src, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    r = invoke(*[str(synth_src) if a == "SRC" else str(tmp_path / "o") if a == "OUT" else a for a in args])
    assert r.exit_code == 2 and r.stdout == "", r.stderr
    assert message in error_line(r.stderr)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written into the current folder


@pytest.mark.parametrize("command,usage", [("prepare", "SOURCE..."), ("predict", "SOURCE..."),
                                           ("evaluate", "MODEL..."), ("export", "CHECKPOINT"), ("balance", "DATA"),
                                           ("bench", "[FOLDER]")])
def test_usage_lines_name_arguments_as_the_docs_do(command, usage):
    """Typer 0.29 wrote required arguments as `{sources}...`; the usage line reads as docs/cli.md's synopses."""
    r = invoke(command, "--help")
    line = next(ln for ln in r.stdout.splitlines() if "Usage:" in ln)
    assert line.split() == ["Usage:", "root", command, "[OPTIONS]", usage], line
    if not usage.startswith("["):  # a required argument left out is named the same way
        r = invoke(command, *(["--data", "x"] if command == "evaluate" else ["-q"]))
        assert r.exit_code == 2 and f"Missing argument '{usage}'" in error_line(r.stderr), r.stderr


def test_python_m_facelm_version():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "facelm", "--version"], capture_output=True, text=True, timeout=60,
                       env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"facelm {__version__}"


# ------------------------------------------------------------------------------------------------------------
# prepare: streams


def test_prepare_ok_stdout_is_one_json_stderr_has_the_table(synth_src, tmp_path):
    out = tmp_path / "out"
    r = invoke("prepare", synth_src, "--format", "csv", "--out", out, "--holdout", "0.5", "--workers", "2")
    assert r.exit_code == 0, r.stderr
    s = one_json(r.stdout)
    assert SUMMARY_KEYS <= set(s)
    assert (s["faces"], s["images"], s["skipped"], s["skipped_faces"]) == (6, 6, 0, [])
    assert sum(s["splits"].values()) == 6 and set(s["splits"]) <= {"train", "val"}
    assert s["out"] == str(out)
    for word in ("prepared", "faces", "images", "skipped", "split train", "images/s", "next: facelm train"):
        assert word in r.stderr, word
    assert "{" not in r.stderr  # the JSON goes to stdout only
    for name in (MANIFEST_NAME, CROPS_NAME, PREPARE_NAME):
        assert (out / name).is_file()
    assert len(load_manifest(out)) == 6


def test_prepare_quiet_has_empty_stderr(synth_src, tmp_path):
    r = invoke("prepare", synth_src, "-f", "csv", "-o", tmp_path / "q", "--quiet")
    assert r.exit_code == 0 and r.stderr.strip() == ""
    assert one_json(r.stdout)["faces"] == 6


def test_prepare_auto_format(synth_src, tmp_path):
    r = invoke("prepare", synth_src, "--out", tmp_path / "a", "-q")
    assert r.exit_code == 0 and one_json(r.stdout)["format"] == "csv"


# ------------------------------------------------------------------------------------------------------------
# prepare: exit codes


def _bad_set(folder: Path) -> Path:
    """Two good faces and two bad images (truncated PNG, text file named .jpg) in a CSV."""
    folder.mkdir(parents=True)
    lm = (template_68() - 0.5) * 40 + 32
    img = np.full((64, 64, 3), 120, np.uint8)
    for n in ("good0.png", "good1.png", "trunc.png"):
        cv2.imwrite(str(folder / n), img)
    data = (folder / "trunc.png").read_bytes()
    (folder / "trunc.png").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("hello")
    rows = [n + "," + ",".join(f"{v:.3f}" for v in lm.reshape(-1))
            for n in ("good0.png", "good1.png", "trunc.png", "text.jpg")]
    (folder / "l.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_prepare_some_skipped_exits_1(tmp_path):
    src = _bad_set(tmp_path / "src")
    r = invoke("prepare", src, "--out", tmp_path / "out")
    assert r.exit_code == 1, r.stderr
    s = one_json(r.stdout)
    assert s["faces"] == 2 and s["skipped"] == 2
    assert {Path(x["image"]).name for x in s["skipped_faces"]} == {"trunc.png", "text.jpg"}
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2
    assert any("trunc.png" in w and "truncated PNG" in w for w in warnings)
    assert any("text.jpg" in w and "not a decodable image" in w for w in warnings)
    assert "skipped" in r.stderr and "prepared" in r.stderr
    assert len(load_manifest(tmp_path / "out")) == 2
    rq = invoke("prepare", src, "--out", tmp_path / "out", "--quiet")  # --quiet: no table, warnings still
    assert rq.exit_code == 1 and one_json(rq.stdout)["skipped"] == 2
    assert [ln for ln in rq.stderr.splitlines() if ln.strip()] == warnings


def test_prepare_unknown_format_exits_2(synth_src, tmp_path):
    r = invoke("prepare", synth_src, "--format", "bogus", "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stdout == ""
    assert "unknown format 'bogus'" in error_line(r.stderr)


@pytest.mark.parametrize("opt", [["--split", "dev"], ["--holdout", "1.5"], ["--scheme", "nosuch"],
                                 ["--workers", "-1"], ["--holdout", "abc"]])
def test_prepare_bad_options_exit_2(synth_src, tmp_path, opt):
    r = invoke("prepare", synth_src, "--out", tmp_path / "o", *opt)
    assert r.exit_code == 2 and r.stdout == ""


def test_prepare_without_arguments_shows_help():
    r = invoke("prepare")
    assert r.exit_code in (0, 2) and "--out" in r.stdout + r.stderr


def test_prepare_empty_folder_exits_3(tmp_path):
    (tmp_path / "empty").mkdir()
    r = invoke("prepare", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 3 and r.stdout == ""
    line = error_line(r.stderr)
    assert str(tmp_path / "empty") in line and "empty" in line


def test_prepare_missing_source_exits_3(tmp_path):
    r = invoke("prepare", tmp_path / "missing.csv", "--format", "csv", "--out", tmp_path / "o")
    assert r.exit_code == 3 and r.stdout == ""
    assert "missing.csv" in error_line(r.stderr)


def test_prepare_all_faces_bad_exits_3(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    lm = (template_68() - 0.5) * 40 + 32
    (src / "a.png").write_bytes(b"")
    (src / "l.csv").write_text("a.png," + ",".join(f"{v:.3f}" for v in lm.reshape(-1)) + "\n")
    for quiet in ([], ["--quiet"]):
        r = invoke("prepare", src, "--out", tmp_path / "o", *quiet)
        assert r.exit_code == 3 and r.stdout == ""
        warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        # the reason each face was dropped is shown even though no JSON summary is written
        assert len(warnings) == 1 and "a.png" in warnings[0] and "empty file" in warnings[0]
        rest = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("warning:"))
        assert "none of the 1 faces" in error_line(rest)
        assert not (tmp_path / "o" / MANIFEST_NAME).exists()


def test_prepare_interrupted_exits_130_and_keeps_the_previous_dataset(synth_src, tmp_path, monkeypatch):
    out = tmp_path / "o"
    assert invoke("prepare", synth_src, "--out", out, "-q").exit_code == 0

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep_mod, "warp_crop", interrupt)
    r = invoke("prepare", synth_src, "--out", out)
    assert r.exit_code == 130 and r.stdout == ""
    assert "interrupted" in r.stderr
    assert len(load_manifest(out)) == 6  # the re-run was built beside it
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_library_errors_name_parameters_and_the_cli_shows_its_flags(tmp_path):
    """The library phrases errors in its parameter names (`stages`); the CLI renders them as its flags."""
    from facelm.cli._common import cli_message
    from facelm.errors import UsageError
    from facelm.runtime import load_models

    with pytest.raises(UsageError) as e:
        load_models(tmp_path, stages=3)
    assert "--" not in str(e.value) and "`stages`" in str(e.value)
    assert cli_message(str(e.value)) == "--stages must be 1 or 2, not 3"
    assert cli_message("`calib_faces` and `weights`; ``code`` and `facelm export` stay") == \
        "--calib-faces and --weight; ``code`` and `facelm export` stay"


def test_table_headers_never_wrap_on_a_narrow_console(monkeypatch):
    """A header wrapped at its spaces ("int8 / fp32" over "speed") reads as two columns and breaks a grep for it;
    whether it wrapped depended on how long the measured values were (a flaky bench test)."""
    from facelm.cli import _common

    monkeypatch.setattr(_common.err_console, "width", 60)
    with _common.err_console.capture() as cap:
        _common.table("t", ["measure", "fp32", "int8", "int8 / fp32 speed"],
                      [["stage 1 ms, batch 1", "2.483", "1.099", "2.259"],
                       ["fp32: ms per face (1 thread)", "read 0.73, detect 6.02, orient_and_crop 6.99, networks 149.79",
                        "", ""]])
    assert "int8 / fp32 speed" in cap.get()
