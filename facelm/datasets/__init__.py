"""Dataset readers: every supported annotation format yields :class:`RawFace` (or :class:`ReadIssue`).

Formats (the names ``facelm prepare --format`` takes) and their modules:

============  ==========================  ====================================================================
name          module                      what
============  ==========================  ====================================================================
pts           ``pts``                     iBUG ``.pts`` beside images (300W, Menpo, 300VW, InfAnFace, UTKFace)
hrnet-csv     ``hrnet_csv``               HRNet ``face_landmarks_*.csv`` (center/scale)
coco-json     ``coco_json``               mmpose COCO-style keypoint JSON
aflw-mat      ``aflw_mat``                AFLW-Full ``AFLWinfo_release.mat``
cofw-mat      ``cofw_mat``                COFW ``COFW_{train,test}_color.mat`` (images embedded)
helen-mat     ``helen_mat``               HELEN-29 ``helen.mat`` (Zhou et al.)
wflw-txt      ``wflw_txt``                WFLW ``list_98pt_rect_attr_{train,test}.txt``
dlib-xml      ``dlib_xml``                dlib imglab XML
mtfl          ``mtfl``                    MTFL ``training.txt``/``testing.txt``
csv           ``plain_csv``               plain ``image,x0,y0,...`` CSV
ljson         ``ljson``                   menpo LJSON
============  ==========================  ====================================================================

All landmarks come out as ``(L, 2)`` float64 0-based pixel coordinates (``docs/formats.md`` gives each format's
convention and how it was checked).

Example:
    >>> from facelm.datasets import detect_format, read_faces     # doctest: +SKIP
    >>> detect_format(Path("../shared/data/ytf68-train"))
    'csv'
    >>> faces = [f for f in read_faces("../shared/data/ytf68-train") if isinstance(f, RawFace)]
"""

from __future__ import annotations

from pathlib import Path

from facelm.datasets._base import READERS, RawFace, ReadIssue, Reader, ReaderResult, register_reader
from facelm.datasets import (  # noqa: F401  (imported to register the readers)
    aflw_mat, coco_json, cofw_mat, dlib_xml, helen_mat, hrnet_csv, ljson, mtfl, plain_csv, pts, wflw_txt,
)
from facelm.datasets.hrnet_csv import read_hrnet_csv_annotations
from facelm.datasets.w300 import w300_membership

__all__ = [
    "READERS", "RawFace", "ReadIssue", "Reader", "ReaderResult", "register_reader",
    "DETECT_ORDER", "detect_format", "read_faces", "w300_membership", "read_hrnet_csv_annotations",
]

#: Order in which ``detect_format`` asks the readers. Formats recognised by a specific file or file content
#: come first; the ones that match loosely (any .pts / .ljson under a folder, any numeric CSV) come last, so
#: that e.g. helen29-train (helen.mat + a derived CSV) is ``helen-mat`` and UTKFace (.pts + labels.csv) is ``pts``.
DETECT_ORDER = (
    "mtfl", "wflw-txt", "aflw-mat", "cofw-mat", "helen-mat", "dlib-xml", "coco-json", "hrnet-csv",
    "pts", "ljson", "csv",
)


def _order() -> list[str]:
    extra = sorted(n for n in READERS if n not in DETECT_ORDER)  # readers registered by other code: last
    return [n for n in DETECT_ORDER if n in READERS] + extra


def detect_format(path: Path) -> str:
    """The name of the first reader (in :data:`DETECT_ORDER`) whose ``sniff`` accepts ``path``.

    Raises:
        ValueError: the path does not exist, is an empty folder, or no format matches (the message lists the
            formats).
    """
    path = Path(path)
    names = ", ".join(_order())
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder (annotation formats: {names})")
    if path.is_dir() and not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise ValueError(f"{path}: the folder is empty (expected annotations in one of the formats: {names})")
    for name in _order():
        try:
            if READERS[name].sniff(path):
                return name
        except (OSError, ValueError):
            continue
    kind = "folder" if path.is_dir() else "file"
    raise ValueError(f"{path}: cannot tell the annotation format of this {kind}; give `format`, one of: {names}")


def read_faces(path: str | Path, fmt: str = "auto", scheme: str | None = None) -> ReaderResult:
    """Read annotations: an iterator of :class:`RawFace` and :class:`ReadIssue`.

    Args:
        path: a file or folder, as the format expects.
        fmt: a format name (see :data:`READERS`) or ``"auto"`` (:func:`detect_format`).
        scheme: a scheme name or a ``.json``/``.toml`` scheme file; None lets the format decide.

    Raises:
        ValueError: unknown format, missing path, or input that is not in that format at all (raised here,
            before iteration, by every built-in reader).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file or folder")
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r} (known: auto, {', '.join(_order())})")
    return READERS[fmt].read(p, scheme)
