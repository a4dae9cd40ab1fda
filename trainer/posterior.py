"""A fitted variational posterior q(w, σ²), independent of the data and of the optimiser.

This is what the model file stores and what the exporters read (docs/trainer.md §7).  Shapes:
b weights, m grid levels, r mixture components (r = 1 for mean-field), K noise levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from direct_edge.trainer.errors import DataError
from direct_edge.trainer.grid import WeightGrid

# The variance of a uniform error over one grid cell, in cell widths² (docs/trainer.md §7).
GRID_ROUNDING_VARIANCE = 1.0 / 12.0


def rounding_floor(
    grid: np.ndarray, conjugate_var: np.ndarray, offset: np.ndarray | float = 0.0
) -> np.ndarray:
    """The predictive variance floor (b,) of each weight (docs/trainer.md §7): the variance of a
    uniform error over one grid cell, step_i² / 12, but never more than the weight's mean squared
    error under the conjugate Gaussian posterior on the same statistics, ``conjugate_var`` + ``offset``²
    (its variance Σ_ii and the distance of q's mean from its mean, (b,) each,
    :func:`direct_edge.trainer.evidence.conjugate_posterior`): a weight the data pin exactly to a level
    (a constant target's zero weights) loses nothing by rounding.  ``grid``: (b, m) weight values
    (uniform steps; for a non-uniform row, its mean step)."""
    grid = np.asarray(grid, dtype=np.float64)
    m = grid.shape[1]
    step = (grid[:, -1] - grid[:, 0]) / max(m - 1, 1)
    mse = np.maximum(np.asarray(conjugate_var, dtype=np.float64), 0.0) + np.square(offset)
    return np.minimum(step**2 * GRID_ROUNDING_VARIANCE, mse)


def sample_indices(
    q_weights: np.ndarray, mixture_weights: np.ndarray, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Grid indices (S, b) drawn from Σ_k α_k Π_i Cat(Q_ki): a component per draw, then an
    index per weight by inverse-CDF sampling.  ``q_weights``: (r, b, m); ``mixture_weights``: (r,)."""
    r, b, m = q_weights.shape
    comp = rng.choice(r, size=n_samples, p=mixture_weights)
    cdf = np.cumsum(q_weights[comp], axis=-1)
    u = rng.random((n_samples, b, 1))
    return np.minimum((u > cdf).sum(axis=-1), m - 1)


@dataclass
class PosteriorSamples:
    """S draws from q(w, σ²).

    ``index``: (S, b) int16 grid indices; ``weights``: (S, b) float64 values; ``levels``: (S, b)
    int8 integer levels (None when the grid is not integer levels × scale); ``noise_variance``: (S,).
    """

    index: np.ndarray
    weights: np.ndarray
    levels: np.ndarray | None
    noise_variance: np.ndarray

    @property
    def sparsity(self) -> float:
        """Share of exactly-zero weights over all samples and positions."""
        return float(np.mean(self.weights == 0.0))


@dataclass
class Posterior:
    """q(w, σ²) = Σ_k α_k Π_i Cat(w_i; Q_ki) · Cat(σ²; ρ).

    ``grid``: (b, m) values; ``q_weights``: (r, b, m); ``mixture_weights``: (r,) α;
    ``noise``: (K,) variances; ``q_noise``: (K,) ρ; ``weight_grid``: the integer-level grid when
    the grid is one (then ``grid`` rows all equal ``weight_grid.values``); ``variance_floor``: None or
    (b,) the least variance each weight has in the predictive moments (:func:`rounding_floor`, set by
    the trainer; None: no floor, q's own moments).
    """

    grid: np.ndarray
    q_weights: np.ndarray
    mixture_weights: np.ndarray
    noise: np.ndarray
    q_noise: np.ndarray
    weight_grid: WeightGrid | None = None
    variance_floor: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.grid.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.q_weights.shape[0])

    @property
    def noise_variance_mean(self) -> float:
        """E_q[σ²]."""
        return float(self.q_noise @ self.noise)

    def component_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-component E[w] and E[w²], each (r, b)."""
        return (np.sum(self.q_weights * self.grid, axis=-1), np.sum(self.q_weights * self.grid**2, axis=-1))

    def weight_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (b,) and marginal variance (b,) of the weights under q."""
        s, t = self.component_moments()
        mean = self.mixture_weights @ s
        return mean, np.maximum(self.mixture_weights @ t - mean**2, 0.0)

    def _component_predictive_variance(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-component mean (r, b) and predictive variance (r, b): q's variance, floored at
        ``variance_floor``."""
        s, t = self.component_moments()
        floor = 0.0 if self.variance_floor is None else self.variance_floor[None, :]
        return s, np.maximum(t - s * s, floor)

    def predictive_weight_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (b,) and predictive variance (b,) of each weight: per component, q's variance floored
        at ``variance_floor``, then mixed over components.  What :meth:`predict_moments` and
        the exporters' exact-moment sections use (docs/trainer.md §7; IS §6)."""
        s, v = self._component_predictive_variance()
        alpha = self.mixture_weights
        mean = alpha @ s
        return mean, np.maximum(alpha @ (v + s * s) - mean**2, 0.0)

    def predict_moments(
        self, Phi: np.ndarray, include_noise: bool = True, include_rounding: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean (n,) and variance (n,) for features ``Phi``: (n, b).

        Mean-field: E[f] = Φs, Var[f] = Φ²v.  Mixture: the law of total variance over components.
        With ``include_rounding`` (the default, what the product predicts) each weight's variance is
        at least ``variance_floor`` (:func:`rounding_floor`), so that the predictive sd grows off the
        data even where q sits on one level (docs/trainer.md §7); without it, the exact moments of q.
        The variance is of y* = f* + ε when ``include_noise`` (adds E_q[σ²]), of f* otherwise.
        Raises DataError for ``Phi`` of another width.
        """
        Phi = np.asarray(Phi, dtype=np.float64)
        if Phi.ndim != 2 or Phi.shape[1] != self.n_features:
            raise DataError(f"features must have shape (n, {self.n_features}), got {Phi.shape}")
        if include_rounding:
            s, v = self._component_predictive_variance()
        else:
            s, t = self.component_moments()
            v = t - s * s
        alpha = self.mixture_weights
        if self.n_components == 1:
            mean = Phi @ s[0]
            var = (Phi * Phi) @ v[0]
        else:
            mean_k = Phi @ s.T  # (n, r)
            second = ((Phi * Phi) @ v.T + mean_k**2) @ alpha
            mean = mean_k @ alpha
            var = np.maximum(second - mean**2, 0.0)
        if include_noise:
            var = var + self.noise_variance_mean
        return mean, var

    def sample(self, n_samples: int, seed: int = 0) -> PosteriorSamples:
        """``n_samples`` draws of (w, σ²), reproducible for a given ``seed``.

        A draw picks a component from α, then every weight's grid index from that component's
        row of Q, then a noise level from ρ (all with one ``np.random.Generator(seed)``).
        """
        S = int(n_samples)
        if S < 1:
            raise DataError("n_samples must be >= 1")
        rng = np.random.default_rng(seed)
        _, b, m = self.q_weights.shape
        index = sample_indices(self.q_weights, self.mixture_weights, S, rng)
        noise = rng.choice(self.noise, size=S, p=self.q_noise)
        weights = np.take_along_axis(np.broadcast_to(self.grid, (S, b, m)), index[..., None], axis=-1)[..., 0]
        levels = None if self.weight_grid is None else self.weight_grid.levels[index].astype(np.int8)
        return PosteriorSamples(index.astype(np.int16), weights, levels, noise)

    def mode(self) -> np.ndarray:
        """(b,) grid indices of the posterior mode: per-weight argmax of q (for a mixture, of its
        heaviest component, whose mode this is)."""
        Q = self.q_weights[int(np.argmax(self.mixture_weights))]
        return np.argmax(Q, axis=-1)
