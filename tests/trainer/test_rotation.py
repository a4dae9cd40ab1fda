"""Rotated rff features (docs/trainer.md §3, "Rotated features"; ``DirectRegressor(rotation="eigen")``).

The rotation V is the eigenbasis of the training Gram matrix, so the statistics of ΦV must be those of
the base map rotated, with a diagonal Gram matrix; the fitted model must predict with φ(x)ᵀV, survive its
model file, and on data with more features than rows keep up with the float conjugate model where the
unrotated factorised posterior does not.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge

from direct_edge.trainer import DirectRegressor
from direct_edge.trainer.errors import DataError, FloatGapWarning, ModelFileError
from direct_edge.trainer.evidence import conjugate_posterior
from direct_edge.trainer.features import FeatureMap, is_orthonormal
from direct_edge.trainer.model_file import (
    decode,
    encode,
    load_model,
    model_from_arrays,
    model_to_arrays,
    save_model,
)
from direct_edge.trainer.regressor import ParameterError, float_gap_causes
from direct_edge.trainer.statistics import SufficientStatistics, compute_statistics, gram_eigenbasis


def smooth_data(n: int, d: int = 3, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n, d))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(1.5 * X[:, 1]) + 0.3 * X[:, 2] + noise * rng.standard_normal(n)
    return X, y


@pytest.fixture(scope="module")
def base_map() -> FeatureMap:
    X, _ = smooth_data(50)
    return FeatureMap.rff(X.mean(axis=0), X.std(axis=0), 24, 1.3, seed=4)


def test_eigenbasis_is_orthonormal_sorted_signed_and_diagonalises(base_map):
    X, y = smooth_data(50)
    stats = compute_statistics(base_map, [(X, y)])
    V = gram_eigenbasis(stats)
    assert V.shape == (24, 24) and is_orthonormal(V)
    D = V.T @ stats.gram @ V
    eig = np.diag(D)
    assert np.all(np.diff(eig) <= 1e-12 * eig[0])  # decreasing
    assert np.max(np.abs(D - np.diag(eig))) <= 1e-12 * eig[0]
    top = V[np.argmax(np.abs(V), axis=0), np.arange(24)]
    assert np.all(top > 0)
    # A function of the Gram matrix alone: the same matrix with its rows permuted back gives the same V.
    assert np.array_equal(gram_eigenbasis(stats), V)


def test_rotated_statistics_equal_those_of_the_rotated_features(base_map):
    X, y = smooth_data(50)
    V = gram_eigenbasis(compute_statistics(base_map, [(X, y)]))
    rotated = base_map.rotated(V)
    Psi = rotated.transform(X)
    np.testing.assert_array_equal(Psi, base_map.transform(X) @ V)
    direct = SufficientStatistics.from_basis(Psi, y)
    for stats in (
        compute_statistics(rotated, [(X, y)]),
        compute_statistics(rotated, [(X[:20], y[:20]), (X[20:], y[20:])], chunk_rows=7),
        compute_statistics(base_map, [(X, y)]).rotated(V),
    ):
        np.testing.assert_allclose(stats.gram, direct.gram, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            stats.phi_y * stats.y_unit + stats.phi_sum * stats.y_shift, Psi.T @ y, atol=1e-12
        )
        np.testing.assert_allclose(stats.phi_sum, Psi.sum(axis=0), atol=1e-12)
        assert stats.n == 50


def test_a_bad_rotation_is_refused(base_map):
    with pytest.raises(DataError, match="orthonormal"):
        base_map.rotated(np.eye(24) * 1.001)
    with pytest.raises(DataError, match="orthonormal"):
        base_map.rotated(np.full((24, 24), np.nan))
    with pytest.raises(DataError, match="shape"):
        base_map.rotated(np.eye(12))
    linear = FeatureMap.linear(np.zeros(3), np.ones(3))
    with pytest.raises(DataError, match="rff"):
        linear.rotated(np.eye(4))
    assert base_map.rotated(np.eye(24)).unrotated() == base_map


@pytest.fixture(scope="module")
def few_rows():
    """More features (b = 128) than training rows (60): where the factorised posterior falls behind."""
    X, y = smooth_data(260, noise=0.02, seed=3)
    return X[:60], y[:60], X[60:], y[60:]


@pytest.fixture(scope="module")
def rotated_fit(few_rows):
    Xtr, ytr, _, _ = few_rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DirectRegressor(n_features=128, rotation="eigen").fit(Xtr, ytr)


def test_rotated_fit_uses_the_eigenbasis_of_its_own_statistics(rotated_fit, few_rows):
    Xtr, ytr, Xte, _ = few_rows
    fmap = rotated_fit.feature_map_
    assert fmap.rotation is not None and is_orthonormal(fmap.rotation)
    base = fmap.unrotated()
    stats = compute_statistics(base, [(Xtr, ytr)])
    np.testing.assert_allclose(fmap.rotation, gram_eigenbasis(stats), atol=1e-9)
    assert rotated_fit.converged_
    assert rotated_fit.posterior_.weight_grid.gains is not None  # one grid per direction
    mean, var = rotated_fit.posterior_.predict_moments(base.transform(Xte) @ fmap.rotation)
    np.testing.assert_allclose(rotated_fit.predict(Xte), mean * rotated_fit.y_scale_ + rotated_fit.y_offset_)


def test_rotated_fit_keeps_up_with_the_float_model_where_unrotated_does_not(rotated_fit, few_rows):
    Xtr, ytr, Xte, yte = few_rows

    def rmse(model) -> float:
        return float(np.sqrt(np.mean((model.predict(Xte) - yte) ** 2)))

    def float_rmse(model) -> float:
        fmap, s = model.feature_map_, model.y_scale_
        br = BayesianRidge(fit_intercept=False).fit(fmap.transform(Xtr), (ytr - model.y_offset_) / s)
        return float(np.sqrt(np.mean((br.predict(fmap.transform(Xte)) * s + model.y_offset_ - yte) ** 2)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = DirectRegressor(n_features=128).fit(Xtr, ytr)
    rotated_ratio = rmse(rotated_fit) / float_rmse(rotated_fit)
    plain_ratio = rmse(plain) / float_rmse(plain)
    assert rotated_ratio <= 1.03, rotated_ratio
    assert plain_ratio >= 1.2, plain_ratio  # the case the rotation exists for
    assert rotated_fit.elbo_ > plain.elbo_
    assert rotated_fit.float_gap_ is None


def test_rotated_model_file_round_trip(rotated_fit, few_rows, tmp_path):
    _, _, Xte, _ = few_rows
    path = tmp_path / "rotated.direct"
    save_model(path, rotated_fit)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.feature_map_.rotation, rotated_fit.feature_map_.rotation)
    assert loaded.get_params()["rotation"] == "eigen"
    for a, b in zip(
        loaded.predict(Xte, return_std=True), rotated_fit.predict(Xte, return_std=True), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_a_file_with_a_corrupt_rotation_is_refused(rotated_fit):
    meta, arrays = decode(encode(*model_to_arrays(rotated_fit)))
    arrays = dict(arrays)
    bad = arrays["feature_map.rotation"].copy()
    bad[0, 0] += 1e-6
    arrays["feature_map.rotation"] = bad
    with pytest.raises(ModelFileError, match="feature_map.rotation.*orthonormal"):
        model_from_arrays(meta, arrays)
    arrays["feature_map.rotation"] = bad[:-1]
    with pytest.raises(ModelFileError):
        model_from_arrays(meta, arrays)


def test_rotation_needs_rff_features():
    X, y = smooth_data(30)
    with pytest.raises(ParameterError, match="rotation"):
        DirectRegressor(features="linear", rotation="eigen").fit(X, y)
    with pytest.raises(ParameterError, match="rotation"):
        DirectRegressor(rotation="pca").fit(X, y)


def cli_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_the_float_gap_message_offers_the_rotation_only_where_it_applies():
    params = DirectRegressor().get_params()
    assert "(fewer n_features, or rotation eigen)" in float_gap_causes(params)
    cli = float_gap_causes(params, cli_name)
    assert "(fewer --n-features, or --rotation eigen)" in cli
    rotated = float_gap_causes({**params, "rotation": "eigen"})
    assert "factorised" not in rotated and "noise-free" in rotated
    assert "rotation" not in float_gap_causes({**params, "features": "linear"})
    shared = float_gap_causes({**params, "rotation": "eigen", "grid_gains": "none"}, cli_name)
    assert "one grid for rotated directions" in shared and "(--grid-gains evidence)" in shared
    given = float_gap_causes({**params, "rotation": "eigen", "grid_scale": 0.2}, cli_name)
    assert "one grid for rotated directions" in given and "--grid-scale too coarse" in given


def test_log_evidence_is_scikit_learns_log_marginal_likelihood():
    rng = np.random.default_rng(1)
    Phi = rng.normal(size=(80, 30))
    y = Phi[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(80)
    post = conjugate_posterior(SufficientStatistics.from_basis(Phi, y))
    br = BayesianRidge(fit_intercept=False, compute_score=True, tol=1e-12, max_iter=3000).fit(Phi, y)
    # scikit-learn adds Gamma(1e-6, 1e-6) hyperpriors: about 1e-5 nats here.
    assert abs(post.log_evidence - br.scores_[-1]) <= 1e-4
    rotated = SufficientStatistics.from_basis(Phi, y).rotated(np.linalg.qr(rng.normal(size=(30, 30)))[0])
    assert abs(conjugate_posterior(rotated).log_evidence - post.log_evidence) <= 1e-8 * abs(post.log_evidence)


def test_rotated_search_ranks_lengthscales_by_the_lower_of_elbo_and_float_evidence(rotated_fit, few_rows):
    """docs/trainer.md §9: per lengthscale candidate, min(its short fit's ELBO, the float model's log
    evidence on the same features); the chosen lengthscale has the highest."""
    Xtr, ytr, _, _ = few_rows
    fmap = rotated_fit.feature_map_
    scores = {}
    for row in rotated_fit.selection_:
        if not row["stage"].startswith("lengthscale"):
            continue
        ell = row["lengthscale"]
        base = FeatureMap.rff(fmap.input_offset, fmap.input_scale, 128, ell, 0)
        stats = compute_statistics(base, [(Xtr, ytr)])
        stats = stats.standardised(rotated_fit.y_offset_, rotated_fit.y_scale_)
        scores[ell] = min(row["elbo"], conjugate_posterior(stats).log_evidence)
    assert len(scores) >= 4
    assert max(scores, key=scores.get) == pytest.approx(rotated_fit.lengthscale_, rel=1e-12)
    # On these 60 rows the two scores disagree somewhere, so the rule is not the ELBO alone.
    elbos = {
        row["lengthscale"]: row["elbo"] for row in rotated_fit.selection_ if row["stage"] == "lengthscale"
    }
    assert any(elbos[ell] != scores[ell] for ell in scores)


def test_directions_beyond_the_grid_scale_bound_are_capped_not_every_grid_shrunk():
    """docs/trainer.md §3: when c·max r would pass Δ's bound (100 sd(y)), the largest directions share
    the top grid and every other direction keeps its own step c·r_k."""
    from direct_edge.trainer.evidence import conjugate_posterior as conj_of
    from direct_edge.trainer.regressor import SCALE_RANGE

    rng = np.random.default_rng(5)
    n, b = 400, 6
    lam = 10.0 ** -np.arange(2.0, 8.0)  # directions whose features are ever smaller
    Psi = rng.standard_normal((n, b))
    Psi = np.linalg.qr(Psi)[0] * np.sqrt(lam)  # orthogonal columns: a diagonal Gram matrix
    w = lam**-0.5 * np.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])  # each carries as much of y
    y = Psi @ w + 1e-3 * rng.standard_normal(n)
    stats = SufficientStatistics.from_basis(Psi, y).standardised(float(y.mean()), float(y.std()))
    reg = DirectRegressor(n_features=b, rotation="eigen", grid_gains="evidence")
    reg._gains_mode = "evidence"
    size = conj_of(stats).weight_size
    c = 0.25
    assert c * size.max() > SCALE_RANGE[1]  # the case
    grid = reg._grid(stats, c)
    assert grid.scale == SCALE_RANGE[1]
    steps = grid.scale * grid.gains
    ref = SCALE_RANGE[1] / c
    small = size < ref
    assert small.any() and not small.all()
    np.testing.assert_allclose(steps[small], c * size[small], rtol=2.0**-14, atol=SCALE_RANGE[1] * 2.0**-15)
    assert np.all(grid.gains[~small] == 1.0)
    unrotated = DirectRegressor(n_features=b, grid_gains="evidence")
    unrotated._gains_mode = "evidence"
    assert unrotated._grid(stats, c).scale == SCALE_RANGE[1]  # the unrotated model clips Δ as before


def tiny_smooth(k: int):
    """The first ``k`` of 2,040 rows of a smooth target with noise sd 0.1."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2.0, 2.0, size=(2040, 3))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(1.5 * X[:, 1]) + 0.3 * X[:, 2] + 0.1 * rng.standard_normal(2040)
    return X[:k], y[:k]


def test_a_noise_estimate_far_below_the_float_models_is_flagged(tmp_path):
    """docs/trainer.md §9: 20 rows against 256 rotated features: the 4-bit fit holds the targets closer
    than the noise allows (noise sd 0.005 where the float model says 0.045 and the truth is 0.1), so its
    intervals are too narrow; one FloatGapWarning says so, the CLI one line, and a saved model keeps it."""
    X, y = tiny_smooth(20)
    with pytest.warns(FloatGapWarning, match="noise sd is .*x that of the float conjugate model") as caught:
        model = DirectRegressor(rotation="eigen").fit(X, y)
    assert sum("noise sd" in str(w.message) for w in caught) == 1
    assert model.noise_gap_ is not None and model.noise_gap_ < 0.5
    save_model(tmp_path / "m.direct", model)
    assert load_model(tmp_path / "m.direct").noise_gap_ == model.noise_gap_
    np.savetxt(tmp_path / "t.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
    from click.testing import CliRunner

    from direct_edge.trainer.cli import main as train_main

    done = CliRunner().invoke(
        train_main,
        [str(tmp_path / "t.csv"), "--target", "y", "--rotation", "eigen", "-o", str(tmp_path / "c.direct")],
    )
    assert done.exit_code == 0, done.output
    lines = [line for line in done.stderr.splitlines() if "noise sd" in line]
    assert len(lines) == 1 and lines[0].startswith("direct-train: warning: the noise sd is")


def test_a_noise_estimate_near_the_float_models_is_not_flagged(rotated_fit):
    assert rotated_fit.noise_gap_ is None
    ratio = np.sqrt(rotated_fit.noise_variance_) / rotated_fit.float_noise_sd_
    assert 0.5 <= ratio <= 2.0
