"""The check against the float model (docs/trainer.md §9, "Against the float model"): the float conjugate
model's training RMSE on the same statistics, and the flag raised when the 4-bit posterior fits its
training rows clearly worse, for each measured cause (too many features for the rows, a nearly
noise-free target, a given grid too coarse), in the Python API, the model file and direct-train."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import BayesianRidge

from direct_edge.trainer import DirectRegressor, FloatGapWarning
from direct_edge.trainer.cli import format_summary, main
from direct_edge.trainer.model_file import load_model, save_model
from direct_edge.trainer.regressor import FLOAT_GAP


def smooth(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + noise * rng.standard_normal(n)


def linear(n: int = 500, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.standard_normal(n) + 1e3


def fit(X, y, **options) -> tuple[DirectRegressor, list]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = DirectRegressor(**options).fit(X, y)
    return model, [w for w in caught if issubclass(w.category, FloatGapWarning)]


GIVEN = {"n_features": 32, "lengthscale": 1.0, "grid_scale": 0.1, "prior_scale": 1.0}


@pytest.mark.parametrize("features", ["rff", "linear"])
def test_the_float_train_rmse_is_bayesian_ridges_on_the_same_features(features):
    X, y = smooth(300, 0.2) if features == "rff" else linear()
    options = GIVEN if features == "rff" else {"features": "linear", "grid_scale": 0.1, "prior_scale": 1.0}
    model, _ = fit(X, y, **options)
    Phi = model.feature_map_.transform(X)
    target = (y - model.y_offset_) / model.y_scale_
    ref = BayesianRidge(
        fit_intercept=False, tol=1e-12, max_iter=5000, alpha_1=0, alpha_2=0, lambda_1=0, lambda_2=0
    ).fit(Phi, target)
    want = np.sqrt(np.mean((Phi @ ref.coef_ - target) ** 2)) * model.y_scale_
    assert model.float_train_rmse_ == pytest.approx(want, rel=1e-6)
    # and the posterior's own training RMSE is that of its predictive mean on the same rows
    assert model.train_rmse_ == pytest.approx(np.sqrt(np.mean((model.predict(X) - y) ** 2)), rel=1e-6)


@pytest.mark.parametrize(
    ("case", "data", "options", "low"),
    [
        # more features than rows (b = 128, n = 60): the factorised posterior trades fit for entropy
        ("features per row", smooth(60, 0.01), {"n_features": 128}, 5.0),
        # 500 rows, noise 1 % of the signal: the 4-bit grid's steps show
        ("nearly noise-free", smooth(500, 0.01), {"n_features": 32}, 1.8),
        # a given grid step of 2 sd(y) on a linear target
        ("coarse grid", linear(), {"features": "linear", "grid_scale": 2.0}, 10.0),
        ("coarse grid, 0.5", linear(), {"features": "linear", "grid_scale": 0.5}, 5.0),
    ],
)
def test_each_measured_cause_is_flagged_once(case, data, options, low):
    model, flagged = fit(*data, **options)
    assert model.float_gap_ is not None and model.float_gap_ > low, case
    assert model.float_gap_ == pytest.approx(model.train_rmse_ / model.float_train_rmse_)
    assert len(flagged) == 1, case
    text = str(flagged[0].message)
    assert f"{model.float_gap_:.3g}x" in text and f"same {model.feature_map_.n_features} features" in text
    assert "docs/trainer.md §9" in text


@pytest.mark.parametrize("prior", ["gaussian", "sparse"])
def test_the_causes_name_the_sparse_prior_only_when_it_is_used(prior, tmp_path):
    X, y = smooth(500, 0.01)
    model, flagged = fit(X, y, n_features=32, prior=prior, zero_mass=0.9)
    assert len(flagged) == 1
    text = str(flagged[0].message)
    assert "fewer n_features" in text and "grid_scale" not in text  # the ELBO chose the grid
    assert ("sparse prior's extra zeros (zero_mass)" in text) is (prior == "sparse")
    done = _train(tmp_path, X, y, "--n-features", "32", "--prior", prior, "--zero-mass", "0.9")
    line = next(line for line in done.stderr.splitlines() if "float model" in line)
    assert "fewer --n-features" in line and "--grid-scale" not in line
    assert ("(--zero-mass)" in line) is (prior == "sparse")


@pytest.mark.parametrize("bits", [4, 8])
def test_the_causes_that_cannot_apply_are_not_named(bits):
    """Linear features have no n_features to lower; a given grid scale is named; the grid is the one of
    ``bits`` bits."""
    model, flagged = fit(*linear(), features="linear", grid_scale=2.0, bits=bits)
    text = str(flagged[0].message)
    assert f"the {bits}-bit posterior's training RMSE" in text and f"the {bits}-bit grid's steps" in text
    assert "n_features" not in text and "the given grid_scale too coarse" in text


def test_a_float_model_that_fits_exactly_gives_the_same_flag_whatever_the_offset(tmp_path):
    """The statistics resolve an RMSE down to about 1e-8 sd(y): a float model fitting a noise-free
    linear target exactly has a training RMSE of round-off (0, or 1e-8 sd(y) with an offset of 1e9),
    so each RMSE counts as at least 1e-3 sd(y) in the ratio, which then does not depend on the offset."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    gaps = []
    for offset in (0.0, 1e9):
        model, flagged = fit(X, y + offset, features="linear", grid_scale=2.0)
        assert model.float_train_rmse_ < 1e-6 * model.y_scale_ and len(flagged) == 1
        gaps.append(model.float_gap_)
        assert model.float_gap_ == pytest.approx(model.train_rmse_ / (1e-3 * model.y_scale_))
    assert gaps[1] == pytest.approx(gaps[0], rel=1e-6)
    done = _train(
        tmp_path, X[:, :2], X[:, :2] @ np.array([1.0, -2.0]), "--features", "linear", "--grid-scale", "2"
    )
    row = next(line for line in done.stdout.splitlines() if "float train RMSE" in line)
    assert row.split("float train RMSE")[1].split()[0] == "below" and "FLAGGED" in row


@pytest.mark.parametrize(
    ("case", "data", "options"),
    [
        ("noisy, few features", smooth(500, 0.3), {"n_features": 32}),
        ("linear, grid chosen by the ELBO", linear(), {"features": "linear"}),
    ],
)
def test_a_fit_as_good_as_the_float_model_is_not_flagged(case, data, options):
    model, flagged = fit(*data, **options)
    ratio = model.train_rmse_ / model.float_train_rmse_
    assert ratio < FLOAT_GAP - 0.05, case  # clearly inside, so round-off cannot flip it
    assert model.float_gap_ is None and not flagged, case


def test_a_target_both_models_fit_exactly_is_not_flagged():
    """A constant target: both training RMSEs are 0 (no ratio to take)."""
    X = np.random.default_rng(0).standard_normal((50, 2))
    model, flagged = fit(X, np.full(50, 3.0), **GIVEN)
    assert model.train_rmse_ == 0.0 and model.float_gap_ is None and not flagged


def test_the_model_file_keeps_the_float_rmse_and_files_without_it_still_load(tmp_path):
    X, y = smooth(500, 0.01)
    model, _ = fit(X, y, n_features=32)
    save_model(tmp_path / "m.direct", model)
    loaded = load_model(tmp_path / "m.direct")
    assert loaded.float_train_rmse_ == model.float_train_rmse_
    assert loaded.float_gap_ == model.float_gap_ is not None
    # a file written before the check: the same model without the entry
    del model.float_train_rmse_
    save_model(tmp_path / "old.direct", model)
    old = load_model(tmp_path / "old.direct")
    assert not hasattr(old, "float_train_rmse_") and old.float_gap_ is None
    np.testing.assert_array_equal(old.predict(X[:20]), loaded.predict(X[:20]))


def _train(tmp_path, X, y, *args):
    path = tmp_path / "train.csv"
    np.savetxt(path, np.c_[X, y], delimiter=",", header="a,b,y", comments="", fmt="%.17g")
    return CliRunner().invoke(main, [str(path), "--target", "y", "-o", str(tmp_path / "m.direct"), *args])


def test_direct_train_says_it_once_on_stderr_and_flags_the_summary_row(tmp_path):
    X, y = smooth(500, 0.01)
    done = _train(tmp_path, X, y, "--n-features", "32")
    assert done.exit_code == 0, done.output
    lines = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("direct-train: warning: the training RMSE is ")
    assert "x the float model's on the same features" in lines[0] and "--n-features" in lines[0]
    row = next(line for line in done.stdout.splitlines() if "float train RMSE" in line)
    assert "FLAGGED" in row
    loaded = load_model(tmp_path / "m.direct")
    assert loaded.float_gap_ > FLOAT_GAP
    assert f"{loaded.float_gap_:.3g}x" in lines[0] and f"{loaded.float_gap_:.3g}x" in row
    # the stored summary (which every export carries in its meta section) holds no float-check keys
    assert not any(key.startswith("float") for key in loaded.summary_)


def test_direct_train_without_a_gap_prints_the_row_unflagged(tmp_path):
    X, y = smooth(500, 0.3)
    done = _train(tmp_path, X, y, "--n-features", "32")
    assert done.exit_code == 0, done.output
    assert "warning" not in done.stderr
    row = next(line for line in done.stdout.splitlines() if "float train RMSE" in line)
    assert "FLAGGED" not in row and "(float model, same features)" in row
    assert load_model(tmp_path / "m.direct").float_gap_ is None


def test_a_summary_without_the_check_prints_without_the_row(tmp_path):
    """The stored summary (what a loaded model's summary_ holds) formats without the float row."""
    X, y = smooth(200, 0.3)
    assert _train(tmp_path, X, y, "--n-features", "16", "--max-iter", "50").exit_code == 0
    summary = json.loads(json.dumps(load_model(tmp_path / "m.direct").summary_))
    text = format_summary({**summary, "wall_time_s": 1.0, "fit_time_s": 1.0})
    assert "float" not in text and "train RMSE / NLPD" in text


def test_direct_export_carries_the_flag_as_a_note(tmp_path):
    """A flagged model's export says so once in its summary (stdout); an unflagged one does not."""
    from direct_edge.export.cli import main as export_main

    for noise, flagged in ((0.01, True), (0.3, False)):
        X, y = smooth(500, noise)
        assert _train(tmp_path, X, y, "--n-features", "32").exit_code == 0
        done = CliRunner().invoke(export_main, [str(tmp_path / "m.direct"), str(tmp_path / "m.bin")])
        assert done.exit_code == 0, done.output
        notes = [line for line in done.stdout.splitlines() if "flagged at training" in line]
        assert len(notes) == int(flagged)
        if flagged:
            gap = load_model(tmp_path / "m.direct").float_gap_
            assert f"training RMSE is {gap:.3g}x the float model's" in notes[0]
