"""``facelm balance``: pose-based data balancing of a prepared dataset's training split (docs/balance.md)."""

# no `from __future__ import annotations` here: Typer evaluates the annotations below

from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import emit_json, handle_errors, info, table, warn

EPILOG = """Examples:

1. `facelm balance work/ytf --out work/ytf-bal --plot work/ytf-bal/hist.png`  (9 bins for 300w68)

2. `facelm balance work/aflw --out work/aflw-bal`  (17 bins for aflw19, as in the paper)

3. `facelm balance work/ytf --out work/ytf-bal-sqrt --target sqrt --max-dup 4`  (milder flattening)

4. `facelm evaluate --data work/ytf --split val --pose-model work/ytf-bal/pose_model.json runs/cnn6`  (by pose)

Fits the pose model on the training split only (Procrustes, PCA, the component that tracks the left/right
asymmetry, signed so that + = face turned toward the image right), bins the pose coordinate and duplicates
faces of thin bins. DIR gets manifest.jsonl (all original lines, then the duplicates, marked with dup_of),
prepare.json (pointing at the ORIGINAL crops.npy: no image data is copied) and pose_model.json. Prints the
summary JSON (histograms before/after) on stdout and a table on stderr. See docs/balance.md.

Exit codes: 0 ok, 2 usage (bad --bins/--target/--max-dup/--component/--seed; --out is empty, a file, not
writable, the source or a prepared folder, or a folder that is neither empty nor an earlier balance's output;
--plot of an unknown type, a folder or not writable), 3 bad data (no manifest, mixed schemes, no training split,
already balanced, degenerate faces, fewer faces than bins, no pose component found).
"""

DATA_HELP = "Prepared dataset folder (from `facelm prepare`) or its manifest.jsonl."
OUT_HELP = ("Output folder for the balanced manifest (a new or empty folder, or an earlier balance's output, "
            "whose files are replaced; the crop cache is not copied).")
BINS_HELP = "Number of histogram bins K (default: 17 for aflw19, 9 for 300w68 and every other scheme)."
TARGET_HELP = ("uniform: bring every non-empty bin up to the largest bin's count; sqrt: up to the geometric "
               "mean of its count and the largest (milder).")
MAX_DUP_HELP = "At most this many copies of one face (a bin grows at most 1 + N times)."
SEED_HELP = "Seed for which faces of a bin get the one extra copy when copies do not divide evenly."
COMPONENT_HELP = ("Use this principal component (0-based) as the pose axis instead of choosing the one that "
                  "correlates best with the left/right asymmetry.")
PLOT_HELP = "Draw the histograms before and after in one figure (.png, .pdf, .svg, ...)."
QUIET_HELP = "No table on stderr (warnings and errors still)."


def _fmt(v: float) -> str:
    return f"{v:+.3f}"


def register(app: typer.Typer) -> None:
    @app.command(name="balance", epilog=EPILOG, no_args_is_help=True)
    @handle_errors
    def balance_cmd(
        data: Annotated[Path, typer.Argument(help=DATA_HELP, show_default=False)],
        out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help=OUT_HELP, show_default=False)],
        bins: Annotated[int | None, typer.Option("--bins", "-k", help=BINS_HELP, show_default=False)] = None,
        target: Annotated[str, typer.Option(help=TARGET_HELP)] = "uniform",
        max_dup: Annotated[int, typer.Option("--max-dup", help=MAX_DUP_HELP)] = 10,
        seed: Annotated[int, typer.Option(help=SEED_HELP)] = 0,
        component: Annotated[int | None, typer.Option(help=COMPONENT_HELP, show_default=False)] = None,
        plot: Annotated[Path | None, typer.Option(help=PLOT_HELP, show_default=False)] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Pose-based data balancing: duplicate training faces of rare poses (Wing paper's hard sample mining)."""
        from facelm.balance import balance_manifest, plot_histograms
        from facelm.cli._common import check_output_file
        from facelm.errors import UsageError

        if plot is not None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            kinds = FigureCanvasAgg(Figure()).get_supported_filetypes()
            if plot.suffix.lower().lstrip(".") not in kinds:
                raise UsageError(f"--plot {plot}: unknown image type; use one of "
                                 f"{', '.join('.' + k for k in sorted(kinds))}")
            check_output_file("--plot", plot)  # a folder, or a place nothing can be written: before any work
        res = balance_manifest(data, out, bins, target=target, max_dup=max_dup, seed=seed, component=component,
                               warn=warn)
        s = res.summary
        if plot is not None:
            name = Path(s["source"]).parent.name
            plot_histograms(plot, s["hist_before"], s["hist_after"], s["bin_edges"],
                            f"{name}: pose histogram, K={s['bins']} ({s['target']}, max {s['max_dup']} copies)")
            s["plot"] = str(plot)
        if not quiet:
            e = s["bin_edges"]
            rows = []
            for j, (a, b) in enumerate(zip(s["hist_before"], s["hist_after"])):
                factor = f"{b / a:.2f}" if a else "-"
                mark = " (cap)" if j in s["capped_bins"] else ""
                rows.append([j, f"[{_fmt(e[j])}, {_fmt(e[j + 1])})", a, b, factor + mark])
            rows.append(["all", "", s["faces_before"], s["faces_after"],
                         f"{s['faces_after'] / max(1, s['faces_before']):.2f}"])
            table(f"pose bins of {s['source']} (train split): component PC{s['component']} "
                  f"({100 * s['explained_variance']:.1f}% of shape variance, asymmetry rho "
                  f"{s['asymmetry_corr']:.2f}), + = turned toward the image right",
                  ["bin", "pose coordinate", "before", "after", "factor"], rows)
            info(f"{s['added_lines']} duplicates of {s['duplicated_faces']} faces added; wrote "
                 f"{out}/manifest.jsonl (crops: {s['crops']}) and {s['pose_model']}")
            if s["capped_bins"]:
                info(f"bins {s['capped_bins']} reached the --max-dup {s['max_dup']} cap")
            if plot is not None:
                info(f"histograms drawn to {plot}")
            info(f"next: facelm train --data {out} --arch cnn6 --loss wing --out runs/cnn6-bal")
        emit_json(s)
