"""export/packed.py: models the blob cannot hold are refused with an ExportError in the user's terms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from direct_edge.export import packed
from direct_edge.export.packed import ExportError


def integer_model(grid_scale: float) -> packed.IntegerModel:
    """A small valid linear IntegerModel with the given grid step (standardised units)."""
    scale, zero = packed.input_quantization(np.array([-3.0, -3.0]), np.array([3.0, 3.0]))
    a, c = packed.standardisation_coefficients(scale, zero, np.zeros(2), np.ones(2))
    params, frac = packed._feature_params(packed.KIND_LINEAR, a, c, None)
    levels = np.array([[1, -2, 3], [0, 7, -7]], dtype=np.int8)
    return packed.IntegerModel(
        kind=packed.KIND_LINEAR,
        bits=4,
        input_scale=scale,
        input_zero=zero,
        feature_frac=frac,
        amplitude=1.0,
        feature_params=params,
        levels=levels,
        noise_variance=np.array([0.1, 0.2]),
        noise_expected=0.15,
        grid_scale=grid_scale,
        y_offset=0.0,
        y_scale=1.0,
    )


def test_a_normal_grid_step_packs():
    assert packed.assemble(integer_model(0.2))[:4] == b"DIRQ"


@pytest.mark.parametrize("grid_scale", [1e-300, 0.0, float("inf"), float("nan")])
def test_a_grid_step_out_of_range_is_an_export_error_not_a_crash(grid_scale):
    """Was ZeroDivisionError (1e-300 squared underflows to 0)."""
    with pytest.raises(ExportError, match="out of the range the integer arithmetic resolves"):
        packed.assemble(integer_model(grid_scale))


def test_a_huge_target_scale_is_an_export_error():
    model = dataclasses.replace(integer_model(0.2), y_scale=float("inf"))
    with pytest.raises(ExportError):
        packed.assemble(model)


def test_every_training_value_reaches_the_device_unclipped():
    """Heavy-tailed inputs: the int16 range is the training range, so no training row is clipped
    (the range was the training range cut at μ ± 8σ, which clipped up to 4.6 % of one set's rows)."""
    from direct_edge.runtime import reference
    from direct_edge.runtime.blob import parse
    from direct_edge.trainer import DirectRegressor

    rng = np.random.default_rng(3)
    X = rng.standard_t(1.5, size=(2000, 2)) * [1.0, 50.0]  # tails far beyond 8 sd
    y = np.tanh(X[:, 0]) + 0.1 * rng.standard_normal(2000)
    model = DirectRegressor(features="linear", max_iter=200, random_state=0).fit(X, y)
    blob = parse(packed.pack(model, n_samples=4))
    lo, hi = packed.blob_input_range(blob)
    np.testing.assert_allclose(lo, X.min(axis=0), rtol=1e-12)
    np.testing.assert_allclose(hi, X.max(axis=0), rtol=1e-12)
    q = reference.quantize_inputs(blob, X).astype(np.int64)
    step = blob.input_scale
    assert np.all(
        np.abs(reference.dequantize_inputs(blob, q.astype(np.int16)) - X) <= 0.5 * step * (1 + 1e-9)
    )
    assert np.sum(q == -32768) == 2 and np.sum(q == 32767) == 2  # only the minimum and maximum themselves


def test_inputs_near_the_largest_float_quantise_without_overflow():
    lo, hi = np.array([-1.7e308]), np.array([1.7e308])
    scale, zero = packed.input_quantization(lo, hi)
    assert np.isfinite(scale).all() and np.isfinite(zero).all()
    low, high = packed.input_range(np.array([0.0]), np.array([1.7e308]))
    assert np.isfinite(low).all() and np.isfinite(high).all() and high[0] > 1e308
