"""The C runtime (runtime/c): warning-free builds, no floating point, and bit-exact agreement with the
numpy reference (docs/integer-spec.md) through the ctypes binding."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import ERROR_NAMES, BlobError, parse
from direct_edge.runtime.native import NativeModel, crc32, load_library

from .conftest import C_DIR, make, portable_library_without, recrc, require_tool, sparse_edge_levels

SOURCES = ["direct.c", "direct_predict.c", "direct_classify.c"]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion"]
STRICT += ["-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wcast-align", "-O2"]
N_ROWS = 10_000
# Undefined symbols that betray floating point (Arm EABI soft-float helpers, libgcc's __*sf*/__*df*)
# or libm on a -mfloat-abi=soft Cortex-M0 object.
LIBM = "sin|cos|tan|asin|acos|atan|atan2|exp|exp2|log|log2|log10|pow|sqrt|floor|ceil|round|lround|trunc"
LIBM += "|fabs|fmod|frexp|ldexp|modf|hypot"
FLOAT_SYMBOL = re.compile(
    rf"^(__aeabi_[fd][a-z0-9]*|__aeabi_[il]2[fd]|__[a-z0-9]*[sd]f[0-9a-z]*|({LIBM})f?)$"
)


# --- builds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_library_builds_warning_free_with_strict_flags(compiler, tmp_path):
    cc = require_tool(compiler)
    for src in SOURCES:
        done = subprocess.run(
            [cc, *STRICT, "-c", str(C_DIR / src), "-o", str(tmp_path / f"{src}.o")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr


def host_has_avx2() -> bool:
    """Whether this machine runs AVX2 code (Linux: /proc/cpuinfo; elsewhere assumed not)."""
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# The SIMD kernel (DIRECT_KERNEL_SIMD) as each compiler builds it: the intrinsics sit behind __AVX2__ and
# __aarch64__ && __ARM_NEON, so the builds above (no -mavx2) leave them out and these put them in.
SIMD_BUILDS = {
    "gcc-avx2": (["gcc"], ["-mavx2"]),
    "clang-avx2": (["clang"], ["-mavx2"]),
    "gcc-neon": (["aarch64-linux-gnu-gcc"], []),
    "clang-neon": (["clang", "--target=aarch64-linux-gnu"], []),
}


@pytest.mark.parametrize("build", sorted(SIMD_BUILDS))
def test_simd_kernel_builds_warning_free_with_strict_flags(build, tmp_path):
    cc, extra = SIMD_BUILDS[build]
    cmd = [require_tool(cc[0]), *cc[1:], *STRICT, "-DDIRECT_VECTORIZE", *extra]
    cmd += ["-DDIRECT_KERNEL=5", "-c", str(C_DIR / "direct_predict.c"), "-o", str(tmp_path / "p.o")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if build == "clang-neon" and "arm_neon.h" in done.stderr:
        pytest.skip("clang has no aarch64 headers here")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_simd_kernel_refuses_a_target_without_avx2_or_neon(tmp_path):
    """Forcing DIRECT_KERNEL_SIMD where neither instruction set is enabled is a build error, not a silent
    scalar build."""
    gcc = require_tool("gcc")
    cmd = [gcc, "-std=c99", "-mno-avx2", "-DDIRECT_KERNEL=5", "-c", str(C_DIR / "direct_predict.c")]
    done = subprocess.run([*cmd, "-o", str(tmp_path / "p.o")], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "DIRECT_KERNEL_SIMD needs AVX2" in done.stderr


def test_make_builds_static_and_shared_libraries(tmp_path):
    require_tool("make")
    require_tool("cc")
    make("lib", tmp_path)
    assert (tmp_path / "libdirect.a").stat().st_size > 0
    assert (tmp_path / "libdirect.so").stat().st_size > 0


def test_no_floating_point_registers_on_x86(tmp_path):
    """gcc's -mgeneral-regs-only turns any float or SIMD register use into a compile error."""
    gcc = require_tool("gcc")
    probe = subprocess.run([gcc, "-dumpmachine"], capture_output=True, text=True, check=True).stdout
    if not probe.startswith("x86_64"):
        pytest.skip("-mgeneral-regs-only check is for x86-64 gcc")
    for src in SOURCES:
        done = subprocess.run(
            [
                gcc,
                "-std=c99",
                "-O2",
                "-Werror",
                "-mgeneral-regs-only",
                "-c",
                str(C_DIR / src),
                "-o",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def _m0_undefined_symbols(source: Path, out: Path) -> set[str]:
    cc, nm = require_tool("arm-none-eabi-gcc"), require_tool("arm-none-eabi-nm")
    flags = ["-std=c99", "-Os", "-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft", "-c"]
    subprocess.run([cc, *flags, str(source), "-o", str(out)], check=True, capture_output=True)
    listing = subprocess.run([nm, "-u", str(out)], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in listing.splitlines() if line.strip()}


def test_cortex_m0_objects_need_no_float_helpers_libm_or_division(tmp_path):
    for src in SOURCES:
        symbols = _m0_undefined_symbols(C_DIR / src, tmp_path / f"{src}.o")
        assert not {s for s in symbols if FLOAT_SYMBOL.match(s)}, symbols
        if src in ("direct_predict.c", "direct_classify.c"):  # IS §5, §10: no division when predicting
            assert not {s for s in symbols if "div" in s}, symbols


def test_float_symbol_check_catches_float_code(tmp_path):
    """The check above can fail: a file using float, double and libm is flagged."""
    probe = tmp_path / "probe.c"
    probe.write_text(
        "#include <math.h>\n"
        "double g(double x, int i) { return sqrt(x) * x + (double)i; }\n"
        "float h(float a, long long b) { return a / (float)b + floorf(a); }\n"
    )
    flagged = {s for s in _m0_undefined_symbols(probe, tmp_path / "probe.o") if FLOAT_SYMBOL.match(s)}
    assert {"sqrt", "floorf", "__aeabi_dmul", "__aeabi_fdiv"} <= flagged


def test_make_check_float_passes(tmp_path):
    for tool in ("make", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-nm"):
        require_tool(tool)
    assert "ok" in make("check-float", tmp_path).stdout


# --- bit-exact against the numpy reference ---------------------------------------------------------


def random_inputs(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) int16 inputs: all minimum, all maximum, both alternations, then uniform over int16."""
    q = rng.integers(-32768, 32768, (n, d)).astype(np.int16)
    q[0], q[1] = -32768, 32767
    q[2, 0::2], q[2, 1::2] = 32767, -32768
    q[3, 0::2], q[3, 1::2] = -32768, 32767
    q[4] = 0
    return q


def assert_same(native: tuple, ref: tuple) -> None:
    for name, got, want in zip(("mean", "var_f", "var_y"), native, ref, strict=True):
        assert got.dtype == want.dtype, name
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"{name}: {bad.size} rows differ, first row {bad[:1]}: {got[bad[:1]]} != {want[bad[:1]]}"
        )


# (kind, d, b, S, bits, zeros, layout): S from 1 to 64 with non-powers of two, 0 to 100 % zeros, every
# grid, every layout (MF §6.1-§6.4), odd b (linear with even d), b = 2, and b > 255 (grouped gap
# escapes, gap4 skips).
CASES = [
    ("linear", 1, 2, 1, 4, 0.0, "dense4"),
    ("linear", 8, 9, 3, 4, 0.0, "dense4"),
    ("linear", 13, 14, 64, 2, 0.3, "dense4"),
    ("linear", 6, 7, 10, 3, 0.5, "bitmap4"),
    ("linear", 20, 21, 33, 4, 0.9, "bitmap4"),
    ("linear", 4, 5, 2, 2, 0.99, "grouped"),
    ("linear", 300, 301, 7, 4, 0.95, "grouped"),
    ("linear", 11, 12, 64, 3, 0.7, "auto"),
    ("rff", 1, 2, 1, 4, 0.0, "grouped"),
    ("rff", 9, 64, 8, 4, 0.0, "dense4"),
    ("rff", 3, 30, 17, 2, 0.2, "dense4"),
    ("rff", 5, 128, 32, 4, 0.5, "bitmap4"),
    ("rff", 2, 46, 5, 3, 0.85, "bitmap4"),
    ("rff", 7, 512, 12, 4, 0.9, "grouped"),
    ("rff", 4, 600, 3, 3, 0.99, "grouped"),
    ("rff", 6, 96, 64, 2, 0.6, "auto"),
    ("rff", 3, 40, 1, 4, 1.0, "bitmap4"),
    ("linear", 3, 4, 6, 4, 0.0, "gap4"),
    ("linear", 40, 41, 19, 3, 0.8, "gap4"),
    ("rff", 5, 1000, 9, 4, 0.97, "gap4"),
    ("rff", 2, 50, 64, 2, 0.5, "gap4"),
    ("rff", 3, 20, 2, 4, 1.0, "gap4"),
]


# Feature gains (IS §3.4, MF §5.1): every layout, both feature kinds, odd b, gains spanning [1, 32768].
GAIN_CASES = [
    ("linear", 8, 9, 3, 4, 0.0, "dense4"),
    ("linear", 20, 21, 33, 4, 0.9, "bitmap4"),
    ("rff", 9, 64, 8, 4, 0.0, "dense4"),
    ("rff", 5, 128, 32, 4, 0.5, "bitmap4"),
    ("rff", 7, 512, 12, 4, 0.9, "grouped"),
    ("rff", 5, 1000, 9, 4, 0.97, "gap4"),
]


# The ensemble's variance floor (IS §5, MF §7): every layout, both kinds, odd b, with and without gains,
# floors spanning [0, 65535] (the floor is summed from φ before the kernels reorder it).
FLOOR_CASES = [
    ("linear", 8, 9, 3, 4, 0.0, "dense4", False),
    ("linear", 20, 21, 33, 4, 0.9, "bitmap4", True),
    ("rff", 9, 64, 8, 4, 0.0, "dense4", True),
    ("rff", 9, 2000, 9, 4, 0.0, "dense4", False),
    ("rff", 5, 128, 32, 4, 0.5, "bitmap4", False),
    ("rff", 7, 512, 12, 4, 0.9, "grouped", True),
    ("rff", 5, 1000, 9, 4, 0.97, "gap4", False),
    ("rff", 3, 40, 1, 4, 1.0, "bitmap4", True),
]


@pytest.mark.parametrize(
    "kind,d,b,S,bits,zeros,layout,gains,floor",
    [(*case, False, False) for case in CASES]
    + [(*case, True, False) for case in GAIN_CASES]
    + [(*case, True) for case in FLOOR_CASES],
)
def test_c_is_bit_exact_with_the_reference(native_library, kind, d, b, S, bits, zeros, layout, gains, floor):
    check_bit_exact(native_library, kind, d, b, S, bits, zeros, layout, gains, floor)


def check_bit_exact(library, kind, d, b, S, bits, zeros, layout, gains, floor=False) -> None:
    """predict, predict_exact and the features of ``library`` equal the reference on N_ROWS rows."""
    extras = (("gains",) if gains else ()) + (("floor",) if floor else ())
    seed = zlib.crc32(repr((kind, d, b, S, bits, layout, *extras)).encode())
    data = synthetic_blob(
        kind, d, b, S, bits=bits, zeros=zeros, seed=seed, layout=layout, exact=True, gains=gains, floor=floor
    )
    blob, model = parse(data), NativeModel(data, library=library)
    assert (model.n_inputs, model.n_features, model.n_samples) == (d, b, S)
    assert model.weight_bound == blob.weight_bound and model.has_exact
    assert (blob.gains is not None) == gains and blob.has_floor == floor
    q = random_inputs(np.random.default_rng(seed), N_ROWS, d)
    assert_same(model.predict(q), reference.predict(blob, q))
    assert_same(model.predict_exact(q), reference.predict_exact(blob, q))
    np.testing.assert_array_equal(model.features(q[:200]), reference.features(blob, q[:200]))


# Shapes where the SIMD kernel changes path: F a multiple of 8 or not (AVX2 does 8 features per pass, NEON
# 4), d > 64 (AVX2 gathers W), rows of whole 32-byte groups, groups plus a tail, fewer than 4 samples, and
# one block of 8 features (its partial input chunk read masked: the row is W's last).
SIMD_CASES = [
    ("rff", 9, 2000, 9, 4, 0.0, "dense4"),
    ("rff", 9, 512, 32, 4, 0.5, "dense4"),
    ("rff", 70, 200, 5, 4, 0.0, "dense4"),
    ("rff", 64, 136, 4, 4, 0.0, "dense4"),
    ("rff", 13, 46, 3, 4, 0.0, "dense4"),
    ("rff", 1, 128, 1, 4, 0.0, "dense4"),
    ("rff", 17, 90, 7, 3, 0.2, "dense4"),
    ("rff", 9, 16, 5, 4, 0.0, "dense4"),
]


@pytest.fixture(scope="module")
def avx2_library(tmp_path_factory) -> str:
    """The library with the AVX2 kernel forced (-mavx2, DIRECT_KERNEL_SIMD), whatever -march=native says."""
    from direct_edge.runtime.native import NativeUnavailable, build_library

    if not host_has_avx2():
        pytest.skip("this machine has no AVX2")
    flags = ("-std=c99", "-O3", "-mavx2", "-DDIRECT_VECTORIZE", "-DDIRECT_KERNEL=5", "-fPIC", "-shared")
    try:
        path = build_library(tmp_path_factory.mktemp("avx2") / "libdirect.so", flags)
    except NativeUnavailable as exc:
        pytest.skip(f"C runtime unavailable: {str(exc).splitlines()[0]}")
    if shutil.which("objdump") is not None:  # the build really holds the AVX2 dense4 kernel
        listing = subprocess.run(["objdump", "-d", str(path)], capture_output=True, text=True, check=True)
        assert "vpmaddwd" in listing.stdout and "vphaddd" in listing.stdout
    return str(path)


@pytest.mark.parametrize(
    "kind,d,b,S,bits,zeros,layout,gains,floor",
    [(*case, False, False) for case in CASES + SIMD_CASES]
    + [(*case, True, False) for case in GAIN_CASES + SIMD_CASES[:2]]
    + [(*case, True) for case in FLOOR_CASES],
)
def test_avx2_kernel_is_bit_exact_with_the_reference(
    avx2_library, kind, d, b, S, bits, zeros, layout, gains, floor
):
    check_bit_exact(avx2_library, kind, d, b, S, bits, zeros, layout, gains, floor)


def test_c_rejects_corrupt_gains_with_the_readers_code(native_library):
    data = synthetic_blob("rff", 3, 18, 4, seed=7, layout="gap4", gains=True)
    blob = parse(data)
    off, size = blob.sections[1]
    start = off + size - 2 * blob.n_features
    for index, value in ((0, 0), (17, 0), (5, 32769), (6, 65535)):
        bad = bytearray(data)
        bad[start + 2 * index : start + 2 * index + 2] = value.to_bytes(2, "little")
        with pytest.raises(BlobError) as want:
            parse(recrc(bad))
        with pytest.raises(BlobError) as info:
            NativeModel(recrc(bad), library=native_library)
        assert (info.value.code, info.value.name) == (want.value.code, want.value.name) == (9, "CONTENT")
    flags = data[15] & ~2  # gains without the flag: the feature section is 2·b bytes too long
    bad = bytearray(data)
    bad[15] = flags
    with pytest.raises(BlobError) as info:
        NativeModel(recrc(bad), library=native_library)
    assert info.value.name == "SECTION"


def test_c_is_bit_exact_on_a_trained_model(native_library):
    from sklearn.datasets import load_diabetes

    from direct_edge.export.packed import pack
    from direct_edge.trainer import DirectRegressor

    X, y = load_diabetes(return_X_y=True)
    fitted = DirectRegressor(features="rff", n_features=64, lengthscale=2.0, max_iter=50).fit(X, y)
    for layout in ("dense4", "bitmap4", "grouped", "gap4"):
        data = pack(fitted, n_samples=12, layout=layout, exact=True)
        blob, model = parse(data), NativeModel(data, library=native_library)
        q = np.concatenate(
            [reference.quantize_inputs(blob, X), random_inputs(np.random.default_rng(1), 9558, 10)]
        )
        assert_same(model.predict(q), reference.predict(blob, q))
        assert_same(model.predict_exact(q), reference.predict_exact(blob, q))


# --- API behaviour ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_blob() -> bytes:
    return synthetic_blob("rff", 3, 16, 4, bits=4, zeros=0.5, seed=7, layout="bitmap4", exact=False)


def test_errors_raise_blob_error_with_the_readers_code(native_library, small_blob):
    bad = bytearray(small_blob)
    bad[100] ^= 1
    for data in (bytes(bad), small_blob[:-1], b"DIRQ" + bytes(200), recrc(bad)):
        try:
            parse(data)
            want = None
        except BlobError as exc:
            want = (exc.code, exc.name)
        with pytest.raises(BlobError) as info:
            NativeModel(data, library=native_library)
        assert (info.value.code, info.value.name) == want
    with pytest.raises(BlobError, match="NO_EXACT"):
        NativeModel(small_blob, library=native_library).predict_exact(np.zeros((1, 3), np.int16))


def test_status_names_match_the_python_reader(native_library):
    lib = load_library(native_library)
    for code, name in ERROR_NAMES.items():
        assert lib.direct_status_name(code).decode() == name
    assert lib.direct_status_name(0) == b"OK" and lib.direct_status_name(99) == b"?"


def test_crc_matches_zlib(native_library):
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32(data, library=native_library) == zlib.crc32(data)


def test_misaligned_blob_null_pointers_and_small_scratch_are_refused(native_library, small_blob):
    lib = load_library(native_library)
    from direct_edge.runtime.native import _Model, _Prediction

    n = len(small_blob)
    raw = (ctypes.c_uint64 * (n // 8 + 2))()
    base = ctypes.addressof(raw)
    model = _Model()
    ctypes.memmove(base + 2, small_blob, n)
    assert lib.direct_model_open(ctypes.byref(model), base + 2, n) == 2  # ALIGN
    assert lib.direct_model_open(ctypes.byref(model), None, n) == 1  # ARG
    assert lib.direct_model_open(None, base, n) == 1
    assert lib.direct_model_open(ctypes.byref(model), base, 131) == 1
    ctypes.memmove(base, small_blob, n)
    assert lib.direct_model_open(ctypes.byref(model), base, n) == 0
    need = lib.direct_scratch_size(ctypes.byref(model))
    assert need == 2 * 16
    x = (ctypes.c_int16 * 3)()
    scratch = (ctypes.c_int32 * 16)()
    out = _Prediction()
    assert lib.direct_predict(ctypes.byref(model), x, scratch, need - 1, ctypes.byref(out)) == 11  # SCRATCH
    odd = ctypes.c_void_p(ctypes.addressof(scratch) + 1)
    assert lib.direct_predict(ctypes.byref(model), x, odd, need, ctypes.byref(out)) == 11
    assert lib.direct_predict(ctypes.byref(model), None, scratch, need, ctypes.byref(out)) == 1
    assert lib.direct_predict(ctypes.byref(model), x, scratch, need, None) == 1
    assert lib.direct_predict(ctypes.byref(model), x, scratch, need, ctypes.byref(out)) == 0
    assert lib.direct_predict_exact(ctypes.byref(model), x, scratch, need, ctypes.byref(out)) == 12


def test_odd_feature_count_needs_an_even_scratch(native_library):
    data = synthetic_blob("linear", 4, 5, 2, zeros=0.0, seed=1, layout="dense4")
    model = NativeModel(data, library=native_library)
    lib = load_library(native_library)
    assert lib.direct_scratch_size(ctypes.byref(model._model)) == 12


def test_inputs_of_the_wrong_shape_or_dtype_are_refused(native_library, small_blob):
    model = NativeModel(small_blob, library=native_library)
    for bad in (np.zeros((2, 4), np.int16), np.zeros((2, 3), np.int32), np.zeros(3, np.int16)):
        with pytest.raises(ValueError, match="int16"):
            model.predict(bad)
    mean, var_f, var_y = model.predict(np.zeros((0, 3), np.int16))
    assert mean.shape == var_f.shape == var_y.shape == (0,)


# --- alignment: every kernel under UBSan's alignment check -----------------------------------------

# A harness that places the blob at 4 mod 8 and the scratch at a chosen offset mod 4, then predicts every
# row of a binary int16 input file and writes (mean i32, var_f u64, var_y u64) per row.
ALIGN_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "direct.h"

int main(int argc, char **argv) {
    static uint64_t blob_store[1 << 16], scratch_store[1 << 13];
    static int16_t x[1 << 16];
    uint8_t *blob = (uint8_t *)blob_store + 4;                          /* 4 mod 8 */
    void *scratch = (uint8_t *)scratch_store + atoi(argv[3]);          /* 0 or 2 mod 4 */
    direct_model m;
    direct_prediction p;
    FILE *f = fopen(argv[1], "rb");
    size_t size = fread(blob, 1, sizeof blob_store - 8, f), rows, i;
    fclose(f);
    f = fopen(argv[2], "rb");
    rows = fread(x, 1, sizeof x, f) / 2;
    fclose(f);
    if (direct_model_open(&m, blob, (uint32_t)size) != DIRECT_OK) return 3;
    rows /= m.n_inputs;
    for (i = 0; i < rows; ++i) {
        uint32_t need = direct_scratch_size(&m);
        if (direct_predict(&m, x + i * m.n_inputs, scratch, need, &p) != DIRECT_OK) return 4;
        fwrite(&p.mean, 4, 1, stdout);
        fwrite(&p.var_f, 8, 1, stdout);
        fwrite(&p.var_y, 8, 1, stdout);
    }
    return 0;
}
"""
ALIGN_FLAGS = ["-std=c99", "-O1", "-g", "-fsanitize=alignment,undefined", "-fno-sanitize-recover=all"]
KERNELS = {"tables": 1, "vector": 2, "dsp": 3, "lean": 4, "simd": 5}
KERNEL_FLAGS = {"simd": ["-mavx2"]}  # DIRECT_KERNEL_SIMD on x86 (its NEON build runs under qemu below)
# (kind, d, b, S, zeros, layout): dense4 with full words, a partial word and odd b; the sparse layouts.
ALIGN_CASES = [
    ("rff", 8, 64, 5, 0.0, "dense4"),
    ("rff", 3, 36, 4, 0.0, "dense4"),
    ("linear", 12, 13, 3, 0.0, "dense4"),
    ("rff", 5, 128, 6, 0.5, "bitmap4"),
    ("rff", 4, 300, 3, 0.9, "grouped"),
    ("rff", 6, 512, 4, 0.95, "gap4"),
    ("rff", 70, 200, 5, 0.0, "dense4"),
    ("rff", 9, 512, 6, 0.0, "dense4"),
]


def _sanitizer_compiler(tmp_path: Path) -> str:
    for cc in ("gcc", "clang"):
        try:
            probe = tmp_path / f"probe_{cc}"
            src = tmp_path / "probe.c"
            src.write_text("int main(void) { return 0; }\n")
            done = subprocess.run(
                [cc, *ALIGN_FLAGS, str(src), "-o", str(probe)], capture_output=True, check=False
            )
        except FileNotFoundError:
            continue
        if done.returncode == 0:
            return cc
    pytest.skip("no compiler with -fsanitize=alignment")


@pytest.fixture(scope="module")
def aligned_harnesses(tmp_path_factory) -> dict[str, Path]:
    """The harness built once per kernel (DIRECT_KERNEL), with UBSan's alignment check."""
    work = tmp_path_factory.mktemp("align")
    cc = _sanitizer_compiler(work)
    (work / "harness.c").write_text(ALIGN_HARNESS)
    out = {}
    for name, value in KERNELS.items():
        if name == "simd" and not host_has_avx2():
            continue
        exe = work / f"harness_{name}"
        cmd = [cc, *ALIGN_FLAGS, *KERNEL_FLAGS.get(name, []), f"-DDIRECT_KERNEL={value}", f"-I{C_DIR}"]
        cmd += [str(work / "harness.c")]
        cmd += [str(C_DIR / s) for s in SOURCES] + ["-o", str(exe)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
        out[name] = exe
    return out


def run_aligned(harness, data: bytes, q: np.ndarray, scratch_offset: int, tmp_path, case) -> tuple:
    """(mean, var_f, var_y) of the UBSan alignment harness on blob ``data`` and int16 rows ``q``, the
    scratch at ``scratch_offset`` mod 4; ``case`` names the configuration in a failure."""
    (tmp_path / "m.bin").write_bytes(data)
    (tmp_path / "x.bin").write_bytes(q.astype("<i2").tobytes())
    done = subprocess.run(
        [str(harness), str(tmp_path / "m.bin"), str(tmp_path / "x.bin"), str(scratch_offset)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, (case, done.returncode, done.stderr.decode()[-2000:])
    got = np.frombuffer(done.stdout, dtype=[("mean", "<i4"), ("var_f", "<u8"), ("var_y", "<u8")])
    return got["mean"], got["var_f"], got["var_y"]


@pytest.mark.parametrize("scratch_offset", [2, 0])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_is_bit_exact_with_the_blob_at_4_mod_8_and_the_scratch_misaligned(
    aligned_harnesses, kernel, scratch_offset, tmp_path
):
    """No kernel loads a word the sanitizer calls misaligned (blob at 4 mod 8, scratch at 2 or 0 mod 4:
    the DSP kernel reads words through memcpy, the Armv6-M kernel takes its word path only when the rows
    and the features are 4-byte aligned), and each agrees with the reference on every layout."""
    if kernel not in aligned_harnesses:
        pytest.skip("this machine has no AVX2")
    for kind, d, b, S, zeros, layout in ALIGN_CASES:
        seed = zlib.crc32(repr((kind, d, b, S, layout)).encode())
        # IS §3.4 and §5's floor both read φ before each kernel's pairing of the features
        for gains, floor in ((False, False), (True, False), (True, True)):
            data = synthetic_blob(
                kind, d, b, S, zeros=zeros, seed=seed, layout=layout, exact=floor, gains=gains, floor=floor
            )
            q = random_inputs(np.random.default_rng(seed), 500, d)
            got = run_aligned(aligned_harnesses[kernel], data, q, scratch_offset, tmp_path, layout)
            assert_same(got, reference.predict(parse(data), q))


# The sparse kernels' edges (sparse_edge_levels, S = 11): bitmaps of whole 32-feature words (b = 64) and of
# 1, 2 or 3 tail bytes (b = 40, 48, 56; the M4's word loop), odd b (63), and gaps past 255 (b = 600).
EDGE_SHAPES = [
    ("rff", 5, 40),
    ("rff", 5, 48),
    ("rff", 5, 56),
    ("linear", 62, 63),
    ("rff", 5, 64),
    ("rff", 7, 600),
]


@pytest.mark.parametrize("layout", ["bitmap4", "gap4", "grouped"])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_kernel_is_bit_exact_at_the_sparse_layouts_edges(aligned_harnesses, kernel, layout, tmp_path):
    """Bitmap bytes with 0 or 8 bits set, an odd count of nonzeros (a pending high nibble) in a sample and in
    a bitmap word, gap4's largest gap and skips, grouped's zero escapes, S odd: each kernel (UBSan, blob at
    4 mod 8, scratch at 2 and 0 mod 4) agrees with the reference."""
    if kernel not in aligned_harnesses:
        pytest.skip("this machine has no AVX2")
    for kind, d, b in EDGE_SHAPES:
        levels = sparse_edge_levels(b, seed=b)
        data = synthetic_blob(kind, d, b, len(levels), seed=b, layout=layout, exact=False, levels=levels)
        blob = parse(data)
        assert blob.layout_name == layout
        q = random_inputs(np.random.default_rng(b), 200, d)
        want = reference.predict(blob, q)
        for scratch_offset in (2, 0):
            assert_same(run_aligned(aligned_harnesses[kernel], data, q, scratch_offset, tmp_path, b), want)


def test_the_alignment_sanitizer_catches_a_misaligned_word_load(tmp_path):
    """The check above can fail: a u32 read through a pointer at 2 mod 4 aborts the program."""
    cc = _sanitizer_compiler(tmp_path)
    src = tmp_path / "bad.c"
    src.write_text(
        "#include <stdint.h>\n#include <stdlib.h>\n"
        "int main(int argc, char **argv) { static uint32_t a[4] = {1, 2, 3, 4}; (void)argv;\n"
        "  const uint32_t *p = (const uint32_t *)(const void *)((const uint8_t *)a + 2 * argc);\n"
        "  return (int)(*p & 1u); }\n"
    )
    subprocess.run([cc, *ALIGN_FLAGS, str(src), "-o", str(tmp_path / "bad")], check=True, capture_output=True)
    done = subprocess.run([str(tmp_path / "bad")], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "misaligned" in done.stderr


# --- the NEON kernel on aarch64, under qemu-user -----------------------------------------------------


@pytest.fixture(scope="module")
def neon_harness(tmp_path_factory) -> Path:
    """ALIGN_HARNESS cross-compiled static for aarch64 with -DDIRECT_VECTORIZE: the build a Raspberry Pi 3/4
    or an Arm phone or server gets, which selects DIRECT_KERNEL_SIMD (NEON) by itself."""
    cc = require_tool("aarch64-linux-gnu-gcc")
    require_tool("qemu-aarch64")
    work = tmp_path_factory.mktemp("neon")
    (work / "harness.c").write_text(ALIGN_HARNESS)
    exe = work / "harness"
    cmd = [cc, "-std=c99", "-O2", "-static", "-DDIRECT_VECTORIZE", f"-I{C_DIR}", str(work / "harness.c")]
    done = subprocess.run(
        [*cmd, *(str(C_DIR / s) for s in SOURCES), "-o", str(exe)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    if shutil.which("aarch64-linux-gnu-objdump") is not None:  # LD4 and SMLAL2: the NEON dense4 kernel is in
        listing = subprocess.run(
            ["aarch64-linux-gnu-objdump", "-d", str(exe)], capture_output=True, text=True
        )
        assert "\tld4\t" in listing.stdout and "smlal2" in listing.stdout
    return exe


@pytest.mark.parametrize(
    "kind,d,b,S,bits,zeros,layout,gains",
    [(*case, False) for case in CASES + SIMD_CASES] + [(*case, True) for case in GAIN_CASES],
)
def test_neon_kernel_is_bit_exact_under_qemu(
    neon_harness, kind, d, b, S, bits, zeros, layout, gains, tmp_path
):
    """Blob at 4 mod 8, scratch at 2 mod 4, thousands of rows (the extremes first) on a Cortex-A72."""
    seed = zlib.crc32(repr((kind, d, b, S, bits, layout, gains, "neon")).encode())
    data = synthetic_blob(kind, d, b, S, bits=bits, zeros=zeros, seed=seed, layout=layout, gains=gains)
    q = random_inputs(np.random.default_rng(seed), min(3000, (1 << 16) // d), d)
    (tmp_path / "m.bin").write_bytes(data)
    (tmp_path / "x.bin").write_bytes(q.astype("<i2").tobytes())
    cmd = ["qemu-aarch64", "-cpu", "cortex-a72", str(neon_harness), str(tmp_path / "m.bin")]
    done = subprocess.run([*cmd, str(tmp_path / "x.bin"), "2"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    got = np.frombuffer(done.stdout, dtype=[("mean", "<i4"), ("var_f", "<u8"), ("var_y", "<u8")])
    assert_same((got["mean"], got["var_f"], got["var_y"]), reference.predict(parse(data), q))


def test_a_build_without_the_floor_refuses_floor_blobs_and_opens_the_rest(tmp_path):
    """-DDIRECT_FLOOR=0 (direct.h, MF §5.2): direct_model_open says HEADER to a blob with the ensemble's
    floor, as a 1.3 reader does, and predicts the others bit-exactly."""
    path = portable_library_without(tmp_path, "DIRECT_FLOOR")
    with pytest.raises(BlobError, match="HEADER"):
        NativeModel(synthetic_blob("rff", 3, 16, 4, seed=3, floor=True), library=path)
    plain = synthetic_blob("rff", 3, 16, 4, seed=3, layout="dense4")
    q = random_inputs(np.random.default_rng(0), 200, 3)
    assert_same(NativeModel(plain, library=path).predict(q), reference.predict(parse(plain), q))
