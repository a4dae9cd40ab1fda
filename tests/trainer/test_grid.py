"""Weight grids, noise grids and priors (docs/trainer.md §2)."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from direct_edge.trainer import DataError, WeightGrid, noise_grid, prior_log_probs
from direct_edge.trainer.grid import normalise_log_probs


@pytest.mark.parametrize("bits", range(2, 9))
def test_symmetric_grid_levels_are_plus_minus_two_to_the_k_minus_one_minus_one(bits):
    grid = WeightGrid.from_bits(bits, 0.3)
    half = 2 ** (bits - 1)
    np.testing.assert_array_equal(grid.levels, np.arange(-(half - 1), half))
    assert grid.levels.size == 2**bits - 1
    np.testing.assert_array_equal(grid.values, grid.levels * 0.3)
    assert grid.levels[grid.zero_index] == 0
    assert grid.bits == bits
    assert np.all(np.diff(grid.levels) == 1)


@pytest.mark.parametrize("bits", range(2, 9))
def test_asymmetric_grid_levels_are_the_twos_complement_range(bits):
    grid = WeightGrid.from_bits(bits, 1.5, symmetric=False)
    half = 2 ** (bits - 1)
    np.testing.assert_array_equal(grid.levels, np.arange(-half, half))
    assert grid.levels.size == 2**bits
    assert grid.bits == bits
    assert grid.levels[grid.zero_index] == 0
    # Every level fits the signed integer type of that width (int8 at 8 bits).
    assert np.array_equal(grid.levels.astype(np.int8), grid.levels)


def test_four_bit_grids_have_15_and_16_levels():
    assert WeightGrid.from_bits(4).levels.size == 15
    assert WeightGrid.from_bits(4, symmetric=False).levels.size == 16


@pytest.mark.parametrize("bits", [0, 1, 9, 16, -4, 4.0, "4"])
def test_bits_outside_two_to_eight_raise_data_error(bits):
    with pytest.raises(DataError):
        WeightGrid.from_bits(bits)


@pytest.mark.parametrize("scale", [0.0, -1.0, np.inf, np.nan])
def test_non_positive_or_non_finite_scale_raises_data_error(scale):
    with pytest.raises(DataError):
        WeightGrid.from_bits(4, scale)


GRID_VALUES = [
    WeightGrid.from_bits(4, 0.25).values,
    WeightGrid.from_bits(3, 1.0, symmetric=False).values,
    WeightGrid.from_bits(8, 0.01).values,
    np.array([[-2.0, -0.5, 0.0, 0.3, 1.0], [-0.1, 0.0, 0.2, 0.4, 3.0]]),
]


@pytest.mark.parametrize("values", GRID_VALUES)
@pytest.mark.parametrize("kind", ["uniform", "gaussian", "sparse"])
def test_priors_are_normalised_per_row(values, kind):
    logp = prior_log_probs(values, kind, scale=0.7, zero_mass=0.25)
    assert logp.shape == values.shape
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(logsumexp(logp, axis=-1), 0.0, atol=1e-13)


@pytest.mark.parametrize("values", GRID_VALUES)
def test_uniform_prior_is_one_over_m(values):
    logp = prior_log_probs(values, "uniform")
    np.testing.assert_allclose(logp, -np.log(values.shape[-1]), rtol=1e-14)


@pytest.mark.parametrize("values", GRID_VALUES)
@pytest.mark.parametrize("scale", [0.1, 0.5, 3.0])
def test_gaussian_prior_is_the_normalised_normal_density_at_grid_points(values, scale):
    density = norm.pdf(values, loc=0.0, scale=scale)
    expected = density / density.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(np.exp(prior_log_probs(values, "gaussian", scale=scale)), expected, rtol=1e-12)


@pytest.mark.parametrize("values", GRID_VALUES)
@pytest.mark.parametrize("zero_mass", [0.0, 0.3, 0.9])
def test_sparse_prior_mixes_the_gaussian_with_a_point_mass_at_zero(values, zero_mass):
    p = np.exp(prior_log_probs(values, "sparse", scale=0.5, zero_mass=zero_mass))
    gauss = np.exp(prior_log_probs(values, "gaussian", scale=0.5))
    is_zero = values == 0.0
    assert np.all(p[is_zero] >= zero_mass)
    np.testing.assert_allclose(p, (1 - zero_mass) * gauss + zero_mass * is_zero, rtol=1e-12)
    # More zero mass makes level 0 more likely than under the plain gaussian prior.
    if zero_mass > 0:
        assert np.all(p[is_zero] > gauss[is_zero])


def test_invalid_priors_raise_data_error():
    values = WeightGrid.from_bits(4).values
    with pytest.raises(DataError):
        prior_log_probs(values, "laplace")
    with pytest.raises(DataError):
        prior_log_probs(values, "gaussian", scale=0.0)
    with pytest.raises(DataError):
        prior_log_probs(values, "sparse", zero_mass=1.0)
    with pytest.raises(DataError):
        prior_log_probs(values + 0.5, "sparse")  # no zero level


def test_noise_grid_is_log_spaced_between_its_ends():
    grid = noise_grid(26, 1e-5, 1.0)
    assert grid.shape == (26,)
    assert grid[0] == pytest.approx(1e-5, rel=1e-14) and grid[-1] == pytest.approx(1.0, rel=1e-14)
    ratios = grid[1:] / grid[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert noise_grid(1, 0.5, 0.5).tolist() == [0.5]
    with pytest.raises(DataError):
        noise_grid(0)
    with pytest.raises(DataError):
        noise_grid(5, 1.0, 0.5)


def test_normalise_log_probs_renormalises_and_rejects_non_finite():
    out = normalise_log_probs(np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]]), "p")
    np.testing.assert_allclose(logsumexp(out, axis=-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(np.exp(out[1]), 1 / 3, rtol=1e-14)
    with pytest.raises(DataError):
        normalise_log_probs(np.array([0.0, -np.inf]), "p")
