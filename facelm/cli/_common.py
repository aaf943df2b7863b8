"""Shared CLI plumbing: the stderr console, the stdout data sink, exit codes and error handling."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import types
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as click_exc
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from facelm._io import json_clean
from facelm.errors import ExitCode, FacelmError, UsageError

# No markup or emoji in what we print: file names and option values are shown as given ("a[/b].jpg" is not a
# closing tag, "cuda:-1:" is not an emoji code); the few styled words are passed as styles.
err_console = Console(stderr=True, highlight=False, emoji=False)

APP_SETTINGS = dict(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                    rich_markup_mode="markdown", context_settings={"help_option_names": ["-h", "--help"]})


_METAVARS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "path": "PATH", "file": "FILE",
             "directory": "DIR", "bool": None}


def _metavar(param, ctx) -> str | None:
    """A help metavar in the usual style (INTEGER, FLOAT, TEXT, PATH, a|b) instead of Python type names; none
    for plain flags."""
    if getattr(param, "metavar", None) is not None:
        return param.metavar
    if isinstance(param, TyperOption) and (param.is_flag or param.count):
        return None
    label = TyperArgument.display_type(param, ctx) if isinstance(param, TyperArgument) \
        else TyperOption.display_type(param, ctx)
    if label is None:
        return None
    label = label.strip("<>")
    many = label.startswith("list[") or param.nargs != 1
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if "|" not in label:
        label = _METAVARS.get(label.lower(), label.upper())
        if label is None:
            return None
    return label + ("..." if many else "")


def _argument_label(param) -> str:
    """An argument's name as the docs write it: `SOURCE` for `sources` (repeatable: one SOURCE...), `DATA`."""
    name = (param.metavar or param.name).rstrip(".").upper()
    return name[:-1] if param.nargs != 1 and name.endswith("S") and not param.metavar else name


def _usage_piece(param, ctx) -> list[str]:
    """An argument in the usage line as in the docs, `SOURCE...` or `[FOLDER]`, not Typer's `{sources}...`."""
    name = _argument_label(param)
    name = name if param.required else f"[{name}]"
    return [name + ("..." if param.nargs != 1 else "")]


def _error_hint(param) -> str:
    """An argument as errors name it ("Missing argument 'SOURCE...'"), as the usage line and the docs do."""
    return f"'{_argument_label(param)}{'...' if param.nargs != 1 else ''}'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class FacelmCommand(TyperCommand):
    """A command whose command-line errors are one ``error:`` line on stderr with exit 2 (no boxed usage text),
    whose help, when called without arguments, goes to stderr (stdout carries data only), and whose help shows
    plain metavars."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            p.display_type_rich = types.MethodType(_metavar, p)
            if isinstance(p, TyperArgument):
                p.get_usage_pieces = types.MethodType(_usage_piece, p)
                p.get_error_hint = types.MethodType(_error_hint, p)

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.display_type_rich = types.MethodType(_metavar, opt)
        return opt

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            _help_to_stderr(ctx)
        if not ctx.resilient_parsing and (msg := empty_value(self.params, args)):
            error(msg)  # worded as the commands' own checks (`check_not_empty`)
            ctx.exit(int(ExitCode.USAGE))
        with _usage_errors_in_one_line(ctx):
            return super().parse_args(ctx, args)


class FacelmGroup(TyperGroup):
    """The ``facelm`` group itself, with its commands' manners: called without arguments its help goes to stderr
    (exit 2), and an unknown command or option is one ``error:`` line (exit 2), not a boxed usage text."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            _help_to_stderr(ctx)
        with _usage_errors_in_one_line(ctx):
            return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        with _usage_errors_in_one_line(ctx):
            return super().resolve_command(ctx, args)


def _help_to_stderr(ctx: Any) -> None:
    with contextlib.redirect_stdout(sys.stderr):
        text = ctx.get_help()  # Rich prints it (to stderr here); plain Click returns it
    if text:
        sys.stderr.write(text + "\n")
    ctx.exit(int(ExitCode.USAGE))


@contextlib.contextmanager
def _usage_errors_in_one_line(ctx: Any):
    try:
        yield
    except click_exc.UsageError as e:
        if ctx.resilient_parsing:
            raise
        msg = _one_line(e.format_message()).replace(": Value error, ", ": ")  # (pydantic's prefix, via Typer)
        error(f"{msg} (see '{ctx.command_path} --help')")
        ctx.exit(int(ExitCode.USAGE))


def empty_value(params: list, args: list[str]) -> str | None:
    """The usage error for the first empty (or blank) value in the command line ``args`` of a command with
    ``params``: an option's value (`-o "$UNSET"`, `--out=`) or an argument. No facelm option or argument takes an
    empty string, and Typer would read "" given for a path as ``Path(".")``, the current folder. None: none."""
    takes_value = {}
    for p in params:
        if isinstance(p, TyperOption) and not (p.is_flag or p.count):
            name = next((o for o in p.opts if o.startswith("--")), p.opts[0])
            takes_value.update(dict.fromkeys(p.opts, name))
    argument = next((p for p in params if isinstance(p, TyperArgument)), None)
    label = _argument_label(argument) if argument is not None else "command-line"
    i, options = 0, True
    while i < len(args):
        a = args[i]
        if options and a == "--":
            options = False
        elif options and a in takes_value:
            if i + 1 < len(args) and not args[i + 1].strip():
                return f"{takes_value[a]} must not be empty, got {args[i + 1]!r}"
            i += 1
        elif options and a.startswith("--") and (opt := a.partition("=")[0]) in takes_value \
                and not (value := a.partition("=")[2]).strip():
            return f"{takes_value[opt]} must not be empty, got {value!r}"
        elif not a.strip():
            return f"a {label} argument is an empty string"
        i += 1
    return None


class _FacelmTyper(typer.Typer):
    def command(self, *args: Any, cls: Any = None, **kwargs: Any):  # type: ignore[override]
        return super().command(*args, cls=cls or FacelmCommand, **kwargs)


def make_app(help: str, **kw: Any) -> typer.Typer:
    return _FacelmTyper(help=help, cls=FacelmGroup, **{**APP_SETTINGS, **kw})


# -- option values -------------------------------------------------------------------------------------------------


def _g(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_not_empty(*pairs: tuple[str, str | None]) -> None:
    """``UsageError`` for an option given as an empty string (`-o "$UNSET"`): options that name files are typed
    ``str`` for this, since Typer reads "" as ``Path(".")``, the current folder."""
    for option, value in pairs:
        if value is not None and not value.strip():
            raise UsageError(f"{option} must not be empty, got {value!r}")


def check_range(option: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, allow_inf: bool = False,
                also: tuple = ()) -> None:
    """Raise ``UsageError`` (exit 2, one line naming ``option`` and the allowed range) unless ``value`` is a
    number in the range; ``None`` (option not given) passes. NaN never passes; infinity only with ``allow_inf``.
    ``also``: extra accepted values outside the range (e.g. 0 meaning "auto")."""
    from facelm.errors import UsageError

    if value is None or value in also:
        return
    if lo is not None and hi is not None:
        rng = f"in {'(' if lo_open else '['}{_g(lo)}, {_g(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        rng = f"{'>' if lo_open else '>='} {_g(lo)}"
    elif hi is not None:
        rng = f"{'<' if hi_open else '<='} {_g(hi)}"
    else:
        rng = "a finite number"
    if also:
        rng += " (or " + ", ".join(_g(a) for a in also) + ")"
    ok = not (isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not allow_inf)))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise UsageError(f"{option} must be {rng}, got {_g(value)}")


def check_device(option: str, value: str | None) -> None:
    """``UsageError`` unless ``value`` is auto, cpu, cuda or cuda:N (N >= 0), whether or not it is used later
    (an ``evaluate`` of prediction files never runs a network)."""
    from facelm.errors import UsageError
    from facelm.ort import parse_device

    try:
        parse_device(value)
    except UsageError:
        raise UsageError(f"{option} must be auto, cpu, cuda or cuda:N, got {value!r}") from None


def check_output_file(option: str, path: Any) -> None:
    """``UsageError`` when an output file path names an existing folder (or its folder is a file)."""
    from pathlib import Path

    from facelm.errors import UsageError

    if path is None or str(path) in ("", "-"):
        return
    from facelm._io import check_folder_creatable, special_target

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder; give a file name")
    if special_target(p):  # /dev/stdout, a FIFO: written straight through, its folder (/dev) need not be writable
        return
    check_folder_creatable(option, p.parent, shown=p)


# -- signals -------------------------------------------------------------------------------------------------------


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(json_clean(obj), indent=indent, default=str, allow_nan=False)


def emit_json(obj: Any, indent: int | None = None) -> None:
    """Write one JSON document (one line unless ``indent``) to stdout: data only."""
    sys.stdout.write(dumps(obj, indent) + "\n")
    sys.stdout.flush()


# The library names its parameters in its messages as `name`; the CLI shows its own flag for each (--name, with
# the few flags that are not the parameter's name listed here).
PARAM_FLAGS = {"weights": "--weight", "activation_type": "--activations", "checkpoint": "CHECKPOINT"}
_PARAM_RE = re.compile(r"(?<!`)`([a-z][a-z0-9_]*)`(?!`)")


def cli_message(msg: str) -> str:
    """A library message in the CLI's words: each `parameter` becomes the command-line flag that sets it."""
    return _PARAM_RE.sub(lambda m: PARAM_FLAGS.get(m[1], "--" + m[1].replace("_", "-")), msg)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _line(msg: str) -> str:
    """``msg`` on one line, markup-free: control characters (a newline in a file name) shown as escapes."""
    return escape(_CONTROL.sub(lambda m: repr(m[0])[1:-1], cli_message(str(msg).strip())))


def warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {_line(msg)}", markup=True, soft_wrap=True)


def info(msg: str, style: str | None = None) -> None:
    err_console.print(msg, markup=False, style=style, soft_wrap=True)


def error(msg: str) -> None:
    err_console.print(f"[red]error:[/red] {_line(msg)}", markup=True, soft_wrap=True)


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    """A table on stderr. Columns keep at least their header's width: on a narrow terminal (80 columns) the table
    is drawn wider than the terminal rather than cutting headers down to unreadable fragments."""
    from rich.measure import Measurement

    rows = [[str(v) for v in r] for r in rows]
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        # the whole header (a header wrapped at its spaces, "int8 / fp32" over "speed", reads as two columns)
        longest = max([len(c)] + [len(r[i]) for r in rows if i < len(r)] + [1])
        t.add_column(c, justify="right" if c[:1].isdigit() or c in ("faces", "n", "count") else "left",
                     min_width=min(longest, 40))
    for r in rows:
        t.add_row(*(escape(v) for v in r))
    need = Measurement.get(err_console, err_console.options, t).minimum
    err_console.print(t, width=max(err_console.width, need), crop=False)


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
