"""The input schema (docs/model-format.md §10, cited as MF §10): what the model's raw input columns are
and how a raw row becomes the model's d real inputs.

One definition for every part: the trainer fits a :class:`Schema` on its data (``trainer/preprocessing.py``)
and stores it in ``model.direct``; the exporter writes it as the blob's schema section (:func:`encode`);
the host reader decodes and checks it (:func:`decode`, through ``Blob.schema``) and ``direct-run`` turns
raw CSV rows into inputs with :func:`prepare`.  The C library never reads the section.

A column is *numeric* (one input; with the ``mean-indicator`` missing-value policy a second input, 1 where
the value was missing and 0 otherwise, and the missing value replaced by the training mean) or
*categorical* (one 0/1 input per level seen in training, one-hot; a level not seen in training is refused;
no missing values).  Inputs follow the columns' order, each column's inputs together.
Only the standard library and numpy are used.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from direct_edge.errors import UserError

SCHEMA_VERSION = 1
NUMERIC, CATEGORICAL = 0, 1
KINDS = {NUMERIC: "numeric", CATEGORICAL: "categorical"}
REFUSE, MEAN_INDICATOR = 0, 1
POLICIES = {REFUSE: "refuse", MEAN_INDICATOR: "mean-indicator"}
MAX_NAME_BYTES = 255
MAX_LEVELS = 65535

# Cells that mean "no value" in files written by pandas, R and spreadsheets: pandas' default NA strings,
# so that a cell the trainer's reader (pandas) took as missing is missing for direct-run too.
MISSING = frozenset(
    {
        "",
        "NA",
        "N/A",
        "n/a",
        "NaN",
        "nan",
        "-NaN",
        "-nan",
        "NULL",
        "null",
        "None",
        "<NA>",
        "#N/A",
        "#NA",
        "#N/A N/A",
        "-1.#IND",
        "1.#IND",
        "-1.#QNAN",
        "1.#QNAN",
    }
)


class SchemaError(UserError):
    """A schema that breaks a MF §10 rule, or a raw value the schema cannot take (one line)."""


@dataclass(frozen=True)
class Column:
    """One raw input column.  ``low``/``high``: its training range (numeric: finite, low ≤ high);
    ``fill``: the value a missing cell takes (the training mean) with the mean-indicator policy, else 0;
    ``levels``: the categories in input order (categorical)."""

    name: str
    kind: int = NUMERIC
    missing: int = REFUSE
    low: float = 0.0
    high: float = 0.0
    fill: float = 0.0
    levels: tuple[str, ...] = ()

    @property
    def input_names(self) -> list[str]:
        """The model inputs this column becomes, in order."""
        if self.kind == CATEGORICAL:
            return [f"{self.name}={level}" for level in self.levels]
        return [self.name] + ([f"{self.name}_missing"] if self.missing == MEAN_INDICATOR else [])

    @property
    def n_inputs(self) -> int:
        return len(self.levels) if self.kind == CATEGORICAL else 1 + (self.missing == MEAN_INDICATOR)

    @property
    def plain(self) -> bool:
        """A numeric column without a missing-value policy: one input, the raw value itself."""
        return self.kind == NUMERIC and self.missing == REFUSE


@dataclass(frozen=True)
class Schema:
    """The raw columns in order and the target's name ("" when the data did not name it)."""

    columns: tuple[Column, ...]
    target: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def input_names(self) -> list[str]:
        return [n for c in self.columns for n in c.input_names]

    @property
    def n_inputs(self) -> int:
        return sum(c.n_inputs for c in self.columns)

    @property
    def plain(self) -> bool:
        """Every column is plain: a raw row is the model's input row."""
        return all(c.plain for c in self.columns)

    @property
    def value_inputs(self) -> np.ndarray:
        """(d,) bool: the inputs that carry a numeric column's value.  The others (one-hot levels,
        missing-value indicators) are 0 or 1, the ends of their range, so as int16 they always sit at
        an edge (IS §2.1) and say nothing about the training range."""
        flags = []
        for c in self.columns:
            flags += [c.kind == NUMERIC] + [False] * (c.n_inputs - 1)
        return np.array(flags, dtype=bool)

    def check(self) -> None:
        """MF §10's rules on the values (the writer's and the reader's check).  Raises SchemaError."""
        if not 1 <= len(self.columns) <= 65535:
            raise SchemaError(f"needs 1 to 65535 columns, has {len(self.columns)}")
        _check_text(self.target, "the target name", allow_empty=True)
        names = set()
        for c in self.columns:
            _check_text(c.name, "a column name")
            if c.name in names:
                raise SchemaError(f"column {c.name!r} appears twice")
            names.add(c.name)
            if c.kind not in KINDS or c.missing not in POLICIES:
                raise SchemaError(f"column {c.name!r} has an unknown kind or missing-value policy")
            if c.kind == CATEGORICAL:
                if c.missing != REFUSE:
                    raise SchemaError(f"categorical column {c.name!r} must refuse missing values")
                if not 1 <= len(c.levels) <= MAX_LEVELS or len(set(c.levels)) != len(c.levels):
                    raise SchemaError(f"categorical column {c.name!r} needs 1 to 65535 distinct levels")
                for level in c.levels:
                    _check_text(level, f"a level of {c.name!r}")
                continue
            if c.levels:
                raise SchemaError(f"numeric column {c.name!r} has levels")
            values = (c.low, c.high, c.fill)
            if not all(math.isfinite(v) for v in values) or c.low > c.high:
                raise SchemaError(f"column {c.name!r} needs a finite training range low <= high")
            if c.missing == MEAN_INDICATOR and not c.low <= c.fill <= c.high:
                raise SchemaError(f"column {c.name!r}: the fill value lies outside the training range")
            if c.missing == REFUSE and c.fill != 0.0:
                raise SchemaError(f"column {c.name!r}: a fill value without a missing-value policy")
        inputs = self.input_names
        if len(set(inputs)) != len(inputs):
            twice = next(n for n in inputs if inputs.count(n) > 1)
            raise SchemaError(
                f"two columns make the model input {twice!r} (a column named like a category level or a "
                "missing-value indicator of another); rename or drop one"
            )


def _check_text(text: str, what: str, allow_empty: bool = False) -> None:
    raw = text.encode("utf-8")
    if len(raw) > MAX_NAME_BYTES or (not raw and not allow_empty):
        raise SchemaError(f"{what} must be 1 to {MAX_NAME_BYTES} bytes of UTF-8")


# ---- MF §10: the section's bytes ----------------------------------------------------------------------

_HEAD = struct.Struct("<BBH")  # version, reserved, number of columns
_COLUMN = struct.Struct("<BB")  # kind, missing-value policy
_RANGE = struct.Struct("<ddd")  # low, high, fill
_COUNT = struct.Struct("<H")


def _text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return bytes([len(raw)]) + raw


def encode(schema: Schema) -> bytes:
    """The MF §10 bytes of ``schema`` (checked first).  Raises SchemaError."""
    schema.check()
    out = [_HEAD.pack(SCHEMA_VERSION, 0, len(schema.columns)), _text(schema.target)]
    for c in schema.columns:
        out += [_text(c.name), _COLUMN.pack(c.kind, c.missing)]
        if c.kind == CATEGORICAL:
            out += [_COUNT.pack(len(c.levels))] + [_text(level) for level in c.levels]
        else:
            out.append(_RANGE.pack(c.low, c.high, c.fill))
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise SchemaError(f"{what} runs past the end of the section")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))

    def text(self, what: str) -> str:
        (n,) = self.take(1, what)
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"{what} is not UTF-8") from None


def decode(data: bytes, n_inputs: int) -> Schema:
    """The schema in MF §10 ``data``, checked against its rules and the header's d = ``n_inputs``.
    Raises SchemaError naming the first rule that fails."""
    r = _Reader(bytes(data))
    version, reserved, count = r.unpack(_HEAD, "the schema header")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"schema version {version} is not supported (this reader reads {SCHEMA_VERSION})")
    if reserved:
        raise SchemaError("reserved byte is not zero")
    target = r.text("the target name")
    columns = []
    for j in range(count):
        name = r.text(f"column {j + 1}'s name")
        kind, missing = r.unpack(_COLUMN, f"column {j + 1}'s kind")
        if kind == CATEGORICAL:
            (n_levels,) = r.unpack(_COUNT, f"column {j + 1}'s level count")
            levels = tuple(r.text(f"a level of column {j + 1}") for _ in range(n_levels))
            columns.append(Column(name, kind, missing, levels=levels))
        elif kind == NUMERIC:
            low, high, fill = r.unpack(_RANGE, f"column {j + 1}'s range")
            columns.append(Column(name, kind, missing, low, high, fill))
        else:
            raise SchemaError(f"column {j + 1} has unknown kind {kind}")
    if r.pos != len(r.data):
        raise SchemaError(f"{len(r.data) - r.pos} bytes after the last column")
    schema = Schema(tuple(columns), target)
    schema.check()
    if schema.n_inputs != n_inputs:
        raise SchemaError(f"the columns make {schema.n_inputs} inputs, the header says {n_inputs}")
    return schema


# ---- raw rows -> the model's inputs ----------------------------------------------------------------


def _is_missing_object(value) -> bool:
    """None, pandas' NA and NaT (cells of nullable and datetime columns), without importing pandas."""
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def level_text(value) -> str | None:
    """A categorical cell as the text its level is stored and matched as, or None for a missing cell.

    Text is stripped of surrounding spaces; a number (or text that reads as a finite number) is written
    canonically, so that 1, 1.0, "1.0" and " 01" are the level "1" and 2.5 is "2.5", whether pandas read
    the column as numbers or the cell arrives as text."""
    if _is_missing_object(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in MISSING:
            return None
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
        value = number
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return None
    if number.is_integer() and abs(number) < 2**63:
        return str(int(number))
    return repr(number)


def numbers(column) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(float64 values, missing mask, index of the first text cell or None) of one raw numeric column:
    numbers as they are, text read with float(); missing cells (None, NaN, :data:`MISSING` text) are
    NaN and flagged; a text cell that is not a number is NaN too (and not flagged as missing)."""
    array = np.asarray(column)
    text_at = None
    if array.dtype.kind in "iuf":
        values = array.astype(np.float64)
        return values, np.isnan(values), None
    values = np.empty(len(array), dtype=np.float64)
    missing = np.zeros(len(array), dtype=bool)
    for i, cell in enumerate(array.tolist()):
        if _is_missing_object(cell) or (isinstance(cell, str) and cell.strip() in MISSING):
            values[i], missing[i] = np.nan, True
            continue
        try:
            values[i] = float(cell.strip() if isinstance(cell, str) else cell)
        except (TypeError, ValueError):
            values[i] = np.nan
            text_at = i if text_at is None else text_at
            continue
        missing[i] = np.isnan(values[i])
    return values, missing, text_at


def prepare_columns(schema: Schema, columns: list, where: str = "", first_row: int = 1) -> np.ndarray:
    """(n, d) float64 model inputs from the raw columns (one array or list per schema column, in its
    order: numbers, text, None or NaN for a missing cell), as MF §10 says.

    Numeric cells are numbers; a missing cell takes the column's fill value and sets its indicator
    under the mean-indicator policy and is refused otherwise; a categorical cell must be a level seen
    in training (:func:`level_text`).  Raises SchemaError naming the first bad cell's row (counted
    from ``first_row``) and column."""
    prefix = f"{where}: " if where else ""

    def at(i: int) -> str:
        return f"{prefix}data row {i + first_row}"

    if len(columns) != len(schema.columns):
        raise SchemaError(f"{prefix}{len(columns)} columns given, the model takes {len(schema.columns)}")
    n = len(columns[0]) if columns else 0
    out = np.zeros((n, schema.n_inputs), dtype=np.float64)
    k = 0
    for c, column in zip(schema.columns, columns, strict=True):
        if c.kind == CATEGORICAL:
            lookup = {lv: j for j, lv in enumerate(c.levels)}
            for i, cell in enumerate(np.asarray(column, dtype=object).tolist()):
                text = level_text(cell)
                if text not in lookup:
                    what = "a missing value" if text is None else f"the level {text!r}"
                    raise SchemaError(
                        f"{at(i)} has {what} in column {c.name}, not seen in training "
                        f"(levels: {', '.join(c.levels)})"
                    )
                out[i, k + lookup[text]] = 1.0
        else:
            values, missing, text_at = numbers(column)
            if text_at is not None:
                raise SchemaError(f"{at(text_at)} has a value that is not a number in column {c.name}")
            if np.isinf(values).any():
                raise SchemaError(
                    f"{at(int(np.flatnonzero(np.isinf(values))[0]))} has infinity in column {c.name}"
                )
            if missing.any():
                if c.missing != MEAN_INDICATOR:
                    raise SchemaError(
                        f"{at(int(np.flatnonzero(missing)[0]))} has a missing value in column {c.name}"
                    )
                values = np.where(missing, c.fill, values)
                out[:, k + 1] = missing
            out[:, k] = values
        k += c.n_inputs
    return out


def prepare(schema: Schema, rows: list[list[str]], where: str = "", first_row: int = 1) -> np.ndarray:
    """:func:`prepare_columns` of text rows, each holding the schema's columns in its order.  Raises
    SchemaError naming a row of another length, or the first bad cell."""
    prefix, width = (f"{where}: " if where else ""), len(schema.columns)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise SchemaError(
                f"{prefix}data row {i + first_row} has {len(row)} values, the model takes {width}"
            )
    columns = [[row[j] for row in rows] for j in range(len(schema.columns))]
    return prepare_columns(schema, columns, where, first_row)


def raw_from_inputs(schema: Schema, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw, prepared) for model-input rows ``X`` (n, d), such as a check batch spread over the inputs'
    ranges: ``raw`` (n, c) float64 the nearest raw rows (a categorical column's code is its largest
    one-hot input; with mean-indicator imputation a value is missing, NaN, where its indicator is at
    least ½) and ``prepared`` = :func:`prepare_columns` of them, the inputs those rows really give."""
    X = np.asarray(X, dtype=np.float64)
    raw = np.empty((len(X), len(schema.columns)), dtype=np.float64)
    k = 0
    for j, c in enumerate(schema.columns):
        if c.kind == CATEGORICAL:
            raw[:, j] = np.argmax(X[:, k : k + len(c.levels)], axis=1)
        elif c.missing == MEAN_INDICATOR:
            raw[:, j] = np.where(X[:, k + 1] >= 0.5, np.nan, X[:, k])
        else:
            raw[:, j] = X[:, k]
        k += c.n_inputs
    columns = [
        [c.levels[int(v)] for v in raw[:, j]] if c.kind == CATEGORICAL else raw[:, j]
        for j, c in enumerate(schema.columns)
    ]
    return raw, prepare_columns(schema, columns)
