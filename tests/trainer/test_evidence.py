"""The conjugate posterior on the statistics (trainer/evidence.py), per-feature grids (trainer.md §2)."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import BayesianRidge

from direct_edge.trainer import DataError, DirectRegressor, WeightGrid
from direct_edge.trainer.evidence import conjugate_posterior, grid_gains
from direct_edge.trainer.grid import GAIN_FRAC_BITS, gains_from_sizes, quantise_gains
from direct_edge.trainer.regressor import GAIN_GRID_FACTORS, GAIN_PRIOR_FACTORS
from direct_edge.trainer.statistics import SufficientStatistics


@pytest.mark.parametrize(
    ("n", "b", "noise", "offset"), [(300, 40, 0.3, 0.0), (60, 80, 0.5, 1e6), (500, 5, 2.0, -3.0)]
)
def test_the_conjugate_posterior_equals_bayesian_ridge_without_hyperpriors(n, b, noise, offset):
    rng = np.random.default_rng(n + b)
    Phi = rng.standard_normal((n, b))
    y = Phi[:, : min(b, 5)] @ rng.standard_normal(min(b, 5)) + noise * rng.standard_normal(n) + offset
    ref = BayesianRidge(
        fit_intercept=False, tol=1e-12, max_iter=5000, alpha_1=0, alpha_2=0, lambda_1=0, lambda_2=0
    ).fit(Phi, y - offset)
    # statistics kept in the data's own units (a large offset) and asked for y − offset
    stats = SufficientStatistics.from_basis(Phi, y).standardised(offset, 1.0)
    post = conjugate_posterior(stats)
    np.testing.assert_allclose(post.mean, ref.coef_, rtol=1e-6, atol=1e-9 * np.abs(ref.coef_).max())
    # Σ = (αΦᵀΦ + λI)⁻¹ at the reference's α and λ, written out: BayesianRidge's own sigma_ for
    # n < b differs between scikit-learn releases (1.6.0 against later ones)
    sigma = np.linalg.inv(ref.alpha_ * Phi.T @ Phi + ref.lambda_ * np.eye(b))
    np.testing.assert_allclose(post.var, np.diag(sigma), rtol=1e-6)
    assert post.prior_var * ref.lambda_ == pytest.approx(1.0, rel=1e-6)
    assert post.noise_var * ref.alpha_ == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(post.weight_size, np.sqrt(post.mean**2 + post.var))


def test_gains_are_the_devices_multiples_of_2_to_the_minus_15_in_0_1():
    one = 2.0**GAIN_FRAC_BITS
    g = quantise_gains(np.array([1.0, 0.5, 1 / 3, 1e-9, 2.0, 0.99999]))
    np.testing.assert_array_equal(g * one, np.array([one, one / 2, round(one / 3), 1.0, one, one]))
    for bad in (np.array([0.0, 1.0]), np.array([-1.0]), np.array([np.nan]), np.ones((2, 2)), np.array([])):
        with pytest.raises(DataError, match="grid gains"):
            quantise_gains(bad)
    grid = WeightGrid.from_bits(4, 0.5).with_gains(np.array([1.0, 0.25]))
    np.testing.assert_array_equal(grid.values, np.outer([0.5, 0.125], np.arange(-7, 8)))
    assert grid.bits == 4 and WeightGrid.from_bits(4, 0.5).values.shape == (15,)


def test_gains_are_sizes_over_the_largest_floored_and_ones_without_a_size():
    gains, top = gains_from_sizes(np.array([4.0, 1.0, 1e-9, 2.0]), 2.0**-10)
    np.testing.assert_array_equal(gains, [1.0, 0.25, 2.0**-10, 0.5])
    assert top == 4.0
    for sizes in (np.zeros(3), np.array([np.inf, 1.0, 1.0])):
        gains, top = gains_from_sizes(sizes, 2.0**-15)
        np.testing.assert_array_equal(gains, np.ones(3))
        assert top == 1.0


def _final_statistics(model: DirectRegressor, X: np.ndarray, y: np.ndarray) -> SufficientStatistics:
    Phi = model.feature_map_.transform(X)
    return SufficientStatistics.from_basis(Phi, (y - model.y_offset_) / model.y_scale_)


def test_evidence_grids_scale_each_weight_by_its_size_under_the_conjugate_posterior():
    X, y = load_diabetes(return_X_y=True)
    model = DirectRegressor(n_features=32, lengthscale=3.0, grid_gains="evidence", max_iter=300).fit(X, y)
    stats = _final_statistics(model, X, y)
    gains, top, prior_sd = grid_gains(stats)
    grid = model.posterior_.weight_grid
    np.testing.assert_allclose(grid.gains, quantise_gains(gains), atol=2.0**-GAIN_FRAC_BITS)

    # Δ is a searched factor × the largest weight's size, the prior sd a factor × the evidence's; a
    # search past the edge of a set halves or doubles (§9)
    def on_a_candidate(ratio: float, factors: tuple) -> bool:
        steps = [np.log2(ratio / f) for f in factors]
        return min(abs(k - round(k)) for k in steps) < 1e-9

    assert on_a_candidate(grid.scale / top, GAIN_GRID_FACTORS)
    assert on_a_candidate(model.prior_scale_ / prior_sd, GAIN_PRIOR_FACTORS)
    np.testing.assert_array_equal(model.posterior_.grid, grid.values)
    assert model.grid_scale_ == grid.scale
    # the largest weight's grid has gain 1; a given grid scale is that grid's step, in sd(y)
    assert grid.gains.max() == 1.0
    given = DirectRegressor(
        n_features=32, lengthscale=3.0, grid_gains="evidence", grid_scale=0.3, prior_scale=0.5, max_iter=50
    ).fit(X, y)
    assert given.posterior_.weight_grid.scale == 0.3 and given.prior_scale_ == 0.5


def test_a_model_with_per_feature_grids_exports_from_its_model_file_with_its_gains(tmp_path):
    # The model file keeps the gains, so the blob packed from the file equals the one packed from the
    # fitted model, and its exact mode gives the trained model's mean.
    from direct_edge.export.packed import pack
    from direct_edge.runtime import reference
    from direct_edge.runtime.blob import parse
    from direct_edge.trainer.model_file import load_model, save_model

    X, y = load_diabetes(return_X_y=True)
    model = DirectRegressor(n_features=16, lengthscale=3.0, grid_gains="evidence", max_iter=200).fit(X, y)
    path = tmp_path / "model.direct"
    save_model(path, model)
    assert pack(load_model(path), exact=True) == pack(model, exact=True)
    blob = parse(pack(model, exact=True))
    assert blob.has_gains
    np.testing.assert_array_equal(blob.gains, np.rint(model.posterior_.weight_grid.gains * 2**GAIN_FRAC_BITS))
    mean_q, _, var_y_q = reference.predict_exact(blob, reference.quantize_inputs(blob, X))
    mean, sd = reference.to_target_units(blob, mean_q, var_y_q)
    want_mean, want_sd = model.predict(X, return_std=True)
    assert np.max(np.abs(mean - want_mean)) < 1e-3 * np.std(y)
    assert np.max(np.abs(sd - want_sd)) < 1e-3 * np.std(y)
