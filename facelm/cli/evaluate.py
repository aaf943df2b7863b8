"""``facelm evaluate``: score checkpoints and prediction files on a prepared dataset under a named protocol."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import (
    check_device, check_not_empty, check_output_file, emit_json, error, handle_errors, info, table, warn
)
from facelm.errors import ExitCode, UsageError
from facelm.metrics import NORMALISERS
from facelm.protocols import PROTOCOLS

# help texts are module globals: Typer evaluates the (string) annotations in this module's namespace
_PROTOCOLS = ", ".join(PROTOCOLS)
_NORMALISERS = ", ".join(NORMALISERS)
_POSE_MODEL_HELP = ("pose_model.json from `facelm balance`: also break the results down by pose bin (of each "
                    "face's ground truth), as 'pose_bins' in the JSON and a table.")

EPILOG = """Examples:

1. `facelm evaluate --data work/300w --protocol 300w runs/cnn6/best.pt`  (inter-ocular; common/challenging/full)

2. `facelm evaluate --data work/300w --protocol 300w --norm inter-pupil runs/a.pt runs/b.pt --plot ced.png`

3. `facelm evaluate --data work/aflw --protocol aflw-full runs/cnn6/best.pt+runs/cnn7/best.pt`  (two stages)

4. `facelm evaluate --data work/wflw --protocol wflw preds.jsonl dlib.jsonl --per-face faces.csv`

5. `facelm evaluate --data work/ytf --protocol custom --norm box-diagonal runs/cnn6 --fail-above 0.05`

6. `facelm evaluate --data work/ytf --split val --pose-model work/ytf-bal/pose_model.json runs/a runs/b`  (by pose)

MODEL is a checkpoint (.pt, or a run folder holding best.pt), a STAGE1.pt+STAGE2.pt pair, an exported .onnx
model or STAGE1.onnx+STAGE2.onnx pair, or a predictions file: JSONL, JSON or CSV, whichever `facelm predict`
writes (any tool's predictions in the same format). Faces use the manifest's
ground-truth boxes. Prints one JSON object per model on stdout and a table on stderr; see docs/protocols.md.

Exit codes: 0 ok, 1 --fail-above exceeded or faces without a prediction, 2 usage (unknown protocol, --norm or
--split, an empty path, a MODEL of no kind listed above (a .parquet: convert it first), an output path that is a
folder, an input or another output), 3 bad data (no faces selected, zero normaliser), 4 model (unreadable,
scheme or point-count mismatch; unreadable --pose-model or one fitted on another scheme).
"""


def _pct(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f}"


def _num(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _check_plot_suffix(path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in kinds:
        raise UsageError(f"--plot {path}: unknown image type; use one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}")


def _input_files(data: str, models: list[str], pose_model: str | None, scheme_map: list[str] | None
                 ) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file evaluate reads: the dataset's manifest, prepare.json and crop cache (the one
    prepare.json points to, too), each MODEL's file(s) and the --pose-model and --scheme-map files."""
    import json

    from facelm.manifest import CROPS_NAME, PREPARE_NAME, manifest_path

    mp = manifest_path(data)
    found = [("--data", mp), ("--data", mp.parent / PREPARE_NAME), ("--data", mp.parent / CROPS_NAME)]
    try:
        crops = json.loads((mp.parent / PREPARE_NAME).read_text(encoding="utf-8")).get("crops")
        if isinstance(crops, str) and crops:
            found.append(("--data", mp.parent / crops))
    except (OSError, ValueError, AttributeError):
        pass  # no or a bad prepare.json: reported by the evaluation itself
    for spec in models:
        parts = [spec] if Path(spec).exists() or "+" not in spec else spec.split("+")
        for q in map(Path, parts):
            found.append(("MODEL", q / "best.pt" if q.is_dir() else q))
    found += [("--pose-model", Path(pose_model))] if pose_model else []
    found += [("--scheme-map", Path(f)) for f in scheme_map or []]
    return found


def _same_file(a: Path, b: Path) -> bool:
    import os

    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # hard links too
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs_apart(outputs: dict[str, Path | None], inputs: list[tuple[str, Path]]) -> None:
    """``UsageError`` when an output file is one of the inputs or another output (it would replace it); devices
    and FIFOs (``/dev/null``) are written straight through, never replaced, so they may repeat."""
    from facelm._io import special_target

    given = [(opt, p) for opt, p in outputs.items() if p is not None and str(p) not in ("", "-")
             and not special_target(p)]
    for k, (opt, p) in enumerate(given):
        for what, q in inputs:
            if _same_file(p, q):
                raise UsageError(f"{opt} {p}: is an input of this evaluation ({what} {q}); writing it would "
                                 "replace it; give another file name")
        for other, q in given[:k]:
            if _same_file(p, q):
                raise UsageError(f"{opt} {p}: is also the {other} output; give each output its own file")


def register(app: typer.Typer) -> None:
    @app.command(name="evaluate", epilog=EPILOG, no_args_is_help=True)
    @handle_errors
    def evaluate_cmd(
        models: Annotated[list[str], typer.Argument(
            help="Checkpoints (.pt, run folders, STAGE1.pt+STAGE2.pt), ONNX models (.onnx, STAGE1+STAGE2) and/or "
                 "predictions files (.jsonl, .json, .csv from facelm predict).",
            show_default=False)],
        data: Annotated[str, typer.Option("--data", "-d", metavar="DIR", show_default=False,
                                          help="Prepared dataset folder (from `facelm prepare`).")],
        protocol: Annotated[str, typer.Option("--protocol", "-p", help=f"Evaluation protocol: {_PROTOCOLS}.")
                            ] = "custom",
        norm: Annotated[str | None, typer.Option(
            help=f"Normaliser ({_NORMALISERS}); 300w: inter-ocular (default) or inter-pupil; "
                 "custom: any (default inter-ocular, box-width for aflw19).")] = None,
        split: Annotated[str, typer.Option(help="auto (test, else val, else all faces), test, val, train or all.")
                         ] = "auto",
        per_face: Annotated[Path | None, typer.Option(
            "--per-face", help="Write model,id,image,subset,nme,status per face to this CSV.")] = None,
        plot: Annotated[Path | None, typer.Option(help="Draw the CED curves of all models to this image (.png).")
                        ] = None,
        ced_csv: Annotated[Path | None, typer.Option("--ced-csv", help="Write the CED curves to this CSV.")
                           ] = None,
        fail_above: Annotated[float | None, typer.Option(
            "--fail-above", help="Exit 1 when any model's mean NME is above this value.")] = None,
        skip_missing: Annotated[bool, typer.Option(
            "--skip-missing", help="Leave faces without a prediction out (default: count them as failures).")
        ] = False,
        pose_model: Annotated[str | None, typer.Option("--pose-model", metavar="FILE", help=_POSE_MODEL_HELP)
                              ] = None,
        scheme_map: Annotated[list[str] | None, typer.Option(
            "--scheme-map", metavar="FILE", help="A scheme-map file for predictions in another scheme than the "
                                                 "data (docs/formats.md, 'Scheme maps'); repeatable.")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (checkpoints).",
                                            envvar="FACELM_DEVICE")] = "auto",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table or notes on stderr (errors and "
                                                                  "warnings still).")] = False,
    ) -> None:
        """Score models on a prepared dataset under a named protocol; the normaliser is always stated."""
        from facelm.evaluate import (
            EvalOptions, evaluate, plot_report, report_title, save_report_ced_csv, short_labels,
            write_per_face_csv
        )
        from facelm.metrics import metric_key

        check_device("--device", device)
        # --scheme-map is typed str: Typer reads "" as Path("."), the current folder
        check_not_empty(("--data", data), ("--pose-model", pose_model),
                        *[("--scheme-map", f) for f in scheme_map or []])
        if any(not m.strip() for m in models):
            raise UsageError("a MODEL argument is an empty string")
        outputs = {"--per-face": per_face, "--plot": plot, "--ced-csv": ced_csv}
        for opt, path in outputs.items():
            check_output_file(opt, path)  # before the work: a folder here used to fail after all of it
        _check_outputs_apart(outputs, _input_files(data, models, pose_model, scheme_map))
        if plot is not None:
            _check_plot_suffix(plot)
        if fail_above is not None and not (math.isfinite(fail_above) and fail_above >= 0):
            raise UsageError(f"--fail-above must be a non-negative number, got {fail_above}")
        if scheme_map:
            from facelm.scheme_maps import load_map_file

            for f in scheme_map:
                load_map_file(f)
        opts = EvalOptions(data=data, protocol=protocol, norm=norm, split=split, skip_missing=skip_missing,
                           device=device, pose_model=pose_model)
        note = (lambda msg: None) if quiet else info
        report = evaluate(models, opts, warn=warn, info=note)
        records = report.records()
        for rec in records:
            emit_json(rec)

        ev = report.eval_set
        thr = ev.thresholds
        if not quiet:
            cols = ["model", "faces", "NME %", "median %"]
            cols += [f"FR@{t:g} %" for t in thr] + [f"AUC@{t:g}" for t in thr] + ["missing", "NaN"]
            names = dict(zip([r["model"] for r in records], short_labels([r["model"] for r in records]),
                             strict=True))
            rows = [[names[r["model"]], r["n"], _pct(r["nme"]), _pct(r["median"])]
                    + [_pct(r[metric_key("fr", t)], 2) for t in thr] + [_num(r[metric_key("auc", t)]) for t in thr]
                    + [r["missing"], r["n_failed_nonfinite"]] for r in records]
            sel = f", {ev.selection}" if ev.selection else ""
            table(f"{ev.protocol.name}: split {ev.split}{sel}, {len(ev.manifest)} faces, normaliser "
                  f"{ev.normaliser} ({ev.normaliser_definition})", cols, rows)
            sub_rows = [[names[r["model"]], tag, s["n"], _pct(s["nme"])]
                        + [_pct(s[metric_key("fr", t)], 2) for t in thr]
                        + [_num(s[metric_key("auc", t)]) for t in thr]
                        for r in records for tag, s in r["subsets"].items()]
            if sub_rows:
                table(f"{ev.protocol.name} subsets ({ev.normaliser})",
                      ["model", "subset", "faces", "NME %"] + [f"FR@{t:g} %" for t in thr]
                      + [f"AUC@{t:g}" for t in thr], sub_rows)
            pose_rows = [[names[r["model"]], tag, "-" if s["range"] is None else
                          f"[{s['range'][0]:+.3f}, {s['range'][1]:+.3f})", s["n"], _pct(s["nme"])]
                         + [_pct(s[metric_key("fr", t)], 2) for t in thr]
                         for r in records for tag, s in (r.get("pose_bins") or {}).items()]
            if pose_rows:
                table(f"per pose bin ({ev.normaliser}; pose model {pose_model}, + = turned to the image right)",
                      ["model", "pose bin", "pose coordinate", "faces", "NME %"] + [f"FR@{t:g} %" for t in thr],
                      pose_rows)
        if per_face is not None:
            write_per_face_csv(per_face, report)
            note(f"per-face NMEs written to {per_face}")
        if plot is not None:
            plot_report(plot, report)
            note(f"CED plot written to {plot} ({report_title(report)})")
        if ced_csv is not None:
            save_report_ced_csv(ced_csv, report)
            note(f"CED curves written to {ced_csv}")

        code = ExitCode.OK
        if fail_above is not None:
            worse = [r for r in records if not math.isfinite(r["nme"]) or r["nme"] > fail_above]
            if worse:
                error("mean NME above --fail-above " + f"{fail_above:g}: "
                      + ", ".join(f"{r['model']} ({r['nme']:.6g})" for r in worse))
                code = ExitCode.PARTIAL
        if not skip_missing and any(r["missing"] for r in records):
            error("some faces have no prediction and were counted as failures (exit 1; --skip-missing leaves "
                  "them out instead)")
            code = ExitCode.PARTIAL
        if code != ExitCode.OK:
            raise typer.Exit(int(code))
