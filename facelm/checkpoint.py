"""Self-describing checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of plain types and tensors::

    {"format": "facelm-checkpoint", "format_version": 1, "arch": "cnn6", "model": state_dict,
     "optimizer": state_dict, "step": 1200, "best_nme": 0.041, "best_step": 1000,
     "meta": {...ModelMeta...}, "config": {...TrainConfig...}}

``meta`` is what inference needs (and what ``facelm export`` copies into the ONNX file): arch, scheme (the whole
definition, so custom schemes travel with the model), input size, crop convention, pixel normalisation, mean
shape, loss, versions and the training manifest's sha256.
"""

from __future__ import annotations

import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from facelm import __version__
from facelm._io import atomic_path
from facelm.errors import ModelError, UsageError

__all__ = ["build_meta", "load_checkpoint", "load_init_weights", "load_model_from_checkpoint", "pick_device",
           "resolve_checkpoint", "save_checkpoint"]


def build_meta(*, cfg, scheme, input_size: int, mean_shape, loss: dict, manifest_sha256: str, prepare_info: dict,
               stage1: str | None, width: float, model_options: dict | None = None) -> dict:
    from facelm.models import model_stage

    stage = model_stage(cfg.arch)
    return {
        "arch": cfg.arch,
        "stage": stage,
        "width": width,
        "model_options": dict(model_options or {}),  # architecture options (heatmap models: stacks, input_size...)
        "scheme": scheme.to_dict(),
        "num_landmarks": scheme.num_landmarks,
        "input_size": [input_size, input_size],
        "channels": "RGB",
        "pixel_norm": {"input_range": [0, 255], "mean": 127.5, "std": 128.0, "applied": "inside the model"},
        "coord_frame": "crop_pixels",  # outputs are (x, y) in input-crop pixels, 0-based, pixel centres at integers
        "crop": {
            "face_box": "landmark-square" if stage == 1 else "upright-landmark-square",
            "face_box_scale": scheme.face_box_scale,
            "crop_expand": 1.2,
            "rotation": "none" if stage == 1 else "eye-line levelled",
            "angle_normaliser": scheme.angle_normaliser,
            "border": "constant-0",
            "stage1": stage1,
        },
        "mean_shape": [[round(float(x), 4), round(float(y), 4)] for x, y in mean_shape],
        "loss": loss,
        "recipe": cfg.recipe,
        "manifest_sha256": manifest_sha256,
        "prepare": {k: prepare_info.get(k) for k in ("cache_size", "margin", "face_box", "source", "format")},
        "facelm_version": __version__,
        "torch_version": str(torch.__version__),
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save_checkpoint(ck: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Load a facelm checkpoint safely (``weights_only=True``); ``ModelError`` if missing, corrupt or foreign."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files on stderr
            warnings.simplefilter("ignore")
            ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        text = str(e).strip()
        msg = text.splitlines()[0] if text else type(e).__name__
        if msg.startswith("Weights only load failed"):  # keep torch's reason, not its advice to load unsafely
            msg = "the safe load refused it"
            if "WeightsUnpickler error:" in text:
                why = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
                msg += f": {why[0].strip()}" if why else ""
        raise ModelError(f"{p}: not a readable checkpoint ({msg[:160]})") from None
    if not isinstance(ck, dict) or ck.get("format") != "facelm-checkpoint":
        raise ModelError(f"{p}: not a facelm checkpoint")
    for key in ("model", "meta", "config"):
        if key not in ck:
            raise ModelError(f"{p}: checkpoint lacks {key!r}")
    return ck


def pick_device(name: str) -> torch.device:
    """The torch device for ``name`` (auto | cpu | cuda | cuda:N); ``UsageError`` when it is not usable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("`device` cuda was asked for, but CUDA is not available here (use `device` cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``best.pt`` (else ``last.pt``); ``ModelError`` for a folder with
    neither."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise ModelError(f"{p}: no best.pt or last.pt in this folder")
    return p


def load_model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu"
                               ) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a facelm checkpoint (.pt) or facelm ONNX model; returns (model in eval mode, meta).

    An ONNX file (e.g. a shipped ``models/cnn6.onnx``) is rebuilt from the network and scheme in its metadata and
    its weights (``--weights fp16`` ones cast back to float32), so it can frame stage-2 training crops
    (``facelm train --stage1``) like the checkpoint it was exported from.
    """
    from facelm.modelfile import meta_scheme, read_onnx_meta
    from facelm.models import create_model

    from_onnx = Path(path).suffix.lower() == ".onnx"
    if from_onnx:
        if not Path(path).is_file():
            raise ModelError(f"{path}: model not found")
        meta = read_onnx_meta(path)
    else:
        ck = load_checkpoint(path)
        meta = ck["meta"]
    meta_scheme(meta, source=str(path))  # registers a custom scheme carried by the file
    model = create_model(meta["arch"], int(meta["num_landmarks"]), width=float(meta.get("width", 1.0)),
                         **(meta.get("model_options") or {}))
    if from_onnx:
        load_init_weights(model, path)
    else:
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError as e:
            raise ModelError(f"{path}: weights do not fit the {meta['arch']} network: {_first_size(e)}") from None
    model.to(device).eval()
    return model, meta


def _same_network(a: object, b: str) -> bool:
    from facelm.models import is_model, model_network

    return a == b or (isinstance(a, str) and is_model(a) and model_network(a) == model_network(b))


def load_init_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Warm start: copy the weights of a facelm checkpoint (.pt) or facelm ONNX model into ``model``.

    The network (``facelm.models.model_network``: ``cnn6`` weights start a ``cnn6r``) and the landmark count must
    match; the optimiser starts afresh. ONNX files written with
    ``--weights fp16`` / ``--weights int8`` store ``NAME__fp16`` / ``NAME__int8`` and ``NAME__scale`` initialisers,
    which are decoded back to float32. A CNN with fewer convs per block grows into a deeper one, and a 64-px
    ``cnn6``/``cnn6r`` starts a 128-px ``cnn6r`` (``ConvRegressor.adapted_state``).
    """
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        from onnx import numpy_helper

        from facelm.modelfile import proto_meta, stored_weights

        try:
            import onnx

            mdl = onnx.load(str(p))
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same error for the user
            raise ModelError(f"{p}: cannot read ONNX model: {str(e).splitlines()[0][:200]}") from None
        meta = proto_meta(mdl, p)
        if not _same_network(meta.get("arch"), model.arch):
            raise ModelError(f"{p}: a {meta.get('arch')!r} model cannot initialise `arch` {model.arch}")
        stored, _, coded = stored_weights(mdl)  # fp16- or int8-stored weights, decoded to float32
        state = {name: torch.from_numpy(arr.copy()) for name, arr in stored.items()}
        for init in mdl.graph.initializer:
            if init.name not in coded:
                state[init.name] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32).copy())
    else:
        ck = load_checkpoint(p)
        if not _same_network(ck.get("arch"), model.arch):
            raise ModelError(f"{p}: a {ck.get('arch')!r} checkpoint cannot initialise `arch` {model.arch}")
        state, meta = ck["model"], ck.get("meta")
    own = model.state_dict()
    adapt = getattr(model, "adapted_state", None)  # a shallower CNN of the same family, or a 64-px one of a 128-px
    if adapt is not None:  # network, made this one's with the same function (``ConvRegressor.adapted_state``)
        state = adapt(state) or state
    why = _mismatch(meta, model)
    missing = [k for k in own if k not in state]
    if missing:
        why = why or f"no weights for {', '.join(missing[:4])} of the {model.arch} network"
        raise ModelError(f"{p}: {why}")
    try:
        model.load_state_dict({k: state[k] for k in own})
    except RuntimeError as e:
        raise ModelError(f"{p}: {why or 'weights do not fit the ' + model.arch + ' network: ' + _first_size(e)}"
                         ) from None


def _first_size(e: Exception) -> str:
    """The first ``size mismatch for NAME: ...`` line of torch's load_state_dict error, trimmed, else its first
    line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    sizes = [ln for ln in lines if ln.startswith("size mismatch")]
    text = sizes[0] if sizes else (lines[0] if lines else type(e).__name__)
    text = text.replace(" copying a param with shape ", " the file has ").replace(
        ", the shape in current model is ", ", the network ")
    return text[:240] + (f" (and {len(sizes) - 1} more)" if len(sizes) > 1 else "")


def _mismatch(meta: object, model: torch.nn.Module) -> str | None:
    """What tells the network of a warm-start file's metadata from ``model`` (landmark count, width, convs per
    block, input size), as the options that would fit it; None when the metadata shows no difference."""
    if not isinstance(meta, dict):
        return None
    opts = meta.get("model_options") or {}
    n = meta.get("num_landmarks")
    if n is not None and getattr(model, "num_landmarks", n) != n:
        return (f"a {n}-point model cannot initialise a {model.num_landmarks}-point {model.arch} (the data's "
                "scheme); warm-start from a model of the same scheme")
    w = meta.get("width", 1.0)
    if isinstance(w, (int, float)) and abs(float(getattr(model, "width", w)) - float(w)) > 1e-9:
        return f"a `width` {w:g} network, not {float(model.width):g}; give `width` {w:g}"
    convs = opts.get("convs", 1)
    if isinstance(convs, int) and convs > getattr(model, "convs", convs):
        return f"a `convs` {convs} network ({model.convs} here); give `convs` {convs} (or more)"
    size = opts.get("input_size")
    same_arch = meta.get("arch") == model.arch != "cnn6r"  # (a 64-px cnn6r starts a 128-px one)
    if size is not None and same_arch and getattr(model, "input_size", size) != size:
        return f"a network of {size} px inputs, not {model.input_size}; give `input_size` {size}"
    return None
