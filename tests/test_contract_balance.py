"""``facelm balance`` keeps the CLI contract (docs/cli.md, docs/balance.md): a bad ``--out``, ``--plot`` or
``--seed`` is one ``error:`` line with exit 2, found before any work, with nothing written; ``--out`` is a new or
empty folder or an earlier balance's output, never any other folder with files in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facelm.balance import balance_indices, balance_manifest
from facelm.cli import app
from facelm.errors import UsageError
from tests.test_balance import write_prepared, yawed_faces

OUTPUTS = ("manifest.jsonl", "prepare.json", "pose_model.json")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    lm, _ = yawed_faces(120, seed=3)
    splits = ["val" if i % 10 == 0 else "train" for i in range(len(lm))]
    return write_prepared(tmp_path_factory.mktemp("cbal") / "data", lm, splits)


def invoke(*args):
    return CliRunner().invoke(app, ["balance", *(str(a) for a in args)])


def _one_error(r, code: int, *words: str) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _unwritable_dir(tmp_path: Path) -> Path:
    """/proc when it refuses new entries (it does, also for root), else a read-only folder (non-root)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            os.mkdir(proc / "facelm-probe")
        except OSError:
            return proc
        os.rmdir(proc / "facelm-probe")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("no folder this process cannot write into")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro


def test_out_under_a_file_or_an_unwritable_folder_is_exit_2_before_any_work(prepared, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_error(invoke(prepared, "--out", afile / "b"), 2, "--out", "not a folder")
    _one_error(invoke(prepared, "--out", _unwritable_dir(tmp_path) / "bal"), 2, "--out", "cannot write")
    _one_error(invoke(prepared, "--out", ""), 2, "--out", "empty")
    with pytest.raises(UsageError, match="`out`"):
        balance_manifest(prepared, "")


def test_a_bad_plot_path_is_exit_2_before_anything_is_written(prepared, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder = tmp_path / "d.png"
    folder.mkdir()
    for plot, why in ((folder, "is a folder"), (afile / "x.png", "not a folder"),
                      (_unwritable_dir(tmp_path) / "x.png", "cannot write")):
        out = tmp_path / f"b-{plot.parent.name}-{plot.name}"
        _one_error(invoke(prepared, "--out", out, "--plot", plot), 2, "--plot", why)
        assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2 ** 63)])
def test_a_seed_out_of_range_is_exit_2(prepared, tmp_path, seed):
    _one_error(invoke(prepared, "--out", tmp_path / "b", "--seed", seed), 2, "--seed")
    assert not (tmp_path / "b").exists()
    with pytest.raises(UsageError, match="`seed`"):
        balance_indices([0, 1], 2, seed=-1)


def test_out_is_new_empty_or_an_earlier_balance_never_another_folder(prepared, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    _one_error(invoke(prepared, "--out", taken, "-q"), 2, "--out", "not empty")
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(prepared, "--out", empty, "-q").exit_code == 0
    first = {n: (empty / n).read_bytes() for n in OUTPUTS}
    r = invoke(prepared, "--out", empty, "-q", "--plot", empty / "hist.png")  # the same command again
    assert r.exit_code == 0, r.stderr
    assert {n: (empty / n).read_bytes() for n in OUTPUTS} == first


@pytest.mark.parametrize("damage,words", [
    (lambda d: d["mean_shape"][0].__setitem__(0, float("nan")), "NaN or infinite"),  # all faces: no bin
    (lambda d: d.__setitem__("component", [[0.0, 0.0]] * len(d["component"])), "not a unit vector"),  # one bin
    (lambda d: d.__setitem__("format_version", 99), "format_version 99"),
])
def test_a_damaged_pose_model_is_refused(prepared, tmp_path, damage, words):
    """A pose model with NaN numbers put every face in no pose bin, a zero component every face in one, and a
    future format was read as this one: each without a word (exit 0)."""
    import json

    from facelm.errors import ModelError
    from facelm.pose import load_pose_model

    r = invoke(prepared, "--out", tmp_path / "bal", "-q")
    assert r.exit_code == 0, r.stderr
    path = tmp_path / "bal" / "pose_model.json"
    d = json.loads(path.read_text())
    damage(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ModelError, match=words):
        load_pose_model(path)
