"""How the ``facelm`` command stops (``facelm._signals``): the first Ctrl-C or SIGTERM stops it, later ones are
ignored while it cleans up; the console script handles them before the commands' modules load; an interrupted
final write leaves no temporary file."""

from __future__ import annotations

import importlib.abc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import default_sigint

from facelm import _signals

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_signals(monkeypatch):
    """The module's state and this process's handlers, restored after the test."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(_signals, "_first", None)
    yield
    for s, h in old.items():
        signal.signal(s, h)


def test_the_first_signal_stops_and_later_ones_are_ignored_for_a_grace_period(fresh_signals, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        _signals._on_signal(signal.SIGINT, None)
    assert _signals.stopping()
    _signals._on_signal(signal.SIGINT, None)  # no exception: the clean-up goes on
    _signals._on_signal(signal.SIGTERM, None)
    # past the grace period (a swallowed stop, a clean-up that hangs) a signal stops the command again
    monkeypatch.setattr(_signals, "_first", _signals._first - _signals.GRACE_S - 0.1)
    assert not _signals.stopping()
    with pytest.raises(KeyboardInterrupt):
        _signals._on_signal(signal.SIGINT, None)


def test_install_routes_both_signals_and_keeps_an_ignored_one_ignored(fresh_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell sets it for a background job
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _signals.install()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is _signals._on_signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _signals.install()
    assert signal.getsignal(signal.SIGINT) is _signals._on_signal


def test_mark_stopping_makes_later_signals_no_ops(fresh_signals):
    _signals.mark_stopping()
    _signals._on_signal(signal.SIGTERM, None)


class _InterruptingFinder(importlib.abc.MetaPathFinder):
    handler_then = None

    def find_spec(self, name, path=None, target=None):
        if name == "facelm.cli._app":
            _InterruptingFinder.handler_then = signal.getsignal(signal.SIGTERM)
            raise KeyboardInterrupt


def test_a_ctrl_c_while_the_commands_load_is_exit_130_and_one_line(fresh_signals, monkeypatch, capsys):
    import facelm.cli

    monkeypatch.delitem(sys.modules, "facelm.cli._app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptingFinder(), *sys.meta_path])
    with pytest.raises(SystemExit) as e:
        facelm.cli.main()
    assert e.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert _InterruptingFinder.handler_then is _signals._on_signal  # installed before the import


def test_the_console_script_ignores_signals_once_its_command_is_done(fresh_signals, monkeypatch, capsys):
    """After the command (finished or stopped), a signal in the interpreter's shutdown used to kill the process
    (returncode -2 / -15 instead of 0 or 130): Python restores the default dispositions there, not SIG_IGN."""
    import facelm.cli
    import facelm.cli._app as app_module

    monkeypatch.setattr(sys, "argv", ["facelm", "--version"])
    with pytest.raises(SystemExit) as e:
        facelm.cli.run()
    assert e.value.code == 0
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN

    def interrupted():
        raise KeyboardInterrupt  # a Ctrl-C while Typer builds the commands, before their own handling

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(app_module, "app", interrupted)
    with pytest.raises(SystemExit) as e:
        facelm.cli.run()
    assert e.value.code == 130 and capsys.readouterr().err.endswith("error: interrupted\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_inside_another_program_the_commands_give_its_handlers_back(fresh_signals, monkeypatch, tmp_path):
    """`facelm.cli.main()` and `facelm.cli.app` run in-process (a wrapper, a notebook, CliRunner) leave the host's
    SIGINT and SIGTERM handlers as they found them: they were left ignored (main) or replaced (app)."""
    import facelm.cli
    from typer.testing import CliRunner

    def host(signum, frame):
        pass

    signal.signal(signal.SIGINT, host)
    signal.signal(signal.SIGTERM, host)
    monkeypatch.setattr(sys, "argv", ["facelm", "prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        facelm.cli.main()
    assert signal.getsignal(signal.SIGINT) is host and signal.getsignal(signal.SIGTERM) is host
    r = CliRunner().invoke(facelm.cli.app, ["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 3
    assert signal.getsignal(signal.SIGINT) is host and signal.getsignal(signal.SIGTERM) is host


def test_interrupted_final_writes_leave_no_temporary_file(tmp_path, monkeypatch):
    """A Ctrl-C inside the last write of a JSON (or Parquet) output removes its temporary file."""
    from facelm.cli._predict_sink import Fmt, _Sink

    sink = _Sink(Fmt.json, str(tmp_path / "out.json"), 68, None)
    sink.write({"image": "a.jpg", "faces": []})

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("facelm.cli._predict_sink.dumps", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sink.close()
    assert sorted(os.listdir(tmp_path)) == []

    pytest.importorskip("pyarrow")
    from facelm.record_table import ParquetRecordWriter

    w = ParquetRecordWriter(tmp_path / "out.parquet")
    w.write({"image": "a.jpg", "width": 4, "height": 4, "faces": []})
    monkeypatch.setattr(w, "_flush", interrupted)
    with pytest.raises(KeyboardInterrupt):
        w.close()
    assert sorted(os.listdir(tmp_path)) == []


def _photos(tmp_path: Path, n: int) -> Path:
    lst = tmp_path / "photos.txt"
    lst.write_text("".join(f"{REPO / 'examples' / 'astronaut.jpg'}\n" for _ in range(n)))
    return lst


def test_a_second_ctrl_c_while_predict_stops_is_ignored(tmp_path):
    """Two Ctrl-C 10 ms apart mid-run: exit 130 with one line. The second used to break the join of the worker
    threads at exit, and the interpreter was finalised under onnxruntime's threads: SIGABRT, a traceback."""
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "facelm", "predict", str(_photos(tmp_path, 400)), "-o", str(out), "--resume",
           "--threads", "1", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         preexec_fn=default_sigint)  # noqa: PLW1509 - one signal call before exec
    try:
        deadline = time.monotonic() + 120
        while not out.is_file() or out.read_text().count("\n") < 3:  # --resume appends record by record
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted"], err
