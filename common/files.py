"""Writing outputs so that nothing is lost: atomic replacement, and never over an input.

Every output of the three commands (model files, blobs, headers, graphs, plots, prediction CSVs)
goes through :func:`write_atomic`: readers never see a partial file, a failed write leaves any
previous file intact, and the new file gets the permissions a plain ``open()`` would give it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from direct_edge.errors import UserError


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    ``data``: bytes, text (written as UTF-8), or a function that writes into the binary file
    object it is given (for writers such as matplotlib's ``savefig``).  The temporary file is
    flushed and fsynced before the rename; on any failure it is removed and ``path`` is untouched.
    Raises OSError when the folder cannot take the file.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | os.PathLike, what: str) -> None:
    """UserError unless a new file can be created at ``path``: its folder exists and takes a file.

    Probes with a temporary file that is removed at once; ``path`` itself is never touched.
    ``what`` names the output in the message ("output", "plot").
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{what} path {target} is a directory")
    parent = target.parent
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        raise UserError(f"cannot write {what} {target}: {parent} {problem}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write {what} {target}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def check_distinct(first: str | os.PathLike, second: str | os.PathLike, what: str) -> None:
    """UserError if two output paths name one file (the same spelling, another spelling of it, or a
    link to it, whether or not it exists yet): writing the second would replace the first.  ``what``
    names the pair in the message ("-o and --plot")."""
    a, b = Path(first), Path(second)
    same = os.path.realpath(a) == os.path.realpath(b)
    if not same and a.exists() and b.exists():
        try:
            same = os.path.samefile(a, b)
        except OSError:
            same = False
    if same:
        raise UserError(f"{what} name the same file {a}; give them different paths")


def check_not_an_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """UserError if ``output`` is one of ``inputs`` (the same file, also through links or other
    spellings of the path), so that writing the output can never destroy what was read."""
    out = Path(output)
    if not out.exists():
        return
    for given in inputs:
        source = Path(given)
        try:
            same = source.exists() and os.path.samefile(out, source)
        except OSError:
            same = False
        if same:
            raise UserError(f"the output {out} is the input {source}; choose another output path")
