"""Named evaluation protocols: which faces, which normaliser, which thresholds, which subsets (docs/protocols.md).

A protocol fixes everything that makes an NME comparable with published work, so that a number printed by
``facelm evaluate`` always says how it was computed:

* ``scheme``: the landmark scheme the faces must have (``None``: any);
* ``normaliser``: the default normaliser (:data:`facelm.metrics.NORMALISERS`) and ``norms``, the ones ``--norm``
  may choose instead (300W is published both inter-pupil and inter-ocular);
* ``thresholds``: the ``t`` of ``fr@t`` / ``auc@t``; the CED is drawn on ``[0, max(thresholds)]``;
* ``select``: a subset tag restricting the faces (e.g. ``300w-full``), used only when some face carries it, so
  the protocol also runs on data prepared without the tags (a warning says so);
* ``subsets``: the subset tags broken down in the report, in order (``None``: every tag of the evaluated faces).

Which split is evaluated is chosen by :mod:`facelm.evaluate` (``test``, else ``val``, else all faces).
The full definitions, published numbers and how to reproduce them are in ``docs/protocols.md``.

Example:
    >>> p = get_protocol("300w")
    >>> p.resolve_norm(None), p.resolve_norm("inter-pupil"), p.thresholds
    ('inter-ocular', 'inter-pupil', (0.08, 0.1))
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from facelm.errors import UsageError
from facelm.metrics import NORMALISERS

__all__ = ["PROTOCOLS", "WFLW_SUBSETS", "Protocol", "get_protocol", "list_protocols"]

WFLW_SUBSETS = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol (see the module docstring for the fields)."""

    name: str
    description: str
    scheme: str | None
    normaliser: str | None  # None: the scheme's default (custom protocol)
    norms: tuple[str, ...]
    thresholds: tuple[float, ...]
    select: str | None = None
    subsets: tuple[str, ...] | None = ()
    reference: str = ""

    @property
    def ced_max(self) -> float:
        """Right end of the CED curve: the largest threshold."""
        return max(self.thresholds)

    def resolve_norm(self, norm: str | None, scheme: str | None = None) -> str:
        """The normaliser to use: ``norm`` if given (must be one of :attr:`norms`), else the default.

        Raises:
            UsageError: ``norm`` is not allowed by this protocol (the message lists the allowed ones).
        """
        if norm is None:
            if self.normaliser is not None:
                return self.normaliser
            # the same default as training's validation NME (facelm.train.default_normaliser)
            return "box-width" if scheme == "aflw19" else "inter-ocular"
        if norm not in NORMALISERS:
            hint = difflib.get_close_matches(norm, NORMALISERS, n=1)
            raise UsageError(f"unknown `norm` {norm!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; valid: {', '.join(NORMALISERS)}")
        if norm not in self.norms:
            raise UsageError(f"protocol {self.name} uses `norm` {' or '.join(self.norms)}, not {norm!r} "
                             f"(use `protocol` custom `norm` {norm} for a non-standard normaliser)")
        return norm

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "scheme": self.scheme,
                "normaliser": self.normaliser, "norms": list(self.norms), "thresholds": list(self.thresholds),
                "select": self.select, "subsets": None if self.subsets is None else list(self.subsets),
                "reference": self.reference}


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        name="aflw-full",
        description="AFLW-Full: 19 points, 4,386 test faces, NME normalised by the width of the dataset's "
                    "square face box",
        scheme="aflw19", normaliser="box-width", norms=("box-width", "box-sqrt-area", "box-max-side"),
        thresholds=(0.07, 0.10),
        reference="Wing loss (Feng et al., CVPR 2018) Table 2/3; CCL (Zhu et al., CVPR 2016)",
    ),
    Protocol(
        name="300w",
        description="300W (Ren et al. split): 68 points, 689 test faces = common 554 + challenging 135",
        scheme="300w68", normaliser="inter-ocular", norms=("inter-ocular", "inter-pupil"),
        thresholds=(0.08, 0.10), select="300w-full",
        subsets=("300w-common", "300w-challenging", "300w-full"),
        reference="Wing loss Table 4 (inter-pupil); most later work inter-ocular",
    ),
    Protocol(
        name="300w-private",
        description="300W private test set: 68 points, 600 faces (300 indoor + 300 outdoor)",
        scheme="300w68", normaliser="inter-ocular", norms=("inter-ocular", "inter-pupil"),
        thresholds=(0.08, 0.10), select="300w-private", subsets=("indoor", "outdoor"),
        reference="300-W challenge (Sagonas et al., 2016); FR and AUC at 8% and 10%",
    ),
    Protocol(
        name="cofw",
        description="COFW: 29 points, 507 test faces, occluded points included",
        scheme="cofw29", normaliser="inter-pupil", norms=("inter-pupil", "inter-ocular"),
        thresholds=(0.10,),
        reference="COFW (Burgos-Artizzu et al., ICCV 2013); FR@10%",
    ),
    Protocol(
        name="wflw",
        description="WFLW: 98 points, 2,500 test faces and six attribute subsets",
        scheme="wflw98", normaliser="inter-ocular", norms=("inter-ocular",),
        thresholds=(0.10,), subsets=WFLW_SUBSETS,
        reference="LAB (Wu et al., CVPR 2018); NME, FR@10%, AUC@10%",
    ),
    Protocol(
        name="custom",
        description="any scheme, any normaliser (--norm; default inter-ocular, box-width for aflw19), "
                    "broken down by every subset tag",
        scheme=None, normaliser=None, norms=NORMALISERS, thresholds=(0.08, 0.10), subsets=None,
    ),
)}


def list_protocols() -> list[str]:
    return list(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name; ``UsageError`` (with a suggestion) when unknown."""
    key = name.strip().lower()
    if key in PROTOCOLS:
        return PROTOCOLS[key]
    hint = difflib.get_close_matches(key, list(PROTOCOLS), n=1)
    raise UsageError(f"unknown protocol {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; known: {', '.join(PROTOCOLS)}")
