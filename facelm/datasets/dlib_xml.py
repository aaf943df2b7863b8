"""dlib imglab XML (``training_with_face_landmarks.xml``, the format of dlib's ``train_shape_predictor``).

::

    <dataset><images>
      <image file='2007_007763.jpg'>
        <box top='90' left='194' width='37' height='37'>
          <part name='00' x='201' y='107'/> ...
        </box>
      </image>
    </images></dataset>

``file`` is relative to the XML's folder. Points are **0-based** pixels, ordered by their numeric ``name``
(dlib writes ``00``..``67``). Box ``[left, top, left + width, top + height]`` (``box_source="dlib-rect"``; dlib's
own rectangle has inclusive right/bottom = ``left + width - 1``). Boxes with ``ignore='1'`` are skipped silently.
Scheme from the part count: 68 -> 300w68. dlib's 5-point model (2 corners per eye + nose base) is **not** the
``5pt`` scheme, so 5 parts need a scheme file; other counts follow the usual table.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from facelm.datasets._base import RawFace, Reader, ReaderResult, register_reader
from facelm.datasets._common import (DEFAULT_SCHEME_BY_COUNT, SchemeResolver, head_text, issue, list_files,
                                     parse_float)

__all__ = ["read_dlib_xml", "sniff_dlib_xml", "DLIB_XML_READER"]

_BY_COUNT = {k: v for k, v in DEFAULT_SCHEME_BY_COUNT.items() if k != 5}


def _xml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [f for f in list_files(path, (".xml",)) if sniff_dlib_xml(f)]
        if files:
            return files
        raise ValueError(f"{path}: no dlib imglab XML (<dataset><images><image file=...>) in this folder")
    raise ValueError(f"{path}: no such file or folder")


def read_dlib_xml(path: Path, scheme: str | None = None) -> ReaderResult:
    """Read a dlib imglab XML file (or every one in a folder); see the module doc."""
    files = [Path(os.path.abspath(f)) for f in _xml_files(Path(path))]
    trees = []
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except (ET.ParseError, OSError) as e:
            raise ValueError(f"{f}: not readable XML ({e})") from None
        if root.tag != "dataset" or root.find("images") is None:
            raise ValueError(f"{f}: not a dlib imglab XML (no <dataset><images>)")
        trees.append((f, root))
    resolver = SchemeResolver(scheme, _BY_COUNT)

    def gen() -> ReaderResult:
        for f, root in trees:
            for k_img, im in enumerate(root.find("images").iter("image")):
                rel = (im.get("file") or "").strip().replace("\\", "/")
                for k_box, b in enumerate(im.findall("box")):
                    src = f"{f}:image[{k_img}]/box[{k_box}]"
                    where = f"{f.name}: image {rel or k_img!r} box {k_box}"
                    if (b.get("ignore") or "0").strip() not in ("0", "", "false"):
                        continue
                    parts = []
                    bad = None
                    for p in b.findall("part"):
                        try:
                            key = int(p.get("name", ""))
                        except ValueError:
                            bad = f"part name {p.get('name')!r} is not a number"
                            break
                        x, y = parse_float(p.get("x")), parse_float(p.get("y"))
                        if x is None or y is None:
                            bad = f"part {p.get('name')}: x/y not finite numbers"
                            break
                        parts.append((key, x, y))
                    if bad:
                        yield issue(src, f"{where}: {bad}")
                        continue
                    if not parts:
                        yield issue(src, f"{where}: no <part> landmarks")
                        continue
                    parts.sort()
                    keys = [p[0] for p in parts]
                    if keys != list(range(len(keys))):
                        yield issue(src, f"{where}: part names are not 0..{len(keys) - 1}")
                        continue
                    name, why = resolver(len(parts))
                    if name is None:
                        yield issue(src, f"{where}: {why}")
                        continue
                    if not rel:
                        yield issue(src, f"{where}: <image> has no file attribute")
                        continue
                    img = Path(rel) if Path(rel).is_absolute() else f.parent / rel
                    if not img.is_file():
                        yield issue(src, f"{where}: image not found: {img}")
                        continue
                    box, box_source = None, ""
                    vals = [parse_float(b.get(k)) for k in ("left", "top", "width", "height")]
                    if all(v is not None for v in vals):
                        left, top, w, h = vals
                        box, box_source = np.array([left, top, left + w, top + h], dtype=np.float64), "dlib-rect"
                    yield RawFace(image=Path(os.path.abspath(img)),
                                  landmarks=np.array([[p[1], p[2]] for p in parts], dtype=np.float64),
                                  scheme=name, box=box, box_source=box_source, source=src)

    return gen()


def sniff_dlib_xml(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(sniff_dlib_xml(f) for f in list_files(path, (".xml",)))
    if not path.is_file() or path.suffix.lower() != ".xml":
        return False
    head = head_text(path, 1 << 16)
    return "<dataset" in head and "<image" in head and "file=" in head


DLIB_XML_READER = register_reader(Reader(
    name="dlib-xml",
    description="dlib imglab XML (<box top left width height> with <part name x y>, 0-based)",
    read=read_dlib_xml,
    sniff=sniff_dlib_xml,
    default_scheme=None,
))
