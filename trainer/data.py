"""Tabular training data as re-iterable, validated streams of (X, y) chunks.

A :class:`TableSource` is what :meth:`DirectRegressor.fit_source` reads: every call of
``batches(chunk_rows)`` starts a new pass and yields float64 chunks ``X``: (k, d), ``y``: (k,).
Sources check the data inside the pass, so a bad value deep in a large file is reported with its
column and its 1-based data row (header excluded) as a :class:`DataError`: text in a numeric
column, a missing value or NaN, an infinite value.

:func:`open_table` picks a reader by file extension:

- ``.csv``, ``.tsv``, ``.txt`` (optionally ``.gz``/``.bz2``/``.xz`` compressed): read with pandas in
  chunks.  ``.txt`` files are comma separated when the first line holds a comma, tab separated when
  it holds a tab, whitespace separated otherwise.  The first row is a header unless every field in
  it is a number (or empty); a headerless file's inputs are named ``x0 .. x{d-1}`` in file order
  (the target column removed) and its target ``y``.
- ``.parquet``, ``.pq``: read a record batch at a time with pyarrow (``pip install direct-edge[parquet]``).
- ``.npz``: arrays ``X`` (n, d) and ``y`` (n,), or one (n, d + 1) array; ``.npy``: one (n, d + 1)
  array, memory-mapped.

A glob (``data/*.csv``) opens every matching file, sorted by name, as one table (:func:`open_files`);
the files must have the same columns.

The target is the last column unless ``target`` names one; where columns have no names (headerless
text, a single array) ``target`` may be a 0-based column index (negative counts from the end).
CSV and Parquet passes hold one chunk at a time: peak memory O(chunk_rows · columns).

:func:`split_source` holds out a test set chosen by a hash of each row's global index, so the split is
the same on every pass and for every chunk size.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, InputMoments
from direct_edge.trainer.statistics import SufficientStatistics, compute_statistics

Batch = tuple[np.ndarray, np.ndarray]

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
PARQUET_SUFFIXES = (".parquet", ".pq")
ARRAY_SUFFIXES = (".npz", ".npy")
# Rows per read when a whole source is gathered or split (independent of the user's chunk size).
_GATHER_ROWS = 65536


class TableSource:
    """A re-iterable table of numeric inputs and one numeric target.

    ``input_names``: d column names; ``target_name``; ``n_inputs`` = d; ``n_rows``: number of data
    rows, or None while unknown (text files learn it at the end of their first pass).
    ``named_columns``: True when the names come from the data (a header, a Parquet schema).
    """

    input_names: list[str]
    target_name: str
    n_rows: int | None = None
    named_columns: bool = False
    where: str = "data"

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        """One pass: float64 chunks ``X``: (k, d), ``y``: (k,) with 1 <= k <= ``chunk_rows``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else self.n_rows
        return f"{type(self).__name__}({self.where!r}, n_rows={rows}, n_inputs={self.n_inputs})"


def _check_chunk_rows(chunk_rows: int) -> int:
    if int(chunk_rows) < 1:
        raise DataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def _default_names(n_inputs: int) -> list[str]:
    return [f"x{j}" for j in range(n_inputs)]


def _first_bad_cell(bad: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first True entry of a (k, D) mask in reading order."""
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    return row, int(np.flatnonzero(bad[row])[0])


def _check_finite(values: np.ndarray, names: list[str], where: str, first_row: int) -> None:
    """DataError for the first NaN or infinite entry of ``values``: (k, D), rows numbered from
    ``first_row`` + 1."""
    finite = np.isfinite(values)
    if finite.all():
        return
    i, j = _first_bad_cell(~finite)
    what = "a missing value or NaN" if np.isnan(values[i, j]) else "an infinite value"
    raise DataError(f"{where}: column {names[j]!r}, row {first_row + i + 1} holds {what}; remove or fill it")


def _frame_values(frame, names: list[str], where: str, first_row: int) -> np.ndarray:
    """(k, D) float64 values of a pandas chunk whose columns are ``names``, validated.

    Numeric columns convert directly; text columns are parsed as numbers, and the first entry that
    is not one is reported by column and row.  Other types (dates, booleans, ...) are rejected.
    """
    from pandas.api import types

    k, n_cols = frame.shape
    values = np.empty((k, n_cols), dtype=np.float64)
    text = np.zeros((k, n_cols), dtype=bool)
    for j in range(n_cols):
        col = frame.iloc[:, j]
        if types.is_numeric_dtype(col.dtype) and not types.is_bool_dtype(col.dtype):
            values[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        elif types.is_object_dtype(col.dtype) or types.is_string_dtype(col.dtype):
            import pandas as pd

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
            raise DataError(
                f"{where}: column {names[j]!r}, row {first_row + i + 1} holds text "
                f"{str(frame.iat[i, j])[:40]!r}, not a number"
            )
        values[text] = np.nan  # an earlier missing or infinite value is reported below
    _check_finite(values, names, where, first_row)
    return values


def _split_target(values: np.ndarray, target_index: int) -> Batch:
    y = values[:, target_index].copy()
    X = np.delete(values, target_index, axis=1) if values.shape[1] > 1 else values[:, :0]
    return np.ascontiguousarray(X), y


def _resolve_target(
    columns: list[str], target: str | None, where: str, allow_index: bool
) -> tuple[int, list[str], str]:
    """Index of the target column, the input names and the target name.

    ``columns`` are the names in the file; with ``allow_index`` (no real names) ``target`` may be a
    0-based index and the result uses the generic names x0.., y.
    """
    n_cols = len(columns)
    if n_cols < 2:
        raise DataError(f"{where}: need at least 2 columns (inputs and a target), found {n_cols}")
    if target is None:
        index = n_cols - 1
    elif not allow_index and target in columns:
        index = columns.index(target)
    else:
        index = None
        if allow_index:
            try:
                index = int(str(target).strip())
            except ValueError:
                index = None
            if index is not None and not -n_cols <= index < n_cols:
                raise DataError(
                    f"{where}: target column index {index} is out of range for {n_cols} columns "
                    f"(0 .. {n_cols - 1}, or negative from the end)"
                )
        if index is None:
            if allow_index:
                raise DataError(
                    f"{where}: the columns have no names, so the target must be a 0-based column index "
                    f"from 0 to {n_cols - 1} (or negative from the end), got {target!r}"
                )
            shown = ", ".join(columns[:30]) + (", ..." if n_cols > 30 else "")
            raise DataError(f"{where}: no column named {target!r}; available columns: {shown}")
        index %= n_cols
    if allow_index:
        return index, _default_names(n_cols - 1), "y"
    return index, [c for i, c in enumerate(columns) if i != index], columns[index]


# ---- text files ---------------------------------------------------------------------------------


def _suffixes(path: Path) -> tuple[str, str]:
    """(format suffix, compression suffix or "") of a file name, lower case."""
    sufs = [s.lower() for s in path.suffixes]
    if sufs and sufs[-1] in COMPRESSION_SUFFIXES:
        return (sufs[-2] if len(sufs) > 1 else ""), sufs[-1]
    return (sufs[-1] if sufs else ""), ""


def _open_text(path: Path, compression: str):
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(compression)
    if opener is None:
        return open(path, encoding="utf-8", errors="replace")
    return opener(path, "rt", encoding="utf-8", errors="replace")


_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error, lzma.LZMAError)


class CSVSource(TableSource):
    """A delimited text file read with pandas ``chunksize`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, target: str | None = None) -> None:
        import pandas as pd

        self.path = Path(path)
        self.where = str(path)
        kind, compression = _suffixes(self.path)
        self._compression = {"": None, ".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}[compression]
        self._sep = {".csv": ",", ".tsv": "\t"}.get(kind) or self._sniff_separator(compression)
        try:
            head = pd.read_csv(
                self.path,
                sep=self._sep,
                header=None,
                nrows=2,
                dtype=str,
                keep_default_na=False,
                compression=self._compression,
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.where}: the file is empty (no header, no data rows)") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.where}: not UTF-8 text ({_one_line(exc)}); save it as UTF-8") from None
        except (pd.errors.ParserError, *_READ_ERRORS) as exc:
            raise DataError(f"{self.where}: cannot read as a table ({_one_line(exc)})") from None
        first = [str(v).strip() for v in head.iloc[0]]
        if len(first) < 2:
            shown = {",": "commas", "\t": "tabs"}.get(self._sep, "whitespace")
            raise DataError(
                f"{self.where}: need at least 2 columns (inputs and a target) separated by {shown}, found 1"
            )
        self.has_header = any(v != "" and not _is_number(v) for v in first)
        n_data = len(head) - (1 if self.has_header else 0)
        if n_data < 1:
            raise DataError(f"{self.where}: the file has a header but no data rows")
        if self.has_header:
            columns = first
            dupes = sorted({c for c in columns if columns.count(c) > 1})
            if dupes:
                raise DataError(f"{self.where}: duplicate column names in the header: {', '.join(dupes)}")
        else:
            columns = [str(j) for j in range(len(first))]
        self.columns = columns
        self.named_columns = self.has_header
        self._target_index, self.input_names, self.target_name = _resolve_target(
            columns, target, self.where, allow_index=not self.has_header
        )
        self.n_rows = None

    def _sniff_separator(self, compression: str) -> str:
        try:
            with _open_text(self.path, compression) as f:
                for line in f:
                    if line.strip():
                        break
                else:
                    line = ""
        except _READ_ERRORS as exc:
            raise DataError(f"{self.where}: cannot read ({_one_line(exc)})") from None
        if "," in line:
            return ","
        return "\t" if "\t" in line else r"\s+"

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        import pandas as pd

        chunk_rows = _check_chunk_rows(chunk_rows)
        names = self.columns
        n_cols = len(names)
        seen = 0
        try:
            reader = pd.read_csv(
                self.path,
                sep=self._sep,
                header=0 if self.has_header else None,
                chunksize=chunk_rows,
                compression=self._compression,
                skipinitialspace=True,
                index_col=False,
            )
            with reader:
                for frame in reader:
                    if frame.shape[1] != n_cols:
                        raise DataError(
                            f"{self.where}: rows from data row {seen + 1} on have {frame.shape[1]} "
                            f"fields, expected {n_cols}"
                        )
                    values = _frame_values(frame, names, self.where, seen)
                    seen += len(frame)
                    yield _split_target(values, self._target_index)
        except pd.errors.EmptyDataError:
            pass
        except (pd.errors.ParserError, *_READ_ERRORS) as exc:
            raise DataError(f"{self.where}: cannot parse ({_one_line(exc)})") from None
        if seen == 0:
            raise DataError(f"{self.where}: no data rows")
        self.n_rows = seen


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- Parquet ------------------------------------------------------------------------------------


class ParquetSource(TableSource):
    """A Parquet file read one record batch at a time with pyarrow."""

    def __init__(self, path: str | os.PathLike, target: str | None = None) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{path}: reading Parquet needs pyarrow; install it with: pip install direct-edge[parquet]"
            ) from None
        self.path = Path(path)
        self.where = str(path)
        try:
            with pq.ParquetFile(self.path) as file:
                self.columns = list(file.schema_arrow.names)
                self.n_rows = int(file.metadata.num_rows)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{self.where}: not a readable Parquet file ({_one_line(exc)})") from None
        self.named_columns = True
        self._target_index, self.input_names, self.target_name = _resolve_target(
            self.columns, target, self.where, allow_index=False
        )
        if self.n_rows == 0:
            raise DataError(f"{self.where}: no data rows")

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        chunk_rows = _check_chunk_rows(chunk_rows)
        seen = 0
        try:
            with pq.ParquetFile(self.path) as file:
                for batch in file.iter_batches(batch_size=chunk_rows, columns=self.columns):
                    if batch.num_rows == 0:
                        continue
                    values = _frame_values(batch.to_pandas(), self.columns, self.where, seen)
                    seen += batch.num_rows
                    yield _split_target(values, self._target_index)
        except (OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{self.where}: cannot read ({_one_line(exc)})") from None
        if seen == 0:
            raise DataError(f"{self.where}: no data rows")


# ---- arrays -------------------------------------------------------------------------------------


def _check_numeric_array(a: np.ndarray, what: str) -> None:
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{what} must hold integers or floats, not {a.dtype}")


class ArraySource(TableSource):
    """In-memory arrays or memory maps ``X``: (n, d) and ``y``: (n,), read a slice at a time
    (a memory map is only paged in chunk by chunk)."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        input_names: list[str] | None = None,
        target_name: str = "y",
        where: str = "arrays",
    ) -> None:
        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        y = y if isinstance(y, np.ndarray) else np.asarray(y)
        self.where = where
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise DataError(
                f"{where}: X must be (n, d) and y (n,) with the same n; got {X.shape} and {y.shape}"
            )
        _check_numeric_array(X, f"{where}: X")
        _check_numeric_array(y, f"{where}: y")
        if X.shape[0] == 0:
            raise DataError(f"{where}: no data rows")
        if X.shape[1] == 0:
            raise DataError(f"{where}: X has no input columns")
        self.X, self.y = X, y
        self.input_names = list(input_names) if input_names is not None else _default_names(X.shape[1])
        if len(self.input_names) != X.shape[1]:
            raise DataError(f"{where}: {len(self.input_names)} input names for {X.shape[1]} columns")
        self.target_name = target_name
        self.named_columns = input_names is not None
        self.n_rows = int(X.shape[0])

    def _rows(self, start: int, stop: int) -> Batch:
        return np.asarray(self.X[start:stop], dtype=np.float64), np.asarray(
            self.y[start:stop], dtype=np.float64
        )

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        chunk_rows = _check_chunk_rows(chunk_rows)
        names = [*self.input_names, self.target_name]
        for start in range(0, self.n_rows, chunk_rows):
            X, y = self._rows(start, min(start + chunk_rows, self.n_rows))
            _check_finite(X, names, self.where, start)
            _check_finite(y[:, None], [self.target_name], self.where, start)
            yield X, y


class _MatrixSource(ArraySource):
    """One (n, D) array (or memory map) whose column ``target_index`` is the target."""

    def __init__(self, matrix: np.ndarray, target: str | None, where: str) -> None:
        if matrix.ndim != 2:
            raise DataError(f"{where}: expected a 2-D array (rows × columns), got shape {matrix.shape}")
        _check_numeric_array(matrix, where)
        self.matrix = matrix
        columns = [str(j) for j in range(matrix.shape[1])]
        self._target_index, names, target_name = _resolve_target(columns, target, where, allow_index=True)
        if matrix.shape[0] == 0:
            raise DataError(f"{where}: no data rows")
        self.where = where
        self.input_names, self.target_name = names, target_name
        self.named_columns = False
        self.n_rows = int(matrix.shape[0])

    def _rows(self, start: int, stop: int) -> Batch:
        return _split_target(np.asarray(self.matrix[start:stop], dtype=np.float64), self._target_index)


def _open_npz(path: Path, target: str | None) -> TableSource:
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{where}: not a readable .npz file ({_one_line(exc)})") from None
    if "X" in arrays and "y" in arrays:
        if target not in (None, "y"):
            raise DataError(f"{where}: holds arrays X and y, so the target is y (got --target {target!r})")
        return ArraySource(arrays["X"], arrays["y"], where=where)
    if len(arrays) == 1:
        return _MatrixSource(next(iter(arrays.values())), target, where)
    names = ", ".join(arrays) or "none"
    raise DataError(f"{where}: expected arrays 'X' and 'y', or a single 2-D array; found {names}")


def _open_npy(path: Path, target: str | None) -> TableSource:
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({_one_line(exc)})") from None
    return _MatrixSource(matrix, target, str(path))


# ---- any iterable -------------------------------------------------------------------------------


class IterableSource(TableSource):
    """Batches from ``factory()``, a zero-argument callable returning a fresh iterator of (X, y)
    pairs on every call (e.g. a generator function reading a database).  Batches of any size are
    re-cut into chunks of at most ``chunk_rows`` rows and validated.  ``n_inputs`` is read from the
    first batch unless given."""

    def __init__(
        self,
        factory: Callable[[], Iterable[Batch]],
        n_inputs: int | None = None,
        n_rows: int | None = None,
        input_names: list[str] | None = None,
        target_name: str = "y",
        where: str = "batches",
    ) -> None:
        if not callable(factory):
            raise TypeError("factory must be a zero-argument callable returning an iterator of (X, y)")
        self.factory = factory
        self.where = where
        if input_names is not None:
            n_inputs = len(input_names)
        if n_inputs is None:
            for X, _ in factory():
                X = np.asarray(X)
                n_inputs = X.shape[1] if X.ndim == 2 else 1
                break
            else:
                raise DataError(f"{where}: no data rows")
        self.input_names = list(input_names) if input_names is not None else _default_names(int(n_inputs))
        self.target_name = target_name
        self.named_columns = input_names is not None
        self.n_rows = n_rows

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        chunk_rows = _check_chunk_rows(chunk_rows)
        names = [*self.input_names, self.target_name]
        d = self.n_inputs
        seen = 0
        for X, y in self.factory():
            X = np.asarray(X)
            y = np.asarray(y).reshape(-1)
            if X.ndim == 1 and d == 1:
                X = X.reshape(-1, 1)
            if X.ndim != 2 or X.shape[1] != d or X.shape[0] != y.shape[0]:
                raise DataError(
                    f"{self.where}: each batch must be X: (k, {d}) and y: (k,); got {X.shape} and {y.shape} "
                    f"at row {seen + 1}"
                )
            _check_numeric_array(X, f"{self.where}: X")
            _check_numeric_array(y, f"{self.where}: y")
            for start in range(0, X.shape[0], chunk_rows):
                Xc = np.asarray(X[start : start + chunk_rows], dtype=np.float64)
                yc = np.asarray(y[start : start + chunk_rows], dtype=np.float64)
                _check_finite(np.column_stack([Xc, yc]), names, self.where, seen)
                seen += Xc.shape[0]
                yield Xc, yc
        if seen == 0:
            raise DataError(f"{self.where}: no data rows")
        self.n_rows = seen


# ---- opening files ------------------------------------------------------------------------------


def open_table(path: str | os.PathLike, target: str | None = None) -> TableSource:
    """A :class:`TableSource` for a data file, chosen by extension (see the module docstring).

    ``target``: the target column's name (or, where columns have no names, its 0-based index);
    default the last column.  A glob pattern (``data/*.csv``) opens every matching file as one
    table (:func:`open_files`).  Raises :class:`DataError` for a missing, unreadable or empty file, an
    unknown extension or an unknown column; bad values are reported during each pass.
    """
    if is_glob(str(path)):
        return open_files(str(path), target)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        raise DataError(f"data path is a directory, not a file: {p}")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or _one_line(exc)}") from None
    kind, compression = _suffixes(p)
    if kind in TEXT_SUFFIXES:
        return CSVSource(p, target)
    if not compression and kind in PARQUET_SUFFIXES:
        return ParquetSource(p, target)
    if not compression and kind == ".npz":
        return _open_npz(p, target)
    if not compression and kind == ".npy":
        return _open_npy(p, target)
    known = ", ".join(
        [*TEXT_SUFFIXES, *(s + ".gz" for s in TEXT_SUFFIXES), *PARQUET_SUFFIXES, *ARRAY_SUFFIXES]
    )
    raise DataError(f"{p}: unknown file type {''.join(p.suffixes) or '(no extension)'!r}; use one of {known}")


class MultiFileSource(TableSource):
    """Several files with the same columns, read one after the other as one table."""

    def __init__(self, sources: list[TableSource], where: str) -> None:
        first = sources[0]
        for other in sources[1:]:
            if other.n_inputs != first.n_inputs or (
                first.named_columns and other.named_columns and other.input_names != first.input_names
            ):
                raise DataError(
                    f"{other.where} has input columns {', '.join(other.input_names)}; "
                    f"{first.where} has {', '.join(first.input_names)}"
                )
        self.sources = sources
        self.input_names, self.target_name = list(first.input_names), first.target_name
        self.named_columns = first.named_columns
        self.where = where
        rows = [s.n_rows for s in sources]
        self.n_rows = None if None in rows else int(sum(rows))

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        for source in self.sources:
            yield from source.batches(chunk_rows)
        self.n_rows = int(sum(s.n_rows for s in self.sources))


def is_glob(path: str) -> bool:
    """True when ``path`` holds a glob wildcard (*, ? or [)."""
    return any(c in path for c in "*?[")


def open_files(pattern: str, target: str | None = None) -> TableSource:
    """Every file matching the glob ``pattern`` (sorted by name) as one table; each file is opened
    with :func:`open_table` and must have the same columns."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(f"no data files match {pattern!r}")
    sources = [open_table(f, target) for f in files]
    if len(sources) == 1:
        return sources[0]
    return MultiFileSource(sources, f"{pattern} ({len(files)} files)")


def read_arrays(source: TableSource, chunk_rows: int = _GATHER_ROWS) -> Batch:
    """The whole source in memory: ``X``: (n, d), ``y``: (n,) float64 (for test sets and small data)."""
    Xs, ys = [], []
    for X, y in source.batches(chunk_rows):
        Xs.append(X)
        ys.append(y)
    if not Xs:
        raise DataError(f"{source.where}: no data rows")
    return np.concatenate(Xs), np.concatenate(ys)


# ---- train/test split ---------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def held_out_rows(start: int, count: int, test_fraction: float, seed: int) -> np.ndarray:
    """(count,) bool: which of the rows ``start .. start + count − 1`` (0-based global indices) are
    held out.  Row i is held out when u_i < ``test_fraction``, u_i = hash(seed, i) / 2^64 uniform in
    [0, 1): a function of the row index alone, so any chunking gives the same split."""
    key = _splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))
    index = np.arange(start, start + count, dtype=np.uint64)
    u = (_splitmix64(index ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u < test_fraction


class _SplitSource(TableSource):
    """The rows of ``base`` that :func:`held_out_rows` keeps for training."""

    def __init__(self, base: TableSource, test_fraction: float, seed: int, n_rows: int) -> None:
        self.base = base
        self.test_fraction, self.seed = float(test_fraction), int(seed)
        self.input_names, self.target_name = list(base.input_names), base.target_name
        self.named_columns = base.named_columns
        self.where = base.where
        self.n_rows = n_rows

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        start = 0
        for X, y in self.base.batches(chunk_rows):
            keep = ~held_out_rows(start, len(y), self.test_fraction, self.seed)
            start += len(y)
            if keep.all():
                yield X, y
            elif keep.any():
                yield X[keep], y[keep]


def split_source(
    source: TableSource, test_fraction: float, seed: int = 0
) -> tuple[TableSource, np.ndarray, np.ndarray]:
    """Hold out about ``test_fraction`` of the rows (chosen by :func:`held_out_rows`).

    Returns a training source that skips the held-out rows on every pass, and the held-out
    ``X_test``: (m, d), ``y_test``: (m,) in memory.  One pass over ``source`` happens here.
    """
    f = float(test_fraction)
    if not 0.0 < f < 1.0:
        raise DataError(f"the test fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    Xs, ys, start, n_train = [], [], 0, 0
    for X, y in source.batches(_GATHER_ROWS):
        held = held_out_rows(start, len(y), f, seed)
        start += len(y)
        n_train += int((~held).sum())
        if held.any():
            Xs.append(X[held])
            ys.append(y[held])
    if not Xs:
        raise DataError(
            f"{source.where}: no rows were held out from {start} (test fraction {f}); "
            "use more data or a larger test fraction"
        )
    if n_train == 0:
        raise DataError(f"{source.where}: every row was held out; use a smaller test fraction")
    return _SplitSource(source, f, seed, n_train), np.concatenate(Xs), np.concatenate(ys)


# ---- one pass of each kind over any source --------------------------------------------------------


def is_dask_collection(obj) -> bool:
    """True for a dask Array, DataFrame or Series, decided without importing dask."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "to_delayed")


def source_moments(source: TableSource, chunk_rows: int) -> tuple[InputMoments, InputMoments]:
    """Input moments (d columns) and target moments (1 column) in one pass over ``source``.

    A source with its own ``moments(chunk_rows)`` (a Dask source: one partial per partition on the
    workers) computes them itself."""
    own = getattr(source, "moments", None)
    if callable(own):
        return own(chunk_rows)
    moments, y_moments = InputMoments(), InputMoments()
    for X, y in source.batches(chunk_rows):
        moments.update(X)
        y_moments.update(np.asarray(y, dtype=np.float64).reshape(-1, 1))
    return moments, y_moments


def source_statistics(
    source: TableSource,
    feature_map: FeatureMap,
    chunk_rows: int,
    progress: bool = False,
    precision: str = "float64",
) -> SufficientStatistics:
    """One statistics pass (docs/trainer.md §4) over ``source``; a source with its own
    ``statistics(feature_map, chunk_rows, precision)`` (a Dask source, §10) computes it itself."""
    own = getattr(source, "statistics", None)
    if callable(own):
        return own(feature_map, chunk_rows, precision)
    n = getattr(source, "n_rows", None)
    return compute_statistics(
        feature_map,
        source.batches(chunk_rows),
        chunk_rows,
        progress,
        None if n is None else int(n),
        precision,
    )
