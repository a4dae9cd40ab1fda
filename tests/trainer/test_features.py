"""Feature maps against their definition (docs/trainer.md §3) and the RBF kernel they approximate."""

import json

import numpy as np
import pytest

from direct_edge.trainer import DataError, FeatureMap


def standardised(X, fmap):
    return (X - fmap.input_offset) / fmap.input_scale


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    X = rng.normal([1.0, -3.0, 10.0], [2.0, 0.5, 4.0], (40, 3))
    return X, X.mean(axis=0), X.std(axis=0)


def test_linear_map_is_standardised_inputs_and_a_bias(inputs):
    X, offset, scale = inputs
    fmap = FeatureMap.linear(offset, scale)
    Phi = fmap.transform(X)
    assert Phi.shape == (40, 4) and fmap.n_features == 4
    np.testing.assert_array_equal(Phi[:, :3], (X - offset) / scale)
    np.testing.assert_array_equal(Phi[:, 3], 1.0)
    np.testing.assert_allclose(Phi[:, :3].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Phi[:, :3].std(axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("lengthscale", [0.7, [0.5, 2.0, 1.0]])
def test_rff_map_is_amplitude_times_cos_and_sin_of_the_projection(inputs, lengthscale):
    X, offset, scale = inputs
    fmap = FeatureMap.rff(offset, scale, 64, lengthscale=lengthscale, seed=7)
    F = 32
    assert fmap.n_features == 64 and fmap.projection.shape == (3, F)
    assert fmap.amplitude == pytest.approx(F**-0.5, rel=1e-15)
    phase = standardised(X, fmap) @ fmap.projection
    expected = fmap.amplitude * np.hstack([np.cos(phase), np.sin(phase)])
    Phi = fmap.transform(X)
    # The fast sin/cos is within a few 1e-16 of libm for the same phase.
    np.testing.assert_allclose(Phi, expected, rtol=0, atol=1e-14)
    Phi32 = fmap.transform(X, dtype=np.float32)
    assert Phi32.dtype == np.float32
    np.testing.assert_array_equal(Phi32, Phi.astype(np.float32))


@pytest.mark.parametrize("lengthscale", [1e-3, 1e-6, 1e-9])
def test_rff_map_matches_libm_to_the_rounding_of_large_phases(lengthscale):
    """The fast sin/cos agrees with np.cos/np.sin of the same phase up to the rounding of the phase
    itself (a few ulp of Σ_j |z_j P_jf|, the size of its terms) plus a few 1e-16."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 2))
    fmap = FeatureMap.rff(np.zeros(2), np.ones(2), 16, lengthscale=lengthscale, seed=0)
    phase = X @ fmap.projection
    expected = fmap.amplitude * np.hstack([np.cos(phase), np.sin(phase)])
    terms = np.abs(X) @ np.abs(fmap.projection)
    tol = fmap.amplitude * (2e-15 + 3 * np.finfo(float).eps * np.hstack([terms, terms]))
    assert np.all(np.abs(fmap.transform(X) - expected) <= tol)


def test_rff_map_falls_back_to_libm_for_huge_phases():
    fmap = FeatureMap.rff(np.zeros(1), np.ones(1), 8, lengthscale=1e-16, seed=0)
    X = np.array([[0.0], [1.0], [-3.0]])
    phase = X @ fmap.projection
    assert np.max(np.abs(phase)) > 1e15
    expected = fmap.amplitude * np.hstack([np.cos(phase), np.sin(phase)])
    np.testing.assert_allclose(fmap.transform(X), expected, rtol=0, atol=1e-15)


def test_rff_features_have_unit_norm_per_row(inputs):
    X, offset, scale = inputs
    rng = np.random.default_rng(3)
    X = np.vstack([X, rng.normal(0, 100.0, (20, 3))])  # far outside the training range too
    Phi = FeatureMap.rff(offset, scale, 50, lengthscale=[0.3, 1.0, 3.0], seed=1).transform(X)
    np.testing.assert_allclose(np.sum(Phi**2, axis=1), 1.0, rtol=0, atol=1e-13)


def test_rff_projection_is_seeded_standard_normal_over_the_lengthscales():
    offset, scale = np.zeros(3), np.ones(3)
    ell = np.array([0.5, 2.0, 1.0])
    fmap = FeatureMap.rff(offset, scale, 20, lengthscale=ell, seed=42)
    omega = np.random.default_rng(42).standard_normal((3, 10))
    np.testing.assert_allclose(fmap.projection, omega / ell[:, None], rtol=1e-15)
    iso = FeatureMap.rff(offset, scale, 20, lengthscale=0.5, seed=42)
    np.testing.assert_allclose(iso.projection, omega / 0.5, rtol=1e-15)
    assert fmap.info["lengthscale"] == ell.tolist() and fmap.info["seed"] == 42


@pytest.mark.parametrize("lengthscale", [1.0, [0.6, 1.5]])
def test_rff_inner_products_approximate_the_rbf_kernel(lengthscale):
    """φ(x)ᵀφ(x') = (1/F) Σ_f cos(ω_fᵀ(z − z')/ℓ): a mean of F i.i.d. terms with mean
    k = exp(−‖(z − z')/ℓ‖²/2) and variance (1 + k⁴)/2 − k², so the error has that standard deviation
    over √F."""
    rng = np.random.default_rng(11)
    Z = rng.normal(0.0, 0.8, (12, 2))
    F = 20000
    fmap = FeatureMap.rff(np.zeros(2), np.ones(2), 2 * F, lengthscale=lengthscale, seed=5)
    Phi = fmap.transform(Z)
    approx = Phi @ Phi.T
    ell = np.broadcast_to(np.asarray(lengthscale, dtype=float), (2,))
    diff = (Z[:, None, :] - Z[None, :, :]) / ell
    k = np.exp(-0.5 * np.sum(diff**2, axis=-1))
    sd = np.sqrt(np.maximum((1 + k**4) / 2 - k**2, 0.0) / F)
    err = np.abs(approx - k)
    assert np.all(err <= 5 * sd + 1e-12), np.max(err / (sd + 1e-300))
    np.testing.assert_allclose(np.diag(approx), 1.0, atol=1e-12)
    # And it is a kernel of the standardised inputs, not a constant: the errors are far below the spread.
    assert np.max(err) < 0.05 * (k.max() - k.min())


def test_rff_kernel_error_shrinks_like_one_over_root_f():
    rng = np.random.default_rng(12)
    Z = rng.normal(0.0, 1.0, (15, 2))
    k = np.exp(-0.5 * np.sum((Z[:, None] - Z[None]) ** 2, axis=-1))
    off = ~np.eye(15, dtype=bool)
    rms = []
    for F in (100, 10000):
        errs = []
        for seed in range(5):
            Phi = FeatureMap.rff(np.zeros(2), np.ones(2), 2 * F, seed=seed).transform(Z)
            errs.append(((Phi @ Phi.T - k)[off]) ** 2)
        rms.append(np.sqrt(np.mean(errs)))
    # 100× more frequencies: 10× smaller error (allow 5–20× for the randomness).
    assert 5.0 < rms[0] / rms[1] < 20.0, rms


def test_same_seed_gives_the_same_map_and_another_seed_a_different_one(inputs):
    X, offset, scale = inputs
    a = FeatureMap.rff(offset, scale, 16, lengthscale=1.0, seed=3)
    b = FeatureMap.rff(offset, scale, 16, lengthscale=1.0, seed=3)
    c = FeatureMap.rff(offset, scale, 16, lengthscale=1.0, seed=4)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert not np.allclose(a.projection, c.projection)
    assert np.max(np.abs(a.transform(X) - c.transform(X))) > 0.1


@pytest.mark.parametrize("kind", ["linear", "rff"])
def test_to_arrays_from_arrays_round_trip(inputs, kind):
    X, offset, scale = inputs
    if kind == "linear":
        fmap = FeatureMap.linear(offset, scale)
    else:
        fmap = FeatureMap.rff(offset, scale, 12, lengthscale=[1.0, 2.0, 0.5], seed=9)
    meta, arrays = fmap.to_arrays()
    meta = json.loads(json.dumps(meta))  # the metadata is JSON-able
    back = FeatureMap.from_arrays(meta, {k: np.array(v) for k, v in arrays.items()})
    assert back.kind == fmap.kind and back.n_features == fmap.n_features
    assert back.amplitude == fmap.amplitude and back.info == fmap.info
    np.testing.assert_array_equal(back.transform(X), fmap.transform(X))


def test_invalid_maps_and_inputs_raise_data_error(inputs):
    X, offset, scale = inputs
    with pytest.raises(DataError):
        FeatureMap.rff(offset, scale, 7)
    with pytest.raises(DataError):
        FeatureMap.rff(offset, scale, 8, lengthscale=[1.0, 0.0, 1.0])
    with pytest.raises(DataError):
        FeatureMap("poly", offset, scale)
    with pytest.raises(DataError):
        FeatureMap.linear(offset, scale).transform(X[:, :2])


@pytest.mark.parametrize("lengthscale", [1.0, 0.01])
def test_float32_rff_kernel_is_within_2e7_of_the_float64_features(lengthscale):
    """The statistics pass's float32 kernel (docs/trainer.md §4): cos block then sin block, without
    the amplitude, accurate to float32 whatever the size of the phase (here up to ~3e3 rad)."""
    from direct_edge.trainer.features import _RffKernel

    rng = np.random.default_rng(4)
    X = rng.normal(0.0, 3.0, (500, 3))
    fmap = FeatureMap.rff(np.zeros(3), np.ones(3), 2 * 300, lengthscale=lengthscale, seed=1)
    out = np.full((500, 600 + 2), np.nan, dtype=np.float32)
    _RffKernel(fmap).unit_features_float32(X, out)
    assert np.all(np.isnan(out[:, 600:]))  # only the first 2F columns are written
    exact = fmap.transform(X) / fmap.amplitude
    err = np.max(np.abs(out[:, :600].astype(np.float64) - exact))
    assert err < 2.5e-7
    assert err > 0  # float32 really
