"""Full 8-bit int8 models on x86 CPUs without VNNI/AMX: how far onnxruntime's u8 x s8 kernels drift there, and
what running them with 7-bit activations (``facelm.ort.seven_bit_activations``, applied by ``create_session`` on
such CPUs) changes: speed, distance from the float model, and exactness on an emulated AVX2 CPU.

Measurements, on real face crops (the centre of each prepared crop of a ``facelm prepare`` folder, resized to the
model's input):

* **speed, this CPU** (always): fp32, int8 as shipped and int8 with 7-bit activations, taking turns, one thread,
  batch 32; crops/s and the ratios against fp32 measured in the same run;
* **distance, this CPU**: mean px between each int8 variant and fp32, and between the two int8 variants;
* **exactness on an emulated AVX2 CPU** (``--emulate``, needs ``qemu-x86_64``, e.g. Debian's ``qemu-user``):
  both int8 variants run inside ``qemu-x86_64 -cpu Haswell`` (AVX2, no VNNI: onnxruntime picks its AVX2 kernels
  there) and are compared with the same file run here. On a CPU with VNNI/AMX (exact int8 dot products) the
  difference is the AVX2 kernels' saturation. Emulated timings mean nothing and are not reported.

    python benchmarks/bench_int8_avx2.py --data work/w300 --models models --emulate

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _crops(data: Path, size: int, n: int) -> np.ndarray:
    import cv2

    a = np.load(data / "crops.npy", mmap_mode="r")
    s = a.shape[1]
    lo, hi = s // 6, s - s // 6
    idx = np.linspace(0, len(a) - 1, n).astype(int)
    out = [cv2.resize(np.asarray(a[i])[lo:hi, lo:hi], (size, size), interpolation=cv2.INTER_AREA) for i in idx]
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.float32)


def _session(model, threads: int = 1):
    """A plain onnxruntime session: not ``facelm.ort.create_session``, which would rewrite the int8 file itself on
    a CPU whose kernels saturate; here each variant must run as given."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _run(model: str, crops: str, out: str) -> None:
    """The child run (inside the emulator): landmarks of ``crops`` by ``model`` to ``out``."""
    y = _session(model).run(["landmarks"], {"images": np.load(crops)})[0]
    np.save(out, y)


def _speed(models: dict, x: np.ndarray, seconds: float, rounds: int) -> dict:
    sess = {k: _session(v) for k, v in models.items()}
    for s in sess.values():
        s.run(None, {"images": x})
    rates = {k: [] for k in sess}
    for _ in range(rounds):  # taking turns, so background load hits all alike
        for k, s in sess.items():
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds:
                s.run(None, {"images": x})
                n += len(x)
            rates[k].append(n / (time.perf_counter() - t0))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {"crops_per_s": {k: round(v, 1) for k, v in med.items()},
            "vs_fp32": {k: round(v / med["fp32"], 2) for k, v in med.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="prepared folder (crops.npy) for the crops")
    ap.add_argument("--models", type=Path, default=Path("models"), help="folder with cnn6.onnx and cnn6.int8.onnx")
    ap.add_argument("--stem", default="cnn6", help="model name in --models (cnn6, cnn6r)")
    ap.add_argument("--crops", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--emulate", action="store_true", help="also run int8 inside qemu-x86_64 -cpu Haswell")
    ap.add_argument("--save", type=Path, help="also write the int8 model with 7-bit activations here (to score it "
                    "end to end on any CPU: it computes there what an AVX2 CPU computes)")
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "CROPS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _run(*a.child)
        return 0
    if a.data is None:
        ap.error("--data is required")
    import onnx

    from facelm.cpu_features import cpu_flags, cpu_name
    from facelm.modelfile import read_onnx_meta
    from facelm.ort import int8_kernels_saturate, seven_bit_activations

    flt, i8 = a.models / f"{a.stem}.onnx", a.models / f"{a.stem}.int8.onnx"
    size = int(read_onnx_meta(flt)["input_size"][0])
    x = _crops(a.data, size, a.crops)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        m = onnx.load(str(i8))
        rewritten = seven_bit_activations(m)
        a7 = t / "act7.onnx"
        onnx.save(m, str(a7))
        if a.save:
            onnx.save(m, str(a.save))
        np.save(t / "crops.npy", x)
        files = {"fp32": flt, "int8": i8, "int8_act7": a7}
        native = {k: _session(str(p)).run(["landmarks"], {"images": x})[0] for k, p in files.items()}
        err = lambda p, q: np.linalg.norm(p - q, axis=2)  # noqa: E731
        doc = {"cpu": cpu_name(), "int8_kernels_saturate_here": int8_kernels_saturate(),
               "flags": sorted(f for f in cpu_flags() if "vnni" in f or "amx" in f or f in ("avx2", "avx512f")),
               "model": str(i8), "data": str(a.data), "crops": len(x), "activation_tensors_rewritten": rewritten,
               "here_mean_px": {"int8_vs_fp32": float(err(native["int8"], native["fp32"]).mean()),
                                "int8_act7_vs_fp32": float(err(native["int8_act7"], native["fp32"]).mean()),
                                "int8_act7_vs_int8": float(err(native["int8_act7"], native["int8"]).mean())},
               "speed": _speed({k: str(p) for k, p in files.items()}, x[:32], a.seconds, a.rounds)}
        if a.emulate:
            emu = {}
            for k in ("int8", "int8_act7"):
                out = t / f"emu_{k}.npy"
                env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
                subprocess.run(["qemu-x86_64", "-cpu", "Haswell", os.path.realpath(sys.executable), __file__,
                                "--child", str(files[k]), str(t / "crops.npy"), str(out)], check=True, env=env,
                               stderr=subprocess.DEVNULL)
                e = err(np.load(out), native[k])
                emu[k] = {"vs_this_cpu_mean_px": float(e.mean()), "vs_this_cpu_max_px": float(e.max()),
                          "crops_changed": int((e.max(axis=1) > 0).sum())}
            doc["emulated_haswell"] = emu
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
