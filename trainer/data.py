"""Tabular training data as re-iterable, validated streams of (X, y) chunks.

A :class:`TableSource` is what :meth:`DirectRegressor.fit_source` reads: every call of
``batches(chunk_rows)`` starts a new pass and yields float64 chunks ``X``: (k, d), ``y``: (k,).
Sources check the data inside the pass, so a bad value deep in a large file is reported with its
column and its 1-based data row (header excluded) as a :class:`DataError`: text in a numeric
column, a missing value or NaN, an infinite value.

:func:`open_table` picks a reader by file extension; one module per kind of source:

- ``.csv``, ``.tsv``, ``.txt`` (optionally ``.gz``/``.bz2``/``.xz``/``.zip`` compressed): pandas in
  chunks (:mod:`~direct_edge.trainer.text_files`: separator, decimal mark and header, each decided
  by a stated rule or given as ``sep=``, ``decimal=``, ``header=``).
- ``.parquet``, ``.pq``: a record batch at a time with pyarrow (:mod:`~direct_edge.trainer.parquet_files`;
  ``pip install direct-edge[parquet]``); pandas index columns are not inputs.
- ``.npz``: arrays ``X`` (n, d) and ``y`` (n,), or one (n, d + 1) array; ``.npy``: one (n, d + 1)
  array, memory-mapped (:mod:`~direct_edge.trainer.array_sources`, also in-memory arrays and
  iterables of batches).

A path that exists is that file, whatever characters its name holds; a path that names no file and
holds a wildcard (``data/*.csv``) is a glob, and every matching file, sorted by name, is read as one
table (the files must have the same columns).  ``source.files`` lists the files read.

The target is the last column unless ``target`` names one; where columns have no names (headerless
text, a single array) ``target`` may be a 0-based column index (negative counts from the end).
CSV and Parquet passes hold one chunk at a time: peak memory O(chunk_rows · columns).

:func:`split_source` holds out a test set chosen by a hash of each row's global index, so the split is
the same on every pass and for every chunk size.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from direct_edge.errors import one_line
from direct_edge.trainer.array_sources import ArraySource, IterableSource, MatrixSource, open_npy, open_npz
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, InputMoments
from direct_edge.trainer.parquet_files import ParquetSource
from direct_edge.trainer.statistics import SufficientStatistics, compute_statistics
from direct_edge.trainer.tables import (
    Batch,
    TableSource,
)
from direct_edge.trainer.text_files import COMPRESSION_SUFFIXES, TEXT_SUFFIXES, CSVSource, suffixes

__all__ = [
    "ARRAY_SUFFIXES",
    "COMPRESSION_SUFFIXES",
    "PARQUET_SUFFIXES",
    "TEXT_SUFFIXES",
    "ArraySource",
    "Batch",
    "CSVSource",
    "IterableSource",
    "MatrixSource",
    "MultiFileSource",
    "ParquetSource",
    "TableSource",
    "data_files",
    "held_out_rows",
    "is_dask_collection",
    "is_glob",
    "open_file",
    "open_files",
    "open_table",
    "read_arrays",
    "source_moments",
    "source_statistics",
    "split_source",
]

PARQUET_SUFFIXES = (".parquet", ".pq")
ARRAY_SUFFIXES = (".npz", ".npy")
# Rows per read when a whole source is gathered or split (independent of the user's chunk size).
_GATHER_ROWS = 65536


# ---- opening files ------------------------------------------------------------------------------


def is_glob(path: str) -> bool:
    """True when ``path`` holds a glob wildcard (*, ? or [)."""
    return any(c in path for c in "*?[")


def data_files(path: str | os.PathLike) -> list[str]:
    """The files ``path`` names: ``[path]`` when it exists (or holds no wildcard), else the files
    matching it as a glob pattern, sorted by name.  Raises :class:`DataError` when a pattern matches
    nothing."""
    text = os.fspath(path)
    if os.path.exists(text) or not is_glob(text):
        return [text]
    files = sorted(glob.glob(text))
    if not files:
        raise DataError(f"no data files match {text!r}")
    return files


def open_file(
    path: str | os.PathLike,
    target: str | None = None,
    *,
    sep: str | None = None,
    decimal: str = ".",
    header: bool | None = None,
    inputs: list[str] | None = None,
    drop: list[str] | None = None,
) -> TableSource:
    """A :class:`TableSource` for one data file, chosen by extension (see the module docstring);
    ``sep``, ``decimal`` and ``header`` apply to text files only; ``inputs`` or ``drop`` choose the
    input columns of text and Parquet files (:func:`direct_edge.trainer.tables.choose_columns`).
    Raises :class:`DataError` for a missing, unreadable or empty file, an unknown extension or an
    unknown column."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.is_dir():
        raise DataError(f"data path is a directory, not a file: {p}")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or one_line(exc)}") from None
    kind, compression = suffixes(p)
    if kind in TEXT_SUFFIXES:
        return CSVSource(p, target, sep=sep, decimal=decimal, header=header, inputs=inputs, drop=drop)
    if not compression and kind in PARQUET_SUFFIXES:
        return ParquetSource(p, target, inputs, drop)
    if inputs is not None or drop is not None:
        raise DataError(f"{p}: choosing input columns needs a CSV, TSV, TXT or Parquet file")
    if not compression and kind == ".npz":
        return open_npz(p, target)
    if not compression and kind == ".npy":
        return open_npy(p, target)
    known = [*TEXT_SUFFIXES, *(s + ".gz" for s in TEXT_SUFFIXES), *PARQUET_SUFFIXES, *ARRAY_SUFFIXES]
    raise DataError(
        f"{p}: unknown file type {''.join(p.suffixes) or '(no extension)'!r}; use one of {', '.join(known)}"
    )


def open_table(
    path: str | os.PathLike,
    target: str | None = None,
    *,
    sep: str | None = None,
    decimal: str = ".",
    header: bool | None = None,
    inputs: list[str] | None = None,
    drop: list[str] | None = None,
) -> TableSource:
    """A :class:`TableSource` for a data file, or for every file a glob pattern matches read as one
    table (see :func:`data_files`); ``source.files`` lists them.  ``inputs``/``drop``: as for
    :func:`open_file`.

    ``target``: the target column's name (or, where columns have no names, its 0-based index);
    default the last column.  Text files only: ``sep`` (None: by extension, sniffed for .txt),
    ``decimal`` (default "."), ``header`` (None: decided from the first row; True, False).  Raises
    :class:`DataError` for a missing, unreadable or empty file, an unknown extension, an unknown
    column or files with different columns; bad values are reported during each pass.
    """
    files = data_files(path)
    sources = [
        open_file(f, target, sep=sep, decimal=decimal, header=header, inputs=inputs, drop=drop) for f in files
    ]
    if len(sources) == 1:
        return sources[0]
    return MultiFileSource(sources, f"{os.fspath(path)} ({len(files)} files)")


def open_files(pattern: str, target: str | None = None, **options) -> TableSource:
    """Every file matching the glob ``pattern`` (sorted by name) as one table: :func:`open_table`."""
    return open_table(pattern, target, **options)


class MultiFileSource(TableSource):
    """Several files with the same columns, read one after the other as one table.
    Raises :class:`DataError` when their input columns differ."""

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
        self.files = tuple(f for s in sources for f in s.files)
        rows = [s.n_rows for s in sources]
        self.n_rows = None if None in rows else int(sum(rows))

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        for source in self.sources:
            yield from source.batches(chunk_rows)
        self.n_rows = int(sum(s.n_rows for s in self.sources))


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
        self.files = base.files
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
    if feature_map.rotation is not None:
        stats = source_statistics(source, feature_map.unrotated(), chunk_rows, progress, precision)
        return stats.rotated(feature_map.rotation)
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
