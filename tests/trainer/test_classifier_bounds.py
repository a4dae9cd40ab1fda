"""Classification bounds (trainer/classification_elbo.py) against brute force on tiny models.

Every weight configuration of K outputs × b weights on m levels is enumerated (m^(K·b) ≤ 729), so
E_q of any function of W is a plain weighted sum: each bound's closed form is checked against the
enumerated expectation of its pointwise form, and against the exact expected log-likelihood.
"""

import itertools

import numpy as np
import pytest
from scipy.special import log_expit, logsumexp

from direct_edge.trainer import classification_elbo as C
from direct_edge.trainer import elbo as E
from direct_edge.trainer.grid import WeightGrid, prior_log_probs

# (K outputs, b weights, bits): K = 1 is the binary (logistic) model.
CASES = [(1, 3, 3), (1, 2, 3), (3, 2, 2), (4, 1, 3)]


def tiny(K, b, bits, seed=0, n=7, spread=1.0):
    rng = np.random.default_rng(seed)
    grid = np.broadcast_to(WeightGrid.from_bits(bits, 0.6).values, (b, 2 ** (bits - 1) * 2 - 1)).copy()
    log_prior = prior_log_probs(grid, "gaussian", 0.8)
    Phi = rng.standard_normal((n, b))
    labels = rng.integers(0, 2 if K == 1 else K, n)
    theta = spread * rng.standard_normal((K, b, grid.shape[1]))
    return Phi, labels, grid, log_prior, theta, rng


def enumerate_q(theta, grid):
    """(N, K, b) weight values of every configuration and (N,) their probabilities under q."""
    K, b, m = theta.shape
    idx = np.array(list(itertools.product(range(m), repeat=K * b))).reshape(-1, K, b)
    W = grid[np.arange(b), idx]  # (N, K, b)
    log_Q = theta - logsumexp(theta, axis=-1, keepdims=True)
    lq = log_Q[np.arange(K)[:, None], np.arange(b)[None, :], idx].sum(axis=(1, 2))
    return W, np.exp(lq)


def logits(W, Phi):
    return np.einsum("Nkb,nb->Nnk", W, Phi)  # (N, n, K)


def exact_log_lik(z, labels):
    """(N,) Σ_i log p(t_i | z_i) per configuration."""
    n = labels.shape[0]
    if z.shape[-1] == 1:
        return log_expit((2.0 * labels - 1.0) * z[..., 0]).sum(axis=1)
    return (z[:, np.arange(n), labels] - logsumexp(z, axis=-1)).sum(axis=1)


def contrasts(z, labels):
    """(N, n, K') the exponents whose exp the paper's bound sums: −ỹz (binary), z_k − z_t (k ≠ t)."""
    n = labels.shape[0]
    if z.shape[-1] == 1:
        return -((2.0 * labels - 1.0) * z[..., 0])[..., None]
    d = z - z[:, np.arange(n), labels][..., None]
    d[:, np.arange(n), labels] = -np.inf
    return d


def pointwise_boehning(z, labels, Psi):
    K = z.shape[-1]
    A = C.boehning_curvature(K)
    T = C.one_hot(labels, K)
    if K == 1:
        lse, P = np.logaddexp(0, Psi[:, 0]), 1 / (1 + np.exp(-Psi))
    else:
        lse = logsumexp(Psi, axis=1)
        P = np.exp(Psi - lse[:, None])
    zt = z - Psi
    lin = np.einsum("Nnk,nk->Nn", z, T) - lse - np.einsum("nk,Nnk->Nn", P, zt)
    return (lin - 0.5 * np.einsum("Nnk,kl,Nnl->Nn", zt, A, zt)).sum(axis=1)


def pointwise_jj(z, labels, xi):
    x = (2.0 * labels - 1.0) * z[..., 0]
    lam = C.jj_lambda(xi)
    return (log_expit(xi) + (x - xi) / 2 - lam * (x * x - xi * xi)).sum(axis=1)


@pytest.mark.parametrize("K,b,bits", CASES)
def test_each_bound_is_exact_in_expectation_and_below_the_expected_log_likelihood(K, b, bits):
    Phi, labels, grid, _, theta, rng = tiny(K, b, bits)
    W, q = enumerate_q(theta, grid)
    z = logits(W, Phi)
    exact = q @ exact_log_lik(z, labels)
    s, v = C.weight_moments(grid, np.exp(E.log_softmax(theta)))

    paper, _ = C.exp_bound_log_lik(Phi, labels, theta, grid, "exp")
    pointwise_paper = -np.exp(contrasts(z, labels)).sum(axis=(1, 2))
    assert paper == pytest.approx(q @ pointwise_paper, rel=1e-10)
    assert np.all(pointwise_paper <= exact_log_lik(z, labels) + 1e-12)

    jensen, _ = C.exp_bound_log_lik(Phi, labels, theta, grid, "jensen")
    mgf = np.einsum("N,Nnk->nk", q, np.exp(contrasts(z, labels)))  # E exp(z_k − z_t) per row
    assert jensen == pytest.approx(-np.log1p(mgf.sum(axis=1)).sum(), rel=1e-10)

    # Quadratic bounds hold at any expansion point; the closed form is their exact expectation.
    mean, var = C.logit_moments(Phi, s, v)
    for Psi in (mean, mean + rng.standard_normal(mean.shape)):
        bound = C.quadratic_bound("boehning", Phi.T @ Phi, [(Phi, labels)], s, v)
        if Psi is not mean:
            terms = C.boehning_terms(Phi, labels, Psi)
            bound = C.QuadraticBound(terms.n, Phi.T @ Phi, terms.phi_target, bound.curvature, terms.constant)
        pointwise = pointwise_boehning(z, labels, Psi)
        assert C.quadratic_expected_log_lik(bound, s, v) == pytest.approx(q @ pointwise, rel=1e-10)
        assert np.all(pointwise <= exact_log_lik(z, labels) + 1e-12)
    boehning = C.quadratic_expected_log_lik(
        C.quadratic_bound("boehning", Phi.T @ Phi, [(Phi, labels)], s, v), s, v
    )

    assert paper <= jensen <= exact
    assert boehning <= exact
    if K == 1:
        for xi in (np.sqrt(mean[:, 0] ** 2 + var[:, 0]), np.abs(rng.standard_normal(Phi.shape[0]))):
            terms = C.jj_terms(Phi, labels, xi)
            bound = C.QuadraticBound(terms.n, terms.gram, terms.phi_target, np.ones((1, 1)), terms.constant)
            pointwise = pointwise_jj(z, labels, xi)
            assert C.quadratic_expected_log_lik(bound, s, v) == pytest.approx(q @ pointwise, rel=1e-10)
            assert np.all(pointwise <= exact_log_lik(z, labels) + 1e-12)
        jj = C.quadratic_expected_log_lik(C.quadratic_bound("jj", None, [(Phi, labels)], s, v), s, v)
        assert boehning <= jj <= exact  # JJ's curvature adapts per row: never looser than 1/4


@pytest.mark.parametrize("K,b,bits", CASES)
def test_the_best_expansion_point_is_the_expected_logit(K, b, bits):
    Phi, labels, grid, _, theta, rng = tiny(K, b, bits, seed=1)
    s, v = C.weight_moments(grid, np.exp(E.log_softmax(theta)))
    G = Phi.T @ Phi
    best = C.quadratic_expected_log_lik(C.quadratic_bound("boehning", G, [(Phi, labels)], s, v), s, v)
    mean, _ = C.logit_moments(Phi, s, v)
    A = C.boehning_curvature(K)
    for _ in range(5):
        terms = C.boehning_terms(Phi, labels, mean + 0.3 * rng.standard_normal(mean.shape))
        other = C.QuadraticBound(terms.n, G, terms.phi_target, A, terms.constant)
        assert C.quadratic_expected_log_lik(other, s, v) < best


def finite_difference(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("K,b,bits", CASES)
@pytest.mark.parametrize("kind", C.BOUNDS)
def test_elbo_gradients_equal_finite_differences(K, b, bits, kind):
    if kind == "jj" and K != 1:
        pytest.skip("Jaakkola-Jordan is binary only")
    Phi, labels, grid, log_prior, theta, _ = tiny(K, b, bits, seed=2)
    if kind in C.QUADRATIC_BOUNDS:
        s, v = C.weight_moments(grid, np.exp(E.log_softmax(theta + 0.5)))  # expansion point of another q
        bound = C.quadratic_bound(kind, Phi.T @ Phi, [(Phi, labels)], s, v)

        def f(x):
            return C.quadratic_elbo(bound, x, grid, log_prior)
    else:

        def f(x):
            return C.exp_bound_elbo(Phi, labels, x, grid, log_prior, kind)

    value, grad = f(theta)
    numeric = finite_difference(lambda x: f(x)[0], theta)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * max(1.0, abs(value)))


@pytest.mark.parametrize("b,bits", [(3, 3), (2, 2)])
def test_elbo_enumeration_includes_the_kl_terms(b, bits):
    """ELBO = E_q bound + E_q log p(w) − E_q log q(w), all by enumeration."""
    Phi, labels, grid, log_prior, theta, _ = tiny(1, b, bits, seed=3)
    W, q = enumerate_q(theta, grid)
    idx = np.array(list(itertools.product(range(grid.shape[1]), repeat=b)))
    log_Q = theta[0] - logsumexp(theta[0], axis=-1, keepdims=True)
    lq = log_Q[np.arange(b), idx].sum(axis=1)
    lp = log_prior[np.arange(b), idx].sum(axis=1)
    paper = -np.exp(contrasts(logits(W, Phi), labels)).sum(axis=(1, 2))
    value, _ = C.exp_bound_elbo(Phi, labels, theta, grid, log_prior, "exp")
    assert value == pytest.approx(q @ (paper + lp - lq), rel=1e-10)


def test_binary_boehning_elbo_is_the_regression_elbo_of_the_working_response():
    """With K = 1 the Böhning ELBO is mean_field_elbo (trainer/elbo.py) on the pseudo-target
    ŷ = ψ + 4(t − σ(ψ)) with one noise level σ² = 4, plus a constant: the shared structure."""
    rng = np.random.default_rng(4)
    n, b = 40, 6
    Phi = rng.standard_normal((n, b))
    labels = rng.integers(0, 2, n)
    grid = np.broadcast_to(WeightGrid.from_bits(4, 0.2).values, (b, 15)).copy()
    log_prior = prior_log_probs(grid, "gaussian", 0.5)
    theta = rng.standard_normal((1, b, 15))
    psi = rng.standard_normal(n)
    terms = C.boehning_terms(Phi, labels, psi[:, None])
    bound = C.QuadraticBound(n, Phi.T @ Phi, terms.phi_target, C.boehning_curvature(1), terms.constant)
    value, grad = C.quadratic_elbo(bound, theta, grid, log_prior)

    y_hat = psi + 4.0 * (labels - 1.0 / (1.0 + np.exp(-psi)))
    G = Phi.T @ Phi
    problem = E.Problem(
        n,
        G,
        np.diag(G).copy(),
        Phi.T @ y_hat,
        float(y_hat @ y_hat),
        grid,
        log_prior,
        np.array([4.0]),
        np.zeros(1),
    )
    reg_value, reg_grad, _ = E.mean_field_elbo(problem, theta[0], np.zeros(1))
    c = -np.logaddexp(0, psi) + psi / (1 + np.exp(-psi)) - psi**2 / 8 + y_hat**2 / 8
    shift = 0.5 * n * np.log(8 * np.pi) + c.sum()
    assert value == pytest.approx(reg_value + shift, rel=1e-12)
    np.testing.assert_allclose(grad[0], reg_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind,K", [("boehning", 1), ("boehning", 4), ("jj", 1)])
def test_bound_terms_stream_and_merge(kind, K):
    """The data-dependent terms of disjoint row blocks add up to those of all rows."""
    rng = np.random.default_rng(5)
    n, b = 101, 5
    Phi = rng.standard_normal((n, b))
    labels = rng.integers(0, 2 if K == 1 else K, n)
    s, v = rng.standard_normal((K, b)), rng.uniform(0, 0.3, (K, b))
    whole = C.quadratic_bound(kind, Phi.T @ Phi, [(Phi, labels)], s, v)
    cuts = [0, 1, 30, 31, 77, n]
    blocks = [(Phi[a:c], labels[a:c]) for a, c in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = C.quadratic_bound(kind, Phi.T @ Phi, blocks, s, v)
    assert merged.n == whole.n == n
    np.testing.assert_allclose(merged.phi_target, whole.phi_target, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.gram, whole.gram, rtol=1e-12, atol=1e-12)
    assert merged.constant == pytest.approx(whole.constant, rel=1e-12)


def test_exp_bounds_agree_across_row_blocks(monkeypatch):
    """The paper's bound evaluated in several row blocks equals one block."""
    Phi, labels, grid, _, theta, _ = tiny(3, 2, 2, seed=6, n=50)
    one = C.exp_bound_log_lik(Phi, labels, theta, grid, "jensen")
    monkeypatch.setattr(C, "_BLOCK_ENTRIES", 2 * 3 * 2 * 3 * 7)  # 7 rows per block
    many = C.exp_bound_log_lik(Phi, labels, theta, grid, "jensen")
    assert many[0] == pytest.approx(one[0], rel=1e-12)
    np.testing.assert_allclose(many[1], one[1], rtol=1e-12, atol=1e-14)


def test_jj_lambda_is_continuous_at_zero():
    xi = np.array([0.0, 1e-8, 1e-6, 1e-5, 2.0, -2.0])
    lam = C.jj_lambda(xi)
    assert lam[0] == 0.125
    assert lam[1] == pytest.approx(0.125, rel=1e-12)
    assert lam[3] == pytest.approx(np.tanh(0.5e-5) / 4e-5, rel=1e-12)
    assert lam[4] == lam[5] == pytest.approx(np.tanh(1.0) / 8.0, rel=1e-15)


@pytest.mark.parametrize("K,b,bits", CASES)
@pytest.mark.parametrize("kind", ["exp", "jensen"])
def test_the_tilted_fast_path_equals_the_log_space_bound(K, b, bits, kind):
    Phi, labels, grid, _, theta, _ = tiny(K, b, bits, seed=7, n=30)
    value, grad = C.exp_bound_log_lik(Phi, labels, theta, grid, kind)
    fast_value, fast_grad = C.tilted_bound_log_lik(C.Tilts.build(Phi, grid), labels, theta, kind)
    assert fast_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(fast_grad, grad, rtol=1e-9, atol=1e-12)


def test_tilts_are_refused_where_they_would_overflow():
    grid = np.broadcast_to(WeightGrid.from_bits(4, 10.0).values, (2, 15))
    assert C.Tilts.build(np.array([[5.0, 0.1]]), grid) is None  # |Φ W| = 350
    assert C.Tilts.build(np.array([[4.0, 0.1]]), grid) is not None


# ---- the Gaussian approximation behind per-feature grids --------------------------------------------


@pytest.mark.parametrize("K", [1, 3])
def test_gaussian_approximation_is_the_map_of_the_penalised_likelihood_at_its_evidence_fixed_point(K):
    """At convergence Böhning's expansion point is the mean itself, so μ is the MAP of the exact
    log-likelihood with the L2 penalty λ/2·|W|²: λ μ_k = Φᵀ(t_k − p_k(Φμ)); and λ is MacKay's fixed
    point λ = γ/|μ|² on the surrogate; its diagonal variance is that of (λI + A⊗G)⁻¹, inverted densely."""
    rng = np.random.default_rng(4)
    n, b = 60, 4
    Phi = rng.standard_normal((n, b))
    W_true = rng.standard_normal((max(K, 2), b))
    z = Phi @ W_true.T
    labels = np.argmax(z + rng.gumbel(size=z.shape), axis=1)  # noisy: the MAP is finite
    G = Phi.T @ Phi
    approx = C.gaussian_approximation(G, lambda: [(Phi[:30], labels[:30]), (Phi[30:], labels[30:])], K)
    lam, mu = 1.0 / approx.prior_var, approx.mean
    assert approx.passes < C.GAUSSIAN_PASSES
    Z = Phi @ mu.T
    if K == 1:
        residual = (labels - 1.0 / (1.0 + np.exp(-Z[:, 0])))[:, None]
    else:
        residual = C.one_hot(labels, K) - np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    np.testing.assert_allclose(lam * mu, residual.T @ Phi, atol=1e-6 * np.abs(residual.T @ Phi).max())
    precision = lam * np.eye(K * b) + np.kron(C.boehning_curvature(K), G)
    cov = np.linalg.inv(precision)
    np.testing.assert_allclose(approx.var.ravel(), np.diag(cov), rtol=1e-10)
    a, e = np.linalg.eigvalsh(C.boehning_curvature(K)), np.linalg.eigvalsh(G)
    curv = np.maximum(np.outer(a, e), 0.0)
    gamma = np.sum(curv / (lam + curv))
    np.testing.assert_allclose(lam, gamma / np.sum(mu**2), rtol=1e-6)
    if K > 1:  # softmax ignores a shift shared by every output: the mean has none
        np.testing.assert_allclose(mu.sum(axis=0), 0.0, atol=1e-10)


def test_gaussian_approximation_gains_are_the_mean_sizes_floored():
    mean = np.array([[0.0, 3.0, -1.5, 1e-6], [0.0, -4.0, 0.0, 0.0]])
    approx = C.GaussianApproximation(mean, np.ones_like(mean), 1.0, 1)
    gains, top = approx.grid_gains()
    assert top == pytest.approx(np.sqrt(12.5))
    np.testing.assert_allclose(gains, [C.MIN_GAIN, 1.0, np.sqrt(1.125) / np.sqrt(12.5), C.MIN_GAIN])
    flat = C.GaussianApproximation(np.zeros((1, 3)), np.ones((1, 3)), 1.0, 1).grid_gains()
    np.testing.assert_array_equal(flat[0], 1.0) and flat[1] == 1.0
    with pytest.raises(C.DataError, match="no rows"):
        C.gaussian_approximation(np.eye(2), lambda: [], 1)
