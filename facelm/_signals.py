"""How the ``facelm`` command stops on Ctrl-C (SIGINT) and SIGTERM: the first one raises ``KeyboardInterrupt`` in
the main thread (the command removes its temporary files, keeps what it finished and exits 130); every later one
is ignored while that happens. A second Ctrl-C used to land in the middle of the clean-up: a temporary file was
left behind, a summary was lost, or the interpreter was finalised while onnxruntime's threads still ran and the
process aborted (SIGABRT). To end a stopping command at once, use SIGKILL (or Ctrl-\\, SIGQUIT).

Imported by the console script before anything heavy, so a Ctrl-C while the commands' modules load is exit 130
too. Nothing here is installed by ``import facelm``: library users keep their own handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["install", "mark_stopping", "stopping"]

_stopping = False


def _on_signal(signum: int, frame: object) -> None:
    global _stopping
    if _stopping:
        return  # already stopping: let the clean-up finish
    _stopping = True
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM to the handler above (main thread only; a signal the parent process set to be
    ignored, as a shell does for SIGINT in background jobs, stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, _on_signal)


def mark_stopping() -> None:
    """The command is stopping for another reason than these handlers (``train``'s SIGTERM flag): later signals
    are ignored as after a first Ctrl-C. Harmless where the handlers are not installed."""
    global _stopping
    _stopping = True


def stopping() -> bool:
    return _stopping
