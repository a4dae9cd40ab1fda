"""``direct-run MODEL INPUT.csv``: integer predictions (mean and standard deviation per row).

MODEL is a packed blob (``direct-export model.bin``, docs/model-format.md).  INPUT holds one row of
real input values per line (comma-separated, an optional header line); they are quantised on the host
(docs/integer-spec.md §2), predicted in integer arithmetic by the numpy reference or the C library,
and shown in target units (the only float step, IS §7).  Problems a user can cause end with one line on
stderr, ``direct-run: error: ...``, and exit code 2; an output file is written atomically or not at all.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, BlobError, parse

PROG = "direct-run"
TRAINING_FILE_MAGIC = b"\x89DIRECT\n"


class RunError(Exception):
    """A problem with the command's inputs, reported as one line."""


def read_blob(path: str) -> Blob:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read model {path}: {exc.strerror or exc}") from None
    if data.startswith(TRAINING_FILE_MAGIC):
        raise RunError(
            f"{path} is a training file (model.direct); pack it first: direct-export --model {path} model.bin"
        )
    try:
        return parse(data)
    except BlobError as exc:
        raise RunError(f"{path}: {exc}") from None


def read_rows(path: str, n_inputs: int, integer: bool) -> np.ndarray:
    """Rows of ``n_inputs`` numbers from a CSV file ("-": stdin); a non-numeric first line is a header."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read inputs {path}: {getattr(exc, 'strerror', None) or exc}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows:
        try:
            [float(c) for c in rows[0]]
        except ValueError:
            rows = rows[1:]
    if not rows:
        raise RunError(f"{path}: no input rows")
    values = np.empty((len(rows), n_inputs), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != n_inputs:
            raise RunError(f"{path}: data row {i + 1} has {len(row)} values, the model takes {n_inputs}")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise RunError(f"{path}: data row {i + 1} has a value that is not a number") from None
    if not np.all(np.isfinite(values)):
        raise RunError(f"{path}: inputs contain NaN or infinity")
    if integer:
        if np.any(values != np.round(values)) or np.any(np.abs(values + 0.5) > 32768):
            raise RunError(f"{path}: --quantized inputs must be integers in [-32768, 32767]")
        return values.astype(np.int16)
    return values


def predict(blob: Blob, q: np.ndarray, engine: str, exact: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_q, var_q, var_y_q) from the chosen engine (both follow docs/integer-spec.md bit for bit)."""
    if engine == "reference":
        return (reference.predict_exact if exact else reference.predict)(blob, q)
    from direct_edge.runtime.native import NativeModel

    model = NativeModel(blob.data)
    return (model.predict_exact if exact else model.predict)(q)


def format_rows(mean: np.ndarray, sd: np.ndarray) -> str:
    lines = ["mean,std"] + [f"{m:.9g},{s:.9g}" for m, s in zip(mean.tolist(), sd.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(model: str, inputs: str, engine: str, exact: bool, quantized: bool, output: str | None) -> None:
    blob = read_blob(model)
    if exact and not blob.has_exact:
        raise RunError(f"{model} has no exact-moment section; export with --exact-moments or drop --exact")
    values = read_rows(inputs, blob.n_inputs, quantized)
    q = values if quantized else reference.quantize_inputs(blob, values)
    try:
        mean_q, _, var_y_q = predict(blob, q, engine, exact)
    except (OSError, RuntimeError) as exc:
        raise RunError(f"the C engine is not available: {exc}") from None
    text = format_rows(*reference.to_target_units(blob, mean_q, var_y_q))
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomically(output, text)
        except OSError as exc:
            raise RunError(f"cannot write {output}: {exc.strerror or exc}") from None


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model")
@click.argument("inputs", metavar="INPUT.csv")
@click.option(
    "--engine",
    type=click.Choice(["reference", "c"]),
    default="reference",
    show_default=True,
    help="numpy reference or the C library (compiled on first use); identical results.",
)
@click.option("--exact", is_flag=True, help="Exact-moment mode (two dot products) instead of the samples.")
@click.option("--quantized", is_flag=True, help="INPUT holds int16 values already quantised for the model.")
@click.option("-o", "--output", metavar="FILE", help="Write the CSV here instead of standard output.")
def main(model, inputs, engine, exact, quantized, output) -> None:
    """Predict with the packed model MODEL on every row of INPUT.csv ("-" reads standard input).

    Prints one line per row: the predictive mean and standard deviation in target units.
    """
    try:
        run(model, inputs, engine, exact, quantized, output)
    except (RunError, BlobError, ValueError) as exc:
        click.echo(f"{PROG}: error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)
