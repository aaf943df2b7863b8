"""300W split membership from an image's relative path (protocol of Ren et al., as used by the Wing paper).

* ``lfpw/testset``, ``helen/testset`` -> test, ``["300w-common", "lfpw"|"helen", "300w-full"]`` (554 images)
* ``ibug``                           -> test, ``["300w-challenging", "ibug", "300w-full"]`` (135 images)
* ``afw``, ``lfpw/trainset``, ``helen/trainset`` -> train, ``["afw"|"lfpw"|"helen"]`` (3148 images)
* ``01_Indoor``/``02_Outdoor`` folders or ``indoor_*``/``outdoor_*`` file names -> test,
  ``["300w-private", "indoor"|"outdoor"]`` (the 600-image 300W private test set)
* anything else -> ``(None, [])``

Folder names are matched case-insensitively as whole path components, so ``lfpw/testset/image_0001.png``,
``300W/lfpw/testset/...`` and ``LFPW\\testset\\...`` all match; a file called ``ibug.jpg`` does not.

Example:
    >>> w300_membership("ibug/image_003_1.jpg")
    ('test', ['300w-challenging', 'ibug', '300w-full'])
    >>> w300_membership("helen/trainset/100032540_1.jpg")
    ('train', ['helen'])
"""

from __future__ import annotations

import re
from pathlib import PurePath

__all__ = ["w300_membership"]

_PRIVATE_NAME = re.compile(r"^(indoor|outdoor)_\d+\.[a-z0-9]+$")


def w300_membership(relpath: str | PurePath) -> tuple[str | None, list[str]]:
    """(split, subset tags) of a 300W image from its path relative to the data root (see module doc)."""
    parts = [p.lower() for p in str(relpath).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        return None, []
    dirs, name = parts[:-1], parts[-1]
    for i, d in enumerate(dirs):
        nxt = dirs[i + 1] if i + 1 < len(dirs) else ""
        if d in ("lfpw", "helen"):
            if nxt == "testset":
                return "test", ["300w-common", d, "300w-full"]
            if nxt == "trainset":
                return "train", [d]
        elif d == "ibug":
            return "test", ["300w-challenging", "ibug", "300w-full"]
        elif d == "afw":
            return "train", ["afw"]
        elif d in ("01_indoor", "02_outdoor"):
            return "test", ["300w-private", d[3:]]
    m = _PRIVATE_NAME.match(name)
    if m:
        return "test", ["300w-private", m.group(1)]
    return None, []
