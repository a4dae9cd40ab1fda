"""Lower bounds on the expected log-likelihood of a classifier with discrete mean-field weights.

Spec: docs/trainer.md §11 (classification); the paper's bound is direct-method.md §6.  Notation:
K outputs (K = 1 for a binary classifier with the Bernoulli-logistic likelihood p(t=1|z) = σ(z); K ≥ 3
classes for the categorical-softmax likelihood p(t=k|z) = softmax(z)_k), b features, m grid levels.
The weights W (K, b) are independent categorical variables under q: Q = row-softmax(θ), θ (K, b, m),
each on the grid row ``grid`` (b, m) with log prior ``log_prior`` (b, m), shared by the K outputs.
z_i = W φ_i (K,).  Moments: S = E[W] (K, b), V = Var[W] (K, b).

Every function returns a *lower bound* on E_q log p(t | Φ, W), or the ELBO built on it, whose
expectation under q is computed exactly (no sampling):

- ``exp`` (the paper's bound): log(1 + x) ≤ x, so log p(t|z) ≥ −Σ_{k≠t} exp(z_k − z_t) (binary:
  −exp(−ỹz), ỹ = ±1).  E_q exp(c·z) factorises over the weights into a product of per-weight
  moment generating functions, Π_j Σ_l Q_jl exp(c_j W_jl).  O(n·b·m·K) per evaluation.
- ``jensen``: the same quantities with Jensen's inequality in place of log(1 + x) ≤ x,
  E log(1 + X) ≤ log(1 + E X): log p ≥ −log(1 + Σ_{k≠t} E exp(z_k − z_t)).  Tighter everywhere, same
  cost (it is the paper's bound with its tangent point optimised per row in closed form).
- ``boehning``: the log-sum-exp has Hessian ≤ A = ½(I − 11ᵀ/K) (binary: 1/4), so around any ψ_i,
  log p(t|z) ≥ −½ zᵀAz + zᵀ(t − p(ψ) + Aψ) − lse(ψ) + p(ψ)ᵀψ − ½ψᵀAψ.  Quadratic in W: its expectation
  needs only G = ΦᵀΦ (once) and H = Φᵀ(T − P(Ψ) + ΨA) (b, K) (one O(n·b) pass per update of Ψ).
- ``jj`` (Jaakkola–Jordan, binary only): log σ(x) ≥ log σ(ξ) + (x − ξ)/2 − λ(ξ)(x² − ξ²),
  λ(ξ) = tanh(ξ/2)/(4ξ); quadratic with the weighted Gram Φᵀ diag(2λ) Φ (one O(n·b²) pass per update).

The two quadratic bounds become a :class:`QuadraticBound` (G, H, A, constant), whose ELBO costs
O(K·b² + K·b·m) per evaluation whatever n: the structure of the regression ELBO (trainer/elbo.py), of
which the binary case (K = 1) is exactly an instance (tests check it against ``mean_field_elbo``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from direct_edge.trainer.elbo import log_softmax, logsumexp, softmax_backward
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.grid import gains_from_sizes

BOUNDS = ("boehning", "jj", "jensen", "exp")
QUADRATIC_BOUNDS = ("boehning", "jj")
# Entries of the (rows, K, b, m) scratch of one block of the exp and jensen bounds (32 MB of float64).
_BLOCK_ENTRIES = 1 << 22


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + eˣ), stable for any float64 ``x``."""
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e⁻ˣ), stable for any float64 ``x``."""
    return np.exp(-softplus(-x))


def jj_lambda(xi: np.ndarray) -> np.ndarray:
    """λ(ξ) = tanh(ξ/2) / (4ξ), with its limit 1/8 at ξ = 0 (even in ξ)."""
    xi = np.abs(np.asarray(xi, dtype=np.float64))
    small = xi < 1e-6
    safe = np.where(small, 1.0, xi)
    return np.where(small, 0.125 - xi * xi / 96.0, np.tanh(safe / 2.0) / (4.0 * safe))


def boehning_curvature(n_outputs: int) -> np.ndarray:
    """(K, K) curvature A of Böhning's bound: [[1/4]] for K = 1 (logistic), ½(I − 11ᵀ/K) otherwise."""
    K = int(n_outputs)
    if K == 1:
        return np.full((1, 1), 0.25)
    return 0.5 * (np.eye(K) - np.full((K, K), 1.0 / K))


def check_labels(labels: np.ndarray, n_outputs: int) -> np.ndarray:
    """``labels``: (n,) integer class indices, in {0, 1} for K = 1, in 0..K−1 otherwise.  Returns them
    as int64; raises DataError otherwise."""
    labels = np.asarray(labels)
    n_classes = 2 if n_outputs == 1 else n_outputs
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-d integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"labels must lie in 0..{n_classes - 1}")
    return labels.astype(np.int64)


def one_hot(labels: np.ndarray, n_outputs: int) -> np.ndarray:
    """(n, K) targets: the label itself (n, 1) for K = 1, one-hot rows otherwise."""
    if n_outputs == 1:
        return labels.astype(np.float64)[:, None]
    out = np.zeros((labels.shape[0], n_outputs))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def weight_moments(grid: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[W] and Var[W], each (K, b), of Q (K, b, m) on ``grid`` (b, m)."""
    s = np.sum(Q * grid, axis=-1)
    return s, np.maximum(np.sum(Q * grid**2, axis=-1) - s * s, 0.0)


def logit_moments(Phi: np.ndarray, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance (n, K) of z = Wφ under mean-field q for ``Phi`` (n, b)."""
    return Phi @ s.T, (Phi * Phi) @ v.T


def kl_terms(theta: np.ndarray, log_prior: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Σ Q (log P − log Q) for θ (K, b, m): (value, its gradient wrt Q (the −1 dropped, it cancels
    through the softmax), Q)."""
    log_Q = log_softmax(theta)
    Q = np.exp(log_Q)
    terms = log_prior - log_Q
    return float(np.sum(Q * terms)), terms, Q


# ---- quadratic bounds: Böhning and Jaakkola–Jordan ------------------------------------------------


@dataclass(frozen=True)
class QuadraticBound:
    """A lower bound on Σ_i log p(t_i | z_i) that is quadratic in W:

        B(W) = constant + Σ_k w_kᵀ h_k − ½ Σ_i z_iᵀ A z_i,

    with the curvature folded into ``gram`` = Σ_i φ_i φ_iᵀ (Böhning: A fixed, ΦᵀΦ; Jaakkola–Jordan:
    A = [[1]], Φᵀ diag(2λ) Φ).  Its expectation under mean-field q is exact (:func:`quadratic_elbo`).

    ``gram``: (b, b) float64, symmetric; ``phi_target``: (K, b) the h_k; ``curvature``: (K, K) A;
    ``constant``: float (nats); ``n``: rows.
    """

    n: int
    gram: np.ndarray
    phi_target: np.ndarray
    curvature: np.ndarray
    constant: float

    @property
    def gram_diag(self) -> np.ndarray:
        return np.diag(self.gram)


def quadratic_expected_log_lik(bound: QuadraticBound, s: np.ndarray, v: np.ndarray) -> float:
    """E_q B(W) for weight means ``s`` and variances ``v`` (K, b) (mean-field: z_ik independent over k):

    constant + Σ_k s_kᵀh_k − ½ [Σ_kk' A_kk' s_kᵀ G s_k' + Σ_k A_kk gᵀ v_k]."""
    A, G = bound.curvature, bound.gram
    quad = np.sum((A @ (s @ G)) * s) + np.diag(A) @ (v @ bound.gram_diag)
    return float(bound.constant + np.sum(s * bound.phi_target) - 0.5 * quad)


def quadratic_elbo(
    bound: QuadraticBound, theta: np.ndarray, grid: np.ndarray, log_prior: np.ndarray
) -> tuple[float, np.ndarray]:
    """E_q B(W) + Σ Q (log P − log Q) and its gradient wrt θ (K, b, m).

    Cost O(K·b² + K·b·m), independent of n.  Gradient (with A symmetric, g = diag G):
    ∂/∂Q_kjl = W_jl (h_kj − Σ_k' A_kk' (G s_k')_j + A_kk g_j s_kj) − ½ A_kk g_j W_jl² + log P_jl − log Q_kjl.
    """
    kl, kl_grad, Q = kl_terms(theta, log_prior)
    s = np.sum(Q * grid, axis=-1)
    t = np.sum(Q * grid**2, axis=-1)
    A, g = bound.curvature, bound.gram_diag
    a = np.diag(A)[:, None]
    AGs = A @ (s @ bound.gram)  # (K, b); G symmetric
    quad = np.sum(AGs * s) + np.sum(a * (t - s * s) * g)
    value = bound.constant + float(np.sum(s * bound.phi_target)) - 0.5 * quad + kl
    d_s = bound.phi_target - AGs + a * g * s
    d_t = -0.5 * a * g
    dQ = d_s[..., None] * grid + d_t[..., None] * grid**2 + kl_grad
    return float(value), softmax_backward(Q, dQ)


@dataclass
class BoundTerms:
    """The data-dependent terms of a quadratic bound, summed over rows; terms of disjoint row sets
    add (``+``), like :class:`SufficientStatistics`.  ``gram`` is None for Böhning (ΦᵀΦ is fixed and
    computed once by the statistics pass)."""

    n: int
    phi_target: np.ndarray
    constant: float
    gram: np.ndarray | None = None

    def __add__(self, other: BoundTerms) -> BoundTerms:
        if not isinstance(other, BoundTerms):
            return NotImplemented
        gram = None if self.gram is None else self.gram + other.gram
        return BoundTerms(
            self.n + other.n, self.phi_target + other.phi_target, self.constant + other.constant, gram
        )


def boehning_terms(Phi: np.ndarray, labels: np.ndarray, Psi: np.ndarray) -> BoundTerms:
    """One block of Böhning's bound around the points ``Psi`` (n, K) (any ψ_i gives a bound; the best
    for a fixed q is ψ_i = E_q z_i, where the derivative in ψ, (A − ∇²lse(ψ))(E z − ψ), vanishes).

    ``Phi``: (n, b) features, ``labels``: (n,) class indices.  Returns H = Φᵀ(T − P(Ψ) + ΨA) as (K, b)
    and Σ_i [−lse(ψ_i) + p(ψ_i)ᵀψ_i − ½ψ_iᵀAψ_i] (binary: lse(ψ) = softplus(ψ), p = σ(ψ)).  O(n·b·K)."""
    K = Psi.shape[1]
    A = boehning_curvature(K)
    T = one_hot(labels, K)
    if K == 1:
        lse = softplus(Psi[:, 0])
        P = sigmoid(Psi)
    else:
        lse = logsumexp(Psi, axis=1)
        P = np.exp(Psi - lse[:, None])
    PsiA = Psi @ A
    constant = float(np.sum(-lse + np.sum(P * Psi, axis=1) - 0.5 * np.sum(PsiA * Psi, axis=1)))
    return BoundTerms(int(Phi.shape[0]), (T - P + PsiA).T @ Phi, constant)


def jj_terms(Phi: np.ndarray, labels: np.ndarray, xi: np.ndarray) -> BoundTerms:
    """One block of the Jaakkola–Jordan bound (binary, K = 1) around the points ``xi`` (n,) (any ξ_i
    gives a bound; the best for a fixed q is ξ_i² = E_q z_i²).  Returns h = Φᵀ(ỹ/2) as (1, b), the
    weighted Gram Φᵀ diag(2λ(ξ)) Φ and Σ_i [log σ(ξ_i) − ξ_i/2 + λ_i ξ_i²].  O(n·b²)."""
    lam = jj_lambda(xi)
    y_pm = 2.0 * labels - 1.0
    constant = float(np.sum(-softplus(-xi) - 0.5 * xi + lam * xi * xi))
    gram = (Phi * (2.0 * lam)[:, None]).T @ Phi
    return BoundTerms(int(Phi.shape[0]), (0.5 * y_pm @ Phi)[None, :], constant, gram)


def quadratic_bound(
    kind: str, gram: np.ndarray, blocks: Iterable[tuple[np.ndarray, np.ndarray]], s: np.ndarray, v: np.ndarray
) -> QuadraticBound:
    """The tightest bound of ``kind`` ("boehning" or "jj") for the current q (moments ``s``, ``v``
    (K, b)), from one pass over ``blocks`` of (Phi (k, b), labels (k,)).  ``gram``: ΦᵀΦ (b, b), used by
    Böhning only.  Raises DataError for "jj" with K > 1 or for no rows."""
    K = s.shape[0]
    if kind == "jj" and K != 1:
        raise DataError("the Jaakkola-Jordan bound is for binary classification (one output)")
    terms = None
    for Phi, labels in blocks:
        mean, var = logit_moments(Phi, s, v)
        if kind == "boehning":
            part = boehning_terms(Phi, labels, mean)
        else:
            part = jj_terms(Phi, labels, np.sqrt(mean[:, 0] ** 2 + var[:, 0]))
        terms = part if terms is None else terms + part
    if terms is None:
        raise DataError("no rows to bound")
    if kind == "boehning":
        return QuadraticBound(terms.n, gram, terms.phi_target, boehning_curvature(K), terms.constant)
    return QuadraticBound(terms.n, terms.gram, terms.phi_target, np.ones((1, 1)), terms.constant)


# ---- the paper's bound and its Jensen form ---------------------------------------------------------


def _softmax_bound_terms(L: np.ndarray, labels: np.ndarray, kind: str):
    """Per-row bound f (r,) and its weights ω, β (r, K) from L (r, K), the log of each wrong class's
    factor (the true class's entry is set to −inf here): "exp" sums −exp(L); "jensen" is −log(1 + Σ exp L),
    evaluated stably.  β holds Σ_k ω at the true class, the weight of its own factor."""
    idx = np.arange(L.shape[0])
    L[idx, labels] = -np.inf
    if kind == "exp":
        omega = -np.exp(L)
        f = omega.sum(axis=1)
    else:
        top = np.maximum(L.max(axis=1), 0.0)
        lse = top + np.log(np.exp(-top) + np.exp(L - top[:, None]).sum(axis=1))
        f = -lse
        omega = -np.exp(L - lse[:, None])
    beta = np.zeros_like(omega)
    beta[idx, labels] = omega.sum(axis=1)
    return f, omega, beta


def _row_blocks(n: int, per_row: int) -> Iterator[slice]:
    rows = max(1, _BLOCK_ENTRIES // max(per_row, 1))
    for a in range(0, n, rows):
        yield slice(a, min(a + rows, n))


def exp_bound_log_lik(
    Phi: np.ndarray, labels: np.ndarray, theta: np.ndarray, grid: np.ndarray, kind: str = "exp"
) -> tuple[float, np.ndarray]:
    """E_q of the paper's bound (``kind`` "exp") or of its Jensen form ("jensen"), and its gradient
    wrt θ (K, b, m).  ``Phi``: (n, b); ``labels``: (n,) class indices (0/1 for K = 1).

    With L_ik = log E_q exp(z_ik − z_it) = Σ_j [log M⁺_ijk + log M⁻_ijt], M^±_ijk = Σ_l Q_kjl exp(±Φ_ij W_jl)
    (binary: L_i = Σ_j log Σ_l Q_jl exp(−ỹ_i Φ_ij W_jl)), the value is −Σ_i Σ_{k≠t} exp(L_ik) ("exp") or
    −Σ_i log(1 + Σ_{k≠t} exp(L_ik)) ("jensen").  Exact expectations; O(n·b·m·K) time, computed in row
    blocks of bounded memory.  ∂ log M_ijk/∂θ_kjl = r_ijkl − Q_kjl with r the tilted distribution
    Q_kjl exp(±Φ_ij W_jl)/M_ijk.
    """
    if kind not in ("exp", "jensen"):
        raise DataError(f"kind must be 'exp' or 'jensen', got {kind!r}")
    log_Q = log_softmax(theta)
    Q = np.exp(log_Q)
    K, b, m = theta.shape
    labels = check_labels(labels, K)
    value = 0.0
    grad = np.zeros_like(theta)
    n = Phi.shape[0]
    if K == 1:
        sign = 1.0 - 2.0 * labels  # −ỹ
        for rows in _row_blocks(n, b * m):
            C = (sign[rows, None] * Phi[rows])[:, :, None] * grid  # (r, b, m)
            E = log_Q[0] + C
            log_M = logsumexp(E, axis=-1)  # (r, b)
            L = log_M.sum(axis=1)
            if kind == "exp":
                f, df = -np.exp(L), -np.exp(L)
            else:
                f, df = -softplus(L), -sigmoid(L)
            value += float(f.sum())
            tilted = np.exp(E - log_M[..., None])
            grad[0] += np.einsum("i,ijl->jl", df, tilted) - df.sum() * Q[0]
        return value, grad
    for rows in _row_blocks(n, 2 * K * b * m):
        P = Phi[rows]  # (r, b)
        t = labels[rows]
        C = P[:, None, :, None] * grid  # (r, 1, b, m)
        E_pos = log_Q + C  # (r, K, b, m)
        E_neg = log_Q - C
        log_pos = logsumexp(E_pos, axis=-1)  # (r, K, b)
        log_neg = logsumexp(E_neg, axis=-1)
        idx = np.arange(P.shape[0])
        L = log_pos.sum(axis=-1) + log_neg.sum(axis=-1)[idx, t][:, None]  # (r, K)
        f, omega, beta = _softmax_bound_terms(L, t, kind)
        value += float(f.sum())
        grad += np.einsum("ik,ikjl->kjl", omega, np.exp(E_pos - log_pos[..., None]))
        grad += np.einsum("ik,ikjl->kjl", beta, np.exp(E_neg - log_neg[..., None]))
        grad -= (omega.sum(axis=0) + beta.sum(axis=0))[:, None, None] * Q
    return value, grad


def exp_bound_elbo(
    Phi: np.ndarray,
    labels: np.ndarray,
    theta: np.ndarray,
    grid: np.ndarray,
    log_prior: np.ndarray,
    kind: str = "exp",
) -> tuple[float, np.ndarray]:
    """ELBO on the bound of :func:`exp_bound_log_lik` plus Σ Q (log P − log Q), and its gradient
    wrt θ (K, b, m)."""
    value, grad = exp_bound_log_lik(Phi, labels, theta, grid, kind)
    kl, kl_grad, Q = kl_terms(theta, log_prior)
    return value + kl, grad + softmax_backward(Q, kl_grad)


# ---- the same bounds from precomputed tilts (the fast path) -----------------------------------------

# Largest |Φ_ij W_jl| for which the tilts exp(±Φ_ij W_jl) are formed directly (exp(300) ≈ 2e130).
_TILT_LIMIT = 300.0


@dataclass(frozen=True)
class Tilts:
    """exp(±Φ_ij W_jl) of a block of rows, laid out (b, n, m) so that the per-weight moment generating
    functions M^±_ijk = Σ_l Q_kjl exp(±Φ_ij W_jl) are one batched matrix product (b, n, m)·(b, m, K).
    They do not depend on q, so a fit computes them once (memory 2·n·b·m float64)."""

    pos: np.ndarray
    neg: np.ndarray

    @classmethod
    def build(cls, Phi: np.ndarray, grid: np.ndarray) -> Tilts | None:
        """Tilts of ``Phi`` (n, b) on ``grid`` (b, m), or None where some |Φ_ij W_jl| exceeds
        ``_TILT_LIMIT`` (then :func:`exp_bound_log_lik` works in log space instead)."""
        C = Phi.T[:, :, None] * grid[:, None, :]  # (b, n, m)
        if not np.max(np.abs(C), initial=0.0) <= _TILT_LIMIT:
            return None
        return cls(np.exp(C), np.exp(-C))


def tilted_bound_log_lik(
    tilts: Tilts, labels: np.ndarray, theta: np.ndarray, kind: str = "exp"
) -> tuple[float, np.ndarray]:
    """:func:`exp_bound_log_lik` from precomputed :class:`Tilts` (same value and gradient wrt θ, to
    rounding): M^± by batched products instead of a log-sum-exp per (row, weight, output).  The
    gradient wrt Q is Σ_i ω_ik exp(Φ_ij W_jl)/M⁺_ijk + Σ_i β_ik exp(−Φ_ij W_jl)/M⁻_ijk, with ω the
    derivative of the bound in L_ik and β_it = Σ_k ω_ik at the label t."""
    if kind not in ("exp", "jensen"):
        raise DataError(f"kind must be 'exp' or 'jensen', got {kind!r}")
    Q = np.exp(log_softmax(theta))
    K = theta.shape[0]
    labels = check_labels(labels, K)
    Qt = Q.transpose(1, 2, 0)  # (b, m, K)
    M_pos = np.matmul(tilts.pos, Qt)  # (b, n, K)
    M_neg = np.matmul(tilts.neg, Qt)
    idx = np.arange(labels.shape[0])
    if K == 1:
        neg_label = labels == 0  # −ỹ = +1: exp(+z)
        L = np.where(neg_label, np.log(M_pos[:, :, 0]).sum(axis=0), np.log(M_neg[:, :, 0]).sum(axis=0))
        if kind == "exp":
            f, omega = -np.exp(L), -np.exp(L)
        else:
            f, omega = -softplus(L), -sigmoid(L)
        w_pos = np.where(neg_label, omega, 0.0)[None, :, None] / M_pos  # (b, n, 1)
        w_neg = np.where(neg_label, 0.0, omega)[None, :, None] / M_neg
    else:
        A = np.log(M_pos).sum(axis=0)  # (n, K)
        B = np.log(M_neg).sum(axis=0)
        L = A + B[idx, labels][:, None]
        f, omega, beta = _softmax_bound_terms(L, labels, kind)
        w_pos = omega[None] / M_pos  # (b, n, K)
        w_neg = beta[None] / M_neg
    dQ = np.matmul(w_pos.transpose(0, 2, 1), tilts.pos) + np.matmul(w_neg.transpose(0, 2, 1), tilts.neg)
    return float(f.sum()), softmax_backward(Q, dQ.transpose(1, 0, 2))


# ---- a continuous Gaussian approximation: each weight's size in logit units -------------------------

# Outer passes (re-expansions of Böhning's bound at the current mean) of the Gaussian approximation, its
# relative stopping tolerance on the prior precision and the mean, and MacKay steps per pass.
GAUSSIAN_PASSES = 100
GAUSSIAN_TOL = 1e-8
GAUSSIAN_PRIOR_STEPS = 50
# Smallest per-feature gain relative to the largest: a feature whose weights' means are below it is
# given a grid of (almost) zeros, i.e. dropped, rather than a grid far finer than the device needs.
MIN_GAIN = 2.0**-10


@dataclass(frozen=True)
class GaussianApproximation:
    """The Gaussian posterior N(``mean``, ``var`` on its diagonal) of continuous weights W (K, b) under
    the prior N(0, ``prior_var``·I) and Böhning's bound expanded at its own mean, ``prior_var`` chosen
    by that surrogate's evidence.  ``mean``, ``var``: (K, b) float64 in logit units; ``prior_var``:
    float; ``passes``: outer passes run."""

    mean: np.ndarray
    var: np.ndarray
    prior_var: float
    passes: int

    @property
    def mean_size(self) -> np.ndarray:
        """(b,) (mean_k μ_kj²)^½: feature j's weight size under the posterior mean, in logit units (the
        K outputs share a grid row, so they share its size)."""
        return np.sqrt(np.mean(self.mean**2, axis=0))

    def grid_gains(self) -> tuple[np.ndarray, float]:
        """Per-feature gains g_j = size_j / max size (b,) in [``MIN_GAIN``, 1] (before the device's
        2^-15 rounding) and the largest size (logit units; 1 where every mean is 0)."""
        return gains_from_sizes(self.mean_size, MIN_GAIN)


def gaussian_approximation(
    gram: np.ndarray, blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], n_outputs: int
) -> GaussianApproximation:
    """Böhning's bound as a Gaussian likelihood for continuous weights (docs/trainer.md §11, per-feature
    grids).  For a fixed expansion Ψ the bound is quadratic in W, so with the prior N(0, λ⁻¹I) the
    posterior is Gaussian with precision λI + A⊗G and mean (λI + A⊗G)⁻¹ vec H, H = Φᵀ(T − P(Ψ) + ΨA)
    (K, b).  With G = U diag(e) Uᵀ and A = V diag(a) Vᵀ the precision is diagonal in the basis V⊗U,
    so each step costs O(K·b² + K²·b) after one eigendecomposition.  λ follows MacKay's update on the
    surrogate's evidence (γ = Σ a_k e_j / (λ + a_k e_j), λ = γ / |μ|²; Bishop, PRML §3.5.2); each
    outer pass puts Ψ at Φμ (one pass over the rows) until λ and μ move by less than ``GAUSSIAN_TOL``
    relative, or after ``GAUSSIAN_PASSES`` passes (the bound's majorisation steps converge linearly).
    Softmax ignores adding one vector to every output; that direction (A's null vector) has H = 0 and
    so mean 0.

    ``gram``: ΦᵀΦ (b, b) float64; ``blocks``: a callable returning a fresh iterable of (Φ (k, b)
    float64, labels (k,) integer class indices) per pass; ``n_outputs``: K (1 for two classes).
    Raises DataError for no rows; ``numpy.linalg.LinAlgError`` only if an eigendecomposition does."""
    K = int(n_outputs)
    e, U = np.linalg.eigh(0.5 * (gram + gram.T))
    e = np.maximum(e, 0.0)
    a, V = np.linalg.eigh(boehning_curvature(K))
    a = np.maximum(a, 0.0)
    curv = a[:, None] * e[None, :]  # (K, b): the likelihood's precision in the V⊗U basis
    lam = 1.0
    mean = np.zeros((K, gram.shape[0]))
    passes = 0
    while passes < GAUSSIAN_PASSES:
        passes += 1
        terms = None
        for Phi, labels in blocks():
            part = boehning_terms(Phi, labels, Phi @ mean.T)
            terms = part if terms is None else terms + part
        if terms is None:
            raise DataError("no rows to approximate")
        H = V.T @ terms.phi_target @ U  # (K, b) in the eigenbasis
        lam_before, mean_before = lam, mean
        for _ in range(GAUSSIAN_PRIOR_STEPS):
            gamma = float(np.sum(curv / (lam + curv)))
            new_lam = max(gamma, 1e-12) / max(float(np.sum((H / (lam + curv)) ** 2)), 1e-300)
            done = abs(new_lam - lam) <= GAUSSIAN_TOL * lam
            lam = new_lam
            if done:
                break
        mean = V @ (H / (lam + curv)) @ U.T
        step = float(np.max(np.abs(mean - mean_before), initial=0.0))
        if (
            step <= GAUSSIAN_TOL * float(np.max(np.abs(mean), initial=0.0))
            and abs(lam - lam_before) <= GAUSSIAN_TOL * lam
        ):
            break
    var = (V * V) @ (1.0 / (lam + curv)) @ (U * U).T
    return GaussianApproximation(mean, var, 1.0 / lam, passes)
