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


def expected_lines(blob: Blob, X: np.ndarray, path: str, decimals: int) -> list[str]:
    """The ``row ...`` lines an example prints for rows X through quantise helper ``path``."""
    if path == "fixed":
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
        X = read_rows(args.rows, model_input_names(blob))
        if not 0 <= args.decimals <= 9:
            raise ValueError("--decimals must be 0 .. 9")
        if args.print:
            sys.stdout.write("\n".join(expected_lines(blob, X, args.print, args.decimals)) + "\n")
            return 0
    except (OSError, ValueError) as exc:
        print(f"make_rows.py: error: {exc}", file=sys.stderr)
        return 2
    Path(args.output).write_text(render(blob, X, args.decimals), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
