"""Sufficient statistics: streaming equals one-shot, merging, exact target standardisation
(docs/trainer.md §4)."""

import numpy as np
import pytest

from direct_edge.trainer import DataError, FeatureMap
from direct_edge.trainer.features import InputMoments
from direct_edge.trainer.statistics import (
    SufficientStatistics,
    array_batches,
    compute_statistics,
    iter_chunks,
)

REL = 1e-10


def assert_stats_close(a: SufficientStatistics, b: SufficientStatistics, rel: float = REL) -> None:
    assert a.n == b.n
    for name in ("gram", "phi_y", "phi_sum"):
        x, y = getattr(a, name), getattr(b, name)
        # Entries near zero (e.g. cos-sin cross terms) are compared on the scale of the whole array.
        np.testing.assert_allclose(x, y, rtol=rel, atol=rel * np.max(np.abs(y)), err_msg=name)
    assert a.y_sq == pytest.approx(b.y_sq, rel=rel)
    assert a.y_sum == pytest.approx(b.y_sum, rel=rel, abs=rel * np.sqrt(b.y_sq))


@pytest.fixture(params=["linear", "rff"])
def problem(request):
    rng = np.random.default_rng(0)
    n, d = 203, 3
    X = rng.normal(2.0, 3.0, (n, d))
    y = np.sin(X[:, 0]) + X[:, 1] + 5.0 + 0.1 * rng.standard_normal(n)
    offset, scale = X.mean(axis=0), X.std(axis=0)
    if request.param == "linear":
        fmap = FeatureMap.linear(offset, scale)
    else:
        fmap = FeatureMap.rff(offset, scale, 24, lengthscale=1.3, seed=3)
    return fmap, X, y


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_chunked_statistics_equal_one_shot_statistics(problem, chunk_rows):
    fmap, X, y = problem
    whole = SufficientStatistics.from_basis(fmap.transform(X), y)
    # Batches of 13 rows re-cut into chunks of chunk_rows.
    streamed = compute_statistics(fmap, array_batches(X, y, 13), chunk_rows=chunk_rows)
    assert_stats_close(streamed, whole)
    Phi = fmap.transform(X)
    np.testing.assert_allclose(whole.gram, Phi.T @ Phi, rtol=REL, atol=REL * np.abs(whole.gram).max())
    np.testing.assert_allclose(whole.phi_y, Phi.T @ y, rtol=REL, atol=REL * np.abs(whole.phi_y).max())
    assert whole.y_sq == pytest.approx(y @ y, rel=REL)


def test_gram_is_exactly_symmetric(problem):
    fmap, X, y = problem
    for stats in (
        SufficientStatistics.from_basis(fmap.transform(X), y),
        compute_statistics(fmap, array_batches(X, y, 50), chunk_rows=7),
    ):
        assert np.array_equal(stats.gram, stats.gram.T)


def test_merged_statistics_of_two_halves_equal_the_whole(problem):
    fmap, X, y = problem
    whole = compute_statistics(fmap, array_batches(X, y))
    a = compute_statistics(fmap, array_batches(X[:90], y[:90]))
    b = compute_statistics(fmap, array_batches(X[90:], y[90:]))
    merged = a + b
    assert_stats_close(merged, whole)
    assert np.array_equal(merged.gram, merged.gram.T)


def test_merging_statistics_of_different_sizes_raises():
    a = SufficientStatistics.from_basis(np.ones((3, 2)), np.ones(3))
    b = SufficientStatistics.from_basis(np.ones((3, 4)), np.ones(3))
    with pytest.raises(DataError):
        _ = a + b


@pytest.mark.parametrize(("mu", "s"), [(0.0, 1.0), (5.3, 2.1), (-1.0, 0.01)])
def test_standardised_equals_statistics_of_the_standardised_target(problem, mu, s):
    fmap, X, y = problem
    raw = compute_statistics(fmap, array_batches(X, y, 64))
    direct = SufficientStatistics.from_basis(fmap.transform(X), (y - mu) / s)
    assert_stats_close(raw.standardised(mu, s), direct, rel=1e-9)


def test_moments_of_the_target_match_numpy(problem):
    fmap, X, y = problem
    stats = compute_statistics(fmap, array_batches(X, y, 64))
    assert stats.y_mean == pytest.approx(np.mean(y), rel=1e-12)
    assert stats.y_var == pytest.approx(np.var(y), rel=1e-9)
    standardised = stats.standardised(stats.y_mean, np.sqrt(stats.y_var))
    assert standardised.y_mean == pytest.approx(0.0, abs=1e-12)
    assert standardised.y_var == pytest.approx(1.0, rel=1e-9)


def test_residual_sum_of_squares_matches_direct_computation(problem):
    fmap, X, y = problem
    Phi = fmap.transform(X)
    stats = SufficientStatistics.from_basis(Phi, y)
    rng = np.random.default_rng(5)
    for _ in range(5):
        w = rng.standard_normal(Phi.shape[1])
        assert stats.residual_sum_of_squares(w) == pytest.approx(np.sum((y - Phi @ w) ** 2), rel=1e-10)
    # At the least-squares solution the closed form still holds (small value, cancellation).
    w_ls = np.linalg.lstsq(Phi, y, rcond=None)[0]
    direct = np.sum((y - Phi @ w_ls) ** 2)
    assert stats.residual_sum_of_squares(w_ls) == pytest.approx(direct, rel=1e-6, abs=1e-9 * (y @ y))


def test_statistics_from_a_memory_map_equal_in_memory(problem, tmp_path):
    fmap, X, y = problem
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert isinstance(Xm, np.memmap)
    streamed = compute_statistics(fmap, array_batches(Xm, ym, 50), chunk_rows=17)
    assert_stats_close(streamed, SufficientStatistics.from_basis(fmap.transform(X), y))


def test_iter_chunks_recuts_batches_without_losing_or_reordering_rows():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 2))
    y = np.arange(50.0)
    batches = [(X[:13], y[:13]), (X[13:13], y[13:13]), (X[13:], y[13:])]
    chunks = list(iter_chunks(batches, 6))
    assert all(len(cy) <= 6 for _, cy in chunks)
    np.testing.assert_array_equal(np.concatenate([cy for _, cy in chunks]), y)
    np.testing.assert_array_equal(np.concatenate([cx for cx, _ in chunks]), X)
    with pytest.raises(DataError):
        list(iter_chunks([(X[:5], y[:4])], 6))


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_input_moments_over_chunks_equal_numpy_moments_of_the_whole(chunk):
    rng = np.random.default_rng(2)
    X = rng.normal([1e3, -2.0, 0.0], [1.0, 5.0, 1e-3], (301, 3))
    X = np.column_stack([X, np.full(301, 7.5)])  # a constant column gets scale 1
    moments = InputMoments()
    for start in range(0, len(X), chunk):
        moments.update(X[start : start + chunk])
    moments.update(X[:0])  # an empty chunk changes nothing
    offset, scale = moments.offset_and_scale()
    assert moments.n == len(X)
    np.testing.assert_allclose(offset, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale[:3], X[:, :3].std(axis=0), rtol=1e-9)
    assert scale[3] == 1.0


def test_input_moments_without_rows_raise():
    with pytest.raises(DataError):
        InputMoments().offset_and_scale()
