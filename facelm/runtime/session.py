"""Loading the landmark models for prediction: a stage-1/stage-2 pair from a models folder, each checked
against the facelm ONNX contract (``facelm.modelfile``); sessions come from ``facelm.ort``.

The onnxruntime plumbing (providers, threads, the session factory) lives in ``facelm.ort`` and is re-exported
here under its old names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm import ort as _ort_plumbing
from facelm._paths import default_models_dir  # re-exported: it used to live here
from facelm.errors import ModelError, UsageError
from facelm.modelfile import meta_from_session
from facelm.ort import cpu_count, create_session, cuda_usable, plan_threads, session_options  # re-exported
from facelm.schemes import LandmarkScheme, scheme_from_dict

__all__ = [
    "ModelPair",
    "ModelSession",
    "cpu_count",
    "create_session",
    "cuda_usable",
    "default_models_dir",
    "load_models",
    "plan_threads",
    "resolve_providers",
    "session_options",
]

_warned: set[str] = set()  # devices whose CUDA fallback was reported (once per process)


def resolve_providers(device: str = "auto", warn=None) -> list:
    """onnxruntime providers for ``device`` (``facelm.ort.resolve_providers``), warning once per process."""
    return _ort_plumbing.resolve_providers(device, warn, warned=_warned)


@dataclass
class ModelSession:
    """One facelm landmark model in onnxruntime.

    Attributes:
        path: the ONNX file. meta: its facelm metadata (``facelm.export``). stage: 1 or 2. arch: cnn6/cnn7/...
        size: input side in pixels. scheme: the landmark scheme rebuilt from the metadata.
        providers: what onnxruntime really uses (e.g. ``["CPUExecutionProvider"]``).
    """

    path: Path
    meta: dict
    session: object
    stage: int
    arch: str
    size: int
    scheme: LandmarkScheme
    providers: list[str]

    @classmethod
    def load(cls, path: str | Path, providers: list | None = None, threads: int = 0, spin: bool = False
             ) -> ModelSession:
        """Load and check a facelm ONNX model; ``ModelError`` for foreign or inconsistent files."""
        path = Path(path)
        sess = create_session(path, providers or ["CPUExecutionProvider"], threads, spin)
        return cls.from_session(path, sess, meta_from_session(sess, path))

    @classmethod
    def from_session(cls, path: Path, sess, meta: dict) -> ModelSession:
        try:
            stage = int(meta["stage"])
            size = int(meta["input_size"][0])
            scheme = scheme_from_dict(meta["scheme"], source=str(path))
            arch = str(meta.get("arch", "?"))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ModelError(f"{path}: incomplete facelm metadata ({e})") from None
        if stage not in (1, 2):
            raise ModelError(f"{path}: metadata stage {stage} (expected 1 or 2)")
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) != 1 or ins[0].name != "images" or not any(o.name == "landmarks" for o in outs):
            raise ModelError(f"{path}: not a facelm landmark model (expects input 'images' and output 'landmarks', "
                             f"has {[i.name for i in ins]} -> {[o.name for o in outs]})")
        shape = ins[0].shape
        if len(shape) != 4 or shape[1] != 3 or (isinstance(shape[2], int) and shape[2] != size) \
                or (isinstance(shape[3], int) and shape[3] != size):
            raise ModelError(f"{path}: input shape {shape} does not match the metadata input size {size}")
        out = next(o for o in outs if o.name == "landmarks")
        if len(out.shape) == 3 and isinstance(out.shape[1], int) and out.shape[1] != scheme.num_landmarks:
            raise ModelError(f"{path}: outputs {out.shape[1]} landmarks, its scheme {scheme.name} has "
                             f"{scheme.num_landmarks}")
        return cls(path=path, meta=meta, session=sess, stage=stage, arch=arch, size=size, scheme=scheme,
                   providers=list(sess.get_providers()))

    def run(self, crops: np.ndarray) -> np.ndarray:
        """Landmarks ``(N, L, 2)`` float64 in crop pixels for crops ``(N, S, S, 3)`` uint8 RGB (or NCHW float32)."""
        x = crops
        if x.dtype == np.uint8:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        y = self.session.run(["landmarks"], {"images": x})[0]
        return y.astype(np.float64)

    @property
    def uses_cuda(self) -> bool:
        return "CUDAExecutionProvider" in self.providers


@dataclass
class ModelPair:
    """Stage 1 (always) and stage 2 (None when only stage 1 runs)."""

    stage1: ModelSession
    stage2: ModelSession | None
    skipped: list[str]

    @property
    def scheme(self) -> LandmarkScheme:
        return self.stage1.scheme

    @property
    def providers(self) -> list[str]:
        return self.stage1.providers


def _schemes_match(a: LandmarkScheme, b: LandmarkScheme) -> str | None:
    """Why two schemes differ (None when they are the same for prediction purposes)."""
    if a.name != b.name:
        return f"scheme {b.name!r} vs {a.name!r}"
    if a.num_landmarks != b.num_landmarks:
        return f"{b.num_landmarks} vs {a.num_landmarks} landmarks"
    if tuple(a.flip_perm) != tuple(b.flip_perm):
        return "different flip pairs"
    if a.normalisers.get(a.angle_normaliser) != b.normalisers.get(b.angle_normaliser):
        return "different eye (angle) landmarks"
    if abs(a.face_box_scale - b.face_box_scale) > 1e-9:
        return f"face box scale {b.face_box_scale} vs {a.face_box_scale}"
    return None


def load_models(models: str | Path, stages: int | None = None, providers: list | None = None, threads: int = 0,
                spin: bool = False) -> ModelPair:
    """Load the landmark models of a folder (or one ONNX file), identified by their metadata ``stage``.

    Args:
        models: a folder holding the stage-1 (and usually the stage-2) ``.onnx`` files, or a single stage-1 file.
        stages: 1 (stage 1 only), 2 (both; stage 2 must exist) or None (2 when a stage-2 model is there, unless
            its metadata says ``"predict_default": false``: a stage-2 model measured to be worse than stage 1
            alone is then kept for ``--stages 2`` but not run by default; the reason is reported in ``skipped``).
        providers: onnxruntime providers (``resolve_providers``).

    Raises:
        ModelError: no models, a foreign or broken file where a model should be, several candidates for a
            stage, or a stage-2 model whose scheme or box convention does not match stage 1.
    """
    if stages not in (None, 1, 2):
        raise UsageError(f"`stages` must be 1 or 2, not {stages}")
    root = Path(models)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.glob("*.onnx"))
    else:
        raise ModelError(f"no models found in {root} (no such folder); pass `models` DIR with cnn6.onnx and "
                         "cnn7.onnx (`facelm export`)")
    if not files:
        raise ModelError(f"no models found in {root}; pass `models` DIR holding cnn6.onnx and cnn7.onnx "
                         "(made by `facelm export`)")
    by_stage: dict[int, list[ModelSession]] = {1: [], 2: []}
    skipped: list[str] = []
    errors: list[str] = []
    for f in files:
        try:
            m = ModelSession.load(f, providers, threads, spin)
        except ModelError as e:
            # a file named like one of ours that is not ours is an error; other ONNX files are skipped
            (errors if f.stem in ("cnn6", "cnn7") or len(files) == 1 else skipped).append(str(e))
            continue
        if stages == 1 and m.stage == 2:
            continue
        by_stage[m.stage].append(m)
    if errors:
        raise ModelError("; ".join(errors))
    for st in (1, 2):
        if len(by_stage[st]) > 1:
            names = ", ".join(m.path.name for m in by_stage[st])
            raise ModelError(f"{root}: several stage-{st} models ({names}); keep one per stage in the folder")
    if not by_stage[1]:
        why = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        raise ModelError(f"no stage-1 facelm model found in {root}{why}; pass `models` DIR holding cnn6.onnx "
                         "and cnn7.onnx (made by `facelm export`)")
    s1 = by_stage[1][0]
    s2 = by_stage[2][0] if by_stage[2] else None
    if stages == 2 and s2 is None:
        raise ModelError(f"`stages` 2: no stage-2 model in {root} (only {s1.path.name}); use `stages` 1 or add "
                         "cnn7.onnx")
    if s2 is not None:
        why = _schemes_match(s1.scheme, s2.scheme)
        if why:
            raise ModelError(f"{s2.path}: stage-2 model does not match stage 1 {s1.path.name} ({why})")
        c1, c2 = s1.meta.get("crop", {}), s2.meta.get("crop", {})
        e1, e2 = c1.get("crop_expand", 1.2), c2.get("crop_expand", 1.2)
        if abs(float(e1) - float(e2)) > 1e-9:
            raise ModelError(f"{s2.path}: crop expansion {e2} does not match stage 1's {e1}")
    if stages is None and s2 is not None and s2.meta.get("predict_default", True) is False:
        why = s2.meta.get("predict_default_reason") or "its metadata says so"
        skipped.append(f"{s2.path.name}: not run by default ({why}); `stages` 2 runs it")
        s2 = None
    return ModelPair(s1, s2, skipped)
