"""DIRECT trainer: Bayesian GLMs with weights on a discrete grid, fitted by exact variational inference.

Public API: :class:`DirectGLM` (the paper's model on a given basis) and :class:`DirectRegressor`
(scikit-learn estimator with its own feature map).  See docs/trainer.md.
"""

from direct_edge.trainer.classifier import DirectClassifier
from direct_edge.trainer.data import ArraySource, IterableSource, TableSource, open_table, split_source
from direct_edge.trainer.errors import DataError, FloatGapWarning, ModelFileError
from direct_edge.trainer.features import FeatureMap
from direct_edge.trainer.grid import WeightGrid, noise_grid, prior_log_probs
from direct_edge.trainer.model import DirectGLM
from direct_edge.trainer.model_file import load_model, save_model
from direct_edge.trainer.regressor import DirectRegressor, ParameterError
from direct_edge.trainer.statistics import SufficientStatistics, compute_statistics

__all__ = [
    "ArraySource",
    "IterableSource",
    "TableSource",
    "open_table",
    "split_source",
    "DataError",
    "DirectClassifier",
    "DirectGLM",
    "DirectRegressor",
    "FeatureMap",
    "FloatGapWarning",
    "ModelFileError",
    "ParameterError",
    "SufficientStatistics",
    "WeightGrid",
    "compute_statistics",
    "load_model",
    "noise_grid",
    "prior_log_probs",
    "save_model",
]
