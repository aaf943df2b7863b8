"""``facelm prepare``: raw dataset -> manifest.jsonl + crop cache."""


from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import check_range, emit_json, handle_errors, info, progress_bar, table, warn
from facelm.errors import ExitCode

EPILOG = """Examples:

1. `facelm prepare ../shared/data/ytf68-train --out work/ytf --holdout 0.1`  (plain CSV, 10% of identities to val)

2. `facelm prepare ~/data/300W --format pts --out work/300w`  (iBUG tree; 300W test subsets tagged from the paths)

3. `facelm prepare AFLWinfo_release.mat --format aflw-mat --out work/aflw`  (AFLW-Full 20,000/4,386 split)

4. `facelm prepare data.csv --format csv --scheme my_scheme.toml --out work/mine`  (a custom scheme)

5. `facelm prepare ../shared/data/ytf68-train ../shared/data/utkface-dlib68 --out work/all68 --holdout 0.1`  (merge sets)

Writes DIR/manifest.jsonl, DIR/crops.npy and DIR/prepare.json; prints a JSON summary on stdout.
Exit codes: 0 ok, 1 some faces skipped (listed in the summary), 2 usage, 3 nothing usable.
"""


def register(app: typer.Typer) -> None:
    from facelm.datasets import READERS

    formats = ", ".join(["auto", *sorted(READERS)])

    @app.command(name="prepare", epilog=EPILOG, no_args_is_help=True)
    @handle_errors
    def prepare_cmd(
        source: Annotated[list[Path], typer.Argument(
            help="Dataset folder(s) or annotation file(s); several sources of one scheme are merged.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the prepared dataset.")],
        fmt: Annotated[str, typer.Option("--format", "-f", help=f"Input format: {formats}.")] = "auto",
        scheme: Annotated[str | None, typer.Option(
            help="Landmark scheme name or .json/.toml scheme file (default: from the format / point count).")] = None,
        split: Annotated[str, typer.Option(help="train, test, or auto (from the dataset; train when it has none).")
                         ] = "auto",
        holdout: Annotated[float, typer.Option(
            help="Move this fraction of training groups (identities: image stem without its trailing number) "
                 "to a 'val' split, deterministically.")] = 0.0,
        cache_size: Annotated[int, typer.Option(help="Crop cache resolution in pixels.")] = 192,
        margin: Annotated[float, typer.Option(help="Cache crop side as a multiple of the face box side.")] = 1.8,
        workers: Annotated[int, typer.Option(help="Decoding threads (0 = all cores).")] = 0,
        limit: Annotated[int, typer.Option(help="Only the first N faces (0 = all).")] = 0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table or progress on stderr.")] = False,
    ) -> None:
        """Prepare a dataset: read annotations, crop every face once into a compact cache, write a manifest."""
        from facelm.limits import MAX_THREADS
        from facelm.prepare import MAX_CACHE_SIZE, PrepareOptions, prepare

        check_range("--holdout", holdout, 0.0, 1.0, hi_open=True)
        check_range("--cache-size", cache_size, 32, MAX_CACHE_SIZE)
        check_range("--margin", margin, 1.0)
        check_range("--workers", workers, 0, MAX_THREADS)
        check_range("--limit", limit, 0)

        opts = PrepareOptions(source=source, out=out, fmt=fmt, scheme=scheme, split=split, holdout=holdout,
                              cache_size=cache_size, margin=margin, workers=workers, limit=limit)
        warnings: list[str] = []
        try:
            bar = progress_bar()
            bar.disable = quiet
            task = bar.add_task("prepare", total=None, status="", visible=not quiet)

            def on_progress(done: int, total: int) -> None:
                if not quiet and not bar.live.is_started:  # started with the work, so an early error is one line
                    bar.start()
                bar.update(task, completed=done, total=total)

            try:
                result = prepare(opts, progress=on_progress, warn=warnings.append)
            except BaseException:
                bar.live.transient = True  # no half-drawn bar above the error message
                raise
            finally:
                if bar.live.is_started:  # (stopping a bar never started prints an empty line)
                    bar.stop()
        finally:
            # also when prepare fails ("none of the N faces could be used"): the reasons are only here then
            for w in warnings[:20]:
                warn(w)
            if len(warnings) > 20:
                warn(f"... and {len(warnings) - 20} more skipped (see 'skipped_faces' in the JSON summary)")
        s = result.summary
        if not quiet:
            rows = [("faces", s["faces"]), ("images", s["images"]), ("skipped", s["skipped"]),
                    ("scheme", s["scheme"]), ("format", s["format"])]
            rows += [(f"split {k}", v) for k, v in s["splits"].items()]
            rows += [(f"subset {k}", v) for k, v in s["subsets"].items()]
            rows += [("images/s", s["images_per_s"]), ("cache", f"{s['cache']['bytes'] / 1e6:.0f} MB")]
            table(f"prepared {out}", ["what", "count"], rows)
            info(f"next: facelm train --data {out} --arch cnn6 --loss wing --out runs/cnn6")
        emit_json(s)
        if s["skipped"]:
            raise typer.Exit(int(ExitCode.PARTIAL))
