"""Memory follows the blob's bytes, not the S × b weights it declares: a valid 328 KB blob with
S × b = 65535 × 65534 parses and predicts in a few MB (the dense (S, b) matrix would be 8 GiB as int16)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from direct_edge.export import packed
from direct_edge.runtime import reference
from direct_edge.runtime.blob import KIND_RFF, LAYOUT_GROUPED, parse

MB = 1 << 20


def empty_samples_blob(d: int = 1, b: int = 65534, S: int = 65535) -> bytes:
    """rff, grouped layout, every sample with no groups (one byte each): MF-valid, a third of a MB."""
    F = b // 2
    sections = [
        np.array([[1.0, 0.0]] * d, dtype="<f8").tobytes(),
        bytes(4 * F * (1 + d)),
        packed.sine_table().astype("<i2").tobytes(),
        bytes(S),
        b"",
        b"",
    ]
    out = packed.output_parameters_for(S, 0)
    values = dict(kind=KIND_RFF, layout=LAYOUT_GROUPED, bits=4, flags=0, n_inputs=d, n_features=b)
    values.update(n_samples=S, feature_frac=15, pre_shift=out["r"], m1=out["m1"], s1=out["s1"])
    values.update(s2=out["s2"], m2=out["m2"], noise_q=7, noise_exact_q=0, mean_scale=1.0, y_offset=0.0)
    return packed.frame(values, sections)


def peak_bytes(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_blob_declaring_four_billion_weights_parses_and_predicts_in_bounded_memory():
    data = empty_samples_blob()
    assert len(data) < 330_000
    blob, parse_peak = peak_bytes(lambda: parse(data))
    assert (blob.n_samples, blob.n_features, blob.weight_bound) == (65535, 65534, 0)
    assert len(blob.sample_levels.value) == 0 and blob.sparsity == 1.0
    q = np.array([[-32768], [0], [32767]], dtype=np.int16)
    (mean, var, var_y), predict_peak = peak_bytes(lambda: reference.predict(blob, q))
    assert mean.tolist() == [0, 0, 0] and var.tolist() == [0, 0, 0] and var_y.tolist() == [7, 7, 7]
    assert parse_peak < 64 * MB, parse_peak
    assert predict_peak < 64 * MB, predict_peak


@pytest.mark.parametrize("layout", ["dense4", "bitmap4", "grouped", "gap4"])
def test_the_sparse_evaluation_is_bit_exact_with_the_dense_product(layout, monkeypatch):
    """The path taken above CHUNK weights gives the same a_s as φ · levelsᵀ (forced with a tiny CHUNK)."""
    data = packed.synthetic_blob("rff", 4, 200, 37, bits=4, zeros=0.8, seed=3, layout=layout)
    blob = parse(data)
    q = np.random.default_rng(0).integers(-32768, 32768, (300, 4)).astype(np.int16)
    dense = reference.sample_outputs(blob, q)
    want = reference.round_shift(reference.features(blob, q) @ blob.levels.astype(np.int64).T, blob.pre_shift)
    np.testing.assert_array_equal(dense, want)
    monkeypatch.setattr(reference, "CHUNK", 1000)  # 37 × 200 weights > 1000: sparse, blocks of rows
    np.testing.assert_array_equal(reference.sample_outputs(blob, q), want)


def test_repeated_grouped_indices_are_summed_in_the_sparse_levels():
    """MF §6.3 allows one index in two groups; the readers add the levels (here −1 + 2 at index 5)."""
    from direct_edge.runtime.blob import _decode_samples

    sample = bytes([2, 0xFF, 1, 6, 2, 2, 6, 4])  # level −1: index 5; level 2: indices 5 and 9
    levels, bound = _decode_samples(sample, LAYOUT_GROUPED, 1, 12, 4)
    assert levels.index.tolist() == [5, 9] and levels.value.tolist() == [1, 2]
    assert bound == 1 + 2 * 2
    assert levels.dense().tolist() == [[0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]]
