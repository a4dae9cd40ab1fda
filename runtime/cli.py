"""``direct-run MODEL INPUT.csv``: integer predictions (mean and standard deviation per row).

MODEL is a packed blob (``direct-export model.direct model.bin``, docs/model-format.md).  INPUT holds
one row of real input values per line (comma-separated, an optional header line); they are quantised
on the host (docs/integer-spec.md §2), predicted in integer arithmetic by the numpy reference or the C
library, and shown in target units (the only float step, IS §7).  The answer is the trained model's
exact predictive moments (IS §6) when the blob carries them, as ``direct-export`` writes by default,
else the S-sample ensemble (IS §4-§5) with a note on stderr; ``--ensemble`` asks for the samples.
The output is CSV with the header ``mean,std,clipped`` (clipped: 1 where an input lay outside the
training range, IS §2.1, with a note on stderr counting those rows).  Problems a user can cause end
with one line on stderr, ``direct-run: error: ...``, and exit code 2; an output file is written
atomically or not at all, and never over MODEL or INPUT.

A classifier's blob (docs/model-format.md §11) gives ``class,p_<label>...,entropy,mutual_info,clipped``
per row instead: the class, the model-averaged probabilities, the predictive entropy and the mutual
information in nats (IS §10).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click
import numpy as np

from direct_edge.commands import command
from direct_edge.errors import UserError
from direct_edge.files import check_not_an_input, write_atomic
from direct_edge.formats import MODEL_FILE_MAGIC
from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, BlobError, parse
from direct_edge.runtime.schema import MISSING, Schema, SchemaError, prepare

PROG = "direct-run"


class RunError(UserError):
    """A problem with the command's inputs, reported as one line."""


def read_blob(path: str) -> Blob:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read model {path}: {exc.strerror or exc}") from None
    if data.startswith(MODEL_FILE_MAGIC):
        raise RunError(
            f"{path} is a training file (model.direct); pack it first: direct-export {path} model.bin"
        )
    try:
        return parse(data)
    except BlobError as exc:
        raise RunError(f"{path}: {exc}") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip() not in MISSING


def has_header(first: list[str], header: bool | None) -> bool:
    """Whether the first row names the columns: as the user said, or, undecided, when every cell is a
    name (neither a number nor a missing value).  A row mixing names with numbers or missing values
    is neither and is refused, so that a data row is never dropped as a header."""
    if header is not None:
        return header
    kinds = {"number" if _is_number(c) else "missing" if c.strip() in MISSING else "name" for c in first}
    if kinds == {"name"}:
        return True
    if "name" in kinds:
        raise RunError(
            "the first row mixes column names with numbers or missing values; "
            "say --header if it names the columns, --no-header if it is data"
        )
    return False


def input_names(blob: Blob) -> list[str] | None:
    """The model's input column names in the order it takes them (``Blob.column_names``: the schema
    section, MF §10, else the host metadata of an older blob), or None when it knows only positions."""
    return blob.column_names


def column_order(path: str, first: list[str], names: list[str]) -> list[int]:
    """For a header ``first`` naming the model's inputs ``names`` in any order, the column holding each
    input.  Raises RunError naming the missing and the unknown columns otherwise."""
    given = [c.strip() for c in first]
    if sorted(given) == sorted(names) and len(set(given)) == len(given):
        return [given.index(n) for n in names]
    missing = [n for n in names if n not in given]
    unknown = [c for c in given if c not in names]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"unknown {', '.join(unknown)}"] if unknown else []
    )
    hint = ""
    if unknown and not missing and len(set(given)) == len(given):
        # the training file itself, with its ID, date and target: say what to keep
        fields = ",".join(str(i + 1) for i in sorted(given.index(n) for n in names))
        hint = f"; keep only the model's columns, e.g. cut -d, -f{fields}"
    raise RunError(
        f"{path}: the header names {', '.join(given)}; the model's inputs are {', '.join(names)} "
        f"({'; '.join(parts) or 'a name repeated'}){hint}"
    )


def read_rows(
    path: str,
    n_inputs: int,
    integer: bool,
    header: bool | None = None,
    names: list[str] | None = None,
    schema: Schema | None = None,
) -> np.ndarray:
    """Rows of ``n_inputs`` numbers from a CSV file ("-": stdin), as (n, n_inputs) float64 (int16
    with ``integer``), in the model's input order.

    A UTF-8 byte-order mark is ignored.  With the model's input ``names``, a first row that names
    columns is matched to them by name (reordered when the same names come in another order, refused
    with the difference otherwise) and a first row of numbers is data, by position; without names,
    the first row is a header as :func:`has_header` decides and columns are positional.  Raises
    RunError naming the row of any missing or non-numeric value.  With a ``schema`` that prepares its
    inputs (categorical levels, missing values: docs/model-format.md §10), rows hold its raw columns
    (``names``), are prepared by it, and the first row is a header when a cell names a column."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read inputs {path}: {getattr(exc, 'strerror', None) or exc}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    raw = schema is not None and not schema.plain and not integer
    if raw and header is None and rows:
        header = bool(names) and any(c.strip() in names for c in rows[0])
    order = None
    names_the_inputs = (
        names is not None and header is None and rows and sorted(c.strip() for c in rows[0]) == sorted(names)
    )
    if rows and (names_the_inputs or has_header(rows[0], header)):
        if names is not None:
            order = column_order(path, rows[0], names)
        rows = rows[1:]
    if not rows:
        raise RunError(f"{path}: no input rows")
    if raw:
        if order is not None:
            rows = [[row[k] for k in order] if len(row) == len(order) else row for row in rows]
        try:
            return prepare(schema, rows, path)
        except SchemaError as exc:
            raise RunError(str(exc)) from None
    values = np.empty((len(rows), n_inputs), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != n_inputs:
            raise RunError(f"{path}: data row {i + 1} has {len(row)} values, the model takes {n_inputs}")
        missing = [k for k, c in enumerate(row) if c.strip() in MISSING]
        if missing:
            raise RunError(f"{path}: data row {i + 1} has a missing value in column {missing[0] + 1}")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise RunError(f"{path}: data row {i + 1} has a value that is not a number") from None
    if not np.all(np.isfinite(values)):
        raise RunError(f"{path}: inputs contain NaN or infinity")
    if order is not None:
        values = values[:, order]
    if integer:
        if np.any(values != np.round(values)) or np.any(np.abs(values + 0.5) > 32768):
            raise RunError(f"{path}: --quantized inputs must be integers in [-32768, 32767]")
        return values.astype(np.int16)
    return values


def predict(blob: Blob, q: np.ndarray, engine: str, exact: bool) -> tuple[np.ndarray, ...]:
    """(mean_q, var_q, var_y_q, edge) from the chosen engine (both follow docs/integer-spec.md bit for
    bit); edge is the IS §2.1 at-the-edge mask of the int16 inputs (the C library's out_of_range)."""
    if engine == "reference":
        return (*(reference.predict_exact if exact else reference.predict)(blob, q), reference.at_edge(q))
    from direct_edge.runtime.native import NativeModel

    model = NativeModel(blob.data)
    return (model.predict_exact if exact else model.predict)(q, return_mask=True)


def format_rows(mean: np.ndarray, sd: np.ndarray, clipped: np.ndarray) -> str:
    rows = zip(mean.tolist(), sd.tolist(), (np.asarray(clipped) != 0).tolist(), strict=True)
    lines = ["mean,std,clipped"] + [f"{m:.9g},{s:.9g},{int(c)}" for m, s, c in rows]
    return "\n".join(lines) + "\n"


def range_note(clipped: np.ndarray, quantized: bool) -> str | None:
    """The one stderr line for rows outside the training range (IS §2.1), or None when there are none."""
    n = int(np.count_nonzero(clipped))
    if n == 0:
        return None
    if quantized:
        return (
            f"{PROG}: note: {n} of {len(clipped)} rows had inputs at -32768 or 32767, at or beyond the "
            "edge of the training range (clipped there; predictions are the edge's)"
        )
    return (
        f"{PROG}: note: {n} of {len(clipped)} rows had inputs outside the training range "
        "(clipped; predictions there are the edge's)"
    )


def ensemble_note(model: str, blob: Blob, mean_q: np.ndarray, var_q: np.ndarray, var_y_q: np.ndarray) -> str:
    """The one stderr line for a blob without the exact-moment section: the output is the S-sample
    ensemble, and how far its mean can be from the trained model's on these rows.

    The ensemble mean of S posterior draws has a Monte Carlo standard error of sd_f/√S, with sd_f² the
    spread of the samples (IS §5 var_q); the line gives its largest value over the rows, in target
    units and as a fraction of that row's predictive sd."""
    s = blob.n_samples
    head = f"{PROG}: note: {model} has no exact-moment section, so this is the {s}-sample ensemble"
    tail = "direct-export stores the exact moments by default where they fit"
    if s < 2:
        return f"{head}: one posterior draw, about the function's posterior sd from the trained mean; {tail}"
    _, sd_f = reference.to_target_units(blob, mean_q, var_q)
    _, sd_y = reference.to_target_units(blob, mean_q, var_y_q)
    se = sd_f / np.sqrt(s)
    ratio = np.divide(se, sd_y, out=np.zeros_like(se), where=sd_y > 0)
    return (
        f"{head}: the standard error of its mean against the trained model's (sd_f/sqrt(S)) is up to "
        f"{float(se.max()):.3g} in target units ({float(ratio.max()):.3g} of the predictive sd) on these "
        f"rows; {tail}"
    )


def run(
    model: str,
    inputs: str,
    engine: str = "reference",
    exact: bool | None = None,
    quantized: bool = False,
    output: str | None = None,
    header: bool | None = None,
) -> None:
    """``direct-run`` as one call (arguments as the options); raises RunError or BlobError.

    ``exact``: True for the exact moments (RunError when the blob lacks them), False for the S-sample
    ensemble, None (the default) for the exact moments where the blob has them, else the ensemble with
    a note on stderr."""
    if output is not None:
        check_not_an_input(output, [model] + ([] if inputs == "-" else [inputs]))
    blob = read_blob(model)
    if exact and blob.classes:
        raise RunError(f"{model} is a classifier: it has no exact moments (drop --exact)")
    if exact and not blob.has_exact:
        raise RunError(
            f"{model} has no exact-moment section; re-export it without --no-exact-moments or drop --exact"
        )
    fallback = exact is None and not blob.has_exact and not blob.classes
    exact = blob.has_exact if exact is None else exact
    schema = blob.schema
    names = schema.input_names if quantized and schema is not None and not schema.plain else input_names(blob)
    values = read_rows(inputs, blob.n_inputs, quantized, header, names, schema)
    # IS §2.1: real inputs are out of range when the host's clamp changes them (the engines see only
    # int16 and report the wider "at the edge", which is the flag for --quantized inputs).
    q, clipped = (values, None) if quantized else reference.quantize_inputs(blob, values, return_mask=True)
    if blob.classes:  # MF §11: a classifier
        text, edge = classify_rows(blob, q, engine)
        if clipped is None and schema is not None and not schema.plain:
            edge = reference.at_edge(q[:, schema.value_inputs])
        clipped = edge if clipped is None else clipped
        lines = text.splitlines()
        lines = [lines[0] + ",clipped"] + [
            f"{r},{int(c)}" for r, c in zip(lines[1:], clipped != 0, strict=True)
        ]
        _emit(output, "\n".join(lines) + "\n", [range_note(clipped, quantized)])
        return
    try:
        mean_q, var_q, var_y_q, edge = predict(blob, q, engine, exact)
    except (OSError, RuntimeError) as exc:
        raise RunError(f"the C engine is not available: {exc}") from None
    if clipped is None and schema is not None and not schema.plain:  # one-hot inputs sit at an edge
        edge = reference.at_edge(q[:, schema.value_inputs])
    clipped = edge if clipped is None else clipped
    text = format_rows(*reference.to_target_units(blob, mean_q, var_y_q), clipped)
    _emit(
        output,
        text,
        [
            ensemble_note(model, blob, mean_q, var_q, var_y_q) if fallback else None,
            range_note(clipped, quantized),
        ],
    )


def _emit(output: str | None, text: str, notes: list[str | None]) -> None:
    """The notes on stderr, then the CSV on stdout or atomically into ``output``."""
    for note in notes:
        if note is not None:
            click.echo(note, err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomic(output, text)
        except OSError as exc:
            raise RunError(f"cannot write {output}: {exc.strerror or exc}") from None


def classify_rows(blob: Blob, q: np.ndarray, engine: str) -> tuple[str, np.ndarray]:
    """IS §10 for a classifier blob (MF §11) on int16 rows q (n, d), by the chosen engine (bit-exact
    with each other): (CSV text ``class,p_<label>...,entropy,mutual_info`` with probabilities as
    p̄ / 65536 and the uncertainties in nats, the IS §2.1 at-the-edge mask (n,))."""
    from direct_edge.runtime import classify

    if engine == "reference":
        out, edge = classify.classify(blob, q), reference.at_edge(q)
    else:
        from direct_edge.runtime.native import NativeModel
        from direct_edge.runtime.native import classify as native_classify

        out = native_classify(NativeModel(blob.data), q)
        edge = out["out_of_range"]
    labels = blob.meta.get("classes")
    if not (isinstance(labels, list) and len(labels) == blob.classes):
        labels = list(range(blob.classes))
    nats = np.log(2.0) / 65536.0
    header = ["class", *(f"p_{v}" for v in labels), "entropy", "mutual_info"]
    lines = [",".join(header)]
    for i in range(q.shape[0]):
        probs = ",".join(f"{p / 65536.0:.6f}" for p in out["proba"][i].tolist())
        lines.append(
            f"{labels[int(out['label'][i])]},{probs},"
            f"{out['entropy'][i] * nats:.6f},{out['mutual_info'][i] * nats:.6f}"
        )
    return "\n".join(lines) + "\n", np.asarray(edge)


@command(PROG)
@click.argument("model")
@click.argument("inputs", metavar="INPUT.csv")
@click.option(
    "--engine",
    type=click.Choice(["reference", "c"]),
    default="reference",
    show_default=True,
    help="numpy reference or the C library (compiled on first use); identical results.",
)
@click.option(
    "--exact/--ensemble",
    default=None,
    help="The trained model's exact moments (IS §6), or the S-sample ensemble "
    "[default: --exact where the blob carries the exact moments, else the ensemble with a note].",
)
@click.option("--quantized", is_flag=True, help="INPUT holds int16 values already quantised for the model.")
@click.option(
    "--header/--no-header",
    default=None,
    help="Whether INPUT's first row names the columns [default: when every cell of it is a name].",
)
@click.option("-o", "--output", metavar="FILE", help="Write the CSV here instead of standard output.")
def main(model, inputs, engine, exact, quantized, header, output) -> None:
    """Predict with the packed model MODEL on every row of INPUT.csv ("-" reads standard input).

    Prints CSV with the header mean,std,clipped: the predictive mean and standard deviation of each
    row in target units (the trained model's exact moments where the blob carries them, else the
    S-sample ensemble), and 1 where an input lay outside the training range (with --quantized: at
    -32768 or 32767).  Those inputs were clipped to the range's edge, so the prediction is the edge's
    (an extrapolation whose sd does not grow); a note on stderr counts them.
    """
    run(model, inputs, engine, exact, quantized, output, header)
