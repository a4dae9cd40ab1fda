"""The predictive sd grows off the data (docs/trainer.md §7): the grid's rounding floor, end to end
through DirectRegressor, against the float conjugate model on the same features."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import BayesianRidge

from direct_edge.trainer import DirectRegressor

Z95 = 1.959963984540054


def coverage(y, mean, sd) -> float:
    return float(np.mean(np.abs(y - mean) <= Z95 * sd))


def fit(X, y, **options) -> DirectRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return DirectRegressor(features="linear", **options).fit(X, y)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("y_offset", [0.0, 1e4])
def test_intervals_cover_outside_the_training_range(seed, y_offset):
    # The example: x in [1000, 1010]; every weight's q sits on one level, so q's own variance is zero
    # and 95 % intervals covered 0.07 of the points outside.
    rng = np.random.default_rng(seed)
    x = rng.uniform(1000, 1010, 200)
    truth = lambda x: y_offset + 0.3 * (x - 1005)  # noqa: E731
    model = fit(x[:, None], truth(x) + 0.5 * rng.standard_normal(200))
    inside = rng.uniform(1000, 1010, 2000)
    outside = np.concatenate([rng.uniform(0, 1000, 1000), rng.uniform(1010, 2000, 1000)])
    for xt, low, high in ((inside, 0.93, 0.97), (outside, 0.90, 1.0)):
        yt = truth(xt) + 0.5 * rng.standard_normal(xt.size)
        mean, sd = model.predict(xt[:, None], return_std=True)
        assert low <= coverage(yt, mean, sd) <= high
    # q's own moments: the failure the floor fixes (the test can tell the two apart).
    yt = truth(outside) + 0.5 * rng.standard_normal(outside.size)
    mean, q_var = model.posterior_.predict_moments(
        model.feature_map_.transform(outside[:, None]), include_rounding=False
    )
    assert coverage(yt, mean * model.y_scale_ + model.y_offset_, np.sqrt(q_var) * model.y_scale_) < 0.5


def test_the_sd_grows_with_the_distance_like_the_float_model():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.uniform(1000, 1010, 300), rng.standard_normal(300)])
    y = 0.3 * (X[:, 0] - 1005) - 2.0 * X[:, 1] + 0.5 * rng.standard_normal(300)
    model = fit(X, y)
    far = np.column_stack([np.array([1005.0, 1100.0, 2000.0, -1000.0]), np.zeros(4)])
    _, sd = model.predict(far, return_std=True)
    noise_sd = np.sqrt(model.noise_variance_)
    assert sd[0] < 1.05 * noise_sd  # in the middle of the data, the noise
    assert sd[1] < sd[2] < sd[3]  # then monotone in |x − 1005|
    # Linear in the distance far away (the floor is a variance per weight times φ²) and within a
    # factor of 4 of BayesianRidge's sd on the same features (the grid step can only be wider than the
    # float posterior's sd when q sits on one level, so it errs on the safe side).
    Phi = model.feature_map_.transform(X)
    br = BayesianRidge(fit_intercept=False).fit(Phi, (y - model.y_offset_) / model.y_scale_)
    _, br_sd = br.predict(model.feature_map_.transform(far), return_std=True)
    br_sd = br_sd * model.y_scale_
    assert np.all(sd[2:] >= br_sd[2:]) and np.all(sd[2:] <= 4 * br_sd[2:])
    np.testing.assert_allclose(
        np.sqrt(sd[3] ** 2 - noise_sd**2) / np.sqrt(sd[2] ** 2 - noise_sd**2), 2005 / 995, rtol=0.01
    )
