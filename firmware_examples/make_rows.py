"""Your own input rows for the firmware examples: a CSV of real input values as a C header.

    python firmware_examples/make_rows.py model.h rows.csv -o rows.h

MODEL is the header written by ``direct-export model.h`` (or a packed ``.bin``).  ROWS.csv holds one
row per line with the model's d inputs in input units; a first line of names is matched to the
model's input names (any order; the columns are reordered), without one the columns are taken in the
training order.  The header holds each row twice, as the two generated quantise helpers of model.h
take it:

    ROWS_N                                  number of rows
    rows_x[ROWS_N * MODEL_N_INPUTS]         float, for model_quantize_f32
    rows_v[ROWS_N * MODEL_N_INPUTS]         int32 x * 2^MODEL_INPUT_FRAC_BITS[k], rounded to nearest
                                            (ties up), for model_quantize_fixed (cores without an FPU)

A model whose input schema prepares its inputs (``direct-train --categorical`` or ``--missing
mean-indicator``) takes raw columns instead: a header of the column names in any order (or none, the
training order), a level as its text, an empty or NA cell for a missing value, checked as the host
checks them; the header then holds ``rows_raw`` (double: numbers, level codes, NaN for missing) for
``model_quantize_raw_f64`` and ``rows_raw_v`` (int32: x * 2^FRAC_BITS of the column's first input, level
codes, MODEL_MISSING_FIXED) for ``model_quantize_raw_fixed``, with ``ROWS_RAW`` defined.

``--print float`` or ``--print fixed`` prints what the example prints for these rows instead (``row i
q_0 .. q_d-1 mean_q var_y_q mean sd``, mean and sd from model_output_fixed in 10^-DECIMALS target
units), computed with the numpy reference (runtime/reference.py) and the same integer formulas: the
exact moments (IS §6) when the blob carries them, as the examples do, else the S-sample ensemble.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

from direct_edge.export.c_header import fixed_inputs, model_input_names, output_constants, reference_fixed
from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, parse


def _vectors_module():
    spec = importlib.util.spec_from_file_location(
        "make_test_vectors", Path(__file__).with_name("make_test_vectors.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_rows(path: str | Path, names: list[str]) -> np.ndarray:
    """(n, d) float64 rows of ``path`` in the model's input order; a header of names is matched."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError(f"{path}: no rows")
    order = list(range(len(names)))
    try:
        [float(cell) for cell in lines[0]]
    except ValueError:
        header = [cell.strip() for cell in lines.pop(0)]
        missing = [n for n in names if n not in header]
        if missing or len(header) != len(names):
            raise ValueError(
                f"{path}: columns {', '.join(header)}; the model takes {', '.join(names)}"
            ) from None
        order = [header.index(n) for n in names]
    rows = []
    for i, line in enumerate(lines):
        if len(line) != len(names):
            raise ValueError(f"{path}: row {i + 1} has {len(line)} values, the model takes {len(names)}")
        rows.append([float(line[j]) for j in order])
    X = np.array(rows, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: a value is not a finite number")
    return X


def raw_model(blob: Blob) -> bool:
    """Whether the blob's schema prepares its inputs (categorical or mean-indicator columns, MF §10):
    then the rows are raw columns and the examples use model.h's raw-column helpers."""
    return blob.schema is not None and not blob.schema.plain


def read_raw_rows(path: str | Path, blob: Blob) -> tuple[list[list], np.ndarray]:
    """The raw columns of ``path`` for a schema that prepares its inputs: (columns, one list of cells per
    schema column in its order; X, the prepared (n, d) inputs, checked as the host checks them). A first
    row of the column names, in any order, is a header; otherwise the columns are in the schema's order."""
    from direct_edge.runtime import schema as input_schema

    names = blob.schema.column_names
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError(f"{path}: no rows")
    order = list(range(len(names)))
    first = [cell.strip() for cell in lines[0]]
    if set(first) & set(names):
        lines.pop(0)
        if sorted(first) != sorted(names):
            raise ValueError(
                f"{path}: columns {', '.join(first)}; the model's columns are {', '.join(names)}"
            )
        order = [first.index(n) for n in names]
    for i, line in enumerate(lines):
        if len(line) != len(names):
            raise ValueError(f"{path}: row {i + 1} has {len(line)} values, the model takes {len(names)}")
    columns = [[line[j] for line in lines] for j in order]
    try:
        X = input_schema.prepare_columns(blob.schema, columns, str(path))
    except input_schema.SchemaError as exc:
        raise ValueError(str(exc)) from None
    return columns, X


def raw_arrays(blob: Blob, columns: list[list]) -> tuple[np.ndarray, np.ndarray]:
    """(R float64 (n, c), RV int64 (n, c)): what model_quantize_raw_f64 and model_quantize_raw_fixed take
    for the raw cells: a number (NaN for a missing value) or x · 2^K of the column's first input rounded
    half up (INT32_MIN for a missing value), and a categorical column's level code in both."""
    from direct_edge.runtime import schema as input_schema

    K = np.array([f.frac_bits for f in fixed_inputs(blob.input_scale, blob.input_zero)], dtype=np.int64)
    n = len(columns[0])
    R = np.zeros((n, len(columns)))
    RV = np.zeros((n, len(columns)), dtype=np.int64)
    first = 0
    for c, (col, cells) in enumerate(zip(blob.schema.columns, columns, strict=True)):
        if col.kind == input_schema.CATEGORICAL:
            R[:, c] = RV[:, c] = [col.levels.index(input_schema.level_text(v)) for v in cells]
        else:
            values, missing, _ = input_schema.numbers(cells)
            R[:, c] = values
            v = np.floor(np.ldexp(np.where(missing, 0.0, values), K[first]) + 0.5)
            RV[:, c] = np.where(missing, -(2**31), np.clip(v, -(2**31) + 1, 2**31 - 1))
        first += col.n_inputs
    return R, RV


def raw_inputs(blob: Blob, columns: list[list], X: np.ndarray, path: str) -> np.ndarray:
    """The int16 inputs model.h's raw helper ``path`` ("float": f64, "fixed") gives for the raw rows:
    the host's preparation and IS §2, with each present numeric value at v · 2^-K on the fixed path."""
    from direct_edge.runtime import schema as input_schema

    q = reference.quantize_inputs(blob, X)
    if path == "fixed":
        K = np.array([f.frac_bits for f in fixed_inputs(blob.input_scale, blob.input_zero)], dtype=np.int64)
        _, RV = raw_arrays(blob, columns)
        first = 0
        for c, col in enumerate(blob.schema.columns):
            if col.kind != input_schema.CATEGORICAL:
                present = RV[:, c] != -(2**31)
                k = slice(first, first + 1)
                qk = reference_fixed(blob.input_scale[k], blob.input_zero[k], K[k], RV[:, c : c + 1])[:, 0]
                q[present, first] = qk[present]
            first += col.n_inputs
    return q


def fixed_values(blob: Blob, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V int64 (n, d), K (d,)): X · 2^K rounded half up, saturated to int32."""
    K = np.array([f.frac_bits for f in fixed_inputs(blob.input_scale, blob.input_zero)], dtype=np.int64)
    V = np.floor(np.ldexp(X, K) + 0.5)
    return np.clip(V, -(2**31), 2**31 - 1).astype(np.int64), K


def output_fixed(blob: Blob, mean_q: int, var_q: int, decimals: int) -> tuple[int, int]:
    """model_output_fixed's integer formula in Python: (mean, sd) in 10^-decimals target units."""
    mul, shift, offset = output_constants(blob.mean_scale, blob.y_offset)[decimals]
    if mul == 0:
        raise ValueError(f"10^-{decimals} target units are out of reach for this model")
    mean = ((mean_q * mul + (1 << (shift - 1))) >> shift) + offset
    f = 0
    while f < 31 and var_q < 1 << 60:
        var_q <<= 2
        f += 1
    r = math.isqrt(var_q)
    total = shift + f
    sd = 0 if total >= 64 else (r * mul + (1 << (total - 1))) >> total
    return max(-(2**31 - 1), min(2**31 - 1, mean)), min(2**31 - 1, sd)


def expected_lines(
    blob: Blob, X: np.ndarray, path: str, decimals: int, columns: list | None = None
) -> list[str]:
    """The ``row ...`` lines an example prints for rows X through quantise helper ``path`` (for a model
    with raw columns, ``columns`` holds the raw cells and X their preparation)."""
    if columns is not None:
        q = raw_inputs(blob, columns, X, path)
    elif path == "fixed":
        V, K = fixed_values(blob, X)
        q = reference_fixed(blob.input_scale, blob.input_zero, K, V)
    else:
        q = reference.quantize_inputs(blob, X.astype(np.float32).astype(np.float64))
    predict = reference.predict_exact if blob.has_exact else reference.predict  # as the examples choose
    mean_q, _, var_y = predict(blob, q)
    lines = []
    for i in range(len(X)):
        m, s = output_fixed(blob, int(mean_q[i]), int(var_y[i]), decimals)
        qs = " ".join(str(int(v)) for v in q[i])
        lines.append(f"row {i} {qs} {int(mean_q[i])} {int(var_y[i])} {m} {s}")
    return lines


def same_model_check(raw: bool) -> str:
    """The preprocessor lines with which rows.h refuses to build beside a model.h it was not made for
    (included after model.h, as every example does)."""
    lines = (
        '#ifndef MODEL_N_INPUTS\n#error "include model.h before rows.h"\n#endif\n'
        "#if ROWS_N_INPUTS != MODEL_N_INPUTS\n"
        '#error "rows.h was made for another model.h: run make_rows.py on this model.h"\n#endif\n'
    )
    if raw:
        lines += (
            "#ifndef MODEL_N_COLUMNS\n"
            '#error "rows.h holds raw columns but model.h has no raw-column helpers: run make_rows.py on '
            'this model.h"\n#endif\n'
        )
    return lines + "\n"


def render_raw(blob: Blob, columns: list[list], decimals: int) -> str:
    """rows.h for a model with raw columns: rows_raw (double, NaN for missing) for model_quantize_raw_f64
    and rows_raw_v (int32) for model_quantize_raw_fixed, MODEL_N_COLUMNS values per row."""
    R, RV = raw_arrays(blob, columns)
    c = R.shape[1]
    floats = ["NAN" if np.isnan(v) else repr(float(v)) for v in R.ravel()]
    ints = ["(-2147483647L - 1)" if v == -(2**31) else f"{v}L" for v in RV.ravel().tolist()]

    def array(ctype: str, name: str, items: list[str]) -> str:
        body = ",\n    ".join(", ".join(items[i : i + c]) for i in range(0, len(items), c))
        return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"

    names = ", ".join(blob.schema.column_names).replace("*/", "* /")
    return (
        f"/*\n * rows.h - raw rows for the firmware examples, in the model's column order ({names}).\n"
        " * Generated by firmware_examples/make_rows.py: rows_raw for model_quantize_raw_f64 (NaN:\n"
        " * missing), rows_raw_v for model_quantize_raw_fixed (x * 2^FRAC_BITS of the column's first\n"
        " * input, level codes, MODEL_MISSING_FIXED); outputs in 10^-ROWS_DECIMALS target units.\n */\n"
        "#ifndef ROWS_H\n#define ROWS_H\n\n#include <math.h>\n#include <stdint.h>\n\n"
        f"#define ROWS_N {len(R)}u\n#define ROWS_RAW 1\n#define ROWS_N_COLUMNS {c}u\n"
        f"#define ROWS_N_INPUTS {blob.n_inputs}u\n#define ROWS_DECIMALS {decimals}u\n\n"
        + same_model_check(raw=True)
        + array("double", "rows_raw", floats)
        + array("int32_t", "rows_raw_v", ints)
        + "\n#endif /* ROWS_H */\n"
    )


def render(blob: Blob, X: np.ndarray, decimals: int) -> str:
    V, _ = fixed_values(blob, X)
    floats = [np.format_float_scientific(np.float32(v), unique=True) + "f" for v in X.ravel()]
    ints = ["(-2147483647L - 1)" if v == -(2**31) else f"{v}L" for v in V.ravel().tolist()]
    d = blob.n_inputs

    def array(ctype: str, name: str, items: list[str]) -> str:
        body = ",\n    ".join(", ".join(items[i : i + d]) for i in range(0, len(items), d))
        return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"

    return (
        "/*\n * rows.h - input rows for the firmware examples, in the model's input order\n"
        f" * ({', '.join(model_input_names(blob)).replace('*/', '* /')}).\n"
        " * Generated by firmware_examples/make_rows.py: rows_x for model_quantize_f32, rows_v\n"
        " * (x * 2^MODEL_INPUT_FRAC_BITS[k]) for model_quantize_fixed; outputs in 10^-ROWS_DECIMALS\n"
        " * target units.\n */\n"
        "#ifndef ROWS_H\n#define ROWS_H\n\n#include <stdint.h>\n\n"
        f"#define ROWS_N {len(X)}u\n#define ROWS_N_INPUTS {d}u\n#define ROWS_DECIMALS {decimals}u\n\n"
        + same_model_check(raw=False)
        + array("float", "rows_x", floats)
        + array("int32_t", "rows_v", ints)
        + "\n#endif /* ROWS_H */\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model.h from direct-export (or a packed .bin)")
    ap.add_argument("rows", help="CSV of input rows (input units), optionally with a header of names")
    ap.add_argument("-o", "--output", default="rows.h", help="header to write [rows.h]")
    ap.add_argument("--decimals", type=int, default=2, help="outputs in 10^-DECIMALS target units [2]")
    ap.add_argument("--print", choices=["float", "fixed"], help="print the expected lines instead")
    args = ap.parse_args(argv)
    try:
        blob = parse(_vectors_module().read_blob_bytes(args.model))
        columns = None
        if raw_model(blob):
            columns, X = read_raw_rows(args.rows, blob)
        else:
            X = read_rows(args.rows, model_input_names(blob))
        if not 0 <= args.decimals <= 9:
            raise ValueError("--decimals must be 0 .. 9")
        if args.print:
            lines = expected_lines(blob, X, args.print, args.decimals, columns)
            sys.stdout.write("\n".join(lines) + "\n")
            return 0
    except (OSError, ValueError) as exc:
        print(f"make_rows.py: error: {exc}", file=sys.stderr)
        return 2
    text = render(blob, X, args.decimals) if columns is None else render_raw(blob, columns, args.decimals)
    Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
