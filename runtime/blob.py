"""Read and validate a packed model blob (spec: docs/model-format.md, cited as MF §n).

:func:`parse` checks exactly what the C library's ``direct_model_open`` checks, in the same order
(MF §9), and raises :class:`BlobError` with the same code, so the two readers accept and reject the
same byte strings.  Only numpy and the standard library are used.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from direct_edge.errors import UserError

MAGIC = b"DIRQ"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
HEADER_SIZE = 128
MIN_SIZE = HEADER_SIZE + 4
N_SECTIONS = 6
SECTION_INPUT, SECTION_FEATURES, SECTION_TABLE, SECTION_SAMPLES, SECTION_EXACT, SECTION_META = range(6)
KIND_LINEAR, KIND_RFF = 0, 1
KIND_NAMES = {KIND_LINEAR: "linear", KIND_RFF: "rff"}
LAYOUT_DENSE4, LAYOUT_BITMAP4, LAYOUT_GROUPED, LAYOUT_GAP4 = 0, 1, 2, 3
LAYOUT_NAMES = {
    LAYOUT_DENSE4: "dense4",
    LAYOUT_BITMAP4: "bitmap4",
    LAYOUT_GROUPED: "grouped",
    LAYOUT_GAP4: "gap4",
}
FLAG_EXACT = 1
TABLE_SIZE = 257
MAX_GROUPS = 16

# MF §2: everything before the section table, then the table (6 × (offset, size)) and 8 reserved bytes.
HEADER = struct.Struct("<4sHHIBBBBHHHBBiBBHIIQQdd12IQ")
assert HEADER.size == HEADER_SIZE

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
}
ERROR_CODES = {name: code for code, name in ERROR_NAMES.items()}

I32_MAX = 2**31 - 1
PHI_MAX = 32767


class BlobError(UserError):
    """A byte string that is not a valid blob; ``code``/``name`` follow MF §9."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid model blob ({name}): {message}")
        self.name = name
        self.code = ERROR_CODES[name]


def round_shift(x, s: int):
    """IS §1: ⌊(x + 2^(s−1)) / 2^s⌋, round half up; s = 0 returns x.  Python ints or int64 arrays."""
    if s == 0:
        return x
    return (x + (1 << (s - 1))) >> s


@dataclass(frozen=True)
class Blob:
    """A validated blob.  Arrays are read-only views of (or decoded from) ``data``.

    ``levels``: (S, b) int16 weight levels per sample (duplicate grouped entries summed, MF §6.3);
    ``weight_bound``: L = max_s Σ |stored level| (IS §9), computed from the stored entries.
    """

    data: bytes
    minor: int
    kind: int
    layout: int
    bits: int
    flags: int
    n_inputs: int
    n_features: int
    n_samples: int
    feature_frac: int
    pre_shift: int
    m1: int
    s1: int
    s2: int
    m2: int
    noise_q: int
    noise_exact_q: int
    mean_scale: float
    y_offset: float
    sections: tuple[tuple[int, int], ...]
    input_scale: np.ndarray
    input_zero: np.ndarray
    linear_m: np.ndarray | None
    linear_b: np.ndarray | None
    phase_c: np.ndarray | None
    phase_w: np.ndarray | None
    table: np.ndarray | None
    levels: np.ndarray
    weight_bound: int
    exact_mean: np.ndarray | None
    exact_var: np.ndarray | None

    @property
    def has_exact(self) -> bool:
        return bool(self.flags & FLAG_EXACT)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def layout_name(self) -> str:
        return LAYOUT_NAMES[self.layout]

    @property
    def sparsity(self) -> float:
        """Share of zero levels over all samples and weights."""
        return float(np.mean(self.levels == 0))

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


def _level_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_header(f: dict) -> None:
    """MF §2 field rules; raises HEADER."""
    checks = [
        (f["kind"] in KIND_NAMES, "unknown feature kind"),
        (f["layout"] in LAYOUT_NAMES, "unknown sample layout"),
        (f["bits"] in (2, 3, 4), "bits must be 2, 3 or 4"),
        (f["flags"] & ~FLAG_EXACT == 0, "unknown flags"),
        (f["d"] >= 1, "no inputs"),
        (
            f["b"] == f["d"] + 1 if f["kind"] == KIND_LINEAR else (f["b"] >= 2 and f["b"] % 2 == 0),
            "feature count does not match the feature kind",
        ),
        (f["S"] >= 1, "no samples"),
        (f["frac"] <= 14 if f["kind"] == KIND_LINEAR else f["frac"] == 15, "bad feature fraction bits"),
        (f["r"] <= 31, "pre-shift above 31"),
        (f["m1"] >= 1, "mean multiplier must be positive"),
        (1 <= f["s1"] <= 62, "mean shift out of range"),
        (33 <= f["s2"] <= 63, "variance shift out of range"),
        (f["m2"] <= 1 << 31, "variance multiplier above 2^31"),
        (f["res16"] == 0 and f["res32"] == 0 and f["res64"] == 0, "reserved fields must be zero"),
        (f["noise"] <= 1 << 62 and f["noise_exact"] <= 1 << 62, "noise constant above 2^62"),
        (f["flags"] & FLAG_EXACT or f["noise_exact"] == 0, "exact noise without an exact section"),
    ]
    for ok, message in checks:
        if not ok:
            raise BlobError("HEADER", message)


def _expected_sizes(f: dict) -> list[int | None]:
    d, b = f["d"], f["b"]
    F = b // 2
    return [
        16 * d,
        8 * d if f["kind"] == KIND_LINEAR else 4 * F * (1 + d),
        0 if f["kind"] == KIND_LINEAR else 2 * TABLE_SIZE,
        None,
        4 * b if f["flags"] & FLAG_EXACT else 0,
        None,
    ]


def _check_sections(table: list[tuple[int, int]], f: dict, total: int) -> None:
    """MF §3 placement rules; raises SECTION."""
    end, limit = HEADER_SIZE, total - 4
    for sid, ((off, size), want) in enumerate(zip(table, _expected_sizes(f), strict=True)):
        if want is not None and size != want:
            raise BlobError("SECTION", f"section {sid} has {size} bytes, expected {want}")
        if size == 0:
            if off != 0:
                raise BlobError("SECTION", f"empty section {sid} must have offset 0")
            continue
        if off % 8 or off < end or size > limit or off > limit - size:
            raise BlobError("SECTION", f"section {sid} is misplaced (offset {off}, size {size})")
        end = off + size


def _linear_phi_ends(m: int, b: int) -> tuple[int, int]:
    return round_shift(m * -32768 + b, 15), round_shift(m * 32767 + b, 15)


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


def _decode_gap4(raw: np.ndarray, b: int, lo: int, hi: int, row: np.ndarray) -> int:
    """MF §6.4: one sample's bytes into ``row``; returns Σ|level|."""
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
    row[idx] = vals
    return int(np.abs(vals).sum())


def _decode_samples(data: bytes, layout: int, S: int, b: int, bits: int) -> tuple[np.ndarray, int]:
    """MF §6: decode and check the samples; returns (levels (S, b) int16, L).  Raises CONTENT."""
    lo, hi = _level_range(bits)
    raw = np.frombuffer(data, dtype=np.uint8)
    if layout == LAYOUT_DENSE4:
        row = (b + 1) // 2
        if len(raw) != S * row:
            raise BlobError("CONTENT", "dense4 samples have the wrong size")
        nib = np.empty((S, 2 * row), dtype=np.int16)
        pairs = raw.reshape(S, row)
        nib[:, 0::2], nib[:, 1::2] = pairs & 0xF, pairs >> 4
        if b % 2 and np.any(nib[:, -1]):
            raise BlobError("CONTENT", "dense4 padding nibble is not zero")
        levels = ((nib[:, :b] ^ 8) - 8).astype(np.int16)
        if np.any(levels < lo) or np.any(levels > hi):
            raise BlobError("CONTENT", "level outside the header's bits")
        return levels, int(np.abs(levels).sum(axis=1).max())
    levels = np.zeros((S, b), dtype=np.int16)
    bound, pos, n = 0, 0, len(raw)
    for s in range(S):
        total = 0
        if layout == LAYOUT_BITMAP4:
            nmap = (b + 7) // 8
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
            levels[s, idx] = vals
            total = int(np.abs(vals).sum())
        elif layout == LAYOUT_GAP4:
            nbytes, pos = _read_varint(raw, pos, "gap4 byte count")
            if n - pos < nbytes:
                raise BlobError("CONTENT", "gap4 sample runs past the section")
            total = _decode_gap4(raw[pos : pos + nbytes], b, lo, hi, levels[s])
            pos += nbytes
        else:
            if pos >= n:
                raise BlobError("CONTENT", "grouped sample runs past the section")
            groups, pos = int(raw[pos]), pos + 1
            if groups > MAX_GROUPS:
                raise BlobError("CONTENT", "more than 16 groups in a sample")
            previous_value = None
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
                    levels[s, index] += v
                total += abs(v) * count
        bound = max(bound, total)
    if pos != n:
        raise BlobError("CONTENT", "samples section has trailing bytes")
    return levels, bound


def parse(data: bytes) -> Blob:
    """Validate ``data`` (MF §9, in order) and return the parsed :class:`Blob`."""
    data = bytes(data)
    if len(data) < MIN_SIZE:
        raise BlobError("ARG", f"{len(data)} bytes is too short for a blob")
    (
        magic,
        major,
        minor,
        total,
        kind,
        layout,
        bits,
        flags,
        d,
        b,
        S,
        frac,
        r,
        m1,
        s1,
        s2,
        res16,
        m2,
        res32,
        noise,
        noise_exact,
        mean_scale,
        y_offset,
        *table_and_tail,
    ) = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise BlobError("MAGIC", "not a direct-edge model blob (bad magic)")
    if major != FORMAT_MAJOR:
        raise BlobError("VERSION", f"blob format {major}.{minor} is not supported (this reader reads 1.x)")
    if total != len(data):
        raise BlobError("SIZE", f"header says {total} bytes but {len(data)} were given (truncated?)")
    (crc,) = struct.unpack_from("<I", data, total - 4)
    if zlib.crc32(data[: total - 4]) != crc:
        raise BlobError("CRC", "checksum mismatch (corrupted blob)")
    fields = dict(
        kind=kind,
        layout=layout,
        bits=bits,
        flags=flags,
        d=d,
        b=b,
        S=S,
        frac=frac,
        r=r,
        m1=m1,
        s1=s1,
        s2=s2,
        m2=m2,
        res16=res16,
        res32=res32,
        res64=table_and_tail[12],
        noise=noise,
        noise_exact=noise_exact,
    )
    _check_header(fields)
    table = [(table_and_tail[2 * i], table_and_tail[2 * i + 1]) for i in range(N_SECTIONS)]
    _check_sections(table, fields, total)

    def section(sid: int, dtype: str, count: int | None = None, start: int = 0) -> np.ndarray:
        off, size = table[sid]
        nbytes = size - start if count is None else count * np.dtype(dtype).itemsize
        return np.frombuffer(memoryview(data)[off + start : off + start + nbytes], dtype=dtype)

    inputs = section(SECTION_INPUT, "<f8").reshape(d, 2)
    lin_m = lin_b = phase_c = phase_w = tab = None
    if kind == KIND_LINEAR:
        params = section(SECTION_FEATURES, "<i4").reshape(d, 2)
        lin_m, lin_b = params[:, 0], params[:, 1]
        for m, c in zip(lin_m.tolist(), lin_b.tolist(), strict=True):
            ends = _linear_phi_ends(m, c)
            if abs(m) * 32768 + abs(c) + (1 << 14) > I32_MAX or max(abs(e) for e in ends) > PHI_MAX:
                raise BlobError("CONTENT", "linear feature parameters exceed the i32/i16 bounds (IS §9)")
    else:
        F = b // 2
        phase_c = section(SECTION_FEATURES, "<u4", F)
        phase_w = section(SECTION_FEATURES, "<i4", F * d, start=4 * F).reshape(F, d)
        tab = section(SECTION_TABLE, "<i2")
        if np.any(tab == -32768):
            raise BlobError("CONTENT", "sine table entry -32768 (IS §9)")
    off, size = table[SECTION_SAMPLES]
    levels, bound = _decode_samples(data[off : off + size], layout, S, b, bits)
    exact_mean = exact_var = None
    if flags & FLAG_EXACT:
        exact_mean = section(SECTION_EXACT, "<i2", b)
        exact_var = section(SECTION_EXACT, "<u2", b, start=2 * b)
    # IS §9: the accumulator bounds, recomputed from the stored levels.
    if bound > 65536:
        raise BlobError("OVERFLOW", f"a sample's Σ|level| = {bound} exceeds 65536")
    sum_bound = S * round_shift(bound * PHI_MAX, r)
    if sum_bound > I32_MAX:
        raise BlobError("OVERFLOW", "the pre-shift is too small for the sum over samples to fit i32")
    if round_shift(sum_bound * m1, s1) > I32_MAX:
        raise BlobError("OVERFLOW", "the mean multiplier could push the mean outside i32")
    if flags & FLAG_EXACT and (b << 18) >= 1 << (31 + r):
        raise BlobError("OVERFLOW", "exact-moment mean would not fit i32")
    return Blob(
        data=data,
        minor=minor,
        kind=kind,
        layout=layout,
        bits=bits,
        flags=flags,
        n_inputs=d,
        n_features=b,
        n_samples=S,
        feature_frac=frac,
        pre_shift=r,
        m1=m1,
        s1=s1,
        s2=s2,
        m2=m2,
        noise_q=noise,
        noise_exact_q=noise_exact,
        mean_scale=mean_scale,
        y_offset=y_offset,
        sections=tuple(table),
        input_scale=inputs[:, 0],
        input_zero=inputs[:, 1],
        linear_m=lin_m,
        linear_b=lin_b,
        phase_c=phase_c,
        phase_w=phase_w,
        table=tab,
        levels=levels,
        weight_bound=bound,
        exact_mean=exact_mean,
        exact_var=exact_var,
    )
