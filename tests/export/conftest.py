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


#: A C program around a generated header named "model" (``render_blob(blob, "model")`` or direct-export's
#: model.h): it opens the blob, checks the scratch size the header states, and prints for each row of
#: MODEL_N_INPUTS int16 on stdin the ensemble's mean, var_f, var_y, then the exact mode's three.
PREDICT_HARNESS = r"""
#include <stdio.h>
#include "direct.h"
#include "model.h"

/* One row of MODEL_N_INPUTS int16 per line on stdin; prints mean var_f var_y (ensemble), then the exact
 * mode's three, per row. */
int main(void) {
    direct_model m;
    int16_t scratch[MODEL_SCRATCH_BYTES / 2];
    int16_t x[MODEL_N_INPUTS];
    direct_prediction p, e;
    uint32_t i;
    int v;
    if (direct_model_open(&m, model_blob.bytes, MODEL_SIZE) != DIRECT_OK ||
        direct_scratch_size(&m) != MODEL_SCRATCH_BYTES) {
        return 3;
    }
    for (;;) {
        for (i = 0; i < MODEL_N_INPUTS; ++i) {
            if (scanf("%d", &v) != 1) {
                return 0;
            }
            x[i] = (int16_t)v;
        }
        if (direct_predict(&m, x, scratch, sizeof scratch, &p) != DIRECT_OK ||
            direct_predict_exact(&m, x, scratch, sizeof scratch, &e) != DIRECT_OK) {
            return 4;
        }
        printf("%ld %llu %llu %ld %llu %llu\n", (long)p.mean, (unsigned long long)p.var_f,
               (unsigned long long)p.var_y, (long)e.mean, (unsigned long long)e.var_f,
               (unsigned long long)e.var_y);
    }
}
"""


#: direct-export's graph files, each as (file name, extra options, the text its check line contains): the
#: exact, float-ensemble and integer ONNX graphs, the exact TFLite graph and the 8-bit TFLite ensemble.
CLI_GRAPHS = [
    ("model.onnx", [], "onnxruntime exact moments - trained"),
    ("model-ens.onnx", ["--ensemble"], "onnxruntime float - float64"),
    ("model-int.onnx", ["--integer"], "(bit-exact)"),
    ("model.tflite", [], "LiteRT exact moments - trained"),
    ("model8.tflite", ["--activations", "8", "--ensemble"], "LiteRT - float64"),
]
