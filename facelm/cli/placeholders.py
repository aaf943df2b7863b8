"""Commands whose implementation has not landed yet: they say so clearly and exit with code 2."""

from __future__ import annotations

import typer

from facelm.cli._common import error
from facelm.errors import ExitCode

_PENDING = {
    "balance": "pose-based data balancing",
    "train": "training CNN-6/CNN-7",
    "evaluate": "evaluation protocols and metrics",
    "export": "ONNX export",
    "predict": "the two-stage ONNX predictor",
}


def register(app: typer.Typer) -> None:
    existing = {c.name for c in app.registered_commands}
    for name, what in _PENDING.items():
        if name in existing:
            continue

        app.command(name=name, help=f"{what[0].upper() + what[1:]} (not implemented yet).",
                    context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_make(name, what))


def _make(name: str, what: str):
    def cmd(ctx: typer.Context) -> None:
        error(f"`facelm {name}` ({what}) is not implemented yet in this version")
        raise typer.Exit(int(ExitCode.USAGE))

    return cmd
