"""Which landmark models ``predict`` runs: fp32 (the shipped fp16-stored files compute in float32) or int8.

``precision``:

* ``fp32``: the float models (``cnn6.onnx``, ``cnn6r.onnx``; on CUDA also fp16 exports);
* ``int8``: their statically quantised copies (``cnn6.int8.onnx``, ``cnn6r.int8.onnx``; metadata
  ``"precision": "int8"``), which must exist for every stage that runs;
* ``auto`` (the default): int8 where it is faster and as accurate, fp32 elsewhere (:func:`choose_precision`):

  - on the CUDA provider: fp32 (the int8 graphs are CPU graphs);
  - on an x86 CPU with VNNI or AMX, or an ARM CPU with the int8 dot product: int8 (its kernels accumulate in
    32 bits, so they compute the quantised model exactly, 2.5-3.4x faster than fp32 per the issue's VNNI
    measurement);
  - on an x86 CPU with AVX2 but without VNNI: int8 as well, because it measured faster and as accurate there
    (docs/benchmarks.md: CNN-6 1.7x and CNN-7 2.3x faster than fp32 at batch 32, the whole default predict
    1.1-1.2x, with 7-bit weights). onnxruntime's u8 x s8 kernels there add pairs of products in 16 bits, which
    files with full 8-bit weights (the shipped deeper networks: 7-bit weights cost them 1.9% NME) would saturate:
    such files run with 7-bit activations instead (``facelm.ort.seven_bit_activations``, applied by the session
    factory), which keeps the sums in range and the NME within 0.5% of the file's own (docs/export.md);
  - any other CPU: fp32 (int8 not measured faster there);
  - and fp32 whenever the int8 files are missing, incomplete or were made from another float model than the one
    beside them (stale).

The CPU's flags are read at run time (``facelm.cpu_features``); every function here takes them as arguments, so
the tests check the choice for any CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelm.cpu_features import cpu_arch, cpu_flags, int8_dot_product
from facelm.errors import UsageError
from facelm.ort import int8_kernels_saturate

__all__ = ["MEASURED_FASTER", "PRECISIONS", "PrecisionChoice", "check_precision", "choose_precision",
           "int8_speedup_reason"]

PRECISIONS = ("auto", "fp32", "int8")

#: x86 instruction sets without 32-bit int8 dot products on which int8 measured faster than fp32 and as accurate
#: (7-bit weights) on the development CPU: flag -> what was measured (docs/benchmarks.md)
MEASURED_FASTER = {"avx2": "AVX2 without VNNI: int8 measured 1.7-2.3x faster per model than fp32 on such a CPU, "
                           "the whole default predict 1.1-1.2x (docs/benchmarks.md)"}


#: what happens to int8 files with full 8-bit weights on CPUs whose u8 x s8 kernels add in 16 bits (facelm.ort)
SEVEN_BIT = ("their 8-bit weights run with 7-bit activations on this CPU (no VNNI/AMX), so its 16-bit pair sums "
             "cannot saturate")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision the landmark models run at, what was asked for, and why (one line, for stderr)."""

    precision: str
    requested: str
    reason: str


def check_precision(requested: str) -> str:
    p = (requested or "auto").strip().lower()
    if p not in PRECISIONS:
        raise UsageError(f"`precision` must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    return p


def int8_speedup_reason(flags: frozenset[str] | set[str] | None = None, arch: str | None = None) -> str | None:
    """Why int8 is faster on a CPU with ``flags`` (this CPU's when None), or None when it is not known to be."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    arch = cpu_arch() if arch is None else arch
    dot = int8_dot_product(flags, arch)
    if dot is not None:
        return f"this CPU has {dot}: exact int8 dot products, several times faster than fp32"
    if arch == "x86":
        for flag, why in MEASURED_FASTER.items():
            if flag in flags:
                return f"this CPU has {why}"
    return None


def choose_precision(requested: str, *, cuda: bool, int8_missing: str | None, flags=None, arch: str | None = None,
                     full_range: bool = False) -> PrecisionChoice:
    """The precision to run (see the module docstring).

    Args:
        requested: ``auto``, ``fp32`` or ``int8``.
        cuda: the models run on the CUDA provider.
        int8_missing: None when int8 models are there for every stage that runs, else why they cannot be used
            (missing, incomplete, stale).
        flags, arch: the CPU's flags and architecture (``facelm.cpu_features``; this CPU's when None).
        full_range: the int8 models have full 8-bit weights (``quantization.reduce_range`` false): without 32-bit
            int8 dot products (VNNI, AMX, ARM) they run with 7-bit activations (said in the reason).

    Raises:
        UsageError: an unknown ``requested``.
    """
    req = check_precision(requested)
    if req == "fp32":
        return PrecisionChoice("fp32", req, "asked for (`precision` fp32)")
    flags = cpu_flags() if flags is None else frozenset(flags)
    arch = cpu_arch() if arch is None else arch
    # what int8 means here for files with full 8-bit weights (said with either way of choosing int8)
    note = f"; {SEVEN_BIT}" if full_range and not cuda and int8_kernels_saturate(flags, arch) else ""
    if req == "int8":
        return PrecisionChoice("int8", req, f"asked for (`precision` int8){note}")
    if cuda:
        return PrecisionChoice("fp32", req, "auto: CUDA runs the float models")
    if int8_missing is not None:
        return PrecisionChoice("fp32", req, f"auto: {int8_missing}")
    why = int8_speedup_reason(flags, arch)
    if why is None:
        what = "VNNI, AMX or AVX2" if arch == "x86" else "the int8 dot product" if arch == "arm" else "int8 kernels"
        return PrecisionChoice("fp32", req, f"auto: this CPU has no {what}, where int8 is not known to be faster")
    return PrecisionChoice("int8", req, f"auto: {why}{note}")
