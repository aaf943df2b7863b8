"""The reader interface: every dataset format yields ``RawFace`` (or ``ReadIssue`` for a bad annotation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["RawFace", "ReadIssue", "Reader", "ReaderResult", "register_reader", "READERS"]


@dataclass
class RawFace:
    """One annotated face as a reader found it, before any image is opened.

    Attributes:
        image: absolute path of the image file.
        landmarks: ``(L, 2)`` float64, 0-based pixel coordinates of ``image`` (NaN where missing).
        scheme: landmark scheme name (``facelm.schemes``).
        box: ``[x1, y1, x2, y2]`` dataset face box in the same coordinates, or None when the format has none.
        box_source: how the box was given (``"dataset"`` formats name it, e.g. ``"dlib-rect"``).
        visible: ``(L,)`` bool, or None when the format has no visibility.
        split: ``"train"``/``"test"`` when the format defines it, else None.
        subset: tags, e.g. ``["300w-common", "lfpw"]``.
        source: where the annotation came from, ``"file"`` or ``"file:line"``.
        attrs: other per-face attributes (e.g. MTFL pose, WFLW flags), JSON-serialisable.
    """

    image: Path
    landmarks: np.ndarray
    scheme: str
    box: np.ndarray | None = None
    box_source: str = ""
    visible: np.ndarray | None = None
    split: str | None = None
    subset: list[str] = field(default_factory=list)
    source: str = ""
    attrs: dict = field(default_factory=dict)


@dataclass
class ReadIssue:
    """An annotation that could not be used; ``prepare`` lists it as skipped and goes on."""

    source: str
    message: str


ReaderResult = Iterator[RawFace | ReadIssue]


@dataclass(frozen=True)
class Reader:
    """A dataset format.

    Attributes:
        name: format name used by ``prepare --format``.
        description: one line for ``--help`` and docs.
        read: ``read(path, scheme) -> iterator of RawFace | ReadIssue``. ``path`` is what the user gave
            (a folder or a file); ``scheme`` is the user's ``--scheme`` or None for the format's default.
        sniff: ``sniff(path) -> bool``: does this path look like this format? Used by ``--format auto``.
        default_scheme: the scheme the format implies, or None when it depends on the file.
    """

    name: str
    description: str
    read: Callable[[Path, str | None], ReaderResult]
    sniff: Callable[[Path], bool]
    default_scheme: str | None = None


READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    READERS[reader.name] = reader
    return reader
