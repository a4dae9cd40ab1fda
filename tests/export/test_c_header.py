"""The generated C header (export/c_header.py): named constants, the quantise helpers and the output
helper, compiled with gcc and clang as C99 and as C++ (-Wall -Wextra -Werror -pedantic), run on the
host against runtime/reference.py at every rounding boundary of the whole int16 range:

- ``quantize_fixed``: bit-exact at each of the 65,535 thresholds per input and one below it (both
  sides of every step, which by monotonicity is every int32 input), at the int32 extremes and at random;
- ``quantize_f64`` and the default ``quantize_f32`` (double arithmetic): bit-exact at the real value of
  every step boundary and its float64 (float32) neighbours;
- the float32-only path: only inside the documented band ε around a boundary, by at most ⌈ε⌉ steps;
- ``output_fixed``: within 1 unit plus 2^-29 of the value of IS §7's float64 result, D = 0 .. 9.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export.c_header import (
    enum_names,
    fixed_inputs,
    reference_fixed,
    render,
    render_blob,
    thresholds,
)
from direct_edge.export.packed import input_quantization, synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import mixed_blob

FLAGS = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
COMPILERS = {"gcc": ["-std=c99"], "clang": ["-std=c99"], "g++": ["-std=c++11"], "clang++": ["-std=c++11"]}

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

/* Reads work from stdin, one item per line, and prints one result per line:
 *   x K V      model_quantize_fixed_input(K, V)
 *   d K X      model_quantize_f64_input(K, strtod(X))
 *   s K X      model_quantize_f32_single_input(K, strtof(X))
 *   f X0 .. X(d-1)   model_quantize_f32 (the default path) and model_quantize_fixed of 0s, q[0 .. d-1]
 *   o M V D    model_output_fixed(M, V, D): rc mean sd */
int main(void) {
    char mode[4], text[64];
    long k, v;
    unsigned long long var;
    unsigned long dec;
    while (scanf("%3s", mode) == 1) {
        if (mode[0] == 'x' && scanf("%ld %ld", &k, &v) == 2) {
            printf("%d\n", (int)model_quantize_fixed_input((uint32_t)k, (int32_t)v));
        } else if (mode[0] == 'd' && scanf("%ld %63s", &k, text) == 2) {
            printf("%d\n", (int)model_quantize_f64_input((uint32_t)k, strtod(text, NULL)));
        } else if (mode[0] == 's' && scanf("%ld %63s", &k, text) == 2) {
            printf("%d\n", (int)model_quantize_f32_single_input((uint32_t)k, strtof(text, NULL)));
        } else if (mode[0] == 'f') {
            float x[MODEL_N_INPUTS];
            int16_t q[MODEL_N_INPUTS];
            uint32_t i;
            for (i = 0; i < MODEL_N_INPUTS; ++i) {
                if (scanf("%63s", text) != 1) {
                    return 2;
                }
                x[i] = strtof(text, NULL);
            }
            model_quantize_f32(x, q);
            for (i = 0; i < MODEL_N_INPUTS; ++i) {
                printf("%d%c", (int)q[i], i + 1 < MODEL_N_INPUTS ? ' ' : '\n');
            }
        } else if (mode[0] == 'o' && scanf("%ld %llu %lu", &v, &var, &dec) == 3) {
            int32_t mean = 0, sd = 0;
            int rc = model_output_fixed((int32_t)v, (uint64_t)var, (uint32_t)dec, &mean, &sd);
            printf("%d %ld %ld\n", rc, (long)mean, (long)sd);
        } else {
            return 2;
        }
    }
    return 0;
}
"""


def _blob(kind: str, seed: int):
    d = 6 if kind == "rff" else 8
    return parse(synthetic_blob(kind, d, 64 if kind == "rff" else d + 1, 8, seed=seed, exact=False))


def _odd_blob():
    """A synthetic blob whose host section stands for awkward inputs: far from zero (zero point ~ -6.5e7,
    where float64 rounding moves steps), tiny, huge, negative, and a mid-sized one."""
    blob = _blob("rff", 5)
    lo = np.array([1000.0, -1e-6, 1e6, -5e4, 0.0, 3.0])
    hi = np.array([1001.0, 1e-6, 1e6 + 100.0, -4e4, 1e-3, 7.5])
    scale, zero = input_quantization(lo, hi)
    return dataclasses.replace(blob, input_scale=scale, input_zero=zero)


MODELS = {"rff": lambda: _blob("rff", 3), "linear": lambda: _blob("linear", 4), "odd": _odd_blob}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request, tmp_path_factory):
    blob = MODELS[request.param]()
    work = tmp_path_factory.mktemp(f"header-{request.param}")
    (work / "model.h").write_text(render_blob(blob, "model"), encoding="utf-8")
    (work / "harness.c").write_text(HARNESS, encoding="utf-8")
    return blob, work


def _compile(work: Path, compiler: str, *extra: str) -> Path:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    lang = ["-x", "c++"] if compiler.endswith("++") else []
    exe = work / f"harness-{compiler}{''.join(extra).replace('-', '_')}"
    done = subprocess.run(
        [compiler, *COMPILERS[compiler], *FLAGS, *extra, *lang, str(work / "harness.c"), "-o", str(exe)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return exe


def _run(exe: Path, lines: list[str]) -> list[str]:
    done = subprocess.run(
        [str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_header_compiles_alone_as_c99_and_cpp(tmp_path):
    (tmp_path / "model.h").write_text(render(synthetic_blob("rff", 3, 16, 2, seed=1), "model"))
    (tmp_path / "use.c").write_text('#include "model.h"\nint main(void) { return 0; }\n')
    ran = 0
    for compiler, std in COMPILERS.items():
        if shutil.which(compiler) is None:
            continue
        lang = ["-x", "c++"] if compiler.endswith("++") else []
        subprocess.run(
            [compiler, *std, *FLAGS, *lang, "-c", str(tmp_path / "use.c"), "-o", str(tmp_path / "use.o")],
            check=True,
        )
        ran += 1
    if not ran:
        pytest.skip("no C or C++ compiler installed")


def test_header_names_the_inputs_and_outputs():
    blob = _blob("rff", 3)
    text = render_blob(blob, "model")
    for piece in [
        "#define MODEL_N_INPUTS 6u",
        "MODEL_IN_X0 = 0",
        "MODEL_IN_X5 = 5",
        'static const char *const MODEL_INPUT_NAMES[6] = {\n    "x0", "x1"',
        "static const double MODEL_INPUT_SCALE[6]",
        "static const double MODEL_INPUT_ZERO[6]",
        "static const double MODEL_INPUT_TRAIN_LOW[6]",
        "static const int8_t MODEL_INPUT_FRAC_BITS[6]",
        f"#define MODEL_MEAN_SCALE {np.format_float_scientific(blob.mean_scale, unique=True)}",
        "static inline void model_quantize_f32(const float *x, int16_t *q)",
        "static inline void model_quantize_fixed(const int32_t *v, int16_t *q)",
        "static inline int model_output_fixed(",
    ]:
        assert piece in text, piece
    assert "my_model_quantize_fixed" in render_blob(blob, "my_model")


def test_enum_names_are_unique_c_identifiers():
    assert enum_names(["age", "body mass", "2x", "", "age", "s/n ratio", "née"]) == [
        "AGE",
        "BODY_MASS",
        "X_2X",
        "X3",
        "AGE_4",
        "S_N_RATIO",
        "N_E",
    ]


def test_fixed_quantiser_tables_equal_the_reference_at_every_threshold():
    """Python's view of the C formula (the same integers) against the reference thresholds."""
    blob = _odd_blob()
    fixed = fixed_inputs(blob.input_scale, blob.input_zero)
    K = np.array([f.frac_bits for f in fixed])
    T = thresholds(blob.input_scale, blob.input_zero, K)
    for k, f in enumerate(fixed):
        exc = dict(f.exceptions)
        for v in np.concatenate([T[:, k], T[:, k] - 1]).tolist()[::97]:
            V = np.zeros((1, len(fixed)), dtype=np.int64)
            V[0, k] = v
            want = int(reference_fixed(blob.input_scale, blob.input_zero, K, V)[0, k])
            if v < f.low:
                got = -32768
            elif v >= f.high:
                got = 32767
            else:
                got = exc.get(v, (((v - f.low) * f.mul + f.add) >> (32 + f.shift)) - 32767)
            assert got == want, (k, v)


@pytest.mark.slow
@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_fixed_helper_is_bit_exact_at_every_step_of_the_int16_range(model, compiler):
    blob, work = model
    exe = _compile(work, compiler)
    fixed = fixed_inputs(blob.input_scale, blob.input_zero)
    K = np.array([f.frac_bits for f in fixed])
    T = thresholds(blob.input_scale, blob.input_zero, K)
    rng = np.random.default_rng(0)
    d = blob.n_inputs
    V = [np.concatenate([T[:, k], T[:, k] - 1, [-(2**31), 2**31 - 1, 0]]) for k in range(d)]
    V = [np.concatenate([v, rng.integers(-(2**31), 2**31, 2000)]) for v in V]
    n = len(V[0])
    Vm = np.stack(V, axis=1).astype(np.int64)
    want = reference_fixed(blob.input_scale, blob.input_zero, K, Vm)
    assert set(np.unique(want[:65535, 0])) == set(range(-32767, 32768))  # every int16 output is reached
    lines = [f"x {k} {int(Vm[i, k])}" for k in range(d) for i in range(n)]
    got = np.array(_run(exe, lines), dtype=np.int64).reshape(d, n).T
    assert np.array_equal(got, want.astype(np.int64))


def _boundary_values(blob, dtype) -> np.ndarray:
    """(n, d) real inputs: the real value of every step boundary of the int16 range, x = scale·(j − ½ −
    zero), with its two nearest neighbours each side in ``dtype``, the range's ends and values beyond."""
    j = np.arange(-32768, 32769, dtype=np.float64)[:, None]
    x = (blob.input_scale * (j - 0.5 - blob.input_zero)).astype(dtype)
    pieces = [x]
    for direction in (np.inf, -np.inf):
        y = x
        for _ in range(2):
            y = np.nextafter(y, np.array(direction, dtype=dtype))
            pieces.append(y)
    return np.concatenate(pieces)


@pytest.mark.slow
@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_float_helpers_are_bit_exact_where_double_is_binary64(model, compiler):
    blob, work = model
    exe = _compile(work, compiler)
    d = blob.n_inputs
    X = _boundary_values(blob, np.float64)[::3]
    want = reference.quantize_inputs(blob, X)
    lines = [f"d {k} {float(X[i, k]).hex()}" for k in range(d) for i in range(len(X))]
    got = np.array(_run(exe, lines), dtype=np.int64).reshape(d, len(X)).T
    assert np.array_equal(got, want.astype(np.int64))
    X32 = _boundary_values(blob, np.float32)[1::3]
    want = reference.quantize_inputs(blob, X32.astype(np.float64))
    lines = ["f " + " ".join(float(v).hex() for v in row) for row in X32]
    got = np.array([line.split() for line in _run(exe, lines)], dtype=np.int64)
    assert np.array_equal(got, want.astype(np.int64))


@pytest.mark.slow
def test_float32_only_path_is_within_one_step_inside_the_documented_band(model):
    blob, work = model
    exe = _compile(work, "gcc", "-DMODEL_QUANTIZE_SINGLE")
    d = blob.n_inputs
    X = _boundary_values(blob, np.float32)
    lines = [f"s {k} {float(X[i, k]).hex()}" for k in range(d) for i in range(len(X))]
    got = np.array(_run(exe, lines), dtype=np.int64).reshape(d, len(X)).T
    x64 = X.astype(np.float64)
    want = reference.quantize_inputs(blob, x64).astype(np.int64)
    diff = got - want
    u = x64 / blob.input_scale + blob.input_zero + 0.5
    band = 2.0**-21 * (np.abs(x64 / blob.input_scale) + np.abs(blob.input_zero) + 32768)
    assert np.all(np.abs(diff) <= np.ceil(band))
    assert np.all(np.abs(u - np.round(u))[diff != 0] <= band[diff != 0])
    small = band < 0.5  # ranges near zero (here every input but the ones far from it): one step at most
    assert np.all(np.abs(diff[small]) <= 1)


@pytest.mark.parametrize("compiler", ["gcc", "clang++"])
def test_output_helper_is_within_one_unit_of_the_float_result(model, compiler):
    blob, work = model
    exe = _compile(work, compiler)
    rng = np.random.default_rng(1)
    n = 3000
    mean_q = np.concatenate([[0, 1, -1, 2**31 - 1, -(2**31)], rng.integers(-(2**31), 2**31, n)])
    mean_q[5 : 5 + n // 2] //= 2 ** rng.integers(0, 31, n // 2)
    var_q = np.concatenate(
        [
            np.array([0, 1, 2**62, 2**63 - 1, 3], dtype=np.uint64),
            rng.integers(0, 2**63 - 1, n, dtype=np.uint64),
        ]
    )
    var_q[5 : 5 + n // 2] >>= rng.integers(0, 63, n // 2).astype(np.uint64)
    D = rng.integers(0, 10, len(mean_q))
    lines = [f"o {m} {v} {k}" for m, v, k in zip(mean_q.tolist(), var_q.tolist(), D.tolist(), strict=True)]
    out = np.array([line.split() for line in _run(exe, lines)], dtype=np.int64)
    rc, mean, sd = out.T
    scale10 = 10.0 ** D.astype(np.float64)
    want_mean = (blob.y_offset + blob.mean_scale * mean_q.astype(np.float64)) * scale10
    want_sd = blob.mean_scale * np.sqrt(var_q.astype(np.float64)) * scale10
    reachable = blob.mean_scale * scale10 < 2.0**29
    assert np.array_equal(rc == 0, reachable)
    lim = 2.0**31 - 2
    for got, want in ((mean, want_mean), (sd, want_sd)):
        inside = reachable & (np.abs(want) < lim)
        assert np.all(np.abs(got - want)[inside] <= 1 + np.abs(want[inside]) * 2.0**-29)
        assert np.all(np.abs(got[reachable & (np.abs(want) > lim + 2)]) == 2**31 - 1)


# ---- MF §10: the raw-column helpers (categorical codes, missing values) ----------------------------

RAW_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

/* One raw row per line, one result line each:
 *   r V0 .. V(c-1)   model_quantize_raw_f64 (strtod: "nan" is a missing value): rc q[0 .. d-1]
 *   i V0 .. V(c-1)   model_quantize_raw_fixed (integers; MODEL_MISSING_FIXED for a missing value) */
int main(void) {
    char mode[4], text[64];
    while (scanf("%3s", mode) == 1) {
        double raw[MODEL_N_COLUMNS];
        int32_t fixed[MODEL_N_COLUMNS];
        int16_t q[MODEL_N_INPUTS];
        uint32_t i;
        int rc;
        for (i = 0; i < MODEL_N_INPUTS; ++i) {
            q[i] = 0;
        }
        for (i = 0; i < MODEL_N_COLUMNS; ++i) {
            if (scanf("%63s", text) != 1) {
                return 2;
            }
            raw[i] = strtod(text, NULL);
            fixed[i] = (int32_t)strtol(text, NULL, 10);
        }
        rc = mode[0] == 'r' ? model_quantize_raw_f64(raw, q) : model_quantize_raw_fixed(fixed, q);
        printf("%d", rc);
        for (i = 0; i < MODEL_N_INPUTS; ++i) {
            printf(" %d", rc == 0 ? (int)q[i] : 0);
        }
        printf("\n");
    }
    return 0;
}
"""


def mixed_schema_blob():
    return mixed_blob(b=32, seed=11)


def raw_rows(blob, rng, n: int):
    """(host text rows, C f64 words, C fixed words or None, 1 + the refused column or 0) for random raw
    rows: numeric
    values over twice the clipping range and at its ends, every level code, missing values where
    the column takes them, and rows the model refuses (an unknown code, a missing value where the
    column has no policy, a code that is not an integer, an infinity)."""
    schema = blob.schema
    lo = blob.input_scale * (-32768.0 - blob.input_zero)
    hi = blob.input_scale * (32767.0 - blob.input_zero)
    K = [f.frac_bits for f in fixed_inputs(blob.input_scale, blob.input_zero)]
    out = []
    for i in range(n):
        text, f64, fixed, refused = [], [], [], 0
        k = 0
        for c in schema.columns:
            if c.levels:
                code = int(rng.integers(len(c.levels)))
                text.append(c.levels[code])
                f64.append(str(code))
                fixed.append(str(code))
            elif c.missing and rng.random() < 0.3:
                text.append("")
                f64.append("nan")
                fixed.append(str(-(2**31)))
            else:
                width = hi[k] - lo[k]
                x = [lo[k], hi[k], rng.uniform(lo[k] - width / 2, hi[k] + width / 2)][min(2, i % 5)]
                v = int(np.clip(np.rint(np.ldexp(x, K[k])), -(2**31) + 1, 2**31 - 1))
                x = float(np.ldexp(float(v), -K[k]))  # the same real value on both paths
                text.append(repr(x))
                f64.append(repr(x))
                fixed.append(str(v))
            k += c.n_inputs
        if i % 11 == 10:  # one refused cell
            j = int(rng.integers(len(schema.columns)))
            c = schema.columns[j]
            refused = j + 1  # what the C helpers return
            if c.levels:
                bad = [str(len(c.levels)), "-1"][i % 2]
                text[j], f64[j], fixed[j] = "no-such-level", bad, bad
                if i % 3 == 0:
                    f64[j], fixed = "0.5", None  # not an integer code (f64 path only)
            elif not c.missing:
                text[j], f64[j], fixed[j] = "", "nan", str(-(2**31))
            else:
                text[j], f64[j], fixed = "inf", "inf", None
        out.append((text, f64, fixed, refused))
    return out


@pytest.mark.parametrize("compiler", ["gcc", "clang", "g++"])
def test_raw_helpers_equal_the_hosts_preparation_bit_for_bit(tmp_path, compiler):
    """model_quantize_raw_f64 and model_quantize_raw_fixed on raw rows (codes, NaN / INT32_MIN for a
    missing value) equal runtime.schema.prepare then reference.quantize_inputs on the same rows, and
    refuse (1 + the column) exactly the rows the host refuses."""
    from direct_edge.runtime.schema import SchemaError, prepare

    blob = mixed_schema_blob()
    text = render_blob(blob, "model")
    assert "MODEL_COL_COLOUR = 1" in text and "MODEL_COLOUR_RED = 2" in text and "MODEL_SEX_M = 1" in text
    assert "#define MODEL_RANGE_MASK 17UL" in text  # age (input 0) and size (input 4) carry values
    (tmp_path / "model.h").write_text(text, encoding="utf-8")
    (tmp_path / "harness.c").write_text(RAW_HARNESS, encoding="utf-8")
    exe = _compile(tmp_path, compiler)
    rows = raw_rows(blob, np.random.default_rng(5), 2000)
    lines, want = [], []
    for text_row, f64, fixed, refused in rows:
        try:
            q = reference.quantize_inputs(blob, prepare(blob.schema, [text_row]))[0].tolist()
            assert not refused
        except SchemaError as exc:
            assert refused and blob.schema.columns[refused - 1].name in str(exc)
            q = refused
        for mode, words in (("r", f64), ("i", fixed)):
            if words is None:
                continue
            lines.append(f"{mode} {' '.join(words)}")
            want.append(q)
    got = _run(exe, lines)
    assert len(got) == len(want) > 3000
    for line, g, w in zip(lines, got, want, strict=True):
        rc, *q = (int(t) for t in g.split())
        if isinstance(w, int):
            assert rc == w, line
        else:
            assert rc == 0 and q == w, line
