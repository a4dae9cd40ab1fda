"""Shared fixtures for the C runtime tests: the ctypes library, tools on PATH, blob helpers."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

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
