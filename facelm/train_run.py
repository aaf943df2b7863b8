"""A training run's folder (``--out``): ``config.json``, ``metrics.jsonl``, ``last.pt``/``best.pt``.

The folder is guarded (a different run, or a finished one, is not overwritten without ``force``), a run resumes
from ``last.pt`` when its settings allow it, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from facelm._io import atomic_write, atomic_write_json, check_folder_creatable, json_clean
from facelm.checkpoint import load_checkpoint, save_checkpoint
from facelm.config import TrainConfig
from facelm.errors import ExitCode, FacelmError, UsageError

__all__ = ["DivergedError", "RunFolder", "SigtermFlag", "check_run_folder", "shielded_from_signals"]


class DivergedError(FacelmError):
    code = ExitCode.DIVERGED


class RunFolder:
    """A training run's folder: guards it (a different run or a finished one is not overwritten without ``force``),
    resumes from ``last.pt``, appends to ``metrics.jsonl`` and writes checkpoints (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, obj, rank: int, on_log: Callable[[dict], None] | None):
        self.cfg, self.obj, self.rank, self.on_log = cfg, obj, rank, on_log
        self.out = Path(cfg.out)
        self.cfg_json = cfg.model_dump(mode="json")
        self.metrics_path = self.out / "metrics.jsonl"
        self.history: list[dict] = []
        self.step, self.best_nme, self.best_step = 0, float("inf"), -1
        self.setup: dict = {}  # what the run resolved to (device, precision, data path...): stored in checkpoints

    def open(self, resume: bool, force: bool) -> None:
        """Resume from ``last.pt``, or start the run: ``config.json`` written, ``metrics.jsonl`` cleared (called
        once the run is built, so that a run refused before training starts leaves nothing behind)."""
        out, config_path = self.out, self.out / "config.json"
        if resume:
            last = out / "last.pt"
            ck = load_checkpoint(last)
            _check_resume_compatible(ck["config"], self.cfg_json, last)
            self.obj.model.load_state_dict(ck["model"])
            self.obj.opt.load_state_dict(ck["optimizer"])
            if getattr(self.obj, "scaler", None) is not None and "scaler" in ck:
                self.obj.scaler.load_state_dict(ck["scaler"])
            self.step = int(ck["step"])
            _trim_metrics(self.metrics_path, self.step)  # a killed run may have logged steps past its checkpoint
            self.best_nme = float(ck.get("best_nme", float("inf")))
            self.best_step = int(ck.get("best_step", -1))
        elif self.rank == 0:
            check_run_folder(self.cfg, resume, force)  # (again: another process may have started a run there)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(config_path, self.cfg_json)
            self.metrics_path.unlink(missing_ok=True)

    def log(self, rec: dict) -> None:
        self.history.append(rec)
        if self.rank == 0:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(json_clean(rec), allow_nan=False) + "\n")
        if self.on_log:
            self.on_log(rec)

    def save(self, kind: str) -> None:
        if self.rank != 0:
            return
        ck = {"format": "facelm-checkpoint", "format_version": 1, "arch": self.cfg.arch,
              "model": self.obj.model.state_dict(), "optimizer": self.obj.opt.state_dict(), "step": self.step,
              "best_nme": self.best_nme, "best_step": self.best_step, "meta": self.obj.meta,
              "config": self.cfg_json, "setup": self.setup}
        if getattr(self.obj, "scaler", None) is not None:
            ck["scaler"] = self.obj.scaler.state_dict()
        save_checkpoint(ck, self.out / kind)

    def diverged(self, loss: float, step: int) -> DivergedError:
        last = self.out / "last.pt"
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved yet"
        return DivergedError(f"loss became {loss} at step {step}; stopped, {where} "
                             "(try a lower --lr, or --grad-clip 1)")


def check_run_folder(cfg: TrainConfig, resume: bool, force: bool) -> None:
    """``UsageError`` before any work when ``cfg.out`` cannot be the run's folder: a file (or below one), a folder
    that cannot be created or written, one that holds a different run (or this one, finished or stopped) without
    ``force``, or nothing to ``resume``."""
    out, config_path = Path(cfg.out), Path(cfg.out) / "config.json"
    check_folder_creatable("`out`", out)
    if resume:
        if not (out / "last.pt").is_file():
            raise UsageError(f"{out / 'last.pt'}: nothing to resume (no last.pt in {out})")
    elif config_path.exists() and not force:
        if _read_json(config_path) != cfg.model_dump(mode="json"):
            raise UsageError(f"{out} holds a different run (its config.json differs); use a new `out`, "
                             "`resume` to continue it, or `force` to overwrite")
        if (out / "last.pt").exists():
            raise UsageError(f"{out} already holds this run; use `resume` to continue or `force` to restart")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def shielded_from_signals() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM inside (saving an interrupted run's ``last.pt``: a second Ctrl-C must not lose
    it); the handlers are restored after. Main thread only (elsewhere signals do not arrive anyway)."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


class SigtermFlag:
    """torchrun and schedulers send SIGTERM: the loop stops cleanly on it, as on Ctrl-C."""

    def __init__(self):
        self.raised = False
        self.old = signal.signal(signal.SIGTERM, self._on) if _main_thread() else None

    def _on(self, signum, frame) -> None:
        self.raised = True

    def restore(self) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def _trim_metrics(path: Path, step: int) -> None:
    """Drop the records of steps after ``step`` (the checkpoint a resumed run continues from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by kill -9
        if int(rec.get("step", 0)) <= step:
            keep.append(line)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("".join(k + "\n" for k in keep))


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _check_resume_compatible(old: dict, new: dict, path: Path) -> None:
    # how a run computes, not what: a run may resume on another device, data path or loader
    ignore = {"steps", "val_every", "log_every", "device", "threads", "max_val", "val", "augment_on",
              "device_cache", "loader_threads", "compile", "channels_last"}
    fields = TrainConfig.model_fields
    # an option added after the run started is absent from its config: it counts as that option's default
    default = {k: f.default for k, f in fields.items()}
    diff = sorted(k for k in set(old) | set(new)
                  if k not in ignore and old.get(k, default.get(k)) != new.get(k, default.get(k)))
    if diff:
        raise UsageError(f"{path}: cannot resume with different settings ({', '.join(diff)}); "
                         "use the same options or a new `out`")
