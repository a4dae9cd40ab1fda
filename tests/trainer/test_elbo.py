"""Exact ELBOs against enumeration of the whole hypothesis space, and gradients against finite
differences (docs/trainer.md §5, §6)."""

import numpy as np
import pytest

from direct_edge.trainer import DirectGLM
from direct_edge.trainer import elbo as E
from direct_edge.trainer.statistics import SufficientStatistics

REL = 1e-9


def build_problem(data) -> E.Problem:
    stats = SufficientStatistics.from_basis(data.Phi, data.y)
    return E.Problem.build(stats, data.grid, data.log_prior, data.noise, data.log_noise_prior)


def enumerate_elbo(brute, data, log_Q, log_alpha, log_rho):
    return brute.data_elbo_parts(data, log_Q, log_alpha, log_rho)


def central_differences(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def assert_gradient_close(analytic: np.ndarray, numeric: np.ndarray, rel: float = 1e-6) -> None:
    err = np.linalg.norm(analytic - numeric)
    assert err <= rel * np.linalg.norm(numeric) + 1e-9, (
        f"gradient error {err:.3e} vs norm {np.linalg.norm(numeric):.3e}"
    )


# ---- mean-field: exact value ----------------------------------------------------------------------


def test_mean_field_elbo_equals_enumeration_on_tiny_models(brute, tiny_case):
    grid_kind, prior_kind, b = tiny_case
    for seed in range(4):
        K = 2 + seed % 2
        data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=9, K=K, seed=seed)
        problem = build_problem(data)
        m = data.grid.shape[1]
        theta = brute.random_logits(data.rng, (b, m))
        eta = brute.random_logits(data.rng, (K,))
        value, _, _ = E.mean_field_elbo(problem, theta, eta)
        exact = enumerate_elbo(
            brute, data, brute.log_softmax(theta)[None], np.zeros(1), brute.log_softmax(eta)
        )
        assert exact["q_total"] == pytest.approx(1.0, rel=1e-12)
        assert value == pytest.approx(exact["elbo"], rel=REL)


def test_mean_field_elbo_at_the_prior_equals_enumeration(brute, tiny_case):
    grid_kind, prior_kind, b = tiny_case
    data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=6, K=3, seed=11)
    value, _, _ = E.mean_field_elbo(build_problem(data), data.log_prior, data.log_noise_prior)
    exact = enumerate_elbo(brute, data, data.log_prior[None], np.zeros(1), data.log_noise_prior)
    assert value == pytest.approx(exact["elbo"], rel=REL)


def test_mean_field_elbo_with_fixed_noise_distribution_equals_enumeration(brute):
    data = brute.tiny_problem_data("per-weight", "gaussian", 4, n=8, K=3, seed=5)
    problem = build_problem(data)
    theta = brute.random_logits(data.rng, data.grid.shape)
    for rho in (np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.0, 0.8]), np.array([0.5, 0.3, 0.2])):
        value, _, d_eta = E.mean_field_elbo(problem, theta, np.zeros(3), fixed_rho=rho)
        with np.errstate(divide="ignore"):
            log_rho = np.log(rho)
        exact = enumerate_elbo(brute, data, brute.log_softmax(theta)[None], np.zeros(1), log_rho)
        assert value == pytest.approx(exact["elbo"], rel=REL)
        assert np.all(d_eta == 0.0)


def test_expected_sq_residual_equals_enumeration_for_each_component(brute):
    data = brute.tiny_problem_data("bits2-asym", "uniform", 4, n=10, K=2, seed=3)
    problem = build_problem(data)
    b, m = data.grid.shape
    idx = brute.configurations(b, m)
    W = brute.config_values(data.grid, idx)
    rss = np.sum((data.y[None] - W @ data.Phi.T) ** 2, axis=1)
    log_Q = brute.log_softmax(brute.random_logits(data.rng, (3, b, m)))
    s, t = E.weight_moments(problem, np.exp(log_Q))
    values, Gs = E.expected_sq_residual(problem, s, t)
    for k in range(3):
        q = np.exp(brute.log_q_configs(log_Q[k : k + 1], np.zeros(1), idx))
        assert values[k] == pytest.approx(q @ rss, rel=REL)
        np.testing.assert_allclose(Gs[k], problem.gram @ s[k], rtol=1e-12)


def test_optimal_noise_logits_maximise_the_elbo_over_the_noise_distribution(brute):
    data = brute.tiny_problem_data("bits3-sym", "gaussian", 3, n=12, K=4, seed=8)
    problem = build_problem(data)
    theta = brute.random_logits(data.rng, data.grid.shape)
    s, t = E.weight_moments(problem, np.exp(brute.log_softmax(theta)))
    sq_res, _ = E.expected_sq_residual(problem, s, t)
    eta_star = E.optimal_noise_logits(problem, float(sq_res))
    best, _, d_eta = E.mean_field_elbo(problem, theta, eta_star)
    scale = np.abs(best)
    assert np.max(np.abs(d_eta)) <= 1e-10 * scale
    for _ in range(50):
        other, _, _ = E.mean_field_elbo(problem, theta, eta_star + data.rng.standard_normal(4))
        assert other <= best + 1e-12 * scale


# ---- mixture: exact likelihood and prior terms, entropy bound ---------------------------------------


def test_mixture_likelihood_and_prior_equal_enumeration_on_tiny_models(brute, tiny_case):
    grid_kind, prior_kind, b = tiny_case
    for seed, r in [(0, 2), (1, 3), (2, 1)]:
        data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=8, K=3, seed=100 + seed)
        m = data.grid.shape[1]
        theta = brute.random_logits(data.rng, (r, b, m))
        alpha_logits = brute.random_logits(data.rng, (r,))
        eta = brute.random_logits(data.rng, (3,))
        value, *_ = E.mixture_likelihood_and_prior(build_problem(data), theta, alpha_logits, eta)
        exact = enumerate_elbo(
            brute, data, brute.log_softmax(theta), brute.log_softmax(alpha_logits), brute.log_softmax(eta)
        )
        assert value == pytest.approx(exact["lik_prior"], rel=REL)


def test_mixture_log_q_and_responsibilities_equal_enumeration(brute):
    rng = np.random.default_rng(4)
    r, b, m = 3, 4, 3
    log_Q = brute.log_softmax(brute.random_logits(rng, (r, b, m)))
    log_alpha = brute.log_softmax(rng.standard_normal(r))
    idx = brute.configurations(b, m)
    log_q, gamma = E.mixture_log_q(log_Q, log_alpha, idx)
    np.testing.assert_allclose(log_q, brute.log_q_configs(log_Q, log_alpha, idx), rtol=1e-12)
    assert np.exp(log_q).sum() == pytest.approx(1.0, rel=1e-12)
    comp = np.stack([brute.log_q_configs(log_Q[k : k + 1], np.zeros(1), idx) for k in range(r)], axis=1)
    np.testing.assert_allclose(gamma, np.exp(comp + log_alpha - log_q[:, None]), rtol=1e-10)


def test_mixture_elbo_bound_never_exceeds_the_exact_mixture_elbo(brute):
    draws, tightest = 0, np.inf
    for seed in range(60):
        grid_kind, prior_kind, b = brute.tiny_cases[seed % len(brute.tiny_cases)]
        data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=6, K=2, seed=1000 + seed)
        problem = build_problem(data)
        m = data.grid.shape[1]
        r = 1 + seed % 4
        spread = [0.3, 1.0, 3.0][seed % 3]
        theta = brute.random_logits(data.rng, (r, b, m), spread)
        alpha_logits = brute.random_logits(data.rng, (r,))
        eta = brute.random_logits(data.rng, (2,))
        exact = enumerate_elbo(
            brute, data, brute.log_softmax(theta), brute.log_softmax(alpha_logits), brute.log_softmax(eta)
        )
        log_Q_bar = np.log(
            np.einsum("k,kij->ij", np.exp(brute.log_softmax(alpha_logits)), np.exp(brute.log_softmax(theta)))
        )
        # Random A, A at the mixture's marginals (a good choice) and unnormalised A.
        for log_A in (
            brute.random_logits(data.rng, (b, m), 2.0),
            log_Q_bar,
            log_Q_bar + data.rng.normal(0.0, 0.1, (b, m)),
            data.rng.standard_normal((b, m)) + 3.0,
        ):
            bound, *_ = E.mixture_elbo_bound(problem, theta, alpha_logits, log_A, eta)
            gap = exact["elbo"] - bound
            assert gap >= -REL * abs(exact["elbo"]), (seed, gap)
            tightest = min(tightest, gap)
            draws += 1
    assert draws == 240
    # The bound is not trivially loose: with A at the marginals some draws come close.
    assert tightest < 0.05


def test_a_mixture_is_never_more_than_log_r_above_its_best_component(brute):
    # docs/trainer.md §6: the reason the mixture family cannot earn its cost.  By enumeration, the
    # exact mixture ELBO <= max_k ELBO(component k, same q(σ²)) + log r; on these draws some mixture
    # comes within 0.6·log r of that bound, so it is not vacuous.
    closest = np.inf
    for seed in range(40):
        grid_kind, prior_kind, b = brute.tiny_cases[seed % len(brute.tiny_cases)]
        data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=6, K=2, seed=3000 + seed)
        m = data.grid.shape[1]
        r = 2 + seed % 3
        theta = brute.random_logits(data.rng, (r, b, m), [0.3, 3.0, 10.0][seed % 3])
        log_alpha = brute.log_softmax(brute.random_logits(data.rng, (r,)))
        log_rho = brute.log_softmax(brute.random_logits(data.rng, (2,)))
        log_Q = brute.log_softmax(theta)
        mixture = enumerate_elbo(brute, data, log_Q, log_alpha, log_rho)["elbo"]
        best = max(
            enumerate_elbo(brute, data, log_Q[k : k + 1], np.zeros(1), log_rho)["elbo"] for k in range(r)
        )
        margin = best + np.log(r) - mixture
        assert margin >= -1e-10 * max(1.0, abs(mixture)), (seed, margin)
        closest = min(closest, margin / np.log(r))
    assert closest < 0.6  # measured 0.51: within about half of log r on these draws


def test_mixture_entropy_bound_is_tight_for_one_component_with_log_a_equal_log_q(brute, tiny_case):
    grid_kind, prior_kind, b = tiny_case
    data = brute.tiny_problem_data(grid_kind, prior_kind, b, n=7, K=3, seed=21)
    m = data.grid.shape[1]
    theta = brute.random_logits(data.rng, (1, b, m))
    eta = brute.random_logits(data.rng, (3,))
    log_A = brute.log_softmax(theta[0])
    bound, *_ = E.mixture_elbo_bound(build_problem(data), theta, np.zeros(1), log_A, eta)
    exact = enumerate_elbo(brute, data, brute.log_softmax(theta), np.zeros(1), brute.log_softmax(eta))
    assert bound == pytest.approx(exact["elbo"], rel=REL)
    mf, _, _ = E.mean_field_elbo(build_problem(data), theta[0], eta)
    assert bound == pytest.approx(mf, rel=REL)


def test_mixture_of_identical_components_has_the_mean_field_elbo(brute):
    data = brute.tiny_problem_data("per-weight", "sparse", 4, n=9, K=3, seed=31)
    problem = build_problem(data)
    theta = brute.random_logits(data.rng, data.grid.shape)
    eta = brute.random_logits(data.rng, (3,))
    mf, _, _ = E.mean_field_elbo(problem, theta, eta)
    thetas = np.stack([theta] * 3)
    bound, *_ = E.mixture_elbo_bound(
        problem, thetas, data.rng.standard_normal(3), brute.log_softmax(theta), eta
    )
    assert bound == pytest.approx(mf, rel=REL)


def test_entropy_exact_terms_upper_bound_the_mixture_entropy(brute):
    rng = np.random.default_rng(9)
    for _ in range(30):
        r, b, m = int(rng.integers(1, 4)), 3, 4
        log_Q = brute.log_softmax(brute.random_logits(rng, (r, b, m), 2.0))
        log_alpha = brute.log_softmax(rng.standard_normal(r))
        idx = brute.configurations(b, m)
        lq = brute.log_q_configs(log_Q, log_alpha, idx)
        entropy = -float(np.exp(lq) @ lq)
        upper = E.mixture_entropy_exact_terms(np.exp(log_Q), np.exp(log_alpha))
        assert upper >= entropy - 1e-12
        # Σ_k α_k H(q_k) is a lower bound on it (concavity of entropy).
        assert upper - (-float(np.exp(log_alpha) @ log_alpha)) <= entropy + 1e-12


# ---- gradients against central finite differences ---------------------------------------------------


def small_glm(brute, family: str, r: int = 3, seed: int = 0) -> tuple[DirectGLM, np.random.Generator]:
    glm, data = brute.tiny_glm("per-weight", "gaussian", 5, n=20, K=4, seed=seed, family=family, r=r)
    return glm, data.rng


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_field_gradient_equals_central_differences(brute, seed):
    glm, rng = small_glm(brute, "mean-field", seed=seed)
    x = rng.normal(0.0, 1.5, glm.params.size)
    value, grad = glm.elbo_and_grad(x)
    assert np.isfinite(value)
    assert_gradient_close(grad, central_differences(lambda p: glm.elbo_and_grad(p)[0], x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixture_bound_gradient_equals_central_differences_for_every_block(brute, seed):
    glm, rng = small_glm(brute, "mixture", r=3, seed=seed)
    b, m = glm.problem.shape
    x = glm.pack(
        theta=rng.normal(0.0, 1.5, (3, b, m)),
        alpha=rng.standard_normal(3),
        log_A=rng.normal(-1.0, 1.0, (b, m)),
        eta=rng.standard_normal(glm.problem.noise.size),
    )
    _, grad = glm.elbo_and_grad(x)
    numeric = central_differences(lambda p: glm.elbo_and_grad(p)[0], x)
    g, fd = glm.unpack(grad), glm.unpack(numeric)
    assert set(g) == {"theta", "alpha", "log_A", "eta"}
    for name in g:
        assert_gradient_close(g[name], fd[name])


def test_fixed_noise_gradient_equals_central_differences(brute):
    glm, rng = small_glm(brute, "mean-field", seed=4)
    problem = glm.problem
    rho = np.array([0.0, 0.7, 0.3, 0.0])
    theta = rng.normal(0.0, 1.5, problem.shape)

    def f(flat):
        return E.mean_field_elbo(problem, flat.reshape(problem.shape), np.zeros(4), fixed_rho=rho)[0]

    _, d_theta, _ = E.mean_field_elbo(problem, theta, np.zeros(4), fixed_rho=rho)
    assert_gradient_close(d_theta.ravel(), central_differences(f, theta.ravel()))


# ---- REINFORCE: unbiased for the gradient of the exact mixture ELBO ---------------------------------


@pytest.mark.parametrize("n_samples", [1, 4])
def test_reinforce_gradient_average_approaches_the_exact_mixture_elbo_gradient(brute, n_samples):
    r, K = 2, 2
    glm, data = brute.tiny_glm(
        "bits2-sym",
        "gaussian",
        3,
        n=6,
        K=K,
        seed=77,
        family="mixture",
        r=r,
        entropy="reinforce",
        n_entropy_samples=n_samples,
    )
    b, m = data.grid.shape
    x = glm.pack(
        theta=data.rng.normal(0.0, 1.0, (r, b, m)), alpha=data.rng.standard_normal(r), eta=np.zeros(K)
    )

    def exact_elbo(p):
        q = glm.unpack(p)
        parts = enumerate_elbo(
            brute,
            data,
            brute.log_softmax(q["theta"]),
            brute.log_softmax(q["alpha"]),
            brute.log_softmax(q["eta"]),
        )
        return parts["elbo"]

    exact_grad = central_differences(exact_elbo, x)
    rng = np.random.default_rng(2024)
    draws = 3000
    values = np.empty(draws)
    grads = np.empty((draws, x.size))
    for i in range(draws):
        values[i], grads[i] = glm.elbo_and_grad(x, rng)
    mean, se = grads.mean(axis=0), grads.std(axis=0, ddof=1) / np.sqrt(draws)
    # The noise block is exact (zero variance): there the tolerance is the finite-difference error.
    tol = 5.0 * se + 1e-6 * np.linalg.norm(exact_grad)
    assert np.all(np.abs(mean - exact_grad) < tol), (mean - exact_grad) / tol
    assert np.max(se) > 1e-3  # the entropy blocks really are stochastic
    # The entropy estimate is what makes it match: without it the gradient is many errors away.
    q = glm.unpack(x)
    _, dQ, d_alpha, d_eta, cache = E.mixture_likelihood_and_prior(
        glm.problem, q["theta"], q["alpha"], q["eta"]
    )
    no_entropy = glm.pack(
        theta=E.softmax_backward(cache["Q"], dQ), alpha=E.softmax_backward(cache["alpha"], d_alpha), eta=d_eta
    )
    assert np.max(np.abs((mean - no_entropy) / se)) > 20.0
    # The value estimate (exact terms plus a Monte Carlo entropy) is unbiased too.
    v_se = values.std(ddof=1) / np.sqrt(draws)
    assert abs(values.mean() - exact_elbo(x)) < 5.0 * v_se + 1e-12


def test_mixture_entropy_bound_stays_finite_when_a_probability_underflows(brute):
    """A fitted mean-field Q can hold levels with log-probability below −745 (Q = 0 in float64); the
    mixture then starts with log A = log Q there (DirectGLM.params_from_mean_field).  The bound is
    tight and finite at that point (Q/A = 1 on every level that has mass, 0·log A = 0 elsewhere), so
    the ELBO bound must equal the mean-field ELBO, not NaN."""
    data = brute.tiny_problem_data("bits2-asym", "gaussian", 3, n=8, K=2, seed=41)
    problem = build_problem(data)
    theta = brute.random_logits(data.rng, data.grid.shape)
    theta[0, 2] = -1000.0  # that level's probability underflows to exactly 0
    eta = np.zeros(2)
    mf, _, _ = E.mean_field_elbo(problem, theta, eta)
    assert np.isfinite(mf)
    with np.errstate(all="ignore"):
        bound, d_theta, d_alpha, d_log_A, d_eta = E.mixture_elbo_bound(
            problem, theta[None], np.zeros(1), E.log_softmax(theta), eta
        )
    assert bound == pytest.approx(mf, rel=REL)
    for grad in (d_theta, d_alpha, d_log_A, d_eta):
        assert np.all(np.isfinite(grad))
