"""Exact ELBOs and their gradients, as pure functions of the statistics and the logits.

Spec: docs/trainer.md §5 (mean-field), §6 (mixture), §7 (predictive moments).  Notation:
W (b, m) grid values, log P (b, m) log prior, σ² (K,) noise grid, log π (K,) noise prior,
Q = softmax(θ) row-wise, ρ = softmax(η).  All values are in nats and include the
−(n/2)·log 2π constant, so the ELBO is a true lower bound on log p(y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from direct_edge.trainer.posterior import sample_indices
from direct_edge.trainer.statistics import SufficientStatistics

_LOG_2PI = float(np.log(2.0 * np.pi))
_TINY = 1e-300


@dataclass(frozen=True)
class Problem:
    """Everything an ELBO evaluation needs; nothing here depends on the rows but ``n``.

    ``grid``: (b, m) values; ``log_prior``: (b, m) normalised; ``noise``: (K,) variances;
    ``log_noise_prior``: (K,) normalised.
    """

    n: int
    gram: np.ndarray
    gram_diag: np.ndarray
    phi_y: np.ndarray
    y_sq: float
    grid: np.ndarray
    log_prior: np.ndarray
    noise: np.ndarray
    log_noise_prior: np.ndarray

    @classmethod
    def build(
        cls,
        stats: SufficientStatistics,
        grid: np.ndarray,
        log_prior: np.ndarray,
        noise: np.ndarray,
        log_noise_prior: np.ndarray,
    ) -> Problem:
        stats = stats.in_units(0.0, 1.0)  # the model is of y itself
        gram = np.ascontiguousarray(stats.gram, dtype=np.float64)
        return cls(
            int(stats.n),
            gram,
            np.diag(gram).copy(),
            np.asarray(stats.phi_y, dtype=np.float64),
            float(stats.y_sq),
            grid,
            log_prior,
            np.asarray(noise, dtype=np.float64),
            np.asarray(log_noise_prior, dtype=np.float64),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    def noise_log_lik(self) -> np.ndarray:
        """(K,) −(n/2)·log(2π σ²_k): the part of E log p(y|w, σ²) that does not involve w."""
        return -0.5 * self.n * (_LOG_2PI + np.log(self.noise))


def logsumexp(x: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log Σ exp(x) along ``axis``, stable.  (scipy's version costs more than the whole ELBO at
    small b, which matters inside an optimiser loop.)"""
    top = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    return logits - logsumexp(logits, axis=axis, keepdims=True)


def softmax_backward(p: np.ndarray, dp: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient wrt the logits of p = softmax(logits), given the gradient ``dp`` wrt p."""
    return p * (dp - np.sum(p * dp, axis=axis, keepdims=True))


def weight_moments(problem: Problem, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[w] and E[w²] under q: ``Q`` (..., b, m) -> two (..., b) arrays."""
    return np.sum(Q * problem.grid, axis=-1), np.sum(Q * problem.grid**2, axis=-1)


def expected_sq_residual(problem: Problem, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E_q‖y − Φw‖² = c − 2sᵀh + sᵀGs + gᵀ(t − s²) for each row of ``s``, ``t`` (..., b).

    Returns (values (...), G s (..., b)); G s is reused by the gradient.
    """
    Gs = s @ problem.gram  # G is symmetric
    value = (
        problem.y_sq - 2.0 * (s @ problem.phi_y) + np.sum(s * Gs, axis=-1) + (t - s * s) @ problem.gram_diag
    )
    return value, Gs


def _d_sq_residual_dQ(problem: Problem, s: np.ndarray, Gs: np.ndarray) -> np.ndarray:
    """∂E_q‖y − Φw‖²/∂Q_ij = 2W_ij((Gs)_i − g_i s_i − h_i) + g_i W_ij², shape (..., b, m)."""
    g = problem.gram_diag
    lin = Gs - g * s - problem.phi_y
    return 2.0 * problem.grid * lin[..., None] + g[:, None] * problem.grid**2


def _noise_terms(problem: Problem, eta: np.ndarray, sq_res: float) -> tuple[float, float, np.ndarray]:
    """Noise part of the ELBO: (value incl. its KL term, κ = E_q[1/σ²], gradient wrt η)."""
    log_rho = log_softmax(eta)
    rho = np.exp(log_rho)
    per_level = optimal_noise_logits(problem, sq_res) - log_rho
    return float(rho @ per_level), float(rho @ (1.0 / problem.noise)), softmax_backward(rho, per_level)


def mean_field_elbo(
    problem: Problem, theta: np.ndarray, eta: np.ndarray, fixed_rho: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact mean-field ELBO and its gradient.

    ``theta``: (b, m) weight logits; ``eta``: (K,) noise logits.  When ``fixed_rho`` (K,) is given,
    q(σ²) is that distribution instead of softmax(η) and the η gradient is zero.
    Returns (ELBO, ∂/∂θ (b, m), ∂/∂η (K,)).
    """
    log_Q = log_softmax(theta)
    Q = np.exp(log_Q)
    s, t = weight_moments(problem, Q)
    sq_res, Gs = expected_sq_residual(problem, s, t)
    if fixed_rho is None:
        noise_value, kappa, d_eta = _noise_terms(problem, eta, sq_res)
    else:
        noise_value, kappa, d_eta = _fixed_noise_terms(problem, fixed_rho, sq_res)
    weight_kl_terms = problem.log_prior - log_Q
    value = noise_value + float(np.sum(Q * weight_kl_terms))
    dQ = -0.5 * kappa * _d_sq_residual_dQ(problem, s, Gs) + weight_kl_terms
    return value, softmax_backward(Q, dQ), d_eta


def _fixed_noise_terms(problem: Problem, rho: np.ndarray, sq_res: float) -> tuple[float, float, np.ndarray]:
    log_rho = np.log(np.where(rho > 0, rho, 1.0))  # levels with rho = 0 contribute nothing
    per_level = optimal_noise_logits(problem, sq_res) - log_rho
    return float(rho @ per_level), float(rho @ (1.0 / problem.noise)), np.zeros_like(rho)


def optimal_noise_logits(problem: Problem, sq_res: float) -> np.ndarray:
    """η maximising the ELBO for a fixed q(w) (closed form: ρ_k ∝ π_k exp(E log p(y|·, σ²_k)))."""
    return problem.noise_log_lik() - 0.5 * sq_res / problem.noise + problem.log_noise_prior


def mixture_likelihood_and_prior(
    problem: Problem, theta: np.ndarray, alpha_logits: np.ndarray, eta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Exact part of the mixture ELBO: E_q log p(y|w,σ²) + E_q log p(w) + noise KL term.

    ``theta``: (r, b, m); ``alpha_logits``: (r,).  Returns (value, ∂/∂Q (r, b, m), ∂/∂α (r,),
    ∂/∂η (K,), cache) with gradients wrt the probabilities Q and α (not yet the logits).
    """
    log_Q = log_softmax(theta)
    Q = np.exp(log_Q)
    alpha = np.exp(log_softmax(alpha_logits))
    s, t = weight_moments(problem, Q)
    sq_res_k, Gs = expected_sq_residual(problem, s, t)
    sq_res = float(alpha @ sq_res_k)
    noise_value, kappa, d_eta = _noise_terms(problem, eta, sq_res)
    prior_k = np.sum(Q * problem.log_prior, axis=(1, 2))
    value = noise_value + float(alpha @ prior_k)
    dQ = alpha[:, None, None] * (-0.5 * kappa * _d_sq_residual_dQ(problem, s, Gs) + problem.log_prior)
    d_alpha = -0.5 * kappa * sq_res_k + prior_k
    cache = {"Q": Q, "log_Q": log_Q, "alpha": alpha, "s": s, "t": t}
    return value, dQ, d_alpha, d_eta, cache


def mixture_entropy_bound(
    Q: np.ndarray, alpha: np.ndarray, log_A: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Upper bound on Σ_w q(w) log q(w) (i.e. minus a lower bound on the entropy).

    From log q ≤ log a + q/a − 1 with a = ⊗_i a_i, ``log_A``: (b, m) free:
        B = Σ_k α_k Σ_ij Q_kij log A_ij + Σ_kl α_k α_l Π_i Σ_j Q_kij Q_lij / A_ij − 1.
    Products over i are taken in log space.  Returns (B, ∂B/∂Q, ∂B/∂α, ∂B/∂log A).
    """
    with np.errstate(divide="ignore"):
        QA = np.exp(np.log(Q) - log_A)  # Q/A; exp(-log_A) alone overflows where both are tiny
    lin_k = np.sum(Q * log_A, axis=(1, 2))
    R = np.einsum("kij,lij->kli", Q, QA)  # (r, r, b)
    log_R = np.log(np.maximum(R, _TINY))
    log_M = log_R.sum(axis=-1)  # (r, r)
    M = np.exp(log_M)
    quad = float(alpha @ M @ alpha)
    value = float(alpha @ lin_k) + quad - 1.0
    # C_kli = α_l Π_{i'≠i} R_kli'
    C = alpha[None, :, None] * np.exp(log_M[:, :, None] - log_R)
    DA = np.einsum("kli,lij->kij", C, QA)  # Σ_l C_kli Q_lij / A_ij
    dQ = alpha[:, None, None] * (log_A + 2.0 * DA)
    d_alpha = lin_k + 2.0 * (M @ alpha)
    d_log_A = np.einsum("k,kij->ij", alpha, Q) - np.einsum("k,kij->ij", alpha, Q * DA)
    return value, dQ, d_alpha, d_log_A


def mixture_elbo_bound(
    problem: Problem, theta: np.ndarray, alpha_logits: np.ndarray, log_A: np.ndarray, eta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic lower bound on the mixture ELBO and its exact gradient.

    Returns (bound, ∂/∂θ (r, b, m), ∂/∂α-logits (r,), ∂/∂log A (b, m), ∂/∂η (K,)).
    """
    value, dQ, d_alpha, d_eta, cache = mixture_likelihood_and_prior(problem, theta, alpha_logits, eta)
    Q, alpha = cache["Q"], cache["alpha"]
    bound, bQ, b_alpha, b_log_A = mixture_entropy_bound(Q, alpha, log_A)
    d_theta = softmax_backward(Q, dQ - bQ)
    d_alpha_logits = softmax_backward(alpha, d_alpha - b_alpha)
    return value - bound, d_theta, d_alpha_logits, -b_log_A, d_eta


def mixture_log_q(
    log_Q: np.ndarray, log_alpha: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log q(w) for samples given as grid indices ``index`` (S, b); returns (log q (S,),
    responsibilities γ (S, r))."""
    b = log_Q.shape[1]
    comp = log_Q[:, np.arange(b)[None, :], index].sum(axis=-1).T + log_alpha  # (S, r)
    log_q = logsumexp(comp, axis=1)
    return log_q, np.exp(comp - log_q[:, None])


def mixture_elbo_reinforce(
    problem: Problem,
    theta: np.ndarray,
    alpha_logits: np.ndarray,
    eta: np.ndarray,
    rng: np.random.Generator,
    n_samples: int,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Mixture ELBO with the entropy and its gradient estimated by the score function.

    Likelihood and prior terms are exact; the entropy gradient is the unbiased REINFORCE estimate
    −mean_s (log q(w_s) − b_s) ∇ log q(w_s) with a leave-one-out baseline b_s (S > 1).
    Returns (estimate of the ELBO, ∂/∂θ, ∂/∂α-logits, ∂/∂η), all stochastic through the entropy.
    """
    value, dQ, d_alpha, d_eta, cache = mixture_likelihood_and_prior(problem, theta, alpha_logits, eta)
    Q, log_Q, alpha = cache["Q"], cache["log_Q"], cache["alpha"]
    d_theta = softmax_backward(Q, dQ)
    d_alpha_logits = softmax_backward(alpha, d_alpha)
    index = sample_indices(Q, alpha, n_samples, rng)
    log_q, gamma = mixture_log_q(log_Q, np.log(alpha), index)
    S = n_samples
    baseline = (log_q.sum() - log_q) / (S - 1) if S > 1 else np.zeros(S)
    f = log_q - baseline  # (S,)
    weight = f[:, None] * gamma  # (S, r)
    r, b, m = Q.shape
    onehot_sum = np.zeros((r, b, m))
    for k in range(r):
        # Σ_s weight_sk · onehot(w_s)
        np.add.at(onehot_sum[k], (np.broadcast_to(np.arange(b), index.shape), index), weight[:, k][:, None])
    d_theta_entropy = -(onehot_sum - weight.sum(axis=0)[:, None, None] * Q) / S
    d_alpha_entropy = -(weight.sum(axis=0) - f.sum() * alpha) / S
    entropy = -float(log_q.mean())
    return value + entropy, d_theta + d_theta_entropy, d_alpha_logits + d_alpha_entropy, d_eta


def mixture_entropy_exact_terms(Q: np.ndarray, alpha: np.ndarray) -> float:
    """Σ_k α_k H(q_k) + H(α): an upper bound on the mixture entropy (for diagnostics only)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h_k = -np.nansum(Q * np.log(Q), axis=(1, 2))
        h_alpha = -np.nansum(alpha * np.log(alpha))
    return float(alpha @ h_k + h_alpha)
