"""The facelm ONNX contract: the metadata a landmark model carries and how it is read, written and checked.

An exported model holds one metadata entry ``facelm`` (``META_KEY``): a JSON object with the checkpoint's
``meta`` (arch, stage, scheme definition, input size, crop convention, ...) plus the export's own fields
(precision, ONNX details, detector box maps). The graph has one input ``images`` ``(N, 3, S, S)`` float32 RGB
in [0, 255] and an output ``landmarks`` ``(N, L, 2)`` in crop pixels. See docs/export.md.

``onnx`` is imported only by the functions that read or write files, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import TYPE_CHECKING

from facelm.errors import ModelError
from facelm.schemes import LandmarkScheme

if TYPE_CHECKING:
    import numpy as np
    import onnx

__all__ = ["LABEL_SHIFT_LIMIT", "META_KEY", "check_meta_matches", "label_shift", "load_proto", "meta_from_session",
           "meta_scheme", "parse_meta", "proto_meta", "read_onnx_meta", "set_onnx_meta", "shift_landmarks",
           "stored_weights"]

META_KEY = "facelm"
#: the largest ``label_shift`` a model file may carry (a fraction of the eye-centre distance)
LABEL_SHIFT_LIMIT = 0.1


def _not_ours(p) -> ModelError:
    return ModelError(f"{p}: not a facelm model (no '{META_KEY}' metadata; export it with `facelm export`)")


def parse_meta(raw: str, path) -> dict:
    """The metadata JSON of ``path``; ``ModelError`` when it does not parse."""
    try:
        return json.loads(raw)
    except ValueError:
        raise ModelError(f"{path}: corrupt facelm metadata in the ONNX file") from None


def set_onnx_meta(proto, meta: dict) -> None:
    """Write ``meta`` as the facelm metadata of an ``onnx.ModelProto`` (replacing any previous entry)."""
    for p in list(proto.metadata_props):
        if p.key == META_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "facelm"


def load_proto(path: str | Path, load_external_data: bool = True):
    """``onnx.load`` with ``ModelError`` for a missing or unreadable file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: ONNX file not found")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have many types
        raise ModelError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None


def proto_meta(proto, path) -> dict:
    """The facelm metadata of a loaded ``onnx.ModelProto``; ``ModelError`` if it is not a facelm model."""
    raw = next((prop.value for prop in proto.metadata_props if prop.key == META_KEY), None)
    if raw is None:
        raise _not_ours(path)
    return parse_meta(raw, path)


def _varint(buf, i: int) -> tuple[int, int]:
    """The protobuf varint at ``buf[i:]`` and the offset after it; ``ValueError`` past the end or past 64 bits."""
    value = shift = 0
    while i < len(buf) and shift < 64:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7
    raise ValueError("malformed varint")


def _fields(buf, start: int, end: int):
    """(field number, wire type, value or (offset, length) of a length-delimited field) of the protobuf message in
    ``buf[start:end]``; ``ValueError`` for anything that does not walk cleanly up to ``end`` exactly."""
    i = start
    while i < end:
        tag, i = _varint(buf, i)
        wire = tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = (i, n), i + n
        else:
            raise ValueError(f"wire type {wire}")
        if i > end:
            raise ValueError("a field runs past its message")
        yield tag >> 3, wire, value


def _wire_meta(path: Path) -> str | None:
    """The facelm metadata string of an ONNX file read off its protobuf wire format (None: the file has none),
    without importing ``onnx`` (about 1 s) or parsing the graph, which is skipped by its length. Field 14 of
    ``ModelProto`` is ``metadata_props``: repeated ``StringStringEntryProto`` (key 1, value 2). ``ValueError`` or
    ``OSError`` for anything that does not walk cleanly; the caller then reads the file with ``onnx``."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        found = None
        for field, wire, value in _fields(buf, 0, len(buf)):
            if field != 14 or wire != 2:
                continue
            entry = dict.fromkeys((1, 2), b"")
            for k, kw, kv in _fields(buf, value[0], value[0] + value[1]):
                if k in entry and kw == 2:
                    entry[k] = buf[kv[0]:kv[0] + kv[1]]
            if entry[1] == META_KEY.encode():
                found = entry[2].decode("utf-8")
        return found


def read_onnx_meta(path: str | Path) -> dict:
    """The facelm metadata of an ONNX file; ``ModelError`` if the file is not a facelm model.

    Read off the wire format first (fast, ``_wire_meta``); a file that does not walk cleanly, or holds no facelm
    entry, is read again with ``onnx`` so that its errors are worded as before."""
    p = Path(path)
    try:
        raw = _wire_meta(p) if p.is_file() else None
    except (OSError, ValueError):
        raw = None
    if raw is not None:
        return parse_meta(raw, p)
    return proto_meta(load_proto(path, load_external_data=False), p)


def meta_from_session(session, path) -> dict:
    """The facelm metadata of an onnxruntime ``InferenceSession``; ``ModelError`` if it has none."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise _not_ours(path)
    return parse_meta(raw, path)


def meta_scheme(meta: dict, source: str = "model metadata") -> LandmarkScheme:
    """The landmark scheme of a model's metadata: the registered one of that name, else registered from the
    definition the metadata carries (custom schemes travel with their models)."""
    from facelm.schemes import get_scheme, register_scheme, scheme_from_dict

    sch = meta.get("scheme") or {}
    try:
        return get_scheme(sch["name"])
    except KeyError:
        try:
            return register_scheme(scheme_from_dict(sch, source=source))
        except ValueError as e:
            raise ModelError(f"the model's landmark scheme is unusable: {e}") from None


def check_meta_matches(meta: dict, manifest, what: str = "model") -> None:
    """``ModelError`` when a model's scheme or landmark count differs from a manifest's."""
    name = (meta.get("scheme") or {}).get("name")
    if name != manifest.scheme:
        raise ModelError(f"{what} predicts scheme {name!r}, but {manifest.path} is {manifest.scheme!r}")
    if int(meta.get("num_landmarks", -1)) != manifest.landmarks.shape[1]:
        raise ModelError(f"{what} predicts {meta.get('num_landmarks')} landmarks, but {manifest.path} has "
                         f"{manifest.landmarks.shape[1]}")


def label_shift(meta: dict, source: str = "model metadata") -> float:
    """The model's *label shift*: how far its final landmarks are moved along the eye line (image-left to
    image-right eye), as a fraction of the distance between the eye centres; 0 when the metadata has none.

    Why it exists: a network trained with horizontal flips reads faces mirror-symmetrically, so it cannot learn an
    annotation convention that places every point a little to one side (300-W's hand-placed 68 points sit about
    1.2% of that distance to the image right of the mirror-symmetric reading; models/README.md, "Label shift"). A
    model file carries that offset in its metadata (``facelm export --label-shift``) and ``predict`` and
    ``evaluate`` add it to the landmarks they report (:func:`shift_landmarks`).

    Raises:
        ModelError: the value is not a finite number within +-``LABEL_SHIFT_LIMIT``.
    """
    v = meta.get("label_shift", 0.0)
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ModelError(f"{source}: label_shift {v!r} is not a number") from None
    if not abs(x) <= LABEL_SHIFT_LIMIT:  # (also NaN)
        raise ModelError(f"{source}: label_shift {x} is outside -{LABEL_SHIFT_LIMIT}..{LABEL_SHIFT_LIMIT}")
    return x


def shift_landmarks(shapes, shift: float, scheme: LandmarkScheme):
    """``shapes`` ``(..., L, 2)`` moved by ``shift`` times their own eye-centre vector (image-left eye to
    image-right eye, :meth:`LandmarkScheme.eye_centres`): a translation along each face's eye line, so it turns
    with the face and scales with it. Returns a new float64 array (the input when ``shift`` is 0)."""
    import numpy as np

    s = np.asarray(shapes, dtype=np.float64)
    if shift == 0.0:
        return s
    le, re = scheme.eye_centres(s)
    return s + shift * (re - le)[..., None, :]


def stored_weights(proto: onnx.ModelProto) -> tuple[dict[str, np.ndarray], set[int], set[str]]:
    """The float32 weights of a model whose weights are stored as fp16 (``NAME__fp16`` + ``Cast``) or int8
    (``NAME__int8``, ``__scale``, ``__shape`` + ``Cast``, ``Mul``, ``Reshape``): ``({NAME: weights}, indices of the
    decoding nodes, stored initializer names)``. Plain float32 initializers are not included (``facelm export
    --weights fp16|int8``; ``facelm.export_formats``)."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    by_output = {n.output[0]: k for k, n in enumerate(proto.graph.node) if len(n.output) == 1}
    graph = list(proto.graph.node)
    out: dict[str, np.ndarray] = {}
    nodes: set[int] = set()
    stored: set[str] = set()
    for k, n in enumerate(graph):
        src = n.input[0] if n.op_type == "Cast" and len(n.input) == 1 else None
        if src is None or src not in inits:
            continue
        if src.endswith("__fp16"):
            out[n.output[0]] = numpy_helper.to_array(inits[src]).astype(np.float32)
            nodes.add(k)
            stored.add(src)
        elif src.endswith("__int8"):
            name = src.removesuffix("__int8")
            parts = [f"{name}__scale", f"{name}__shape"]
            chain = [by_output.get(f"{name}__deq"), by_output.get(name)]
            if None in chain or any(p not in inits for p in parts) \
                    or [graph[j].op_type for j in chain] != ["Mul", "Reshape"]:
                continue
            codes = numpy_helper.to_array(inits[src]).astype(np.float32)
            scale, shape = (numpy_helper.to_array(inits[p]) for p in parts)
            out[name] = (codes * scale.astype(np.float32)).reshape(shape)
            nodes |= {k, *chain}
            stored |= {src, *parts}
    return out, nodes, stored
