"""The base class of every error a user can cause.

Each part raises its own subclass (``DataError`` and ``ModelFileError`` in the trainer,
``ExportError`` in the exporter, ``BlobError`` and ``RunError`` in the runtime); the command-line
runner (:mod:`direct_edge.commands`) turns any of them into one line on stderr and exit code 2.
Programming errors are not ``UserError`` and stay tracebacks.
"""


class UserError(ValueError):
    """A problem with what the user gave (a file, a value, an option), said in the user's terms."""


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (an OSError's file name and ``strerror``), for
    the messages the commands print and the errors that quote a library's own exception."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__
