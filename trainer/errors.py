"""Errors a user can cause in the trainer (the CLI turns each into one line on stderr and exit code 2), and
the warnings that flag a fitted model whose numbers may be poor."""

from direct_edge.errors import UserError


class DataError(UserError):
    """Input data or arguments are unusable (missing file, NaN, text in a numeric column, ...)."""


class ModelFileError(UserError):
    """A ``model.direct`` file is truncated, corrupted, of another format or of an unknown version."""


class FloatGapWarning(UserWarning):
    """The fitted 4-bit posterior fits its training rows clearly worse than the float conjugate model on
    the same features (docs/trainer.md §9, "Against the float model"): its test accuracy is then likely
    below the float model's too."""
