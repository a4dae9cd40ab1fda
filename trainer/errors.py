"""Errors a user can cause.  The CLI turns each into one line on stderr and exit code 2."""


class DataError(ValueError):
    """Input data or arguments are unusable (missing file, NaN, text in a numeric column, ...)."""


class ModelFileError(ValueError):
    """A ``model.direct`` file is truncated, corrupted, of another format or of an unknown version."""
