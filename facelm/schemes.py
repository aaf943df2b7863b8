"""Landmark schemes: names, horizontal-flip permutation and normaliser points.

A scheme fixes the meaning of each landmark index. Every array of landmarks in facelm is ``(L, 2)`` float
``(x, y)`` in 0-based pixel coordinates (pixel centres at integer positions), and carries its scheme's name.

Normalisers are defined by two *groups* of landmark indices: the normalising distance is the distance between
the mean of the first group and the mean of the second. A group of one index is a single landmark (for example
the outer eye corners of ``300w68``), a group of six is an eye centre (``300w68`` inter-pupil).

Custom schemes load from a small JSON or TOML file::

    name = "my10"
    num_landmarks = 10
    names = ["a", "b", ...]                 # optional, defaults to "p0".."p9"
    flip_pairs = [[0, 1], [2, 3]]           # indices swapped by a horizontal flip
    [normalisers]
    inter-ocular = [[0], [1]]
    inter-pupil = [[4, 5], [6, 7]]
    angle = "inter-pupil"                   # optional: which normaliser gives the eye line for rotation

Example:
    >>> from facelm.schemes import get_scheme
    >>> s = get_scheme("300w68")
    >>> s.flip_perm[36], s.normaliser_groups("inter-ocular")
    (45, ((36,), (45,)))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm._io import read_json_or_toml


__all__ = ["LandmarkScheme", "get_scheme", "list_schemes", "register_scheme", "load_scheme_file"]


@dataclass(frozen=True)
class LandmarkScheme:
    """One landmark scheme.

    Attributes:
        name: registry name, e.g. ``"300w68"``.
        num_landmarks: L.
        names: L landmark names.
        flip_perm: permutation p such that after mirroring an image horizontally, landmark i of the mirrored
            face is landmark ``p[i]`` of the original (mirrored in x). ``p[p[i]] == i``.
        normalisers: name -> (group_a, group_b) of landmark indices (see module docstring).
        angle_normaliser: which normaliser's two points define the eye line used for in-plane rotation.
            Group a is on the image left of an upright face, group b on the image right.
        face_box_scale: the face box used for crops is a square centred on the landmark bounding box with
            side ``face_box_scale * max(w, h)`` of that bounding box (schemes that cover the whole face use
            1.0; the 5-point scheme covers only the inner face and needs more).
        boundaries: named landmark curves (used by heatmap models and drawing).
    """

    name: str
    num_landmarks: int
    names: tuple[str, ...]
    flip_perm: tuple[int, ...]
    normalisers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    angle_normaliser: str = "inter-pupil"
    face_box_scale: float = 1.0
    boundaries: dict[str, tuple[int, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        n = self.num_landmarks
        if len(self.names) != n:
            raise ValueError(f"scheme {self.name}: {len(self.names)} names for {n} landmarks")
        if sorted(self.flip_perm) != list(range(n)):
            raise ValueError(f"scheme {self.name}: flip permutation is not a permutation of 0..{n - 1}")
        if any(self.flip_perm[self.flip_perm[i]] != i for i in range(n)):
            raise ValueError(f"scheme {self.name}: flip permutation is not an involution")
        for key, (a, b) in self.normalisers.items():
            if not a or not b or any(not 0 <= i < n for i in (*a, *b)):
                raise ValueError(f"scheme {self.name}: normaliser {key!r} has bad indices")
        if self.angle_normaliser not in self.normalisers:
            raise ValueError(f"scheme {self.name}: angle normaliser {self.angle_normaliser!r} is not defined")

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        """Pairs (i, j), i < j, swapped by a horizontal flip."""
        return [(i, j) for i, j in enumerate(self.flip_perm) if i < j]

    def normaliser_groups(self, key: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if key not in self.normalisers:
            known = ", ".join(sorted(self.normalisers)) or "none"
            raise KeyError(f"scheme {self.name} has no {key!r} normaliser (it has: {known})")
        return self.normalisers[key]

    def normaliser_points(self, landmarks: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The two points of a normaliser for landmarks ``(..., L, 2)`` -> two arrays ``(..., 2)``."""
        a, b = self.normaliser_groups(key)
        lm = np.asarray(landmarks, dtype=np.float64)
        return lm[..., list(a), :].mean(axis=-2), lm[..., list(b), :].mean(axis=-2)

    def normaliser_distance(self, landmarks: np.ndarray, key: str) -> np.ndarray:
        """Distance between the two normaliser points, shape ``(...)``."""
        pa, pb = self.normaliser_points(landmarks, key)
        return np.linalg.norm(pa - pb, axis=-1)

    def eye_centres(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye, image-right eye) of an upright face, as used for the in-plane angle."""
        return self.normaliser_points(landmarks, self.angle_normaliser)

    def flip(self, landmarks: np.ndarray, width: float) -> np.ndarray:
        """Mirror landmarks ``(..., L, 2)`` for an image of the given width (0-based pixel centres)."""
        lm = np.asarray(landmarks)
        out = lm[..., list(self.flip_perm), :].copy()
        out[..., 0] = (width - 1) - out[..., 0]
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "num_landmarks": self.num_landmarks,
            "names": list(self.names),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "normalisers": {k: [list(a), list(b)] for k, (a, b) in self.normalisers.items()},
            "angle": self.angle_normaliser,
            "face_box_scale": self.face_box_scale,
            "boundaries": {k: list(v) for k, v in self.boundaries.items()},
            "description": self.description,
        }


_REGISTRY: dict[str, LandmarkScheme] = {}


def register_scheme(scheme: LandmarkScheme, *, overwrite: bool = False) -> LandmarkScheme:
    if scheme.name in _REGISTRY and not overwrite:
        raise ValueError(f"scheme {scheme.name!r} is already registered")
    _REGISTRY[scheme.name] = scheme
    return scheme


def list_schemes() -> list[str]:
    return sorted(_REGISTRY)


def get_scheme(name: str | LandmarkScheme) -> LandmarkScheme:
    """Look a scheme up by name, or load it from a ``.json``/``.toml`` file path."""
    if isinstance(name, LandmarkScheme):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.endswith((".json", ".toml")):
        if Path(name).is_file():
            return load_scheme_file(name)
        raise KeyError(f"{name}: no such scheme file (a .json/.toml scheme file, or a known scheme: "
                       f"{', '.join(list_schemes())})")
    raise KeyError(f"unknown landmark scheme {name!r} (known: {', '.join(list_schemes())}; "
                   "or give a .json/.toml scheme file)")


def _perm_from_pairs(n: int, pairs: list[tuple[int, int]] | list[list[int]]) -> tuple[int, ...]:
    perm = list(range(n))
    for i, j in pairs:
        perm[i], perm[j] = j, i
    return tuple(perm)


def scheme_from_dict(d: dict, source: str = "<dict>") -> LandmarkScheme:
    """Build a scheme from the JSON/TOML structure described in the module docstring."""
    try:
        n = int(d["num_landmarks"])
        name = str(d["name"])
        names = tuple(d.get("names") or [f"p{i}" for i in range(n)])
        pairs = [tuple(int(v) for v in p) for p in d.get("flip_pairs", [])]
        for p in pairs:
            if len(p) != 2:
                raise ValueError(f"flip pair {list(p)} does not have two indices")
        norms = {
            str(k): (tuple(int(i) for i in v[0]), tuple(int(i) for i in v[1]))
            for k, v in (d.get("normalisers") or {}).items()
        }
        if not norms:
            raise ValueError("at least one normaliser (e.g. inter-ocular) is required")
        angle = d.get("angle") or ("inter-pupil" if "inter-pupil" in norms else next(iter(norms)))
        return LandmarkScheme(
            name=name,
            num_landmarks=n,
            names=names,
            flip_perm=_perm_from_pairs(n, pairs),
            normalisers=norms,
            angle_normaliser=angle,
            face_box_scale=float(d.get("face_box_scale", 1.0)),
            boundaries={k: tuple(v) for k, v in (d.get("boundaries") or {}).items()},
            description=str(d.get("description", f"custom scheme from {source}")),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{source}: not a valid landmark scheme: {e}") from e


def load_scheme_file(path: str | Path, *, register: bool = True) -> LandmarkScheme:
    """Load (and by default register) a custom scheme from a ``.json`` or ``.toml`` file."""
    p = Path(path)
    try:
        d = read_json_or_toml(p)
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: cannot read scheme file: {e}") from e
    scheme = scheme_from_dict(d, source=str(p))
    if register:
        register_scheme(scheme, overwrite=True)
    return scheme


# ---------------------------------------------------------------------------------------------------------------
# Built-in schemes. Indices are 0-based. "right"/"left" in names are the subject's own (the iBUG convention:
# the subject's right eye appears on the image left).

def _names_300w68() -> tuple[str, ...]:
    names = [f"jaw_{i}" for i in range(17)]
    names += [f"right_brow_{i}" for i in range(5)] + [f"left_brow_{i}" for i in range(5)]
    names += [f"nose_bridge_{i}" for i in range(4)] + [f"nostril_{i}" for i in range(5)]
    names += [f"right_eye_{i}" for i in range(6)] + [f"left_eye_{i}" for i in range(6)]
    names += [f"outer_lip_{i}" for i in range(12)] + [f"inner_lip_{i}" for i in range(8)]
    return tuple(names)


_W300_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)

register_scheme(LandmarkScheme(
    name="300w68",
    num_landmarks=68,
    names=_names_300w68(),
    flip_perm=_perm_from_pairs(68, _W300_PAIRS),
    normalisers={
        "inter-ocular": ((36,), (45,)),
        "inter-pupil": ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)),
    },
    angle_normaliser="inter-pupil",
    face_box_scale=1.0,
    boundaries={
        "jaw": tuple(range(0, 17)), "right_brow": tuple(range(17, 22)), "left_brow": tuple(range(22, 27)),
        "nose_bridge": tuple(range(27, 31)), "nostrils": tuple(range(31, 36)),
        "right_eye": (36, 37, 38, 39, 40, 41, 36), "left_eye": (42, 43, 44, 45, 46, 47, 42),
        "outer_lip": tuple(range(48, 60)) + (48,), "inner_lip": tuple(range(60, 68)) + (60,),
    },
    description="iBUG 300-W 68 points (300W, Menpo, dlib, InfAnFace)",
))

# AFLW-Full: the 21 AFLW points without the two ears. AFLW names are the subject's own left/right.
_AFLW19_NAMES = (
    "right_brow_outer", "right_brow_centre", "right_brow_inner",
    "left_brow_inner", "left_brow_centre", "left_brow_outer",
    "right_eye_outer", "right_eye_centre", "right_eye_inner",
    "left_eye_inner", "left_eye_centre", "left_eye_outer",
    "nose_right", "nose_tip", "nose_left",
    "mouth_right", "mouth_centre", "mouth_left", "chin",
)
register_scheme(LandmarkScheme(
    name="aflw19",
    num_landmarks=19,
    names=_AFLW19_NAMES,
    flip_perm=_perm_from_pairs(19, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]),
    normalisers={"inter-ocular": ((6,), (11,)), "inter-pupil": ((7,), (10,))},
    angle_normaliser="inter-pupil",
    face_box_scale=1.15,
    boundaries={"right_brow": (0, 1, 2), "left_brow": (3, 4, 5), "right_eye": (6, 7, 8),
                "left_eye": (9, 10, 11), "nose": (12, 13, 14), "mouth": (15, 16, 17)},
    description="AFLW-Full 19 points (AFLW's 21 without the ears)",
))

# COFW / LFPW 29 points (mmpose/HRNet order): 16 and 17 are the pupils, 8 and 9 the outer eye corners.
_COFW_NAMES = (
    "right_brow_outer", "left_brow_outer", "right_brow_inner", "left_brow_inner",
    "right_brow_top", "right_brow_bottom", "left_brow_top", "left_brow_bottom",
    "right_eye_outer", "left_eye_outer", "right_eye_inner", "left_eye_inner",
    "right_eye_top", "right_eye_bottom", "left_eye_top", "left_eye_bottom",
    "right_pupil", "left_pupil", "nose_right", "nose_left", "nose_tip", "nose_bottom",
    "mouth_right", "mouth_left", "lip_top", "lip_top_inner", "lip_bottom_inner", "lip_bottom", "chin",
)
register_scheme(LandmarkScheme(
    name="cofw29",
    num_landmarks=29,
    names=_COFW_NAMES,
    flip_perm=_perm_from_pairs(29, [(0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17),
                                    (13, 15), (18, 19), (22, 23)]),
    normalisers={"inter-pupil": ((16,), (17,)), "inter-ocular": ((8,), (9,))},
    angle_normaliser="inter-pupil",
    face_box_scale=1.15,
    description="COFW / LFPW 29 points (COFW, HELEN-29 of Zhou et al.)",
))

_WFLW_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97)]
)


def _names_wflw98() -> tuple[str, ...]:
    names = [f"jaw_{i}" for i in range(33)]
    names += [f"right_brow_{i}" for i in range(9)] + [f"left_brow_{i}" for i in range(9)]
    names += [f"nose_bridge_{i}" for i in range(4)] + [f"nostril_{i}" for i in range(5)]
    names += [f"right_eye_{i}" for i in range(8)] + [f"left_eye_{i}" for i in range(8)]
    names += [f"outer_lip_{i}" for i in range(12)] + [f"inner_lip_{i}" for i in range(8)]
    names += ["right_pupil", "left_pupil"]
    return tuple(names)


register_scheme(LandmarkScheme(
    name="wflw98",
    num_landmarks=98,
    names=_names_wflw98(),
    flip_perm=_perm_from_pairs(98, _WFLW_PAIRS),
    normalisers={"inter-ocular": ((60,), (72,)), "inter-pupil": ((96,), (97,))},
    angle_normaliser="inter-pupil",
    face_box_scale=1.0,
    boundaries={
        "jaw": tuple(range(0, 33)), "right_brow": tuple(range(33, 42)), "left_brow": tuple(range(42, 51)),
        "nose_bridge": tuple(range(51, 55)), "nostrils": tuple(range(55, 60)),
        "right_eye": tuple(range(60, 68)) + (60,), "left_eye": tuple(range(68, 76)) + (68,),
        "outer_lip": tuple(range(76, 88)) + (76,), "inner_lip": tuple(range(88, 96)) + (88,),
    },
    description="WFLW 98 points",
))

# 5 points in image order (MTFL convention): image-left eye, image-right eye, nose, image-left mouth corner,
# image-right mouth corner. Unlike the other schemes, "left" here is the image left.
register_scheme(LandmarkScheme(
    name="5pt",
    num_landmarks=5,
    names=("eye_image_left", "eye_image_right", "nose_tip", "mouth_image_left", "mouth_image_right"),
    flip_perm=_perm_from_pairs(5, [(0, 1), (3, 4)]),
    normalisers={"inter-ocular": ((0,), (1,)), "inter-pupil": ((0,), (1,))},
    angle_normaliser="inter-pupil",
    face_box_scale=2.0,
    description="5 points: eye centres, nose tip, mouth corners (MTFL, detectors)",
))
