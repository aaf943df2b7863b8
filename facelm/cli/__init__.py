"""The ``facelm`` command line: thin commands over the ``facelm`` library.

stdout carries data only (JSON, JSONL, CSV); progress, tables, warnings and errors go to stderr.
Exit codes: 0 ok, 1 finished with failures, 2 usage, 3 bad input data, 4 model/metadata mismatch, 130 Ctrl-C.

The Typer application is ``facelm.cli.app`` (built in ``facelm.cli._app`` on first use); ``main`` is the console
script, which installs the signal handlers (``facelm._signals``) before the commands' modules load.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    from facelm import _signals

    _signals.install()
    try:
        from facelm.cli._app import app

        app()
    except KeyboardInterrupt:  # while the commands load, or Typer builds them: before a command's own handling
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    finally:
        # the work is done or stopped: a signal during the interpreter's shutdown (worker threads joined, torch and
        # onnxruntime torn down), where Python puts the default dispositions back, would kill the process instead
        _signals.ignore()


def __getattr__(name: str) -> Any:
    if name == "app":
        from facelm.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
