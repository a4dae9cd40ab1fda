"""Integer outputs of trained models against the float64 evaluation of the same samples (IS §8).

Real data (scikit-learn's bundled diabetes set), real training, then the exporter's packing: the
integer mean and standard deviation must stay within the spec's bound E, and that bound (in target
units) must be small next to the model's test RMSE.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from direct_edge.export.cli import float64_floor, float64_samples
from direct_edge.export.packed import pack
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse
from direct_edge.trainer import DirectRegressor


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    test = rng.random(len(y)) < 0.2
    return X[~test], y[~test], X[test], y[test]


def _fit(kind: str, data, family: str = "mean-field") -> DirectRegressor:
    X, y, _, _ = data
    params = dict(features=kind, grid_scale=0.1, prior_scale=0.5, family=family, max_iter=300)
    if kind == "rff":
        params.update(n_features=256, lengthscale=2.0)
    return DirectRegressor(**params).fit(X, y)


def float_ensemble(model: DirectRegressor, blob, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same S samples evaluated in float64 on the dequantised inputs: per-sample outputs (n, S) in
    target units, their mean and standard deviation."""
    f = float64_samples(model, blob, q)
    return f, f.mean(axis=1), f.std(axis=1)


@pytest.mark.parametrize("kind,family", [("linear", "mean-field"), ("rff", "mean-field"), ("rff", "mixture")])
def test_integer_predictions_are_within_the_spec_bound_of_float64(diabetes, kind, family):
    model = _fit(kind, diabetes, family)
    blob = parse(pack(model, n_samples=16, seed=3))
    rng = np.random.default_rng(1)
    X_train, _, X_test, y_test = diabetes
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    X = np.concatenate([X_test, rng.uniform(lo, hi, (10_000, X_train.shape[1]))])
    q = reference.quantize_inputs(blob, X)
    mean_q, var_q, var_y_q = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    _, f_mean, f_sd = float_ensemble(model, blob, q)
    floor = float64_floor(model, blob, q)  # IS §5's rounding floor, which the samples cannot show
    floor_bound = blob.mean_scale * np.sqrt(reference.floor_error_bound(blob))
    bound = blob.mean_scale * reference.error_bound(blob)
    assert np.max(np.abs(mean - f_mean)) <= bound
    assert np.max(np.abs(sd - np.sqrt(f_sd**2 + floor))) <= bound + blob.mean_scale + floor_bound
    # The linear model's weights sit on one level each, so its floor is what its ensemble's spread lacks
    # (docs/trainer.md §7); the rff models' q are spread wider than a grid cell, so they need none.
    if kind == "linear":
        assert blob.has_floor and np.max(floor) > 100 * (bound + blob.mean_scale + floor_bound) ** 2
    else:
        assert not blob.has_floor
    # The bound is negligible next to the model's own error on held-out rows.
    rmse = np.sqrt(np.mean((mean[: len(y_test)] - y_test) ** 2))
    assert bound < 0.01 * rmse, (bound, rmse)
    # Predictive sd includes the noise: at least the ensemble sd, and close to the float one.
    _, sd_y = reference.to_target_units(blob, mean_q, var_y_q)
    noise = np.mean(model.posterior_.sample(16, seed=3).noise_variance) * model.y_scale_**2
    assert np.all(sd_y >= sd)
    assert (
        np.max(np.abs(sd_y - np.sqrt(f_sd**2 + floor + noise))) <= bound + 2 * blob.mean_scale + floor_bound
    )


def test_exact_moment_mode_tracks_the_float_moments_of_a_mean_field_model(diabetes):
    model = _fit("rff", diabetes)
    blob = parse(pack(model, n_samples=4, exact=True))
    _, _, X_test, _ = diabetes
    q = reference.quantize_inputs(blob, X_test)
    mean_q, var_q, var_y_q = reference.predict_exact(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    f_mean, f_var = model.posterior_.predict_moments(
        model.feature_map_.transform(reference.dequantize_inputs(blob, q)), include_noise=False
    )
    f_mean = f_mean * model.y_scale_ + model.y_offset_
    f_sd = np.sqrt(f_var) * model.y_scale_
    # IS §6: μ is quantised to 2^-13 of a level (half a step), each feature is off by at most ε_φ/2^15 of
    # the amplitude (IS §8), and the result is rounded once more.
    mu = model.posterior_.weight_moments()[0] / model.grid_scale_
    eps_phi = reference.feature_error(blob)
    level_unit = model.y_scale_ * model.grid_scale_ * model.feature_map_.amplitude
    mean_bound = level_unit * (np.sum(np.abs(mu)) * eps_phi / 32768 + len(mu) * 2.0**-13) + blob.mean_scale
    assert np.max(np.abs(mean - f_mean)) <= mean_bound
    assert mean_bound < 0.01 * f_sd.mean()
    # The variances are quantised to 2^-11 of a level² and φ² loses at most one unit of 2^-15.
    assert np.max(np.abs(sd - f_sd) / f_sd) <= 0.01
    _, sd_y = reference.to_target_units(blob, mean_q, var_y_q)
    f_sd_y = np.sqrt(f_sd**2 + model.noise_variance_)
    assert np.max(np.abs(sd_y - f_sd_y) / f_sd_y) <= 0.002


def test_training_range_is_the_default_clipping_range(diabetes):
    model = _fit("linear", diabetes)
    blob = parse(pack(model, n_samples=2))
    X_train = diabetes[0]
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    assert np.allclose(lo, X_train.min(axis=0)) and np.allclose(hi, X_train.max(axis=0))
