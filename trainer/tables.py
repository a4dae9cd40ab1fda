"""What every table source shares: the :class:`TableSource` pass, value checks, the target column,
and re-chunking.

A source describes one pass as raw pieces of at most ``chunk_rows`` rows (``_pieces``) and turns each
piece into validated float64 ``X``: (k, d), ``y``: (k,) (``_values``); :meth:`TableSource.batches`
numbers the rows, so a bad value is reported with its column and its 1-based data row as a
:class:`DataError`: text in a numeric column, a missing value or NaN, an infinite value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from direct_edge.trainer.errors import DataError

Batch = tuple[np.ndarray, np.ndarray]


class TableSource:
    """A re-iterable table of numeric inputs and one numeric target.

    ``input_names``: d column names; ``target_name``; ``n_inputs`` = d; ``n_rows``: number of data
    rows, or None while unknown (text files learn it at the end of their first pass).
    ``named_columns``: True when the names come from the data (a header, a Parquet schema).
    ``where``: how messages name the source; ``files``: the paths of the files read, in reading order
    (empty for in-memory data).
    """

    input_names: list[str]
    target_name: str
    n_rows: int | None = None
    named_columns: bool = False
    where: str = "data"
    files: tuple[str, ...] = ()

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        """One pass: float64 chunks ``X``: (k, d), ``y``: (k,) with 1 <= k <= ``chunk_rows``.

        Raises :class:`DataError` for ``chunk_rows`` < 1, a bad value (naming its column and row) or
        a pass without rows.  Sets ``n_rows`` when the pass ends.
        """
        chunk_rows = check_chunk_rows(chunk_rows)
        seen = 0
        for piece in self._pieces(chunk_rows):
            X, y = self._values(piece, seen)
            seen += len(y)
            yield X, y
        if seen == 0:
            raise DataError(f"{self.where}: no data rows")
        self.n_rows = seen

    def _pieces(self, chunk_rows: int) -> Iterator[Any]:
        """Raw pieces of 1 .. ``chunk_rows`` rows (frames, array slices) for :meth:`_values`."""
        raise NotImplementedError

    def _values(self, piece: Any, first_row: int) -> Batch:
        """Validated float64 (X, y) of one piece whose first row has 0-based index ``first_row``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else self.n_rows
        return f"{type(self).__name__}({self.where!r}, n_rows={rows}, n_inputs={self.n_inputs})"


class FrameSource(TableSource):
    """A source whose pieces are pandas frames with the columns ``columns`` (a header, a schema or
    0 .. D−1); ``_used`` lists the input columns in the model's order, then the target."""

    columns: list[str]
    _used: list[int]  # the input columns in the model's order, then the target (choose_columns)
    comma_hint: bool = False  # name text such as "2,5" as a decimal comma that decimal="," reads

    def _values(self, frame, first_row: int) -> Batch:
        if frame.shape[1] != len(self.columns):
            raise DataError(
                f"{self.where}: rows from data row {first_row + 1} on have {frame.shape[1]} fields, "
                f"expected {len(self.columns)}"
            )
        # Only the columns used are read as numbers: a left-out ID or date column may hold text.
        used = frame.iloc[:, self._used]
        values = frame_values(
            used,
            [self.columns[i] for i in self._used],
            self.where,
            first_row,
            self.comma_hint,
            target_column=len(self._used) - 1,
        )
        return split_target(values, len(self._used) - 1)


def rechunk(pieces: Iterable[tuple], chunk_rows: int) -> Iterator[tuple]:
    """Each tuple of row-aligned arrays in ``pieces`` cut into consecutive slices of at most
    ``chunk_rows`` rows (slicing copies nothing: a memory map is paged in only when a slice is read)."""
    for arrays in pieces:
        n = len(arrays[0])
        for start in range(0, n, chunk_rows):
            yield tuple(a[start : start + chunk_rows] for a in arrays)


def check_chunk_rows(chunk_rows: int) -> int:
    if int(chunk_rows) < 1:
        raise DataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def default_names(n_inputs: int) -> list[str]:
    return [f"x{j}" for j in range(n_inputs)]


def is_number(text: str, decimal: str = ".") -> bool:
    """True when ``text`` reads as a number (also nan, inf) with the decimal mark ``decimal``."""
    text = text.strip()
    if decimal != ".":
        if "." in text:
            return False
        text = text.replace(decimal, ".", 1)
    try:
        float(text)
    except ValueError:
        return False
    return True


_DECIMAL_COMMA = re.compile(r"\s*[+-]?\d*,\d+([eE][+-]?\d+)?\s*")


def _first_bad_cell(bad: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first True entry of a (k, D) mask in reading order."""
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    return row, int(np.flatnonzero(bad[row])[0])


def check_finite(values: np.ndarray, names: list[str], where: str, first_row: int) -> None:
    """DataError for the first NaN or infinite entry of ``values``: (k, D), columns ``names``, rows
    numbered from ``first_row`` + 1."""
    finite = np.isfinite(values)
    if finite.all():
        return
    i, j = _first_bad_cell(~finite)
    what = "a missing value or NaN" if np.isnan(values[i, j]) else "an infinite value"
    raise DataError(f"{where}: column {names[j]!r}, row {first_row + i + 1} holds {what}; remove or fill it")


def check_batch(X: np.ndarray, y: np.ndarray, names: list[str], where: str, first_row: int) -> None:
    """:func:`check_finite` of the columns of ``X``: (k, d) followed by ``y``: (k,) (``names``: d + 1),
    without a copy unless a value is bad."""
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        check_finite(np.column_stack([X, y]), names, where, first_row)


def check_numeric_array(a: np.ndarray, what: str) -> None:
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{what} must hold integers or floats, not {a.dtype}")


# what a text cell in a numeric input usually is, and the option that handles it
TEXT_HINT = (
    "(a category? name the column with --categorical; an ID, a date or a note? leave it out with --drop)"
)
# what a text cell in the target usually is: a class label
TARGET_TEXT_HINT = "(class labels? train a classifier with --task classification)"


def frame_values(
    frame,
    names: list[str],
    where: str,
    first_row: int,
    comma_hint: bool = False,
    target_column: int | None = None,
) -> np.ndarray:
    """(k, D) float64 values of a pandas chunk whose columns are ``names``, validated.

    Numeric columns convert directly; text columns are parsed as numbers, and the first entry that
    is not one is reported by column and row (with ``comma_hint``, text such as "2,5" is named as a
    number with a decimal comma; in column ``target_column``, the target, text is named as a class
    label).  Other types (dates, booleans, ...) are rejected.  Raises :class:`DataError`.
    """
    import pandas as pd
    from pandas.api import types

    k, n_cols = frame.shape
    values = np.empty((k, n_cols), dtype=np.float64)
    text = np.zeros((k, n_cols), dtype=bool)
    for j in range(n_cols):
        col = frame.iloc[:, j]
        if types.is_numeric_dtype(col.dtype) and not types.is_bool_dtype(col.dtype):
            values[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        elif types.is_object_dtype(col.dtype) or types.is_string_dtype(col.dtype):
            parsed = pd.to_numeric(col, errors="coerce")
            values[:, j] = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
            text[:, j] = (parsed.isna() & col.notna()).to_numpy()
        else:
            raise DataError(
                f"{where}: column {names[j]!r} has type {col.dtype}, not numbers (row {first_row + 1})"
            )
    if text.any():
        i, j = _first_bad_cell(text | ~np.isfinite(values))
        if text[i, j]:
            cell = str(frame.iat[i, j])
            hint = f" {TARGET_TEXT_HINT if j == target_column else TEXT_HINT}"
            if comma_hint and _DECIMAL_COMMA.fullmatch(cell):
                hint = "; it looks like a number with a decimal comma: read the file with decimal=','"
            raise DataError(
                f"{where}: column {names[j]!r}, row {first_row + i + 1} holds text {cell[:40]!r}, "
                f"not a number{hint}"
            )
        values[text] = np.nan  # an earlier missing or infinite value is reported below
    check_finite(values, names, where, first_row)
    return values


def split_target(values: np.ndarray, target_index: int) -> Batch:
    """(k, D) values -> ``X``: (k, D − 1) C-contiguous, ``y``: (k,) column ``target_index``."""
    y = values[:, target_index].copy()
    X = np.delete(values, target_index, axis=1) if values.shape[1] > 1 else values[:, :0]
    return np.ascontiguousarray(X), y


def choose_columns(
    columns: list[str],
    target: str | int | None,
    where: str,
    allow_index: bool,
    inputs: list[str] | None = None,
    drop: list[str] | None = None,
) -> tuple[list[int], list[str], str]:
    """(used, input names, target name): ``used`` holds the indices of the input columns in the
    order the model takes them, then the target's (:func:`resolve_target` picks the target).

    ``inputs``: the input columns by name (by 0-based index where the columns have no names), in
    the model's order; ``drop``: columns to leave out; neither: every column but the target.  A
    column without a name (pandas writes its index so) is never an input silently: it must be
    dropped (``drop=[""]``) or named.  Raises :class:`DataError` for unknown, repeated or unnamed
    columns, the target among the inputs or dropped, both options given, or no input left.
    """
    index, default_inputs, target_name = resolve_target(columns, target, where, allow_index)
    if inputs is not None and drop is not None:
        raise DataError("choose the inputs with --inputs or --drop, not both")

    def position(column: str) -> int:
        if allow_index:
            try:
                k = int(str(column).strip())
            except ValueError:
                raise DataError(
                    f"{where}: the columns have no names, so inputs are 0-based indices, got {column!r}"
                ) from None
            if not 0 <= k < len(columns):
                raise DataError(f"{where}: column index {k} is out of range (0 .. {len(columns) - 1})")
            return k
        if str(column) not in columns:
            shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
            raise DataError(f"{where}: no column named {str(column)!r}; available columns: {shown}")
        return columns.index(str(column))

    if inputs is not None:
        chosen = [position(c) for c in inputs]
        repeated = sorted({columns[k] for k in chosen if chosen.count(k) > 1})
        if repeated:
            raise DataError(f"{where}: inputs named more than once: {', '.join(repeated)}")
        if index in chosen:
            raise DataError(f"{where}: the target {target_name!r} cannot also be an input")
    else:
        dropped = {position(c) for c in drop or ()}
        if index in dropped:
            raise DataError(f"{where}: the target {target_name!r} cannot be dropped")
        chosen = [k for k in range(len(columns)) if k != index and k not in dropped]
    if not chosen:
        raise DataError(f"{where}: no input columns left")
    if allow_index:
        names = default_inputs if inputs is None and not drop else default_names(len(chosen))
    else:
        unnamed = [k + 1 for k in chosen if not columns[k].strip() or columns[k].startswith("Unnamed: ")]
        if unnamed:
            raise DataError(
                f"{where}: column {unnamed[0]} has no name (pandas writes its index so); save the file "
                "with index=False, or leave the column out with --drop ''"
            )
        names = [columns[k] for k in chosen]
    return [*chosen, index], names, target_name


def resolve_target(
    columns: list[str], target: str | int | None, where: str, allow_index: bool
) -> tuple[int, list[str], str]:
    """Index of the target column, the input names and the target name.

    ``columns`` are the names in the file; ``target`` None means the last column.  With
    ``allow_index`` (no real names) ``target`` is a 0-based index (negative from the end) and the
    result uses the generic names x0.., y; otherwise it is a column name, even one that looks like a
    number.  Raises :class:`DataError` for fewer than 2 columns or an unknown target.
    """
    n_cols = len(columns)
    if n_cols < 2:
        raise DataError(f"{where}: need at least 2 columns (inputs and a target), found {n_cols}")
    if target is None:
        index = n_cols - 1
    elif not allow_index:
        if str(target) not in columns:
            shown = ", ".join(columns[:30]) + (", ..." if n_cols > 30 else "")
            raise DataError(f"{where}: no column named {str(target)!r}; available columns: {shown}")
        index = columns.index(str(target))
    else:
        try:
            index = int(str(target).strip())
        except ValueError:
            raise DataError(
                f"{where}: the columns have no names, so the target must be a 0-based column index "
                f"from 0 to {n_cols - 1} (or negative from the end), got {target!r}"
            ) from None
        if not -n_cols <= index < n_cols:
            raise DataError(
                f"{where}: target column index {index} is out of range for {n_cols} columns "
                f"(0 .. {n_cols - 1}, or negative from the end)"
            )
        index %= n_cols
    if allow_index:
        return index, default_names(n_cols - 1), "y"
    return index, [c for i, c in enumerate(columns) if i != index], columns[index]
