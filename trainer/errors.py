"""Errors a user can cause in the trainer.  The CLI turns each into one line on stderr and exit code 2."""

from direct_edge.errors import UserError


class DataError(UserError):
    """Input data or arguments are unusable (missing file, NaN, text in a numeric column, ...)."""


class ModelFileError(UserError):
    """A ``model.direct`` file is truncated, corrupted, of another format or of an unknown version."""
