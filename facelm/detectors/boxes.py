"""Faces without a detector: boxes from a file (``--boxes FILE``) or the whole image (``--no-detect``).

**Boxes files** give, per image, face squares in the *training* convention: the square the landmarks of the face
fill (for ``300w68`` the landmark bounding square; schemes with a ``face_box_scale`` enlarge it the same way);
the model crop covers 1.2 x the box, centred on it, with side ``max(w, h)``. Accepted layouts:

* JSON object: ``{"a.jpg": [[x1, y1, x2, y2], [x1, y1, x2, y2, score]], ...}``;
* JSON array or JSONL of objects with ``"image"`` and one of ``"boxes"`` (list of boxes), ``"box"`` (one box)
  or ``"faces"`` (``[{"box": [...], "score": ...}]``): the output of ``facelm predict`` can be fed back;
* CSV, one row per face: ``image,x1,y1,x2,y2[,score]`` (a header row is recognised and may name the columns
  ``image``, ``x1``, ``y1``, ``x2``, ``y2``, ``score``); ``facelm predict``'s CSV (``box_x1`` ...) too.

**Box kinds** (``--boxes-kind``): the boxes in ``facelm predict``'s output are *detector* boxes, not face squares;
feeding them back as squares moved the landmarks by a median 5% of the inter-ocular distance. ``auto`` (the
default) takes predict's own output (records with ``"faces"``, its CSV) as detector boxes, which go through the
stage-1 model's box map like a live detection, and every other file as face squares; ``detector`` and ``square``
say it explicitly.

Image keys match the SOURCE names exactly (as written: predict's own CSV keeps spaces and line breaks; a hand-made
CSV's names are trimmed, ``a.jpg , 1, 2, 30, 40`` is a.jpg), else after normalising the path (relative to the
working directory or to the boxes file's folder), else by file name when that is unique. The file is read as UTF-8;
bytes that are
not (the names of files whose names are not UTF-8, as ``facelm predict``'s CSV writes them) stand for themselves.
A video frame is ``"clip.mp4#12"`` (or ``"clip.mp4"`` for every frame). An image that is not in the file gets an
error record; an image listed with no boxes has no faces. An image whose record in predict's own output is an
error (it could not be read then) counts as not in the file: its boxes are not known, it does not have no faces.

``--no-detect``: the whole image *is* the model crop (a face crop made like the training crops: the face square
plus 10% each side); non-square images are padded with black to a square around their centre.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from facelm.detectors.base import Detection, FaceDetector
from facelm.errors import DataError

__all__ = ["BOX_KINDS", "BoxLookupError", "BoxesFileDetector", "WholeImageDetector", "boxes_file_kind",
           "read_boxes_file"]

#: ``--boxes-kind``: ``auto`` = ``detector`` for ``facelm predict``'s own output (records with ``faces``, or its
#: CSV), else ``square``; ``detector`` = detector boxes, mapped through the model's box map like a detection;
#: ``square`` = face squares in the training convention (see the module docstring).
BOX_KINDS = ("auto", "detector", "square")


#: the largest |coordinate| of a given box, in pixels: far beyond any image, short of an overflowing crop
MAX_COORD = 1e6


class BoxLookupError(LookupError):
    """The image has no entry in the boxes file."""


def _box_row(v, where: str) -> tuple[list[float], float]:
    if isinstance(v, dict):
        b = v.get("box") or v.get("bbox")
        score = v.get("score", 1.0)
    else:
        b, score = v, 1.0
    try:
        vals = [float(x) for x in b]
    except (TypeError, ValueError):
        raise DataError(f"{where}: a box must be [x1, y1, x2, y2] numbers, got {b!r}") from None
    if len(vals) == 5 and not isinstance(v, dict):
        vals, score = vals[:4], vals[4]
    if len(vals) != 4:
        raise DataError(f"{where}: a box must be [x1, y1, x2, y2], got {len(vals)} values")
    if not (vals[2] > vals[0] and vals[3] > vals[1]) or not all(np.isfinite(vals)):
        raise DataError(f"{where}: box {vals} is empty or not finite (expected x1 < x2, y1 < y2)")
    if max(abs(x) for x in vals) > MAX_COORD:  # finite, but its crop would overflow: an error for every image
        raise DataError(f"{where}: box {vals} lies beyond +-{MAX_COORD:g} pixels")
    try:
        return vals, float(score if score is not None else 1.0)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a score must be a number, got {score!r}") from None


def _from_objects(objs: list, path: Path) -> dict[str, list[tuple[list[float], float]]]:
    out: dict[str, list] = defaultdict(list)
    for i, o in enumerate(objs):
        where = f"{path} entry {i + 1}"
        if not isinstance(o, dict) or "image" not in o:
            raise DataError(f"{where}: expected an object with an \"image\" key")
        key = str(o["image"])
        if o.get("frame") is not None:
            key = f"{key}#{int(o['frame'])}"
        if o.get("error") and not o.get("faces"):  # predict's record of an image it failed on: no boxes known
            continue
        out.setdefault(key, [])
        if "boxes" in o:
            out[key] += [_box_row(b, where) for b in o["boxes"] or []]
        elif "box" in o:
            out[key].append(_box_row(o["box"], where) if o["box"] is not None else None)
            out[key] = [b for b in out[key] if b is not None]
        elif "faces" in o:
            out[key] += [_box_row(f, where) for f in o["faces"] or []]
    return dict(out)


def read_boxes_file(path: str | Path) -> dict[str, list[tuple[list[float], float]]]:
    """``{image key: [([x1, y1, x2, y2], score), ...]}`` from a JSON, JSONL or CSV boxes file (``DataError``)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"`boxes` {p}: cannot read ({e.strerror or e})") from None
    if b"\0" in data:
        raise DataError(f"`boxes` {p}: cannot read (a binary file, not UTF-8 text)")
    # line breaks untranslated (a quoted CSV name keeps its own); bytes that are not UTF-8 stand for themselves, as
    # the names of files whose names are not UTF-8 do in predict's CSV and in the SOURCE names (surrogate escapes)
    text = data.decode("utf-8-sig", errors="surrogateescape")
    if not text.strip():
        raise DataError(f"`boxes` {p}: empty file")
    try:
        return _parse_boxes(text, p)
    except csv.Error as e:
        raise DataError(f"`boxes` {p}: not a CSV file ({e})") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as e:  # a well-formed file of the wrong shape
        raise DataError(f"`boxes` {p}: not a boxes file ({type(e).__name__}: {e})") from None


def _parse_boxes(text: str, p: Path) -> dict[str, list[tuple[list[float], float]]]:
    stripped = text.lstrip()
    if stripped[0] in "{[":
        try:
            doc = json.loads(text)
        except ValueError:
            try:  # JSONL: lines end at \n (or \r); U+2028, U+0085 ... may stand raw inside its strings
                doc = [json.loads(line) for line in text.replace("\r", "\n").split("\n") if line.strip()]
            except ValueError as e:
                raise DataError(f"`boxes` {p}: not valid JSON or JSONL ({e})") from None
        if isinstance(doc, dict):
            if "image" in doc:
                return _from_objects([doc], p)
            return {str(k): [_box_row(b, f"{p} [{k!r}]") for b in (v or [])] for k, v in doc.items()}
        if isinstance(doc, list):
            return _from_objects(doc, p)
        raise DataError(f"`boxes` {p}: expected a JSON object or array")
    rows = list(csv.reader(io.StringIO(text, newline="")))  # a quoted name keeps its line breaks
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    cols = {"image": 0, "x1": 1, "y1": 2, "x2": 3, "y2": 4, "score": 5}
    first = [c.strip().lower() for c in rows[0]]

    def _num(c: str) -> bool:
        try:
            float(c)
            return True
        except ValueError:
            return False

    frame_col = error_col = -1
    if len(first) > 1 and not any(_num(c) for c in first[1:5]):  # a header row
        named = {c: i for i, c in enumerate(first)}
        for k in ("x1", "y1", "x2", "y2"):  # facelm predict's CSV: box_x1 ... box_y2 (its x1, y1 are landmarks)
            if f"box_{k}" in named:
                named[k] = named[f"box_{k}"]
        if all(k in named for k in ("x1", "y1", "x2", "y2")):
            cols = {k: named.get(k, -1) for k in cols}
            cols["image"] = next((named[k] for k in ("image", "file", "path", "filename") if k in named), 0)
            frame_col = named.get("frame", -1)
            error_col = named.get("error", -1)
        rows = rows[1:]
    # predict's own CSV (box_x1 ... columns) names its images exactly, leading spaces and all; in a hand-made file
    # `a.jpg , 1, 2, 30, 40` means a.jpg
    own = "box_x1" in first
    out: dict[str, list] = defaultdict(list)
    for n, r in enumerate(rows, start=2):
        key = r[cols["image"]] if cols["image"] < len(r) else ""
        key = key if own else key.strip()
        if 0 <= frame_col < len(r) and r[frame_col].strip():
            key = f"{key}#{int(float(r[frame_col]))}"
        if all(0 <= cols[k] < len(r) and not r[cols[k]].strip() for k in ("x1", "y1", "x2", "y2")):
            if not (0 <= error_col < len(r) and r[error_col].strip()):  # a failed image's row: no boxes known
                out.setdefault(key, [])  # predict's row for an image without faces
            continue
        try:
            vals = [float(r[cols[k]]) for k in ("x1", "y1", "x2", "y2")]
            score = float(r[cols["score"]]) if 0 <= cols["score"] < len(r) and r[cols["score"]].strip() else 1.0
        except (IndexError, ValueError):
            raise DataError(f"`boxes` {p} row {n}: expected image,x1,y1,x2,y2[,score]") from None
        out[key].append((_box_row(vals, f"{p} row {n}")[0], score))
    return dict(out)


def boxes_file_kind(path: str | Path) -> str:
    """``"detector"`` when the boxes file is ``facelm predict``'s output (JSON/JSONL records with ``"faces"``, or
    its CSV with ``box_x1`` ...), whose boxes are the detector's; else ``"square"``."""
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
            head = fh.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return "square"
    text = head.lstrip()
    if text[:1] in "{[":
        return "detector" if '"faces"' in head else "square"
    first = text.splitlines()[0].lower() if text else ""
    return "detector" if "box_x1" in first else "square"


def _norm(key: str, base: Path | None = None) -> str:
    p = Path(key)
    if base is not None and not p.is_absolute():
        p = base / p
    return os.path.normcase(os.path.abspath(p))


def _split(key: str) -> tuple[str, str]:
    """``("clip.mp4", "#12")`` for a video frame's key ``"clip.mp4#12"``, else ``(key, "")``."""
    img, sep, frame = key.rpartition("#")
    return (img, sep + frame) if sep and frame.isdigit() else (key, "")


class _KeyIndex:
    """Finds a SOURCE name among a boxes file's keys: exactly, else as a path (relative to the working directory or
    to ``base``), else by file name when that is unique."""

    def __init__(self, keys, base: Path):
        self.exact = dict.fromkeys(keys)  # in file order: the first of two keys naming one path wins
        self.by_abs: dict[str, str] = {}
        names: dict[str, list[str]] = defaultdict(list)
        for k in self.exact:
            img, suffix = _split(k)
            for b in (None, base):
                self.by_abs.setdefault(_norm(img, b) + suffix, k)
            names[os.path.basename(img) + suffix].append(k)
        self.by_name = {n: ks[0] for n, ks in names.items() if len(ks) == 1}

    def find(self, cands: list[str]) -> str | None:
        for c in cands:
            if c in self.exact:
                return c
        for c in cands:
            img, suffix = _split(c)
            k = self.by_abs.get(_norm(img) + suffix)
            if k is not None:
                return k
        for c in cands:
            img, suffix = _split(c)
            k = self.by_name.get(os.path.basename(img) + suffix)
            if k is not None:
                return k
        return None


class BoxesFileDetector(FaceDetector):
    """Boxes read from a file (see the module docstring); the boxes are face squares, not detector boxes."""

    name = "boxes"

    def __init__(self, path: str | Path, kind: str = "square"):
        """``kind``: ``square`` (face squares), ``detector`` (detector boxes: the pipeline maps them through the
        box map it is given) or ``auto`` (:func:`boxes_file_kind`)."""
        if kind not in BOX_KINDS:
            raise ValueError(f"kind must be one of {', '.join(BOX_KINDS)}, not {kind!r}")
        self.path = Path(path)
        self.table = read_boxes_file(self.path)
        self.kind = boxes_file_kind(self.path) if kind == "auto" else kind
        self._keys = _KeyIndex(self.table, self.path.parent)
        # a file that is not UTF-8 (Latin-1, say) is read with its other bytes standing for themselves: its names
        # match only files named with those very bytes, which the message then says
        self._hint = (" (the file is not UTF-8: its names with other bytes match only files named with those bytes)"
                      if any(any("\udc80" <= c <= "\udcff" for c in k) for k in self.table) else "")

    def describe(self) -> str:
        what = "detector boxes" if self.kind == "detector" else "face squares"
        return f"{what} from {self.path} ({len(self.table)} images)"

    def _key(self, name: str, frame: int | None) -> str | None:
        """The table key of a SOURCE name (``" a.jpg"`` and ``"a.jpg"`` are two files)."""
        return self._keys.find([f"{name}#{frame}", name] if frame is not None else [name])

    def detect(self, image: np.ndarray, name: str | None = None, frame: int | None = None) -> list[Detection]:
        key = self._key(name or "", frame)
        if key is None:
            raise BoxLookupError(f"no boxes for this image in {self.path}" + self._hint)
        kind = "detector" if self.kind == "detector" else "face-square"
        return [Detection(box=np.asarray(b, dtype=np.float64), score=s, kind=kind) for b, s in self.table[key]]


class WholeImageDetector(FaceDetector):
    """``--no-detect``: one face per image, the whole image being the model crop."""

    name = "none"

    def describe(self) -> str:
        return "none (--no-detect: each image is one face crop)"

    def detect(self, image: np.ndarray, name: str | None = None, frame: int | None = None) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection(box=np.array([-0.5, -0.5, w - 0.5, h - 0.5]), score=1.0, kind="crop")]
