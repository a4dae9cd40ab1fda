"""Discrete grids for the weights and the noise variance, and the priors over them.

A weight grid is ``levels * scale``: ``levels`` are small integers (what the edge runtime stores),
``scale`` (Δ) is a float in the units of the standardised target.  See docs/trainer.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from direct_edge.trainer.errors import DataError

PRIOR_KINDS = ("uniform", "gaussian", "sparse")


# Per-feature grid gains are multiples of 2^-GAIN_FRAC_BITS in (0, 1]: the integer runtime multiplies each
# feature by the integer G_i = gain_i·2^15 (docs/integer-spec.md, feature gains), so the trainer's grid is
# exactly the one the device applies.
GAIN_FRAC_BITS = 15


@dataclass(frozen=True)
class WeightGrid:
    """Integer levels times a scale, optionally times a gain per feature.

    ``levels``: (m,) int64, sorted, contains 0; ``scale``: Δ > 0; ``gains``: None (one grid for every
    weight: ``values`` = levels * scale, shape (m,)) or (b,) float64 in (0, 1], each an integer multiple
    of 2^-15 (:func:`quantise_gains`): weight i lives on levels * scale * gains[i], and ``values`` has
    shape (b, m).
    """

    levels: np.ndarray
    scale: float
    gains: np.ndarray | None = None

    @classmethod
    def from_bits(cls, bits: int = 4, scale: float = 1.0, symmetric: bool = True) -> WeightGrid:
        """Symmetric grid −(2^(k−1)−1)..2^(k−1)−1 (15 levels at 4 bits) or the two's-complement
        range −2^(k−1)..2^(k−1)−1 when ``symmetric`` is False."""
        if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
            raise DataError(f"bits must be an integer from 2 to 8, got {bits!r}")
        if not np.isfinite(scale) or scale <= 0:
            raise DataError(f"grid scale must be a positive finite number, got {scale!r}")
        half = 2 ** (int(bits) - 1)
        low = -half + 1 if symmetric else -half
        return cls(np.arange(low, half, dtype=np.int64), float(scale))

    @property
    def values(self) -> np.ndarray:
        """(m,) float64 weight values, or (b, m) with per-feature gains."""
        if self.gains is None:
            return self.levels * self.scale
        return (self.scale * self.gains)[:, None] * self.levels[None, :]

    def with_gains(self, gains: np.ndarray) -> WeightGrid:
        """This grid with per-feature ``gains`` (b,) (rounded by :func:`quantise_gains`)."""
        return WeightGrid(self.levels, self.scale, quantise_gains(gains))

    @property
    def bits(self) -> int:
        """Smallest two's-complement width that holds every level."""
        lo, hi = int(self.levels.min()), int(self.levels.max())
        k = 1
        while not (-(2 ** (k - 1)) <= lo and hi <= 2 ** (k - 1) - 1):
            k += 1
        return k

    @property
    def zero_index(self) -> int:
        return int(np.flatnonzero(self.levels == 0)[0])


def quantise_gains(gains: np.ndarray) -> np.ndarray:
    """(b,) gains rounded to the nearest multiple of 2^-15 in [2^-15, 1] (what the integer runtime
    holds, docs/integer-spec.md).  Raises DataError for a non-finite or non-positive gain."""
    gains = np.asarray(gains, dtype=np.float64)
    if gains.ndim != 1 or gains.size < 1 or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise DataError("grid gains must be a non-empty 1-D array of positive finite numbers")
    one = float(2**GAIN_FRAC_BITS)
    return np.clip(np.rint(gains * one), 1.0, one) / one


def gains_from_sizes(size: np.ndarray, smallest: float) -> tuple[np.ndarray, float]:
    """Per-feature gains g_i = size_i / max size (b,), floored at ``smallest`` (before
    :func:`quantise_gains`), and the largest size; (ones, 1.0) when no size is positive and finite.
    ``size``: (b,) each feature's weight size under a continuous approximation (docs/trainer.md §2)."""
    size = np.asarray(size, dtype=np.float64)
    top = float(np.max(size, initial=0.0))
    if not np.isfinite(top) or top <= 0:
        return np.ones_like(size), 1.0
    return np.maximum(size / top, smallest), top


def prior_log_probs(
    values: np.ndarray,
    kind: str = "gaussian",
    scale: float = 1.0,
    zero_mass: float = 0.5,
) -> np.ndarray:
    """Log prior probabilities over a grid, normalised over the grid.

    ``values``: (m,) or (b, m) grid values.  ``kind``: "uniform"; "gaussian", N(0, scale²)
    evaluated at the grid points and renormalised (the discretely relaxed continuous prior);
    "sparse", the gaussian prior mixed with a point mass: ``zero_mass`` extra probability on the
    level whose value is 0.  Returns an array of the shape of ``values``.
    """
    values = np.asarray(values, dtype=np.float64)
    if kind == "uniform":
        logp = np.zeros_like(values)
    elif kind in ("gaussian", "sparse"):
        if not np.isfinite(scale) or scale <= 0:
            raise DataError(f"prior scale must be positive and finite, got {scale!r}")
        logp = -0.5 * (values / scale) ** 2
    else:
        raise DataError(f"unknown prior {kind!r}; choose one of {', '.join(PRIOR_KINDS)}")
    logp = logp - logsumexp(logp, axis=-1, keepdims=True)
    if kind == "sparse":
        if not 0.0 <= zero_mass < 1.0:
            raise DataError(f"zero_mass must be in [0, 1), got {zero_mass!r}")
        is_zero = values == 0.0
        if not np.all(is_zero.sum(axis=-1) == 1):
            raise DataError("a sparse prior needs exactly one zero level in every grid row")
        # In log space: far grid levels of a narrow gaussian underflow to probability 0.
        with np.errstate(divide="ignore"):
            point_mass = np.where(is_zero, np.log(zero_mass), -np.inf)
        logp = np.logaddexp(np.log1p(-zero_mass) + logp, point_mass)
    return logp


def noise_grid(n_levels: int = 26, low: float = 1e-5, high: float = 1.0) -> np.ndarray:
    """(n_levels,) log-spaced noise variances, in units of the standardised target's variance."""
    if n_levels < 1 or not (0 < low <= high):
        raise DataError("noise grid needs n_levels >= 1 and 0 < low <= high")
    return np.geomspace(low, high, n_levels)


def normalise_log_probs(log_p: np.ndarray, name: str) -> np.ndarray:
    """Validate and renormalise log probabilities along the last axis (finite entries only)."""
    log_p = np.asarray(log_p, dtype=np.float64)
    if not np.all(np.isfinite(log_p)):
        raise DataError(f"{name} must be finite (give a small probability instead of zero)")
    return log_p - logsumexp(log_p, axis=-1, keepdims=True)
