"""The ``facelm`` command line: thin commands over the ``facelm`` library.

stdout carries data only (JSON, JSONL, CSV); progress, tables, warnings and errors go to stderr.
Exit codes: 0 ok, 1 finished with failures, 2 usage, 3 bad input data, 4 model/metadata mismatch, 130 Ctrl-C.

The Typer application is ``facelm.cli.app`` (built in ``facelm.cli._app`` on first use); ``run`` is the console
script, which installs the signal handlers (``facelm._signals``) before the commands' modules load; ``main`` does
the same inside another program and gives its handlers back.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main", "run"]


def run() -> None:
    """The console script (``facelm``) and ``python -m facelm``: the command, then the process ends. Once the
    command has finished or stopped, signals are ignored: during the interpreter's shutdown (worker threads joined,
    torch and onnxruntime torn down) Python puts the default dispositions back, and a late Ctrl-C or SIGTERM killed
    the process (returncode -2 / -15) after its work was done."""
    _run(keep=False)


def main() -> None:
    """The command line inside another Python program (``sys.argv``): as ``run``, but the program's own signal
    handlers are given back when the command ends."""
    _run(keep=True)


def _run(keep: bool) -> None:
    from facelm import _signals

    replaced = _signals.install()
    try:
        from facelm.cli._app import app

        app()
    except KeyboardInterrupt:  # while the commands load, or Typer builds them: before a command's own handling
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    finally:
        if keep:
            _signals.restore(replaced)
        else:
            _signals.ignore()


def __getattr__(name: str) -> Any:
    if name == "app":
        from facelm.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
