"""The ``facelm`` Typer application: the group, its ``--version`` and its commands (``facelm.cli.app``)."""

from __future__ import annotations

from typing import Annotated

import typer

from facelm import __version__
from facelm import _signals
from facelm.cli._common import make_app

app = make_app(
    "**facelm**: facial landmark localisation (Wing loss, CNN-6/7, pose-based balancing, ONNX predictor).\n\n"
    "Examples:\n\n"
    "1. `facelm prepare ../shared/data/ytf68-train --out work/ytf --holdout 0.1`\n\n"
    "2. `facelm balance work/ytf --out work/ytf-bal`\n\n"
    "3. `facelm train --data work/ytf --arch cnn6 --loss wing --out runs/cnn6`\n\n"
    "4. `facelm evaluate --data work/ytf --protocol custom --plot ced.png runs/cnn6/best.pt`\n\n"
    "5. `facelm export runs/cnn6/best.pt --out mymodels/cnn6.onnx`\n\n"
    "6. `find photos -name '*.jpg' | facelm predict - --models mymodels | jq .faces`\n\n"
    "stdout carries data only (JSON/JSONL/CSV); humans read stderr. "
    "Exit codes: 0 ok, 1 finished with failures, 2 usage, 3 bad input data, 4 model mismatch, 5 training diverged, 130 interrupted."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facelm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """facelm command line."""
    # Ctrl-C and SIGTERM (kill, schedulers): exit 130, no temp files; a second one is ignored. Run inside another
    # program (facelm.cli.app), its own handlers come back when the command ends.
    replaced = _signals.install()
    ctx.call_on_close(lambda: _signals.restore(replaced))


from facelm.cli import prepare as _prepare  # noqa: E402
from facelm.cli import train as _train  # noqa: E402
from facelm.cli import predict as _predict  # noqa: E402
from facelm.cli import bench as _bench  # noqa: E402
from facelm.cli import export as _export  # noqa: E402
from facelm.cli import balance as _balance  # noqa: E402
from facelm.cli import evaluate as _evaluate  # noqa: E402

_prepare.register(app)
_train.register(app)
_predict.register(app)
_bench.register(app)
_export.register(app)
_balance.register(app)
_evaluate.register(app)

