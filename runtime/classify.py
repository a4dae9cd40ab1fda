"""Classification in integer arithmetic: docs/integer-spec.md §10 (cited as IS §10.n).

The one definition of the classifier's tables (:data:`EXP_TABLE`, :data:`LOG_TABLE`) and of its
integer functions (:func:`exp2_neg`, :func:`log2_fixed`, :func:`probabilities`, :func:`entropy`,
:func:`classify`): the C library's ``runtime/c/direct_classify.c`` carries the same tables (a test holds
them equal) and agrees bit for bit.  Units: a probability P stands for P·2^-16 (``ONE`` = 2^16 is 1),
a log or an entropy for its value·2^-16 bits.  Only numpy is used; every integer is held in int64 (or
uint64 where IS §10.6 says u64) and never exceeds the width IS §10.6 proves.
"""

from __future__ import annotations

import math

import numpy as np

from direct_edge.runtime import bounds
from direct_edge.runtime.bounds import round_shift

ONE = 1 << 16  # probability 1, and one bit of log
TABLE_STEPS = 256  # table entries per unit (257 with the end point)
DELTA_MAX = 1 << 22  # IS §10.2: D, a logit difference of 64 bits
ENTROPY_MAX = 1 << 20  # IS §10.4: the clamp of H, 16 bits


def _exp_table() -> np.ndarray:
    """IS §10.2: X[i] = round(2^16 · 2^(−i/256)), i = 0 … 256, int64 (257,)."""
    return np.array([round(ONE * 2.0 ** (-i / TABLE_STEPS)) for i in range(TABLE_STEPS + 1)], dtype=np.int64)


def _log_table() -> np.ndarray:
    """IS §10.2: Y[i] = round(2^16 · log2(1 + i/256)), i = 0 … 256, int64 (257,)."""
    return np.array(
        [round(ONE * math.log2(1.0 + i / TABLE_STEPS)) for i in range(TABLE_STEPS + 1)], dtype=np.int64
    )


EXP_TABLE = _exp_table()
LOG_TABLE = _log_table()


def exp2_neg(delta: np.ndarray) -> np.ndarray:
    """IS §10.2 EXP: ≈ 2^16 · 2^(−δ/2^16) for int64 δ in [0, 2^32), any shape; int64 in [0, 2^16]."""
    delta = np.asarray(delta, dtype=np.int64)
    n, f = delta >> 16, delta & 0xFFFF
    i, t = f >> 8, f & 0xFF
    x0 = EXP_TABLE[i]
    v = x0 - round_shift((x0 - EXP_TABLE[i + 1]) * t, 8)
    # round_shift(v, n) for n < 32, 0 beyond (v ≤ 2^16, so n ≥ 18 already gives 0)
    shift = np.minimum(n, 40)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return np.where(n < 32, (v + half) >> shift, 0)


def log2_fixed(x: np.ndarray) -> np.ndarray:
    """IS §10.2 LOG: ≈ 2^16 · log2(x) for int64 x in [1, 2^32), any shape; int64."""
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < 1):
        raise ValueError("LOG needs x >= 1")
    n = np.floor(np.log2(x.astype(np.float64))).astype(np.int64)  # a first guess, corrected exactly:
    n = np.where((np.int64(1) << n) > x, n - 1, n)  # float log2 can be off by one near powers of two
    n = np.where((np.int64(1) << (n + 1)) <= x, n + 1, n)
    u = np.where(n >= 16, x >> np.maximum(n - 16, 0), x << np.maximum(16 - n, 0))
    f = u - ONE
    i, t = f >> 8, f & 0xFF
    y0 = LOG_TABLE[i]
    return n * ONE + y0 + round_shift((LOG_TABLE[i + 1] - y0) * t, 8)


def logits(blob, a: np.ndarray) -> np.ndarray:
    """IS §10.1: per-row weight outputs a (n, N) int64 -> logit vectors ℓ (n, S, C) int64, 2^-16 bits."""
    C, R, mz, sz = blob.classes, bounds.logit_rows(blob.classes), blob.logit_mult, blob.logit_shift
    n, N = a.shape
    # |a·Mz| < 2^62 (IS §10.6): exact in int64
    ell = round_shift(a.astype(np.int64) * np.int64(mz), sz).reshape(n, N // R, R)
    if R == 1:  # the logistic model: softmax(0, z)
        return np.concatenate([np.zeros_like(ell), ell], axis=2)
    assert R == C
    return ell


def probabilities(ell: np.ndarray) -> np.ndarray:
    """IS §10.2: logit vectors ℓ (..., C) int64 -> per-sample probabilities p (..., C) int64 ≤ 2^16."""
    m = ell.max(axis=-1, keepdims=True)
    delta = np.minimum(m - ell, DELTA_MAX)
    total = exp2_neg(delta).sum(axis=-1, keepdims=True)
    lam = log2_fixed(total) - (16 * ONE)
    return exp2_neg(np.minimum(delta + lam, DELTA_MAX))


def entropy(p: np.ndarray) -> np.ndarray:
    """IS §10.4: H(p) for probability vectors p (..., C) int64 ≤ 2^16 -> (...) int64, 2^-16 bits, ≤ 2^20."""
    p = np.asarray(p, dtype=np.int64)
    logs = log2_fixed(np.maximum(p, 1))
    terms = np.where(p > 0, p * (16 * ONE - logs), 0)
    return np.minimum(ENTROPY_MAX, round_shift(terms.sum(axis=-1), 16))


def classify(blob, q: np.ndarray) -> dict[str, np.ndarray]:
    """IS §10 for a classifier blob and int16 inputs q (n, d).

    Returns a dict of arrays over the n rows: ``label`` (n,) int64 class index (ties: the lowest);
    ``proba`` (n, C) int64, p̄ in units of 2^-16; ``entropy``, ``expected_entropy``, ``mutual_info``
    (n,) int64 in units of 2^-16 bits; ``sample_proba`` (n, S, C) int64, every sample's p_s.
    Raises BlobError ("TASK") for a regression blob."""
    from direct_edge.runtime.blob import BlobError
    from direct_edge.runtime.reference import sample_outputs

    if not blob.classes:
        raise BlobError("TASK", "this blob is a regression model, not a classifier (MF §11)")
    p = probabilities(logits(blob, sample_outputs(blob, q)))
    m1, s1 = np.int64(blob.m1), blob.s1
    # P_k ≤ 2^28 and P_k·M1 < 2^59 (IS §10.6): exact in int64
    mean = np.minimum(round_shift(p.sum(axis=1) * m1, s1), ONE)  # IS §10.3: a probability whatever M1
    h_total = entropy(mean)
    # Σ_s H ≤ 2^32 and · M1 < 2^63 (IS §10.6); clamped like H (IS §10.4)
    total = entropy(p).sum(axis=1).astype(np.uint64) * np.uint64(m1) + np.uint64(1 << (s1 - 1))  # < 2^64
    h_expected = np.minimum(total >> np.uint64(s1), np.uint64(ENTROPY_MAX)).astype(np.int64)
    return {
        "label": np.argmax(mean, axis=1).astype(np.int64),  # numpy's argmax: the first maximum
        "proba": mean,
        "entropy": h_total,
        "expected_entropy": h_expected,
        "mutual_info": np.maximum(h_total - h_expected, 0),
        "sample_proba": p,
    }


def probability_error_bound(blob) -> float:
    """IS §10.5: bound on |p̄_k − 2^16·p̄_float,k| in units of 2^-16 probability, for every row and class."""
    from direct_edge.runtime.reference import error_bound

    C = blob.classes
    e_exp, e_log = 1.56, 2.64
    e_p = 0.18 + e_exp + math.log(2) * e_log + e_exp * (C - 1)
    feature = 0.5 * blob.mean_scale * (error_bound(blob) - 1.0) * ONE
    return e_p + feature + 0.5 + 1e-4


def logit_parameters(scale: float) -> tuple[int, int]:
    """IS §10.1 (exporter): (Mz, sz) for λ = ``scale`` real logit (nats) per unit of a: the largest
    sz ≤ 62 with Mz = round(λ·log2(e)·2^(16+sz)) ≤ 2^31 − 1.  ValueError when sz < 1 or Mz < 2^30."""
    unit = scale * math.log2(math.e) * ONE
    if not (math.isfinite(unit) and unit > 0):
        raise ValueError(f"a logit step of {scale!r} nats is not a finite positive number (IS §10.1)")
    for sz in range(bounds.LOGIT_SHIFT_MAX, 0, -1):
        if unit * 2.0**sz > bounds.I32_MAX:  # (also an infinite product, which round() refuses)
            continue
        mz = round(unit * 2.0**sz)
        if mz <= bounds.I32_MAX:
            if mz < 1 << 30:
                break
            return mz, sz
    raise ValueError(
        f"a logit step of {scale:.3g} nats cannot be represented with 16 fraction bits (IS §10.1)"
    )
