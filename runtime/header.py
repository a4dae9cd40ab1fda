"""The packed blob's 128-byte header as one table (docs/model-format.md §2, cited as MF §n).

:data:`FIELDS` lists every header field once: name, type, byte offset, the rules a reader checks and
the MF §9 error code a failing rule raises.  Everything else derives from it:

* :func:`unpack` and :func:`pack`, the Python reader's (``runtime/blob.py``) and the writer's
  (``export/packed.py``) only view of the header;
* :func:`violation`, the reader's field checks, in table order within each error code;
* :func:`c_block`, the offsets and typed accessors in ``runtime/c/direct_internal.h`` between the
  ``BEGIN GENERATED``/``END GENERATED`` lines.  ``python -m direct_edge.runtime.header`` rewrites that
  block; tests/runtime/test_header.py fails when the checked-in block differs from the table.

Adding a header field is one :class:`Field` here (taking bytes from a reserved field), then
regenerating the C block and using its accessor in ``runtime/c/direct.c``.  Only the standard library
and numpy (through :mod:`bounds`) are used.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from direct_edge.formats import BLOB_MAGIC
from direct_edge.runtime import bounds

MAGIC = BLOB_MAGIC
FORMAT_MAJOR = 1
FORMAT_MINOR = 5  # 1.1 added the input-schema section (MF §10), 1.2 the feature gains (MF §5.1), 1.3
# classifier blobs (MF §11), 1.4 the ensemble's variance floor (MF §7), 1.5 the feature rotation (MF §5.3)
HEADER_SIZE = 128
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
FLAG_GAINS = 2  # MF §5.1: the feature section ends with b u16 gains
FLAG_FLOOR = 4  # MF §5.2: the feature section ends with b u16 variance floors for the ensemble (IS §5)
FLAG_ROTATION = 8  # MF §5.3: i16 R (b × b) and u8 s (b) follow the rff parameters (IS §3.5)
FLAGS_KNOWN = FLAG_EXACT | FLAG_GAINS | FLAG_FLOOR | FLAG_ROTATION
N_SECTIONS = 7

# type -> (struct code, bytes, C type an accessor returns, C expression reading it at address p)
TYPES: dict[str, tuple[str, int, str, str]] = {
    "char[4]": ("4s", 4, "uint32_t", "direct_rd32({p})"),
    "u8": ("B", 1, "uint32_t", "(uint32_t)DIRECT_U8({p})"),
    "u16": ("H", 2, "uint32_t", "direct_rd16({p})"),
    "u32": ("I", 4, "uint32_t", "direct_rd32({p})"),
    "i32": ("i", 4, "int32_t", "direct_i32_from_u32(direct_rd32({p}))"),
    "u64": ("Q", 8, "uint64_t", "direct_rd64({p})"),
    "f64": ("d", 8, "uint64_t", "direct_rd64({p})"),  # C reads the IEEE 754 bits, never a double
}

Rule = tuple[Callable[[Mapping[str, Any]], bool], str]


@dataclass(frozen=True)
class Field:
    """One MF §2 header field.

    ``type``: a key of :data:`TYPES`; ``count``: consecutive values of that type (the section table is
    14 u32: offset and size of sections 0 … 6); ``error``: the MF §9 code name its rules raise;
    ``rules``: (predicate, message) pairs checked in order.  A predicate takes the mapping of every
    header value by field name plus ``length`` (the byte count the reader was given); a message is a
    ``str.format`` template over the same mapping.  ``default``: the value the writer uses when none is
    given (reserved fields, magic and version); None means the writer must be given one.
    """

    name: str
    type: str
    offset: int
    error: str = "HEADER"
    rules: tuple[Rule, ...] = ()
    count: int = 1
    default: Any = None
    doc: str = ""

    @property
    def size(self) -> int:
        return TYPES[self.type][1] * self.count

    @property
    def struct_code(self) -> str:
        code = TYPES[self.type][0]
        return code if self.count == 1 else f"{self.count}{code}"


def _rule(predicate: Callable[[Mapping[str, Any]], bool], message: str) -> tuple[Rule, ...]:
    return ((predicate, message),)


def _linear(h: Mapping[str, Any]) -> bool:
    return h["kind"] == KIND_LINEAR


def _feature_count_fits(h: Mapping[str, Any]) -> bool:
    b = h["n_features"]
    return b == h["n_inputs"] + 1 if _linear(h) else b >= 2 and b % 2 == 0


def _reserved(name: str, type_: str, offset: int) -> Field:
    """A reserved field (MF §2): written 0, rejected (HEADER) otherwise."""
    rules = _rule(lambda h: h[name] == 0, "reserved fields must be zero")
    return Field(name, type_, offset, rules=rules, default=0, doc="reserved, 0")


_NOISE = "noise constant above 2^62"
_HOST_SCALE = "mean_scale must be finite and positive"

# MF §2, in offset order.  Rules of one error code are checked in this order (MF §9 fixes the order of
# the codes; within a code only the message depends on it).
FIELDS: tuple[Field, ...] = (
    Field(
        "magic",
        "char[4]",
        0,
        "MAGIC",
        _rule(lambda h: h["magic"] == MAGIC, "not a direct-edge model blob (bad magic)"),
        default=MAGIC,
        doc='44 49 52 51 ("DIRQ")',
    ),
    Field(
        "major",
        "u16",
        4,
        "VERSION",
        _rule(
            lambda h: h["major"] == FORMAT_MAJOR,
            "blob format {major}.{minor} is not supported (this reader reads 1.x)",
        ),
        default=FORMAT_MAJOR,
        doc="major version",
    ),
    Field("minor", "u16", 6, default=FORMAT_MINOR, doc="minor version (any)"),
    Field(
        "total_size",
        "u32",
        8,
        "SIZE",
        _rule(
            lambda h: h["total_size"] == h["length"],
            "header says {total_size} bytes but {length} were given (truncated?)",
        ),
        doc="total size in bytes, CRC included",
    ),
    Field(
        "kind",
        "u8",
        12,
        rules=_rule(lambda h: h["kind"] in KIND_NAMES, "unknown feature kind {kind}"),
        doc="feature kind, KIND_*",
    ),
    Field(
        "layout",
        "u8",
        13,
        rules=_rule(lambda h: h["layout"] in LAYOUT_NAMES, "unknown sample layout {layout}"),
        doc="sample layout, LAYOUT_* (§6)",
    ),
    Field(
        "bits",
        "u8",
        14,
        rules=_rule(lambda h: h["bits"] in (2, 3, 4), "bits must be 2, 3 or 4"),
        doc="level bits",
    ),
    Field(
        "flags",
        "u8",
        15,
        rules=(
            (lambda h: h["flags"] & ~FLAGS_KNOWN == 0, "unknown flags"),
            (
                lambda h: not h["flags"] & FLAG_ROTATION or h["kind"] == KIND_RFF,
                "a feature rotation needs rff features (MF §5.3)",
            ),
        ),
        doc="bit 0: exact section (§7); bit 1: feature gains (§5.1); bit 2: ensemble variance floor (§5.2); "
        "bit 3: feature rotation (§5.3, rff only)",
    ),
    Field("n_inputs", "u16", 16, rules=_rule(lambda h: h["n_inputs"] >= 1, "no inputs"), doc="d"),
    Field(
        "n_features",
        "u16",
        18,
        rules=_rule(_feature_count_fits, "feature count does not match the feature kind"),
        doc="b",
    ),
    Field("n_samples", "u16", 20, rules=_rule(lambda h: h["n_samples"] >= 1, "no samples"), doc="S"),
    Field(
        "feature_frac",
        "u8",
        22,
        rules=_rule(
            lambda h: h["feature_frac"] <= 14 if _linear(h) else h["feature_frac"] == 15,
            "bad feature fraction bits",
        ),
        doc="Fφ (IS §3)",
    ),
    Field(
        "pre_shift",
        "u8",
        23,
        rules=_rule(lambda h: bounds.pre_shift_fits(h["pre_shift"]), "pre-shift above 31"),
        doc="r (IS §4)",
    ),
    Field(
        "m1",
        "i32",
        24,
        rules=_rule(lambda h: bounds.mean_multiplier_fits(h["m1"]), "mean multiplier must be positive"),
        doc="M1 (IS §5)",
    ),
    Field(
        "s1",
        "u8",
        28,
        rules=_rule(lambda h: bounds.mean_shift_fits(h["s1"]), "mean shift out of range"),
        doc="s1 (IS §5)",
    ),
    Field(
        "s2",
        "u8",
        29,
        rules=_rule(lambda h: bounds.variance_shift_fits(h["s2"]), "variance shift out of range"),
        doc="s2 (IS §5)",
    ),
    Field(
        "classes",
        "u8",
        30,
        rules=(
            (
                lambda h: h["classes"] == 0 or 2 <= h["classes"] <= bounds.CLASSES_MAX,
                "class count must be 0 or 2 … 255",
            ),
            (
                lambda h: h["classes"] == 0 or bounds.classifier_rows_fit(h["classes"], h["n_samples"]),
                "a classifier needs S·R weight rows with S <= 4096 (MF §11)",
            ),
        ),
        default=0,
        doc="C, classes: 0 regression, else a classifier (§11, since 1.3)",
    ),
    Field(
        "logit_shift",
        "u8",
        31,
        rules=_rule(
            lambda h: (
                h["logit_shift"] == 0 if h["classes"] == 0 else bounds.logit_shift_fits(h["logit_shift"])
            ),
            "logit shift must be 0 (regression) or 1 … 62 (IS §10.1)",
        ),
        default=0,
        doc="sz (IS §10.1); 0 for regression",
    ),
    Field(
        "m2",
        "u32",
        32,
        rules=_rule(lambda h: bounds.variance_multiplier_fits(h["m2"]), "variance multiplier above 2^31"),
        doc="M2 (IS §5)",
    ),
    Field(
        "logit_mult",
        "u32",
        36,
        rules=_rule(
            lambda h: (
                h["logit_mult"] == 0 if h["classes"] == 0 else bounds.logit_multiplier_fits(h["logit_mult"])
            ),
            "logit multiplier must be 0 (regression) or 1 … 2^31 − 1 (IS §10.1)",
        ),
        default=0,
        doc="Mz (IS §10.1); 0 for regression",
    ),
    Field("noise_q", "u64", 40, rules=_rule(lambda h: bounds.noise_fits(h["noise_q"]), _NOISE), doc="IS §5"),
    Field(
        "noise_exact_q",
        "u64",
        48,
        rules=(
            (lambda h: bounds.noise_fits(h["noise_exact_q"]), _NOISE),
            (
                lambda h: bool(h["flags"] & FLAG_EXACT) or h["noise_exact_q"] == 0,
                "exact noise without an exact section",
            ),
        ),
        doc="IS §6; 0 without the exact section",
    ),
    Field(
        "mean_scale",
        "f64",
        56,
        rules=_rule(lambda h: math.isfinite(h["mean_scale"]) and h["mean_scale"] > 0, _HOST_SCALE),
        doc="IS §7, host only; finite, > 0",
    ),
    Field(
        "y_offset",
        "f64",
        64,
        rules=_rule(lambda h: math.isfinite(h["y_offset"]), "y_offset must be finite"),
        doc="IS §7, host only; finite",
    ),
    Field(
        "sections", "u32", 72, "SECTION", count=2 * N_SECTIONS, doc="(offset, size) of sections 0 … 6 (§3)"
    ),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
STRUCT = struct.Struct("<" + "".join(f.struct_code for f in FIELDS))


def _check_tiling() -> None:
    """The fields cover [0, 128) in order, without gaps or overlaps (so STRUCT has no padding)."""
    end = 0
    for f in FIELDS:
        if f.offset != end:
            raise AssertionError(f"header field {f.name} at {f.offset}, expected {end}")
        end += f.size
    if end != HEADER_SIZE or STRUCT.size != HEADER_SIZE:
        raise AssertionError(f"header fields cover {end} bytes, not {HEADER_SIZE}")


_check_tiling()


def unpack(data: bytes) -> dict[str, Any]:
    """The header values of ``data`` (≥ 128 bytes) by field name; ``sections`` is a tuple of 14 ints."""
    values = STRUCT.unpack_from(data, 0)
    out, i = {}, 0
    for f in FIELDS:
        out[f.name] = values[i] if f.count == 1 else tuple(values[i : i + f.count])
        i += f.count
    return out


def pack(values: Mapping[str, Any]) -> bytes:
    """The 128 header bytes for ``values`` by field name (reserved fields, magic and version default).

    Raises KeyError naming a field that has neither a value nor a default, or an unknown name.
    """
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise KeyError(f"unknown header fields: {', '.join(sorted(unknown))}")
    flat = []
    for f in FIELDS:
        value = values.get(f.name, f.default)
        if value is None:
            raise KeyError(f"header field {f.name} needs a value")
        flat.extend(value if f.count > 1 else [value])
    return STRUCT.pack(*flat)


def violation(h: Mapping[str, Any], error: str) -> str | None:
    """The message of the first failing rule among the fields whose code is ``error`` (in table order),
    formatted with ``h``; None when they all hold.  ``h``: header values plus ``length``."""
    for f in FIELDS:
        if f.error != error:
            continue
        for predicate, message in f.rules:
            if not predicate(h):
                return message.format(**h)
    return None


# ---- the C side -------------------------------------------------------------------------------------

C_FILE = Path(__file__).resolve().parent / "c" / "direct_internal.h"
C_BEGIN = "/* ---- BEGIN GENERATED from runtime/header.py (python -m direct_edge.runtime.header) ---- */"
C_END = "/* ---- END GENERATED ---- */"


def c_block() -> str:
    """The C offsets and accessors of every field, as checked in between C_BEGIN and C_END."""
    magic = int.from_bytes(MAGIC, "little")
    lines = [
        C_BEGIN,
        "/* MF §2: byte offset of each header field, and a reader returning it (little-endian, any",
        " * alignment; f64 fields as their IEEE 754 bits, since the library has no floating point). */",
        f'#define DIRECT_MAGIC UINT32_C(0x{magic:08X}) /* "{MAGIC.decode()}" read as a little-endian u32 */',
    ]
    for f in FIELDS:
        what = f"{f.type}{_c_count(f)}" + (f": {f.doc}" if f.doc else "")
        lines.append(f"#define DIRECT_H_{f.name.upper()} {f.offset}u /* {what} */")
    for f in FIELDS:
        _, size, ctype, read = TYPES[f.type]
        name = f"direct_h_{f.name}" + ("_bits" if f.type == "f64" else "")
        if f.count == 1:
            lines += [
                f"static inline {ctype} {name}(const uint8_t *h) {{",
                f"    return {read.format(p=f'h + DIRECT_H_{f.name.upper()}')};",
                "}",
            ]
        else:
            lines += [
                f"static inline {ctype} {name}(const uint8_t *h, uint32_t i) {{",
                f"    return {read.format(p=f'h + DIRECT_H_{f.name.upper()} + {size}u * i')};",
                "}",
            ]
    lines.append(C_END)
    return "\n".join(lines) + "\n"


def _c_count(f: Field) -> str:
    return f"[{f.count}]" if f.count > 1 else ""


def c_block_in(text: str) -> str:
    """The generated block of a C file's ``text`` (C_BEGIN through C_END and its newline)."""
    match = re.search(re.escape(C_BEGIN) + r".*?" + re.escape(C_END) + r"\n", text, re.DOTALL)
    if match is None:
        raise ValueError("no generated header block in the C file")
    return match.group(0)


def write_c(path: Path = C_FILE) -> bool:
    """Replace the generated block of ``path`` with :func:`c_block`; returns whether the file changed."""
    text = path.read_text()
    new = text.replace(c_block_in(text), c_block())
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m direct_edge.runtime.header
    print(f"{C_FILE}: {'rewritten' if write_c() else 'already up to date'}", file=sys.stderr)
