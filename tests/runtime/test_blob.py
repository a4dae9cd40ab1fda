"""The blob reader (docs/model-format.md): layouts round-trip, and each MF §9 check fires with its code."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from direct_edge.export import packed
from direct_edge.runtime.blob import HEADER_SIZE, SECTION_INPUT, SECTION_SAMPLES, BlobError, parse

from .conftest import patched, recrc


def random_levels(rng, S: int, b: int, zeros: float, bits: int = 4) -> np.ndarray:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    levels = rng.integers(lo, hi + 1, (S, b)).astype(np.int8)
    levels[rng.random((S, b)) < zeros] = 0
    return levels


@pytest.mark.parametrize("layout", ["dense4", "bitmap4", "grouped", "gap4"])
@pytest.mark.parametrize(
    "S,b,zeros", [(1, 2, 0.0), (3, 7, 0.5), (8, 2000, 0.995), (5, 601, 1.0), (16, 64, 0.9)]
)
def test_every_layout_decodes_to_the_levels_it_encoded(layout, S, b, zeros):
    rng = np.random.default_rng(S * b)
    levels = random_levels(rng, S, b, zeros)
    code, data = packed.encode_samples(levels, layout)
    from direct_edge.runtime.blob import _decode_samples

    decoded, bound = _decode_samples(data, code, S, b, 4)
    assert np.array_equal(decoded.dense(), levels)
    assert bound == int(np.abs(levels.astype(int)).sum(axis=1).max())


def test_grouped_gaps_longer_than_255_use_escape_bytes():
    levels = np.zeros((1, 1000), np.int8)
    levels[0, [0, 255, 256, 767, 999]] = 3
    _, data = packed.encode_samples(levels, "grouped")
    # G, level, count, then the gaps 1, 255, 1, 511 (two escapes of 255, then 1) and 232
    assert data == bytes([1, 3, 5, 1, 255, 1, 0, 0, 1, 232])


def test_auto_layout_is_the_smallest():
    rng = np.random.default_rng(0)
    for zeros in (0.0, 0.5, 0.95):
        levels = random_levels(rng, 8, 512, zeros)
        sizes = {name: len(packed.encode_samples(levels, name)[1]) for name in packed.LAYOUTS}
        assert len(sizes) == 4
        assert len(packed.encode_samples(levels, "auto")[1]) == min(sizes.values())


def test_output_parameters_pick_the_smallest_safe_preshift_and_exact_power_of_two_multipliers():
    for S in (1, 2, 3, 8, 10, 64):
        levels = np.full((S, 4000), 7, np.int8)
        p = packed.output_parameters(levels)
        bound = 4000 * 7 * 32767
        assert S * ((bound + (1 << p["r"] >> 1)) >> p["r"]) <= 2**31 - 1
        if p["r"] > 0:
            r = p["r"] - 1
            assert S * ((bound + (1 << r >> 1)) >> r) > 2**31 - 1
        if S & (S - 1) == 0:
            assert p["m1"] / 2 ** p["s1"] == 1 / S
            assert S == 1 or p["m2"] / 2 ** p["s2"] == 1 / S**2
        assert 2**30 <= p["m2"] <= 2**31 or S == 1


@pytest.fixture(scope="module")
def blob() -> bytes:
    return packed.synthetic_blob("rff", 5, 32, 4, zeros=0.5, seed=7, layout="bitmap4")


def test_a_valid_blob_parses_with_its_fields(blob):
    b = parse(blob)
    assert (b.n_inputs, b.n_features, b.n_samples, b.layout_name, b.kind_name) == (5, 32, 4, "bitmap4", "rff")
    assert b.has_exact and b.meta["synthetic"] is True


def code_of(data: bytes) -> str:
    with pytest.raises(BlobError) as info:
        parse(data)
    return info.value.name


def test_each_check_reports_its_code(blob):
    assert code_of(blob[:100]) == "ARG"
    assert code_of(b"XXXX" + blob[4:]) == "MAGIC"
    assert code_of(patched(blob, "major", 2)) == "VERSION"
    assert code_of(blob[:-1]) == "SIZE"
    assert code_of(blob + b"\0") == "SIZE"
    flipped = bytearray(blob)
    flipped[HEADER_SIZE + 3] ^= 0x10
    assert code_of(bytes(flipped)) == "CRC"
    assert code_of(patched(blob, "layout", 4)) == "HEADER"  # layout
    assert code_of(patched(blob, "flags", 2)) == "HEADER"  # unknown flag
    assert code_of(patched(blob, "n_features", 33)) == "HEADER"  # odd rff feature count
    assert code_of(patched(blob, "s2", 32)) == "HEADER"  # s2 below 33
    assert code_of(patched(blob, "reserved_120", 1)) == "HEADER"  # reserved
    assert code_of(patched(blob, "sections", 129, 2 * SECTION_INPUT)) == "SECTION"  # input section misaligned
    assert (
        code_of(patched(blob, "sections", 8, 2 * SECTION_INPUT + 1)) == "SECTION"
    )  # input section of the wrong size
    assert (
        code_of(patched(blob, "sections", 10**6, 2 * SECTION_SAMPLES + 1)) == "SECTION"
    )  # samples run off the end


def test_content_and_overflow_checks(blob):
    b = parse(blob)
    samples_offset = b.sections[3][0]
    bad_bitmap = bytearray(blob)
    bad_bitmap[samples_offset + 4] = 0  # the first sample's nibbles: a nonzero bit with a zero level
    assert code_of(recrc(bad_bitmap)) == "CONTENT"
    table_offset = b.sections[2][0]
    bad_table = bytearray(blob)
    struct.pack_into("<h", bad_table, table_offset + 10, -32768)
    assert code_of(recrc(bad_table)) == "CONTENT"
    assert code_of(patched(blob, "pre_shift", 0) if b.pre_shift else _tight_overflow()) == "OVERFLOW"


def _tight_overflow() -> bytes:
    """A blob whose pre-shift is one too small for its weights (IS §9)."""
    data = packed.synthetic_blob("rff", 3, 512, 64, zeros=0.0, seed=1, layout="dense4")
    assert parse(data).pre_shift > 0
    return patched(data, "pre_shift", parse(data).pre_shift - 1)


def test_linear_parameters_out_of_bounds_are_content_errors():
    data = packed.synthetic_blob("linear", 3, 4, 2, seed=2)
    b = parse(data)
    bad = bytearray(data)
    struct.pack_into("<i", bad, b.sections[1][0], 2**31 - 1)
    assert code_of(recrc(bad)) == "CONTENT"


def test_grouped_sections_with_bad_indices_counts_or_order_are_rejected():
    from direct_edge.runtime.blob import _decode_samples

    levels = np.zeros((1, 300), np.int8)
    levels[0, 299] = 1
    _, good = packed.encode_samples(levels, "grouped")
    assert good == bytes([1, 1, 1, 0, 45])  # G, level, count, gap 300 = one escape (255) + 45
    assert _decode_samples(good, 2, 1, 300, 4)[0].dense()[0, 299] == 1
    with pytest.raises(BlobError, match="beyond the last feature"):
        _decode_samples(bytes([1, 1, 1, 0, 46]), 2, 1, 300, 4)
    with pytest.raises(BlobError, match="past the section"):
        _decode_samples(bytes([1, 1, 2, 0, 45]), 2, 1, 300, 4)
    with pytest.raises(BlobError, match="not increasing"):
        _decode_samples(bytes([2, 2, 1, 1, 1, 1, 2]), 2, 1, 300, 4)
    with pytest.raises(BlobError, match="out of range"):
        _decode_samples(bytes([1, 7, 1, 1]), 2, 1, 300, 3)  # level 7 does not fit 3 bits
    with pytest.raises(BlobError, match="trailing"):
        _decode_samples(good + b"\0", 2, 1, 300, 4)


def test_gap4_bytes_and_its_malformed_variants():
    from direct_edge.runtime.blob import _decode_samples

    levels = np.zeros((1, 300), np.int8)
    levels[0, [0, 16, 299]] = [1, -1, 7]
    _, good = packed.encode_samples(levels, "gap4")
    # count 5; (gap 1, +1); (gap 16, -1 = 0xF); gap 283 = skip 256 (g = 15) + skip 16 (g = 0) + (gap 11, 7)
    assert good == bytes([5, 0x10, 0xFF, 0x0F, 0x00, 0x7A])
    assert np.array_equal(_decode_samples(good, 3, 1, 300, 4)[0].dense(), levels)
    with pytest.raises(BlobError, match="beyond the last feature"):
        _decode_samples(bytes([5, 0x10, 0xFF, 0x0F, 0x00, 0x7B]), 3, 1, 300, 4)
    with pytest.raises(BlobError, match="ends with a skip"):
        _decode_samples(bytes([2, 0x10, 0x00]), 3, 1, 300, 4)
    with pytest.raises(BlobError, match="past the section"):
        _decode_samples(bytes([6, 0x10, 0xFF, 0x0F, 0x00, 0x7A]), 3, 1, 300, 4)
    with pytest.raises(BlobError, match="out of range|outside"):
        _decode_samples(bytes([1, 0x70]), 3, 1, 300, 3)
