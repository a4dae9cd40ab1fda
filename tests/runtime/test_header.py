"""One definition of the blob header (MF §2, runtime/header.py): the Python reader and writer, the C
library's generated offsets and accessors, and the ctypes mirror of ``direct_model`` all agree with it."""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import bounds, header
from direct_edge.runtime.blob import BlobError, parse
from direct_edge.runtime.native import _Model, _Prediction

from .conftest import C_DIR, patched

MF_TABLE = Path(__file__).resolve().parents[2] / "docs" / "model-format.md"


def c_compiler() -> str:
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no C compiler (cc, gcc or clang) installed")


def compile_and_run(source: str, tmp_path: Path, stdin: bytes = b"") -> str:
    """Compile ``source`` against runtime/c (C99, warnings as errors) and return its stdout."""
    src, exe = tmp_path / "probe.c", tmp_path / "probe"
    src.write_text(source)
    cmd = [
        c_compiler(),
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        str(C_DIR),
        str(src),
        "-o",
        str(exe),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return subprocess.run([str(exe)], input=stdin, capture_output=True, check=True).stdout.decode()


# --- the table itself ---------------------------------------------------------------------------------


def test_fields_tile_the_128_byte_header_in_order():
    end = 0
    for f in header.FIELDS:
        assert f.offset == end, f.name
        end += f.size
    assert end == header.HEADER_SIZE == header.STRUCT.size == 128


def test_the_table_matches_the_offsets_and_types_in_the_spec():
    """Every row of MF §2's table names the offset and type of one field of header.FIELDS."""
    text = MF_TABLE.read_text()
    section = text[text.index("## §2") : text.index("## §3")]
    rows = re.findall(r"^\| (\d+) \| ([^|]+?) \|", section, re.MULTILINE)
    spec = {int(offset): kind.strip() for offset, kind in rows}
    words = {"char[4]": "4 bytes", "u64": "u64"}
    got = {f.offset: f.type for f in header.FIELDS}
    assert sorted(spec) == sorted(got)
    for offset, kind in got.items():
        if offset == 72:
            assert spec[offset] == "7 × (u32, u32)"
        else:
            assert spec[offset] == words.get(kind, kind), offset


def test_pack_and_unpack_round_trip_every_field():
    rng = np.random.default_rng(0)
    values = {}
    for f in header.FIELDS:
        code, size = header.TYPES[f.type][:2]
        if code == "4s":
            values[f.name] = rng.bytes(4)
        elif code == "d":
            values[f.name] = float(rng.normal())
        else:
            signed = code.islower()
            lo, hi = (-(1 << (8 * size - 1)), 1 << (8 * size - 1)) if signed else (0, 1 << (8 * size))
            draw = [int(rng.integers(lo, hi, dtype=np.int64)) if size < 8 else int(rng.integers(0, 2**63))]
            values[f.name] = tuple(draw * f.count) if f.count > 1 else draw[0]
    raw = header.pack(values)
    assert len(raw) == 128
    assert header.unpack(raw) == values


def test_pack_fills_defaults_and_refuses_missing_or_unknown_fields():
    data = synthetic_blob("rff", 2, 8, 3, seed=1, layout="dense4")
    values = header.unpack(data)
    for name in ("magic", "major", "minor", "classes", "logit_shift", "logit_mult"):
        del values[name]
    assert header.pack(values) == data[:128]
    with pytest.raises(KeyError, match="n_samples"):
        header.pack({k: v for k, v in values.items() if k != "n_samples"})
    with pytest.raises(KeyError, match="unknown header fields: colour"):
        header.pack({**values, "colour": 1})


def test_parse_exposes_every_header_field_by_name():
    data = synthetic_blob("linear", 3, 4, 5, seed=2, layout="gap4")
    blob = parse(data)
    raw = header.unpack(data)
    assert blob.header == raw
    assert (blob.n_inputs, blob.n_features, blob.n_samples, blob.total_size) == (3, 4, 5, len(data))
    assert blob.mean_scale == struct.unpack_from("<d", data, 56)[0]
    with pytest.raises(AttributeError, match="colour"):
        _ = blob.colour


# each HEADER rule of the table, with a value that breaks it
VIOLATIONS = [
    ("kind", 2),
    ("layout", 4),
    ("bits", 1),
    ("bits", 5),
    ("flags", 2),
    ("n_inputs", 0),
    ("n_features", 33),
    ("n_samples", 0),
    ("feature_frac", 14),
    ("pre_shift", 32),
    ("m1", 0),
    ("m1", -1),
    ("s1", 0),
    ("s1", 63),
    ("s2", 32),
    ("s2", 64),
    ("classes", 1),
    ("classes", 2),
    ("logit_shift", 1),
    ("m2", 2**31 + 1),
    ("logit_mult", 1),
    ("noise_q", 2**62 + 1),
    ("noise_exact_q", 2**62 + 1),
    ("mean_scale", float("nan")),
    ("mean_scale", float("inf")),
    ("mean_scale", 0.0),
    ("mean_scale", -0.0),
    ("mean_scale", -1.5),
    ("y_offset", float("nan")),
    ("y_offset", float("-inf")),
]


@pytest.fixture(scope="module")
def rff_blob() -> bytes:
    return synthetic_blob("rff", 5, 32, 4, zeros=0.5, seed=7, layout="bitmap4")


@pytest.mark.parametrize("name,value", VIOLATIONS)
def test_each_header_rule_raises_its_code(rff_blob, name, value):
    with pytest.raises(BlobError) as info:
        parse(patched(rff_blob, name, value))
    assert info.value.name == header.BY_NAME[name].error == "HEADER"


def test_exact_noise_without_the_exact_section_is_a_header_error():
    data = synthetic_blob("rff", 2, 8, 3, seed=1, layout="dense4", exact=False)
    with pytest.raises(BlobError, match="exact noise without an exact section"):
        parse(patched(data, "noise_exact_q", 1))


def test_the_header_rule_limits_are_the_integer_specs():
    """IS §9's edges, one function each (the writer and the Python reader both call these)."""
    assert bounds.weight_bound_fits(65536) and not bounds.weight_bound_fits(65537)
    assert bounds.noise_fits(2**62) and not bounds.noise_fits(2**62 + 1)
    assert bounds.variance_multiplier_fits(2**31) and not bounds.variance_multiplier_fits(2**31 + 1)
    assert bounds.exact_mean_fits(8191, 0) and not bounds.exact_mean_fits(8192, 0)
    assert bounds.exact_mean_fits(65535, 3) and not bounds.exact_mean_fits(65535, 2)
    assert bounds.ensemble_sum_fits(1, 65536, 0) and not bounds.ensemble_sum_fits(2, 65536, 0)
    assert bounds.ensemble_sum_fits(2, 65536, 1)
    # |M|·32768 + |B| + 2^14 ≤ 2^31 − 1 with |φ| ≤ 32767 at both ends
    assert bounds.linear_feature_fits(32767, 0) and not bounds.linear_feature_fits(32768, 0)
    assert bounds.linear_feature_fits(0, 32767 << 15) and not bounds.linear_feature_fits(
        0, (32767 << 15) + 2**14
    )
    # S·A_max = 65536·32767 = 2^31 − 2^16: M1/2^s1 = 1 fits i32, 1 + 2^−14 does not
    assert bounds.mean_fits(1, 65536, 0, 2**30, 30) and not bounds.mean_fits(1, 65536, 0, 2**30 + 2**16, 30)
    table = np.zeros(257, np.int16)
    assert bounds.sine_table_fits(table)
    table[9] = -32768
    assert not bounds.sine_table_fits(table)


# --- the C side ---------------------------------------------------------------------------------------


def test_the_generated_c_block_is_what_the_table_generates():
    """Regenerating the block of runtime/c/direct_internal.h gives identical bytes (else run
    ``python -m direct_edge.runtime.header``)."""
    text = header.C_FILE.read_text()
    assert header.c_block_in(text) == header.c_block()


def test_write_c_replaces_only_the_generated_block(tmp_path):
    stale = header.c_block().replace("DIRECT_H_KIND 12u", "DIRECT_H_KIND 13u")
    path = tmp_path / "x.h"
    path.write_text("/* before */\n" + stale + "/* after */\n")
    assert header.write_c(path) is True
    assert path.read_text() == "/* before */\n" + header.c_block() + "/* after */\n"
    assert header.write_c(path) is False


def test_c_accessors_read_every_field_as_python_does(tmp_path):
    """A C program prints every generated accessor on random header bytes; the values equal
    header.unpack's (offsets, widths and signedness of the C side, not just its text)."""
    calls = []
    for f in header.FIELDS:
        name = f"direct_h_{f.name}" + ("_bits" if f.type == "f64" else "")
        for i in range(f.count):
            call = f"{name}(h, {i}u)" if f.count > 1 else f"{name}(h)"
            cast = "(long long)" if f.type == "i32" else "(unsigned long long)"
            calls.append(f'    printf("%lld\\n", (long long){cast}{call});')
    source = "\n".join(
        [
            "#include <stdio.h>",
            '#include "direct_internal.h"',
            "int main(void) {",
            "    static uint8_t h[128];",
            "    if (fread(h, 1, sizeof h, stdin) != sizeof h) {",
            "        return 1;",
            "    }",
            *calls,
            "    return 0;",
            "}",
        ]
    )
    raw = np.random.default_rng(3).integers(0, 256, 128, dtype=np.uint8).tobytes()
    printed = [int(line) for line in compile_and_run(source, tmp_path, raw).split()]
    want = []
    for f in header.FIELDS:
        if f.type == "f64":
            want.append(struct.unpack_from("<q", raw, f.offset)[0])  # the bits, printed as signed
        elif f.type == "char[4]":
            want.append(struct.unpack_from("<I", raw, f.offset)[0])
        else:
            code = header.TYPES[f.type][0]
            for i in range(f.count):
                v = struct.unpack_from("<" + code, raw, f.offset + i * struct.calcsize(code))[0]
                want.append(v - 2**64 if v >= 2**63 else v)
    assert printed == want
    assert int.from_bytes(header.MAGIC, "little") == 0x51524944


def c_struct_fields(name: str) -> list[str]:
    """Member names of ``typedef struct { ... } name;`` in runtime/c/direct.h, in order."""
    text = (C_DIR / "direct.h").read_text()
    body = re.search(r"typedef struct \{([^{}]*)\}\s*" + name + ";", text).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.DOTALL)
    return re.findall(r"(\w+)\s*;", body)


@pytest.mark.parametrize("mirror,c_name", [(_Model, "direct_model"), (_Prediction, "direct_prediction")])
def test_the_ctypes_mirror_matches_the_c_struct(mirror, c_name, tmp_path):
    """Same members in the same order as direct.h, and the C compiler's sizeof/offsetof equal ctypes'."""
    names = [name for name, _ in mirror._fields_]
    assert names == c_struct_fields(c_name)
    lines = [f'    printf("%lu\\n", (unsigned long)offsetof({c_name}, {n}));' for n in names]
    source = "\n".join(
        [
            "#include <stddef.h>",
            "#include <stdio.h>",
            '#include "direct.h"',
            "int main(void) {",
            f'    printf("%lu\\n", (unsigned long)sizeof({c_name}));',
            *lines,
            "    return 0;",
            "}",
        ]
    )
    printed = [int(v) for v in compile_and_run(source, tmp_path).split()]
    assert printed == [ctypes.sizeof(mirror)] + [getattr(mirror, n).offset for n in names]
