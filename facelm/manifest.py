"""Prepared datasets: ``DIR/manifest.jsonl`` (one face per line), ``DIR/crops.npy`` and ``DIR/prepare.json``.

A manifest line (``Sample``) holds the face in original-image coordinates and a pointer into the crop cache::

    {"id": "a1b2c3d4e5f6-0", "image": "../raw/x.jpg", "width": 640, "height": 480,
     "box": [x1, y1, x2, y2], "box_source": "dataset-name or landmarks",
     "landmarks": [[x, y], ...], "visible": [true, ...] | null,
     "scheme": "300w68", "split": "train" | "val" | "test", "subset": ["helen"], "group": "...",
     "source": "file:line", "attrs": {}, "cache": {"index": 17, "matrix": [[a, b, c], [d, e, f]]},
     "dup_of": null}

``image`` is relative to the manifest's folder. ``cache.matrix`` maps original image pixels to crop-cache pixels
(the ``facelm.geometry`` convention); ``crops.npy`` is an ``(N, S, S, 3)`` uint8 RGB array read by memory map.
``dup_of`` is set by ``facelm balance`` on duplicated lines (the index of the line it copies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from facelm._io import atomic_write
from facelm.errors import DataError

__all__ = ["Sample", "CacheRef", "Manifest", "load_manifest", "write_manifest", "MANIFEST_NAME", "CROPS_NAME",
           "PREPARE_NAME", "manifest_path"]

MANIFEST_NAME = "manifest.jsonl"
CROPS_NAME = "crops.npy"
PREPARE_NAME = "prepare.json"
Split = Literal["train", "val", "test"]


class CacheRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    matrix: list[list[float]]


class Sample(BaseModel):
    """One face of a prepared dataset (one manifest line)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    image: str
    width: int
    height: int
    box: list[float] = Field(min_length=4, max_length=4)
    box_source: str = ""
    landmarks: list[list[float]]
    visible: list[bool] | None = None
    scheme: str
    split: Split
    subset: list[str] = []
    group: str = ""
    source: str = ""
    attrs: dict = {}
    cache: CacheRef | None = None
    dup_of: int | None = None

    @field_validator("landmarks")
    @classmethod
    def _pairs(cls, v: list[list[float]]) -> list[list[float]]:
        if any(len(p) != 2 for p in v):
            raise ValueError("every landmark must be an [x, y] pair")
        return v


@dataclass
class Manifest:
    """A loaded prepared dataset, with the landmark arrays stacked for fast use.

    Attributes:
        root: the folder holding the manifest.
        samples: the lines.
        landmarks: ``(N, L, 2)`` float64 original-image pixels.
        cache_matrix: ``(N, 2, 3)`` float64 image -> cache affine.
        cache_index: ``(N,)`` int row of ``crops.npy``.
        info: the ``prepare.json`` content (cache size, margin, ...).
    """

    root: Path
    samples: list[Sample]
    landmarks: np.ndarray
    cache_matrix: np.ndarray
    cache_index: np.ndarray
    info: dict
    path: Path

    @property
    def scheme(self) -> str:
        return self.samples[0].scheme

    def __len__(self) -> int:
        return len(self.samples)

    def select(self, mask: np.ndarray | list[bool]) -> Manifest:
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        return Manifest(self.root, [self.samples[i] for i in idx], self.landmarks[idx], self.cache_matrix[idx],
                        self.cache_index[idx], self.info, self.path)

    def split(self, name: str) -> Manifest:
        return self.select([s.split == name for s in self.samples])

    def crops(self, mmap: bool = True) -> np.ndarray:
        """The crop cache ``(M, S, S, 3)`` uint8 (memory-mapped by default)."""
        p = self.root / self.info.get("crops", CROPS_NAME)
        if not p.is_file():
            raise DataError(f"{p}: crop cache missing (run `facelm prepare` again)")
        try:
            return np.load(p, mmap_mode="r" if mmap else None)
        except (ValueError, OSError) as e:
            raise DataError(f"{p}: unreadable crop cache: {e}") from None

    def boxes(self) -> np.ndarray:
        return np.array([s.box for s in self.samples], dtype=np.float64).reshape(-1, 4)

    def image_path(self, i: int) -> Path:
        return (self.root / self.samples[i].image).resolve()

    def content_hash(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def manifest_path(path: str | Path) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def load_manifest(path: str | Path, *, scheme: str | None = None) -> Manifest:
    """Load a prepared dataset from its folder or its ``manifest.jsonl``.

    Raises:
        DataError: missing file, invalid line (named with its line number), mixed schemes, empty manifest, or a
            scheme other than ``scheme`` when given.
    """
    mp = manifest_path(path)
    if not mp.is_file():
        raise DataError(f"{mp}: no manifest (expected a folder written by `facelm prepare`)")
    samples: list[Sample] = []
    with open(mp, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                samples.append(Sample.model_validate_json(line))
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(x) for x in first["loc"])
                raise DataError(f"{mp}:{n}: invalid manifest line ({loc}: {first['msg']})") from None
    if not samples:
        raise DataError(f"{mp}: the manifest is empty")
    schemes = sorted({s.scheme for s in samples})
    if len(schemes) > 1:
        raise DataError(f"{mp}: mixed landmark schemes {schemes}; prepare one scheme per folder")
    if scheme is not None and schemes[0] != scheme:
        raise DataError(f"{mp}: manifest scheme is {schemes[0]!r}, expected {scheme!r}")
    counts = {len(s.landmarks) for s in samples}
    if len(counts) > 1:
        raise DataError(f"{mp}: lines have different landmark counts {sorted(counts)}")
    info = _read_prepare_info(mp.parent / PREPARE_NAME)
    _register_custom_scheme(schemes[0], info, mp)
    lm = np.array([s.landmarks for s in samples], dtype=np.float64)
    mats = np.array([s.cache.matrix if s.cache else np.full((2, 3), np.nan) for s in samples], dtype=np.float64)
    idx = np.array([s.cache.index if s.cache else -1 for s in samples], dtype=np.int64)
    return Manifest(mp.parent, samples, lm, mats, idx, info, mp)


def _read_prepare_info(path: Path) -> dict:
    """``prepare.json`` (``{}`` when there is none); ``DataError`` naming it when it is unreadable or not an
    object."""
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable {PREPARE_NAME} ({e}); run `facelm prepare` again") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: {PREPARE_NAME} must hold a JSON object, not a {type(info).__name__}")
    return info


def _register_custom_scheme(name: str, info: dict, where: Path) -> None:
    """A custom scheme (from a JSON/TOML file at prepare time) travels in prepare.json; register it on load so
    train, evaluate and balance work in a new process without the original file."""
    from facelm.schemes import get_scheme, register_scheme, scheme_from_dict

    try:
        get_scheme(name)
        return
    except KeyError:
        pass
    d = info.get("scheme_def")
    if not d or d.get("name") != name:
        return  # callers that need the scheme say it is unknown; a mismatch check may come first
    try:
        register_scheme(scheme_from_dict(d, source=str(where.parent / PREPARE_NAME)))
    except ValueError as e:
        raise DataError(str(e)) from None


def write_manifest(path: str | Path, samples: Iterable[Sample]) -> int:
    """Write samples as JSONL atomically; returns the number of lines."""
    n = 0
    with atomic_write(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(s.model_dump_json(exclude_defaults=False) + "\n")
            n += 1
    return n
