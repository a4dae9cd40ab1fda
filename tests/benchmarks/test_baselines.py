"""Baselines (benchmarks/baselines.py): unbiased REINFORCE and REPARAM estimators, conjugate references.

``baselines`` (the module) and ``brute`` (the trainer tests' oracles) come from conftest.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge

from direct_edge.trainer import elbo as E
from direct_edge.trainer.statistics import SufficientStatistics


def test_the_product_does_not_import_the_baselines():
    code = (
        "import sys; import direct_edge, direct_edge.trainer, direct_edge.export, direct_edge.runtime; "
        "import direct_edge.trainer.cli, direct_edge.export.cli, direct_edge.runtime.cli; "
        "print(sorted(m for m in sys.modules if 'baselines' in m))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def assert_within_se(draws: np.ndarray, exact: np.ndarray, z: float = 5.0) -> None:
    """Mean of ``draws`` (N, ...) equals ``exact`` within z standard errors, per component."""
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(draws.shape[0])
    bad = np.abs(mean - exact) > z * se + 1e-9 * (1 + np.abs(exact))
    assert not bad.any(), f"off by {np.abs(mean - exact)[bad]} with SE {se[bad]}"


@pytest.mark.parametrize("n_samples", [1, 10])
@pytest.mark.parametrize("analytic_kl", [True, False])
def test_reinforce_gradient_is_unbiased_for_the_exact_mean_field_gradient(
    baselines, brute, n_samples, analytic_kl
):
    glm, _ = brute.tiny_glm("bits2-asym", "gaussian", b=3, n=12, K=3, seed=3)
    rng = np.random.default_rng(7)
    p = glm.problem
    theta = rng.standard_normal(p.shape)
    eta = rng.standard_normal(p.noise.size)
    value, d_theta, d_eta = E.mean_field_elbo(p, theta, eta)
    exact = np.concatenate([d_theta.ravel(), d_eta])
    draws, values = [], []
    # A fixed baseline for S = 1 (any constant keeps the estimator unbiased); near E f to cut variance.
    for _ in range(6000 if n_samples == 1 else 1500):
        v, dt, de, _ = baselines.score_function_gradient(
            p, theta, eta, rng, n_samples, baseline=value, analytic_kl=analytic_kl
        )
        draws.append(np.concatenate([dt.ravel(), de]))
        values.append(v)
    draws = np.array(draws)
    assert_within_se(draws, exact)
    assert_within_se(np.array(values)[:, None], np.array([value]))
    # The check has power: the standard errors are small next to the gradient itself.
    se = draws.std(axis=0, ddof=1) / np.sqrt(draws.shape[0])
    assert se.max() < 0.1 * np.abs(exact).max()


def test_reinforce_raises_the_exact_elbo_towards_direct(baselines, brute):
    glm, _ = brute.tiny_glm("bits3-sym", "gaussian", b=4, n=30, K=4, seed=2)
    x0 = glm.params.copy()
    start = glm.elbo(x0)
    fit = baselines.ReinforceVI(n_samples=10, learning_rate=0.05, max_iter=3000, seed=0).fit(glm)
    direct = glm.fit(init="warm").elbo_
    assert fit.trace_.elbo[0] == pytest.approx(start)
    assert np.all(np.diff(fit.trace_.iteration) > 0) and np.all(np.diff(fit.trace_.seconds) >= 0)
    assert fit.elbo_ <= direct + 1e-6  # DIRECT's optimum is a local max of the same ELBO
    assert fit.elbo_ > start + 0.9 * (direct - start)
    mean, var = fit.predict_moments(np.ones((2, 4)))
    assert mean.shape == var.shape == (2,) and np.all(var > 0)


def gaussian_elbo_from_data(Phi, y, mu, s, noise, log_noise_prior, rho, prior_scale) -> float:
    """The mean-field Gaussian ELBO written out from (Phi, y), independently of the statistics."""
    n = y.size
    e_rss = np.sum((y - Phi @ mu) ** 2) + np.sum(Phi**2 @ s**2)
    lik = np.sum(rho * (-0.5 * n * np.log(2 * np.pi * noise) - 0.5 * e_rss / noise))
    noise_kl = np.sum(rho * (log_noise_prior - np.log(rho)))
    v = prior_scale**2
    kl = 0.5 * np.sum(s**2 / v + mu**2 / v - 1.0 - np.log(s**2 / v))
    return float(lik + noise_kl - kl)


def small_gaussian_problem(seed: int = 0, n: int = 40, b: int = 4, K: int = 3):
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((n, b))
    y = Phi @ rng.standard_normal(b) + 0.5 * rng.standard_normal(n)
    noise = np.sort(rng.uniform(0.1, 1.0, K))
    log_noise_prior = E.log_softmax(rng.standard_normal(K))
    return rng, Phi, y, noise, log_noise_prior


def test_reparam_elbo_and_gradient_estimates_match_the_closed_form_gaussian_elbo(baselines):
    rng, Phi, y, noise, log_noise_prior = small_gaussian_problem()
    b = Phi.shape[1]
    prior_scale = 0.8
    problem = baselines.GaussianProblem.build(
        SufficientStatistics.from_basis(Phi, y), prior_scale, noise, log_noise_prior
    )
    mu, log_s, eta = (
        rng.standard_normal(b),
        -1.0 + 0.3 * rng.standard_normal(b),
        rng.standard_normal(noise.size),
    )
    rho = np.exp(E.log_softmax(eta))

    def closed(x: np.ndarray) -> float:
        return gaussian_elbo_from_data(
            Phi,
            y,
            x[:b],
            np.exp(x[b : 2 * b]),
            noise,
            log_noise_prior,
            np.exp(E.log_softmax(x[2 * b :])),
            prior_scale,
        )

    x = np.concatenate([mu, log_s, eta])
    exact = closed(x)
    assert problem.elbo(mu, log_s, eta) == pytest.approx(exact, rel=1e-10)
    # Central finite differences of the closed form: the gradient the estimator must match on average.
    h = 1e-6
    fd = np.array([(closed(x + h * e) - closed(x - h * e)) / (2 * h) for e in np.eye(x.size)])
    values, grads = [], []
    for _ in range(3000):
        v, d_mu, d_log_s, d_eta = baselines.reparam_gradient(problem, mu, log_s, eta, rng, 5)
        values.append(v)
        grads.append(np.concatenate([d_mu, d_log_s, d_eta]))
    assert_within_se(np.array(values)[:, None], np.array([exact]))
    assert_within_se(np.array(grads), fd)
    assert rho.sum() == pytest.approx(1.0)


def test_reparam_converges_to_the_conjugate_posterior(baselines):
    # One noise level: the model is conjugate, and the mean-field Gaussian optimum has the exact
    # posterior mean and sd_i = 1/sqrt(Λ_ii), Λ the posterior precision.
    rng = np.random.default_rng(4)
    n, b, sigma2, prior_scale = 200, 3, 0.09, 1.0
    Phi = rng.standard_normal((n, b))
    y = Phi @ np.array([0.8, -0.5, 0.2]) + np.sqrt(sigma2) * rng.standard_normal(n)
    Lam = Phi.T @ Phi / sigma2 + np.eye(b) / prior_scale**2
    mu_star = np.linalg.solve(Lam, Phi.T @ y / sigma2)
    sd_star = 1.0 / np.sqrt(np.diag(Lam))
    fit = baselines.ReparamGaussianVI(
        prior_scale=prior_scale,
        noise_grid=np.array([sigma2]),
        n_samples=10,
        learning_rate=0.01,
        max_iter=4000,
    ).fit_arrays(Phi, y)
    np.testing.assert_allclose(fit.mean_, mu_star, atol=5 * sd_star.max())
    np.testing.assert_allclose(fit.mean_, mu_star, atol=0.01)
    np.testing.assert_allclose(fit.sd_, sd_star, rtol=0.2)
    best = gaussian_elbo_from_data(
        Phi, y, mu_star, sd_star, np.array([sigma2]), np.zeros(1), np.ones(1), prior_scale
    )
    assert best - 0.5 < fit.elbo_ <= best + 1e-9
    mean, var = fit.predict_moments(Phi[:5])
    np.testing.assert_allclose(mean, Phi[:5] @ fit.mean_)
    np.testing.assert_allclose(var, Phi[:5] ** 2 @ fit.sd_**2 + sigma2)


def test_bayesian_ridge_helper_matches_sklearn(baselines):
    _, Phi, y, _, _ = small_gaussian_problem(seed=5, n=80, b=6)
    ours = baselines.fit_bayesian_ridge(Phi, y)
    ref = BayesianRidge(fit_intercept=False).fit(Phi, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_)
    mean, var = baselines.bayesian_ridge_moments(ours, Phi[:7])
    ref_mean, ref_sd = ref.predict(Phi[:7], return_std=True)
    np.testing.assert_allclose(mean, ref_mean)
    np.testing.assert_allclose(var, ref_sd**2)
    # The predictive variance includes the noise 1/α: it can never fall below it.
    assert np.all(var >= 1.0 / ours.alpha_)
