"""The One-Euro filter (Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy
Input in Interactive Systems", CHI 2012), for whole arrays of coordinates at once.

Each coordinate is an exponential low-pass filter whose cutoff frequency rises with the signal's speed:

    alpha(fc, dt) = 1 / (1 + 1 / (2 pi fc dt))
    dx   = (x - x_prev) / dt,      dx_s = alpha(d_cutoff, dt) dx + (1 - alpha) dx_s_prev
    fc   = min_cutoff + beta |dx_s| / scale
    x_s  = alpha(fc, dt) x + (1 - alpha) x_s_prev

A still point is smoothed hard (cutoff ``min_cutoff``), a moving one lightly (the cutoff grows with its speed, so
the lag stays small). ``scale`` divides the speed before ``beta`` applies, so that with ``scale`` = the face's size
in pixels, ``beta`` is in 1 / (face sizes per second) and the same settings work at any image resolution
(facelm's defaults: :data:`DEFAULT_MIN_CUTOFF`, :data:`DEFAULT_BETA`, :data:`DEFAULT_D_CUTOFF`; measured in
docs/predict.md, "Steady video").
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_BETA", "DEFAULT_D_CUTOFF", "DEFAULT_MIN_CUTOFF", "OneEuroFilter"]

#: cutoff frequency (Hz) of a still point
DEFAULT_MIN_CUTOFF = 0.5
#: cutoff increase per unit of speed (face sizes per second, with ``scale`` = face size)
DEFAULT_BETA = 3.0
#: cutoff frequency (Hz) of the speed estimate
DEFAULT_D_CUTOFF = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter over an array of any shape (each element filtered on its own).

    Args:
        min_cutoff: cutoff frequency in Hz at zero speed (> 0): lower is smoother and slower.
        beta: speed coefficient (>= 0): higher follows fast motion with less lag.
        d_cutoff: cutoff frequency in Hz of the speed estimate (> 0).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        for name, v, low in (("min_cutoff", min_cutoff, 0.0), ("d_cutoff", d_cutoff, 0.0)):
            if not (math.isfinite(v) and v > low):
                raise ValueError(f"`{name}` must be a positive number, got {v}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"`beta` must be a number >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def restore(self, x: np.ndarray, t: float, dx: np.ndarray | None = None) -> None:
        """Go on from an earlier run's state: its last filtered value ``x`` at time ``t`` and the speed ``dx`` (per
        second; zero when not given), as if that run had fed this filter (``--resume`` of a smoothed video)."""
        self._x = np.asarray(x, dtype=np.float64).copy()
        self._dx = np.zeros_like(self._x) if dx is None else np.asarray(dx, dtype=np.float64).copy()
        self._t = float(t)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of ``x`` observed at time ``t`` (seconds, increasing); ``scale`` divides speeds
        (module docstring). The first call (or one whose ``t`` is not after the last) returns ``x`` and restarts
        from it; non-finite elements are passed through and restart their own state."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or not t > self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        prev = np.where(np.isfinite(self._x), self._x, x)
        dx = (x - prev) / dt
        dx_s = _alpha(self.d_cutoff, dt) * dx + (1 - _alpha(self.d_cutoff, dt)) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx_s) / max(float(scale), 1e-12)
        a = _alpha(cutoff, dt)
        out = a * x + (1 - a) * prev
        bad = ~np.isfinite(out)
        out[bad], dx_s[bad] = x[bad], 0.0
        self._x, self._dx, self._t = out, np.where(np.isfinite(dx_s), dx_s, 0.0), float(t)
        return out.copy()
