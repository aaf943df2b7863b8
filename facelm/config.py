"""Training configuration: defaults per recipe < ``--config FILE`` (TOML/JSON) < command-line flags."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Strict, ValidationError, field_validator

from facelm._io import read_json_or_toml
from facelm.errors import UsageError
from facelm.limits import (
    MAX_INPUT_SIZE,
    MAX_SEED,
    MAX_SIGMA,
    MAX_STACKS,
    MAX_THREADS,
    MAX_TRAIN_BATCH,
    MAX_WIDTH,
)


__all__ = ["TrainConfig", "resolve_train_config", "PAPER_LR", "HEATMAP_ARCHS", "HEATMAP_LOSS_NAMES"]

#: Architectures of the heatmap family (facelm.models.hourglass) and their losses (facelm.heatmap.losses).
HEATMAP_ARCHS = ("hourglass", "smt")
HEATMAP_LOSS_NAMES = ("awing", "mse", "bice")

# Wing paper §7.1 (docs/training.md): learning rate (start, end) per network and loss, decayed log-linearly.
PAPER_LR = {
    ("cnn6", "l2"): (3e-6, 3e-8),
    ("cnn6", "other"): (3e-5, 3e-7),
    ("cnn7", "l2"): (1e-6, 1e-8),
    ("cnn7", "other"): (1e-5, 1e-7),
}

# numbers are numbers: `true` or "4" in a config file is an error, not 1 or 4 (an int is a fine float)
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class TrainConfig(BaseModel):
    """Everything that defines a training run (written to ``RUN/config.json`` and into checkpoints)."""

    model_config = ConfigDict(extra="forbid")

    # one prepared folder, or several (multi-source training, facelm.train_data): the model takes the scheme of the
    # first; the others train it through a scheme map (facelm.scheme_maps)
    data: str | list[str]
    weights: list[Float] | None = None  # sampling weight per --data folder (default: all 1)
    scheme_maps: list[str] = []  # extra scheme-map files (facelm.scheme_maps), loaded before the data
    val: str | None = None  # a prepared folder; default: the 'val' split of --data when it has one
    out: str
    arch: str = "cnn6"
    # l2/l1/smooth-l1/wing: coordinate losses (cnn6, cnn7); awing/mse/bice: heatmap losses (hourglass, smt)
    loss: Literal["l2", "l1", "smooth-l1", "wing", "awing", "mse", "bice"] | None = None
    wing_w: Float | None = None  # None: 10 for cnn6/cnn6r, 15 for cnn7, 20 for cnn6r at 128 px
    wing_eps: Float | None = None  # None: 2 for cnn6/cnn6r, 3 for cnn7, 4 for cnn6r at 128 px
    recipe: Literal["paper", "fast"] = "fast"
    # None: not given, the recipe's default
    steps: Int | None = None
    batch_size: Int | None = None
    optimizer: Literal["sgd", "adamw"] | None = None
    lr: Float | None = None  # peak/start
    lr_end: Float | None = None
    schedule: Literal["loglinear", "cosine"] | None = None
    warmup: Int | None = None  # steps of linear warm-up
    momentum: Float = 0.9
    weight_decay: Float | None = None
    grad_clip: Float = 0.0  # 0: off
    init: str | None = None  # warm start: weights (not optimiser state) from a facelm checkpoint or ONNX model
    rotate: Float | None = None  # augmentation rotation range in degrees (None: 30 for cnn6, 10 for cnn7)
    full_turn: Float = 0.0  # probability of a rotation uniform in +-180 degrees instead (any in-plane angle)
    occlude: Float = 0.0  # probability of a random-colour rectangle painted over the crop (facelm.augment)
    photometric: Float = 0.0  # probability of brightness/contrast/colour/grey/noise/JPEG changes (facelm.augment)
    dropout: Float = 0.0  # CNN-6/7: dropout on the FC layers' inputs while training (not in the paper; 0: off)
    # auto: bf16 autocast where the hardware has it (CUDA without bf16: fp16 with a gradient scaler), else fp32
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Bool = True  # NHWC memory layout for the model and its input
    compile: Bool = False  # torch.compile the training step's model
    # where the augmentation warps the crops (facelm.train_batches): auto = device on CUDA, cpu elsewhere
    augment_on: Literal["auto", "cpu", "device"] = "auto"
    device_cache: Bool | None = None  # device path: hold the training crops on the device (None: when they fit)
    loader_threads: Int = 0  # threads rendering batches ahead (0: 1 on the CPU, 4 on CUDA)
    width: Float = 1.0
    # CNN-6/7: 3x3 convs per block (1 = the paper's networks; 2-4 deeper, --init can be shallower); None: the
    # --init network's, else 1
    convs: Int | None = None
    stage1: str | None = None  # stage-1 checkpoint for building CNN-7 training crops
    # heatmap family (hourglass, smt): architecture options (None: the architecture's default) and targets
    stacks: Int | None = None
    input_size: Int | None = None
    boundary: Bool | None = None  # AWing's boundary channel
    coordconv: Bool | None = None  # CoordConv (with boundary: boundary-masked x/y)
    loss_map: Bool = False  # AWing's weighted loss map (W = 10 on the dilated target >= 0.2)
    # target sigma in heatmap px; 0: 1 for hourglass (AWing: 7x7 on 64 px maps), 2 for smt (SMT: 4 on 64 px maps)
    sigma: Float = 0.0
    sigma_schedule: Literal["fixed", "temporal", "spatial"] | None = None  # None: fixed / temporal (smt)
    sigma_delta: Float = 1.0
    seed: Int = 0
    device: str = "auto"
    threads: Int = 0  # torch intra-op threads, 0 = all cores
    val_every: Int | None = None  # None: about 10 validations per run
    log_every: Int = 50
    max_val: Int = 2000  # validate on at most this many faces
    augment: Bool = True

    @field_validator("steps", "batch_size", "val_every", "log_every", "max_val", "stacks", "input_size")
    @classmethod
    def _positive_int(cls, v):
        if v is not None and v < 1:
            raise ValueError(f"must be at least 1, got {v}")
        return v

    @field_validator("convs")
    @classmethod
    def _convs(cls, v):
        if v is not None and not 1 <= v <= 4:
            raise ValueError(f"must be an integer from 1 to 4, got {v}")
        return v

    @field_validator("warmup")
    @classmethod
    def _non_negative_int(cls, v):
        if v is not None and v < 0:
            raise ValueError(f"must be at least 0, got {v}")
        return v

    @field_validator("threads", "loader_threads")
    @classmethod
    def _threads(cls, v):
        if not 0 <= v <= MAX_THREADS:
            raise ValueError(f"must be in [0, {MAX_THREADS}], got {v}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v):
        if v is not None and v > MAX_TRAIN_BATCH:
            raise ValueError(f"must be in [1, {MAX_TRAIN_BATCH}], got {v}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v):
        if not 0 <= v <= MAX_SEED:
            raise ValueError(f"must be in [0, 2**63 - 1], got {v}")
        return v

    @field_validator("width")
    @classmethod
    def _width(cls, v):
        if not (math.isfinite(v) and 0 < v <= MAX_WIDTH):
            raise ValueError(f"must be in (0, {MAX_WIDTH:g}], got {v}")
        return v

    @field_validator("data", "val", "out", "init", "stage1", "scheme_maps", "device")
    @classmethod
    def _not_empty(cls, v):
        if any(isinstance(x, str) and not x.strip() for x in (v if isinstance(v, list) else [v])):
            raise ValueError("must not be an empty string")
        return v

    @field_validator("lr", "lr_end", "wing_w", "wing_eps")
    @classmethod
    def _positive_float(cls, v):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"must be a finite number > 0, got {v}")
        return v

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v):  # 0: the architecture's default
        if not (math.isfinite(v) and 0 <= v <= MAX_SIGMA):
            raise ValueError(f"must be in [0, {MAX_SIGMA:g}] heatmap px (0: the default), got {v}")
        return v

    @field_validator("input_size", "stacks")
    @classmethod
    def _heatmap_sizes(cls, v, info):
        top = MAX_INPUT_SIZE if info.field_name == "input_size" else MAX_STACKS
        if v is not None and v > top:
            raise ValueError(f"must be at most {top}, got {v}")
        return v

    @field_validator("weight_decay", "grad_clip", "sigma_delta", "momentum")
    @classmethod
    def _non_negative_float(cls, v):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"must be a finite number >= 0, got {v}")
        return v

    @field_validator("rotate")
    @classmethod
    def _angle(cls, v):
        if v is not None and not (math.isfinite(v) and 0 <= v <= 180):
            raise ValueError(f"must be between 0 and 180 degrees, got {v}")
        return v

    @field_validator("full_turn", "occlude", "photometric")
    @classmethod
    def _probability(cls, v):
        if not (math.isfinite(v) and 0 <= v <= 1):
            raise ValueError(f"must be a probability between 0 and 1, got {v}")
        return v

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, v):
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"must be a probability from 0 up to (not including) 1, got {v}")
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("needs at least one prepared folder")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v):
        if v is None:
            return v
        if any(not (math.isfinite(w) and w >= 0) for w in v):
            raise ValueError(f"every weight must be a finite number >= 0, got {v}")
        if not any(w > 0 for w in v):
            raise ValueError(f"at least one weight must be > 0, got {v}")
        return v

    @property
    def data_list(self) -> list[str]:
        """The prepared folders, as a list (``data`` may be one string)."""
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def weight_list(self) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0] * len(self.data_list)

    @property
    def heatmap(self) -> bool:
        """Whether the architecture is of the heatmap family."""
        return self.arch in HEATMAP_ARCHS

    def model_options(self) -> dict:
        """Architecture options (``create_model(arch, L, **options)``): a heatmap model's given options; a CNN's
        ``convs`` when not the paper's 1, and cnn6r's ``input_size`` when not 64."""
        if self.arch not in HEATMAP_ARCHS:
            opts = {"convs": self.convs} if self.convs not in (None, 1) else {}
            if self.arch == "cnn6r" and self.input_size not in (None, 64):
                opts["input_size"] = self.input_size
            return opts
        return self._heatmap_options()

    def _heatmap_options(self) -> dict:
        keys = ("stacks", "input_size", "boundary", "coordconv")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def filled(self) -> TrainConfig:
        """Fill the recipe defaults: every field left at None (not given) gets its recipe value; 0 stays 0."""
        d = self.model_dump()
        hm = self.arch in HEATMAP_ARCHS
        if d["loss"] is None:
            d["loss"] = "awing" if hm else "wing"
        if hm != (d["loss"] in HEATMAP_LOSS_NAMES):
            kind = "a heatmap loss (awing, mse, bice)" if hm else "a coordinate loss (l2, l1, smooth-l1, wing)"
            raise UsageError(f"`arch` {self.arch} needs {kind}, not `loss` {d['loss']}")
        if hm and self.convs not in (None, 1):
            raise UsageError(f"`convs` applies to the CNN-6/7 regressors, not {self.arch}")
        if hm and self.dropout:
            raise UsageError(f"`dropout` applies to the CNN-6/7 regressors, not {self.arch}")
        hm_only = {k: v for k, v in self._heatmap_options().items()
                   if not (k == "input_size" and self.arch == "cnn6r")}
        if not hm and (hm_only or self.loss_map or self.sigma or self.sigma_schedule):
            raise UsageError(f"`stacks`/`input_size`/`boundary`/`coordconv`/`loss_map`/`sigma` apply to the heatmap "
                             f"architectures ({', '.join(HEATMAP_ARCHS)}; `input_size` also to cnn6r), "
                             f"not {self.arch}")
        if self.arch == "cnn6r" and self.input_size not in (None, 64, 128):
            raise UsageError(f"`input_size` {self.input_size}: cnn6r reads 64 or 128 px crops")
        if self.arch == "cnn6r" and self.input_size == 128 and d["loss"] == "wing":
            from facelm.losses import WING_DEFAULTS

            w, eps = WING_DEFAULTS["cnn6r"]  # Wing's w and eps are in crop pixels: cnn6r's at twice the side
            d["wing_w"] = 2 * w if d["wing_w"] is None else d["wing_w"]
            d["wing_eps"] = 2 * eps if d["wing_eps"] is None else d["wing_eps"]
        if hm:
            if self.recipe == "paper":
                raise UsageError("`recipe` paper is the Wing paper's CNN-6/7 recipe; heatmap models use `recipe` fast")
            if d["sigma_schedule"] is None:
                d["sigma_schedule"] = "temporal" if self.arch == "smt" else "fixed"
            if not d["sigma"]:
                d["sigma"] = 2.0 if self.arch == "smt" else 1.0
        if self.recipe == "paper":
            key = (self.arch if self.arch in ("cnn6", "cnn7") else "cnn6", "l2" if self.loss == "l2" else "other")
            lr0, lr1 = PAPER_LR[key]
            defaults = dict(steps=120_000, batch_size=8, optimizer="sgd", lr=lr0, lr_end=lr1, schedule="loglinear",
                            warmup=0, weight_decay=5e-4)
        else:
            defaults = dict(steps=3000, batch_size=32, optimizer="adamw",
                            lr=5e-4 if self.arch == "cnn7" else 1e-3,
                            lr_end=1e-6, schedule="cosine", warmup=200, weight_decay=1e-4)
        for k, v in defaults.items():
            if d[k] is None:
                d[k] = v
        if d["convs"] is None:
            d["convs"] = (_init_convs(self.init) if self.init and not hm else None) or 1
        if d["val_every"] is None:
            d["val_every"] = max(50, d["steps"] // 10)
        if d["weights"] is not None and len(d["weights"]) != len(self.data_list):
            raise UsageError(f"`weights`: {len(d['weights'])} weights for {len(self.data_list)} `data` folders "
                             "(give one per folder, in the same order)")
        if d["device_cache"] and d["augment_on"] == "cpu":
            raise UsageError("`device_cache` holds the crops of `augment_on` device; it does not apply to cpu")
        if d["full_turn"] and self.arch not in ("cnn6", "cnn7", "cnn6r"):
            raise UsageError("`full_turn` applies to the coordinate networks (cnn6, cnn7, cnn6r)")
        return TrainConfig(**d)


def _init_convs(path: str) -> int | None:
    """The convs per block of the network in a ``--init`` file (facelm checkpoint or ONNX model): a warm start
    builds that network unless ``convs`` is given. None when the file cannot tell (``load_init_weights`` then says
    what is wrong with it)."""
    try:
        if Path(path).suffix.lower() == ".onnx":
            from facelm.modelfile import read_onnx_meta

            meta = read_onnx_meta(path)
        else:
            from facelm.checkpoint import load_checkpoint

            meta = load_checkpoint(path)["meta"]
        convs = (meta.get("model_options") or {}).get("convs", 1)
    except Exception:  # noqa: BLE001 - an unreadable file is reported where it is loaded
        return None
    return convs if isinstance(convs, int) and 1 <= convs <= 4 else None


def _read_config_file(path: Path) -> dict:
    """The options table of a ``--config`` file: TOML (``.toml``) or JSON (any other name, ``.json``)."""
    kinds = "a TOML (.toml) or JSON (.json) file"
    if path.suffix.lower() in (".yaml", ".yml"):
        raise UsageError(f"{path}: cannot read config: YAML is not supported; give {kinds}")
    try:
        doc = read_json_or_toml(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read config ({kinds}): {e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: a config file holds a table of options (a JSON object), not a "
                         f"{type(doc).__name__}")
    return doc


def resolve_train_config(flags: dict, config_file: Path | None = None) -> TrainConfig:
    """Merge defaults < config file < flags (flags that are None are not given) and validate."""
    merged: dict = {}
    if config_file is not None:
        merged.update(_read_config_file(Path(config_file)))
    merged.update({k: v for k, v in flags.items() if v is not None})
    try:
        return TrainConfig(**merged).filled()
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"] if not isinstance(x, int))
        name = loc.split(".")[0]  # `name`: the CLI shows its flag (`weights` is --weight, cli._common.PARAM_FLAGS)
        src = f"{config_file}: " if config_file else ""
        msg = first["msg"].removeprefix("Value error, ")
        if "got " not in msg and "input" in first:
            msg += f", got {first['input']!r}"
        raise UsageError(f"{src}invalid value for `{name}`: {msg}") from None
