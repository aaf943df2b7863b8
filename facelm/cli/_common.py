"""Shared CLI plumbing: the stderr console, the stdout data sink, exit codes and error handling."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from facelm._io import json_clean
from facelm.errors import ExitCode, FacelmError

err_console = Console(stderr=True, highlight=False)

APP_SETTINGS = dict(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                    rich_markup_mode="markdown", context_settings={"help_option_names": ["-h", "--help"]})


def make_app(help: str, **kw: Any) -> typer.Typer:
    return typer.Typer(help=help, **{**APP_SETTINGS, **kw})


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(json_clean(obj), indent=indent, default=str, allow_nan=False)


def emit_json(obj: Any, indent: int | None = None) -> None:
    """Write one JSON document (one line unless ``indent``) to stdout: data only."""
    sys.stdout.write(dumps(obj, indent) + "\n")
    sys.stdout.flush()


def emit_csv(rows: Iterable[dict], fieldnames: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    sys.stdout.write(buf.getvalue())
    sys.stdout.flush()


def warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {msg}", markup=True, soft_wrap=True)


def info(msg: str) -> None:
    err_console.print(msg, soft_wrap=True)


def error(msg: str) -> None:
    err_console.print(f"[red]error:[/red] {msg}", markup=True, soft_wrap=True)


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c[:1].isdigit() or c in ("faces", "n", "count") else "left")
    for r in rows:
        t.add_row(*[str(v) for v in r])
    err_console.print(t)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=err_console,
                    transient=transient)


def handle_errors(fn: Callable) -> Callable:
    """Turn FacelmError into a one-line message and its exit code; Ctrl-C into exit 130."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FacelmError as e:
            error(str(e))
            raise typer.Exit(int(e.code)) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


@contextmanager
def quiet_numpy():
    import numpy as np

    with np.errstate(all="ignore"):
        yield
