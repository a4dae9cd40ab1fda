"""IS §2.1, the out-of-range flag: the numpy reference against a literal scalar reading of the spec, the
threshold form the graphs use, and the C library's at-the-edge mask (direct_prediction.out_of_range and
direct_out_of_range) against the reference, bit for bit on 10,000 rows with extremes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse


def edge_rows(blob, n: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """n rows (n ≥ 200) of real inputs: inside, exactly at the ends, just across them, the thresholds
    and their neighbours in ``dtype``, far beyond, and uniform over twice the range."""
    rng = np.random.default_rng(seed)
    d = blob.n_inputs
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    width = hi - lo
    t_lo, t_hi = reference.range_thresholds(blob, dtype)
    far = 1e12 if dtype == np.float64 else 1e30
    special = [
        lo,
        hi,
        t_lo,
        t_hi,
        np.nextafter(t_lo.astype(dtype), dtype(-np.inf)),
        np.nextafter(t_hi.astype(dtype), dtype(-np.inf)),
        np.nextafter(t_lo.astype(dtype), dtype(np.inf)),
        lo - blob.input_scale / 2,
        hi + blob.input_scale / 2,
        np.full(d, -far),
        np.full(d, far),
        (lo + hi) / 2,
    ]
    special = np.array(special, dtype=np.float64)
    X = rng.uniform(lo - width / 2, hi + width / 2, (n, d))
    # A third of the rows: every input but one inside, the other one from the special values.
    m = n // 3
    X[:m] = rng.uniform(lo, hi, (m, d))
    cols = rng.integers(0, d, m)
    X[np.arange(m), cols] = special[rng.integers(0, len(special), m), cols]
    X[m : m + len(special)] = special
    return X.astype(dtype).astype(np.float64)


def literal_mask(blob, x: list[float]) -> int:
    """IS §2.1 one row at a time: u = ⌊x/scale + zero + ½⌋ in float64, flagged outside [−32768, 32767]."""
    mask = 0
    for k, value in enumerate(x):
        u = math.floor(value / float(blob.input_scale[k]) + float(blob.input_zero[k]) + 0.5)
        if u < -32768 or u > 32767:
            mask |= 1 << min(k, 31)
    return mask


BLOBS = [("linear", 3, 4), ("rff", 5, 64), ("linear", 40, 41)]


@pytest.mark.parametrize("kind,d,b", BLOBS)
def test_reference_flag_is_the_literal_definition_and_the_clamp(kind, d, b):
    blob = parse(synthetic_blob(kind, d, b, 4, seed=d, layout="dense4"))
    X = edge_rows(blob, 10_000, seed=d)
    q, mask = reference.quantize_inputs(blob, X, return_mask=True)
    assert mask.dtype == np.uint32 and mask.shape == (10_000,)
    assert np.array_equal(q, reference.quantize_inputs(blob, X))
    assert np.array_equal(mask, reference.out_of_range(blob, X))
    assert mask.tolist() == [literal_mask(blob, x) for x in X.tolist()]
    # Out of range is exactly "the clamp changed it"; both kinds of rows are present.
    changed = np.floor(X / blob.input_scale + blob.input_zero + 0.5) != q
    assert np.array_equal(mask != 0, changed.any(axis=1))
    assert 0 < np.count_nonzero(mask) < len(mask)
    # Every clipped input is at the edge after quantisation (at the edge ⊇ out of range).
    edge = reference.at_edge(q)
    assert np.all(edge & mask == mask)
    if d > 31:
        assert np.array_equal((mask >> 31) != 0, changed[:, 31:].any(axis=1))


def test_training_ends_are_in_range_and_a_step_beyond_is_not():
    blob = parse(synthetic_blob("linear", 3, 4, 2, seed=5, layout="dense4"))
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    X = np.stack([lo, hi, lo - blob.input_scale, hi + blob.input_scale, hi + 1e6 * blob.input_scale])
    X[4, :2] = (lo + hi)[:2] / 2
    assert reference.out_of_range(blob, X).tolist() == [0, 0, 7, 7, 4]
    assert reference.at_edge(reference.quantize_inputs(blob, X)).tolist() == [7, 7, 7, 7, 4]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,d,b", BLOBS[:2])
def test_thresholds_give_the_same_flags_for_every_value_of_the_dtype(kind, d, b, dtype):
    blob = parse(synthetic_blob(kind, d, b, 4, seed=d, layout="dense4"))
    t_lo, t_hi = reference.range_thresholds(blob, dtype)
    assert t_lo.dtype == dtype and np.all(t_lo < t_hi)
    X = edge_rows(blob, 10_000, seed=d + 1, dtype=dtype).astype(dtype)
    flags = (X < t_lo) | (X >= t_hi)
    assert np.array_equal(reference.input_mask(flags), reference.out_of_range(blob, X.astype(np.float64)))
    # The thresholds are tight: the value just below each one flips the flag.
    below_lo = np.nextafter(t_lo, dtype(-np.inf))
    below_hi = np.nextafter(t_hi, dtype(-np.inf))
    for k in range(d):
        row = ((t_lo + t_hi) / 2).astype(np.float64)[None, :].repeat(4, axis=0)
        row[:, k] = [t_lo[k], below_lo[k], t_hi[k], below_hi[k]]
        assert reference.out_of_range(blob, row).tolist() == [0, 1 << k, 1 << k, 0]


def test_at_edge_masks_int16_ends_and_refuses_other_dtypes():
    q = np.array([[0, 0], [-32768, 0], [0, 32767], [-32767, 32766], [32767, -32768]], np.int16)
    assert reference.at_edge(q).tolist() == [0, 1, 2, 0, 3]
    wide = np.zeros((2, 35), np.int16)
    wide[0, 33] = 32767
    wide[1, 30] = -32768
    assert reference.at_edge(wide).tolist() == [1 << 31, 1 << 30]
    with pytest.raises(ValueError, match="int16"):
        reference.at_edge(q.astype(np.int32))


@pytest.mark.parametrize("kind,d,b", BLOBS)
def test_c_library_reports_the_reference_mask_bit_for_bit(native_library, kind, d, b):
    from direct_edge.runtime.native import NativeModel

    data = synthetic_blob(kind, d, b, 4, seed=d, layout="dense4")
    blob = parse(data)
    model = NativeModel(data, native_library)
    rng = np.random.default_rng(d)
    q = reference.quantize_inputs(blob, edge_rows(blob, 10_000, seed=d))
    extremes = rng.choice(np.array([-32768, -32767, 0, 32766, 32767], np.int16), (2000, d))
    q = np.concatenate([q, extremes, rng.integers(-32768, 32768, (1000, d), dtype=np.int16)])
    want = reference.at_edge(q)
    assert 0 < np.count_nonzero(want) < len(want)
    mean, var, var_y, mask = model.predict(q, return_mask=True)
    assert np.array_equal(mask, want)
    assert [a.tolist() for a in (mean, var, var_y)] == [a.tolist() for a in reference.predict(blob, q)]
    assert np.array_equal(model.predict_exact(q, return_mask=True)[3], want)
    assert np.array_equal(model.out_of_range(q[:500]), want[:500])
    assert np.array_equal(model.predict(q[:5], return_mask=True)[3], want[:5])  # the small-batch path
