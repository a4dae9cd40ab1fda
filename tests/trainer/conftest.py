"""Brute-force oracles for the trainer numerics tests.

Tiny models (b weights, m levels, K noise levels) small enough to enumerate every weight configuration
(m^b of them) and every noise level, so expectations under q are plain weighted sums over the whole
hypothesis space.  Everything here works from (Phi, y) directly, never from the sufficient statistics,
so it is an independent check of the closed forms in direct_edge.trainer.elbo and .posterior.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import logsumexp

from direct_edge.trainer.features import FeatureMap
from direct_edge.trainer.grid import WeightGrid, prior_log_probs
from direct_edge.trainer.model import DirectGLM


def configurations(b: int, m: int) -> np.ndarray:
    """(m^b, b) int array: every assignment of a grid index to each of b weights."""
    return np.array(list(itertools.product(range(m), repeat=b)), dtype=np.int64)


def config_values(grid: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Weight vectors (N, b) of the index configurations ``idx`` on a (b, m) grid."""
    return np.take_along_axis(grid, idx.T, axis=1).T


def log_q_configs(log_Q: np.ndarray, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """log q(w) of each configuration under the mixture Σ_k α_k Π_i Q_k,i,w_i; ``log_Q`` (r, b, m)."""
    b = log_Q.shape[1]
    comp = log_Q[:, np.arange(b)[None, :], idx].sum(axis=-1)  # (r, N)
    return logsumexp(comp + log_alpha[:, None], axis=0)


def log_lik_table(Phi: np.ndarray, y: np.ndarray, W: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(N, K) log N(y; Φw, σ²_k I) for every configuration (rows of W) and noise level."""
    n = y.shape[0]
    rss = np.sum((y[None, :] - W @ Phi.T) ** 2, axis=1)  # (N,)
    return -0.5 * n * np.log(2 * np.pi * noise)[None, :] - 0.5 * rss[:, None] / noise[None, :]


def exact_elbo_parts(
    Phi: np.ndarray,
    y: np.ndarray,
    grid: np.ndarray,
    log_prior: np.ndarray,
    noise: np.ndarray,
    log_noise_prior: np.ndarray,
    log_Q: np.ndarray,
    log_alpha: np.ndarray,
    log_rho: np.ndarray,
) -> dict[str, float]:
    """The ELBO of q(w)·q(σ²) by enumeration, split into its parts.

    ``log_Q``: (r, b, m) (r = 1 for mean-field), ``log_alpha``: (r,), ``log_rho``: (K,) (entries may be
    -inf for a noise distribution with zeros).  Returns the expected log likelihood + log prior terms
    (``lik_prior``, including the noise prior and noise entropy), the weight entropy term Σ q log q
    (``q_log_q``) and the ELBO = lik_prior − q_log_q.
    """
    b, m = grid.shape
    idx = configurations(b, m)
    W = config_values(grid, idx)
    lq = log_q_configs(log_Q, log_alpha, idx)
    q = np.exp(lq)
    rho = np.exp(log_rho)
    ll = log_lik_table(Phi, y, W, noise)
    log_pw = log_prior[np.arange(b)[None, :], idx].sum(axis=1)
    with np.errstate(invalid="ignore"):
        noise_terms = np.where(rho > 0, log_noise_prior - log_rho, 0.0)
    lik_prior = float(q @ (ll @ rho) + q @ log_pw + rho @ noise_terms)
    q_log_q = float(np.sum(np.where(q > 0, q * np.where(q > 0, lq, 0.0), 0.0)))  # 0 log 0 = 0
    return {
        "lik_prior": lik_prior,
        "q_log_q": q_log_q,
        "elbo": lik_prior - q_log_q,
        "q_total": float(q.sum()),
    }


def predictive_moments(
    grid: np.ndarray,
    Q: np.ndarray,
    alpha: np.ndarray,
    noise: np.ndarray,
    rho: np.ndarray,
    Phi_test: np.ndarray,
    include_noise: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance of f* = φ*ᵀw (+ ε) by enumerating q(w); ``Q`` (r, b, m)."""
    b, m = grid.shape
    idx = configurations(b, m)
    W = config_values(grid, idx)
    q = np.exp(log_q_configs(np.log(Q), np.log(alpha), idx))
    f = W @ Phi_test.T  # (N, n)
    mean = q @ f
    var = q @ (f - mean) ** 2
    if include_noise:
        var = var + rho @ noise
    return mean, var


def random_softmax_logits(
    rng: np.random.Generator, shape: tuple[int, ...], spread: float = 1.5
) -> np.ndarray:
    return spread * rng.standard_normal(shape)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x - logsumexp(x, axis=axis, keepdims=True)


def tiny_grid(kind: str, b: int, rng: np.random.Generator) -> np.ndarray:
    """(b, m) grid values of one of the grid families used across the tests."""
    if kind == "per-weight":
        # Distinct random levels per weight, one of them exactly 0 (so the sparse prior applies).
        rows = []
        for _ in range(b):
            v = np.sort(rng.uniform(-1.5, 1.5, 4))
            rows.append(np.sort(np.append(v, 0.0)))
        return np.array(rows)
    if kind == "bits2-sym":
        return np.broadcast_to(WeightGrid.from_bits(2, 0.7).values, (b, 3)).copy()
    if kind == "bits2-asym":
        return np.broadcast_to(WeightGrid.from_bits(2, 0.4, symmetric=False).values, (b, 4)).copy()
    if kind == "bits3-sym":
        return np.broadcast_to(WeightGrid.from_bits(3, 0.3).values, (b, 7)).copy()
    if kind == "bits3-asym":
        return np.broadcast_to(WeightGrid.from_bits(3, 0.25, symmetric=False).values, (b, 8)).copy()
    raise ValueError(kind)


def tiny_problem_data(grid_kind: str, prior_kind: str, b: int, n: int, K: int, seed: int) -> SimpleNamespace:
    """A random tiny regression problem: Phi (n, b), y (n,), grid (b, m), priors, noise grid (K,)."""
    rng = np.random.default_rng(seed)
    grid = tiny_grid(grid_kind, b, rng)
    Phi = rng.standard_normal((n, b))
    y = Phi @ rng.uniform(-1, 1, b) + 0.5 * rng.standard_normal(n)
    log_prior = prior_log_probs(grid, prior_kind, scale=0.8, zero_mass=0.3)
    noise = np.sort(rng.uniform(0.2, 2.0, K))
    log_noise_prior = log_softmax(rng.standard_normal(K))
    return SimpleNamespace(
        rng=rng, Phi=Phi, y=y, grid=grid, log_prior=log_prior, noise=noise, log_noise_prior=log_noise_prior
    )


def tiny_glm(
    grid_kind: str = "bits2-asym",
    prior_kind: str = "gaussian",
    b: int = 3,
    n: int = 10,
    K: int = 3,
    seed: int = 0,
    family: str = "mean-field",
    r: int = 2,
    **options,
) -> tuple[DirectGLM, SimpleNamespace]:
    """A DirectGLM on :func:`tiny_problem_data` (``options`` go to DirectGLM), and that data."""
    data = tiny_problem_data(grid_kind, prior_kind, b, n=n, K=K, seed=seed)
    glm = DirectGLM(
        data.Phi,
        data.y,
        grid=data.grid,
        log_prior=data.log_prior,
        noise_grid=data.noise,
        log_noise_prior=data.log_noise_prior,
        family=family,
        n_components=r,
        **options,
    )
    return glm, data


def data_elbo_parts(
    data: SimpleNamespace, log_Q: np.ndarray, log_alpha: np.ndarray, log_rho: np.ndarray
) -> dict:
    """:func:`exact_elbo_parts` of q on a :func:`tiny_problem_data` problem."""
    return exact_elbo_parts(
        data.Phi,
        data.y,
        data.grid,
        data.log_prior,
        data.noise,
        data.log_noise_prior,
        log_Q,
        log_alpha,
        log_rho,
    )


# (grid family, prior kind, b): every case has m^b <= 4096 configurations.
TINY_CASES = [
    ("per-weight", "uniform", 4),
    ("per-weight", "gaussian", 3),
    ("per-weight", "sparse", 4),
    ("bits2-sym", "uniform", 4),
    ("bits2-sym", "sparse", 3),
    ("bits2-asym", "gaussian", 4),
    ("bits3-sym", "gaussian", 3),
    ("bits3-asym", "sparse", 3),
    ("bits3-asym", "uniform", 2),
]


@pytest.fixture
def brute() -> SimpleNamespace:
    """The enumeration oracles of this module, as one namespace."""
    return SimpleNamespace(
        configurations=configurations,
        config_values=config_values,
        log_q_configs=log_q_configs,
        log_lik_table=log_lik_table,
        exact_elbo_parts=exact_elbo_parts,
        predictive_moments=predictive_moments,
        random_logits=random_softmax_logits,
        log_softmax=log_softmax,
        tiny_problem_data=tiny_problem_data,
        tiny_glm=tiny_glm,
        data_elbo_parts=data_elbo_parts,
        tiny_cases=TINY_CASES,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``tiny_case`` run once per (grid family, prior kind, b) in TINY_CASES."""
    if "tiny_case" in metafunc.fixturenames:
        metafunc.parametrize("tiny_case", TINY_CASES, ids=[f"{g}-{p}-b{b}" for g, p, b in TINY_CASES])


@pytest.fixture(scope="module")
def linear_problem():
    """A well-posed regression: 5 standardised inputs plus a bias (b = 6), n = 500."""
    rng = np.random.default_rng(0)
    n, d = 500, 5
    X = rng.standard_normal((n, d))
    y = X @ np.array([0.8, -0.5, 0.3, 0.0, 0.1]) + 0.2 + 0.3 * rng.standard_normal(n)
    Phi = FeatureMap.linear(X.mean(axis=0), X.std(axis=0)).transform(X)
    grid = WeightGrid.from_bits(4, 0.1)
    return Phi, y, grid, prior_log_probs(grid.values, "gaussian", 0.5)
