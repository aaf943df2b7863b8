"""Model registry: architectures are registered by decorating an entrypoint function (the timm pattern).

The entrypoint's function name is the architecture name (``arch``) that checkpoints, ONNX metadata and the CLI
use. Entrypoints take ``(num_landmarks, *, mean_shape=None, width=1.0, **options)`` and return an ``nn.Module``
whose ``forward`` maps ``(N, 3, S, S)`` RGB pixel values in [0, 255] to ``(N, L, 2)`` crop-pixel landmarks.
Architecture options (``stacks``, ``input_size``, ...) are keyword-only parameters of the entrypoint; an entrypoint
without such parameters (CNN-6/7) rejects every option.

Example:
    >>> from facelm.models import create_model, list_models, model_input_size
    >>> list_models()
    ['cnn6', 'cnn6r', 'cnn7', 'hourglass', 'smt']
    >>> model_input_size("cnn7")
    128
    >>> model = create_model("cnn6", num_landmarks=19, width=0.25)
    >>> model = create_model("hourglass", 68, stacks=4, input_size=256)
    >>> model_input_size("hourglass", input_size=256)
    256
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

import numpy as np
import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "model_input_size", "model_options", "model_stage",
           "model_network", "is_model"]

_F = TypeVar("_F", bound=Callable[..., nn.Module])

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_INPUT_SIZES: dict[str, int] = {}
_STAGES: dict[str, int] = {}
_NETWORKS: dict[str, str] = {}


@overload
def register_model(fn: _F, /) -> _F: ...
@overload
def register_model(*, input_size: int | None = None, stage: int = 1, network: str | None = None
                   ) -> Callable[[_F], _F]: ...


def register_model(fn=None, /, *, input_size=None, stage=1, network=None):
    """Register a model entrypoint under its function name.

    Usable bare (``@register_model``) or with the crop size the model expects
    (``@register_model(input_size=64)``), which lets ``model_input_size`` answer without building the model.

    Args:
        fn: the entrypoint, ``fn(num_landmarks, *, mean_shape=None, width=1.0) -> nn.Module``.
        input_size: side S of the square input crop in pixels.
        stage: 1 for a model that crops the detected face square (CNN-6, the heatmap models), 2 for one that
            crops the upright square of a stage-1 shape (CNN-7); see ``facelm.crops.stage_frames``.
        network: the name of the network whose weights this one shares (default: its own name): weights of one
            warm-start every architecture of the same network (``cnn6r`` from ``cnn6``).

    Raises:
        ValueError: if the name is already registered, or ``stage`` is not 1 or 2.
    """

    def deco(f: _F) -> _F:
        name = f.__name__
        if name in _ENTRYPOINTS:
            raise ValueError(f"model {name!r} is already registered")
        if stage not in (1, 2):
            raise ValueError(f"model {name!r}: stage must be 1 or 2, not {stage!r}")
        _ENTRYPOINTS[name] = f
        _STAGES[name] = int(stage)
        _NETWORKS[name] = str(network or name)
        if input_size is not None:
            _INPUT_SIZES[name] = int(input_size)
        return f

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_ENTRYPOINTS)


def model_stage(name: str) -> int:
    """The pipeline stage of an architecture: 1 (crops the face square) or 2 (the upright square of a stage-1
    shape).

    Raises:
        KeyError: unknown ``name``.
    """
    _entrypoint(name)
    return _STAGES[name]


def model_network(name: str) -> str:
    """The network an architecture's weights belong to (``register_model``'s ``network``): ``cnn6r`` -> ``cnn6``.

    Raises:
        KeyError: unknown ``name``.
    """
    _entrypoint(name)
    return _NETWORKS[name]


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered architecture."""
    return name in _ENTRYPOINTS


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    try:
        return _ENTRYPOINTS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known models: {', '.join(list_models())})") from None


_BASE_PARAMS = ("num_landmarks", "mean_shape", "width")


def model_options(name: str) -> list[str]:
    """Names of the extra keyword options the architecture's entrypoint accepts (``[]`` for CNN-6/7).

    Raises:
        KeyError: unknown ``name``.
    """
    params = inspect.signature(_entrypoint(name)).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _BASE_PARAMS]


def _check_options(name: str, options: dict[str, Any]) -> None:
    fn = _entrypoint(name)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        return
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"model {name!r} does not accept option(s) {', '.join(map(repr, unknown))} "
                        f"(accepted: {', '.join(accepted) if accepted else 'none'})")


def create_model(name: str, num_landmarks: int, *, mean_shape: np.ndarray | None = None,
                 width: float = 1.0, **options: Any) -> nn.Module:
    """Build a registered landmark model.

    Args:
        name: architecture name, one of ``list_models()`` (``"cnn6"``, ``"cnn7"``, ``"hourglass"``, ``"smt"``).
        num_landmarks: L, the number of landmarks.
        mean_shape: optional ``(L, 2)`` array of (x, y) in crop pixels (0-based, pixel centres at integers);
            for the regressors (CNN-6/7) the output layer's bias starts there so the untrained model predicts the
            mean shape (default: the crop centre ``(S - 1) / 2`` for every landmark). Heatmap models validate it
            and ignore it.
        width: multiplier on the channels (CNN-6/7: every conv and the hidden FC; 1.0 gives the paper's network;
            hourglass/smt: ``channels``). Small values such as 0.25 give tiny models for tests.
        **options: architecture options, passed to the entrypoint (see ``model_options(name)``; e.g. ``stacks``,
            ``channels``, ``depth``, ``input_size``, ``boundary``, ``coordconv`` for ``"hourglass"``).

    Returns:
        The model, in training mode, mapping ``(N, 3, S, S)`` float32 RGB in [0, 255] to ``(N, L, 2)`` crop
        pixels.

    Raises:
        KeyError: unknown ``name`` (the message lists the known names).
        TypeError: an option the architecture does not accept (the message lists the accepted ones).
        ValueError: invalid ``num_landmarks``, ``width``, ``mean_shape`` or option value.
    """
    _check_options(name, options)
    return _entrypoint(name)(num_landmarks, mean_shape=mean_shape, width=width, **options)


def model_input_size(name: str, **options: Any) -> int:
    """Side S in pixels of the square crop the architecture takes (64 for cnn6, 128 for cnn7 and the default
    hourglass/smt), honouring an ``input_size`` option where the architecture has one.

    Raises:
        KeyError: unknown ``name``.
        TypeError: an option the architecture does not accept.
    """
    fn = _entrypoint(name)
    _check_options(name, options)
    if options.get("input_size") is not None:
        return int(options["input_size"])
    if name not in _INPUT_SIZES:  # registered bare: ask a throwaway, minimal instance once
        _INPUT_SIZES[name] = int(fn(1, width=1 / 64).input_size)
    return _INPUT_SIZES[name]
