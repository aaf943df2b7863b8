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
from facelm.modelfile import meta_from_session, read_onnx_meta
from facelm.ort import cpu_count, create_session, cuda_usable, plan_threads, session_options  # re-exported
from facelm.runtime.precision import PrecisionChoice, check_precision, choose_precision
from facelm.schemes import LandmarkScheme, scheme_from_dict

__all__ = [
    "ModelPair",
    "ModelSession",
    "cpu_count",
    "create_session",
    "cuda_usable",
    "default_models_dir",
    "int8_twins",
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
    """Stage 1 (always) and stage 2 (None when only stage 1 runs), and the precision they run at and why."""

    stage1: ModelSession
    stage2: ModelSession | None
    skipped: list[str]
    precision: str = "fp32"  # what the models run at: fp32 or int8 (facelm.runtime.precision)
    precision_reason: str = ""

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


#: file stems of the shipped models: such a file that is not a facelm model is an error, not skipped
OWN_STEMS = ("cnn6", "cnn7", "cnn6r", "cnn6.int8", "cnn7.int8", "cnn6r.int8")


def _file_meta(f: Path) -> dict:
    """The facelm metadata of ``f`` without starting a session (``ModelError`` as the session factory words it
    for files that are not ONNX at all)."""
    try:
        return read_onnx_meta(f)
    except ModelError as e:
        if "not a facelm model" not in str(e):
            create_session(f, ["CPUExecutionProvider"], 1)  # raises "not a loadable ONNX model (...)"
        raise


def _scan(root: Path, files: list[Path]) -> tuple[dict, list[str]]:
    """``{"float"|"int8": {1: [(path, meta)], 2: [...]}}`` of the facelm models among ``files``, and the skipped
    ones (foreign ONNX files); ``ModelError`` for a broken file named like a shipped model."""
    sets: dict = {"float": {1: [], 2: []}, "int8": {1: [], 2: []}}
    skipped, errors = [], []
    for f in files:
        try:
            meta = _file_meta(f)
            stage = int(meta.get("stage", 0))
            if stage not in (1, 2):
                raise ModelError(f"{f}: metadata stage {meta.get('stage')} (expected 1 or 2)")
        except (ModelError, TypeError, ValueError) as e:
            (errors if f.name.removesuffix(".onnx") in OWN_STEMS or len(files) == 1 else skipped).append(str(e))
            continue
        sets["int8" if meta.get("precision") == "int8" else "float"][stage].append((f, meta))
    if errors:
        raise ModelError("; ".join(errors))
    return sets, skipped


def _one(root: Path, found: list, stage: int, kind: str):
    if len(found) > 1:
        names = ", ".join(f.name for f, _ in found)
        what = "int8 " if kind == "int8" else ""
        raise ModelError(f"{root}: several {what}stage-{stage} models ({names}); keep one per stage in the folder")
    return found[0] if found else None


def _int8_missing(root: Path, flt: dict, i8: dict, run2: bool) -> str | None:
    """Why the int8 models of ``root`` cannot stand in for the float ones (None when they can)."""
    if i8[1] is None:
        return f"no int8 models in {root} (scripts/export_int8.sh or `facelm export MODEL.onnx --quantize int8`)"
    if run2 and i8[2] is None:
        return f"no int8 stage-2 model in {root}"
    for st in (1, 2) if run2 else (1,):
        if flt.get(st) is None:
            continue
        (f, m), (q, qm) = flt[st], i8[st]
        src = (qm.get("quantization") or {}).get("source") or {}
        if src.get("created") != m.get("created") or qm.get("arch") != m.get("arch"):
            return (f"{q.name} was made from another {src.get('file') or 'model'} (created {src.get('created')}; "
                    f"{f.name} here: {m.get('created')}); rerun scripts/export_int8.sh")
    return None


def _pick(root: Path, sets: dict, stages: int | None, precision: str, cuda: bool
          ) -> tuple[tuple, tuple | None, bool, PrecisionChoice]:
    """(stage-1 (path, meta), stage-2 (path, meta) or None, stage 2 runs, the precision choice)."""
    flt = {st: _one(root, sets["float"][st], st, "float") for st in (1, 2)}
    i8 = {st: _one(root, sets["int8"][st], st, "int8") for st in (1, 2)}
    base = flt if flt[1] is not None else i8
    if base[1] is None:
        raise ModelError(f"no stage-1 facelm model found in {root}; pass `models` DIR holding a stage-1 and "
                         "a stage-2 model (cnn6.onnx, cnn6r.onnx or cnn7.onnx: made by `facelm export`)")
    s2 = base[2]
    run2 = stages == 2 or (stages is None and s2 is not None and s2[1].get("predict_default", True) is not False)
    if stages == 2 and s2 is None:
        raise ModelError(f"`stages` 2: no stage-2 model in {root} (only {base[1][0].name}); use `stages` 1 or add "
                         "a stage-2 model (cnn6r.onnx or cnn7.onnx)")
    if flt[1] is None:  # a folder of int8 models only
        if check_precision(precision) == "fp32":
            raise ModelError(f"`precision` fp32: {root} holds only int8 models")
        choice = PrecisionChoice("int8", precision, f"the only models in {root}")
    else:
        missing = _int8_missing(root, flt, i8, run2)
        full = any((i8[st][1].get("quantization") or {}).get("reduce_range") is False
                   for st in ((1, 2) if run2 else (1,)) if i8[st] is not None)
        choice = choose_precision(precision, cuda=cuda, int8_missing=missing, full_range=full)
        if choice.precision == "int8" and missing is not None:
            raise ModelError(f"`precision` int8: {missing}")
    use = i8 if choice.precision == "int8" else flt
    return use[1], use[2] if use[2] is not None else base[2], run2, choice


def int8_twins(path: str | Path) -> list[Path]:
    """The int8 copies of the float model ``path`` in its folder (their metadata names it as their source)."""
    p = Path(path)
    out = []
    for f in sorted(p.parent.glob("*.onnx")):
        if f == p:
            continue
        try:
            meta = read_onnx_meta(f)
        except ModelError:
            continue
        src = (meta.get("quantization") or {}).get("source") or {}
        if meta.get("precision") == "int8" and src.get("file") == p.name:
            out.append(f)
    return out


def load_models(models: str | Path, stages: int | None = None, providers: list | None = None, threads: int = 0,
                spin: bool = False, precision: str = "auto") -> ModelPair:
    """Load the landmark models of a folder (or one ONNX file), identified by their metadata (stage, precision).

    Args:
        models: a folder holding the stage-1 (and usually the stage-2) ``.onnx`` files and, optionally, their int8
            copies (``cnn6.int8.onnx``, ``cnn6r.int8.onnx``), or a single stage-1 file.
        stages: 1 (stage 1 only), 2 (both; stage 2 must exist) or None (2 when a stage-2 model is there, unless
            its metadata says ``"predict_default": false``: a stage-2 model measured to be worse than stage 1
            alone is then kept for ``--stages 2`` but not run by default; the reason is reported in ``skipped``).
        providers: onnxruntime providers (``resolve_providers``).
        precision: ``auto``, ``fp32`` or ``int8`` (``facelm.runtime.precision``); the choice and its reason are on
            the returned pair. Only the models that run get a session.

    Raises:
        UsageError: unknown ``stages`` or ``precision``.
        ModelError: no models, a foreign or broken file where a model should be, several candidates for a
            stage, a stage-2 model whose scheme or box convention does not match stage 1, or ``precision`` int8
            without (current) int8 models for every stage that runs.
    """
    if stages not in (None, 1, 2):
        raise UsageError(f"`stages` must be 1 or 2, not {stages}")
    check_precision(precision)
    root = Path(models)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.glob("*.onnx"))
    else:
        raise ModelError(f"no models found in {root} (no such folder); pass `models` DIR with a stage-1 and a "
                         "stage-2 model (`facelm export`)")
    if not files:
        raise ModelError(f"no models found in {root}; pass `models` DIR holding a stage-1 and a stage-2 "
                         "model (made by `facelm export`)")
    sets, skipped = _scan(root, files)
    if not sets["float"][1] and not sets["int8"][1]:
        why = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        raise ModelError(f"no stage-1 facelm model found in {root}{why}; pass `models` DIR holding a "
                         "stage-1 and a stage-2 model (made by `facelm export`)")
    if stages == 1:
        sets["float"][2], sets["int8"][2] = [], []
    cuda = "CUDAExecutionProvider" in _ort_plumbing.provider_names(providers or [])
    (p1, _), second, run2, choice = _pick(root, sets, stages, precision, cuda)
    s1 = ModelSession.load(p1, providers, threads, spin)
    s2 = ModelSession.load(second[0], providers, threads, spin) if run2 and second is not None else None
    if s2 is not None:
        why = _schemes_match(s1.scheme, s2.scheme)
        if why:
            raise ModelError(f"{s2.path}: stage-2 model does not match stage 1 {s1.path.name} ({why})")
        c1, c2 = s1.meta.get("crop", {}), s2.meta.get("crop", {})
        e1, e2 = c1.get("crop_expand", 1.2), c2.get("crop_expand", 1.2)
        if abs(float(e1) - float(e2)) > 1e-9:
            raise ModelError(f"{s2.path}: crop expansion {e2} does not match stage 1's {e1}")
    elif second is not None and stages is None:
        why = second[1].get("predict_default_reason") or "its metadata says so"
        skipped.append(f"{second[0].name}: not run by default ({why}); `stages` 2 runs it")
    return ModelPair(s1, s2, skipped, choice.precision, choice.reason)
