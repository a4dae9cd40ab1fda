"""The blob reader (docs/model-format.md): layouts round-trip, and each MF §9 check fires with its code."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from direct_edge.export import packed
from direct_edge.runtime import reference
from direct_edge.runtime import schema as input_schema
from direct_edge.runtime.blob import (
    FLAG_FLOOR,
    FLAG_GAINS,
    FORMAT_MINOR,
    HEADER_SIZE,
    SECTION_FEATURES,
    SECTION_INPUT,
    SECTION_SAMPLES,
    SECTION_SCHEMA,
    BlobError,
    parse,
)

from .conftest import patched, recrc, section_entry


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
    assert code_of(patched(blob, "sections", 8, 2 * SECTION_SCHEMA)) == "SECTION"  # empty section, offset set
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


# ---- MF §10: the input-schema section ---------------------------------------------------------------


def mixed_schema() -> input_schema.Schema:
    """Every kind and policy: a plain column, one with mean-indicator imputation, a categorical one."""
    Column = input_schema.Column
    return input_schema.Schema(
        (
            Column("age", low=18.0, high=90.0),
            Column("bmi", missing=input_schema.MEAN_INDICATOR, low=15.5, high=42.0, fill=26.25),
            Column("colour", kind=input_schema.CATEGORICAL, levels=("red", "grün", "blue")),
        ),
        "price",
    )


@pytest.fixture(scope="module")
def schema_blob() -> bytes:
    return packed.synthetic_blob("rff", 3, 18, 4, seed=3, layout="dense4", schema=True)


def test_the_schema_section_round_trips_and_names_the_columns(schema_blob):
    b = parse(schema_blob)
    assert b.minor == FORMAT_MINOR and b.sections[SECTION_SCHEMA][1] > 0
    assert b.schema.column_names == b.schema.input_names == ["x0", "x1", "x2"]
    assert b.schema.target == "y" and b.schema.plain
    assert [c.low for c in b.schema.columns] == pytest.approx(
        [float(v) for v in packed.blob_input_range(b)[0]], rel=1e-12
    )
    s = mixed_schema()
    data = input_schema.encode(s)
    assert input_schema.decode(data, 6) == s
    assert s.input_names == ["age", "bmi", "bmi_missing", "colour=red", "colour=grün", "colour=blue"]
    assert data[:4] == bytes([1, 0, 3, 0]) and data[4:10] == b"\x05price"


def test_a_blob_without_the_section_still_loads_by_position_or_by_its_metadata_names():
    old = patched(packed.synthetic_blob("linear", 2, 3, 2, seed=4, layout="dense4"), "minor", 0)
    b = parse(old)  # a format 1.0 blob: no schema section
    assert b.minor == 0 and b.sections[SECTION_SCHEMA] == (0, 0)
    assert b.schema is None and b.column_names is None


def schema_mutant(blob: bytes, content: bytes) -> bytes:
    """``blob`` with its schema section's bytes replaced by ``content`` (at most as long), CRC recomputed."""
    off, size = parse(blob).sections[SECTION_SCHEMA]
    assert len(content) <= size
    out = bytearray(blob)
    out[off : off + size] = content + bytes(size - len(content))
    struct.pack_into("<II", out, section_entry(SECTION_SCHEMA), off if content else 0, len(content))
    return recrc(out)


def schema_error(data: bytes) -> str:
    b = parse(data)  # placement is valid: parse accepts what the C library accepts
    with pytest.raises(BlobError) as info:
        _ = b.schema
    assert info.value.name == "CONTENT" and "\n" not in str(info.value)
    return str(info.value)


def test_every_truncation_of_the_schema_section_is_rejected_in_one_line(schema_blob):
    off, size = parse(schema_blob).sections[SECTION_SCHEMA]
    content = schema_blob[off : off + size]
    for n in range(1, size):
        message = schema_error(schema_mutant(schema_blob, content[:n]))
        assert message.startswith("invalid model blob (CONTENT): input schema section: ")
    assert parse(schema_mutant(schema_blob, b"")).schema is None  # no section at all is a valid blob


def test_each_schema_rule_is_checked(schema_blob):
    good = input_schema.encode(parse(schema_blob).schema)
    name = good.index(b"x1")

    def edit(pos: int, raw: bytes, base: bytes = good) -> bytes:
        return schema_mutant(schema_blob, base[:pos] + raw + base[pos + len(raw) :])

    cases = {
        "schema version 2": edit(0, b"\x02"),
        "reserved byte": edit(1, b"\x01"),
        "runs past the end": edit(2, b"\x04"),
        "not UTF-8": edit(name, b"\xff"),
        "appears twice": edit(name, b"x0"),
        "unknown kind 7": edit(name + 2, b"\x07"),
        "unknown kind or missing-value policy": edit(name + 3, b"\x05"),
        "fill value without": edit(name + 20, struct.pack("<d", 0.5)),
        "finite training range": edit(name + 4, struct.pack("<d", float("nan"))),
        "bytes after the last column": edit(2, b"\x02"),
    }
    for expected, data in cases.items():
        assert expected in schema_error(data), expected
    with pytest.raises(input_schema.SchemaError, match="the columns make 3 inputs, the header says 4"):
        input_schema.decode(good, 4)
    swapped = input_schema.Column("x0", low=1.0, high=0.0)
    with pytest.raises(input_schema.SchemaError, match="low <= high"):
        input_schema.encode(input_schema.Schema((swapped,)))
    with pytest.raises(input_schema.SchemaError, match="must refuse missing values"):
        input_schema.Schema((input_schema.Column("c", 1, 1, levels=("a",)),)).check()


def test_random_schema_mutations_decode_or_raise_one_content_error(schema_blob):
    rng = np.random.default_rng(0)
    good = input_schema.encode(mixed_schema())
    for _ in range(3000):
        raw = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        try:
            s = input_schema.decode(bytes(raw), 6)
        except input_schema.SchemaError as exc:
            assert "\n" not in str(exc)
        else:
            assert s.n_inputs == 6 and input_schema.encode(s) == bytes(raw)


def test_raw_cells_read_the_same_whatever_type_they_arrive_as():
    """MF §10: a level is matched as canonical text (numbers written one way), and missing cells are
    recognised as None, NaN, pandas' NA and the NA strings, in text and in numeric columns."""
    import pandas as pd

    from direct_edge.runtime.schema import level_text, numbers

    for same in (
        [2, 2.0, "2.0", " 02 ", np.int64(2), np.float32(2.0)],
        ["2.5", 2.5, " 2.50"],
        ["red", " red "],
    ):
        assert len({level_text(v) for v in same}) == 1, same
    assert [level_text(v) for v in (None, np.nan, pd.NA, "", "NA", "nan")] == [None] * 6
    values, missing, text_at = numbers(np.array([1.5, pd.NA, "NA", " 2 ", None, "", "x", "3"], dtype=object))
    assert missing.tolist() == [False, True, True, False, True, True, False, False] and text_at == 6
    assert values[[0, 3, 7]].tolist() == [1.5, 2.0, 3.0]
    values, missing, _ = numbers(pd.array([1, None, 3], dtype="Int64").to_numpy())
    assert missing.tolist() == [False, True, False] and values[2] == 3.0


def test_the_missing_value_strings_are_pandas_defaults():
    """A cell pandas (the trainer's reader) reads as missing is missing for direct-run and the schema."""
    from pandas._libs.parsers import STR_NA_VALUES

    from direct_edge.runtime.schema import MISSING

    assert set(STR_NA_VALUES) == MISSING


# --- feature gains (MF §5.1, IS §3.4) ----------------------------------------------------------------


@pytest.mark.parametrize("kind,d,b", [("linear", 4, 5), ("rff", 3, 18)])
def test_gains_round_trip_and_leave_the_blob_without_them_unchanged(kind, d, b):
    plain = packed.synthetic_blob(kind, d, b, 4, seed=7, layout="dense4")
    data = packed.synthetic_blob(kind, d, b, 4, seed=7, layout="dense4", gains=True)
    old, new = parse(plain), parse(data)
    assert old.gains is None and not old.has_gains
    assert new.has_gains and new.flags & FLAG_GAINS and new.gains.dtype == np.dtype("<u2")
    assert new.gains[0] == 1 and new.gains[1] == 32768 and np.all((new.gains >= 1) & (new.gains <= 32768))
    assert new.sections[SECTION_FEATURES][1] == old.sections[SECTION_FEATURES][1] + 2 * b
    # Every other parameter is the same; the gains only scale the features (IS §3.4).
    np.testing.assert_array_equal(new.levels, old.levels)
    q = np.random.default_rng(0).integers(-32768, 32768, (50, d)).astype(np.int16)
    phi, phi_g = reference.features(old, q), reference.features(new, q)
    np.testing.assert_array_equal(phi_g, (phi * new.gains.astype(np.int64) + (1 << 14)) >> 15)
    assert np.all(np.abs(phi_g) <= np.abs(phi))
    np.testing.assert_array_equal(phi_g[:, 1], phi[:, 1])  # G = 32768 is the identity
    # A gain of 32768 everywhere predicts exactly as no gains.
    G = np.frombuffer(data, dtype="<u2", count=b, offset=sum(new.sections[SECTION_FEATURES]) - 2 * b)
    ones = bytearray(data)
    ones[sum(new.sections[SECTION_FEATURES]) - 2 * b : sum(new.sections[SECTION_FEATURES])] = bytes(
        np.full_like(G, 32768).tobytes()
    )
    same = parse(recrc(ones))
    for mode in (reference.predict, reference.predict_exact):
        for got, want in zip(mode(same, q), mode(old, q), strict=True):
            np.testing.assert_array_equal(got, want)


def gains_mutant(data: bytes, index: int, value: int) -> bytes:
    """``data`` with feature gain ``index`` set to ``value`` (u16), CRC recomputed."""
    b = parse(data)
    off, size = b.sections[SECTION_FEATURES]
    out = bytearray(data)
    struct.pack_into("<H", out, off + size - 2 * b.n_features + 2 * index, value)
    return recrc(out)


@pytest.mark.parametrize("kind,d,b", [("linear", 4, 5), ("rff", 3, 18)])
def test_corrupt_gains_are_rejected_with_one_error(kind, d, b):
    data = packed.synthetic_blob(kind, d, b, 4, seed=7, layout="gap4", gains=True)
    for index, value in ((0, 0), (b - 1, 0), (2, 32769), (3, 65535)):
        with pytest.raises(BlobError) as err:
            parse(gains_mutant(data, index, value))
        assert err.value.name == "CONTENT" and "gain" in str(err.value) and "\n" not in str(err.value)
    # The flag without the gains' bytes, and gains without the flag: the feature section's size is wrong.
    plain = packed.synthetic_blob(kind, d, b, 4, seed=7, layout="gap4")
    for blob, flags in ((plain, parse(plain).flags | FLAG_GAINS), (data, parse(data).flags & ~FLAG_GAINS)):
        with pytest.raises(BlobError) as err:
            parse(patched(blob, "flags", flags))
        assert err.value.name == "SECTION" and "section 1" in str(err.value)
    # An unknown flag bit is still a header error (bit 2, the floor, is known: the feature section's size
    # is then wrong; bit 3, the rotation, likewise for rff and a header error for linear features).
    with pytest.raises(BlobError) as err:
        parse(patched(data, "flags", parse(data).flags | 16))
    assert err.value.name == "HEADER"
    with pytest.raises(BlobError) as err:
        parse(patched(data, "flags", parse(data).flags | 4))
    assert err.value.name == "SECTION" and "section 1" in str(err.value)
    with pytest.raises(BlobError) as err:
        parse(patched(data, "flags", parse(data).flags | 8))
    assert err.value.name == ("HEADER" if kind == "linear" else "SECTION")


@pytest.mark.parametrize("kind, d, b", [("linear", 4, 5), ("rff", 3, 18)])
@pytest.mark.parametrize("gains", [False, True])
@pytest.mark.parametrize("exact", [False, True])
def test_the_floor_ends_the_feature_section_after_the_gains(kind, d, b, gains, exact):
    """MF §5.2: with flag bit 2 the feature section is 2·b bytes longer (SECTION otherwise), the floors
    after the gains, whether or not the exact section is there."""
    data = packed.synthetic_blob(kind, d, b, 4, seed=7, floor=True, gains=gains, exact=exact)
    blob = parse(data)
    assert blob.has_floor and blob.floor.shape == (b,) and blob.floor.max() == 65535 and blob.floor[0] == 0
    assert blob.has_exact == exact and (blob.gains is not None) == gains
    without = parse(packed.synthetic_blob(kind, d, b, 4, seed=7, gains=gains, exact=exact))
    assert blob.sections[1][1] == without.sections[1][1] + 2 * b
    if gains:
        np.testing.assert_array_equal(blob.gains, without.gains)
    with pytest.raises(BlobError) as err:
        parse(patched(data, "flags", blob.flags & ~FLAG_FLOOR))
    assert err.value.name == "SECTION"
    # Without floors to store (all zero), the exporter writes what a 1.3 reader reads.
    assert not without.has_floor and without.floor is None


def test_packing_refuses_gains_off_the_grid():
    with pytest.raises(packed.ExportError, match="multiples of 2"):
        packed.gain_integers(np.array([0.5, 1.0 + 2.0**-15]))
    with pytest.raises(packed.ExportError, match="multiples of 2"):
        packed.gain_integers(np.array([0.5, 0.3]))
    assert packed.gain_integers(np.array([2.0**-15, 0.5, 1.0])).tolist() == [1, 16384, 32768]
