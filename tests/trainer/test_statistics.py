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
    """Equal statistics of the same rows, compared in one set of target units (each pass
    picks its own near the data, module docstring of trainer/statistics.py)."""
    assert a.n == b.n
    a = a.in_units(b.y_shift, b.y_unit)
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
    whole = whole.in_units(0.0, 1.0)  # sums of y itself
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
    X = np.column_stack([X, np.full(301, 7.5)])  # a constant column gets its magnitude as the scale
    moments = InputMoments()
    for start in range(0, len(X), chunk):
        moments.update(X[start : start + chunk])
    moments.update(X[:0])  # an empty chunk changes nothing
    offset, scale = moments.offset_and_scale()
    assert moments.n == len(X)
    np.testing.assert_allclose(offset, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale[:3], X[:, :3].std(axis=0), rtol=1e-9)
    assert scale[3] == 7.5


def test_input_moments_without_rows_raise():
    with pytest.raises(DataError):
        InputMoments().offset_and_scale()


# ---- threads and float32 (docs/trainer.md §4) ----------------------------------------------------


def _large_problem(kind: str, n: int = 40_000, b: int = 64, offset: float = 1e3):
    """A problem big enough for float32 rounding to show: a target far from 0 (y ≈ offset ± 1)."""
    rng = np.random.default_rng(11)
    X = rng.normal([3.0, -1.0, 50.0], [1.0, 2.0, 10.0], (n, 3))
    y = offset + np.sin(X[:, 0]) + 0.1 * X[:, 1] + 0.1 * rng.standard_normal(n)
    mean, sd = X.mean(axis=0), X.std(axis=0)
    if kind == "linear":
        return FeatureMap.linear(mean, sd), X, y
    return FeatureMap.rff(mean, sd, b, lengthscale=1.0, seed=2), X, y


@pytest.mark.parametrize("threads", [2, 3])
def test_statistics_with_worker_threads_equal_one_thread(problem, threads):
    fmap, X, y = problem
    one = compute_statistics(fmap, array_batches(X, y, 13), chunk_rows=7, threads=1)
    many = compute_statistics(fmap, array_batches(X, y, 13), chunk_rows=7, threads=threads)
    assert_stats_close(many, one, rel=1e-12)
    again = compute_statistics(fmap, array_batches(X, y, 13), chunk_rows=7, threads=threads)
    # Chunk i always goes to worker i mod W, so a pass is reproducible bit for bit.
    assert np.array_equal(again.gram, many.gram) and np.array_equal(again.phi_y, many.phi_y)


def test_a_bad_chunk_in_a_worker_thread_raises_in_the_caller(problem):
    fmap, X, y = problem

    def batches():
        yield X[:50], y[:50]
        yield X[50:60, :2], y[50:60]  # wrong number of columns: the worker's feature map refuses it
        yield from array_batches(X[60:], y[60:], 20)

    with pytest.raises(DataError, match="columns"):
        compute_statistics(fmap, batches(), chunk_rows=16, threads=2)


def test_an_error_while_reading_stops_the_worker_threads(problem):
    fmap, X, y = problem

    def batches():
        yield from array_batches(X[:100], y[:100], 10)
        raise DataError("bad row 101")

    with pytest.raises(DataError, match="bad row 101"):
        compute_statistics(fmap, batches(), chunk_rows=10, threads=2)


def test_unknown_precision_raises(problem):
    fmap, X, y = problem
    with pytest.raises(DataError, match="precision"):
        compute_statistics(fmap, array_batches(X, y), precision="float16")


@pytest.mark.parametrize("kind", ["linear", "rff"])
def test_float32_statistics_are_within_1e6_of_float64(kind):
    """float32 features and per-chunk float32 Gram updates, summed in float64 (measured: ~5e-8)."""
    fmap, X, y = _large_problem(kind)
    s64 = compute_statistics(fmap, array_batches(X, y, 5000), chunk_rows=4096)
    s32 = compute_statistics(fmap, array_batches(X, y, 5000), chunk_rows=4096, precision="float32")
    assert s32.n == s64.n
    assert np.array_equal(s32.gram, s32.gram.T)
    err_gram = np.max(np.abs(s32.gram - s64.gram)) / np.max(np.abs(s64.gram))
    assert err_gram < 1e-6
    # The target's sums stay float64; Φᵀy survives the standardisation of a target 1000 sd from 0
    # (without the per-worker shift, float32 would lose ~1e-4 of it here).
    assert s32.y_sq == pytest.approx(s64.y_sq, rel=1e-13)
    assert s32.y_sum == pytest.approx(s64.y_sum, rel=1e-13)
    st32 = s32.standardised(s64.y_mean, np.sqrt(s64.y_var))
    st64 = s64.standardised(s64.y_mean, np.sqrt(s64.y_var))
    assert np.max(np.abs(st32.phi_y - st64.phi_y)) < 1e-6 * np.max(np.abs(st64.phi_y))
    assert np.max(np.abs(s32.phi_sum - s64.phi_sum)) < 1e-6 * np.max(np.abs(s64.phi_sum))
    # Float32 rounding is there (this is not the float64 pass by accident).
    assert err_gram > 1e-12


def test_float32_statistics_change_the_elbo_and_predictions_negligibly():
    """The same q scored with float32 and float64 statistics, and the float32 fit continued from the
    float64 optimum (separate fits of this non-convex objective may end in different local optima
    whatever the precision).

    Measured at the optimum (E[σ²] = 0.063 of var(y)): the ELBO moves by 0.0119 nats of 2,744
    (4.3e-6 relative), predictions identical.  The bound is on the scale of the terms that cancel in
    the ELBO, not on the ELBO itself: R/(2σ²) ~ n·var(y)/(2E[σ²]) = 4.8e5 nats here, so float32's
    ~5e-8 relative error in G moves the ELBO by about 1e-8 to 1e-7 of that whatever the ELBO's own
    size (2.5e-8 measured).  (A fit stalled with q(σ²) at 0.63 of var(y) scored -59,527 nats with a
    ten times smaller scale, where 1e-7 of |ELBO| happened to hold.)"""
    from direct_edge.trainer import DirectGLM, WeightGrid, prior_log_probs

    fmap, X, y = _large_problem("rff", n=60_000, b=64, offset=5.0)
    raw64 = compute_statistics(fmap, array_batches(X, y, 8192))
    raw32 = compute_statistics(fmap, array_batches(X, y, 8192), precision="float32")
    mu, sd = raw64.y_mean, np.sqrt(raw64.y_var)
    grid = WeightGrid.from_bits(4, 0.2)
    log_prior = prior_log_probs(grid.values, "gaussian", 0.5)
    glms = [DirectGLM(stats=s.standardised(mu, sd), grid=grid, log_prior=log_prior) for s in (raw64, raw32)]
    glms[0].fit(3000, init="gaussian")
    assert glms[0].converged_
    e64, e32 = glms[0].elbo(), glms[1].elbo(glms[0].params)
    # Standardised target: var(y) = 1, so the scale is n / (2 E[σ²]).
    scale = raw64.n / (2.0 * glms[0].posterior().noise_variance_mean)
    assert 4e5 < scale < 6e5
    assert abs(e32 - e64) < 1e-7 * scale
    assert abs(e32 - e64) < 1e-5 * abs(e64)
    assert e32 != e64  # the float32 statistics really differ
    glms[1].params = glms[0].params.copy()
    glms[1].fit(3000, init="warm")
    Phi = fmap.transform(X[:2000])
    (m64, v64), (m32, v32) = glms[0].predict_moments(Phi), glms[1].predict_moments(Phi)
    assert np.max(np.abs(m32 - m64)) < 1e-6
    np.testing.assert_allclose(v32, v64, rtol=1e-6)
    assert abs(glms[1].elbo_ - e64) < 1e-7 * scale


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
def test_statistics_do_not_depend_on_the_callers_blas_threads(precision, threads):
    """The pass pins BLAS to one thread itself, so the caller's BLAS setting cannot change a bit
    (a product split over BLAS threads sums in another order)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    y = X[:, 0] + 0.1 * rng.standard_normal(3000)
    fmap = FeatureMap.rff(X.mean(axis=0), X.std(axis=0), 200, lengthscale=1.0, seed=1)
    results = []
    for blas_threads in (1, 4):
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            results.append(
                compute_statistics(fmap, array_batches(X, y), 1000, precision=precision, threads=threads)
            )
    for name in ("gram", "phi_y", "phi_sum"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name), err_msg=name)
    assert results[0].y_sq == results[1].y_sq
