"""The conjugate Gaussian model on the same statistics, its evidence and the per-feature grid gains.

The continuous model y = Φw + ε, w ~ N(0, λ⁻¹I), ε ~ N(0, α⁻¹), with λ and α chosen by maximising the
evidence (MacKay's fixed-point updates, as scikit-learn's ``BayesianRidge``), needs only the statistics
ΦᵀΦ, Φᵀy, yᵀy and n.  Its posterior gives each weight's typical size r_i = (μ_i² + Σ_ii)^½, from which
the discrete model's per-feature grids are scaled (docs/trainer.md §2, per-feature grids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from direct_edge.trainer.grid import GAIN_FRAC_BITS, gains_from_sizes
from direct_edge.trainer.statistics import SufficientStatistics

MAX_ITER = 1000
TOL = 1e-13


@dataclass(frozen=True)
class ConjugatePosterior:
    """Evidence-maximising conjugate posterior: ``mean`` (b,), ``var`` (b,) its diagonal, ``prior_var``
    λ⁻¹ and ``noise_var`` α⁻¹, in the units of the statistics' target, and ``log_evidence``, ln p(y) at
    that λ and α (nats; PRML eq. 3.86)."""

    mean: np.ndarray
    var: np.ndarray
    prior_var: float
    noise_var: float
    log_evidence: float = float("nan")

    @property
    def weight_size(self) -> np.ndarray:
        """(b,) r_i = (μ_i² + Σ_ii)^½: each weight's root mean square under the posterior."""
        return np.sqrt(self.mean**2 + self.var)


def conjugate_posterior(stats: SufficientStatistics) -> ConjugatePosterior:
    """Fit λ and α by the evidence (MacKay 1992; Bishop, PRML §3.5.2) from ``stats`` (ideally
    standardised, :meth:`SufficientStatistics.standardised`).  One symmetric eigendecomposition of ΦᵀΦ
    (O(b³)), then O(b) per fixed-point step.  Raises ``numpy.linalg.LinAlgError`` only if the
    eigendecomposition does."""
    stats = stats.in_units(0.0, 1.0)  # the model is of y itself
    n = float(stats.n)
    gram = 0.5 * (stats.gram + stats.gram.T)
    eig, vec = np.linalg.eigh(gram)
    eig = np.maximum(eig, 0.0)
    proj = vec.T @ stats.phi_y  # Φᵀy in the eigenbasis
    y_sq = float(stats.y_sq)
    scale = y_sq / n if y_sq > 0 else 1.0
    alpha, lam = 1.0 / (0.1 * scale), 1.0 / scale
    for _ in range(MAX_ITER):
        denom = alpha * eig + lam
        mean_eig = alpha * proj / denom
        gamma = float(np.sum(alpha * eig / denom))
        rss = max(y_sq - 2.0 * float(mean_eig @ proj) + float(np.sum(eig * mean_eig**2)), 1e-12 * scale)
        new_lam = gamma / max(float(mean_eig @ mean_eig), 1e-300)
        new_alpha = max(n - gamma, 1e-12) / rss
        done = abs(new_lam - lam) <= TOL * lam and abs(new_alpha - alpha) <= TOL * alpha
        alpha, lam = new_alpha, new_lam
        if done:
            break
    denom = alpha * eig + lam
    mean_eig = alpha * proj / denom
    mean = vec @ mean_eig
    var = np.sum(vec**2 / denom[None, :], axis=1)
    rss = max(y_sq - 2.0 * float(mean_eig @ proj) + float(np.sum(eig * mean_eig**2)), 0.0)
    b = eig.shape[0]
    log_evidence = 0.5 * (
        b * np.log(lam)
        + n * np.log(alpha)
        - alpha * rss
        - lam * float(mean_eig @ mean_eig)
        - float(np.sum(np.log(denom)))
        - n * np.log(2.0 * np.pi)
    )
    return ConjugatePosterior(mean, var, 1.0 / lam, 1.0 / alpha, float(log_evidence))


def grid_gains(stats: SufficientStatistics | ConjugatePosterior) -> tuple[np.ndarray, float, float]:
    """Per-feature grid gains g_i = r_i / max r (b,) in (0, 1] (before rounding to the device's
    2^-15 steps), max r, and the evidence's prior sd λ^-½, from :func:`conjugate_posterior` of
    ``stats`` (or from that posterior itself)."""
    post = stats if isinstance(stats, ConjugatePosterior) else conjugate_posterior(stats)
    gains, top = gains_from_sizes(post.weight_size, 2.0**-GAIN_FRAC_BITS)
    return gains, top, float(np.sqrt(post.prior_var))
