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
