"""A fit does not depend on where the data's origin is or which units they are in.

Shifting the target and every input by c (up to 1e12) or scaling them (1e-170 to 1e300) fits the same
model up to that transform: the same posterior, predictions that transform with the data, and the
same ELBO of the standardised problem (the ELBO of the raw data differs by the Jacobian, −n·log s).
Differences allowed are what float64 itself loses in storing the shifted data (a few ulps of c).
"""

from __future__ import annotations

import numpy as np
import pytest

from direct_edge.trainer import DirectRegressor, FeatureMap
from direct_edge.trainer.features import InputMoments
from direct_edge.trainer.statistics import SufficientStatistics, array_batches, compute_statistics

N = 400


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, 3))
    y = 2 * X[:, 0] - X[:, 1] + 0.3 * rng.standard_normal(N)
    return X, y


def fit(X, y, features: str, precision: str = "float64") -> DirectRegressor:
    return DirectRegressor(
        features=features, n_features=32, random_state=0, max_iter=2000, precision=precision
    ).fit(X, y)


@pytest.fixture(scope="module")
def reference_fits(data):
    X, y = data
    return {(f, p): fit(X, y, f, p) for f in ("linear", "rff") for p in ("float64", "float32")}


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("features", ["linear", "rff"])
@pytest.mark.parametrize("c", [1e3, 1e6, 1e9, 1e12])
def test_shifting_target_and_inputs_fits_the_same_model(data, reference_fits, features, precision, c):
    """Before the sums were kept near the data, y + 1e9 gave E[σ²] 1e4 times too small."""
    X, y = data
    base = reference_fits[features, precision]
    model = fit(X + c, y + c, features, precision)
    lost = 64 * np.finfo(np.float64).eps * c  # what storing x + c and y + c already rounds away
    assert model.noise_variance_ == pytest.approx(base.noise_variance_, rel=1e-3 + lost)
    assert model.elbo_ == pytest.approx(base.elbo_, abs=1e-3 + N * lost)
    mean, sd = model.predict(X[:50] + c, return_std=True)
    want_mean, want_sd = base.predict(X[:50], return_std=True)
    # 1e-6 of sd(y), as for scaling below: the per-feature grids' optimum is flatter than one grid's,
    # and its answers for y and y + 1000 agree to 6e-7 sd(y), not to 1e-6 in y's units
    np.testing.assert_allclose(mean - c, want_mean, rtol=0, atol=1e-6 * y.std() + 100 * lost)
    np.testing.assert_allclose(sd, want_sd, rtol=1e-4 + lost)


@pytest.mark.parametrize("features", ["linear", "rff"])
@pytest.mark.parametrize(
    "y_scale, x_scale",
    [(1e-170, 1.0), (1e-28, 1e-28), (1e9, 1e-9), (1e160, 1.0), (1.0, 1e200), (1e-300, 1e300)],
)
def test_scaling_target_and_inputs_fits_the_same_model(data, reference_fits, features, y_scale, x_scale):
    """Every magnitude float64 holds fits the same model up to the scale; inputs in units of 1e-28
    are informative, not constant."""
    X, y = data
    base = reference_fits[features, "float64"]
    model = fit(X * x_scale, y * y_scale, features)
    assert model.elbo_ == pytest.approx(base.elbo_, rel=1e-9, abs=1e-6)
    if 1e-150 < y_scale < 1e150:  # a variance in target units is representable
        assert model.noise_variance_ / y_scale**2 == pytest.approx(base.noise_variance_, rel=1e-6)
    mean, sd = model.predict(X[:50] * x_scale, return_std=True)
    want_mean, want_sd = base.predict(X[:50], return_std=True)
    # Scaling by a factor that is not a power of two rounds every value once; the optimiser's
    # answer moves by about 1e-9 of sd(y) for it.
    np.testing.assert_allclose(mean / y_scale, want_mean, rtol=0, atol=1e-6 * y.std())
    np.testing.assert_allclose(sd / y_scale, want_sd, rtol=1e-6)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("c", [0.0, 1e9, 1e12, -1e15])
def test_standardised_statistics_do_not_depend_on_the_target_offset(data, precision, c):
    X, y = data
    fmap = FeatureMap.rff(X.mean(axis=0), X.std(axis=0), 32, lengthscale=1.0, seed=0)
    want = compute_statistics(fmap, array_batches(X, y, 100), 100, precision=precision)
    want = want.standardised(y.mean(), y.std())
    shifted = y + c
    got = compute_statistics(fmap, array_batches(X, shifted, 100), 100, precision=precision, threads=2)
    got = got.standardised(float(np.mean(shifted - c)) + c, y.std())
    lost = 16 * np.finfo(np.float64).eps * abs(c) / y.std()
    assert got.y_sq == pytest.approx(want.y_sq, rel=1e-12 + lost)
    assert got.y_sum == pytest.approx(want.y_sum, abs=1e-9 + N * lost)
    np.testing.assert_allclose(got.phi_y, want.phi_y, rtol=0, atol=(1e-9 + lost) * np.abs(want.phi_y).max())


def test_units_of_statistics_are_exact_algebra():
    """in_units and standardised against sums computed directly on a small problem."""
    rng = np.random.default_rng(3)
    Phi = rng.normal(size=(50, 4))
    y = 3e6 + rng.normal(size=50)
    stats = SufficientStatistics.from_basis(Phi, y, chunk_rows=7)
    for c, k in [(3e6, 2.0), (0.0, 1.0), (1e3, 1e-3)]:
        u = (y - c) / k
        got = stats.in_units(c, k)
        np.testing.assert_allclose(got.phi_y, Phi.T @ u, rtol=1e-9)
        assert got.y_sq == pytest.approx(u @ u, rel=1e-9)
        assert got.y_sum == pytest.approx(u.sum(), rel=1e-9, abs=1e-9)
    assert stats.y_mean == pytest.approx(y.mean(), rel=1e-15)
    assert stats.y_sd == pytest.approx(y.std(), rel=1e-9)


@pytest.mark.parametrize("scale", [1e-300, 1e-28, 1.0, 1e200, 1e300])
def test_input_moments_at_any_magnitude(scale):
    """Neither the sums nor the squared deviations overflow or underflow, and a column of tiny or
    huge values is informative, not constant."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 2)) * scale
    X[:, 1] = 5.0 * scale  # constant
    moments = InputMoments()
    for start in range(0, 1000, 128):
        moments.update(X[start : start + 128])
    offset, sd = moments.offset_and_scale()
    assert offset[0] / scale == pytest.approx(np.mean(X[:, 0] / scale), rel=1e-12, abs=1e-12)
    assert sd[0] / scale == pytest.approx(np.std(X[:, 0] / scale), rel=1e-12)
    assert sd[1] == offset[1] == 5.0 * scale  # constant: its own magnitude is the scale


def test_an_input_near_the_largest_float_does_not_overflow():
    X = np.array([[1.7e308], [-1.7e308], [1.0e308], [0.0]])
    offset, sd = InputMoments().update(X).offset_and_scale()
    assert np.isfinite(offset).all() and np.isfinite(sd).all() and sd[0] > 1e308


def test_the_dask_path_is_offset_free_too(data, reference_fits):
    """Per-partition statistics in their own units, merged: the same fit as in memory at y + 1e12."""
    da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
    X, y = data
    c = 1e12
    model = DirectRegressor(features="linear", random_state=0, max_iter=2000).fit(
        da.from_array(X + c, chunks=(97, 3)), da.from_array(y + c, chunks=97)
    )
    base = reference_fits["linear", "float64"]
    assert model.noise_variance_ == pytest.approx(base.noise_variance_, rel=1e-3)
    mean = model.predict(X[:50] + c)
    np.testing.assert_allclose(
        mean - c, base.predict(X[:50]), rtol=0, atol=1e-6 + 6400 * np.finfo(float).eps * c
    )
