"""What this CPU offers onnxruntime's int8 kernels, read at run time: its name and instruction-set flags.

Where the flags come from:

* Linux: ``/proc/cpuinfo`` (x86: the ``flags`` line, e.g. ``avx2 avx512_vnni avx_vnni amx_int8``; ARM: the
  ``Features`` line, e.g. ``asimddp`` = the int8 dot product, ``i8mm`` = the int8 matrix multiply);
* elsewhere (macOS, Windows): numpy's own run-time CPU detection, mapped to the Linux names.

Every function takes the text or the flag set as an argument too, so the choice built on them is testable with any
CPU (``facelm.runtime.precision``).
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["INT8_DOT", "cpu_arch", "cpu_flags", "cpu_name", "int8_dot_product", "parse_cpuinfo"]

#: instruction sets whose int8 dot products accumulate in 32 bits (exact, and several times faster than fp32 in
#: onnxruntime), per architecture, best first: flag -> name
INT8_DOT: dict[str, tuple[tuple[str, str], ...]] = {
    "x86": (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI")),
    "arm": (("i8mm", "the Armv8.6 int8 matrix multiply (i8mm)"), ("asimddp", "the Armv8.2 dot product (asimddp)")),
}

# numpy's names (``__cpu_features__``) -> the Linux /proc/cpuinfo names
_NUMPY_NAMES = {"AVX2": "avx2", "FMA3": "fma", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni",
                "AVX512_CLX": "avx512_vnni", "AVX512_ICL": "avx512_vnni", "AVX512_SPR": "avx512_vnni",
                "ASIMD": "asimd", "ASIMDDP": "asimddp", "SSE41": "sse4_1", "SSSE3": "ssse3"}


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """(model name, lower-case flags) of ``/proc/cpuinfo`` text: the first processor's ``model name`` (ARM:
    ``Hardware``/``CPU part`` are not names) and the ``flags`` (x86) or ``Features`` (ARM) line."""
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and name is None:
            name = value.strip() or None
        elif key in ("flags", "features") and flags is None:
            flags = frozenset(value.lower().split())
    return name, flags or frozenset()


def _proc_cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None


def _numpy_flags() -> frozenset[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            return frozenset()
    return frozenset(_NUMPY_NAMES[k] for k, on in feats.items() if on and k in _NUMPY_NAMES)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """This CPU's flags (Linux names, lower case); ``cpuinfo`` is ``/proc/cpuinfo`` text (read when None)."""
    text = cpuinfo if cpuinfo is not None else _proc_cpuinfo()
    if text:
        _, flags = parse_cpuinfo(text)
        if flags:
            return flags
    return _numpy_flags()


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model name (``/proc/cpuinfo``'s ``model name`` where Linux gives one)."""
    text = cpuinfo if cpuinfo is not None else _proc_cpuinfo()
    name = parse_cpuinfo(text)[0] if text else None
    return name or platform.processor() or platform.machine() or "unknown CPU"


def cpu_arch(machine: str | None = None) -> str:
    """``x86``, ``arm`` or ``other``, from ``platform.machine()`` (or ``machine``)."""
    m = (machine if machine is not None else platform.machine()).lower()
    if m in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86"
    if m.startswith(("arm", "aarch64")):
        return "arm"
    return "other"


def int8_dot_product(flags: frozenset[str] | set[str], arch: str) -> str | None:
    """The name of the best int8 dot-product instruction set of a CPU with ``flags`` (None when it has none)."""
    for flag, name in INT8_DOT.get(arch, ()):
        if flag in flags:
            return name
    return None
