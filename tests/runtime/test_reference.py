"""The numpy reference runtime against a literal, scalar reading of docs/integer-spec.md.

The oracle below uses Python's unbounded integers and follows the spec line by line (one row, one
sample at a time, the u32 wrap written as `% 2**32`), so it shares nothing with the vectorised code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import KIND_LINEAR, parse


def rshift(x: int, s: int) -> int:
    return x if s == 0 else (x + (1 << (s - 1))) >> s


def oracle_sin16(T: list[int], t: int) -> int:
    u, f = t >> 22, (t >> 7) & 0x7FFF
    qd, i = u >> 8, u & 0xFF
    y0, y1 = (T[256 - i], T[255 - i]) if qd % 2 else (T[i], T[i + 1])
    v = y0 + rshift((y1 - y0) * f, 15)
    return -v if qd >= 2 else v


def oracle_features(blob, q: list[int]) -> list[int]:
    if blob.kind == KIND_LINEAR:
        phi = [
            rshift(int(m) * x + int(c), 15) for m, c, x in zip(blob.linear_m, blob.linear_b, q, strict=True)
        ]
        return phi + [1 << blob.feature_frac]
    T = [int(v) for v in blob.table]
    t = [
        (int(c) + sum(int(w) * x for w, x in zip(row, q, strict=True))) % 2**32
        for c, row in zip(blob.phase_c, blob.phase_w, strict=True)
    ]
    return [oracle_sin16(T, (tj + 2**30) % 2**32) for tj in t] + [oracle_sin16(T, tj) for tj in t]


def oracle_predict(blob, q: list[int], exact: bool = False) -> tuple[int, int, int]:
    phi = oracle_features(blob, q)
    r = blob.pre_shift
    if exact:
        m = sum(int(mu) * p for mu, p in zip(blob.exact_mean, phi, strict=True))
        v = sum(int(vq) * ((p * p) >> 15) for vq, p in zip(blob.exact_var, phi, strict=True))
        var = rshift(v, 2 * r - 5) if 2 * r >= 5 else v << (5 - 2 * r)
        return rshift(m, 12 + r), var, var + blob.noise_exact_q
    a = [rshift(sum(int(w) * p for w, p in zip(row, phi, strict=True)), r) for row in blob.levels]
    S = len(a)
    sa, sa2 = sum(a), sum(x * x for x in a)
    num = S * sa2 - sa * sa
    var = (num * blob.m2 + (1 << (blob.s2 - 1))) >> blob.s2
    return rshift(sa * blob.m1, blob.s1), var, var + blob.noise_q


def extreme_inputs(d: int) -> np.ndarray:
    alternating = np.where(np.arange(d) % 2 == 0, -32768, 32767)
    return np.array(
        [np.full(d, -32768), np.full(d, 32767), alternating, -alternating - 1, np.zeros(d)], np.int16
    )


CASES = [
    ("linear", 7, 8, 5, 4, 0.3, "dense4"),
    ("linear", 12, 13, 64, 3, 0.0, "bitmap4"),
    ("linear", 3, 4, 1, 2, 0.5, "grouped"),
    ("rff", 5, 64, 10, 4, 0.5, "bitmap4"),
    ("rff", 9, 40, 3, 4, 0.9, "grouped"),
    ("rff", 2, 18, 33, 2, 0.0, "dense4"),
    ("rff", 30, 300, 7, 4, 0.99, "grouped"),
    ("rff", 4, 600, 9, 4, 0.95, "gap4"),
    ("linear", 20, 21, 2, 3, 0.6, "gap4"),
]


@pytest.mark.parametrize("kind,d,b,S,bits,zeros,layout", CASES)
def test_reference_equals_literal_spec_on_random_and_extreme_inputs(kind, d, b, S, bits, zeros, layout):
    blob = parse(synthetic_blob(kind, d, b, S, bits, zeros, seed=S + d, layout=layout))
    rng = np.random.default_rng(1)
    q = np.concatenate([extreme_inputs(d), rng.integers(-32768, 32768, (60, d), dtype=np.int16)])
    got = reference.predict(blob, q)
    got_exact = reference.predict_exact(blob, q)
    for row, x in enumerate(q.tolist()):
        assert tuple(int(v[row]) for v in got) == oracle_predict(blob, x)
        assert tuple(int(v[row]) for v in got_exact) == oracle_predict(blob, x, exact=True)


def test_sine_table_lookup_is_within_the_stated_error_over_all_steps():
    blob = parse(synthetic_blob("rff", 2, 4, 1))
    rng = np.random.default_rng(0)
    t = np.concatenate([np.arange(0, 2**32, 2**17, dtype=np.int64), rng.integers(0, 2**32, 200_000)])
    err = reference.sin16(blob.table, t) - 32768.0 * np.sin(2 * np.pi * t / 2**32)
    assert np.max(np.abs(err)) <= 1.2  # IS §3.3
    assert np.all(np.abs(reference.sin16(blob.table, t)) <= 32767)


@pytest.mark.parametrize("kind,d,b", [("linear", 6, 7), ("rff", 9, 256)])
def test_integer_features_match_float_features_of_the_dequantised_inputs(kind, d, b):
    from direct_edge.export.packed import standardisation_coefficients

    data = synthetic_blob(kind, d, b, 2, seed=3)
    blob = parse(data)
    rng = np.random.default_rng(2)
    q = rng.integers(-32768, 32768, (5000, d), dtype=np.int16)
    phi = reference.features(blob, q).astype(np.float64)
    # The float model the blob was made from: z = a·q + c (IS §2), then the float features.
    if kind == "linear":
        frac = blob.feature_frac
        z = (q * blob.linear_m.astype(np.float64) + blob.linear_b) / 2.0 ** (frac + 15)
        assert np.max(np.abs(phi[:, :-1] / 2.0**frac - z)) <= 2.0**-frac * (1 + 2**-16)
        return
    # rff: compare with cos/sin of the exact phase implied by W and C (their rounding is bounded in IS §3.2).
    turns = (q.astype(np.float64) @ blob.phase_w.T.astype(np.float64) + blob.phase_c) / 2.0**32
    assert np.max(np.abs(phi[:, : b // 2] - 32768 * np.cos(2 * np.pi * turns))) <= 1.2
    assert np.max(np.abs(phi[:, b // 2 :] - 32768 * np.sin(2 * np.pi * turns))) <= 1.2
    assert standardisation_coefficients  # the coefficient path itself is checked in test_accuracy


def test_outputs_have_the_spec_dtypes_and_sizes():
    blob = parse(synthetic_blob("rff", 4, 16, 8))
    q = np.zeros((3, 4), np.int16)
    mean, var, var_y = reference.predict(blob, q)
    assert (mean.dtype, var.dtype, var_y.dtype) == (np.int32, np.uint64, np.uint64)
    assert np.all(var_y - var == blob.noise_q)
    with pytest.raises(ValueError, match="int16"):
        reference.predict(blob, q.astype(np.int32))


def test_quantize_inputs_saturates_and_round_trips_within_half_a_step():
    blob = parse(synthetic_blob("linear", 3, 4, 2, seed=5))
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    X = np.random.default_rng(0).uniform(lo, hi, (1000, 3))
    q = reference.quantize_inputs(blob, X)
    assert np.max(np.abs(reference.dequantize_inputs(blob, q) - X) / blob.input_scale) <= 0.5 + 1e-9
    edge = reference.quantize_inputs(blob, np.stack([lo - 10 * (hi - lo), hi + 10 * (hi - lo)]))
    assert edge.tolist() == [[-32768] * 3, [32767] * 3]
    with pytest.raises(ValueError, match="NaN"):
        reference.quantize_inputs(blob, np.full((1, 3), math.nan))
