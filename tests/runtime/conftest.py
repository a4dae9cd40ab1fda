"""Shared fixtures for the C runtime tests: the ctypes library, tools on PATH, blob helpers."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

C_DIR = Path(__file__).resolve().parents[2] / "runtime" / "c"


def require_tool(name: str) -> str:
    """Path of an executable on PATH, or skip the test with a one-line reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def recrc(blob: bytes | bytearray) -> bytes:
    """The blob with its MF §8 CRC recomputed over everything before it."""
    out = bytearray(blob)
    if len(out) >= 4:
        out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def patched(blob: bytes, name: str, value, index: int = 0) -> bytes:
    """The blob with header field ``name`` (runtime/header.py; ``index`` into the section table) set to
    ``value`` and the CRC recomputed."""
    from direct_edge.runtime.header import BY_NAME, TYPES

    field = BY_NAME[name]
    code, size = TYPES[field.type][:2]
    out = bytearray(blob)
    struct.pack_into("<" + code, out, field.offset + index * size, value)
    return recrc(out)


def section_entry(sid: int) -> int:
    """Byte offset of section ``sid``'s (offset, size) pair in the header (MF §2)."""
    from direct_edge.runtime.header import BY_NAME

    return BY_NAME["sections"].offset + 8 * sid


def make(target: str, build: Path, **variables: str) -> subprocess.CompletedProcess:
    """Run ``make -C runtime/c TARGET BUILD=build`` and fail the test with its output on error."""
    args = ["make", "-C", str(C_DIR), target, f"BUILD={build}"] + [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session", params=["host", "portable"])
def native_library(request, tmp_path_factory) -> str:
    """Path of a freshly built shared C runtime, once with the host's vectorising flags and once as a
    microcontroller build compiles it (skips when no C compiler is available)."""
    from direct_edge.runtime.native import PORTABLE_CFLAGS, NativeUnavailable, build_library

    cflags = PORTABLE_CFLAGS if request.param == "portable" else None
    try:
        return str(build_library(tmp_path_factory.mktemp("native") / "libdirect.so", cflags))
    except NativeUnavailable as exc:
        pytest.skip(f"C runtime unavailable: {str(exc).splitlines()[0]}")


def portable_library_without(tmp_path: Path, switch: str) -> str:
    """A portable build of the C runtime with the feature ``switch`` (e.g. "DIRECT_ROTATION") set to 0,
    as a microcontroller build leaves it out (direct.h); skips when no C compiler is available."""
    from direct_edge.runtime.native import PORTABLE_CFLAGS, NativeUnavailable, build_library

    try:
        name = f"libdirect_no_{switch.lower()}.so"
        return str(build_library(tmp_path / name, (*PORTABLE_CFLAGS, f"-D{switch}=0")))
    except NativeUnavailable as exc:
        pytest.skip(f"C runtime unavailable: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="session")
def sanitized_harness(tmp_path_factory) -> Path:
    """runtime/c/test/direct_check.c built with ASan + UBSan (gcc or clang); skips without either."""
    require_tool("make")
    for cc in ("gcc", "clang"):
        if shutil.which(cc) is None:
            continue
        build = tmp_path_factory.mktemp(f"san-{cc}")
        done = subprocess.run(
            ["make", "-C", str(C_DIR), "sanitize", f"BUILD={build}", f"CC={cc}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return build / "direct_check"
    pytest.skip("no compiler with -fsanitize=address,undefined (install gcc or clang with libasan/libubsan)")


def sparse_edge_levels(b: int, seed: int = 0) -> np.ndarray:
    """An odd count of sample rows of b 4-bit levels at the sparse kernels' edges (MF §6.2-§6.4): every
    weight nonzero (bitmap bytes with 8 bits set, gap4 gaps of 1, its LEB128 count past 127 bytes for
    b ≥ 128), none, one at either end (an odd count: a pending high nibble; gap4 skips up to b − 1), one
    every 16th (gap4's largest gap, g = 15), gaps of 17, 256, 257, 272, 511 (gap4 skips of 256, grouped's
    zero escape bytes), bitmap bytes of 0, 8, one low and one high bit in turn, an odd count in every
    32-feature word (the M4's word loop carrying a nibble into the next word), and two random shares."""
    rng = np.random.default_rng(seed)
    masks = [np.ones(b, bool), np.zeros(b, bool)]
    for positions in ([b - 1], [0], list(range(15, b, 16)), [0, b - 1]):
        mask = np.zeros(b, bool)
        mask[positions] = True
        masks.append(mask)
    gaps = np.cumsum([1, 17, 256, 257, 272, 16, 1, 511, 255, 256]) - 1
    mask = np.zeros(b, bool)
    mask[gaps[gaps < b]] = True
    masks.append(mask)
    pattern = np.array([0x00, 0xFF, 0x01, 0x80], dtype=np.uint8)
    mask_bytes = pattern[np.arange((b + 7) // 8) % 4]
    masks.append(np.unpackbits(mask_bytes, bitorder="little")[:b].astype(bool))
    mask = np.zeros(b, bool)
    for k, start in enumerate(range(0, b, 32)):
        width = min(32, b - start)
        count = min(2 * (k % 4) + 1, width)
        mask[start + rng.choice(width, size=count, replace=False)] = True
    masks.append(mask)
    masks.append(rng.random(b) < 0.5)
    masks.append(rng.random(b) < 0.1)
    nonzero = np.array([v for v in range(-8, 8) if v != 0])
    levels = rng.choice(nonzero, size=(len(masks), b)).astype(np.int8)
    levels[:, :2] = [-8, 7]  # both extremes, where kept
    levels[~np.array(masks)] = 0
    assert len(masks) % 2 == 1
    return levels
