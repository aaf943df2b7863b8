"""``facelm train``: train CNN-6 (stage 1), CNN-7 (stage 2) or a heatmap model (hourglass, smt)."""


from pathlib import Path
from typing import Annotated

import typer

from facelm.cli._common import emit_json, handle_errors, info, progress_bar, table
from facelm.errors import ExitCode

EPILOG = """Examples:

1. `facelm train --data work/ytf --arch cnn6 --loss wing --out runs/cnn6`  (fast recipe, val split from prepare --holdout)

2. `facelm train --data work/ytf --arch cnn6 --loss l2 --recipe paper --out runs/cnn6-paper`  (the paper's SGD recipe, 120k steps)

3. `facelm train --data work/ytf --arch cnn7 --stage1 runs/cnn6/best.pt --out runs/cnn7`  (stage 2 on stage-1 crops)

3a. `facelm train --data work/ytf --arch cnn6r --init runs/cnn6/best.pt --stage1 runs/cnn6/best.pt --out runs/s2r`  (a 64-px stage 2 warm-started from stage 1)

3b. `facelm train --data work/w300 --data work/mtfl --weight 1 --weight 0.5 --arch cnn6 --out runs/multi`  (a 68-point model that also learns from 5-point faces)

3c. `facelm train --data work/w300 --init models/cnn6.onnx --full-turn 0.35 --out runs/ft`  (warm start; faces at any angle)

4. `facelm train --out runs/cnn6 --resume ...same options...`  (continue after Ctrl-C)

5. `torchrun --nproc_per_node 2 -m facelm train --data work/ytf --out runs/ddp`  (DistributedDataParallel)

6. `facelm train --data work/ytf --arch hourglass --loss awing --loss-map --out runs/hg`  (AWing heatmaps, 2 stacks)

7. `facelm train --data work/ytf --arch hourglass --loss awing --loss-map --boundary --coordconv --out runs/hg-b`

8. `facelm train --data work/ytf --arch smt --loss bice --out runs/smt`  (SMT-Net: residual branch, sigma 2 -> 1)

Writes RUN/config.json, RUN/metrics.jsonl, RUN/last.pt, RUN/best.pt and RUN/summary.json; prints the summary JSON.
Exit codes: 0 ok, 2 usage (bad options, --device cuda without CUDA, RUN holds another run), 3 bad data,
4 bad checkpoint, 5 diverged (NaN loss; last good checkpoint kept), 130 interrupted (resumable last.pt written).
"""


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def register(app: typer.Typer) -> None:
    @app.command(name="train", epilog=EPILOG, no_args_is_help=True)
    @handle_errors
    def train_cmd(
        out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="Run folder.")],
        data: Annotated[list[str] | None, typer.Option(
            metavar="DIR", help="Prepared dataset folder (from `facelm prepare`). Repeat for several sources: the "
                                "model takes the first one's scheme; others of another scheme train it through a "
                                "scheme map (docs/training.md, 'Several sources').")] = None,
        weight: Annotated[list[float] | None, typer.Option(
            metavar="W", help="Sampling weight of each --data folder, in the same order (default: all 1).")] = None,
        scheme_map: Annotated[list[str] | None, typer.Option(
            metavar="FILE", help="A scheme-map file (JSON/TOML) linking the model's scheme to a --data folder's "
                                 "(docs/formats.md, 'Scheme maps'); repeatable.")] = None,
        init: Annotated[str | None, typer.Option(
            metavar="FILE", help="Warm start from the weights of a facelm checkpoint (.pt) or ONNX model of the same "
                                 "architecture (the optimiser starts afresh).")] = None,
        rotate: Annotated[float | None, typer.Option(
            metavar="DEG", help="Augmentation rotation range, +-DEG (default 30 at stage 1, 10 at stage 2: "
                             "cnn7, cnn6r).")] = None,
        full_turn: Annotated[float | None, typer.Option(
            metavar="P", help="Probability of a rotation uniform in +-180 degrees instead (stage 1 for faces at any "
                              "in-plane angle; default 0).")] = None,
        occlude: Annotated[float | None, typer.Option(
            metavar="P", help="Probability of painting a random-colour rectangle (15-50% of the crop side each "
                              "way) over a training crop, so hidden points are learnt from the rest of the face "
                              "(default 0).")] = None,
        photometric: Annotated[float | None, typer.Option(
            metavar="P", help="Probability of a photometric change of a training crop: exposure, brightness, "
                              "contrast, saturation (a fifth of them grey), colour balance, sometimes sensor noise "
                              "and JPEG compression, so faces in poor light, black and white or from cheap cameras "
                              "read the same (default 0).")] = None,
        arch: Annotated[str | None, typer.Option(help="Network: cnn6 (64 px, stage 1), cnn7 (128 px, stage 2), "
                                                      "cnn6r (the CNN-6 network as stage 2, 64 px); "
                                                      "heatmap family: hourglass (AWing) or smt (SMT-Net).")
                        ] = None,
        loss: Annotated[str | None, typer.Option(help="cnn6/cnn7: l2, l1, smooth-l1 or wing (default); hourglass/"
                                                      "smt: awing (default), mse or bice.")] = None,
        val: Annotated[str | None, typer.Option(help="Validation dataset (default: the 'val' split of --data).")
                       ] = None,
        recipe: Annotated[str | None, typer.Option(help="fast (AdamW, warm-up, cosine; default) or paper "
                                                        "(SGD, batch 8, 120k steps, log-linear lr).")] = None,
        steps: Annotated[int | None, typer.Option(help="Training steps (default from the recipe).")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Batch size (default from the recipe).")] = None,
        lr: Annotated[float | None, typer.Option(help="Peak/start learning rate (default from the recipe).")] = None,
        wing_w: Annotated[float | None, typer.Option(help="Wing w in crop pixels (10 for cnn6, 15 for cnn7, "
                                                          "20 for cnn6r at 128 px).")
                          ] = None,
        wing_eps: Annotated[float | None, typer.Option(help="Wing epsilon in crop pixels (2 / 3 / 4).")] = None,
        stage1: Annotated[str | None, typer.Option(help="Stage-1 checkpoint (.pt) or ONNX model: stage 2 (cnn7, "
                                                        "cnn6r) trains on crops built from its predictions, as at "
                                                        "inference.")] = None,
        stacks: Annotated[int | None, typer.Option(help="Heatmap models: number of hourglasses (default 2).")
                          ] = None,
        input_size: Annotated[int | None, typer.Option(help="Heatmap models: input crop side in px (default 128 "
                                                            "-> 32 px heatmaps; the papers use 256). cnn6r: 64 "
                                                            "(default) or 128 (a 6x6 stride-2 first conv; --init "
                                                            "from a 64-px network keeps its function).")] = None,
        boundary: Annotated[bool | None, typer.Option("--boundary/--no-boundary", help="hourglass: AWing's extra "
                                                      "boundary heatmap channel.", show_default=False)] = None,
        coordconv: Annotated[bool | None, typer.Option("--coordconv/--no-coordconv", help="hourglass: CoordConv "
                                                       "(x, y, r; with --boundary also boundary-masked x, y).",
                                                       show_default=False)] = None,
        loss_map: Annotated[bool | None, typer.Option("--loss-map/--no-loss-map", help="AWing's weighted loss map "
                                                      "(x11 on the dilated target >= 0.2).", show_default=False)
                            ] = None,
        sigma: Annotated[float | None, typer.Option(help="Heatmap Gaussian sigma in heatmap px (default 1; smt "
                                                         "2, shrinking: SMT-Net's 4 on 64 px maps).")] = None,
        sigma_schedule: Annotated[str | None, typer.Option(help="fixed, temporal (SMT-Net: sigma - delta per "
                                                                "training phase) or spatial (per stack).")] = None,
        config: Annotated[str | None, typer.Option(metavar="FILE", help="TOML (.toml) or JSON (.json) file of "
                                                                          "options (flags override it).")] = None,
        resume: Annotated[bool, typer.Option(help="Continue RUN/last.pt.")] = False,
        force: Annotated[bool, typer.Option(help="Overwrite a run folder that holds another run.")] = False,
        device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.", envvar="FACELM_DEVICE")
                          ] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed (data order, augmentation, init).")] = None,
        precision: Annotated[str | None, typer.Option(
            help="auto (bf16 autocast on CUDA and bf16-capable CPUs, fp16 with a gradient scaler on GPUs without "
                 "bf16, else fp32), bf16, fp16 (CUDA) or fp32.")] = None,
        channels_last: Annotated[bool | None, typer.Option(
            "--channels-last/--no-channels-last", help="NHWC memory layout for the model and its input (default on).",
            show_default=False)] = None,
        compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the training "
                                                     "step's model (default off).", show_default=False)] = None,
        augment_on: Annotated[str | None, typer.Option(help="Where the augmentation warps the crops: cpu (OpenCV, "
                                                            "one face at a time), device (the whole batch on the "
                                                            "training device) or auto (device on CUDA, else cpu).")
                              ] = None,
        device_cache: Annotated[bool | None, typer.Option("--device-cache/--no-device-cache", help="--augment-on "
                                                          "device: hold the training crops on the device instead "
                                                          "of moving each batch (default: on CUDA when they take "
                                                          "at most a quarter of its memory).", show_default=False)
                                ] = None,
        loader_threads: Annotated[int | None, typer.Option(help="Threads preparing batches ahead of the loop (0 = "
                                                                "1 on the CPU, 4 on CUDA).")] = None,
        width: Annotated[float | None, typer.Option(help="Channel width multiplier (1 = the paper's networks).")
                         ] = None,
        dropout: Annotated[float | None, typer.Option(help="CNN-6/7: dropout probability on the inputs of both FC "
                                                           "layers while training (default 0 = off, as in the paper; "
                                                           "exported models are unchanged by it).")] = None,
        convs: Annotated[int | None, typer.Option(help="CNN-6/7: 3x3 convs per block, 1-4 (1 = the paper's "
                                                       "networks). --init may give a network with fewer: its "
                                                       "function is kept, the added convs start as identities.")
                         ] = None,
        threads: Annotated[int | None, typer.Option(help="torch threads (0 = all cores).")] = None,
        val_every: Annotated[int | None, typer.Option(
            help="Validate (and write last.pt) every N steps, and at the end (default: max(50, steps / 10)).")
                             ] = None,
        log_every: Annotated[int | None, typer.Option(help="Log every N steps (default 50).")] = None,
        grad_clip: Annotated[float | None, typer.Option(help="Clip the gradient norm to this value (default 0 = "
                                                             "off).")] = None,
        max_val: Annotated[int | None, typer.Option(help="Validate on at most N faces of each source's val split "
                                                         "(default 2000).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    ) -> None:
        """Train one landmark model: a stage of the two-stage CNN-6/7, or a heatmap model (hourglass, smt)."""
        from facelm.config import resolve_train_config
        from facelm.errors import UsageError

        if data is not None:
            data = data[0] if len(data) == 1 else data
        flags = dict(out=out, data=data, weights=weight, scheme_maps=scheme_map, init=init, rotate=rotate,
                     full_turn=full_turn, occlude=occlude, photometric=photometric, arch=arch, loss=loss, val=val, recipe=recipe, steps=steps,
                     batch_size=batch_size, lr=lr, wing_w=wing_w, wing_eps=wing_eps, stage1=stage1, device=device,
                     seed=seed, precision=precision, channels_last=channels_last, compile=compile,
                     augment_on=augment_on, device_cache=device_cache, loader_threads=loader_threads, width=width,
                     convs=convs, dropout=dropout, threads=threads, val_every=val_every, log_every=log_every, max_val=max_val,
                     grad_clip=grad_clip, stacks=stacks, input_size=input_size, boundary=boundary, coordconv=coordconv, loss_map=loss_map, sigma=sigma, sigma_schedule=sigma_schedule)
        if config is None and data is None:
            raise UsageError("--data is required (or give it in --config)")
        if config is not None and not config.strip():
            raise UsageError("--config must not be an empty string")
        cfg = resolve_train_config(flags, Path(config) if config is not None else None)
        _run(cfg, resume, force, quiet)


def _run(cfg, resume: bool, force: bool, quiet: bool) -> None:
    """Train with a progress bar on stderr (started with the training, so an early error is its one line),
    print the summary; a Ctrl-C or SIGTERM from then on cannot cut the summary short (exit 130 after it)."""
    import os

    from facelm.train import train

    rank = int(os.environ.get("RANK", 0))
    show = not quiet and rank == 0
    bar = progress_bar()
    task = bar.add_task(f"train {cfg.arch}/{cfg.loss}", total=cfg.steps, status="", visible=show)

    def on_start(s: dict) -> None:
        bar.update(task, completed=s["start_step"])
        if show:
            info(f"training {cfg.arch} ({cfg.loss}, {cfg.recipe} recipe) on {s['faces']} faces, "
                 f"validating on {s['val_faces']}; device {s['device']} ({s['precision']}), {s['threads']} threads"
                 + (f", {s['world']} processes" if s["world"] > 1 else ""))
            info(f"setup: precision {s['precision']}, channels-last {_on(s['channels_last'])}, compile "
                 f"{_on(s['compile'])}, augment on {s['augment_on']}"
                 + (f" (device cache {_on(s['device_cache'])})" if s["augment_on"] == "device" else "")
                 + f", {s['loader_threads']} loader thread(s)")
            bar.start()

    last = {}

    def on_log(rec: dict) -> None:
        last.update(rec)
        status = f"loss {last.get('loss', float('nan')):.3f} lr {last.get('lr', 0):.2e}"
        if last.get("img_s"):
            status += f" {last['img_s']:.0f} img/s"
        if "val_nme" in last and last["val_nme"] is not None:
            status += f" val {last['val_nme']:.4f}"
        bar.update(task, completed=rec["step"], status=status)

    try:
        result = train(cfg, resume=resume, force=force, on_log=on_log, on_start=on_start)
    finally:
        if bar.live.is_started:  # (stopping a bar never started prints an empty line)
            bar.stop()
    if result.interrupted:  # stopping already: further Ctrl-C / SIGTERM must not cut the summary short
        _ignore_signals()
    _report(cfg, result, show, rank)
    if result.interrupted:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _ignore_signals() -> None:
    import contextlib
    import signal

    for s in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # (not the main thread)
            signal.signal(s, signal.SIG_IGN)


def _report(cfg, result, show: bool, rank: int) -> None:
    s = result.summary
    if show:
        table(f"run {s['run']}", ["what", "value"], [
            ("steps", f"{s['steps']}/{s['target_steps']}"), ("final val NME", s["final_val_nme"]),
            ("best val NME", f"{s['best_val_nme']} (step {s['best_step']}, {s['val_normaliser']})"),
            ("images/s", s["img_per_s"]), ("seconds", s["seconds"]),
        ])
        if result.interrupted:
            info(f"interrupted: resume with `facelm train --out {s['run']} --resume` and the same options")
        else:
            info(f"next: facelm evaluate --data {cfg.val or cfg.data_list[0]} --protocol custom {s['checkpoint']}")
    if rank == 0:
        emit_json(s)
