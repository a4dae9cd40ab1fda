"""Sufficient statistics with Dask: one partial per partition, summed (docs/trainer.md §10).

Statistics of disjoint row sets add (§4), so every partition of a dask collection is turned into its
own :class:`SufficientStatistics` where it lives (``compute_statistics`` with one thread: the Dask
workers are the parallelism) and the partials are added pairwise in a tree of ``+`` tasks.  Only
b×b matrices travel; the data never leave the workers.  The same goes for the input moments and for
scoring a fitted model.

:class:`DaskSource` is a :class:`~direct_edge.trainer.data.TableSource` over a dask DataFrame, a
dask Array (X and y, or one (n, d + 1) array) or a glob of CSV/Parquet files
(:meth:`DaskSource.from_files`), so ``DirectRegressor.fit_source`` and ``direct-train --scheduler``
use it like any other source.  ``DirectRegressor.fit`` accepts dask collections directly.  The
computation runs on the current Dask scheduler: a ``distributed.Client`` when one exists (for
example ``Client("tcp://host:8786")``), otherwise Dask's local threads.

This module imports dask; nothing else in the trainer does (a plain ``direct-train`` never loads it).
"""

from __future__ import annotations

import contextlib
import operator
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import dask
    from dask import delayed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Dask path needs dask; install it with: pip install 'direct-edge[dask]'") from exc

from direct_edge.trainer.data import (
    PARQUET_SUFFIXES,
    TEXT_SUFFIXES,
    Batch,
    CSVSource,
    TableSource,
    data_files,
    open_table,
)
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, InputMoments
from direct_edge.trainer.statistics import (
    DEFAULT_CHUNK_ROWS,
    SufficientStatistics,
    array_batches,
    compute_statistics,
)
from direct_edge.trainer.tables import check_finite, frame_values, rechunk, resolve_target, split_target
from direct_edge.trainer.text_files import suffixes

# ---- work done on the workers --------------------------------------------------------------------


def _frame_to_arrays(frame, names: list[str], target_index: int, where: str) -> Batch:
    """A pandas partition -> validated float64 (X: (k, d), y: (k,))."""
    if list(frame.columns) != names:
        raise DataError(f"{where}: columns {list(frame.columns)}, expected {names}")
    return split_target(frame_values(frame, names, where, 0, target_column=target_index), target_index)


def _frame_pair_to_arrays(frame, target, names: list[str], where: str) -> Batch:
    """Partitions of an input DataFrame and of a target Series/DataFrame -> (X, y)."""
    X = frame_values(frame, names, where, 0)
    y_values = np.asarray(target, dtype=np.float64).reshape(len(frame), -1)
    if y_values.shape != (X.shape[0], 1):
        raise DataError(f"{where}: target partition has shape {y_values.shape}, inputs {X.shape}")
    check_finite(y_values, ["y"], where, 0)
    return X, y_values[:, 0]


def _blocks_to_arrays(X, y, names: list[str], target_name: str, where: str) -> Batch:
    """Blocks of a dask Array pair -> validated float64 (X, y)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise DataError(f"{where}: blocks X {X.shape} and y {y.shape} do not line up")
    check_finite(X, names, where, 0)
    check_finite(y[:, None], [target_name], where, 0)
    return X, y


def _matrix_block_to_arrays(M, target_index: int, names: list[str], where: str) -> Batch:
    M = np.asarray(M, dtype=np.float64)
    check_finite(M, names, where, 0)
    return split_target(M, target_index)


def _partition_statistics(
    part: Batch, fmap: FeatureMap, chunk_rows: int, precision: str
) -> SufficientStatistics:
    X, y = part
    stats = compute_statistics(
        fmap, array_batches(X, y, chunk_rows), chunk_rows, precision=precision, threads=1
    )
    return stats


def _partition_moments(part: Batch) -> tuple[InputMoments, InputMoments]:
    X, y = part
    return InputMoments().update(X), InputMoments().update(y.reshape(-1, 1))


def _merge_moment_pairs(a: tuple, b: tuple) -> tuple[InputMoments, InputMoments]:
    return a[0] + b[0], a[1] + b[1]


def _partition_scores(part: Batch, model) -> np.ndarray:
    """(rows, Σ squared error, Σ Gaussian NLPD) of a fitted regressor on one partition."""
    X, y = part
    if len(y) == 0:
        return np.zeros(3)
    mean, sd = model.predict_rows(X)
    var = sd * sd
    resid2 = (y - mean) ** 2
    return np.array([len(y), resid2.sum(), np.sum(0.5 * np.log(2.0 * np.pi * var) + resid2 / (2.0 * var))])


def tree_reduce(partials: list, combine: Callable[[Any, Any], Any]):
    """One delayed value: ``partials`` combined pairwise, level by level (depth log2 P)."""
    if not partials:
        raise DataError("the dask collection has no partitions")
    level = list(partials)
    while len(level) > 1:
        nxt = [delayed(combine)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# ---- the source ----------------------------------------------------------------------------------


class DaskSource(TableSource):
    """A table held by a dask collection: one delayed (X, y) per partition.

    Build with :meth:`from_collection` (DataFrame + target column name, DataFrame + Series, Array X +
    Array y, or one (n, d + 1) Array + target column index) or :meth:`from_files` (a CSV or Parquet
    glob).  :meth:`statistics`, :meth:`moments` and :meth:`scores` run one task per partition and a
    tree of merges on the current Dask scheduler; :meth:`batches` brings the partitions to this
    process one at a time (for code that needs the rows themselves).
    """

    def __init__(
        self, parts: list, input_names: list[str], target_name: str, where: str, named: bool
    ) -> None:
        self.parts = parts
        self.input_names, self.target_name = list(input_names), target_name
        self.where = where
        self.named_columns = named
        self.n_rows = None

    # -- construction --

    @classmethod
    def from_collection(cls, X, y=None, target: str | int | None = None) -> DaskSource:
        """``X``: dask DataFrame or Array; ``y``: dask Series/Array with the same partitions, or None
        with the target a column of ``X`` (``target``: its name, or index for an Array; default last)."""
        kind = type(X).__name__
        if hasattr(X, "columns"):  # dask DataFrame
            columns = [str(c) for c in X.columns]
            if y is None:
                index, names, target_name = resolve_target(
                    columns, target, "dask DataFrame", allow_index=False
                )
                where = "dask DataFrame"
                parts = [
                    delayed(_frame_to_arrays)(p, columns, index, f"{where} partition {i}")
                    for i, p in enumerate(X.to_delayed())
                ]
                return cls(parts, names, target_name, where, True)
            if hasattr(y, "chunks") or not hasattr(y, "npartitions") or y.npartitions != X.npartitions:
                raise DataError("with a dask DataFrame X, y must be a dask Series with the same partitions")
            target_name = str(y.name) if y.name is not None else "y"
            where = "dask DataFrame"
            parts = [
                delayed(_frame_pair_to_arrays)(p, t, columns, f"{where} partition {i}")
                for i, (p, t) in enumerate(zip(X.to_delayed(), y.to_delayed(), strict=True))
            ]
            return cls(parts, columns, target_name, where, True)
        if not hasattr(X, "rechunk") or X.ndim != 2:
            raise DataError(f"expected a dask DataFrame or a 2-D dask Array, got {kind}")
        X = X.rechunk({1: -1})  # whole rows in each block
        d = X.shape[1]
        if y is None:
            columns = [str(j) for j in range(d)]
            index, names, target_name = resolve_target(columns, target, "dask Array", allow_index=True)
            blocks = X.to_delayed().ravel()
            parts = [
                delayed(_matrix_block_to_arrays)(blk, index, [*names, target_name], f"dask Array block {i}")
                for i, blk in enumerate(blocks)
            ]
            return cls(parts, names, target_name, "dask Array", False)
        if not hasattr(y, "rechunk") or y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise DataError(f"y must be a dask Array of {X.shape[0]} rows, got {type(y).__name__}")
        y = y.reshape(-1) if y.ndim == 2 else y
        y = y.rechunk((X.chunks[0],))
        names = [f"x{j}" for j in range(d)]
        parts = [
            delayed(_blocks_to_arrays)(xb, yb, names, "y", f"dask Array block {i}")
            for i, (xb, yb) in enumerate(zip(X.to_delayed().ravel(), y.to_delayed().ravel(), strict=True))
        ]
        return cls(parts, names, "y", "dask Array", False)

    @classmethod
    def from_files(
        cls,
        pattern: str,
        target: str | None = None,
        blocksize: str | int | None = "64MB",
        **options,
    ) -> DaskSource:
        """CSV/TSV/TXT (optionally compressed: one partition per file) or Parquet files: ``pattern``
        is a file that exists or else a glob (the rule of :func:`direct_edge.trainer.data.data_files`),
        read by the Dask workers.  The first file (read here, with ``options``: ``sep``, ``decimal``,
        ``header`` as for ``open_table``) fixes the format, separator, header and columns; every file
        must have the same columns.  The paths must be readable from this process and from every
        worker (a shared file system or object store)."""
        import dask.dataframe as dd

        files = data_files(pattern)
        if not Path(files[0]).exists():
            raise DataError(f"data file not found: {files[0]}")
        kind, compression = suffixes(Path(files[0]))
        first = open_table(files[0], target, **options)
        if any(suffixes(Path(f)) != (kind, compression) for f in files):
            raise DataError(f"{pattern}: all files must have the same type ({kind}{compression})")
        if kind not in PARQUET_SUFFIXES and kind not in TEXT_SUFFIXES:
            raise DataError(f"{pattern}: Dask reads CSV/TSV/TXT or Parquet files, not {kind or 'this type'}")
        columns = list(first.columns)
        used = [columns[k] for k in first._used]  # the inputs in the model's order, then the target
        if kind in PARQUET_SUFFIXES:
            frame = dd.read_parquet(files, columns=columns)
        else:
            assert isinstance(first, CSVSource)
            keys = columns if first.has_header else list(range(len(columns)))
            frame = dd.read_csv(
                files,
                sep=first.sep,
                decimal=first.decimal,
                header=0 if first.has_header else None,
                names=None if first.has_header else keys,
                compression=first._compression,
                blocksize=None if first._compression else blocksize,
                # The columns used as float64: dask would otherwise infer dtypes from a sample of the
                # first block and fail on a later block (an int column that later holds 1.5); a
                # column left out stays text (an ID, a date).
                dtype={key: (np.float64 if k in first._used else object) for k, key in enumerate(keys)},
                skipinitialspace=True,
                index_col=False,
            )
        # A headerless file's 0, 1, ... become "0", "1", ...; pandas names an empty header "Unnamed: k".
        names_in_frame = ["" if re.fullmatch(r"Unnamed: \d+", str(c)) else str(c) for c in frame.columns]
        if names_in_frame != columns:
            raise DataError(f"{pattern}: columns {names_in_frame}, expected {columns}")
        frame.columns = names_in_frame
        frame = frame[used]
        where = f"{pattern} ({len(files)} files)"
        parts = [
            delayed(_frame_to_arrays)(p, used, len(used) - 1, f"{where} partition {i}")
            for i, p in enumerate(frame.to_delayed())
        ]
        return cls(parts, first.input_names, first.target_name, where, first.named_columns)

    # -- passes on the workers --

    def statistics(
        self, feature_map: FeatureMap, chunk_rows: int = DEFAULT_CHUNK_ROWS, precision: str = "float64"
    ) -> SufficientStatistics:
        """Float64 statistics of the raw target: one partial per partition, tree-summed."""
        partials = [
            delayed(_partition_statistics)(p, feature_map, int(chunk_rows), precision) for p in self.parts
        ]
        stats = self._compute(tree_reduce(partials, operator.add))
        self.n_rows = int(stats.n)
        return stats

    def moments(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[InputMoments, InputMoments]:
        """Input and target moments (count, mean, sd; min, max), one partial per partition."""
        partials = [delayed(_partition_moments)(p) for p in self.parts]
        moments = self._compute(tree_reduce(partials, _merge_moment_pairs))
        self.n_rows = int(moments[0].n)
        return moments

    def scores(self, model) -> tuple[int, float, float]:
        """(rows, Σ squared error, Σ NLPD) of a fitted regressor over every row."""
        partials = [delayed(_partition_scores)(p, model) for p in self.parts]
        sums = self._compute(tree_reduce(partials, operator.add))
        return int(sums[0]), float(sums[1]), float(sums[2])

    def _compute(self, value):
        """``dask.compute`` of one delayed value on the current scheduler.  Bad values found by
        our own checks arrive as DataError; a reader's parse error (pandas' ValueError, e.g. text in
        a CSV column read as float64) becomes one, with the reader's first line."""
        try:
            (result,) = dask.compute(value)
        except DataError:
            raise
        except (ValueError, TypeError) as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise DataError(f"{self.where}: cannot read the data ({first.strip()})") from None
        return result

    # -- rows to this process --

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        seen = 0
        for part in self.parts:
            X, y = self._compute(part)
            seen += len(y)
            yield from rechunk([(X, y)], int(chunk_rows))
        if seen == 0:
            raise DataError(f"{self.where}: no data rows")
        self.n_rows = seen


@contextlib.contextmanager
def cluster_failures(address: str) -> Iterator[None]:
    """Context manager: a failure of the cluster while computing inside becomes one
    :class:`DataError` naming the cause in the user's terms (docs/trainer.md §10): a worker that
    died repeatedly on a task (most often for lack of memory), a lost scheduler, or a data file a
    worker cannot read.  DataErrors pass through unchanged."""
    from distributed import KilledWorker
    from distributed.client import ClosedClientError, FutureCancelledError
    from distributed.comm.core import CommClosedError

    try:
        yield
    except DataError:
        raise
    except KilledWorker:
        raise DataError(
            f"Dask workers at {address} died while computing the same partition several times, most "
            "often for lack of memory: give the workers more memory (dask worker --memory-limit) or "
            "split the data into smaller files"
        ) from None
    except (CommClosedError, ClosedClientError, FutureCancelledError, TimeoutError) as exc:
        raise DataError(
            f"lost the Dask scheduler at {address} ({type(exc).__name__}); check that it is still running"
        ) from None
    except OSError as exc:  # raised on a worker and sent back: a file it cannot read
        where = f" {exc.filename}" if exc.filename else ""
        raise DataError(
            f"a Dask worker cannot read{where}: {exc.strerror or exc}; every worker needs the same "
            "paths as this machine (a shared file system)"
        ) from None
    except MemoryError:
        raise DataError(
            f"a Dask worker at {address} ran out of memory; give the workers more memory"
        ) from None


def connect(address: str):
    """A ``distributed.Client`` for the scheduler at ``address`` (e.g. "tcp://10.0.0.5:8786"); it
    becomes the default scheduler of every Dask computation in this process."""
    from distributed import Client

    try:
        return Client(address, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise DataError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
