"""Linear maps between landmark schemes: how a model of scheme M learns from, and is scored on, faces of scheme S.

A map from M to S says, for each of the K points of S, which points of M it corresponds to: one point (a
*selection*, e.g. 300W-68 point 30 is the nose tip of the 5-point scheme) or the mean of several (e.g. the
image-left eye centre of the 5-point scheme is the mean of the six points 36..41 of that eye), or nothing (a
point of S with no equivalent in M, such as the brow tops of COFW-29). As a matrix ``A`` (K, L_M) it maps a
shape of M to a shape of S: ``shape_S = A @ shape_M``; a row of zeros is a point without an equivalent.

Training (``facelm train`` with several ``--data``) uses it so that a face labelled only in S contributes the loss
of the mapped points, ``loss(A @ pred_M, label_S)``, over the points that have an equivalent; evaluation uses
it to score an M model on S ground truth.

Built-in maps (see ``docs/formats.md``, "Scheme maps"):

* ``300w68 -> 5pt``: eye centres = mean of each eye's six points (36..41 image-left, 42..47 image-right),
  nose tip 30, mouth corners 48 (image left) and 54 (image right);
* ``300w68 -> cofw29``: the 18 COFW/LFPW-29 points with a 68-point equivalent (eye corners, eye top/bottom =
  mean of the two lid points, pupils = eye centres, nose tip, mouth corners, lip mid-points, chin). The brows,
  the alae and ``nose_bottom`` are left out: on HELEN-29 against w300-train their mean positions differ from the
  nearest 68-point definition by 6-9% of the inter-ocular distance (the kept points by 0.6-3.7%);
* ``300w68 -> aflw19``: 17 of AFLW-Full's 19 points (brow ends and centres, eye corners and centres, nose tip,
  mouth corners and centre, chin; not the nose wings);
* ``300w68 -> wflw98``: 90 of WFLW's 98 points (the usual WFLW -> 68 correspondence read backwards, odd jaw points
  and the lids' middle points as means of their neighbours, pupils as eye centres; not the lower brow edges).
  Neither of the last two has offsets: no AFLW or WFLW faces are available here to fit them.

Users add their own from a JSON or TOML file::

    from = "300w68"
    to = "my10"
    points = [[36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47], [30], [], ...]   # one entry per point of "to"

(an empty list, or ``null`` in JSON, marks a point without an equivalent). Indices are checked when the map is
made, not at the first training step.

**Offsets** (optional, ``offsets = [[along, across], ...]``, one pair per point of "to", ``null`` = none): where
the annotators of S put a point relative to the mean of its M points, in eye-centre distances of the M shape, along
its eye line (image-left to image-right eye) and across it (down the face). They describe an annotation
convention, not a correspondence: HELEN-29's pupils, for example, sit higher than the mean of the 68-point eye
contour. ``apply`` (scoring, ``evaluate``, ``predict --to-scheme``) adds them; training compares the plain point
means (``matrix``) with the labels, so a model trained on S keeps learning S's habits as before. The built-in
maps' offsets are fitted to the default models' reading of the train split of the set
(``scripts/fit_map_offsets.py``); a model that reads faces differently may want its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelm._io import read_json_or_toml
from facelm.errors import UsageError
from facelm.schemes import get_scheme


__all__ = ["SchemeMap", "get_map", "has_map", "register_map", "list_maps", "load_map_file"]


@dataclass(frozen=True)
class SchemeMap:
    """A map from scheme ``source`` (the model's, M) to scheme ``target`` (the labels', S).

    Attributes:
        source, target: scheme names.
        points: one tuple of M indices per point of S (empty: no equivalent); the S point is their mean.
        description: where the correspondence comes from.
    """

    source: str
    target: str
    points: tuple[tuple[int, ...], ...]
    description: str = ""
    offsets: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        try:
            m, s = get_scheme(self.source), get_scheme(self.target)
        except KeyError as e:
            raise ValueError(f"scheme map {self.source} -> {self.target}: {e.args[0]}") from None
        if len(self.points) != s.num_landmarks:
            raise ValueError(f"scheme map {self.source} -> {self.target}: {len(self.points)} entries for the "
                             f"{s.num_landmarks} points of {self.target}")
        for k, grp in enumerate(self.points):
            bad = [i for i in grp if not 0 <= i < m.num_landmarks]
            if bad:
                raise ValueError(f"scheme map {self.source} -> {self.target}: point {k} uses indices {bad} outside "
                                 f"0..{m.num_landmarks - 1} of {self.source}")
        if not any(self.points):
            raise ValueError(f"scheme map {self.source} -> {self.target}: no point has an equivalent")
        if self.offsets is not None:
            off = np.asarray(self.offsets, dtype=np.float64)
            if off.shape != (s.num_landmarks, 2):
                raise ValueError(f"scheme map {self.source} -> {self.target}: offsets must be one [along, across] "
                                 f"pair per point of {self.target} ({s.num_landmarks}), got shape {off.shape}")
            if not np.all(np.abs(off) <= MAX_OFFSET):  # (also NaN)
                raise ValueError(f"scheme map {self.source} -> {self.target}: offsets must be finite and within "
                                 f"+-{MAX_OFFSET} eye-centre distances")

    @property
    def matrix(self) -> np.ndarray:
        """``A`` (K_target, L_source) float64: row k averages the source points of target point k (zeros: none)."""
        a = np.zeros((get_scheme(self.target).num_landmarks, get_scheme(self.source).num_landmarks))
        for k, grp in enumerate(self.points):
            if grp:
                a[k, list(grp)] = 1.0 / len(grp)
        return a

    @property
    def mapped(self) -> np.ndarray:
        """(K_target,) bool: which target points have an equivalent in the source scheme."""
        return np.array([bool(g) for g in self.points])

    def apply(self, shapes: np.ndarray) -> np.ndarray:
        """Map shapes ``(..., L_source, 2)`` to ``(..., K_target, 2)``: ``A @ shape`` plus the offsets (if any) in
        each shape's own eye frame; unmapped points are NaN."""
        shapes = np.asarray(shapes, dtype=np.float64)
        out = np.einsum("kl,...lc->...kc", self.matrix, shapes)
        if self.offsets is not None:
            le, re = get_scheme(self.source).eye_centres(shapes)
            u = re - le  # along the eye line, one eye-centre distance long
            v = np.stack([-u[..., 1], u[..., 0]], axis=-1)  # across it, down the face
            off = np.asarray(self.offsets, dtype=np.float64)
            out += off[:, :1] * u[..., None, :] + off[:, 1:] * v[..., None, :]
        out[..., ~self.mapped, :] = np.nan
        return out


_MAPS: dict[tuple[str, str], SchemeMap] = {}
#: the largest map offset, in eye-centre distances
MAX_OFFSET = 0.5


def register_map(m: SchemeMap, *, overwrite: bool = False) -> SchemeMap:
    key = (m.source, m.target)
    if key in _MAPS and not overwrite:
        raise ValueError(f"a scheme map {m.source} -> {m.target} is already registered")
    _MAPS[key] = m
    return m


def list_maps() -> list[tuple[str, str]]:
    return sorted(_MAPS)


def has_map(source: str, target: str) -> bool:
    return source == target or (source, target) in _MAPS


def get_map(source: str, target: str) -> SchemeMap:
    """The map from ``source`` to ``target`` (the identity when they are the same scheme).

    Raises:
        UsageError: no map is registered; the message names both schemes and how to add one.
    """
    if source == target:
        n = get_scheme(source).num_landmarks
        return SchemeMap(source, target, tuple((i,) for i in range(n)), "identity")
    try:
        return _MAPS[(source, target)]
    except KeyError:
        known = ", ".join(f"{a} -> {b}" for a, b in list_maps()) or "none"
        raise UsageError(f"no scheme map from {source!r} (the model's scheme) to {target!r} (the data's scheme); "
                         f"add one with a map file (docs/formats.md, 'Scheme maps'; known: {known})") from None


def load_map_file(path: str | Path, *, register: bool = True) -> SchemeMap:
    """Read a map from a JSON/TOML file (module docstring); ValueError/UsageError name the file."""
    p = Path(path)
    try:
        d = read_json_or_toml(p)
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: cannot read scheme map: {getattr(e, 'strerror', None) or e}") from None
    try:
        pts = tuple(tuple(int(i) for i in (g or ())) for g in d["points"])
        off = d.get("offsets")
        if off is not None:
            if any(len(o) != 2 for o in off if o is not None):
                raise ValueError("each offset is a pair [along, across] (or null)")
            off = tuple((0.0, 0.0) if o is None else (float(o[0]), float(o[1])) for o in off)
        m = SchemeMap(str(d["from"]), str(d["to"]), pts, str(d.get("description", f"from {p.name}")), off)
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, ValueError) else f"missing or malformed field {e}"
        raise UsageError(f"{p}: bad scheme map: {msg}") from None
    if register:
        register_map(m, overwrite=True)
    return m


_EYE_R, _EYE_L = tuple(range(36, 42)), tuple(range(42, 48))  # image-left (subject's right) / image-right eye

# Offsets of the built-in maps ([along the eye line, across it (down the face)] in eye-centre distances, added to
# the point means by ``apply``): the median of label - mapped prediction of the default models (label shift
# included) on the train faces of MTFL (3,000 of them) and HELEN-29 (272), from ground-truth squares, rounded to
# 1e-4: ``python scripts/fit_map_offsets.py work/mtfl`` and ``... work/helen29`` (models/README.md, "Label shift
# and the scheme maps' offsets"). Refit them when the default models change.
_OFFSETS_5PT = ((0.0031, -0.0067), (0.0116, -0.0063), (0.0022, 0.0136), (0.0071, 0.0031), (0.0047, 0.0052))
_OFFSETS_COFW29 = (
    (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0),
    (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0),
    (-0.0321, -0.0023), (-0.0135, -0.0017), (-0.0185, -0.0161), (-0.0207, -0.012),
    (-0.0177, -0.015), (-0.0166, 0.0026), (-0.023, -0.0157), (-0.0207, 0.0033),
    (-0.0136, -0.0202), (-0.0242, -0.0166), (0.0, 0.0), (0.0, 0.0),
    (-0.02, -0.0072), (0.0, 0.0), (-0.0104, -0.0072), (-0.0284, -0.0071),
    (-0.0161, -0.0206), (-0.016, -0.0066), (-0.014, -0.0025), (-0.0151, -0.0045),
    (-0.0214, -0.0329),
)

register_map(SchemeMap("300w68", "5pt", (_EYE_R, _EYE_L, (30,), (48,), (54,)),
                       "eye centres = mean of each eye's six points; nose tip 30; mouth corners 48, 54; offsets "
                       "fitted to the default models on MTFL train", _OFFSETS_5PT))

register_map(SchemeMap("300w68", "cofw29", (
    (), (), (), (),  # brow ends: the 68-point brow ends are placed differently (6-9% IOD apart, measured)
    (), (), (), (),  # brow top / bottom: the 68-point brow is one curve
    (36,), (45,), (39,), (42,),  # eye corners
    (37, 38), (40, 41), (43, 44), (46, 47),  # eye top / bottom = mean of the two lid points
    _EYE_R, _EYE_L,  # pupils ~ eye centres
    (), (), (30,), (),  # nose tip; the alae (nose_right/left, 8.5% IOD from 31/35) and nose_bottom have none
    (48,), (54,), (51,), (62,), (66,), (57,), (8,),  # mouth corners, lip mid-points, chin
), "the COFW-29 points with a 68-point equivalent (18 of 29); offsets fitted to the default models on HELEN-29 "
   "train", _OFFSETS_COFW29))

# AFLW-Full's 19 points (subject's right = image left): all but the two nose wings have a 68-point equivalent.
register_map(SchemeMap("300w68", "aflw19", (
    (17,), (19,), (21,), (22,), (24,), (26,),  # brows: outer, centre, inner
    (36,), _EYE_R, (39,), (42,), _EYE_L, (45,),  # eye corners, eye centres = mean of each eye's six points
    (), (30,), (),  # nose wings (AFLW's alae; the 68-point 31 / 35 sit below and inside them), nose tip
    (48,), (62, 66), (54,), (8,),  # mouth corners, mouth centre = mean of the inner lip mid-points, chin
), "the AFLW-19 points with a 68-point equivalent (17 of 19); no offsets fitted (no AFLW faces here)"))


def _wflw98_points() -> tuple[tuple[int, ...], ...]:
    """WFLW-98 from 68: the standard 98 -> 68 correspondence read backwards (even jaw points, the upper brows,
    nose, the six 68-point eye points, both lips), the odd jaw points as the mean of their two neighbours, the eye
    lids' middle points as the mean of the two 68-point lid points, the pupils as the eye centres; the lower brow
    edges (38-41, 47-50) have no equivalent."""
    pts: list[tuple[int, ...]] = [()] * 98
    for j in range(33):
        pts[j] = (j // 2,) if j % 2 == 0 else (j // 2, j // 2 + 1)
    pairs = list(zip(range(33, 38), range(17, 22))) + list(zip(range(42, 47), range(22, 27)))
    pairs += list(zip(range(51, 60), range(27, 36)))
    pairs += list(zip((60, 61, 63, 64, 65, 67), range(36, 42))) + list(zip((68, 69, 71, 72, 73, 75), range(42, 48)))
    pairs += list(zip(range(76, 96), range(48, 68)))
    for j, i in pairs:
        pts[j] = (i,)
    pts[62], pts[66], pts[70], pts[74] = (37, 38), (40, 41), (43, 44), (46, 47)
    pts[96], pts[97] = _EYE_R, _EYE_L
    return tuple(pts)


register_map(SchemeMap("300w68", "wflw98", _wflw98_points(),
                       "the WFLW-98 points with a 68-point equivalent (90 of 98: all but the lower brow edges); "
                       "no offsets fitted (no WFLW faces here)"))
