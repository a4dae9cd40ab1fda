"""The preprocessing stage of ``direct-train --categorical COLS --missing mean-indicator``: one pass
over the raw table fits an input schema (docs/model-format.md §10, ``runtime/schema.py``), and the
training rows are the schema applied to the raw rows, exactly as every export applies it on a device.

* ``--categorical COL[,COL]``: each named column is one-hot encoded over the levels seen in training
  (sorted as text; ``runtime.schema.level_text`` writes numbers canonically).  A level not seen in
  training is refused when predicting; a missing cell in a categorical column is refused (give it a
  level of its own, such as "unknown").
* ``--missing mean-indicator``: a numeric input column with missing cells gets its training mean
  (of the values present) in place of each missing cell, plus an input ``NAME_missing`` that is 1
  there and 0 elsewhere.  Columns without missing cells stay as they are.  The default, ``refuse``,
  stops at the first missing cell naming its column and row.

The stage is stored in the model file (docs/model-file.md §5, ``meta.schema``) and carried into the
packed blob's schema section, the ``.h`` helpers and ``direct-run``.  Only table sources that read one
CSV/text or Parquet file are supported (not a glob, arrays or a Dask cluster).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from direct_edge.runtime import schema as input_schema
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.tables import TEXT_HINT, Batch, FrameSource, TableSource, frame_values

MISSING_POLICIES = ("refuse", "mean-indicator")


def _raw_columns(frame, used: list[int]) -> list[np.ndarray]:
    """The used columns of a pandas chunk as numpy arrays (numbers stay numbers; text stays object)."""
    return [frame.iloc[:, j].to_numpy() for j in used]


def fit_schema(
    source: FrameSource,
    categorical: list[str],
    missing: str,
    chunk_rows: int,
    numeric_target: bool = True,
) -> input_schema.Schema:
    """One pass over ``source``'s raw rows: the schema of its input columns (``categorical``: names of
    one-hot columns; ``missing``: a policy of :data:`MISSING_POLICIES`).  Raises DataError naming an
    unknown column, a text cell in a numeric column, a missing cell where the policy refuses it, an
    infinite value, or a column without any value.  ``numeric_target``: also check the target's cells
    as numbers (regression); a classifier's labels are checked by its own reader."""
    if missing not in MISSING_POLICIES:
        raise DataError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    names = list(source.input_names)
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise DataError(
            f"{source.where}: --categorical names {', '.join(unknown)}, not an input column "
            f"(inputs: {', '.join(names)})"
        )
    d = len(names)
    is_cat = [n in categorical for n in names]
    levels: list[set[str]] = [set() for _ in range(d)]
    low, high = np.full(d, np.inf), np.full(d, -np.inf)
    total, count, gaps = np.zeros(d), np.zeros(d, dtype=np.int64), np.zeros(d, dtype=bool)
    seen = 0
    for frame in source._pieces(chunk_rows):
        _check_width(source, frame, seen)
        raw = _raw_columns(frame, source._used)
        if numeric_target:
            frame_values(
                frame.iloc[:, source._used[-1:]], [source.target_name], source.where, seen, target_column=0
            )
        for k in range(d):
            where = f"{source.where}: column {names[k]!r}"
            if is_cat[k]:
                for i, cell in enumerate(np.asarray(raw[k], dtype=object).tolist()):
                    text = input_schema.level_text(cell)
                    if text is None:
                        raise DataError(
                            f"{where}, row {seen + i + 1} holds a missing value; a categorical column "
                            "takes none (give those rows a level of their own, such as 'unknown')"
                        )
                    levels[k].add(text)
                continue
            values, absent = _numbers(raw[k], where, seen)
            if absent.any():
                if missing == "refuse":
                    row = seen + int(np.flatnonzero(absent)[0]) + 1
                    raise DataError(
                        f"{where}, row {row} holds a missing value; remove or fill it, "
                        "or train with --missing mean-indicator"
                    )
                gaps[k] = True
            present = values[~absent]
            if len(present):
                low[k], high[k] = min(low[k], present.min()), max(high[k], present.max())
                total[k] += present.sum()
                count[k] += len(present)
        seen += len(frame)
    if seen == 0:
        raise DataError(f"{source.where}: no data rows")
    columns = []
    for k, name in enumerate(names):
        if is_cat[k]:
            ordered = tuple(sorted(levels[k]))
            if len(ordered) > input_schema.MAX_LEVELS:
                raise DataError(f"{source.where}: column {name!r} has more than 65535 levels")
            columns.append(input_schema.Column(name, input_schema.CATEGORICAL, levels=ordered))
            continue
        if count[k] == 0:
            raise DataError(
                f"{source.where}: column {name!r} holds no value at all; leave it out with --drop"
            )
        policy = input_schema.MEAN_INDICATOR if gaps[k] else input_schema.REFUSE
        fill = float(np.clip(total[k] / count[k], low[k], high[k])) if gaps[k] else 0.0
        columns.append(
            input_schema.Column(name, input_schema.NUMERIC, policy, float(low[k]), float(high[k]), fill)
        )
    schema = input_schema.Schema(tuple(columns), str(source.target_name))
    try:
        schema.check()
    except input_schema.SchemaError as exc:
        raise DataError(f"{source.where}: {exc}") from None
    return schema


def _check_width(source: FrameSource, frame, seen: int) -> None:
    if frame.shape[1] != len(source.columns):
        raise DataError(
            f"{source.where}: rows from data row {seen + 1} on have {frame.shape[1]} fields, "
            f"expected {len(source.columns)}"
        )


def _numbers(column: np.ndarray, where: str, seen: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing) of one numeric column chunk; DataError for text or an infinite value."""
    values, missing, text_at = input_schema.numbers(column)
    if text_at is not None:
        cell = str(np.asarray(column, dtype=object)[text_at])
        raise DataError(
            f"{where}, row {seen + text_at + 1} holds text {cell[:40]!r}, not a number {TEXT_HINT}"
        )
    if np.isinf(values).any():
        raise DataError(
            f"{where}, row {seen + int(np.flatnonzero(np.isinf(values))[0]) + 1} holds an infinite value"
        )
    return values, missing


class PreparedSource(TableSource):
    """``base``'s rows with the schema applied: X holds the schema's d inputs (one-hot, imputed values
    and indicators), y the target, named ``schema.input_names``.  Raises DataError for a raw cell the
    schema cannot take (a level not seen in training, a missing cell where the column refuses it)."""

    def __init__(self, base: FrameSource, schema: input_schema.Schema) -> None:
        self.base, self.schema = base, schema
        self.input_names, self.target_name = schema.input_names, base.target_name
        self.named_columns, self.where, self.files = base.named_columns, base.where, base.files
        self.n_rows = base.n_rows

    def _pieces(self, chunk_rows: int) -> Iterator:
        return self.base._pieces(chunk_rows)

    def _values(self, frame, first_row: int) -> Batch:
        base = self.base
        _check_width(base, frame, first_row)
        y = frame_values(
            frame.iloc[:, base._used[-1:]], [base.target_name], base.where, first_row, target_column=0
        )[:, 0]
        try:
            X = input_schema.prepare_columns(
                self.schema, _raw_columns(frame, base._used[:-1]), base.where, first_row + 1
            )
        except input_schema.SchemaError as exc:
            raise DataError(str(exc)) from None
        return X, y


def not_one_file() -> DataError:
    """The error for a preprocessing stage asked of data that is not one CSV, text or Parquet file."""
    return DataError(
        "--categorical and --missing read one CSV, text or Parquet file (not a glob, NPZ arrays, "
        "the demo data or a Dask cluster)"
    )


def prepare_source(
    source: TableSource,
    categorical: list[str],
    missing: str,
    chunk_rows: int,
    numeric_target: bool = True,
) -> PreparedSource:
    """The training source with the preprocessing stage fitted on ``source`` (one pass) and applied
    (``numeric_target``: as :func:`fit_schema`)."""
    if not isinstance(source, FrameSource):
        raise not_one_file()
    return PreparedSource(source, fit_schema(source, categorical, missing, chunk_rows, numeric_target))


def apply_schema(source: TableSource, schema: input_schema.Schema) -> PreparedSource:
    """Another table (held-out test rows) read through an already fitted schema."""
    if not isinstance(source, FrameSource):
        raise DataError("--categorical and --missing read test rows from one CSV, text or Parquet file")
    if list(source.input_names) != schema.column_names:
        raise DataError(
            f"{source.where} has input columns {', '.join(source.input_names)}; "
            f"the training data has {', '.join(schema.column_names)}"
        )
    return PreparedSource(source, schema)
