"""DirectRegressor: scikit-learn conformance, agreement with DirectGLM, ELBO-based selection."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.utils.estimator_checks import check_estimator

from direct_edge.trainer import DataError, DirectGLM, DirectRegressor, WeightGrid, prior_log_probs
from direct_edge.trainer.grid import noise_grid
from direct_edge.trainer.regressor import GRID_SCALES, LENGTHSCALE_FACTORS, PRIOR_SCALES, search_past_edge
from direct_edge.trainer.statistics import SufficientStatistics


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.mark.slow
def test_check_estimator_passes():
    results = check_estimator(DirectRegressor(), on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert len(results) > 40
    assert failed == []


def test_elbo_and_predictions_match_direct_glm_on_its_own_features(diabetes):
    X, y = diabetes
    reg = DirectRegressor(n_features=32, lengthscale=3.0, grid_scale=0.2, prior_scale=0.5, max_iter=300).fit(
        X, y
    )
    Phi = reg.feature_map_.transform(X)
    grid = WeightGrid.from_bits(4, 0.2)
    glm = DirectGLM(
        Phi,
        (y - y.mean()) / y.std(),
        grid=grid,
        log_prior=prior_log_probs(grid.values, "gaussian", 0.5),
        noise_grid=noise_grid(),
    )
    post = reg.posterior_
    # Probabilities that underflowed to 0 get logit -690 (their share of the ELBO is < 1e-290).
    params = glm.pack(
        theta=np.log(np.maximum(post.q_weights[0], 1e-300)), eta=np.log(np.maximum(post.q_noise, 1e-300))
    )
    # The regressor's statistics (standardised after the pass) and the direct ones differ by round-off.
    assert glm.elbo(params) == pytest.approx(reg.elbo_, rel=1e-9)
    glm.params = params
    mean, var = glm.predict_moments(Phi)
    mean_r, var_r = reg.predict_moments(X)
    np.testing.assert_allclose(mean_r, mean * y.std() + y.mean(), rtol=1e-12)
    np.testing.assert_allclose(var_r, var * y.var(), rtol=1e-12)


def test_selection_picks_the_highest_elbo_candidate(diabetes):
    X, y = diabetes
    reg = DirectRegressor(n_features=32, max_iter=200).fit(X, y)
    mid = (GRID_SCALES[len(GRID_SCALES) // 2], PRIOR_SCALES[len(PRIOR_SCALES) // 2])
    lengthscale_rows = [r for r in reg.selection_ if r["stage"] == "lengthscale"]
    assert len(lengthscale_rows) >= len(LENGTHSCALE_FACTORS)
    assert all((r["grid_scale"], r["prior_scale"]) == mid for r in lengthscale_rows)
    best_ell = max(lengthscale_rows, key=lambda r: r["elbo"])
    assert reg.lengthscale_ == pytest.approx(best_ell["lengthscale"])
    # The scale search reuses the lengthscale winner's fit at the middle scales.
    scale_rows = [best_ell] + [r for r in reg.selection_ if r["stage"] == "scales"]
    assert len(scale_rows) >= len(GRID_SCALES) * len(PRIOR_SCALES)
    assert all(r["lengthscale"] == best_ell["lengthscale"] for r in scale_rows)
    best = max(scale_rows, key=lambda r: r["elbo"])
    assert (reg.grid_scale_, reg.prior_scale_) == (best["grid_scale"], best["prior_scale"])
    # The final fit continues from the best candidate, so it cannot be worse.
    assert reg.elbo_ >= best["elbo"] - 1e-9 * abs(best["elbo"])


@pytest.mark.parametrize(
    ("optimum", "expected", "n_scored"),
    [
        (0.15, 0.2, 0),  # interior best: nothing more is tried
        (0.01, 0.0125, 2),  # best on the lower edge: halve twice (the step limit)
        (0.6, 0.8, 2),  # upper edge: 0.8 (edge again), then 1.6 loses to 0.8
        (100.0, 1.6, 2),
    ],
)
def test_search_past_edge_follows_the_best_value_outwards(optimum, expected, n_scored):
    def score(v):
        scored.append(v)
        return -((np.log(v) - np.log(optimum)) ** 2)

    scored: list[float] = []
    tried = {v: score(v) for v in (0.05, 0.1, 0.2, 0.4)}
    scored.clear()
    assert search_past_edge(tried, score) == pytest.approx(expected)
    assert len(scored) == n_scored


def test_fit_is_invariant_to_the_units_of_the_target(diabetes):
    X, y = diabetes
    kw = {"features": "linear", "max_iter": 300}
    a = DirectRegressor(**kw).fit(X, y)
    b = DirectRegressor(**kw).fit(X, 1000.0 * y - 7.0)
    assert (a.grid_scale_, a.prior_scale_) == (b.grid_scale_, b.prior_scale_)
    # Round-off in the statistics moves the optimiser's stopping point (ftol 1e-10) a little.
    assert b.elbo_ == pytest.approx(a.elbo_, rel=1e-6)
    np.testing.assert_allclose(b.predict(X), 1000.0 * a.predict(X) - 7.0, rtol=1e-3)
    np.testing.assert_allclose(
        b.predict(X, return_std=True)[1], 1000.0 * a.predict(X, return_std=True)[1], rtol=1e-3
    )


def test_train_rmse_from_statistics_equals_direct_computation(diabetes):
    X, y = diabetes
    reg = DirectRegressor(n_features=64, lengthscale=3.0, grid_scale=0.1, prior_scale=0.5).fit(X, y)
    direct = np.sqrt(np.mean((reg.predict(X) - y) ** 2))
    assert reg.train_rmse_ == pytest.approx(direct, rel=1e-9)


def test_fit_source_equals_fit_on_arrays(diabetes):
    X, y = diabetes

    class Chunks:
        n_inputs = X.shape[1]
        n_rows = None

        def batches(self, chunk_rows):
            for i in range(0, len(y), chunk_rows):
                yield X[i : i + chunk_rows], y[i : i + chunk_rows]

    kw = {"n_features": 32, "lengthscale": 2.0, "grid_scale": 0.2, "prior_scale": 0.5, "chunk_rows": 50}
    a = DirectRegressor(**kw).fit(X, y)
    b = DirectRegressor(**kw).fit_source(Chunks())
    # Same chunks, same arithmetic: the two paths must agree exactly.
    assert b.elbo_ == a.elbo_
    np.testing.assert_array_equal(b.predict(X), a.predict(X))


def test_sparsity_is_the_expected_share_of_zero_samples(diabetes):
    X, y = diabetes
    reg = DirectRegressor(n_features=128, lengthscale=3.0, prior="sparse", zero_mass=0.7).fit(X, y)
    samples = reg.sample(400, seed=1)
    assert samples.levels.dtype == np.int8 and samples.levels.shape == (400, 128)
    assert set(np.unique(samples.levels)) <= set(range(-7, 8))
    # 51,200 Bernoulli draws: the standard error is below 0.0025.
    assert samples.sparsity == pytest.approx(reg.sparsity_, abs=0.01)
    assert 0.0 < reg.sparsity_ < 1.0


def test_mixture_family_is_at_least_as_good_as_mean_field(diabetes):
    X, y = diabetes
    kw = {"n_features": 32, "lengthscale": 3.0, "grid_scale": 0.2, "prior_scale": 0.5, "max_iter": 300}
    mf = DirectRegressor(**kw).fit(X, y)
    mix = DirectRegressor(family="mixture", n_components=3, **kw).fit(X, y)
    assert mix.posterior_.q_weights.shape == (3, 32, 15)
    assert mix.elbo_ >= mf.elbo_ - 1e-3 * abs(mf.elbo_)


def test_bad_parameters_raise_data_error(diabetes):
    X, y = diabetes
    for params in (
        {"bits": 9},
        {"bits": 1},
        {"features": "poly"},
        {"prior": "laplace"},
        {"family": "full"},
        {"entropy": "exact"},
        {"n_features": 7},
    ):
        with pytest.raises(DataError):
            DirectRegressor(**params).fit(X, y)


def test_statistics_of_a_regressor_fit_are_exact(diabetes):
    X, y = diabetes
    reg = DirectRegressor(features="linear").fit(X, y)
    Phi = reg.feature_map_.transform(X)
    stats = SufficientStatistics.from_basis(Phi, y)
    np.testing.assert_allclose(Phi[:, :-1].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Phi[:, :-1].std(axis=0), 1.0, rtol=1e-12)
    assert stats.n == reg.n_train_ == len(y)
