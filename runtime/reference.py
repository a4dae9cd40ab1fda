"""The numpy reference runtime: docs/integer-spec.md (IS §n) in integer numpy, batched over rows.

Every step uses integer dtypes only (int64 holds every intermediate the spec bounds, uint64 where it
says u64), so the outputs are bit-exact with the C library (runtime/c) on any input.  Floats appear
only in :func:`quantize_inputs` and :func:`to_target_units`, the host-side conversions of IS §2 and §7.
"""

from __future__ import annotations

import math

import numpy as np

from direct_edge.runtime.blob import KIND_LINEAR, PHI_MAX, Blob, BlobError, round_shift

GAIN_SHIFT = 15  # IS §3.4: φ' = round_shift(φ·G, 15)
ROTATION_SHIFT = 15  # IS §3.5: ψ_k = round_shift(Σ_j R_kj·φ_j, 15 + s_k)

_U32 = np.int64(0xFFFFFFFF)


def _unclamped(blob: Blob, X: np.ndarray) -> np.ndarray:
    """IS §2: ⌊x/scale + zero + ½⌋ in float64 before the clamp, (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != blob.n_inputs:
        raise ValueError(f"expected inputs with {blob.n_inputs} columns, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("inputs contain NaN or infinity")
    return np.floor(X / blob.input_scale + blob.input_zero + 0.5)


def input_mask(flags: np.ndarray) -> np.ndarray:
    """IS §2.1: per-input booleans (n, d) -> the u32 row mask (n,): bit k for input k < 31, bit 31 for any
    input k ≥ 31 (so the mask is nonzero exactly when some input is flagged)."""
    flags = np.asarray(flags, dtype=bool)
    mask = np.zeros(flags.shape[0], dtype=np.uint32)
    for k in range(min(flags.shape[1], 31)):
        mask |= flags[:, k].astype(np.uint32) << np.uint32(k)
    if flags.shape[1] > 31:
        mask |= flags[:, 31:].any(axis=1).astype(np.uint32) << np.uint32(31)
    return mask


def quantize_inputs(blob: Blob, X: np.ndarray, return_mask: bool = False):
    """IS §2: real inputs ``X`` (n, d) -> int16 (n, d), saturating outside the clipping range.

    With ``return_mask``: ``(q, mask)``, mask the IS §2.1 out-of-range mask, uint32 (n,), of the inputs
    the clamp changed (nonzero: the row's prediction is the edge's)."""
    u = _unclamped(blob, X)
    q = np.clip(u, -32768, 32767).astype(np.int16)
    if return_mask:
        return q, input_mask((u < -32768) | (u > 32767))
    return q


def out_of_range(blob: Blob, X: np.ndarray) -> np.ndarray:
    """IS §2.1: the out-of-range mask of real inputs ``X`` (n, d), uint32 (n,); nonzero rows were clipped."""
    return quantize_inputs(blob, X, return_mask=True)[1]


def at_edge(q: np.ndarray) -> np.ndarray:
    """IS §2.1 for int16 inputs ``q`` (n, d): the mask of inputs at −32768 or 32767 ("at or beyond the
    edge"), uint32 (n,); what the C library reports in ``direct_prediction.out_of_range``."""
    q = np.asarray(q)
    if q.ndim != 2 or q.dtype != np.int16:
        raise ValueError(f"expected int16 inputs of shape (n, d), got {q.dtype} {q.shape}")
    return input_mask((q == -32768) | (q == 32767))


def range_thresholds(blob: Blob, dtype=np.float64, origin=None) -> tuple[np.ndarray, np.ndarray]:
    """IS §2.1 as two comparisons: per input the smallest values ``lo``, ``hi`` of ``dtype`` (float64 or
    float32) with x/scale + zero + ½ ≥ −32768 and ≥ 32768 in float64, so that for every finite x of
    that dtype the input is out of range exactly when ``x < lo`` or ``x >= hi``.  Bisection over the
    ordered values of the dtype (the quantity is monotone in x: scale > 0, rounding is monotone).
    ``origin`` (d,) float64: thresholds on v = x − origin instead, the real input being v + origin
    computed in float64 (what a graph fed x minus an origin sees)."""
    dtype = np.dtype(dtype)
    shift = np.zeros(blob.n_inputs) if origin is None else np.asarray(origin, dtype=np.float64)
    itype = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32}[dtype]
    big = np.finfo(dtype).max

    def key_to_value(key: np.ndarray) -> np.ndarray:
        # Ordered integer keys: non-negative keys are the bit patterns of +values, negative ones of −values.
        bits = np.where(key >= 0, key, np.iinfo(itype).min - key).astype(itype)
        return bits.view(dtype)

    def smallest(k: int, limit: float) -> float:
        def ok(key: int) -> bool:
            x = float(key_to_value(np.array([key], dtype=np.int64))[0])
            with np.errstate(over="ignore"):  # ±inf compares as the huge value it stands for
                x = float(np.float64(x) + shift[k])
                return bool(x / blob.input_scale[k] + blob.input_zero[k] + 0.5 >= limit)

        lo = int(np.array([-big], dtype=dtype).view(itype)[0])
        lo = np.iinfo(itype).min - lo  # the key of −max
        hi = int(np.array([big], dtype=dtype).view(itype)[0])
        if ok(lo):
            return float(key_to_value(np.array([lo], dtype=np.int64))[0])
        if not ok(hi):
            return float(np.inf)
        while hi - lo > 1:  # ok(hi) and not ok(lo)
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return float(key_to_value(np.array([hi], dtype=np.int64))[0])

    d = blob.n_inputs
    lo = np.array([smallest(k, -32768.0) for k in range(d)], dtype=dtype)
    hi = np.array([smallest(k, 32768.0) for k in range(d)], dtype=dtype)
    return lo, hi


def dequantize_inputs(blob: Blob, q: np.ndarray) -> np.ndarray:
    """IS §2: the real inputs that int16 ``q`` (n, d) stand for, float64 (n, d)."""
    return blob.input_scale * (np.asarray(q, dtype=np.float64) - blob.input_zero)


def check_inputs(q: np.ndarray, n_inputs: int) -> np.ndarray:
    """IS §2 inputs as every engine takes them: C-contiguous int16 (n, n_inputs); ValueError otherwise."""
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[1] != n_inputs or q.dtype != np.int16:
        raise ValueError(f"expected int16 inputs of shape (n, {n_inputs}), got {q.dtype} {q.shape}")
    return np.ascontiguousarray(q)


def sin16(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """IS §3.3: sine of phases ``t`` (u32 turns held in int64) from the quarter-wave ``table``; int64."""
    T = table.astype(np.int64)
    u = t >> 22
    f = (t >> 7) & 0x7FFF
    qd, i = u >> 8, u & 0xFF
    odd = (qd & 1).astype(bool)
    y0 = np.where(odd, T[256 - i], T[i])
    y1 = np.where(odd, T[np.maximum(255 - i, 0)], T[np.minimum(i + 1, 256)])
    v = y0 + round_shift((y1 - y0) * f, 15)
    return np.where(qd >= 2, -v, v)


def rotate(blob: Blob, phi: np.ndarray) -> np.ndarray:
    """IS §3.5: rff features φ (n, b) int64 -> the rotated features ψ (n, b), int64 holding i16 values.
    The int64 products and sums are exact (|Σ_j R_kj·φ_j| < 2⁴⁶), as the C library's i64 sums are."""
    acc = phi @ blob.rotation.astype(np.int64).T
    shift = ROTATION_SHIFT + blob.rotation_shift.astype(np.int64)
    psi = (acc + (np.int64(1) << (shift - 1))) >> shift  # round_shift with a shift per column
    return np.clip(psi, -PHI_MAX, PHI_MAX)


def features(blob: Blob, q: np.ndarray) -> np.ndarray:
    """IS §3: int16 inputs (n, d) -> integer features φ (n, b), int64 holding i16 values; with a feature
    rotation (MF §5.3) the rotated features ψ of IS §3.5; with feature gains (MF §5.1) the gained
    features φ' of IS §3.4 (of ψ when rotated), what every prediction mode multiplies."""
    q = check_inputs(q, blob.n_inputs).astype(np.int64)
    n = q.shape[0]
    if blob.kind == KIND_LINEAR:
        phi = np.empty((n, blob.n_features), dtype=np.int64)
        phi[:, :-1] = round_shift(q * blob.linear_m.astype(np.int64) + blob.linear_b.astype(np.int64), 15)
        phi[:, -1] = 1 << blob.feature_frac
    else:
        # IS §3.2: the exact integer sum, then the u32 wrap (the i64 sum cannot overflow: |W·q| < 2^46).
        t = (q @ blob.phase_w.astype(np.int64).T + blob.phase_c.astype(np.int64)) & _U32
        phi = np.concatenate([sin16(blob.table, (t + (1 << 30)) & _U32), sin16(blob.table, t)], axis=1)
        if blob.rotation is not None:
            phi = rotate(blob, phi)
    if blob.gains is not None:  # IS §3.4
        phi = round_shift(phi * blob.gains.astype(np.int64), GAIN_SHIFT)
    return phi


def _mulshift96(num: np.ndarray, m2: int, s2: int) -> np.ndarray:
    """IS §5: ⌊(num·M2 + 2^(s2−1)) / 2^s2⌋ for u64 ``num`` < 2^62, from two 32×32-bit products."""
    num = num.astype(np.uint64)
    m = np.uint64(m2)
    lo = (num & np.uint64(0xFFFFFFFF)) * m
    hi = (num >> np.uint64(32)) * m
    return (hi + (lo >> np.uint64(32)) + np.uint64(1 << (s2 - 33))) >> np.uint64(s2 - 32)


CHUNK = 1 << 22  # int64 elements per temporary (32 MB), whatever S × b is


def sample_outputs(blob: Blob, q: np.ndarray) -> np.ndarray:
    """IS §4: the pre-shifted per-sample outputs a_s, int64 (n, S).

    Up to CHUNK weights, one dense integer product φ · levelsᵀ.  Beyond, straight from the blob's sparse
    levels, a block of rows at a time: memory is O(n·S + CHUNK) and time O(n·nnz), never O(S·b) (a
    small blob can declare S × b = 2³² weights).  Integer sums are exact, so both give the same bits.
    """
    phi = features(blob, q)
    levels = blob.sample_levels
    if levels.n_samples * blob.n_features <= CHUNK:
        return round_shift(phi @ levels.dense().astype(np.int64).T, blob.pre_shift)
    n, weights = phi.shape[0], levels.value.astype(np.int64)
    acc = np.empty((n, levels.n_samples), dtype=np.int64)
    step = max(1, CHUNK // max(1, len(weights)))
    for first in range(0, n, step):
        block = phi[first : first + step]
        running = np.zeros((block.shape[0], len(weights) + 1), dtype=np.int64)
        np.cumsum(block[:, levels.index] * weights, axis=1, out=running[:, 1:])
        acc[first : first + step] = running[:, levels.start[1:]] - running[:, levels.start[:-1]]
    return round_shift(acc, blob.pre_shift)


def predict(blob: Blob, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IS §4–§5 for int16 inputs (n, d): (mean_q int32, var_q uint64, var_y_q uint64), each (n,).
    Raises BlobError ("TASK") for a classifier blob (MF §11: ``runtime/classify.py`` evaluates it)."""
    if blob.classes:
        raise BlobError("TASK", "this blob is a classifier (MF §11); use runtime.classify.classify")
    a = sample_outputs(blob, q)
    sa = a.sum(axis=1)
    sa2 = (a * a).sum(axis=1)
    mean = round_shift(sa * blob.m1, blob.s1).astype(np.int32)
    num = (blob.n_samples * sa2 - sa * sa).astype(np.uint64)
    var = _mulshift96(num, blob.m2, blob.s2)
    if blob.has_floor:  # IS §5: the grid's rounding floor the samples cannot show (docs/trainer.md §7)
        var = var + _level_variance(blob, features(blob, q), blob.floor)
    return mean, var, var + np.uint64(blob.noise_q)


def _level_variance(blob: Blob, phi: np.ndarray, vq: np.ndarray) -> np.ndarray:
    """IS §6's variance sum for per-weight level variances ``vq`` (uint16, b) in 2^-10 level² on the
    features ``phi`` (n, b): Σ_i vq_i · ((φ_i·φ_i) >> 15), shifted to output units² (uint64, n)."""
    sq = (phi * phi) >> 15
    v = (sq @ vq.astype(np.int64)).astype(np.uint64)
    r = blob.pre_shift
    if 2 * r > 5:
        return (v + np.uint64(1 << (2 * r - 6))) >> np.uint64(2 * r - 5)
    return v << np.uint64(5 - 2 * r)


def predict_exact(blob: Blob, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IS §6 (exact-moment mode) for int16 inputs (n, d): (mean_q int32, var_q uint64, var_y_q uint64)."""
    if not blob.has_exact:
        raise BlobError("NO_EXACT", "this blob has no exact-moment section; export it with exact moments")
    phi = features(blob, q)
    m = phi @ blob.exact_mean.astype(np.int64)
    mean = round_shift(m, 12 + blob.pre_shift).astype(np.int32)
    var = _level_variance(blob, phi, blob.exact_var)
    return mean, var, var + np.uint64(blob.noise_exact_q)


def to_target_units(blob: Blob, mean_q: np.ndarray, var_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IS §7 (host only): (mean, standard deviation) in target units, float64."""
    mean = blob.y_offset + blob.mean_scale * np.asarray(mean_q, dtype=np.float64)
    return mean, blob.mean_scale * np.sqrt(np.asarray(var_q, dtype=np.float64))


def feature_error(blob: Blob) -> float:
    """IS §8: ε_φ, the largest error of one integer feature in units of 2^-Fφ (of the amplitude); for a
    rotated blob that of the rotated features ψ (:func:`rotation_error`)."""
    if blob.kind == KIND_LINEAR:
        return 1.0 + 2.0**-16
    phase_error_turns = 2.0**-33 * (1 + 32768 * blob.n_inputs)
    eps = 1.2 + 2 * math.pi * (PHI_MAX + 1) * phase_error_turns
    return eps if blob.rotation is None else rotation_error(blob, eps)


def rotation_error(blob: Blob, eps_phi: float) -> float:
    """IS §3.5: the largest error of one rotated feature ψ_k against 2^15 times the float rotated
    feature, given ε_φ of the unrotated ones: ½ (final rounding) + ½ (the clamp, which may pull a
    true ±2^15 to ±32767) + Σ_j |R_kj − 2^(15+s_k)·A·V_jk|·|φ_j|/2^(15+s_k) (the rounding of R: ½ a unit,
    1 for s_k = 0, where the exporter clips A·V_jk·2^15 = ±2^15 to ±32767) + A·ε_φ·Σ_j |V_jk|.  The
    blob has R, not V: A·Σ_j |V_jk| ≤ min(A·√b, (Σ_j |R_kj| + b·u_k)/2^(15+s_k)), u_k that rounding."""
    b = blob.n_features
    shift = blob.rotation_shift.astype(np.float64)
    unit = 2.0 ** (ROTATION_SHIFT + shift)
    rounding = np.where(shift == 0, 1.0, 0.5)
    amplitude_v = np.minimum(
        (b // 2) ** -0.5 * math.sqrt(b),
        (np.abs(blob.rotation.astype(np.float64)).sum(axis=1) + b * rounding) / unit,
    )
    per_row = 1.0 + b * PHI_MAX * rounding / unit + eps_phi * amplitude_v
    return float(per_row.max())


def floor_error_bound(blob: Blob) -> float:
    """IS §8 for §5's rounding floor: a bound on |floor_q − its float64 value on the same eq| in output
    units² (0 without the floor).  Per feature, φ² is off by (2·32767 + ε_φ)·ε_φ from the feature's
    error and by < 2^15 from the >> 15; times eq_i·2^-10 and 2^-2r, plus ½ for the final rounding."""
    if not blob.has_floor:
        return 0.0
    eps = feature_error(blob) + (0.5 if blob.gains is not None else 0.0)
    per_feature = (2 * 32767 + eps) * eps + 2.0**15
    return float(blob.floor.astype(np.float64).sum()) * per_feature / 2.0 ** (10 + 2 * blob.pre_shift) + 0.5


def error_bound(blob: Blob) -> float:
    """IS §8: bound E on |mean_q − float mean| and |sd − float sd| in output units (per prediction);
    feature gains (IS §3.4) add the rounding of φ·G, ½ per feature (g_i·ε_φ ≤ ε_φ)."""
    eps = feature_error(blob) + (0.5 if blob.gains is not None else 0.0)
    return blob.weight_bound * eps / 2.0**blob.pre_shift + 2.0
