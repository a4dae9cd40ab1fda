"""Degenerate data: a sensible model or one clear error, never NaN and never a traceback.

A constant target has a well-defined posterior (the weights near zero, the noise at the grid's
smallest value in units of the target's own magnitude); two identical rows, tiny or huge targets and
inputs near the largest float fit finite models.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from direct_edge.trainer import DirectRegressor, load_model
from direct_edge.trainer.cli import main

RNG = np.random.default_rng(0)
X = RNG.normal(size=(100, 3))
Y = X[:, 0] + 0.1 * RNG.standard_normal(100)
HUGE_X = np.column_stack([np.where(X[:, 0] > 0, 1.7e308, -1.7e308), X[:, 1:]])

CASES = {
    "constant target": (X, np.full(100, 3.5)),
    "constant zero target": (X, np.zeros(100)),
    "two identical rows": (np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([3.0, 3.0])),
    "two rows, one input": (np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([3.0, 4.0])),
    "target times 1e-300": (X, Y * 1e-300),
    "target times 1e300": (X, Y * 1e300),
    "inputs at +-1.7e308": (HUGE_X, Y),
    "constant inputs": (np.ones((100, 3)), Y),
}


@pytest.mark.parametrize("features", ["linear", "rff"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_degenerate_data_fit_finite_models(case, features):
    Xc, yc = CASES[case]
    model = DirectRegressor(features=features, n_features=32, max_iter=500, random_state=0).fit(Xc, yc)
    mean, sd = model.predict(Xc[:5], return_std=True)
    assert np.isfinite(mean).all() and np.isfinite(sd).all() and (sd > 0).all()
    assert np.isfinite(model.elbo_)
    scale = np.max(np.abs(yc)) or 1.0
    assert np.all(np.abs(mean - yc[:5]) <= 3 * scale)  # in the target's own range


@pytest.mark.parametrize("value", [3.5, -2e6, 0.0, 7e-30])
def test_a_constant_target_predicts_itself_with_a_small_sd(value):
    model = DirectRegressor(features="linear", random_state=0).fit(X, np.full(100, value))
    mean, sd = model.predict(X[:20], return_std=True)
    np.testing.assert_allclose(mean, value, rtol=1e-9, atol=1e-12)
    assert np.all(sd <= 0.01 * max(abs(value), 1.0))


@pytest.mark.parametrize("case", ["constant target", "two identical rows", "inputs at +-1.7e308"])
def test_degenerate_files_train_from_the_command_line(tmp_path, case):
    Xc, yc = CASES[case]
    path = tmp_path / "data.csv"
    np.savetxt(
        path,
        np.column_stack([Xc, yc]),
        delimiter=",",
        header=",".join([f"x{j}" for j in range(Xc.shape[1])] + ["y"]),
        comments="",
        fmt="%.17g",
    )
    result = CliRunner().invoke(main, [str(path), "-o", str(tmp_path / "m.direct"), "--n-features", "16"])
    assert result.exit_code == 0, result.output
    assert "nan" not in result.stdout.lower() and "Traceback" not in result.output
    model = load_model(tmp_path / "m.direct")
    assert np.isfinite(model.predict(Xc[:2])).all()
