"""Shared builders and runners for the export tests."""

from __future__ import annotations

import numpy as np
import pytest


def run_litert(data: bytes, x: np.ndarray, resolver=None) -> dict:
    """LiteRT as its documentation teaches: the "serving_default" signature runner on ``data``, any batch
    ``x``; its default resolver (XNNPACK on), or ``resolver`` (an ``OpResolverType``)."""
    from ai_edge_litert.interpreter import Interpreter

    options = {} if resolver is None else {"experimental_op_resolver_type": resolver}
    runner = Interpreter(model_content=data, **options).get_signature_runner()
    (name,) = runner.get_input_details()
    return runner(**{name: x})


def run_tflm(path, x: np.ndarray, n_outputs: int) -> list[np.ndarray]:
    """TFLite Micro as its documentation teaches: the file at ``path``, one invoke per row of ``x`` (its
    batch of 1); the first ``n_outputs`` outputs, each stacked over the rows.  Skips the test where
    tflite-micro is not installed."""
    tfm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    interp = tfm.Interpreter.from_file(str(path))
    rows = []
    for row in x:
        interp.set_input(row[None, :], 0)
        interp.invoke()
        rows.append([interp.get_output(i)[0] for i in range(n_outputs)])
    return [np.array([r[i] for r in rows]) for i in range(n_outputs)]


def mixed_schema():
    """An input schema (docs/model-format.md §10) of every kind and policy, 8 inputs: a plain column, a
    3-level categorical one, a numeric one with mean-indicator imputation, a 2-level categorical one."""
    from direct_edge.runtime import schema as input_schema

    Column = input_schema.Column
    return input_schema.Schema(
        (
            Column("age", low=-1.0, high=2.0),
            Column("colour", input_schema.CATEGORICAL, levels=("blue", "green", "red")),
            Column("size", missing=input_schema.MEAN_INDICATOR, low=1.0, high=5.0, fill=2.8125),
            Column("sex", input_schema.CATEGORICAL, levels=("f", "m")),
        ),
        "y",
    )


def mixed_blob(b: int = 64, seed: int = 12, with_schema: bool = True):
    """A parsed synthetic rff blob of 8 inputs carrying :func:`mixed_schema` (or, ``with_schema``
    False, the same parameters without it)."""
    from direct_edge.export.packed import synthetic_blob
    from direct_edge.runtime.blob import parse

    schema = mixed_schema() if with_schema else False
    return parse(synthetic_blob("rff", 8, b, 8, seed=seed, exact=True, schema=schema))


def gained_regressor(n_features: int = 32, kind: str = "rff"):
    """A fitted ``DirectRegressor`` on scikit-learn's diabetes data whose posterior lives on per-feature
    grids (trainer/grid.py ``WeightGrid.gains``): the regressor's own fit gives the feature map and the
    target's units, then a ``DirectGLM`` on the same statistics with gains spread over (0, 1] (both
    ends, 2^-15 and 1, included) replaces its posterior.  Returns (model, X)."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    from direct_edge.trainer import DirectGLM, DirectRegressor, SufficientStatistics
    from direct_edge.trainer.evidence import conjugate_posterior
    from direct_edge.trainer.grid import WeightGrid, noise_grid, prior_log_probs
    from direct_edge.trainer.posterior import rounding_floor

    X, y = load_diabetes(return_X_y=True)
    params = dict(features=kind, grid_scale=0.1, prior_scale=0.5, max_iter=300)
    if kind == "rff":
        params.update(n_features=n_features, lengthscale=2.0)
    model = DirectRegressor(**params).fit(X, y)
    Phi = model.feature_map_.transform(X)
    b = Phi.shape[1]
    gains = np.geomspace(2.0**-15, 1.0, b)  # the linear bias feature, last, keeps gain 1
    gains[1:-1:3] = np.linspace(0.2, 1.0, len(gains[1:-1:3]))
    grid = WeightGrid.from_bits(4, 0.1).with_gains(gains)
    stats = SufficientStatistics.from_basis(Phi, (y - model.y_offset_) / model.y_scale_)
    glm = DirectGLM(
        stats=stats,
        grid=grid,
        log_prior=prior_log_probs(grid.values, "gaussian", 0.5),
        noise_grid=noise_grid(),
    )
    glm.fit(200)
    model.posterior_ = glm.posterior()
    # as the trainer sets it (docs/trainer.md §7)
    conjugate = conjugate_posterior(stats)
    offset = conjugate.mean - model.posterior_.weight_moments()[0]
    model.posterior_.variance_floor = rounding_floor(model.posterior_.grid, conjugate.var, offset)
    return model, X


def iris_classifier(kind: str):
    """(model, parsed blob, training inputs) of a small DirectClassifier on iris: ``kind`` "binary"
    (virginica or not) or "multiclass" (three classes); b = 32, 8 posterior samples, all packed."""
    import warnings

    from sklearn.datasets import load_iris

    from direct_edge.export.packed import pack_classifier
    from direct_edge.runtime.blob import parse
    from direct_edge.trainer.classifier import DirectClassifier

    X, y = load_iris(return_X_y=True)
    if kind == "binary":
        y = (y == 2).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DirectClassifier(
            n_features=32, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0, n_samples=8, max_iter=100
        ).fit(X, y)
    return model, parse(pack_classifier(model, n_samples=8)), X
