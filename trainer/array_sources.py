"""In-memory arrays, memory maps, .npz/.npy files and re-iterables of batches as table sources.

- :class:`ArraySource`: ``X``: (n, d) and ``y``: (n,), read a slice at a time (a memory map is only
  paged in chunk by chunk).
- ``.npz`` (:func:`open_npz`): arrays ``X`` (n, d) and ``y`` (n,), or one (n, d + 1) array;
  ``.npy`` (:func:`open_npy`): one (n, d + 1) array, memory-mapped.  The target is the last column
  unless ``target`` is a 0-based column index (negative counts from the end).
- :class:`IterableSource`: (X, y) batches of any size from a factory, re-cut into chunks.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from direct_edge.errors import one_line
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.tables import (
    Batch,
    TableSource,
    check_batch,
    check_numeric_array,
    default_names,
    rechunk,
    resolve_target,
    split_target,
)


class _ArrayChunks(TableSource):
    """Pieces are (X, y) slices of arrays; each is converted to float64 and checked."""

    def _values(self, piece: Batch, first_row: int) -> Batch:
        X = np.asarray(piece[0], dtype=np.float64)
        y = np.asarray(piece[1], dtype=np.float64)
        check_batch(X, y, [*self.input_names, self.target_name], self.where, first_row)
        return X, y


class ArraySource(_ArrayChunks):
    """In-memory arrays or memory maps ``X``: (n, d) and ``y``: (n,) (a 1-D ``X`` is one input, a
    (n, 1) ``y`` is flattened), read a slice at a time.  Nothing is copied at construction.
    Raises :class:`DataError` for mismatched shapes, non-numeric dtypes, no rows or no inputs."""

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
        check_numeric_array(X, f"{where}: X")
        check_numeric_array(y, f"{where}: y")
        if X.shape[0] == 0:
            raise DataError(f"{where}: no data rows")
        if X.shape[1] == 0:
            raise DataError(f"{where}: X has no input columns")
        self.X, self.y = X, y
        self.input_names = list(input_names) if input_names is not None else default_names(X.shape[1])
        if len(self.input_names) != X.shape[1]:
            raise DataError(f"{where}: {len(self.input_names)} input names for {X.shape[1]} columns")
        self.target_name = target_name
        self.named_columns = input_names is not None
        self.n_rows = int(X.shape[0])

    def _pieces(self, chunk_rows: int) -> Iterator[Batch]:
        return rechunk([(self.X, self.y)], chunk_rows)


class MatrixSource(TableSource):
    """One (n, D) array (or memory map) whose column ``target`` (a 0-based index, default the last)
    is the target; inputs are named x0 .. x{D-2}, the target y."""

    def __init__(self, matrix: np.ndarray, target: str | None, where: str) -> None:
        if matrix.ndim != 2:
            raise DataError(f"{where}: expected a 2-D array (rows × columns), got shape {matrix.shape}")
        check_numeric_array(matrix, where)
        columns = [str(j) for j in range(matrix.shape[1])]
        self._target_index, self.input_names, self.target_name = resolve_target(
            columns, target, where, allow_index=True
        )
        if matrix.shape[0] == 0:
            raise DataError(f"{where}: no data rows")
        self.matrix = matrix
        self.where, self.files = where, (where,)
        self.n_rows = int(matrix.shape[0])

    def _pieces(self, chunk_rows: int) -> Iterator[tuple]:
        return rechunk([(self.matrix,)], chunk_rows)

    def _values(self, piece: tuple, first_row: int) -> Batch:
        X, y = split_target(np.asarray(piece[0], dtype=np.float64), self._target_index)
        check_batch(X, y, [*self.input_names, self.target_name], self.where, first_row)
        return X, y


def open_npz(path: Path, target: str | None) -> TableSource:
    """An .npz file with arrays ``X`` and ``y`` (target must be None or "y"), or one 2-D array.
    The arrays are loaded into memory (an .npz member cannot be memory-mapped)."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{where}: not a readable .npz file ({one_line(exc)})") from None
    if "X" in arrays and "y" in arrays:
        if target not in (None, "y"):
            raise DataError(f"{where}: holds arrays X and y, so the target is y (got --target {target!r})")
        source = ArraySource(arrays["X"], arrays["y"], where=where)
    elif len(arrays) == 1:
        source = MatrixSource(next(iter(arrays.values())), target, where)
    else:
        names = ", ".join(arrays) or "none"
        raise DataError(f"{where}: expected arrays 'X' and 'y', or a single 2-D array; found {names}")
    source.files = (where,)
    return source


def open_npy(path: Path, target: str | None) -> TableSource:
    """An .npy file holding one (n, D) array, memory-mapped."""
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({one_line(exc)})") from None
    return MatrixSource(matrix, target, str(path))


class IterableSource(_ArrayChunks):
    """Batches from ``factory()``, a zero-argument callable returning a fresh iterator of (X, y)
    pairs on every call (e.g. a generator function reading a database).  Batches of any size are
    re-cut into chunks of at most ``chunk_rows`` rows and validated.  ``n_inputs`` is read from the
    first batch unless given.  Raises TypeError for a factory that is not callable, DataError for
    a batch of the wrong shape or dtype."""

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
        self.input_names = list(input_names) if input_names is not None else default_names(int(n_inputs))
        self.target_name = target_name
        self.named_columns = input_names is not None
        self.n_rows = n_rows

    def _batches_checked(self) -> Iterator[Batch]:
        d, seen = self.n_inputs, 0
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
            check_numeric_array(X, f"{self.where}: X")
            check_numeric_array(y, f"{self.where}: y")
            seen += len(y)
            yield X, y

    def _pieces(self, chunk_rows: int) -> Iterator[Batch]:
        return rechunk(self._batches_checked(), chunk_rows)
