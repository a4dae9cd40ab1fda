"""Posterior: exact predictive moments against enumeration, and sampling against q
(docs/trainer.md §7)."""

import numpy as np
import pytest

from direct_edge.trainer import DataError, WeightGrid
from direct_edge.trainer.posterior import Posterior, rounding_floor, sample_indices


def random_posterior(rng, r: int, b: int, grid: WeightGrid | np.ndarray, K: int = 3, spread: float = 1.5):
    values = grid.values if isinstance(grid, WeightGrid) else grid
    values = np.broadcast_to(values, (b, values.shape[-1])).copy()
    m = values.shape[1]
    Q = np.exp(spread * rng.standard_normal((r, b, m)))
    Q /= Q.sum(axis=-1, keepdims=True)
    alpha = np.exp(rng.standard_normal(r))
    rho = np.exp(rng.standard_normal(K))
    return Posterior(
        grid=values,
        q_weights=Q,
        mixture_weights=alpha / alpha.sum(),
        noise=np.sort(rng.uniform(0.1, 2.0, K)),
        q_noise=rho / rho.sum(),
        weight_grid=grid if isinstance(grid, WeightGrid) else None,
    )


GRIDS = [
    WeightGrid.from_bits(2, 0.5),
    WeightGrid.from_bits(2, 0.3, symmetric=False),
    WeightGrid.from_bits(3, 0.2),
    np.array([[-1.0, -0.2, 0.0, 0.7, 1.3], [-0.5, 0.0, 0.1, 0.2, 2.0], [-3.0, -1.0, 0.0, 1.0, 3.0]]),
]


@pytest.mark.parametrize("grid", GRIDS, ids=["bits2", "bits2-asym", "bits3", "per-weight"])
@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("include_noise", [False, True])
def test_predictive_moments_equal_enumeration(brute, grid, r, include_noise):
    rng = np.random.default_rng(r + 10 * include_noise)
    b = 3
    post = random_posterior(rng, r, b, grid)
    Phi_test = rng.standard_normal((7, b))
    mean, var = post.predict_moments(Phi_test, include_noise=include_noise, include_rounding=False)
    e_mean, e_var = brute.predictive_moments(
        post.grid, post.q_weights, post.mixture_weights, post.noise, post.q_noise, Phi_test, include_noise
    )
    np.testing.assert_allclose(mean, e_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var, e_var, rtol=1e-10, atol=1e-12)


def test_noise_adds_the_expected_noise_variance():
    post = random_posterior(np.random.default_rng(1), 2, 4, WeightGrid.from_bits(3, 0.2))
    Phi = np.random.default_rng(2).standard_normal((5, 4))
    _, v_f = post.predict_moments(Phi, include_noise=False)
    _, v_y = post.predict_moments(Phi, include_noise=True)
    np.testing.assert_allclose(v_y - v_f, post.q_noise @ post.noise, rtol=1e-12)
    assert post.noise_variance_mean == pytest.approx(post.q_noise @ post.noise, rel=1e-15)


def test_weight_moments_equal_enumeration(brute):
    rng = np.random.default_rng(3)
    post = random_posterior(rng, 3, 3, WeightGrid.from_bits(2, 0.5, symmetric=False))
    mean, var = post.weight_moments()
    e_mean, e_var = brute.predictive_moments(
        post.grid, post.q_weights, post.mixture_weights, post.noise, post.q_noise, np.eye(3), False
    )
    np.testing.assert_allclose(mean, e_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(var, e_var, rtol=1e-10, atol=1e-14)


def test_predict_moments_rejects_the_wrong_number_of_features():
    post = random_posterior(np.random.default_rng(0), 1, 4, WeightGrid.from_bits(2))
    with pytest.raises(DataError):
        post.predict_moments(np.ones((3, 5)))


# ---- sampling ---------------------------------------------------------------------------------------


def test_samples_are_reproducible_for_a_seed_and_differ_between_seeds():
    post = random_posterior(np.random.default_rng(4), 2, 6, WeightGrid.from_bits(4, 0.1))
    a, b, c = post.sample(200, seed=1), post.sample(200, seed=1), post.sample(200, seed=2)
    for name in ("index", "weights", "levels", "noise_variance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert np.mean(a.index != c.index) > 0.3


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_sample_levels_are_int8_on_the_grid(bits, symmetric):
    grid = WeightGrid.from_bits(bits, 0.05, symmetric=symmetric)
    post = random_posterior(np.random.default_rng(bits), 2, 5, grid, spread=0.5)
    samples = post.sample(300, seed=0)
    assert samples.levels.dtype == np.int8
    assert samples.levels.shape == (300, 5) and samples.weights.shape == (300, 5)
    assert samples.index.shape == (300, 5) and samples.noise_variance.shape == (300,)
    assert np.all(np.isin(samples.levels, grid.levels))
    np.testing.assert_array_equal(samples.levels, grid.levels[samples.index])
    np.testing.assert_array_equal(samples.weights, samples.levels * grid.scale)
    assert np.all(np.isin(samples.noise_variance, post.noise))


def test_samples_of_a_per_weight_grid_have_no_levels_but_grid_values():
    grid = GRIDS[-1]
    post = random_posterior(np.random.default_rng(6), 2, 3, grid)
    samples = post.sample(100, seed=0)
    assert samples.levels is None
    np.testing.assert_array_equal(samples.weights, np.take_along_axis(grid, samples.index.T, axis=1).T)


def within_binomial_error(counts: np.ndarray, p: np.ndarray, S: int, z: float = 5.0) -> bool:
    se = np.sqrt(p * (1 - p) / S)
    return bool(np.all(np.abs(counts / S - p) <= z * se + 1e-12))


@pytest.mark.parametrize("r", [1, 3])
def test_sample_frequencies_converge_to_q(r):
    rng = np.random.default_rng(7 + r)
    b, S = 4, 20000
    post = random_posterior(rng, r, b, WeightGrid.from_bits(3, 0.1), K=4)
    m = post.grid.shape[1]
    samples = post.sample(S, seed=123)
    marginal = np.einsum("k,kij->ij", post.mixture_weights, post.q_weights)
    for i in range(b):
        counts = np.bincount(samples.index[:, i], minlength=m)
        assert within_binomial_error(counts, marginal[i], S)
    # Pairs of weights come from the same component: joint frequencies are the mixture's, not the
    # product of the marginals.
    joint = np.einsum("k,ka,kb->ab", post.mixture_weights, post.q_weights[:, 0], post.q_weights[:, 1])
    counts = np.zeros((m, m))
    np.add.at(counts, (samples.index[:, 0], samples.index[:, 1]), 1)
    assert within_binomial_error(counts, joint, S)
    noise_counts = np.array([np.sum(samples.noise_variance == v) for v in post.noise])
    assert within_binomial_error(noise_counts, post.q_noise, S)


def test_mixture_samples_are_not_drawn_from_the_product_of_marginals():
    """Two sharply different components: independent draws per weight would mix them."""
    Q = np.full((2, 2, 3), 1e-6)
    Q[0, :, 0] = 1.0
    Q[1, :, 2] = 1.0
    Q /= Q.sum(axis=-1, keepdims=True)
    grid = WeightGrid.from_bits(2)
    post = Posterior(
        np.broadcast_to(grid.values, (2, 3)), Q, np.array([0.5, 0.5]), np.ones(1), np.ones(1), grid
    )
    idx = post.sample(4000, seed=0).index
    assert np.mean(idx[:, 0] == idx[:, 1]) > 0.999
    assert 0.45 < np.mean(idx[:, 0] == 0) < 0.55


def test_sample_indices_follow_q_for_each_weight():
    rng = np.random.default_rng(8)
    Q = np.array([[[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    S = 200000  # binomial errors of ~1e-3: a bias of a few 1e-3 in the inverse CDF shows
    idx = sample_indices(Q, np.ones(1), S, rng)
    assert idx.shape == (S, 3)
    for i in range(3):
        counts = np.bincount(idx[:, i], minlength=4)
        assert np.all(counts[Q[0, i] == 0] == 0)  # zero-probability levels are never drawn
        assert within_binomial_error(counts, Q[0, i], S)


def test_sparsity_is_the_share_of_zero_weights_and_tracks_the_zero_mass():
    rng = np.random.default_rng(9)
    grid = WeightGrid.from_bits(4, 0.1)
    post = random_posterior(rng, 2, 10, grid)
    S = 5000
    samples = post.sample(S, seed=3)
    assert samples.sparsity == np.mean(samples.levels == 0)
    assert samples.sparsity == np.mean(samples.weights == 0.0)
    expected = float(np.mean(post.mixture_weights @ post.q_weights[:, :, grid.zero_index]))
    assert abs(samples.sparsity - expected) < 5 * np.sqrt(expected * (1 - expected) / S) + 1e-3


def test_mode_is_the_argmax_of_q():
    rng = np.random.default_rng(10)
    post = random_posterior(rng, 1, 8, WeightGrid.from_bits(4, 0.1))
    np.testing.assert_array_equal(post.mode(), np.argmax(post.q_weights[0], axis=-1))
    mix = random_posterior(rng, 3, 8, WeightGrid.from_bits(4, 0.1))
    heaviest = int(np.argmax(mix.mixture_weights))
    np.testing.assert_array_equal(mix.mode(), np.argmax(mix.q_weights[heaviest], axis=-1))


def test_sample_rejects_zero_samples():
    post = random_posterior(np.random.default_rng(0), 1, 2, WeightGrid.from_bits(2))
    with pytest.raises(DataError):
        post.sample(0)


# ---- the grid's rounding floor (docs/trainer.md §7) --------------------------------------------------


def one_level_posterior(grid: WeightGrid, index: np.ndarray, r: int = 1) -> Posterior:
    """q on one level per weight (what a weight pinned by many rows looks like)."""
    b, m = index.size, grid.levels.size
    Q = np.zeros((r, b, m))
    Q[:, np.arange(b), index] = 1.0
    values = np.broadcast_to(grid.values, (b, m)).copy()
    floor = rounding_floor(values, np.full(b, np.inf))  # a conjugate posterior wider than every cell
    return Posterior(values, Q, np.full(r, 1.0 / r), np.array([0.25]), np.array([1.0]), grid, floor)


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("gains", [None, [1.0, 0.25, 2**-15]])
def test_a_weight_on_one_level_keeps_the_variance_of_its_grid_cell(r, gains):
    grid = WeightGrid.from_bits(4, 0.3)
    if gains is not None:
        grid = grid.with_gains(np.array(gains))
    post = one_level_posterior(grid, np.array([7, 10, 2]), r)
    step = 0.3 * (np.ones(3) if gains is None else grid.gains)
    Phi = np.random.default_rng(0).standard_normal((6, 3)) * [1.0, 30.0, 1000.0]
    mean, var = post.predict_moments(Phi, include_noise=False)
    np.testing.assert_allclose(var, (Phi**2) @ (step**2 / 12), rtol=1e-12)
    _, q_var = post.predict_moments(Phi, include_noise=False, include_rounding=False)
    np.testing.assert_array_equal(q_var, 0.0)
    np.testing.assert_allclose(mean, Phi @ (grid.levels[[7, 10, 2]] * step), rtol=1e-12)
    w_mean, w_var = post.predictive_weight_moments()
    np.testing.assert_allclose(w_var, step**2 / 12, rtol=1e-12)
    np.testing.assert_array_equal(w_mean, post.weight_moments()[0])


def test_a_spread_weight_keeps_its_own_variance():
    # Uniform over 15 levels: Var = (15² − 1)/12 = 18.67 levels², far above the floor of 1/12.
    grid = WeightGrid.from_bits(4, 0.5)
    values = np.broadcast_to(grid.values, (2, 15)).copy()
    post = Posterior(
        values,
        np.full((1, 2, 15), 1 / 15),
        np.ones(1),
        np.ones(1),
        np.ones(1),
        grid,
        rounding_floor(values, np.full(2, np.inf)),
    )
    Phi = np.random.default_rng(1).standard_normal((5, 2))
    with_floor = post.predict_moments(Phi)
    without = post.predict_moments(Phi, include_rounding=False)
    np.testing.assert_array_equal(with_floor[0], without[0])
    np.testing.assert_array_equal(with_floor[1], without[1])
    np.testing.assert_allclose(post.predictive_weight_moments()[1], 0.25 * 224 / 12, rtol=1e-12)


@pytest.mark.parametrize("r", [1, 3])
def test_predictive_weight_moments_are_the_predictive_moments_of_unit_features(r):
    # The exporters' exact sections hold predictive_weight_moments; on φ = e_i they must be what
    # predict_moments says, for a mixture too (law of total variance per weight).
    rng = np.random.default_rng(r)
    post = random_posterior(rng, r, 4, WeightGrid.from_bits(4, 0.2), spread=4.0)
    post.variance_floor = rounding_floor(post.grid, np.array([np.inf, 0.0, 1e-4, 1.0]))
    mean, var = post.predict_moments(np.eye(4), include_noise=False)
    w_mean, w_var = post.predictive_weight_moments()
    np.testing.assert_allclose(w_mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w_var, var, rtol=1e-12, atol=1e-15)
    assert np.all(w_var >= post.variance_floor * (1 - 1e-12))


def test_the_floor_is_a_cell_of_the_grid_capped_by_the_conjugate_variance():
    grid = WeightGrid.from_bits(4, 0.3).with_gains(np.array([1.0, 0.5, 0.5, 2**-15]))
    values = grid.values
    step = 0.3 * grid.gains
    conjugate = np.array([1.0, 0.0, 1e-4, 1.0])
    np.testing.assert_allclose(rounding_floor(values, conjugate), [0.09 / 12, 0.0, 1e-4, step[3] ** 2 / 12])
    # The distance of q's mean from the conjugate mean counts as error too (variance + offset²).
    offset = np.array([0.0, 0.03, 0.01, 0.0])
    np.testing.assert_allclose(
        rounding_floor(values, conjugate, offset), [0.09 / 12, 0.0009, 2e-4, step[3] ** 2 / 12]
    )
    # A weight pinned exactly (a constant target's zero weights: conjugate variance 0) gets no floor.
    np.testing.assert_array_equal(rounding_floor(values, np.zeros(4)), 0.0)
    # Without a floor (files written before it), the predictive moments are q's own.
    post = one_level_posterior(WeightGrid.from_bits(4, 0.3), np.array([7, 9]))
    post.variance_floor = None
    Phi = np.ones((2, 2))
    np.testing.assert_array_equal(
        post.predict_moments(Phi)[1], post.predict_moments(Phi, include_rounding=False)[1]
    )
