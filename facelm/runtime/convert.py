"""Landmarks converted to another scheme on the way out (``facelm predict --to-scheme``,
``Landmarker(to_scheme=)``).

A 68-point model serves users who need 5 points (face alignment for recognition) through the scheme maps of
``facelm.scheme_maps``: each output point is the mean of its model points (the 5-point eye centres are the means
of each eye's six points). The conversion is applied to each face's final landmarks (and its stage-1 landmarks);
box, score and angle stay as the model gave them (the angle is the model's eye line, which the 5-point eye centres
reproduce exactly).

**Partial maps.** When only some points of the target scheme have an equivalent in the model's (``300w68 ->
cofw29``: 18 of 29), the output holds **only the mapped points**, in the target scheme's order, and each face
record says which ones: ``"points": [8, 9, ...]`` (indices into the target scheme). No point is invented and no
placeholder (NaN, null) is written, so every coordinate in the output is a real prediction. A full map (``5pt``)
writes all points and no ``"points"`` field. The records' ``"scheme"`` names the output scheme.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facelm.errors import UsageError
from facelm.runtime.results import FaceResult, ImageResult
from facelm.scheme_maps import SchemeMap, get_map, list_maps
from facelm.schemes import LandmarkScheme, get_scheme, list_schemes

__all__ = ["SchemeConverter", "scheme_converter"]


class SchemeConverter:
    """Converts results of a model of scheme ``map.source`` to scheme ``map.target``.

    Attributes:
        map: the scheme map. name: the output scheme's name. num_points: how many points the output has.
        points: the target indices the output holds, or None when every target point is mapped.
        boundaries: the output scheme's contours over the output's points (for drawing; only with a full map).
    """

    def __init__(self, smap: SchemeMap):
        self.map = smap
        self.name = smap.target
        mapped = smap.mapped
        self.points: tuple[int, ...] | None = None if mapped.all() else \
            tuple(int(i) for i in np.flatnonzero(mapped))
        self._mapped = mapped
        self.num_points = int(mapped.sum())
        self.boundaries = dict(get_scheme(smap.target).boundaries or {}) if self.points is None else {}

    def landmarks(self, shape: np.ndarray) -> np.ndarray:
        """``(L_model, 2)`` -> ``(K', 2)``: the mapped output points (with the map's offsets, if any)."""
        return self.map.apply(shape)[self._mapped]

    def face(self, f: FaceResult) -> FaceResult:
        stage1 = self.landmarks(f.stage1) if f.stage1 is not None else None
        return replace(f, landmarks=self.landmarks(f.landmarks), stage1=stage1, points=self.points)

    def image(self, r: ImageResult) -> ImageResult:
        """A copy of ``r`` with every face converted (``r`` is left as it is)."""
        return replace(r, faces=[self.face(f) for f in r.faces])


def scheme_converter(model_scheme: LandmarkScheme | str, to_scheme: str | None) -> SchemeConverter | None:
    """The converter from the model's scheme to ``to_scheme``; None when no conversion is asked for or the schemes
    are the same.

    Raises:
        UsageError: ``to_scheme`` is not a known scheme, or no scheme map links the model's scheme to it (the
            message lists the known maps).
    """
    src = model_scheme if isinstance(model_scheme, str) else model_scheme.name
    if to_scheme is None:
        return None
    try:
        target = get_scheme(str(to_scheme)).name  # a name, or a custom scheme's .json/.toml file
    except (KeyError, ValueError):
        raise UsageError(f"`to_scheme` {str(to_scheme)!r}: no such scheme (known: {', '.join(list_schemes())}; "
                         "or a .json/.toml scheme file)") from None
    if target == src:
        return None
    try:
        smap = get_map(src, target)
    except UsageError:
        known = ", ".join(f"{a} -> {b}" for a, b in list_maps() if a == src) or "none"
        raise UsageError(f"`to_scheme` {target!r}: no scheme map from the model's scheme {src!r} to it (maps "
                         f"from {src}: {known}; add one with a map file: `scheme_map`, docs/formats.md)") from None
    return SchemeConverter(smap)
