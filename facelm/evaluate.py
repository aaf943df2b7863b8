"""Score models on a prepared dataset under a named protocol (``facelm evaluate``) -> :class:`EvalReport`.

A *model* is one of (dispatched on the file suffix, see :data:`MODEL_KINDS`):

* a facelm checkpoint (``.pt``/``.pth``, or a run folder holding ``best.pt``): run on the manifest's faces with
  their ground-truth boxes (the crop cache of ``facelm prepare``, as in training validation). A stage-2
  (CNN-7) checkpoint needs stage-1 shapes for its upright crops: give the pair as ``STAGE1.pt+STAGE2.pt``;
  alone, it uses the stage-1 checkpoint recorded in its metadata when that file exists, else crops built from
  the ground truth (optimistic: a warning says so and ``details.stage2_crops`` is ``"ground-truth"``);
* a predictions file (``.jsonl``/``.ndjson``/``.json``/``.csv``): what ``facelm predict`` writes (not its
  Parquet: convert that first), or any tool's predictions in the same format (see :func:`read_predictions`);
* an exported model (``.onnx``) or a two-stage ONNX pair (``stage1.onnx+stage2.onnx``), run with onnxruntime on
  the same ground-truth-box crops as checkpoints.

Any other file ending is a usage error (:func:`parse_model_spec`), not guessed at.

Every model is scored on the same faces with the same normaliser; the per-model record (:meth:`EvalReport.records`)
names the protocol, the normaliser and its definition, the split, the thresholds and the number of faces.

Faces with no prediction (``missing``) and faces with a non-finite predicted coordinate count as failures
(NME ``inf``): they are in ``n``, fail at every threshold and add nothing to the AUC; ``nme``/``median`` are over
the finite NMEs (:func:`facelm.metrics.summary`). ``skip_missing`` drops missing faces instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm.errors import DataError, ModelError, UsageError
from facelm.evaluate_report import (  # noqa: F401 - the report types and files are re-exported
    EvalReport,
    ModelScore,
    _pose_bins,
    _score,
    plot_report,
    report_title,
    save_report_ced_csv,
    short_labels,
    write_per_face_csv,
)
from facelm.manifest import Manifest, load_manifest
from facelm.metrics import BOX_NORMALISERS, normaliser
from facelm.modelfile import check_meta_matches
from facelm.predictions import Predictions, match_predictions, read_predictions  # noqa: F401 - re-exported
from facelm.protocols import Protocol, get_protocol

__all__ = [
    "MODEL_KINDS",
    "SPLITS",
    "EvalOptions",
    "EvalReport",
    "EvalSet",
    "ModelScore",
    "ModelSpec",
    "evaluate",
    "face_normaliser",
    "match_predictions",
    "parse_model_spec",
    "plot_report",
    "read_predictions",
    "report_title",
    "save_report_ced_csv",
    "select_faces",
    "short_labels",
    "write_per_face_csv",
]

SPLITS = ("auto", "test", "val", "train", "all")
Warn = Callable[[str], None]


def _noop(msg: str) -> None:
    pass


def _ids(ids: Sequence[str], limit: int = 10, total: int | None = None) -> str:
    """Up to ``limit`` of ``ids`` and how many more there are; ``total``: the full count when ``ids`` is itself a
    capped list (the 50 ``missing_ids`` of a predictions file's details)."""
    total = len(ids) if total is None else max(total, len(ids))
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({total - limit} more)" if total > limit else "")


# -- options and the evaluated faces ------------------------------------------------------------------------------

@dataclass
class EvalOptions:
    """What to evaluate on (the models are passed to :func:`evaluate` separately).

    Attributes:
        data: prepared dataset folder or its ``manifest.jsonl``.
        protocol: protocol name (:mod:`facelm.protocols`).
        norm: normaliser override (must be allowed by the protocol), None for the protocol's default.
        split: ``auto`` (test, else val, else all faces), ``test``, ``val``, ``train`` or ``all``.
        skip_missing: leave faces without a prediction out instead of counting them as failures.
        device: torch device for checkpoints (``auto``, ``cpu``, ``cuda[:N]``).
        pose_model: a ``pose_model.json`` from ``facelm balance``: each face also gets the pose bin of its
            ground-truth landmarks and every record a ``pose_bins`` breakdown (tags ``pose-bin-00``, ...).
    """

    data: str | Path
    protocol: str = "custom"
    norm: str | None = None
    split: str = "auto"
    skip_missing: bool = False
    device: str = "auto"
    pose_model: str | Path | None = None


@dataclass
class EvalSet:
    """The faces every model is scored on.

    Attributes:
        manifest: the selected faces (``N``).
        protocol: the protocol.
        normaliser: normaliser name; ``normaliser_definition`` says exactly what it measures.
        norm: ``(N,)`` normalising distance of each face, image pixels (all finite and > 0).
        split: the split evaluated (``all`` for every face).
        selection: the protocol's subset tag that restricted the faces, or None.
        data: the manifest file.
        pose_bins: ``(N,)`` pose bin of each face (-1: undefined) when a pose model was given, else None.
        pose_model: that model (:class:`facelm.balance.PoseModel`) and ``pose_model_path`` its file.
    """

    manifest: Manifest
    protocol: Protocol
    normaliser: str
    normaliser_definition: str
    norm: np.ndarray
    split: str
    selection: str | None
    data: Path
    pose_bins: np.ndarray | None = None
    pose_model: object | None = None
    pose_model_path: str | None = None

    @property
    def scheme(self) -> str:
        return self.manifest.scheme

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.protocol.thresholds


def select_faces(manifest: Manifest, protocol: Protocol, split: str = "auto", warn: Warn = _noop
                 ) -> tuple[Manifest, str, str | None]:
    """The faces a protocol evaluates: the split, then the protocol's subset tag when some face carries it.

    Returns:
        ``(selected manifest, split name, selection tag or None)``.

    Raises:
        UsageError: unknown split name.
        DataError: no face left (the message lists the splits the data has).
    """
    if split not in SPLITS:
        raise UsageError(f"unknown `split` {split!r}; valid: {', '.join(SPLITS)}")
    counts: dict[str, int] = {}
    for s in manifest.samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    have = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if split == "auto":
        split = next((k for k in ("test", "val") if counts.get(k)), "all")
    sel = manifest if split == "all" else manifest.split(split)
    if len(sel) == 0:
        raise DataError(f"{manifest.path}: no faces in split {split!r} (faces per split here: {have})")
    tag = protocol.select
    if tag is not None:
        mask = [tag in s.subset for s in sel.samples]
        if any(mask):
            sel = sel.select(mask)
        else:
            warn(f"no face of split {split!r} is tagged {tag!r}: evaluating all {len(sel)} faces of the split "
                 f"(prepare the dataset with its original folder layout to get the {protocol.name} tags)")
            tag = None
    return sel, split, tag


def _definition(kind: str, scheme_name: str) -> str:
    if kind in BOX_NORMALISERS:
        return {
            "box-width": "x2 - x1 of the manifest face box",
            "box-height": "y2 - y1 of the manifest face box",
            "box-max-side": "max(w, h) of the manifest face box",
            "box-diagonal": "sqrt(w^2 + h^2) of the manifest face box",
            "box-sqrt-area": "sqrt(w * h) of the manifest face box",
        }[kind]
    from facelm.schemes import get_scheme

    a, b = get_scheme(scheme_name).normaliser_groups(kind)

    def grp(g: tuple[int, ...]) -> str:
        if len(g) == 1:
            return f"landmark {g[0]}"
        if list(g) == list(range(min(g), max(g) + 1)):
            return f"the mean of landmarks {min(g)}-{max(g)}"
        return f"the mean of landmarks {list(g)}"

    return f"distance between {grp(a)} and {grp(b)} of the ground truth ({scheme_name}, 0-based)"


def face_normaliser(manifest: Manifest, kind: str) -> tuple[np.ndarray, str]:
    """Normalising distance ``(N,)`` of each face and a one-line definition of it.

    Raises:
        UsageError: the scheme has no such normaliser.
        DataError: unknown scheme (for a scheme normaliser), or zero/non-finite distances (the face ids are
            named), or faces with no usable ground-truth landmark.
    """
    from facelm.schemes import get_scheme

    if kind not in BOX_NORMALISERS:
        try:
            sch = get_scheme(manifest.scheme)
        except KeyError:
            raise DataError(f"{manifest.path}: unknown landmark scheme {manifest.scheme!r} (needed for the "
                            f"{kind} normaliser); use a box normaliser or register the scheme") from None
        if kind not in sch.normalisers:
            raise UsageError(f"scheme {sch.name} has no {kind!r} normaliser (it has: "
                             f"{', '.join(sorted(sch.normalisers))})")
    with np.errstate(invalid="ignore"):
        d = normaliser(manifest.landmarks, kind, scheme=manifest.scheme, boxes=manifest.boxes())
    bad = [manifest.samples[i].id for i in np.flatnonzero(~(np.isfinite(d) & (d > 0)))]
    if bad:
        why = "eye points coincide or are missing" if kind not in BOX_NORMALISERS else "empty or invalid box"
        raise DataError(f"{manifest.path}: the {kind} normaliser is zero or undefined ({why}) for "
                        f"{len(bad)} face(s): {_ids(bad)}")
    empty = [manifest.samples[i].id for i in np.flatnonzero(~np.isfinite(manifest.landmarks).all(-1).any(-1))]
    if empty:
        raise DataError(f"{manifest.path}: no annotated landmark for face(s) {_ids(empty)}")
    return d, _definition(kind, manifest.scheme)


# -- models ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """One MODEL argument: a label (as given), a kind (a key of :data:`MODEL_KINDS`) and its file(s)."""

    label: str
    kind: str
    paths: tuple[Path, ...]


# suffix -> model kind; a two-stage pair is written "A+B" and both parts must be of the same kind.
MODEL_KINDS: dict[str, str] = {
    ".pt": "checkpoint", ".pth": "checkpoint",
    ".jsonl": "predictions", ".json": "predictions", ".ndjson": "predictions", ".csv": "predictions",
    ".onnx": "onnx",
}
_ACCEPTED = ("a .pt/.pth checkpoint, a run folder holding best.pt, an .onnx model, a STAGE1+STAGE2 pair of those, "
             "or a predictions file (.jsonl, .ndjson, .json, .csv)")


def _unknown_kind(path: Path) -> UsageError:
    ending = path.suffix or "no file ending"
    hint = ("; evaluate reads predictions as .jsonl, .json or .csv: convert Parquet first (e.g. one JSON line per "
            "row of pyarrow.parquet.read_table(FILE).to_pylist())" if path.suffix.lower() == ".parquet" else "")
    return UsageError(f"{path}: not a model evaluate can read ({ending}); a MODEL is {_ACCEPTED}{hint}")


def parse_model_spec(spec: str) -> ModelSpec:
    """Classify a MODEL argument by its file ending (see :data:`MODEL_KINDS`); a run folder means its best.pt.

    Raises:
        UsageError: an empty argument (or pair half: "" would be the current folder), or a file ending that is
            no model kind (a Parquet file of ``predict``: convert it first).
        ModelError: missing file, mixed pairs or a pair of predictions.
    """
    if not spec.strip():
        raise UsageError("a MODEL argument is an empty string")
    p = Path(spec)
    pieces = [spec] if p.exists() or "+" not in spec else spec.split("+")
    if len(pieces) > 2:
        raise ModelError(f"{spec}: a model is one file or a two-stage pair STAGE1+STAGE2, not {len(pieces)} files")
    if any(not s.strip() for s in pieces):
        raise UsageError(f"{spec}: a two-stage pair is STAGE1+STAGE2, with neither part empty")
    parts, kinds = [Path(s) for s in pieces], []
    for i, q in enumerate(parts):
        if q.is_dir() and (q / "best.pt").is_file():
            parts[i] = q = q / "best.pt"
        if not q.exists():
            raise ModelError(f"{q}: no such model file (a MODEL is {_ACCEPTED})")
        if q.is_dir():
            raise ModelError(f"{q}: a folder without best.pt (a MODEL is {_ACCEPTED})")
        kind = MODEL_KINDS.get(q.suffix.lower())
        if kind is None:
            raise _unknown_kind(q)
        if not q.is_file():
            raise ModelError(f"{q}: not a regular file (a MODEL is {_ACCEPTED})")
        kinds.append(kind)
    if len(set(kinds)) > 1:
        raise ModelError(f"{spec}: both parts of a two-stage pair must be of one kind (.pt+.pt or .onnx+.onnx)")
    if kinds[0] == "predictions" and len(parts) > 1:
        raise ModelError(f"{spec}: a predictions file is a model on its own; give it without '+'")
    return ModelSpec(label=spec, kind=kinds[0], paths=tuple(parts))


def _checkpoint_predictions(spec: ModelSpec, ev: EvalSet, device, loaded: list, warn: Warn
                            ) -> tuple[np.ndarray, dict]:
    from facelm.crops import cache_landmarks
    from facelm.manifest_predict import predict_manifest
    from facelm.schemes import get_scheme

    m = ev.manifest
    scheme = get_scheme(m.scheme)
    if len(loaded) == 2:
        (s1, meta1), (s2, meta2) = loaded
        if meta1.get("stage", 1) != 1 or meta2.get("stage") != 2:
            raise ModelError(f"{spec.label}: a pair is STAGE1+STAGE2 (cnn6 then cnn7), got "
                             f"{meta1['arch']}+{meta2['arch']}")
        p1 = predict_manifest(s1, m, scheme, device)
        pred = predict_manifest(s2, m, scheme, device, stage1_pred_cache=cache_landmarks(m.cache_matrix, p1))
        return pred, {"checkpoint": "+".join(map(str, spec.paths)), "arch": f"{meta1['arch']}+{meta2['arch']}",
                      "stage": 2, "stage1": str(spec.paths[0]), "stage2_crops": "stage1-predictions",
                      "device": str(device)}
    model, meta = loaded[0]
    details = {"checkpoint": str(spec.paths[0]), "arch": meta["arch"], "stage": meta.get("stage", 1),
               "stage1": None, "stage2_crops": None, "device": str(device)}
    if meta.get("stage") == 2:
        s1_path = (meta.get("crop") or {}).get("stage1")
        if s1_path and Path(s1_path).is_file():
            from facelm.checkpoint import load_model_from_checkpoint

            s1, meta1 = load_model_from_checkpoint(s1_path, device)
            check_meta_matches(meta1, m, str(s1_path))
            p1 = predict_manifest(s1, m, scheme, device)
            details.update(stage1=str(s1_path), stage2_crops="stage1-predictions")
            return predict_manifest(model, m, scheme, device,
                                    stage1_pred_cache=cache_landmarks(m.cache_matrix, p1)), details
        warn(f"{spec.label}: stage-2 model evaluated on upright crops built from the ground-truth landmarks "
             f"(no stage-1 checkpoint found): the NME is optimistic; give STAGE1.pt+{spec.label}")
        details["stage2_crops"] = "ground-truth"
    return predict_manifest(model, m, scheme, device), details


def _onnx_predictions(spec: ModelSpec, ev: EvalSet, loaded: list, warn: Warn) -> tuple[np.ndarray, dict]:
    """Predictions of an exported model (or a STAGE1.onnx+STAGE2.onnx pair) on ground-truth face boxes.

    The crops are built exactly as for checkpoints (:func:`facelm.manifest_predict.onnx_predict_manifest`), so a
    checkpoint and its export score the same up to the export's numerical difference, plus the file's label shift
    (``facelm.modelfile.label_shift``), which is added to the final landmarks as ``predict`` adds it.
    """
    from facelm.crops import cache_landmarks
    from facelm.manifest_predict import onnx_predict_manifest
    from facelm.modelfile import label_shift, meta_scheme, shift_landmarks

    m = ev.manifest
    paths = "+".join(map(str, spec.paths))
    if len(loaded) == 2:
        (s1, meta1), (s2, meta2) = loaded
        if meta1.get("stage", 1) != 1 or meta2.get("stage") != 2:
            raise ModelError(f"{spec.label}: a pair is STAGE1+STAGE2 (cnn6 then cnn7), got "
                             f"{meta1.get('arch')}+{meta2.get('arch')}")
        p1 = onnx_predict_manifest(s1, meta1, m)
        pred = onnx_predict_manifest(s2, meta2, m, stage1_pred_cache=cache_landmarks(m.cache_matrix, p1))
        pred = shift_landmarks(pred, label_shift(meta2, str(spec.paths[1])), meta_scheme(meta2))
        return pred, {"onnx": paths, "arch": f"{meta1.get('arch')}+{meta2.get('arch')}", "stage": 2,
                      "stage2_crops": "stage1-predictions", "precision": [meta1.get("precision"),
                                                                          meta2.get("precision")]}
    session, meta = loaded[0]
    details = {"onnx": paths, "arch": meta.get("arch"), "stage": meta.get("stage", 1),
               "stage2_crops": None, "precision": meta.get("precision")}
    if meta.get("stage") == 2:
        warn(f"{spec.label}: stage-2 model evaluated on upright crops built from the ground-truth landmarks: the "
             f"NME is optimistic; give STAGE1.onnx+{spec.label}")
        details["stage2_crops"] = "ground-truth"
    pred = onnx_predict_manifest(session, meta, m)
    return shift_landmarks(pred, label_shift(meta, paths), meta_scheme(meta)), details


def _load_models(specs: Sequence[ModelSpec], full: Manifest, device_name: str) -> tuple[object, list]:
    """(torch device or None, one loaded entry per spec): ``[(model, meta), ...]`` for checkpoints,
    ``[(session, meta), ...]`` for ONNX models, the parsed file for predictions; each checked against the
    data."""
    device = None
    loaded: list = []
    for spec in specs:
        if spec.kind == "checkpoint":
            from facelm.checkpoint import load_model_from_checkpoint, pick_device

            device = device or pick_device(device_name)
            pairs = []
            for p in spec.paths:
                model, meta = load_model_from_checkpoint(p, device)
                check_meta_matches(meta, full, str(p))
                pairs.append((model, meta))
            loaded.append(pairs)
        elif spec.kind == "onnx":
            from facelm.manifest_predict import load_onnx_model

            pairs = []
            for p in spec.paths:
                session, meta = load_onnx_model(p)
                check_meta_matches(meta, full, str(p))
                pairs.append((session, meta))
            loaded.append(pairs)
        else:
            loaded.append(read_predictions(spec.paths[0]))
    return device, loaded


def evaluate(models: Sequence[str | Path], opts: EvalOptions, warn: Warn = _noop,
             info: Warn = _noop) -> EvalReport:
    """Score each model on the faces and normaliser the protocol defines.

    Args:
        models: MODEL arguments (see the module docstring and :func:`parse_model_spec`).
        opts: data, protocol, normaliser, split, missing-face policy, device.
        warn: receives one-line warnings (e.g. no protocol tags, missing or non-finite predictions).
        info: receives one-line progress notes (which split, which model is running).

    Returns:
        The report; ``report.records()`` are the JSON records.

    Raises:
        UsageError: unknown protocol, split or normaliser, a protocol whose scheme is not the data's, an empty
            path, or a MODEL that is no kind of model (see :func:`parse_model_spec`).
        DataError: no faces selected, zero/undefined normaliser (face ids named), invalid manifest.
        ModelError: unreadable model, ONNX, scheme or landmark-count mismatch; unreadable or mismatched pose model.
    """
    if not models:
        raise UsageError("give at least one MODEL (a checkpoint or a predictions .jsonl)")
    for name, value in (("data", opts.data), ("pose_model", opts.pose_model)):
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder
            raise UsageError(f"`{name}` is an empty path")
    if any(not str(mdl).strip() for mdl in models):
        raise UsageError("a MODEL argument is an empty string")
    protocol = get_protocol(opts.protocol)
    specs = [parse_model_spec(str(mdl)) for mdl in models]  # an unknown kind of file is a usage error: first
    full = load_manifest(opts.data)
    if protocol.scheme is not None and full.scheme != protocol.scheme:
        raise UsageError(f"protocol {protocol.name} needs {protocol.scheme} landmarks, the data at {full.path} is "
                         f"{full.scheme} (use `protocol` custom for other data)")
    norm_kind = protocol.resolve_norm(opts.norm, full.scheme)
    sel, split, tag = select_faces(full, protocol, opts.split, warn)
    pose = _pose_bins(opts.pose_model, sel) if opts.pose_model is not None else None

    device, loaded = _load_models(specs, full, opts.device)  # before the long part: a bad model stops early
    d, definition = face_normaliser(sel, norm_kind)
    ev = EvalSet(sel, protocol, norm_kind, definition, d, split, tag, full.path)
    if pose is not None:
        ev.pose_model, ev.pose_bins = pose
        ev.pose_model_path = str(opts.pose_model)
    if protocol.name == "aflw-full":
        b = sel.boxes()
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        if np.any(np.abs(w - h) > 0.01 * np.maximum(w, h)):
            warn("some face boxes are not square: box-width, box-sqrt-area and box-max-side differ here "
                 "(AFLW-Full's published numbers use the dataset's square boxes)")
    info(f"evaluating {len(sel)} faces of split {split!r}" + (f" tagged {tag!r}" if tag else "")
         + f" ({protocol.name}, normaliser {norm_kind}, {sel.scheme})")

    scores = []
    for spec, obj in zip(specs, loaded):
        info(f"scoring {spec.label} ({spec.kind})")
        if spec.kind == "checkpoint":
            pred, details = _checkpoint_predictions(spec, ev, device, obj, warn)
            missing = np.zeros(len(sel), dtype=bool)
        elif spec.kind == "onnx":
            pred, details = _onnx_predictions(spec, ev, obj, warn)
            missing = np.zeros(len(sel), dtype=bool)
        else:
            pred, missing, details = match_predictions(obj, sel, full, warn)
        sc = _score(spec.label, spec.kind, pred, missing, details, ev, opts.skip_missing)
        if sc.record["missing"]:
            what = "left out (--skip-missing)" if opts.skip_missing else "counted as failures"
            warn(f"{spec.label}: {sc.record['missing']} of {len(sel)} faces have no prediction, {what} "
                 f"(e.g. {_ids(details.get('missing_ids', []), 3, sc.record['missing'])})")
        if sc.record["n_failed_nonfinite"]:
            warn(f"{spec.label}: {sc.record['n_failed_nonfinite']} face(s) have NaN/inf predicted coordinates, "
                 "counted as failures")
        scores.append(sc)
    return EvalReport(ev, scores, opts.skip_missing)
