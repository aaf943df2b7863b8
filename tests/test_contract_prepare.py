"""`facelm prepare` under bad input found by a hostile run: a SOURCE given twice, a scheme file that does not
exist, a reader's error naming its file once, and a failed run leaving no folders it created."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import facelm.prepare as prep_mod
from facelm.cli import app
from facelm.errors import DataError, UsageError
from facelm.prepare import PrepareOptions, prepare
from facelm.synthetic import make_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    make_dataset(root / "set", 4, size=96, seed=5)
    return root / "set"


def test_a_source_given_twice_is_a_usage_error_before_any_work(src, tmp_path):
    with pytest.raises(UsageError, match="given twice"):
        prepare(PrepareOptions(source=[src, Path(str(src) + "/")], out=tmp_path / "out"))
    with pytest.raises(UsageError, match=r"given twice \(as "):
        prepare(PrepareOptions(source=[src, src / ".." / src.name], out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    r = runner.invoke(app, ["prepare", str(src), str(src), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: SOURCE {src} is given twice"]


def test_a_missing_scheme_file_is_named_as_a_file(src, tmp_path):
    r = runner.invoke(app, ["prepare", str(src), "--scheme", "nothere.toml", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: nothere.toml: no such scheme file (a .json/.toml scheme file, or a known scheme: 300w68, "), lines


def test_a_reader_error_names_its_file_once(tmp_path):
    folder = tmp_path / "nopts"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    with pytest.raises(DataError) as e:
        prepare(PrepareOptions(source=folder, out=tmp_path / "out", fmt="pts"))
    assert str(e.value).count("nopts") == 1, str(e.value)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_a_failed_run_removes_the_folders_it_created(src, tmp_path, monkeypatch, exc):
    def boom(*a, **k):
        raise exc("stop")

    monkeypatch.setattr(prep_mod, "_build", boom)
    with pytest.raises(exc):
        prepare(PrepareOptions(source=src, out=tmp_path / "new" / "a" / "b"))
    assert list(tmp_path.iterdir()) == [], "an empty folder the run created was left"

    kept = tmp_path / "kept"  # a folder that was there before stays, and so does what it holds
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    with pytest.raises(exc):
        prepare(PrepareOptions(source=src, out=kept / "b"))
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]


def test_an_error_is_exactly_one_line_on_stderr_and_a_quiet_run_prints_nothing(src, tmp_path):
    """The progress bar starts with the work: an early error is not preceded by the empty line a bar stopped
    before it was shown prints when stderr is not a terminal."""
    r = runner.invoke(app, ["prepare", str(tmp_path / "nonexist"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 3
    assert r.stderr == f"error: {tmp_path / 'nonexist'}: no such file or folder\n"
    r = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0 and r.stderr == "", repr(r.stderr)
