"""Read and validate a packed model blob (spec: docs/model-format.md, cited as MF §n).

:func:`parse` checks exactly what the C library's ``direct_model_open`` checks, in the same order
(MF §9), and raises :class:`BlobError` with the same code, so the two readers accept and reject the
same byte strings.  Only numpy and the standard library are used.
"""

from __future__ import annotations

import functools
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from direct_edge.errors import UserError
from direct_edge.runtime import bounds, header
from direct_edge.runtime import schema as input_schema
from direct_edge.runtime.bounds import I32_MAX, PHI_MAX, round_shift
from direct_edge.runtime.header import (
    FLAG_EXACT,
    FLAG_FLOOR,
    FLAG_GAINS,
    FLAG_ROTATION,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    HEADER_SIZE,
    KIND_LINEAR,
    KIND_NAMES,
    KIND_RFF,
    LAYOUT_BITMAP4,
    LAYOUT_DENSE4,
    LAYOUT_GAP4,
    LAYOUT_GROUPED,
    LAYOUT_NAMES,
    MAGIC,
    N_SECTIONS,
)

__all__ = [
    "FLAG_EXACT",
    "FLAG_FLOOR",
    "FLAG_GAINS",
    "FLAG_ROTATION",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "HEADER_SIZE",
    "I32_MAX",
    "KIND_LINEAR",
    "KIND_RFF",
    "LAYOUT_BITMAP4",
    "LAYOUT_DENSE4",
    "LAYOUT_GAP4",
    "LAYOUT_GROUPED",
    "LAYOUT_NAMES",
    "MAGIC",
    "PHI_MAX",
    "Blob",
    "BlobError",
    "parse",
    "round_shift",
]

MIN_SIZE = HEADER_SIZE + 4
(
    SECTION_INPUT,
    SECTION_FEATURES,
    SECTION_TABLE,
    SECTION_SAMPLES,
    SECTION_EXACT,
    SECTION_META,
    SECTION_SCHEMA,
) = range(N_SECTIONS)
TABLE_SIZE = 257
MAX_GROUPS = 16

# MF §9 error codes (shared with runtime/c/direct.h).
ERROR_NAMES = {
    1: "ARG",
    2: "ALIGN",
    3: "MAGIC",
    4: "VERSION",
    5: "SIZE",
    6: "CRC",
    7: "HEADER",
    8: "SECTION",
    9: "CONTENT",
    10: "OVERFLOW",
    11: "SCRATCH",
    12: "NO_EXACT",
    13: "TASK",  # a classification call on a regression blob, or the reverse (MF §11)
}
ERROR_CODES = {name: code for code, name in ERROR_NAMES.items()}


class BlobError(UserError):
    """A byte string that is not a valid blob; ``code``/``name`` follow MF §9."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid model blob ({name}): {message}")
        self.name = name
        self.code = ERROR_CODES[name]


@dataclass(frozen=True)
class Blob:
    """A validated blob.  Arrays are read-only views of (or decoded from) ``data``.

    ``header``: every MF §2 field by its name in :data:`header.FIELDS`, each also readable as an
    attribute (``blob.n_inputs``, ``blob.pre_shift``, ``blob.mean_scale``, ...);
    ``sections``: the (offset, size) of sections 0 … 6 (MF §3);
    ``input_scale``, ``input_zero``: float64 (d,) (MF §4); ``linear_m``, ``linear_b``: int32 (d,) for
    linear features, ``phase_c`` uint32 (F,), ``phase_w`` int32 (F, d) and ``table`` int16 (257,) for rff
    (MF §5), the others None;
    ``sample_levels``: the weight levels per sample, sparse (:class:`SampleLevels`); ``levels``: the same
    as a dense int16 (S, b) array, built on first use (S × b × 2 bytes; the readers never need it);
    ``weight_bound``: L = max_s Σ |stored level| (IS §9), computed from the stored entries;
    ``exact_mean`` int16 (b,), ``exact_var`` uint16 (b,) with the exact section (MF §7), else None;
    ``floor`` uint16 (b,), the ensemble's variance floor eq (IS §5, MF §5.2) with flag bit 2, else None;
    ``rotation`` int16 (b, b) R (row k gives rotated feature k) and ``rotation_shift`` uint8 (b,) s of
    the feature rotation (IS §3.5, MF §5.3) with flag bit 3, else None.
    """

    data: bytes
    header: dict[str, Any]
    sections: tuple[tuple[int, int], ...]
    input_scale: np.ndarray
    input_zero: np.ndarray
    linear_m: np.ndarray | None
    linear_b: np.ndarray | None
    phase_c: np.ndarray | None
    phase_w: np.ndarray | None
    table: np.ndarray | None
    gains: np.ndarray | None
    sample_levels: SampleLevels
    weight_bound: int
    exact_mean: np.ndarray | None
    exact_var: np.ndarray | None
    floor: np.ndarray | None = None
    rotation: np.ndarray | None = None
    rotation_shift: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        """A header field by name (MF §2), e.g. ``n_samples``; AttributeError for anything else."""
        values = self.__dict__.get("header")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @functools.cached_property
    def levels(self) -> np.ndarray:
        """(S, b) int16 weight levels (duplicate grouped entries summed, MF §6.3), read-only."""
        dense = self.sample_levels.dense()
        dense.setflags(write=False)
        return dense

    @property
    def has_exact(self) -> bool:
        return bool(self.flags & FLAG_EXACT)

    @property
    def has_floor(self) -> bool:
        return bool(self.flags & FLAG_FLOOR)

    @property
    def has_rotation(self) -> bool:
        return bool(self.flags & FLAG_ROTATION)

    @property
    def has_gains(self) -> bool:
        return bool(self.flags & FLAG_GAINS)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def layout_name(self) -> str:
        return LAYOUT_NAMES[self.layout]

    @property
    def sparsity(self) -> float:
        """Share of zero levels over all samples and weights."""
        return 1.0 - len(self.sample_levels.value) / (self.n_samples * self.n_features)

    @property
    def samples_nbytes(self) -> int:
        return self.sections[SECTION_SAMPLES][1]

    @property
    def meta(self) -> dict:
        """The host-only JSON of section 5 (MF §3); {} when empty or not JSON."""
        off, size = self.sections[SECTION_META]
        try:
            meta = json.loads(self.data[off : off + size].decode("utf-8")) if size else {}
        except (UnicodeDecodeError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @functools.cached_property
    def schema(self) -> input_schema.Schema | None:
        """The input schema of section 6 (MF §10), or None for a blob without one (format 1.0, or
        exported without it).  Host only: ``parse`` checks the section's placement as the C library
        does, this decodes and checks its content.  Raises BlobError (CONTENT) naming the broken rule."""
        off, size = self.sections[SECTION_SCHEMA]
        if not size:
            return None
        try:
            return input_schema.decode(self.data[off : off + size], self.n_inputs)
        except input_schema.SchemaError as exc:
            raise BlobError("CONTENT", f"input schema section: {exc}") from None

    @property
    def input_names(self) -> list[str]:
        """The names of the d inputs, in order: the schema's (MF §10: a one-hot input is
        ``COLUMN=LEVEL``, an indicator ``COLUMN_missing``), else those of the host metadata
        (:attr:`column_names`), else x0 .. x{d-1}.  Raises BlobError for a corrupt schema section."""
        if self.schema is not None:
            return self.schema.input_names
        return self.column_names or [f"x{k}" for k in range(self.n_inputs)]

    @property
    def column_names(self) -> list[str] | None:
        """The raw input columns' names in the model's order: from the schema (MF §10); for an older
        blob, the input names of its host metadata (``input_names``, or the training summary's); None
        when the model knows only positions (no names recorded, or the generic x0 .. x{c-1} of data
        without a header).  Raises BlobError for a corrupt schema section."""
        if self.schema is not None:
            names = self.schema.column_names
        else:
            meta = self.meta
            summary = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
            names = meta.get("input_names") or summary.get("input_names")
            if (
                not isinstance(names, list)
                or len(names) != self.n_inputs
                or not all(isinstance(n, str) for n in names)
            ):
                return None
        return None if names == [f"x{j}" for j in range(len(names))] else names


def _level_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_frame(data: bytes) -> dict[str, Any]:
    """MF §9 ARG, MAGIC, VERSION, SIZE, CRC in that order; returns the header values plus ``length``."""
    if len(data) < MIN_SIZE:
        raise BlobError("ARG", f"{len(data)} bytes is too short for a blob")
    h = header.unpack(data)
    h["length"] = len(data)
    for code in ("MAGIC", "VERSION", "SIZE"):
        _check_fields(h, code)
    total = h["total_size"]
    (crc,) = struct.unpack_from("<I", data, total - 4)
    if zlib.crc32(memoryview(data)[: total - 4]) != crc:
        raise BlobError("CRC", "checksum mismatch (corrupted blob)")
    return h


def _check_fields(h: dict[str, Any], code: str) -> None:
    """The rules of header.FIELDS whose code is ``code`` (MF §2); raises BlobError(code)."""
    message = header.violation(h, code)
    if message is not None:
        raise BlobError(code, message)


def _expected_sizes(h: dict[str, Any]) -> list[int | None]:
    """MF §3: the size each section must have (None: any)."""
    d, b, linear = h["n_inputs"], h["n_features"], h["kind"] == KIND_LINEAR
    gains = 2 * b if h["flags"] & FLAG_GAINS else 0  # MF §5.1: b u16 after the parameters
    gains += 2 * b if h["flags"] & FLAG_FLOOR else 0  # MF §5.2: then b u16 floors
    gains += 2 * b * b + b if h["flags"] & FLAG_ROTATION else 0  # MF §5.3: before both
    return [
        16 * d,
        (8 * d if linear else 4 * (b // 2) * (1 + d)) + gains,
        0 if linear else 2 * TABLE_SIZE,
        None,
        4 * b if h["flags"] & FLAG_EXACT else 0,
        None,
        None,
    ]


def _check_sections(h: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    """MF §3 placement rules; returns the (offset, size) pairs.  Raises SECTION."""
    flat = h["sections"]
    table = tuple((flat[2 * i], flat[2 * i + 1]) for i in range(N_SECTIONS))
    end, limit = HEADER_SIZE, h["total_size"] - 4
    for sid, ((off, size), want) in enumerate(zip(table, _expected_sizes(h), strict=True)):
        if want is not None and size != want:
            raise BlobError("SECTION", f"section {sid} has {size} bytes, expected {want}")
        if size == 0:
            if off != 0:
                raise BlobError("SECTION", f"empty section {sid} must have offset 0")
            continue
        if off % 8 or off < end or size > limit or off > limit - size:
            raise BlobError("SECTION", f"section {sid} is misplaced (offset {off}, size {size})")
        end = off + size
    return table


def _read_varint(raw: np.ndarray, pos: int, what: str) -> tuple[int, int]:
    """MF §6.3/§6.4: an unsigned LEB128 of at most 3 bytes at ``pos``; returns (value, next pos)."""
    value, shift, n = 0, 0, len(raw)
    for k in range(3):
        if pos >= n:
            raise BlobError("CONTENT", f"{what} runs past the section")
        byte, pos = int(raw[pos]), pos + 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if k == 2:
            raise BlobError("CONTENT", f"{what} longer than 3 bytes")
    raise AssertionError("unreachable")


def _decode_gap4(raw: np.ndarray, b: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int]:
    """MF §6.4: one sample's bytes; returns (feature indices, levels, Σ|level|)."""
    g = raw & 0xF
    v = (raw >> 4).astype(np.int64)
    skip = v == 0
    if len(raw) and skip[-1]:
        raise BlobError("CONTENT", "gap4 sample ends with a skip")
    steps = np.where(skip, 16 * (g.astype(np.int64) + 1), g.astype(np.int64) + 1)
    pos = np.cumsum(steps) - 1
    idx, vals = pos[~skip], (v[~skip] ^ 8) - 8
    if len(idx) and idx[-1] >= b:
        raise BlobError("CONTENT", "feature index beyond the last feature")
    if np.any(vals < lo) or np.any(vals > hi):
        raise BlobError("CONTENT", "level outside the header's bits")
    return idx, vals, int(np.abs(vals).sum())


def _decode_bitmap4_sample(raw: np.ndarray, pos: int, b: int, lo: int, hi: int):
    """MF §6.2: one sample at ``pos``; returns (indices, levels, next pos)."""
    n, nmap = len(raw), (b + 7) // 8
    if n - pos < nmap:
        raise BlobError("CONTENT", "bitmap runs past the section")
    present = np.unpackbits(raw[pos : pos + nmap], bitorder="little")
    pos += nmap
    if np.any(present[b:]):
        raise BlobError("CONTENT", "bitmap bit set beyond the last feature")
    idx = np.flatnonzero(present[:b])
    nbytes = (len(idx) + 1) // 2
    if n - pos < nbytes:
        raise BlobError("CONTENT", "nibbles run past the section")
    packed = raw[pos : pos + nbytes]
    pos += nbytes
    nib = np.empty(2 * nbytes, dtype=np.int16)
    nib[0::2], nib[1::2] = packed & 0xF, packed >> 4
    if np.any(nib[: len(idx)] == 0) or (len(idx) % 2 and nib[-1] != 0):
        raise BlobError("CONTENT", "bitmap nibble is zero where a level must be nonzero")
    vals = (nib[: len(idx)] ^ 8) - 8
    if np.any(vals < lo) or np.any(vals > hi):
        raise BlobError("CONTENT", "level outside the header's bits")
    return idx, vals, pos


def _decode_grouped_sample(raw: np.ndarray, pos: int, b: int, lo: int, hi: int):
    """MF §6.3: one sample at ``pos``; returns (indices, levels, Σ|level| over the entries, next pos)."""
    n = len(raw)
    if pos >= n:
        raise BlobError("CONTENT", "grouped sample runs past the section")
    groups, pos = int(raw[pos]), pos + 1
    if groups > MAX_GROUPS:
        raise BlobError("CONTENT", "more than 16 groups in a sample")
    indices, values, total, previous_value = [], [], 0, None
    for _ in range(groups):
        if pos >= n:
            raise BlobError("CONTENT", "group header runs past the section")
        v = int(raw[pos]) - 256 if raw[pos] >= 128 else int(raw[pos])
        pos += 1
        if v == 0 or v < lo or v > hi or (previous_value is not None and v <= previous_value):
            raise BlobError("CONTENT", "group level is zero, out of range or not increasing")
        previous_value = v
        count, pos = _read_varint(raw, pos, "group count")
        if count < 1 or count > b:
            raise BlobError("CONTENT", "group count out of range")
        index = -1
        for _ in range(count):
            gap = 0
            while True:
                if pos >= n:
                    raise BlobError("CONTENT", "gaps run past the section")
                byte, pos = int(raw[pos]), pos + 1
                gap += 255 if byte == 0 else byte
                if index + gap >= b:
                    raise BlobError("CONTENT", "feature index beyond the last feature")
                if byte:
                    break
            index += gap
            indices.append(index)
            values.append(v)
        total += abs(v) * count
    return indices, values, total, pos


@dataclass(frozen=True)
class SampleLevels:
    """The S samples' weight levels (MF §6) in compressed sparse rows, so memory follows the stored
    entries rather than S × b: sample s holds ``value[start[s]:start[s + 1]]`` (int16, nonzero) at the
    features ``index[start[s]:start[s + 1]]`` (int64, increasing); duplicate grouped entries are summed.
    ``start``: int64 (S + 1,)."""

    n_features: int
    start: np.ndarray
    index: np.ndarray
    value: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.start) - 1

    def dense(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``first`` … ``stop`` − 1 as int16 (stop − first, b)."""
        stop = self.n_samples if stop is None else stop
        out = np.zeros((stop - first, self.n_features), dtype=np.int16)
        lo, hi = int(self.start[first]), int(self.start[stop])
        rows = np.repeat(np.arange(stop - first), np.diff(self.start[first : stop + 1]))
        out[rows, self.index[lo:hi]] = self.value[lo:hi]
        return out


def _sparse_rows(b: int, rows: list) -> SampleLevels:
    """SampleLevels from per-sample (indices, levels), summing repeated indices and dropping zeros."""
    indices, values = [], []
    for idx, vals in rows:
        idx, vals = np.asarray(idx, dtype=np.int64), np.asarray(vals, dtype=np.int16)
        if len(idx) > 1 and np.any(np.diff(idx) <= 0):
            idx, where = np.unique(idx, return_inverse=True)
            summed = np.zeros(len(idx), dtype=np.int16)
            np.add.at(summed, where, vals)
            vals = summed
        keep = vals != 0
        indices.append(idx[keep])
        values.append(vals[keep])
    start = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(i) for i in indices], out=start[1:])
    return SampleLevels(
        b,
        start,
        np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        np.concatenate(values) if values else np.zeros(0, dtype=np.int16),
    )


def _decode_samples(data: bytes, layout: int, S: int, b: int, bits: int) -> tuple[SampleLevels, int]:
    """MF §6: decode and check the samples; returns (levels, L).  Raises CONTENT.

    Memory is proportional to the section's bytes, never to S × b (a few bytes can declare 2³² weights).
    """
    lo, hi = _level_range(bits)
    raw = np.frombuffer(data, dtype=np.uint8)
    if layout == LAYOUT_DENSE4:
        row = (b + 1) // 2
        if len(raw) != S * row:
            raise BlobError("CONTENT", "dense4 samples have the wrong size")
        nib = np.empty((S, 2 * row), dtype=np.int16)  # 4 bytes per stored byte
        pairs = raw.reshape(S, row)
        nib[:, 0::2], nib[:, 1::2] = pairs & 0xF, pairs >> 4
        if b % 2 and np.any(nib[:, -1]):
            raise BlobError("CONTENT", "dense4 padding nibble is not zero")
        levels = ((nib[:, :b] ^ 8) - 8).astype(np.int16)
        if np.any(levels < lo) or np.any(levels > hi):
            raise BlobError("CONTENT", "level outside the header's bits")
        bound = int(np.abs(levels).sum(axis=1).max())
        return _sparse_rows(b, [(np.flatnonzero(r), r[r != 0]) for r in levels]), bound
    rows = []
    bound, pos, n = 0, 0, len(raw)
    for _ in range(S):
        if layout == LAYOUT_BITMAP4:
            idx, vals, pos = _decode_bitmap4_sample(raw, pos, b, lo, hi)
            total = int(np.abs(vals).sum())
        elif layout == LAYOUT_GAP4:
            nbytes, pos = _read_varint(raw, pos, "gap4 byte count")
            if n - pos < nbytes:
                raise BlobError("CONTENT", "gap4 sample runs past the section")
            idx, vals, total = _decode_gap4(raw[pos : pos + nbytes], b, lo, hi)
            pos += nbytes
        else:
            idx, vals, total, pos = _decode_grouped_sample(raw, pos, b, lo, hi)
        rows.append((idx, vals))
        bound = max(bound, total)
    if pos != n:
        raise BlobError("CONTENT", "samples section has trailing bytes")
    return _sparse_rows(b, rows), bound


def _section(data: bytes, where: tuple[int, int], dtype: str, count: int | None = None, start: int = 0):
    """A read-only array view of a section's bytes from ``start`` (``count`` items, else to its end)."""
    off, size = where
    nbytes = size - start if count is None else count * np.dtype(dtype).itemsize
    return np.frombuffer(memoryview(data)[off + start : off + start + nbytes], dtype=dtype)


def _read_inputs(data: bytes, h: dict[str, Any], sections) -> np.ndarray:
    """MF §4: float64 (d, 2) (scale, zero point) per input; scales finite and > 0, zero points finite.
    Raises CONTENT."""
    inputs = _section(data, sections[SECTION_INPUT], "<f8").reshape(h["n_inputs"], 2)
    if not (np.all(np.isfinite(inputs)) and np.all(inputs[:, 0] > 0)):
        raise BlobError("CONTENT", "an input scale is not finite and positive, or a zero point not finite")
    return inputs


def _read_gains(data: bytes, h: dict[str, Any], sections) -> np.ndarray | None:
    """MF §5.1: the b u16 gains that end the feature section, or None without flag bit 1.  Raises
    CONTENT for a gain of 0 or above 32768 (IS §9)."""
    if not h["flags"] & FLAG_GAINS:
        return None
    b = h["n_features"]
    end = sections[SECTION_FEATURES][1] - (2 * b if h["flags"] & FLAG_FLOOR else 0)  # the floors follow
    gains = _section(data, sections[SECTION_FEATURES], "<u2", b, start=end - 2 * b)
    if not bounds.gains_fit(gains):
        raise BlobError("CONTENT", "a feature gain is 0 or above 32768 (MF §5.1)")
    return gains


def _read_floor(data: bytes, h: dict[str, Any], sections) -> np.ndarray | None:
    """MF §5.2: the b u16 variance floors eq that end the feature section, or None without flag bit 2
    (any u16 is valid: IS §9 bounds the floor's sum for every value)."""
    if not h["flags"] & FLAG_FLOOR:
        return None
    b = h["n_features"]
    return _section(data, sections[SECTION_FEATURES], "<u2", b, start=sections[SECTION_FEATURES][1] - 2 * b)


def _read_features(data: bytes, h: dict[str, Any], sections) -> dict[str, np.ndarray | None]:
    """MF §5: the feature parameters, with IS §9's bounds on them, and the gains of MF §5.1.
    Raises CONTENT."""
    d, b = h["n_inputs"], h["n_features"]
    if h["kind"] == KIND_LINEAR:
        params = _section(data, sections[SECTION_FEATURES], "<i4", 2 * d).reshape(d, 2)
        for m, c in params.tolist():
            if not bounds.linear_feature_fits(m, c):
                raise BlobError("CONTENT", "linear feature parameters exceed the i32/i16 bounds (IS §9)")
        gains = _read_gains(data, h, sections)
        return dict(
            linear_m=params[:, 0],
            linear_b=params[:, 1],
            phase_c=None,
            phase_w=None,
            table=None,
            gains=gains,
            floor=_read_floor(data, h, sections),
        )
    F = b // 2
    table = _section(data, sections[SECTION_TABLE], "<i2")
    if not bounds.sine_table_fits(table):
        raise BlobError("CONTENT", "sine table entry -32768 (IS §9)")
    rotation = shift = None
    if h["flags"] & FLAG_ROTATION:  # MF §5.3: right after the rff parameters
        start = 4 * F * (1 + d)
        rotation = _section(data, sections[SECTION_FEATURES], "<i2", b * b, start=start).reshape(b, b)
        shift = _section(data, sections[SECTION_FEATURES], "u1", b, start=start + 2 * b * b)
        if not bounds.rotation_shifts_fit(shift):
            raise BlobError("CONTENT", "a rotation shift is above 16 (MF §5.3)")
    return dict(
        rotation=rotation,
        rotation_shift=shift,
        linear_m=None,
        linear_b=None,
        phase_c=_section(data, sections[SECTION_FEATURES], "<u4", F),
        phase_w=_section(data, sections[SECTION_FEATURES], "<i4", F * d, start=4 * F).reshape(F, d),
        table=table,
        gains=_read_gains(data, h, sections),
        floor=_read_floor(data, h, sections),
    )


def _read_exact(data: bytes, h: dict[str, Any], sections) -> dict[str, np.ndarray | None]:
    """MF §7: μq int16 (b,) and vq uint16 (b,), or None without the exact section."""
    if not h["flags"] & FLAG_EXACT:
        return dict(exact_mean=None, exact_var=None)
    b = h["n_features"]
    where = sections[SECTION_EXACT]
    return dict(
        exact_mean=_section(data, where, "<i2", b), exact_var=_section(data, where, "<u2", b, start=2 * b)
    )


def _check_overflow(h: dict[str, Any], bound: int) -> None:
    """IS §9: the accumulator bounds, from the stored levels' weight bound L.  Raises OVERFLOW."""
    S, r = h["n_samples"], h["pre_shift"]
    if not bounds.weight_bound_fits(bound):
        raise BlobError("OVERFLOW", f"a sample's Σ|level| = {bound} exceeds 65536")
    if not bounds.ensemble_sum_fits(S, bound, r):
        raise BlobError("OVERFLOW", "the pre-shift is too small for the sum over samples to fit i32")
    if not bounds.mean_fits(S, bound, r, h["m1"], h["s1"]):
        raise BlobError("OVERFLOW", "the mean multiplier could push the mean outside i32")
    if h["flags"] & FLAG_EXACT and not bounds.exact_mean_fits(h["n_features"], r):
        raise BlobError("OVERFLOW", "exact-moment mean would not fit i32")


def parse(data: bytes) -> Blob:
    """Validate ``data`` (MF §9, in order) and return the parsed :class:`Blob`.

    Raises :class:`BlobError` whose ``code``/``name`` is the first failing MF §9 check: ARG, MAGIC,
    VERSION, SIZE, CRC (the frame), HEADER (MF §2), SECTION (MF §3), CONTENT (MF §4–§7), OVERFLOW (IS §9).
    """
    data = bytes(data)
    h = _check_frame(data)
    _check_fields(h, "HEADER")
    sections = _check_sections(h)
    inputs = _read_inputs(data, h, sections)
    features = _read_features(data, h, sections)
    off, size = sections[SECTION_SAMPLES]
    levels, bound = _decode_samples(
        data[off : off + size], h["layout"], h["n_samples"], h["n_features"], h["bits"]
    )
    exact = _read_exact(data, h, sections)
    _check_overflow(h, bound)
    del h["length"]
    return Blob(
        data=data,
        header=h,
        sections=sections,
        input_scale=inputs[:, 0],
        input_zero=inputs[:, 1],
        sample_levels=levels,
        weight_bound=bound,
        **features,
        **exact,
    )
