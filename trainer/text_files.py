"""Delimited text files (.csv, .tsv, .txt, optionally compressed) as streams of chunks.

:class:`CSVSource` reads a file with pandas ``read_csv(chunksize=...)``: a pass holds one chunk at a
time, so peak memory is O(chunk_rows · columns).  pandas infers the compression (.gz, .bz2, .xz,
.zip) from the file name; a UTF-8 byte-order mark is skipped.

How a file is read; each choice is a parameter:

- ``sep``, the separator: a comma for .csv and a tab for .tsv.  For .txt, the one of comma, tab,
  semicolon, bar and whitespace (``r"\\s+"``) under which the first lines split into equally many
  fields and the most fields read as numbers (ties go to that order).
- ``decimal``, the decimal mark: "." unless given (for example "," with ``sep=";"``).
- ``header``: None decides: the first row is a header when a field in it is text (not a number, not
  empty, not a missing-value marker such as NA), or when it reads 0, 1, ..., D−1 (the names pandas'
  ``to_csv`` writes for unnamed columns; a headerless file that starts with that row needs
  ``header=False``).  True or False say so.  A header's names stay names even when they look like
  numbers (``target="2022"``).  A headerless file's inputs are named ``x0 .. x{d-1}`` (the target
  removed) and its target ``y``; ``target`` is then a 0-based column index.

The first ``SAMPLE_LINES`` lines are read when the file is opened.  When another separator or decimal
mark reads more of their fields as numbers than the chosen ones, the file is refused with a
:class:`DataError` that says what the file looks like and which ``sep=``/``decimal=`` read it.
"""

from __future__ import annotations

import csv
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from direct_edge.errors import one_line
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.tables import FrameSource, choose_columns, is_number

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")
WHITESPACE = r"\s+"
SAMPLE_LINES = 64
# Candidate separators in order of preference, with the names messages use.
_SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "bar", WHITESPACE: "whitespace"}
_PLURALS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "bars", WHITESPACE: "whitespace"}
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def suffixes(path: Path) -> tuple[str, str]:
    """(format suffix, compression suffix or "") of a file name, lower case."""
    sufs = [s.lower() for s in path.suffixes]
    if sufs and sufs[-1] in COMPRESSION_SUFFIXES:
        return (sufs[-2] if len(sufs) > 1 else ""), sufs[-1]
    return (sufs[-1] if sufs else ""), ""


def _fields(lines: list[str], sep: str) -> list[list[str]] | None:
    """``lines`` split at ``sep`` when every line has the same number (at least 2) of fields."""
    if sep == WHITESPACE:
        rows = [line.split() for line in lines]
    else:
        rows = list(csv.reader(lines, delimiter=sep, skipinitialspace=True))
    widths = {len(row) for row in rows}
    return rows if len(widths) == 1 and widths.pop() >= 2 else None


def _numbers(rows: list[list[str]] | None, decimal: str) -> int:
    """How many fields of ``rows`` read as numbers with ``decimal``; −1 for None."""
    return -1 if rows is None else sum(is_number(field, decimal) for row in rows for field in row)


def sniff(lines: list[str]) -> tuple[str, str, int]:
    """(sep, decimal, count): the separator and decimal mark that read the most fields of ``lines``
    as numbers, and that count; count is −1 when no separator splits the lines evenly."""
    best = (WHITESPACE, ".", -1)
    for sep in _SEPARATORS:
        rows = _fields(lines, sep)
        for decimal in (".", ",") if sep != "," else (".",):
            count = _numbers(rows, decimal)
            if count > best[2]:
                best = (sep, decimal, count)
    return best


def describe(sep: str, decimal: str) -> str:
    """How a format reads in a message: "semicolon-separated with decimal commas"."""
    name = _SEPARATORS.get(sep, repr(sep))
    return f"{name}-separated" + (" with decimal commas" if decimal == "," else "")


def options(sep: str, decimal: str) -> str:
    """The reader arguments for a format: "sep=';', decimal=','"."""
    shown = r"sep=r'\s+'" if sep == WHITESPACE else f"sep={sep!r}"
    return shown + (f", decimal={decimal!r}" if decimal != "." else "")


def _check_options(sep: str | None, decimal: str, header: bool | None) -> str | None:
    """``sep`` with "\\t" written as two characters turned into a tab; DataError for bad options."""
    if sep == "\\t":
        sep = "\t"
    if sep is not None and (not isinstance(sep, str) or (len(sep) != 1 and sep != WHITESPACE)):
        raise DataError(f"the separator must be one character or r'\\s+' (whitespace), got {sep!r}")
    if not isinstance(decimal, str) or len(decimal) != 1:
        raise DataError(f"the decimal mark must be one character, got {decimal!r}")
    if header not in (None, True, False):
        raise DataError(f"header must be None (decide from the first row), True or False, got {header!r}")
    return sep


def _read_sample(path: Path, where: str) -> list[str]:
    """The first ``SAMPLE_LINES`` non-blank lines, decompressed and decoded, without a byte-order mark."""
    import pandas as pd

    try:
        sample = pd.read_csv(
            path,
            sep="\x00",  # no field splitting: one column holding each line
            quoting=csv.QUOTE_NONE,
            header=None,
            nrows=SAMPLE_LINES,
            dtype=str,
            na_filter=False,
            compression="infer",
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: the file is empty (no header, no data rows)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({one_line(exc)}); save it as UTF-8") from None
    except (ValueError, *_READ_ERRORS) as exc:
        raise DataError(f"{where}: cannot read as a table ({one_line(exc)})") from None
    return sample.iloc[:, 0].tolist()


class CSVSource(FrameSource):
    """A delimited text file read in chunks (see the module docstring).

    ``columns``: the D names in the file (the header's, or "0" .. "D−1"); ``has_header``;
    ``sep``, ``decimal``: how it is read.  Raises :class:`DataError` for an empty, unreadable or
    non-UTF-8 file, fewer than 2 columns, a header without rows, duplicate names, an unknown target,
    or first lines that another separator or decimal mark reads as numbers.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        target: str | None = None,
        *,
        sep: str | None = None,
        decimal: str = ".",
        header: bool | None = None,
        inputs: list[str] | None = None,
        drop: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.where = str(path)
        self.files = (str(path),)
        sep = _check_options(sep, decimal, header)
        kind, compression = suffixes(self.path)
        self._compression = "infer" if compression else None  # what trainer/distributed.py passes to dask
        lines = _read_sample(self.path, self.where)
        looks_sep, looks_decimal, looks_count = sniff(lines)
        if sep is None:
            sep = {".csv": ",", ".tsv": "\t"}.get(kind)
        if sep is None:  # .txt
            sep = looks_sep if looks_count >= 0 else next((s for s in ",\t;|" if s in lines[0]), WHITESPACE)
        if decimal == sep:
            raise DataError(f"{self.where}: the decimal mark {decimal!r} is also the separator; give sep=")
        self.sep, self.decimal = sep, decimal
        self.comma_hint = sep != "," and decimal == "."
        hint = ""
        if looks_count > _numbers(_fields(lines, sep), decimal):
            looks = describe(looks_sep, looks_decimal)
            hint = f"; the file looks {looks}: read it with {options(looks_sep, looks_decimal)}"
        try:  # the first lines again, split into fields (pandas' line numbers are the file's)
            head = self._read(self.path, header=None, nrows=SAMPLE_LINES, dtype=str, keep_default_na=False)
            missing = self._read(self.path, header=None, nrows=1, dtype=str).iloc[0].isna().tolist()
        except (ValueError, *_READ_ERRORS) as exc:  # pandas' ParserError is a ValueError
            raise DataError(f"{self.where}: cannot parse ({one_line(exc)}){hint}") from None
        first = [str(v).strip() for v in head.iloc[0]]
        if len(first) < 2:
            raise DataError(
                f"{self.where}: need at least 2 columns (inputs and a target) separated by "
                f"{_PLURALS.get(sep, repr(sep))}, found 1{hint}"
            )
        if hint:
            raise DataError(f"{self.where}: read with {options(sep, decimal)}, fields are not numbers{hint}")
        if header is None:
            header = first == [str(j) for j in range(len(first))] or any(
                not gap and not is_number(v, decimal) for v, gap in zip(first, missing, strict=True)
            )
        self.has_header = self.named_columns = bool(header)
        if len(head) - self.has_header < 1:
            raise DataError(f"{self.where}: the file has a header but no data rows")
        if self.has_header:
            dupes = sorted({c for c in first if first.count(c) > 1})
            if dupes:
                raise DataError(f"{self.where}: duplicate column names in the header: {', '.join(dupes)}")
            self.columns = first
        else:
            self.columns = [str(j) for j in range(len(first))]
        self._used, self.input_names, self.target_name = choose_columns(
            self.columns, target, self.where, not self.has_header, inputs, drop
        )
        self.n_rows = None

    def _read(self, source, **kwargs):
        import pandas as pd

        return pd.read_csv(
            source,
            sep=self.sep,
            decimal=self.decimal,
            skipinitialspace=True,
            index_col=False,
            compression="infer",  # the C parser skips a UTF-8 byte-order mark itself
            **kwargs,
        )

    def _pieces(self, chunk_rows: int) -> Iterator:
        import pandas as pd

        try:
            with self._read(
                self.path,
                header=0 if self.has_header else None,
                chunksize=chunk_rows,
            ) as reader:
                yield from reader
        except pd.errors.EmptyDataError:
            return
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.where}: not UTF-8 text ({one_line(exc)}); save it as UTF-8") from None
        except (ValueError, *_READ_ERRORS) as exc:
            raise DataError(f"{self.where}: cannot parse ({one_line(exc)})") from None
