"""Pack a trained posterior into the runtime's blob.

The blob layout is docs/model-format.md (MF §n); the integer parameters chosen here follow
docs/integer-spec.md (IS §n).  :func:`pack` takes a fitted ``DirectRegressor`` (or a ``model.direct``
path), draws S posterior samples, folds the input standardisation into integer feature parameters,
picks the pre-shift and the output multipliers, encodes the samples in the layout the cost model
(export/layout_cost.py) predicts fastest within a byte budget, or the smallest, and returns the bytes.
:func:`synthetic_blob` builds blobs with chosen sizes, bits and sparsity for tests and benchmarks
through the same functions.  Every blob is re-read by ``direct_edge.runtime.blob.parse``
before it is returned, so the exporter cannot emit what the runtimes would reject.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from direct_edge.errors import UserError
from direct_edge.export import layout_cost
from direct_edge.export.layout_cost import DEFAULT_TARGET
from direct_edge.files import write_atomic
from direct_edge.runtime import bounds, header
from direct_edge.runtime import schema as input_schema
from direct_edge.runtime.blob import (
    FLAG_EXACT,
    FLAG_FLOOR,
    FLAG_GAINS,
    FLAG_ROTATION,
    HEADER_SIZE,
    KIND_LINEAR,
    KIND_RFF,
    LAYOUT_BITMAP4,
    LAYOUT_DENSE4,
    LAYOUT_GAP4,
    LAYOUT_GROUPED,
    LAYOUT_NAMES,
    parse,
)

LAYOUTS = {name: code for code, name in LAYOUT_NAMES.items()}
# Preference among layouts of equal size: the fastest to evaluate first (docs/benchmarks.md).
_SPEED_ORDER = (LAYOUT_GROUPED, LAYOUT_DENSE4, LAYOUT_GAP4, LAYOUT_BITMAP4)
CLIP_SDS = 8.0
MAX_BITS = 4  # MF §6: levels of 2, 3 or 4 bits


class ExportError(UserError):
    """A model that cannot be packed (the message says why and what to change)."""


# ---- IS §2: input quantisation --------------------------------------------------------------------


def input_range(
    offset: np.ndarray, scale: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """IS §2 clipping range per input: the training [min, max], so that every training value reaches the
    device unclipped (a heavy tail costs resolution, never a clipped training row); μ ± 8σ for older
    model files without a recorded range.  Kept inside float64's range (inputs near ±1.7e308)."""
    top = np.finfo(np.float64).max
    if lo is not None and hi is not None:
        low, high = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    else:
        with np.errstate(over="ignore"):
            low = np.clip(offset - CLIP_SDS * scale, -top, top)
            high = np.clip(offset + CLIP_SDS * scale, -top, top)
    with np.errstate(over="ignore"):
        width = high - low  # inf only for ranges wider than float64 holds: a real range, not a bad one
    tiny = 1e-9 * np.maximum(1.0, np.abs(offset))
    bad = ~(width > tiny)
    low, high = np.where(bad, offset - scale, low), np.where(bad, offset + scale, high)
    return low.astype(np.float64), high.astype(np.float64)


def input_quantization(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IS §2: (scale, zero point) mapping −32768 ↔ lo and 32767 ↔ hi; float64 (d,) each."""
    scale = hi / 65535.0 - lo / 65535.0  # never overflows, unlike (hi − lo) near ±1.7e308
    return scale, -32768.0 - lo / scale


def blob_input_range(blob) -> tuple[np.ndarray, np.ndarray]:
    """IS §2: the input range (lo, hi) a parsed blob's scales and zero points stand for, the training
    range (−32768 ↔ lo, 32767 ↔ hi); float64 (d,) each, in input units."""
    return blob.input_scale * (-32768.0 - blob.input_zero), blob.input_scale * (32767.0 - blob.input_zero)


def standardisation_coefficients(
    scale: np.ndarray, zero: np.ndarray, offset: np.ndarray, sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IS §2: z = a·q + c for the trainer's standardisation (offset μ, scale σ)."""
    return scale / sd, -(scale * zero + offset) / sd


# ---- IS §3: feature parameters --------------------------------------------------------------------


def linear_parameters(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """IS §3.1: (M int32 (d,), B int32 (d,), Fφ), the largest Fφ ≤ 14 whose bounds hold."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(c))):  # extreme offsets and scales overflow
        raise ExportError("an input's standardisation is out of float64's range for 16-bit linear features")
    for frac in range(14, -1, -1):
        try:
            M = [round(float(v) * 2.0 ** (frac + 15)) for v in a]
            B = [round(float(v) * 2.0 ** (frac + 15)) for v in c]
        except OverflowError:  # a coefficient beyond float64 at this scale: far beyond every bound
            continue
        if all(bounds.linear_feature_fits(m, b) for m, b in zip(M, B, strict=True)):
            return np.array(M, dtype=np.int32), np.array(B, dtype=np.int32), frac
    raise ExportError("an input's standardised range is too wide for 16-bit linear features")


def rff_parameters(a: np.ndarray, c: np.ndarray, projection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IS §3.2: phase weights W int32 (F, d) and offsets C uint32 (F,), in units of 2^-32 turn."""
    turns = projection / (2 * math.pi)  # (d, F)
    W = np.rint(2.0**32 * (a[:, None] * turns)).T
    if np.any(np.abs(W) >= 2.0**31):
        raise ExportError("an rff frequency is too high for 32-bit phases; use a longer lengthscale")
    offset = c @ turns
    C = np.rint(2.0**32 * (offset - np.floor(offset))) % 2.0**32
    return W.astype(np.int32), C.astype(np.uint32)


def sine_table() -> np.ndarray:
    """IS §3.3: the 257-entry quarter-wave table, int16 (each entry ≤ 32767, IS §9)."""
    table = np.minimum(32767, np.rint(32768.0 * np.sin(np.pi * np.arange(257) / 512))).astype(np.int16)
    assert bounds.sine_table_fits(table)
    return table


# ---- IS §4–§5: pre-shift and output multipliers ---------------------------------------------------


def output_parameters(levels: np.ndarray) -> dict[str, int]:
    """IS §4, §5, §9: the smallest pre-shift r and the multipliers (M1, s1, M2, s2) for (S, b) levels."""
    bound = int(np.abs(levels.astype(np.int64)).sum(axis=1).max())
    return output_parameters_for(levels.shape[0], bound)


def output_parameters_for(S: int, bound: int) -> dict[str, int]:
    """:func:`output_parameters` for S samples of weight bound L = ``bound``; ExportError above 65536."""
    if not bounds.weight_bound_fits(bound):
        raise ExportError(f"a sample's Σ|level| = {bound} exceeds 65536; use fewer features")
    r = next(r for r in range(32) if bounds.ensemble_sum_fits(S, bound, r))
    e = (S - 1).bit_length()  # ⌈log2 S⌉
    m1, s1 = round(2 ** (30 + e) / S), 30 + e
    if S == 1:
        m2, s2 = 0, 33
    else:
        s2 = max(33, 30 + (S * S - 1).bit_length())  # so that 2^30 <= M2 <= 2^31
        m2 = round(2**s2 / (S * S))
    # M1 ≈ 2^s1/S always passes IS §9's mean bound; checked as the readers check it.
    assert bounds.mean_fits(S, bound, r, m1, s1) and bounds.variance_multiplier_fits(m2)
    return {"r": r, "m1": m1, "s1": s1, "m2": m2, "s2": s2}


# ---- MF §6: sample layouts ------------------------------------------------------------------------


def _pack_nibbles(values: np.ndarray) -> bytes:
    nib = (values.astype(np.int16) & 0xF).astype(np.uint8)
    if len(nib) % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def encode_dense4(levels: np.ndarray) -> bytes:
    """MF §6.1: S × ⌈b/2⌉ bytes."""
    return b"".join(_pack_nibbles(row) for row in levels)


def encode_bitmap4(levels: np.ndarray) -> bytes:
    """MF §6.2: per sample, the presence bitmap then the nonzero nibbles."""
    out = []
    for row in levels:
        present = row != 0
        out.append(np.packbits(present, bitorder="little").tobytes())
        out.append(_pack_nibbles(row[present]))
    return b"".join(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_grouped(levels: np.ndarray) -> bytes:
    """MF §6.3: per sample, one group per nonzero level: level, count, gap-coded indices."""
    out = bytearray()
    for row in levels:
        values = [int(v) for v in np.unique(row) if v != 0]
        out.append(len(values))
        for v in values:
            idx = np.flatnonzero(row == v)
            out += struct.pack("<b", v) + _varint(len(idx))
            gaps = np.diff(idx, prepend=-1)
            for g in gaps.tolist():
                zeros, last = divmod(g - 1, 255)
                out += b"\0" * zeros + bytes([last + 1])
    return bytes(out)


def encode_gap4(levels: np.ndarray) -> bytes:
    """MF §6.4: per sample, a byte count, then one (gap, level) byte per nonzero plus skip bytes."""
    out = bytearray()
    for row in levels:
        body = bytearray()
        position = -1
        for i in np.flatnonzero(row).tolist():
            gap = i - position
            while gap > 16:  # skips of 16·(g + 1) ≤ 256 positions, as long as one weight step remains
                step = min(16 * ((gap - 1) // 16), 256)
                body.append(step // 16 - 1)
                gap -= step
            body.append((gap - 1) | ((int(row[i]) & 0xF) << 4))
            position = i
        out += _varint(len(body)) + body
    return bytes(out)


_ENCODERS = {
    LAYOUT_DENSE4: encode_dense4,
    LAYOUT_BITMAP4: encode_bitmap4,
    LAYOUT_GROUPED: encode_grouped,
    LAYOUT_GAP4: encode_gap4,
}


OPTIMIZE = ("speed", "size")


def rank_layouts(
    levels: np.ndarray, encoded: dict[int, bytes], optimize: str = "speed", target: str = DEFAULT_TARGET
) -> list[int]:
    """The layouts for (S, b) ``levels``, best first, given each one's ``encoded`` bytes.  "size": the
    smallest first (the faster one on a tie, docs/benchmarks.md).  "speed": the fewest instructions
    per prediction on ``target`` by the cost model (export/layout_cost.py), the smaller on a tie.
    ``auto`` writes the first that fits its budget."""
    if optimize not in OPTIMIZE:
        raise ExportError(f"unknown optimize {optimize!r}; choose speed or size")
    if optimize == "size":
        return sorted(encoded, key=lambda c: (len(encoded[c]), _SPEED_ORDER.index(c)))
    if target not in layout_cost.TARGETS:
        raise ExportError(f"unknown target {target!r}; choose {', '.join(layout_cost.TARGETS)}")
    predicted = layout_cost.costs(levels, target)
    return sorted(encoded, key=lambda c: (predicted[LAYOUT_NAMES[c]], len(encoded[c])))


def encode_samples(
    levels: np.ndarray,
    layout: str = "auto",
    optimize: str = "size",
    target: str = DEFAULT_TARGET,
    max_bytes: int | None = None,
) -> tuple[int, bytes]:
    """Encode (S, b) levels in ``layout``; "auto": the first of :func:`rank_layouts` (``optimize``,
    ``target``) whose encoding is at most ``max_bytes`` (by default, for "speed", dense4's size;
    ExportError when none fits).  This low-level encoder's ``optimize`` defaults to "size" (the
    smallest); :func:`pack` and :func:`assemble` default to "speed"."""
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ExportError(f"unknown layout {layout!r}; choose auto, {', '.join(LAYOUTS)}")
        code = LAYOUTS[layout]
        return code, _ENCODERS[code](levels)
    encoded = {code: _ENCODERS[code](levels) for code in _SPEED_ORDER}
    if max_bytes is None and optimize == "speed":
        max_bytes = len(encoded[LAYOUT_DENSE4])
    for code in rank_layouts(levels, encoded, optimize, target):
        if max_bytes is None or len(encoded[code]) <= max_bytes:
            return code, encoded[code]
    smallest = min(len(v) for v in encoded.values())
    raise ExportError(f"the samples need at least {smallest:,} bytes, over the budget of {max_bytes:,}")


# ---- MF §2–§8: assembling the blob ----------------------------------------------------------------


@dataclass
class IntegerModel:
    """Everything a blob holds, before packing.  Shapes: d inputs, b features, S samples (F = b/2).

    ``levels``: (S, b) int8; ``noise_variance``: (S,) sampled noise variances and
    ``noise_expected``: E_q[σ²], both in standardised target units; ``exact``: (mean, variance) of
    each weight's level, float64 (b,) each, or None; ``schema``: the input schema (MF §10), or None
    for a blob without the section; ``gains``: the feature gains G_i = g_i·2^15, integers (b,) in
    [1, 32768] (MF §5.1, IS §3.4), or None (every gain 1: no gains stored); ``floor``: the ensemble's
    variance floor of each weight's level, float64 (b,) ≥ 0 (IS §5: the predictive variance the
    samples cannot show, docs/trainer.md §7), or None (MF §5.2; all zero stores nothing);
    ``rotation``: the feature rotation (R int16 (b, b), s uint8 (b,)) of IS §3.5 from
    :func:`rotation_integers` (rff only; ``amplitude`` is then 1), or None.
    """

    kind: int
    bits: int
    input_scale: np.ndarray
    input_zero: np.ndarray
    feature_frac: int
    amplitude: float
    feature_params: tuple[np.ndarray, np.ndarray]
    levels: np.ndarray
    noise_variance: np.ndarray
    noise_expected: float
    grid_scale: float
    y_offset: float
    y_scale: float
    exact: tuple[np.ndarray, np.ndarray] | None = None
    meta: dict | None = None
    schema: input_schema.Schema | None = None
    gains: np.ndarray | None = None
    floor: np.ndarray | None = None
    rotation: tuple[np.ndarray, np.ndarray] | None = None


def rotation_integers(rotation: np.ndarray, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """IS §3.5: the trainer's rotation V ((b, b) float64, orthonormal columns; features φᵀV) and the rff
    amplitude A -> (R int16 (b, b), s uint8 (b,)) with R_kj = round(V_jk·A·2^(15+s_k)), s_k the largest
    ≤ 16 with max_j |R_kj| ≤ 32767.  A row with A·|V_jk| ≥ 32767.5/32768 (only F = 1) fits no shift; it
    gets s_k = 0 and R clipped to ±32767, an error of at most one unit (``reference.rotation_error``)."""
    V = np.asarray(rotation, dtype=np.float64)
    b = V.shape[0]
    if V.ndim != 2 or V.shape != (b, b) or not np.all(np.isfinite(V)):
        raise ExportError(f"a feature rotation must be a finite square matrix, got shape {V.shape}")
    scaled = V.T * float(amplitude)  # row k: rotated feature k
    R = np.empty((b, b), dtype=np.int16)
    shifts = np.zeros(b, dtype=np.uint8)
    for k in range(b):
        for s_k in range(bounds.ROTATION_SHIFT_MAX, -1, -1):
            row = np.rint(scaled[k] * 2.0 ** (15 + s_k))
            if np.max(np.abs(row)) <= bounds.PHI_MAX or s_k == 0:
                break
        R[k] = np.clip(row, -bounds.PHI_MAX, bounds.PHI_MAX)
        shifts[k] = s_k
    return R, shifts


def _rotation_bytes(rotation: tuple[np.ndarray, np.ndarray] | None, kind: int, b: int) -> bytes:
    """MF §5.3: R (i16, row-major) then s (u8); b"" without a rotation.  ExportError for a malformed one."""
    if rotation is None:
        return b""
    R, shifts = (np.asarray(x) for x in rotation)
    if kind != KIND_RFF or R.shape != (b, b) or shifts.shape != (b,):
        raise ExportError(f"a feature rotation needs rff features, R of shape ({b}, {b}) and {b} shifts")
    if np.any(np.abs(R.astype(np.int64)) > 32768) or not bounds.rotation_shifts_fit(shifts):
        raise ExportError("a feature rotation needs int16 R and shifts s_k <= 16 (IS §3.5)")
    return R.astype("<i2").tobytes() + shifts.astype("u1").tobytes()


def gain_integers(gains: np.ndarray) -> np.ndarray:
    """IS §3.4: trainer gains g (b,) float64, multiples of 2^-15 in (0, 1] (trainer/grid.py) -> the
    integers G = g·2^15 (b,) uint16 in [1, 32768]; ExportError for a gain off that grid."""
    G = np.asarray(gains, dtype=np.float64) * bounds.GAIN_ONE
    if G.ndim != 1 or not np.all(np.isfinite(G)) or np.any(G != np.rint(G)) or not bounds.gains_fit(G):
        raise ExportError("feature gains must be multiples of 2^-15 in (0, 1] (trainer.grid.quantise_gains)")
    return G.astype(np.uint16)


def _level_variances(var: np.ndarray) -> np.ndarray:
    """IS §6's u16 variances: level² × 2^10, rounded and clamped."""
    return np.clip(np.rint(np.asarray(var, dtype=np.float64) * 1024.0), 0, 65535).astype("<u2")


def _exact_section(exact: tuple[np.ndarray, np.ndarray]) -> bytes:
    """MF §7: μq int16 then vq uint16 (IS §6)."""
    mean, var = exact
    mq = np.clip(np.rint(mean * 4096.0), -32768, 32767).astype("<i2")
    return mq.tobytes() + _level_variances(var).tobytes()


def assemble(
    model: IntegerModel,
    layout: str = "auto",
    optimize: str = "speed",
    target: str = DEFAULT_TARGET,
    max_bytes: int | None = None,
) -> bytes:
    """Pack ``model`` into blob bytes (MF §1–§8) and verify them with the runtime's reader.

    ``layout`` "auto": with ``optimize`` "speed" the layout the cost model predicts fastest on
    ``target`` (export/layout_cost.py), with "size" the smallest, whose whole blob is at most
    ``max_bytes`` bytes (by default, for "speed", the dense4 blob's size; ExportError when none fits)."""
    levels = np.asarray(model.levels, dtype=np.int8)
    S, b = levels.shape
    d = len(model.input_scale)
    out = output_parameters(levels)
    r = out["r"]
    unit = model.grid_scale * model.amplitude * 2.0 ** (r - model.feature_frac)  # IS §7, standardised
    mean_scale = model.y_scale * unit
    if not (np.isfinite(unit) and unit * unit > 0 and np.isfinite(mean_scale) and mean_scale > 0):
        raise ExportError(
            f"the model's grid step ({model.grid_scale:.3g} sd(y)) is out of the range the integer "
            "arithmetic resolves; retrain with the grid scale chosen by the ELBO (no --grid-scale)"
        )
    exact = model.exact
    if exact is not None and not bounds.exact_mean_fits(b, r):
        exact = None  # IS §9: the exact-moment mean could not fit i32
    unit_sq = np.square(np.float64(unit))  # numpy floats: an overflow is inf, not an exception
    with np.errstate(over="ignore"):
        noise = np.float64(np.mean(model.noise_variance)) / unit_sq
        noise_exact = np.float64(model.noise_expected) / unit_sq if exact is not None else 0.0
    if not (np.isfinite(noise) and np.isfinite(noise_exact)):
        raise ExportError("the noise variance is too large next to the weights' resolution")
    noise_q, noise_exact_q = round(float(noise)), round(float(noise_exact))
    if not (bounds.noise_fits(noise_q) and bounds.noise_fits(noise_exact_q)):
        raise ExportError("the noise variance is too large next to the weights' resolution")
    M, B = model.feature_params
    if model.kind == KIND_LINEAR:
        feature_bytes = np.stack([M, B], axis=1).astype("<i4").tobytes()
        table = b""
    else:
        feature_bytes = np.asarray(B, dtype="<u4").tobytes() + np.asarray(M, dtype="<i4").tobytes()
        table = sine_table().astype("<i2").tobytes()
    flags = FLAG_EXACT if exact is not None else 0
    if model.rotation is not None:  # MF §5.3: right after the rff parameters
        feature_bytes += _rotation_bytes(model.rotation, model.kind, b)
        flags |= FLAG_ROTATION
    if model.gains is not None:  # MF §5.1
        gains = np.asarray(model.gains)
        if gains.shape != (b,) or not bounds.gains_fit(gains):
            raise ExportError(f"feature gains must be {b} integers in [1, 32768] (MF §5.1)")
        feature_bytes += gains.astype("<u2").tobytes()
        flags |= FLAG_GAINS
    if model.floor is not None and np.any(_level_variances(model.floor) > 0):  # MF §5.2: after the gains
        floor = np.asarray(model.floor, dtype=np.float64)
        if floor.shape != (b,) or not np.all(np.isfinite(floor)) or np.any(floor < 0):
            raise ExportError(f"the variance floor must be {b} finite values >= 0 (IS §5)")
        feature_bytes += _level_variances(floor).tobytes()
        flags |= FLAG_FLOOR
    meta = json.dumps(model.meta or {}, sort_keys=True, separators=(",", ":")).encode("utf-8")
    sections = [  # the samples (index 3) go in below
        np.stack([model.input_scale, model.input_zero], axis=1).astype("<f8").tobytes(),
        feature_bytes,
        table,
        b"",
        _exact_section(exact) if exact is not None else b"",
        meta,
        b"" if model.schema is None else input_schema.encode(model.schema),
    ]

    def framed(code: int, samples: bytes) -> bytes:
        return frame(
            {
                "kind": model.kind,
                "layout": code,
                "bits": model.bits,
                "flags": flags,
                "n_inputs": d,
                "n_features": b,
                "n_samples": S,
                "feature_frac": model.feature_frac,
                "pre_shift": r,
                "m1": out["m1"],
                "s1": out["s1"],
                "s2": out["s2"],
                "m2": out["m2"],
                "noise_q": noise_q,
                "noise_exact_q": noise_exact_q,
                "mean_scale": mean_scale,
                "y_offset": model.y_offset,
            },
            sections[:3] + [samples] + sections[4:],
        )

    if layout != "auto":
        blob = framed(*encode_samples(levels, layout))
        if max_bytes is not None and len(blob) > max_bytes:
            raise ExportError(
                f"the blob in {layout} is {len(blob):,} bytes, over the budget of {max_bytes:,}"
            )
    else:
        encoded = {code: _ENCODERS[code](levels) for code in _SPEED_ORDER}
        if max_bytes is None and optimize == "speed":
            max_bytes = len(framed(LAYOUT_DENSE4, encoded[LAYOUT_DENSE4]))
        candidates = (framed(c, encoded[c]) for c in rank_layouts(levels, encoded, optimize, target))
        blob = next((data for data in candidates if max_bytes is None or len(data) <= max_bytes), None)
        if blob is None:
            smallest = len(framed(*min(encoded.items(), key=lambda kv: len(kv[1]))))
            raise ExportError(
                f"the smallest blob is {smallest:,} bytes, over the budget of {max_bytes:,}; "
                "use fewer samples or features"
            )
    if parse(blob).schema != model.schema:  # the exporter never emits what the readers reject
        raise AssertionError("the schema section does not read back as written")
    return blob


def frame(values: dict, sections: list[bytes]) -> bytes:
    """MF §1–§3, §8: the header (``values`` by field name, runtime/header.py, without total_size and
    sections), the seven sections at 8-byte aligned offsets with zero padding, and the CRC.  Sections
    not given at the end are empty (six sections: a blob without the schema of MF §10)."""
    table_entries, body, offset = [], bytearray(), HEADER_SIZE
    for data in list(sections) + [b""] * (header.N_SECTIONS - len(sections)):
        if not data:
            table_entries += [0, 0]
            continue
        pad = (-offset) % 8
        body += b"\0" * pad
        offset += pad
        table_entries += [offset, len(data)]
        body += data
        offset += len(data)
    blob = header.pack({**values, "total_size": offset + 4, "sections": table_entries}) + bytes(body)
    return blob + struct.pack("<I", zlib.crc32(blob))


def _bits_of(levels: np.ndarray) -> int:
    lo, hi = int(levels.min(initial=0)), int(levels.max(initial=0))
    for bits in (2, 3, 4):
        if -(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1:
            return bits
    raise ExportError(f"levels {lo}..{hi} do not fit {MAX_BITS} bits; retrain with bits <= {MAX_BITS}")


def _integer_inputs(model, clip_range: tuple[np.ndarray, np.ndarray] | None) -> tuple:
    """IS §2–§3 for a fitted model's feature map (regressor or classifier): (feature kind code, lo, hi,
    input scale, zero point, feature parameters, Fφ).  The clipping range is ``clip_range`` (lo, hi) in
    input units, or the model's training range (``input_min_``/``input_max_``, μ ± 8σ without them).
    Raises ExportError for a clip range that is not finite with hi > lo."""
    fmap = model.feature_map_
    kind = KIND_LINEAR if fmap.kind == "linear" else KIND_RFF
    if clip_range is None:
        lo, hi = input_range(
            fmap.input_offset,
            fmap.input_scale,
            getattr(model, "input_min_", None),
            getattr(model, "input_max_", None),
        )
    else:
        lo, hi = (
            np.broadcast_to(np.asarray(v, dtype=np.float64), fmap.input_offset.shape) for v in clip_range
        )
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
            raise ExportError("clip_range needs finite (low, high) with high > low for every input")
    scale, zero = input_quantization(lo, hi)
    a, c = standardisation_coefficients(scale, zero, fmap.input_offset, fmap.input_scale)
    params, frac = _feature_params(kind, a, c, fmap.projection)
    return kind, lo, hi, scale, zero, params, frac


def _model_rotation(fmap) -> tuple[np.ndarray, np.ndarray] | None:
    """IS §3.5: the integer rotation (R, s) of a feature map with ``rotation`` V, else None."""
    V = getattr(fmap, "rotation", None)
    return None if V is None else rotation_integers(V, float(fmap.amplitude))


def _feature_params(kind: int, a: np.ndarray, c: np.ndarray, projection: np.ndarray | None):
    if kind == KIND_LINEAR:
        M, B, frac = linear_parameters(a, c)
        return (M, B), frac
    return rff_parameters(a, c, projection), 15


def model_schema(model, lo: np.ndarray, hi: np.ndarray) -> input_schema.Schema:
    """MF §10 for a fitted model: the schema its model file records (``schema_``, written by the
    trainer's preprocessing stage), else every input a plain numeric column (refusing missing values)
    named as in training (x0 .. without names), with its training range, or the clipping range
    ``lo``, ``hi`` for model files that do not record one, and the target's name from the summary."""
    recorded = getattr(model, "schema_", None)
    if recorded is not None:
        return _checked(recorded)
    names = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else [f"x{k}" for k in range(len(lo))]
    low, high = getattr(model, "input_min_", None), getattr(model, "input_max_", None)
    if low is None or high is None:
        low, high = lo, hi
    summary = getattr(model, "summary_", None) or {}
    target = summary.get("target") if isinstance(summary.get("target"), str) else ""
    columns = (
        input_schema.Column(n, low=float(a), high=float(b)) for n, a, b in zip(names, low, high, strict=True)
    )
    return _checked(input_schema.Schema(tuple(columns), target))


def _checked(schema: input_schema.Schema) -> input_schema.Schema:
    """``schema`` when MF §10 can hold it, else ExportError saying why and how to leave it out."""
    try:
        schema.check()
    except input_schema.SchemaError as exc:
        raise ExportError(
            f"the input schema cannot be stored in the blob: {exc}; rename the column and retrain, "
            "or export with --no-schema"
        ) from None
    return schema


def pack(
    model,
    n_samples: int = 32,
    seed: int = 0,
    layout: str = "auto",
    exact: bool = False,
    clip_range: tuple[np.ndarray, np.ndarray] | None = None,
    optimize: str = "speed",
    target: str = DEFAULT_TARGET,
    max_bytes: int | None = None,
    schema: bool = True,
    floor: bool = True,
) -> bytes:
    """Blob bytes for a fitted ``DirectRegressor`` or a ``model.direct`` path.

    ``n_samples``: S posterior samples (1 … 65535) drawn with ``seed``; ``layout``: "auto" or a name of
    MF §6; ``exact``: also store the exact-moment section (IS §6); ``clip_range``: (lo, hi) (d,) each
    in input units, overriding IS §2's default.  ``optimize``, ``target``, ``max_bytes``: how "auto"
    chooses (:func:`assemble`): "speed" (the fastest on ``target``, one of ``layout_cost.TARGETS``)
    or "size" (the smallest), within ``max_bytes`` bytes of blob (default for "speed": dense4's).
    ``schema``: write the input-schema section (MF §10: names, ranges, preprocessing; host only).
    ``floor``: store the ensemble's variance floor (MF §5.2, 2·b bytes when the model has one; the
    exact section carries the floor anyway, so a device that only calls the exact mode can leave it out).
    """
    if isinstance(model, str | os.PathLike):
        from direct_edge.trainer.model_file import load_model

        model = load_model(model)
    if not 1 <= int(n_samples) <= 65535:
        raise ExportError(f"samples must be between 1 and 65535, got {n_samples}")
    fmap, post = model.feature_map_, model.posterior_
    if post.weight_grid is None:
        raise ExportError("the posterior's grid is not integer levels × scale; it cannot be packed")
    if post.weight_grid.bits > MAX_BITS:
        raise ExportError(
            f"the model's weights use {post.weight_grid.bits}-bit levels and the packed format holds at "
            f"most {MAX_BITS} (MF §6); retrain with bits <= {MAX_BITS}"
        )
    kind, lo, hi, scale, zero, params, frac = _integer_inputs(model, clip_range)
    rotation = _model_rotation(fmap)
    samples = post.sample(int(n_samples), seed=int(seed))
    levels = samples.levels.astype(np.int8)
    delta = float(post.weight_grid.scale)
    gains = post.weight_grid.gains
    G = None if gains is None else gain_integers(gains)
    # IS §6 stores the moments of each weight's level: the device applies g_i to the feature (IS §3.4),
    # so a weight's value Δ·g_i·level is divided by Δ·g_i, not by Δ alone.
    level_unit = delta if gains is None else delta * np.asarray(gains, dtype=np.float64)
    w_mean, w_var = post.predictive_weight_moments()  # with the grid's rounding floor (trainer §7)
    moments = (w_mean / level_unit, w_var / level_unit**2) if exact else None
    # IS §5: what the samples cannot show, the predictive variance above q's own (zero without a floor)
    floor = np.maximum(w_var - post.weight_moments()[1], 0.0) / level_unit**2 if floor else None
    meta = {
        "producer": "direct-edge",
        "spec": "integer-spec 1",
        "samples": int(n_samples),
        "seed": int(seed),
        "sparsity": float(np.mean(levels == 0)),
        "grid_scale": delta,
        "features": fmap.kind,
        "input_low": lo.tolist(),
        "input_high": hi.tolist(),
        "summary": getattr(model, "summary_", {}) or {},
    }
    return assemble(
        IntegerModel(
            kind=kind,
            bits=max(_bits_of(levels), post.weight_grid.bits),
            input_scale=scale,
            input_zero=zero,
            feature_frac=frac,
            amplitude=1.0 if rotation is not None else float(fmap.amplitude),  # IS §3.5: ψ has A = 1
            feature_params=params,
            levels=levels,
            noise_variance=samples.noise_variance,
            noise_expected=post.noise_variance_mean,
            grid_scale=delta,
            y_offset=float(model.y_offset_),
            y_scale=float(model.y_scale_),
            exact=moments,
            floor=floor,
            meta=meta,
            schema=model_schema(model, lo, hi) if schema else None,
            gains=G,
            rotation=rotation,
        ),
        layout,
        optimize,
        target,
        max_bytes,
    )


def pack_classifier(
    model,
    n_samples: int = 32,
    clip_range: tuple[np.ndarray, np.ndarray] | None = None,
    schema: bool = True,
) -> bytes:
    """Blob bytes (MF §11, IS §10) for a fitted ``DirectClassifier`` or a classifier's ``model.direct``
    path: the first ``n_samples`` (1 … 4096) of the samples drawn at fit time (``sample_levels_``,
    the ones ``predict_proba`` averages), as S·R weight rows in the dense4 layout (the only layout the
    C library's ``direct_classify`` decodes); labels in the meta section.  ExportError for a model
    the integer arithmetic cannot hold (the message says why)."""
    if isinstance(model, str | os.PathLike):
        from direct_edge.trainer.model_file import load_model

        model = load_model(model)
    available = model.sample_levels_.shape[0]
    if not 1 <= int(n_samples) <= min(available, bounds.CLASSIFIER_SAMPLES_MAX):
        raise ExportError(
            f"samples must be between 1 and {min(available, bounds.CLASSIFIER_SAMPLES_MAX)} for this "
            f"classifier (it holds {available} posterior samples; IS §10.6 allows 4096), got {n_samples}"
        )
    C = len(model.classes_)
    if C > bounds.CLASSES_MAX:
        raise ExportError(f"a classifier blob holds at most {bounds.CLASSES_MAX} classes, got {C}")
    if int(model.bits) > MAX_BITS:
        raise ExportError(
            f"the model's weights use {model.bits}-bit levels; the packed format holds at most 4"
        )
    fmap = model.feature_map_
    kind, lo, hi, scale, zero, params, frac = _integer_inputs(model, clip_range)
    rotation = _model_rotation(fmap)
    amplitude = 1.0 if rotation is not None else float(fmap.amplitude)  # IS §3.5: ψ has A = 1
    levels = np.asarray(model.sample_levels_[: int(n_samples)], dtype=np.int8)  # (S, R, b)
    gains = model.grid_gains_
    meta = {
        "grid_scale": float(model.grid_scale_),
        "features": fmap.kind,
        "input_low": lo.tolist(),
        "input_high": hi.tolist(),
        "summary": getattr(model, "summary_", {}) or {},
    }
    return _classifier_blob(
        kind,
        (scale, zero, params, frac),
        levels,
        float(model.grid_scale_) * amplitude,
        int(model.bits),
        None if np.all(gains == 1.0) else gain_integers(gains),
        [x.item() if isinstance(x, np.generic) else x for x in model.classes_],
        meta,
        model_schema(model, lo, hi) if schema else None,
        rotation,
    )


def _classifier_blob(
    kind: int,
    inputs: tuple,
    levels: np.ndarray,
    step: float,
    bits: int,
    gains: np.ndarray | None,
    labels: list,
    meta: dict,
    schema: input_schema.Schema | None,
    rotation: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """MF §11 bytes of a classifier: the feature map ``inputs`` = (input scale, zero point, feature
    parameters, Fφ) of feature ``kind``; ``levels`` (S, R, b), S posterior samples of R logit rows,
    stored as S·R dense4 rows; ``step`` the real logit (nats) per unit of level times feature;
    ``bits`` the level width at least (MF §2); integer feature ``gains`` (MF §5.1) or None; the class
    ``labels`` and the model's own ``meta`` entries (task, labels, samples and sparsity are added);
    ``rotation``: (R, s) of IS §3.5 (MF §5.3) or None."""
    from direct_edge.runtime.classify import logit_parameters

    scale, zero, params, frac = inputs

    S, R, b = levels.shape
    assert R == bounds.logit_rows(len(labels))
    rows = levels.reshape(S * R, b)  # MF §11: row s·R + k
    if S * R > 65535:
        raise ExportError(f"S·R = {S * R} weight rows exceed the header's 65535; use fewer samples")
    out = output_parameters(rows)  # the pre-shift r for N = S·R rows (IS §9)
    per_sample = output_parameters_for(S, 0)  # M1, s1 (and M2, s2) of IS §5 for S samples (IS §10.3)
    lam = step * 2.0 ** (out["r"] - frac)  # IS §10.1
    try:
        mz, sz = logit_parameters(lam)
    except ValueError as exc:
        raise ExportError(f"{exc}; retrain with the grid scale chosen by the ELBO") from None
    M, B = params
    if kind == KIND_LINEAR:
        feature_bytes = np.stack([M, B], axis=1).astype("<i4").tobytes()
        table = b""
    else:
        feature_bytes = np.asarray(B, dtype="<u4").tobytes() + np.asarray(M, dtype="<i4").tobytes()
        table = sine_table().astype("<i2").tobytes()
    flags = 0
    if rotation is not None:  # MF §5.3: right after the rff parameters
        feature_bytes += _rotation_bytes(rotation, kind, b)
        flags |= FLAG_ROTATION
    if gains is not None:
        feature_bytes += gains.astype("<u2").tobytes()
        flags |= FLAG_GAINS
    meta = {
        "producer": "direct-edge",
        "spec": "integer-spec 1",
        "task": "classification",
        "classes": labels,
        "samples": S,
        "sparsity": float(np.mean(levels == 0)),
        **meta,
    }
    blob = frame(
        {
            "kind": kind,
            "layout": LAYOUT_DENSE4,
            "bits": max(_bits_of(levels), bits),
            "flags": flags,
            "n_inputs": len(scale),
            "n_features": b,
            "n_samples": S * R,
            "feature_frac": frac,
            "pre_shift": out["r"],
            "m1": per_sample["m1"],
            "s1": per_sample["s1"],
            "s2": per_sample["s2"],
            "m2": per_sample["m2"],
            "classes": len(labels),
            "logit_shift": sz,
            "logit_mult": mz,
            "noise_q": 0,
            "noise_exact_q": 0,
            "mean_scale": lam,
            "y_offset": 0.0,
        },
        [
            np.stack([scale, zero], axis=1).astype("<f8").tobytes(),
            feature_bytes,
            table,
            encode_dense4(rows),
            b"",
            json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8"),
            b"" if schema is None else input_schema.encode(schema),
        ],
    )
    parse(blob)  # the exporter never emits what the readers reject
    return blob


def _synthetic_inputs(rng: np.random.Generator, kind: str, d: int, b: int) -> tuple:
    """Random inputs (offset, spread, range) and a ``kind`` "linear" (b = d + 1) or "rff" (b even)
    feature map of d inputs for the synthetic blobs: (kind code, lo, hi, input scale, zero point,
    feature parameters, Fφ), as :func:`_integer_inputs` gives them for a fitted model."""
    code = KIND_LINEAR if kind == "linear" else KIND_RFF
    if code == KIND_LINEAR and b != d + 1:
        raise ValueError("linear models have b = d + 1")
    offset = rng.normal(0.0, 3.0, d)
    sd = rng.uniform(0.2, 5.0, d)
    spread = rng.uniform(0.5, 6.0, (2, d)) * sd
    lo, hi = input_range(offset, sd, offset - spread[0], offset + spread[1])
    scale, zero = input_quantization(lo, hi)
    a, c = standardisation_coefficients(scale, zero, offset, sd)
    projection = rng.standard_normal((d, b // 2)) / rng.uniform(0.3, 3.0) if code == KIND_RFF else None
    params, frac = _feature_params(code, a, c, projection)
    return code, lo, hi, scale, zero, params, frac


def _synthetic_levels(rng: np.random.Generator, shape: tuple, bits: int, zeros: float) -> np.ndarray:
    """Random ``bits``-bit levels (int8) of ``shape``, nonzero uniformly, a share ``zeros`` set to 0."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    nonzero_levels = np.array([v for v in range(low, high + 1) if v != 0])
    levels = rng.choice(nonzero_levels, size=shape).astype(np.int8)
    levels[rng.random(shape) < zeros] = 0
    return levels


def synthetic_blob(
    kind: str,
    d: int,
    b: int,
    S: int,
    bits: int = 4,
    zeros: float = 0.5,
    seed: int = 0,
    layout: str = "auto",
    exact: bool = True,
    optimize: str = "speed",
    target: str = DEFAULT_TARGET,
    schema: bool | input_schema.Schema = False,
    gains: bool = False,
    floor: bool = False,
    levels: np.ndarray | None = None,
    rotation: bool = False,
) -> bytes:
    """A blob with random parameters of the given shape: ``kind`` "linear" (b must be d + 1) or "rff"
    (b even), S samples of ``bits``-bit levels with a share ``zeros`` of zeros; for tests and benchmarks.
    ``schema``: True for an input-schema section (MF §10) of plain columns x0 .. named, target "y";
    a Schema (of d inputs) to store that one.  ``gains``: random feature gains (MF §5.1) spanning
    [1, 32768], both ends included.  ``floor``: random ensemble variance floors (IS §5, MF §5.2)
    spanning the u16 range, 0 and 65535 included.  ``levels``: an (S, b) array of ``bits``-bit levels to
    store instead of the random ones (the kernels' edge cases); the other parameters stay the same.
    ``rotation`` (rff only): a random orthonormal feature rotation (IS §3.5, MF §5.3; QR of a Gaussian
    matrix)."""
    rng = np.random.default_rng(seed)
    code, lo, hi, scale, zero, params, frac = _synthetic_inputs(rng, kind, d, b)
    random_levels = _synthetic_levels(rng, (S, b), bits, zeros)
    if levels is None:
        levels = random_levels
    else:
        levels = np.asarray(levels, dtype=np.int8)
        if levels.shape != (S, b):
            raise ValueError(f"levels has shape {levels.shape}, not (S, b) = {(S, b)}")
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    w_mean = rng.uniform(low, high, b)
    G = None
    if gains:  # a generator of their own: the other parameters stay those of the blob without gains
        G = np.exp2(np.random.default_rng([seed, 1]).uniform(0.0, 15.0, b)).round().astype(np.int64)
        G[: min(b, 2)] = [1, 32768][: min(b, 2)]
    eq = None
    if floor:  # likewise a generator of its own; MF §5.2 is independent of ``exact``
        eq = np.random.default_rng([seed, 2]).integers(0, 65536, b) / 1024.0
        eq[: min(b, 2)] = [0.0, 65535 / 1024.0][: min(b, 2)]
    amplitude = (b // 2) ** -0.5 if code == KIND_RFF else 1.0
    rot = None
    if rotation:  # likewise; the amplitude moves into R (IS §3.5)
        V = np.linalg.qr(np.random.default_rng([seed, 3]).normal(size=(b, b)))[0]
        rot, amplitude = rotation_integers(V, amplitude), 1.0
    return assemble(
        IntegerModel(
            kind=code,
            bits=bits,
            input_scale=scale,
            input_zero=zero,
            feature_frac=frac,
            amplitude=amplitude,
            feature_params=params,
            levels=levels,
            noise_variance=rng.uniform(0.01, 0.5, S),
            noise_expected=0.2,
            grid_scale=float(rng.uniform(0.05, 0.5)),
            y_offset=float(rng.normal()),
            y_scale=float(rng.uniform(0.5, 3.0)),
            exact=(w_mean, rng.uniform(0.0, (high - low) ** 2 / 4, b)) if exact else None,
            meta={"producer": "direct-edge", "synthetic": True, "seed": seed},
            schema=schema
            if isinstance(schema, input_schema.Schema)
            else input_schema.Schema(
                tuple(input_schema.Column(f"x{k}", low=float(lo[k]), high=float(hi[k])) for k in range(d)),
                "y",
            )
            if schema
            else None,
            gains=G,
            floor=eq,
            rotation=rot,
        ),
        layout,
        optimize,
        target,
    )


def synthetic_classifier_blob(
    kind: str,
    d: int,
    b: int,
    S: int,
    classes: int = 2,
    bits: int = 4,
    zeros: float = 0.5,
    seed: int = 0,
    rotation: bool = False,
) -> bytes:
    """A classifier blob (MF §11) with random parameters of the given shape, for tests and benchmarks:
    the feature map of :func:`synthetic_blob` (``kind`` "linear" with b = d + 1, or "rff"), S posterior
    samples of R logit rows (R = 1 for two classes, else ``classes``), ``bits``-bit levels with a share
    ``zeros`` of zeros, dense4 (the layout ``direct_classify`` decodes); labels 0 … classes − 1.
    ``rotation`` (rff only): a random orthonormal feature rotation (IS §3.5), as in :func:`synthetic_blob`."""
    rng = np.random.default_rng(seed)
    code, lo, hi, scale, zero, params, frac = _synthetic_inputs(rng, kind, d, b)
    levels = _synthetic_levels(rng, (S, bounds.logit_rows(classes), b), bits, zeros)
    grid_scale = float(rng.uniform(0.05, 0.5))
    amplitude = (b // 2) ** -0.5 if code == KIND_RFF else 1.0
    meta = {
        "grid_scale": grid_scale,
        "features": kind,
        "input_low": lo.tolist(),
        "input_high": hi.tolist(),
        "synthetic": True,
        "seed": seed,
    }
    labels = list(range(classes))
    rot = None
    if rotation:  # a generator of its own: the other parameters stay those of the blob without it
        V = np.linalg.qr(np.random.default_rng([seed, 3]).normal(size=(b, b)))[0]
        rot, amplitude = rotation_integers(V, amplitude), 1.0
    return _classifier_blob(
        code, (scale, zero, params, frac), levels, grid_scale * amplitude, bits, None, labels, meta, None, rot
    )


def save_blob(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically (temp file + rename), never leaving a partial file."""
    write_atomic(Path(path), data)
