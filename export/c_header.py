"""``direct-export model.h``: the packed blob as a C header (emlearn's habit: const arrays, a comment
block that says what the model is and how to call it, nothing else), with what a device needs around
the runtime: the inputs' names, scales, zero points and ranges as named constants, ``static inline``
helpers that quantise real inputs to IS §2's int16 (float and fixed point), and one that turns the
integer outputs into target units in fixed point (IS §7).

The header compiles on its own with ``-std=c99 -Wall -Wextra -Werror -pedantic`` and as C++; a union
with a ``uint64_t`` member aligns the bytes as the target aligns 64-bit integers (8 on Cortex-M,
aarch64 and x86-64; docs/model-format.md §1 needs 4) in portable C99, without attributes.

The fixed-point quantiser (:func:`fixed_inputs`) is exact by construction: IS §2 in float64 is a
monotone step function of the fixed-point input v, so it is fully described by its 65,535 thresholds
(the smallest v giving each q).  They are found by bisection on ``reference.quantize_inputs`` itself;
the header carries the two saturating thresholds, a 64-bit multiplier and offset whose steps are the
exact rational ones, and the few v (usually none) where float64 rounding moved a step, as exceptions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace

import numpy as np

from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, parse

OUTPUT_DECIMALS = 10  # the output helper's units: 10^-D target units for D = 0 .. 9
_MAX_EXCEPTIONS = 4096


def _rotation_check(blob: Blob, name: str) -> str:
    """For a rotated blob (MF §5.3): {N}_ROTATED, and a compile-time error where direct.h was included with
    DIRECT_ROTATION 0 (that library refuses the blob at run time with a bare HEADER status)."""
    if not blob.has_rotation:
        return ""
    N = name.upper()
    return (
        f"#define {N}_ROTATED 1\n"
        "#if defined(DIRECT_ROTATION) && !DIRECT_ROTATION\n"
        f'#error "{name}: a model with rotated features (docs/model-format.md section 5.3) needs the C '
        'library built with DIRECT_ROTATION 1"\n'
        "#endif\n"
    )


def scratch_bytes(blob) -> int:
    """direct_scratch_size() of ``blob`` (runtime/c/direct.h): 2·b bytes, b rounded up to even, twice
    that for a rotated blob (IS §3.5: the rff features beside the rotated ones)."""
    return (4 if blob.has_rotation else 2) * ((blob.n_features + 1) & ~1)


def c_identifier(stem: str) -> str:
    """A C identifier from a file stem: ``my-model`` -> ``my_model``."""
    name = re.sub(r"\W", "_", stem)
    return name if name and not name[0].isdigit() else f"model_{name}"


def model_input_names(blob: Blob) -> list[str]:
    """The model's d input names (``Blob.input_names``: the schema's, MF §10, else the metadata's,
    else x0 ...)."""
    return blob.input_names


def enum_names(names: list[str]) -> list[str]:
    """Upper-case C identifiers for input names, unique: ``body mass`` -> ``BODY_MASS``, ``2x`` -> ``X_2X``;
    a clash or an empty name gets the input's index appended."""
    out: list[str] = []
    for k, name in enumerate(names):
        ident = re.sub(r"[^0-9A-Za-z]+", "_", name.encode("ascii", "replace").decode()).strip("_").upper()
        if not ident:
            ident = f"X{k}"
        elif ident[0].isdigit():
            ident = f"X_{ident}"
        if ident in out:
            ident = f"{ident}_{k}"
        out.append(ident)
    return out


def _c_string(text: str) -> str:
    """A C string literal: printable ASCII as is, everything else as three-digit octal escapes."""
    parts = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\' or not 32 <= byte < 127 or ch == "?":
            parts.append(f"\\{byte:03o}")
        else:
            parts.append(ch)
    return '"' + "".join(parts) + '"'


def _f64(v: float) -> str:
    return np.format_float_scientific(np.float64(v), unique=True)


def _f32(v: float) -> str:
    return np.format_float_scientific(np.float32(v), unique=True) + "f"


def _i32(v: int) -> str:
    return "(-2147483647L - 1)" if v == -(2**31) else f"{v}L"


# ---- IS §2 in fixed point ------------------------------------------------------------------------


@dataclass
class FixedInput:
    """One input's fixed-point quantiser: the input is v = x · 2^frac_bits (int32); q = −32768 for
    v < low, 32767 for v ≥ high, else the listed exception for v, else −32767 + ⌊(Δ·mul + add) / 2^(32 +
    shift)⌋ with Δ = v − low (u32)."""

    frac_bits: int
    low: int
    high: int
    mul: int
    add: int
    shift: int
    exceptions: list[tuple[int, int]]


def _quantizer(scale: np.ndarray, zero: np.ndarray):
    return SimpleNamespace(n_inputs=len(scale), input_scale=scale, input_zero=zero)


def reference_fixed(scale, zero, frac_bits, V) -> np.ndarray:
    """reference.quantize_inputs at x = V · 2^-frac_bits (exact in float64 for |V| < 2^53), int16 (n, d)."""
    scale, zero = np.asarray(scale, np.float64), np.asarray(zero, np.float64)
    X = np.asarray(V, dtype=np.int64).astype(np.float64) * np.ldexp(1.0, -np.asarray(frac_bits))
    return reference.quantize_inputs(_quantizer(scale, zero), X)


def thresholds(scale, zero, frac_bits) -> np.ndarray:
    """(65535, d) int64: row i holds the smallest int32 v with reference q ≥ i − 32767 for each input."""
    d = len(scale)
    J = np.arange(-32767, 32768, dtype=np.int64)[:, None]
    lo = np.full((len(J), d), -(2**31), dtype=np.int64)  # q(lo) = −32768 < j
    hi = np.full((len(J), d), 2**31 - 1, dtype=np.int64)  # q(hi) = 32767 ≥ j
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        ok = reference_fixed(scale, zero, frac_bits, mid).astype(np.int64) >= J
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return hi


def fixed_inputs(scale, zero) -> list[FixedInput]:
    """The fixed-point quantiser of every input, bit-exact with reference.quantize_inputs at v·2^-K."""
    scale, zero = np.asarray(scale, np.float64), np.asarray(zero, np.float64)
    reach = np.maximum(np.abs(scale * (-32769.0 - zero)), np.abs(scale * (32768.0 - zero)))
    # The largest K with the range (and a step beyond) inside |v| < 2^30, so both ends saturate in int32.
    K = np.array([30 - math.frexp(float(r))[1] for r in reach], dtype=np.int64)
    if np.any(np.abs(K) > 60):
        raise ValueError("an input's range is too far from 1 for a fixed-point input")
    T = thresholds(scale, zero, K)
    out = []
    for k in range(len(scale)):
        t = [int(v) for v in T[:, k]]
        low, high = t[0], t[-1]
        slope = Fraction(1, 2 ** int(K[k])) if K[k] >= 0 else Fraction(2 ** int(-K[k]))
        slope /= Fraction(float(scale[k]))
        base = low * slope + Fraction(float(zero[k])) + Fraction(1, 2) + 32767
        for shift in range(32, -1, -1):
            mul = round(slope * 2 ** (32 + shift))
            if mul < 2**64:
                break
        else:
            raise ValueError(f"input {k}: the fixed-point step is coarser than 2^32 quantisation steps")
        P = 32 + shift
        add = min(max(math.floor(base * 2**P), 0), 2**64 - 1)
        span = high - low

        def formula(delta: int, mul=mul, add=add, P=P) -> int:
            return (delta * mul + add) >> P

        candidates: set[int] = set()
        for i in range(1, 65535):
            want = t[i] - low
            got = max(0, -((add - i * 2**P) // mul)) if mul else span  # ⌈(i·2^P − add)/mul⌉
            if got != want:
                candidates.update(range(max(0, min(got, want)), min(max(got, want), span)))
            if len(candidates) > _MAX_EXCEPTIONS:
                raise ValueError(f"input {k}: too many float64 rounding exceptions")
        exceptions = []
        if candidates:
            deltas = sorted(candidates)
            V = np.zeros((len(deltas), len(scale)), dtype=np.int64)
            V[:, k] = np.array(deltas, dtype=np.int64) + low
            ref = reference_fixed(scale, zero, K, V)[:, k]
            for delta, q in zip(deltas, ref.tolist(), strict=True):
                if formula(delta) - 32767 != q:
                    exceptions.append((delta + low, q))
        out.append(FixedInput(int(K[k]), low, high, mul, add, shift, exceptions))
    return out


# ---- IS §7 in fixed point ------------------------------------------------------------------------


def output_constants(mean_scale: float, y_offset: float) -> list[tuple[int, int, int]]:
    """Per D = 0 .. 9: (mul, shift, offset) with mean_scale·10^D ≈ mul·2^-shift (2^30 ≤ mul < 2^31 where
    the shift allows, 1 ≤ shift ≤ 62) and offset = round(y_offset·10^D); (0, 0, 0) where 10^-D units
    cannot be reached (mean_scale·10^D ≥ 2^29 or |offset| ≥ 2^62)."""
    out = []
    for D in range(OUTPUT_DECIMALS):
        value = Fraction(mean_scale) * 10**D
        offset = round(Fraction(y_offset) * 10**D)
        if value <= 0 or value >= 2**29 or abs(offset) >= 2**62:
            out.append((0, 0, 0))
            continue
        shift = min(62, 30 - math.floor(math.log2(value)))
        mul = round(value * 2**shift)
        if mul >= 2**31:
            shift -= 1
            mul = round(value * 2**shift)
        out.append((mul, shift, offset))
    return out


# ---- the header ----------------------------------------------------------------------------------


def _summary_lines(blob: Blob) -> list[str]:
    if blob.classes:  # MF §11: a classifier; direct_classify's outputs are fixed point (IS §10)
        return [
            f"features        {blob.kind_name}, {blob.n_inputs} inputs -> {blob.n_features} features",
            f"classifier      {blob.classes} classes, {blob.n_samples} weight rows, {blob.bits}-bit levels, "
            f"layout {blob.layout_name}",
            f"size            {len(blob.data)} bytes",
            "outputs         direct_classify: c.label, c.proba[k] / 65536, entropy and mutual_info",
            "                in 2^-16 bits (times 0.693147 / 65536 for nats) (IS §10)",
        ]
    return [
        f"features        {blob.kind_name}, {blob.n_inputs} inputs -> {blob.n_features} features",
        f"weights         {blob.bits}-bit levels, {blob.n_samples} posterior samples, "
        f"{100 * blob.sparsity:.1f}% zeros, layout {blob.layout_name}",
        f"exact moments   {'yes' if blob.has_exact else 'no'}",
        f"size            {len(blob.data)} bytes",
        f"outputs         mean = {blob.y_offset!r} + {blob.mean_scale!r} * p.mean",
        "                sd = " + f"{blob.mean_scale!r}" + " * sqrt(p.var_y)   (target units)",
    ]


def _array(ctype: str, name: str, items: list[str], per_line: int = 4) -> str:
    rows = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return f"static const {ctype} {name}[{len(items)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def _constants(blob: Blob, name: str) -> str:
    N = name.upper()
    d = blob.n_inputs
    names = model_input_names(blob)
    idents = enum_names(names)
    scale, zero = blob.input_scale, blob.input_zero
    lo, hi = scale * (-32768.0 - zero), scale * (32767.0 - zero)
    meta = blob.meta
    train_lo, train_hi = meta.get("input_low"), meta.get("input_high")
    if not (
        isinstance(train_lo, list) and isinstance(train_hi, list) and len(train_lo) == len(train_hi) == d
    ):
        train_lo, train_hi = lo.tolist(), hi.tolist()
    fixed = fixed_inputs(scale, zero)
    exceptions = [(k, v, q) for k, f in enumerate(fixed) for v, q in f.exceptions]
    outputs = output_constants(blob.mean_scale, blob.y_offset)
    enum = ",\n    ".join(f"{N}_IN_{ident} = {k}" for k, ident in enumerate(idents))
    labels = blob.meta.get("classes") if blob.classes else None
    classifier = []
    if isinstance(labels, list) and len(labels) == blob.classes:  # MF §11: the labels, host metadata
        classifier = [
            f"#define {N}_N_CLASSES {blob.classes}u /* direct_classify (IS §10, MF §11) */\n",
            "/* direct_classify_scratch_size(): the features rounded up to 8 bytes, then 16 bytes per\n"
            " * class; declare the buffer 8-byte aligned (e.g. as uint64_t). */\n",
            f"#define {N}_CLASSIFY_SCRATCH_BYTES {((scratch_bytes(blob) + 7) & ~7) + 16 * blob.classes}u\n",
            "/* The class labels in class order (c.label indexes them). */\n",
            _array("char *const", f"{N}_CLASS_LABELS", [_c_string(str(v)) for v in labels]),
        ]
    parts = [
        *classifier,
        f"#define {N}_N_INPUTS {d}u\n",
        f"#define {N}_Y_OFFSET {_f64(blob.y_offset)}\n",
        f"#define {N}_MEAN_SCALE {_f64(blob.mean_scale)}\n",
        f"#define {N}_N_QFIX_EXCEPTIONS {len(exceptions)}u\n\n",
        f"/* Input indices, in the order the model takes its inputs. */\nenum {{\n    {enum}\n}};\n\n",
        "/* Per input: name, IS §2 scale and zero point (x = scale * (q - zero)), the training range and\n"
        " * the clipping range (q = -32768 and 32767); real values outside the clipping range saturate. */\n",
        _array("char *const", f"{N}_INPUT_NAMES", [_c_string(s) for s in names]),
        _array("double", f"{N}_INPUT_SCALE", [_f64(v) for v in scale]),
        _array("double", f"{N}_INPUT_ZERO", [_f64(v) for v in zero]),
        _array("float", f"{N}_INPUT_SCALE_F32", [_f32(v) for v in scale]),
        _array("float", f"{N}_INPUT_ZERO_F32", [_f32(v) for v in zero]),
        _array("double", f"{N}_INPUT_TRAIN_LOW", [_f64(v) for v in train_lo]),
        _array("double", f"{N}_INPUT_TRAIN_HIGH", [_f64(v) for v in train_hi]),
        _array("double", f"{N}_INPUT_CLIP_LOW", [_f64(v) for v in lo]),
        _array("double", f"{N}_INPUT_CLIP_HIGH", [_f64(v) for v in hi]),
        "\n/* Fixed-point inputs: input k is the int32 v = x * 2^FRAC_BITS[k] (x in input units, rounded as\n"
        " * you like: v is the value the helper quantises). The rest is the quantiser's data (see\n"
        f" * {name}_quantize_fixed). */\n",
        _array("int8_t", f"{N}_INPUT_FRAC_BITS", [str(f.frac_bits) for f in fixed], per_line=8),
        _array("int32_t", f"{N}_QFIX_LOW", [_i32(f.low) for f in fixed]),
        _array("int32_t", f"{N}_QFIX_HIGH", [_i32(f.high) for f in fixed]),
        _array("uint32_t", f"{N}_QFIX_MUL_HI", [f"{f.mul >> 32}UL" for f in fixed]),
        _array("uint32_t", f"{N}_QFIX_MUL_LO", [f"{f.mul & 0xFFFFFFFF}UL" for f in fixed]),
        _array("uint32_t", f"{N}_QFIX_ADD_HI", [f"{f.add >> 32}UL" for f in fixed]),
        _array("uint32_t", f"{N}_QFIX_ADD_LO", [f"{f.add & 0xFFFFFFFF}UL" for f in fixed]),
        _array("uint8_t", f"{N}_QFIX_SHIFT", [f"{f.shift}u" for f in fixed], per_line=8),
    ]
    if exceptions:
        parts += [
            "/* Where float64 rounding in IS §2 moved a step off the exact rational one: (input, v, q). */\n",
            _array("uint16_t", f"{N}_QFIX_EXC_INPUT", [f"{k}u" for k, _, _ in exceptions], per_line=8),
            _array("int32_t", f"{N}_QFIX_EXC_VALUE", [_i32(v) for _, v, _ in exceptions]),
            _array("int16_t", f"{N}_QFIX_EXC_Q", [str(q) for _, _, q in exceptions], per_line=8),
        ]
    parts += [
        "\n/* Outputs in 10^-D target units, D = 0 .. 9: mean_scale * 10^D = MUL[D] * 2^-SHIFT[D],\n"
        " * OFFSET[D] = round(y_offset * 10^D); MUL[D] = 0 where such units are out of reach. */\n",
        _array("int32_t", f"{N}_OUTPUT_MUL", [f"{m}L" for m, _, _ in outputs]),
        _array("uint8_t", f"{N}_OUTPUT_SHIFT", [f"{s}u" for _, s, _ in outputs], per_line=10),
        _array(
            "int64_t", f"{N}_OUTPUT_OFFSET", [f"{o}LL" if o >= 0 else f"({o + 1}LL - 1)" for *_, o in outputs]
        ),
    ]
    return "".join(parts)


_HELPERS = """
/* IS §2 for one input in float64: floor(x / scale + zero + 1/2) clamped to int16, the operations of
 * runtime/reference.py quantize_inputs in the same order, hence bit-exact wherever double is IEEE
 * binary64 and evaluated in its own precision (FLT_EVAL_METHOD 0: Arm, aarch64, x86-64, AVR with
 * -mdouble=64). NaN gives -32768 (at the edge). No libm: floor by truncation and a correction. */
static inline int16_t @name@_quantize_f64_input(uint32_t k, double x) {
    double u = x / @N@_INPUT_SCALE[k] + @N@_INPUT_ZERO[k] + 0.5;
    int32_t t;
    if (!(u >= -32768.0)) {
        return (int16_t)(-32767 - 1);
    }
    if (u >= 32768.0) {
        return (int16_t)32767;
    }
    t = (int32_t)u;
    return (int16_t)((double)t > u ? t - 1 : t);
}

/* IS §2 in float32 arithmetic (cores with a single-precision FPU only): differs from IS §2 of the same
 * value only where x / scale + zero + 1/2 is within e = 2^-21 * (|x / scale| + |zero| + 32768) of an
 * integer, by at most ceil(e) steps: one step for a range near zero (|zero| < 2^18, e < 1/2), more
 * for a narrow range far from zero (docs/export.md). */
static inline int16_t @name@_quantize_f32_single_input(uint32_t k, float x) {
    float u = x / @N@_INPUT_SCALE_F32[k] + @N@_INPUT_ZERO_F32[k] + 0.5f;
    int32_t t;
    if (!(u >= -32768.0f)) {
        return (int16_t)(-32767 - 1);
    }
    if (u >= 32768.0f) {
        return (int16_t)32767;
    }
    t = (int32_t)u;
    return (int16_t)((float)t > u ? t - 1 : t);
}

/* Real inputs x[0 .. @N@_N_INPUTS - 1] (input units) -> q, bit-exact with IS §2 of (double)x where double
 * is binary64; with @N@_QUANTIZE_SINGLE defined, or where double is 32-bit (AVR's default), in float32
 * (the bound above). */
static inline void @name@_quantize_f32(const float *x, int16_t *q) {
    uint32_t k;
    for (k = 0; k < @N@_N_INPUTS; ++k) {
#if defined(@N@_QUANTIZE_SINGLE) || DBL_MANT_DIG != 53
        q[k] = @name@_quantize_f32_single_input(k, x[k]);
#else
        q[k] = @name@_quantize_f64_input(k, (double)x[k]);
#endif
    }
}

/* Real inputs in double -> q: bit-exact with IS §2 where double is binary64. */
static inline void @name@_quantize_f64(const double *x, int16_t *q) {
    uint32_t k;
    for (k = 0; k < @N@_N_INPUTS; ++k) {
        q[k] = @name@_quantize_f64_input(k, x[k]);
    }
}

/* IS §2 in integers for one input given as v = x * 2^@N@_INPUT_FRAC_BITS[k] (int32), bit-exact with
 * runtime/reference.py quantize_inputs at x = v * 2^-FRAC_BITS[k] for every int32 v: below and above
 * the two thresholds it saturates; inside, q - (-32767) = floor((d * MUL + ADD) / 2^(32 + SHIFT)) with
 * d = v - LOW < 2^32 and 64-bit MUL, ADD, computed as two 32x32 -> 64-bit products (no sum overflows:
 * each is at most (2^32 - 1)^2 + 2 * (2^32 - 1)); the listed exceptions are the v where float64 rounding
 * moved a step. */
static inline int16_t @name@_quantize_fixed_input(uint32_t k, int32_t v) {
    uint32_t d;
    uint64_t p0, p1;
    if (v < @N@_QFIX_LOW[k]) {
        return (int16_t)(-32767 - 1);
    }
    if (v >= @N@_QFIX_HIGH[k]) {
        return (int16_t)32767;
    }
#if @N@_N_QFIX_EXCEPTIONS > 0
    {
        uint32_t i;
        for (i = 0; i < @N@_N_QFIX_EXCEPTIONS; ++i) {
            if (@N@_QFIX_EXC_VALUE[i] == v && @N@_QFIX_EXC_INPUT[i] == k) {
                return @N@_QFIX_EXC_Q[i];
            }
        }
    }
#endif
    d = (uint32_t)v - (uint32_t)@N@_QFIX_LOW[k];
    p0 = (uint64_t)d * @N@_QFIX_MUL_LO[k] + @N@_QFIX_ADD_LO[k];
    p1 = (uint64_t)d * @N@_QFIX_MUL_HI[k] + (p0 >> 32) + @N@_QFIX_ADD_HI[k];
    return (int16_t)((int32_t)(p1 >> @N@_QFIX_SHIFT[k]) - 32767);
}

/* Fixed-point inputs v[k] = x_k * 2^@N@_INPUT_FRAC_BITS[k] (int32) -> q, bit-exact, no floating point. */
static inline void @name@_quantize_fixed(const int32_t *v, int16_t *q) {
    uint32_t k;
    for (k = 0; k < @N@_N_INPUTS; ++k) {
        q[k] = @name@_quantize_fixed_input(k, v[k]);
    }
}

/* floor(sqrt(v)) for a uint64_t, bit by bit (no division). */
static inline uint64_t @name@_isqrt64(uint64_t v) {
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

/* IS §7 in fixed point: the integer outputs mean_q (p.mean) and a variance (p.var_y, or p.var_f) ->
 * the mean and the standard deviation in units of 10^-decimals target units (decimals 0 .. 9), e.g.
 * decimals 2: 12345 means 123.45. Each within 1 unit (plus 2^-29 of the value) of IS §7's float64
 * value; saturates at the int32 range. Returns 0, or -1 where those units are out of reach
 * (@N@_OUTPUT_MUL[decimals] == 0). */
static inline int @name@_output_fixed(int32_t mean_q, uint64_t var_q, uint32_t decimals, int32_t *mean,
                                      int32_t *sd) {
    int64_t m, mul;
    uint64_t r, s;
    uint32_t f = 0, shift;
    if (decimals > 9u || @N@_OUTPUT_MUL[decimals] == 0) {
        return -1;
    }
    mul = @N@_OUTPUT_MUL[decimals];
    shift = @N@_OUTPUT_SHIFT[decimals];
    m = (int64_t)mean_q * mul + ((int64_t)1 << (shift - 1));
    m = (m >= 0 ? m >> shift : ~(~m >> shift)) + @N@_OUTPUT_OFFSET[decimals];
    *mean = m > 2147483647 ? (int32_t)2147483647 : m < -2147483647 ? (int32_t)-2147483647 : (int32_t)m;
    while (f < 31u && var_q < ((uint64_t)1 << 60)) {
        var_q <<= 2;
        ++f;
    }
    r = @name@_isqrt64(var_q) * (uint64_t)mul;
    shift += f;
    s = shift >= 64u ? 0u : (r + ((uint64_t)1 << (shift - 1))) >> shift;
    *sd = s > 2147483647u ? (int32_t)2147483647 : (int32_t)s;
    return 0;
}
"""


# ---- MF §10: raw columns -> int16 inputs ---------------------------------------------------------

_RAW_HELPERS = """
/* MF §10 on the device: raw columns -> the int16 inputs q[0 .. @N@_N_INPUTS - 1], bit-exact with the
 * host's preparation then IS §2 (runtime/schema.py prepare, reference.quantize_inputs). raw[c] is column
 * c in @N@_COL_... order: a number in input units, a categorical column's level code (@N@_<COLUMN>_<LEVEL>,
 * 0 .. n_levels - 1) or a missing value: NaN here (e.g. 0.0 / 0.0, or NAN from math.h). One-hot
 * inputs, indicators and imputed values are the exact int16 constants the host's quantisation gives
 * them. Returns 0, or 1 + c for the first column whose value the model refuses (a code that is not a
 * level, a missing value where the column takes none, an infinity), as the host refuses it. */
static inline int @name@_quantize_raw_f64(const double *raw, int16_t *q) {
    uint32_t c, j;
    for (c = 0; c < @N@_N_COLUMNS; ++c) {
        uint32_t k = @N@_COLUMN_FIRST_INPUT[c];
        double v = raw[c];
        if (@N@_COLUMN_KIND[c] == 1u) {
            uint32_t n = @N@_COLUMN_N_LEVELS[c], code;
            if (!(v >= 0.0 && v < (double)n)) {
                return (int)c + 1;
            }
            code = (uint32_t)v;
            if ((double)code != v) {
                return (int)c + 1;
            }
            for (j = 0; j < n; ++j) {
                q[k + j] = j == code ? @N@_INPUT_Q_ONE[k + j] : @N@_INPUT_Q_ZERO[k + j];
            }
        } else if (v != v) {
            if (@N@_COLUMN_MISSING[c] == 0u) {
                return (int)c + 1;
            }
            q[k] = @N@_INPUT_Q_FILL[k];
            q[k + 1] = @N@_INPUT_Q_ONE[k + 1];
        } else {
            if (v > DBL_MAX || v < -DBL_MAX) {
                return (int)c + 1;
            }
            q[k] = @name@_quantize_f64_input(k, v);
            if (@N@_COLUMN_MISSING[c] == 1u) {
                q[k + 1] = @N@_INPUT_Q_ZERO[k + 1];
            }
        }
    }
    return 0;
}

/* The same in integers (no FPU): raw[c] is v = x * 2^@N@_INPUT_FRAC_BITS[k] for a numeric column (k its
 * first input, @N@_COLUMN_FIRST_INPUT[c]), a level code for a categorical one, and @N@_MISSING_FIXED
 * (INT32_MIN, reserved) for a missing value. Bit-exact with IS §2 at x = v * 2^-FRAC_BITS[k]. */
static inline int @name@_quantize_raw_fixed(const int32_t *raw, int16_t *q) {
    uint32_t c, j;
    for (c = 0; c < @N@_N_COLUMNS; ++c) {
        uint32_t k = @N@_COLUMN_FIRST_INPUT[c];
        int32_t v = raw[c];
        if (@N@_COLUMN_KIND[c] == 1u) {
            if (v < 0 || (uint32_t)v >= @N@_COLUMN_N_LEVELS[c]) {
                return (int)c + 1;
            }
            for (j = 0; j < @N@_COLUMN_N_LEVELS[c]; ++j) {
                q[k + j] = j == (uint32_t)v ? @N@_INPUT_Q_ONE[k + j] : @N@_INPUT_Q_ZERO[k + j];
            }
        } else if (v == @N@_MISSING_FIXED) {
            if (@N@_COLUMN_MISSING[c] == 0u) {
                return (int)c + 1;
            }
            q[k] = @N@_INPUT_Q_FILL[k];
            q[k + 1] = @N@_INPUT_Q_ONE[k + 1];
        } else {
            q[k] = @name@_quantize_fixed_input(k, v);
            if (@N@_COLUMN_MISSING[c] == 1u) {
                q[k + 1] = @N@_INPUT_Q_ZERO[k + 1];
            }
        }
    }
    return 0;
}
"""


def _raw_part(blob: Blob, name: str) -> tuple[str, str]:
    """(constants, helpers) of the raw-column helpers for a blob whose schema prepares its inputs
    (categorical levels, missing values; MF §10), else ("", "")."""
    from direct_edge.runtime import schema as input_schema

    schema = blob.schema
    if schema is None or schema.plain:
        return "", ""
    N = name.upper()
    cols = schema.columns
    first, k = [], 0
    for c in cols:
        first.append(k)
        k += c.n_inputs
    d = blob.n_inputs

    def quantized(values: np.ndarray) -> list[str]:
        q = reference.quantize_inputs(blob, np.broadcast_to(values, (1, d)))[0]
        return [str(int(v)) for v in q]

    fill = np.zeros(d)
    for c, k in zip(cols, first, strict=True):
        if c.kind == input_schema.NUMERIC and c.missing == input_schema.MEAN_INDICATOR:
            fill[k] = c.fill
    range_mask = int(reference.input_mask(schema.value_inputs[None, :])[0])
    idents = enum_names(schema.column_names)
    enum = ",\n    ".join(f"{N}_COL_{ident} = {j}" for j, ident in enumerate(idents))
    levels = []
    for c, ident in zip(cols, idents, strict=True):
        if c.kind == input_schema.CATEGORICAL:
            codes = ",\n    ".join(
                f"{N}_{ident}_{lv} = {j}" for j, lv in enumerate(enum_names(list(c.levels)))
            )
            what = _c_string(c.name)[1:-1].replace("*/", "* /")
            levels.append(f"/* Level codes of column {what}. */\nenum {{\n    {codes}\n}};\n")
    constants = [
        "\n/* Raw columns (docs/model-format.md §10), in the order the raw helpers take them. Column c\n"
        " * becomes the inputs from COLUMN_FIRST_INPUT[c] on: numeric 1 (2 when COLUMN_MISSING[c] is 1,\n"
        " * mean-indicator: the value, then 1 where it was missing), categorical one per level\n"
        " * (one-hot). */\n",
        f"#define {N}_N_COLUMNS {len(cols)}u\n",
        f"#define {N}_MISSING_FIXED (-2147483647L - 1)\n",
        "/* p.out_of_range & RANGE_MASK: the inputs that carry a numeric value at -32768 or 32767 (one-hot\n"
        " * and indicator inputs are 0 or 1, the ends of their range, so they always sit at an edge; bit 31\n"
        " * stands for every input from 31 on, numeric or not). */\n",
        f"#define {N}_RANGE_MASK {range_mask}UL\n",
        f"enum {{\n    {enum}\n}};\n",
        *levels,
        _array("char *const", f"{N}_COLUMN_NAMES", [_c_string(c.name) for c in cols]),
        _array("uint8_t", f"{N}_COLUMN_KIND", [f"{c.kind}u" for c in cols], per_line=8),
        _array("uint8_t", f"{N}_COLUMN_MISSING", [f"{c.missing}u" for c in cols], per_line=8),
        _array("uint16_t", f"{N}_COLUMN_FIRST_INPUT", [f"{k}u" for k in first], per_line=8),
        _array("uint16_t", f"{N}_COLUMN_N_LEVELS", [f"{len(c.levels)}u" for c in cols], per_line=8),
        "/* Per input: q of the real values 0 and 1 (one-hot inputs, indicators) and of the training mean\n"
        " * that stands in for a missing value (imputed inputs; 0's q elsewhere). */\n",
        _array("int16_t", f"{N}_INPUT_Q_ZERO", quantized(np.zeros(d)), per_line=8),
        _array("int16_t", f"{N}_INPUT_Q_ONE", quantized(np.ones(d)), per_line=8),
        _array("int16_t", f"{N}_INPUT_Q_FILL", quantized(fill), per_line=8),
    ]
    return "".join(constants), _RAW_HELPERS.replace("@name@", name).replace("@N@", N)


def _usage(blob: Blob, name: str) -> str:
    """The comment block's input and prediction lines: the raw-column helpers where the schema prepares
    the inputs, and the exact-moment call where the blob carries the section (direct-run's answer)."""
    N = name.upper()
    if blob.schema is not None and not blob.schema.plain:
        lines = [
            (f"double raw[{N}_N_COLUMNS];", f"raw columns, raw[{N}_COL_...] by name: a number, a level"),
            ("", f"code ({N}_<COLUMN>_<LEVEL>) or NaN for a missing value"),
            (f"int16_t q[{N}_N_INPUTS];", ""),
            (f"{name}_quantize_raw_f64(raw, q);", "0, or 1 + the column it refuses;"),
            ("", f"{name}_quantize_raw_fixed(v, q) without an FPU"),
        ]
        clipped = f"(p.out_of_range & {N}_RANGE_MASK) != 0"
    else:
        lines = [
            (f"float x[{N}_N_INPUTS];", f"real inputs, x[{N}_IN_...] by name"),
            (f"int16_t q[{N}_N_INPUTS];", ""),
            (f"{name}_quantize_f32(x, q);", f"or {name}_quantize_fixed(v, q) without an FPU"),
        ]
        clipped = "p.out_of_range != 0"
    if blob.classes:  # MF §11: direct_classify, fixed-point outputs (IS §10)
        lines += [
            ("direct_classification c;", ""),
            ("direct_classify(&m, q, scratch, sizeof scratch, &c);", ""),
            ("", f"c.label indexes {N}_CLASS_LABELS; c.proba[k] / 65536"),
            ("", "c.entropy, c.mutual_info: 2^-16 bits (abstain when mutual_info is high)"),
            (f"{clipped.replace('p.', 'c.')}:", "an input beyond the training range, clipped"),
        ]
        width = max(len(code) for code, note in lines if note) + 2
        return "\n".join(f" *   {code:<{width}}{note}".rstrip() for code, note in lines)
    lines.append(("direct_prediction p;", ""))
    if blob.has_exact:
        lines += [
            ("direct_predict_exact(&m, q, scratch, sizeof scratch, &p);", ""),
            ("", "the exact moments (direct_predict: the S samples)"),
        ]
    else:
        lines += [("direct_predict(&m, q, scratch, sizeof scratch, &p);", ""), ("", "the S-sample ensemble")]
    lines += [
        (f"{clipped}:", "an input beyond the training range, clipped"),
        ("int32_t mean, sd;", "in 10^-2 target units:"),
        (f"{name}_output_fixed(p.mean, p.var_y, 2u, &mean, &sd);", ""),
    ]
    width = max(len(code) for code, note in lines if note) + 2
    return "\n".join(f" *   {code:<{width}}{note}".rstrip() for code, note in lines)


def render(blob_bytes: bytes, name: str) -> str:
    """The header text for ``blob_bytes`` with identifiers prefixed by ``name``."""
    return render_blob(parse(blob_bytes), name)


def render_blob(blob: Blob, name: str) -> str:
    """The header text for a parsed blob (its bytes are ``blob.data``); identifiers prefixed by ``name``."""
    blob_bytes = bytes(blob.data)
    N = name.upper()
    guard = f"{N}_H"
    body = []
    for i in range(0, len(blob_bytes), 16):
        chunk = blob_bytes[i : i + 16]
        body.append("    " + ", ".join(f"0x{byte:02x}" for byte in chunk) + ",")
    comment = "\n".join(f" *   {line}".rstrip() for line in _summary_lines(blob))
    helpers = _HELPERS.replace("@name@", name).replace("@N@", N)
    raw_constants, raw_helpers = _raw_part(blob, name)
    scratch_line = (
        f"uint64_t scratch[({N}_CLASSIFY_SCRATCH_BYTES + 7) / 8];"
        if blob.classes
        else f"int16_t scratch[{N}_SCRATCH_BYTES / 2];"
    )
    return f"""/*
 * {name}.h - a direct-edge model packed for the integer runtime (runtime/c/direct.h).
 * Generated by direct-export; the bytes follow docs/model-format.md, the arithmetic
 * docs/integer-spec.md.
 *
{comment}
 *
 * Use (docs/export.md, "The C header"):
 *   direct_model m;
 *   direct_model_open(&m, {name}_blob.bytes, {N}_SIZE);
 *   {scratch_line}
{_usage(blob, name)}
 */
#ifndef {guard}
#define {guard}

#include <float.h>
#include <stdint.h>

#define {N}_SIZE {len(blob_bytes)}u
#define {N}_SCRATCH_BYTES {scratch_bytes(blob)}u
{_rotation_check(blob, name)}{_constants(blob, name)}{raw_constants}
/* Where the bytes go: define DIRECT_BLOB_STORAGE before including this header to place them, e.g. as
 * PROGMEM on AVR (avr/pgmspace.h; the runtime then reads flash, see DIRECT_PROGMEM in direct.h). */
#ifndef DIRECT_BLOB_STORAGE
#define DIRECT_BLOB_STORAGE
#endif

/* The union aligns the bytes like a uint64_t (MF §1 needs 4) without compiler extensions. */
static const union {{
    uint8_t bytes[{len(blob_bytes)}];
    uint64_t align_[2];
}} {name}_blob DIRECT_BLOB_STORAGE = {{{{
{chr(10).join(body)}
}}}};
{helpers}{raw_helpers}
#endif /* {guard} */
"""
