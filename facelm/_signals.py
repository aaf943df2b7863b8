"""How the ``facelm`` command stops on Ctrl-C (SIGINT) and SIGTERM: the first one raises ``KeyboardInterrupt`` in
the main thread (the command removes its temporary files, keeps what it finished and exits 130); later ones are
ignored for ``GRACE_S`` seconds while that happens. A second Ctrl-C used to land in the middle of the clean-up: a
temporary file was left behind, a summary was lost, or the interpreter was finalised while onnxruntime's threads
still ran and the process aborted (SIGABRT). After the grace period a signal stops the command again, so a stop
that did not happen (a ``KeyboardInterrupt`` that Python swallows because it arrived inside a finaliser) or a
clean-up that hangs can still be interrupted; SIGKILL (or Ctrl-\\, SIGQUIT) ends it at once.

Imported by the console script before anything heavy, so a Ctrl-C while the commands' modules load is exit 130
too. Nothing here is installed by ``import facelm``: library users keep their own handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

__all__ = ["GRACE_S", "ignore", "install", "mark_stopping", "restore", "stopping"]

#: seconds after a first signal during which further ones are ignored
GRACE_S = 5.0
_first: float | None = None  # time.monotonic() of the signal (or mark_stopping) that is stopping the command


def _on_signal(signum: int, frame: object) -> None:
    global _first
    now = time.monotonic()
    if _first is not None and now - _first < GRACE_S:
        return  # stopping already: let the clean-up finish
    _first = now
    raise KeyboardInterrupt


def install() -> dict:
    """Route SIGINT and SIGTERM to the handler above (main thread only; a signal the parent process set to be
    ignored, as a shell does for SIGINT in background jobs, stays ignored). Returns the handlers it replaced, for
    ``restore`` (a command run inside another program gives them back when it ends)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            old = signal.getsignal(s)
            if old is not signal.SIG_IGN and old is not _on_signal:
                signal.signal(s, _on_signal)
                replaced[s] = old
    return replaced


def restore(replaced: dict) -> None:
    """Put back the handlers ``install`` replaced."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s, h in replaced.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on (the console script, once its command has finished or stopped and the
    process is ending)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(s, signal.SIG_IGN)


def mark_stopping() -> None:
    """The command is stopping for another reason than these handlers (``train``'s SIGTERM flag): signals in the
    next ``GRACE_S`` seconds are ignored as after a first Ctrl-C. Harmless where the handlers are not installed."""
    global _first
    _first = time.monotonic()


def stopping() -> bool:
    """Whether a signal (or ``mark_stopping``) started the command's stop less than ``GRACE_S`` seconds ago."""
    return _first is not None and time.monotonic() - _first < GRACE_S
