"""Parquet files as streams of chunks, one record batch at a time with pyarrow
(``pip install direct-edge[parquet]``): a pass holds one chunk, peak memory O(chunk_rows · columns).

The columns are the file's schema without the pandas index columns that ``DataFrame.to_parquet``
stores (``__index_level_0__`` or a named index), read from the pandas metadata in the schema.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from direct_edge.errors import one_line
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.tables import FrameSource, choose_columns


def _pyarrow_parquet(where: str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{where}: reading Parquet needs pyarrow; install it with: pip install direct-edge[parquet]"
        ) from None
    return pq


class ParquetSource(FrameSource):
    """A Parquet file read one record batch at a time.

    ``columns``: the data columns (pandas index columns left out); ``n_rows`` from the metadata.
    Raises :class:`DataError` without pyarrow, for an unreadable file, an unknown target or no rows.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        target: str | None = None,
        inputs: list[str] | None = None,
        drop: list[str] | None = None,
    ) -> None:
        pq = _pyarrow_parquet(str(path))
        self.path = Path(path)
        self.where = str(path)
        self.files = (str(path),)
        try:
            with pq.ParquetFile(self.path) as file:
                schema = file.schema_arrow
                self.n_rows = int(file.metadata.num_rows)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{self.where}: not a readable Parquet file ({one_line(exc)})") from None
        index = (schema.pandas_metadata or {}).get("index_columns", [])
        self.columns = [c for c in schema.names if c not in index]  # a RangeIndex is a dict, not stored
        self.named_columns = True
        self._used, self.input_names, self.target_name = choose_columns(
            self.columns, target, self.where, False, inputs, drop
        )
        if self.n_rows == 0:
            raise DataError(f"{self.where}: no data rows")

    def _pieces(self, chunk_rows: int) -> Iterator:
        pq = _pyarrow_parquet(self.where)
        try:
            with pq.ParquetFile(self.path) as file:
                for batch in file.iter_batches(batch_size=chunk_rows, columns=self.columns):
                    if batch.num_rows:
                        yield batch.to_pandas()
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.where}: cannot read ({one_line(exc)})") from None
