"""COCO-style keypoint JSON as mmpose stores face landmarks (300W, AFLW, WFLW, COFW, LaPa, 300VW, 300W-LP).

Layout: ``{"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "keypoints", "bbox", ...}]}``.
``keypoints`` is ``[x, y, v] * K`` in pixels, used as written (**0-based**, as mmpose does); ``v > 0`` is visible.
Several annotations may share an image (one RawFace each).

Box, in order of preference:

* ``box_size`` and ``center`` (mmpose AFLW): a square of side ``box_size`` centred on ``center``
  (``box_source="aflw-box-size"``). AFLW-Full's NME normaliser is this box's width.
* ``bbox = [x, y, w, h]``: ``[x, y, x + w, y + h]`` (``box_source="coco-bbox"``).
* ``center`` and ``scale`` only (mmpose 300VW): a square of side ``scale * 200`` (``"hrnet-center-scale"``).

``center``, ``scale``, ``box_size`` and the annotation ``id`` are kept in ``attrs``.

Scheme from K (68 -> 300w68, 19 -> aflw19, 98 -> wflw98, 29 -> cofw29, 5 -> 5pt); any other K (LaPa's 106) gives
one ReadIssue per face unless a scheme (a custom scheme file) is given.

Images: ``file_name`` relative to the JSON's folder or its parent, each as is or with ``images/`` (mmpose keeps
``data/<set>/annotations/*.json`` beside ``data/<set>/images/``). Split: ``train``/``test`` when the JSON's name
has such a word after its first word (``face_landmarks_wflw_test.json``, ``cofw_train.json``; the fixtures'
``test_300w.json`` is not a split), overridden by :func:`w300_membership` of ``file_name`` for 68-point faces.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import (ImageResolver, SchemeResolver, ancestors, issue, list_files, parse_float,
                                     square_box)
from facelm.datasets.w300 import w300_membership

__all__ = ["read_coco_json", "sniff_coco_json", "COCO_JSON_READER"]


def _split_from_name(stem: str) -> str | None:
    toks = [t for t in re.split(r"[_\-. ]+", stem.lower()) if t][1:]
    if "train" in toks or "trainval" in toks:
        return "train"
    if "test" in toks:
        return "test"
    return None


def _load(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            d = json.load(fh)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not (isinstance(d, dict) and isinstance(d.get("images"), list) and isinstance(d.get("annotations"), list)):
        raise ValueError(f"{path}: not a COCO keypoint JSON (needs 'images' and 'annotations' lists)")
    return d


def _floats(v, n: int | None = None) -> list[float] | None:
    if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n):
        return None
    out = [parse_float(x) if not isinstance(x, bool) else None for x in v]
    return None if any(x is None for x in out) else out  # type: ignore[return-value]


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [f for f in list_files(path, (".json",)) if sniff_coco_json(f)]
        if files:
            return files
        raise ValueError(f"{path}: no COCO keypoint JSON ('images' + 'annotations') in this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_coco_json(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read a COCO keypoint JSON (or every one directly in a folder); see the module doc."""
    path = Path(os.path.abspath(path))
    files = _json_files(path)
    resolver = SchemeResolver(scheme)
    loaded = [(f, _load(f)) for f in files]

    def gen() -> ReaderResult:
        for f, d in loaded:
            images = {}
            for im in d["images"]:
                if isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str):
                    images[im["id"]] = im
            resolver_img = ImageResolver(ancestors(f.parent, 1), ("", "images"))
            file_split = _split_from_name(f.stem)
            for k, a in enumerate(d["annotations"]):
                src = f"{f}:annotations[{k}]"
                where = f"{f.name}: annotation {k}" + (f" (id {a.get('id')})" if isinstance(a, dict) else "")
                if not isinstance(a, dict):
                    yield issue(src, f"{where}: not an object")
                    continue
                im = images.get(a.get("image_id"))
                if im is None:
                    yield issue(src, f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
                    continue
                kp = _floats(a.get("keypoints"))
                if kp is None or not kp or len(kp) % 3:
                    yield issue(src, f"{where}: 'keypoints' is not a list of finite [x, y, v] triples")
                    continue
                arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
                name, why = resolver(len(arr))
                if name is None:
                    yield issue(src, f"{where}: {why}")
                    continue
                img = resolver_img.resolve(im["file_name"])
                if img is None:
                    yield issue(src, f"{where}: image not found: {im['file_name']} (looked under "
                                     f"{resolver_img.where()})")
                    continue
                attrs: dict = {}
                if "id" in a:
                    attrs["coco_id"] = a["id"]
                center = _floats(a.get("center"), 2)
                scale = parse_float(a.get("scale")) if a.get("scale") is not None else None
                box_size = parse_float(a.get("box_size")) if a.get("box_size") is not None else None
                bbox = _floats(a.get("bbox"), 4)
                if center is not None:
                    attrs["center"] = center
                if scale is not None:
                    attrs["scale"] = scale
                if box_size is not None:
                    attrs["box_size"] = box_size
                box, box_source = None, ""
                if box_size is not None and center is not None and box_size > 0:
                    box, box_source = square_box(center[0], center[1], box_size), "aflw-box-size"
                elif bbox is not None and bbox[2] > 0 and bbox[3] > 0:
                    box = np.array([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]], dtype=np.float64)
                    box_source = "coco-bbox"
                elif center is not None and scale is not None and scale > 0:
                    box, box_source = square_box(center[0], center[1], scale * 200.0), "hrnet-center-scale"
                split, tags = file_split, []
                if len(arr) == 68:
                    s300, t300 = w300_membership(im["file_name"])
                    if s300 is not None:
                        split, tags = s300, t300
                yield RawFace(image=Path(os.path.abspath(img)), landmarks=arr[:, :2].copy(), scheme=name,
                              box=box, box_source=box_source, visible=arr[:, 2] > 0, split=split, subset=tags,
                              source=src, attrs=attrs)

    return gen()


def sniff_coco_json(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_coco_json(f) for f in list_files(path, (".json",)))
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
            tail = fh.read(1 << 20) if size > 1 << 20 else b""
    except OSError:
        return False
    text = head + tail
    return (head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and b'"images"' in text
            and b'"annotations"' in text and b'"keypoints"' in text)


COCO_JSON_READER = register_reader(Reader(
    name="coco-json",
    description="COCO-style keypoint JSON as in mmpose ([x, y, v] * K, 0-based; bbox x, y, w, h)",
    read=read_coco_json,
    sniff=sniff_coco_json,
    default_scheme=None,
))
