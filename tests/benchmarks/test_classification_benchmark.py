"""Helpers of benchmarks/classification_benchmark.py: the GPC anchor's training subsample.

``classification_benchmark`` (the module) comes from conftest.py.
"""

from __future__ import annotations

import numpy as np


def test_gpc_subsample_is_stratified_fixed_and_the_right_size(classification_benchmark):
    y = np.repeat(np.arange(4), [400, 300, 200, 100])
    np.random.default_rng(1).shuffle(y)
    keep = classification_benchmark.stratified_subsample(y, 500)
    assert keep.shape == (500,)
    assert np.unique(keep).size == 500 and np.all(np.diff(keep) > 0)
    # Each class keeps its share of the rows (to within one row of rounding).
    np.testing.assert_allclose(np.bincount(y[keep]), [200, 150, 100, 50], atol=1)
    # Seeded: the same rows every call, other rows for another seed.
    np.testing.assert_array_equal(keep, classification_benchmark.stratified_subsample(y, 500))
    assert not np.array_equal(keep, classification_benchmark.stratified_subsample(y, 500, seed=1))


def test_gpc_subsample_keeps_every_row_when_there_are_few(classification_benchmark):
    y = np.array([0, 1] * 5)
    np.testing.assert_array_equal(classification_benchmark.stratified_subsample(y, 10), np.arange(10))
    np.testing.assert_array_equal(classification_benchmark.stratified_subsample(y, 500), np.arange(10))
