"""DirectClassifier: scikit-learn conformance, labels, the model average against enumeration and many
samples, uncertainty, options."""

import itertools
import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_estimator

from direct_edge.trainer import DataError, DirectClassifier, ParameterError
from direct_edge.trainer import classification_elbo as C
from direct_edge.trainer.classifier import (
    GAIN_GRID_FACTORS,
    GRID_SCALES,
    PRIOR_SCALES,
    SELECTION_MAX_ITER,
    _Rows,
    fit_posterior,
)

SMALL = {
    "features": "linear",
    "grid_scale": 0.4,
    "prior_scale": 1.0,
    "bound": "boehning",
    "max_iter": 30,
    "n_samples": 64,
}


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return X[::2], y[::2]  # 285 rows


@pytest.fixture(scope="module")
def tiny_fit():
    """A binary linear model on 2 inputs with 2-bit weights: b = 3, m = 3, 27 configurations."""
    X, y = make_blobs(n_samples=60, centers=[[-1, 0], [1, 0.5]], cluster_std=1.2, random_state=1)
    model = DirectClassifier(features="linear", bits=2, grid_scale=1.0, prior_scale=1.0, bound="jensen")
    return model.fit(X, y), X


def enumerate_model(model):
    """(N, K, b) weight values of every configuration and their probabilities under q_weights_."""
    K, b, m = model.q_weights_.shape
    idx = np.array(list(itertools.product(range(m), repeat=K * b))).reshape(-1, K, b)
    W = model.weight_grid()[np.arange(b), idx]
    q = np.prod(model.q_weights_[np.arange(K)[:, None], np.arange(b)[None, :], idx], axis=(1, 2))
    return W, q


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("bound", ["boehning", "auto"])
def test_check_estimator_passes_on_a_small_configuration(bound):
    results = check_estimator(DirectClassifier(**{**SMALL, "bound": bound}), on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert len(results) > 40
    assert failed == []


@pytest.mark.parametrize("labels", [["no", "yes"], [3, 7], ["b", "a", "c"], [-1, 5, 2, 0]])
def test_any_label_type_round_trips(labels):
    X, t = make_blobs(n_samples=80, centers=len(labels), random_state=0)
    y = np.array(labels, dtype=object if isinstance(labels[0], str) else None)[t]
    model = DirectClassifier(**SMALL).fit(X, y)
    np.testing.assert_array_equal(model.classes_, np.unique(y))
    pred = model.predict(X)
    assert set(pred) <= set(labels)
    assert np.mean(pred == y) > 0.8  # logistic regression: 0.91 on the 4-class set
    proba = model.predict_proba(X)
    assert proba.shape == (80, len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert model.q_weights_.shape[0] == (1 if len(labels) == 2 else len(labels))


def test_decision_function_is_the_log_odds_of_the_model_average(cancer):
    X, y = cancer
    model = DirectClassifier(**SMALL).fit(X, y)
    p = model.predict_proba(X)[:, 1]
    d = model.decision_function(X)
    np.testing.assert_allclose(expit(d), p, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(model.predict(X), model.classes_[(d > 0).astype(int)])


def test_model_average_equals_enumeration(tiny_fit):
    """E_q σ(wᵀφ) by enumerating all 27 weight configurations, against predict_proba with many
    samples (error ~ 1/sqrt(S)) and with the default 512."""
    model, X = tiny_fit
    W, q = enumerate_model(model)
    Phi = model.feature_map_.transform(X)
    exact = q @ expit(np.einsum("Nkb,nb->Nn", W, Phi))
    many = model.predict_proba(X, levels=model.sample(200_000, seed=1))[:, 1]
    assert np.max(np.abs(many - exact)) < 4e-3
    default = model.predict_proba(X)[:, 1]
    assert np.max(np.abs(default - exact)) < 0.06  # 512 samples: sd <= 0.5/sqrt(512) = 0.022
    assert np.mean(np.abs(default - exact)) < 0.02


def test_uncertainty_equals_enumeration(tiny_fit):
    model, X = tiny_fit
    W, q = enumerate_model(model)
    p1 = expit(np.einsum("Nkb,nb->Nn", W, model.feature_map_.transform(X)))
    p = np.stack([1 - p1, p1], axis=-1)
    p_bar = np.einsum("N,Nnc->nc", q, p)
    entropy = -np.sum(p_bar * np.log(p_bar), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(p * np.log(p), axis=2)
    mutual = entropy - q @ h
    model_many = DirectClassifier(**model.get_params())
    model_many.__dict__.update(model.__dict__)
    model_many.sample_levels_ = model.sample(100_000, seed=2)
    got_entropy, got_mutual = model_many.predict_uncertainty(X)
    np.testing.assert_allclose(got_entropy, entropy, atol=5e-3)
    np.testing.assert_allclose(got_mutual, mutual, atol=5e-3)
    assert np.all(got_mutual >= 0) and np.all(got_mutual <= got_entropy + 1e-12)
    assert np.all(got_entropy <= np.log(2) + 1e-12)


def test_model_average_of_a_fitted_rff_model_is_close_to_many_samples(cancer):
    X, y = cancer
    model = DirectClassifier(n_features=64, lengthscale=5.0, grid_scale=0.8, prior_scale=1.0, bound="jj")
    model.fit(X, y)
    default = model.predict_proba(X)
    many = model.predict_proba(X, levels=model.sample(20_000, seed=3))
    assert np.max(np.abs(default - many)) < 0.03
    assert np.mean(np.abs(default - many)) < 0.005


def test_tighter_bounds_reach_higher_elbos_on_the_same_candidate(cancer):
    """On one candidate, the fitted ELBO orders as the bounds do: exp ≤ Böhning ≤ JJ ≤ Jensen."""
    X, y = cancer
    opts = {"n_features": 32, "lengthscale": 5.0, "grid_scale": 0.8, "prior_scale": 1.0, "max_iter": 300}
    elbo = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for bound in C.BOUNDS:
            elbo[bound] = DirectClassifier(bound=bound, **opts).fit(X, y).elbo_
    assert elbo["exp"] < elbo["boehning"] < elbo["jj"] < elbo["jensen"]


def test_the_auto_bound_scores_the_scales_on_jensen_and_continues_the_chosen_one(cancer):
    X, y = cancer
    model = DirectClassifier(n_features=32, lengthscale=5.0, prior_scale=1.0).fit(X, y)
    assert model.bound_ == "jensen"
    assert {r["stage"] for r in model.selection_} == {"scales"}
    assert {r["bound"] for r in model.selection_} == {"jensen"}
    chosen = max(model.selection_, key=lambda r: r["elbo"])
    assert model.grid_scale_ == chosen["grid_scale"]
    assert model.elbo_ >= chosen["elbo"]  # continued on the bound it was scored on: never below it


def test_auto_chooses_the_lengthscale_on_a_quadratic_bound_and_the_scales_on_jensen(cancer):
    """Each scales candidate's score is its fit on JJ (two classes) continued on Jensen, both for
    SELECTION_MAX_ITER iterations from the prior: recomputed here, it is equal to the last bit."""
    X, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DirectClassifier(n_features=32, max_iter=300, grid_gains="none").fit(X, y)
    assert {r["stage"]: r["bound"] for r in model.selection_} == {"lengthscale": "jj", "scales": "jensen"}
    labels = np.searchsorted(model.classes_, y)
    rows = _Rows(model.feature_map_, X, labels, 4096)
    for r in [r for r in model.selection_ if r["stage"] == "scales"][:3]:
        grid = model._grid(r["grid_scale"])
        log_prior = model._log_prior(grid, r["prior_scale"], 32)
        values = np.ascontiguousarray(np.broadcast_to(grid.values, log_prior.shape))
        theta0 = log_prior[None].copy()
        warm = fit_posterior("jj", rows, None, values, log_prior, theta0, SELECTION_MAX_ITER)
        fit = fit_posterior("jensen", rows, None, values, log_prior, warm.theta, SELECTION_MAX_ITER)
        assert r["elbo"] == fit.elbo


def test_scales_reach_confident_logits_on_separable_data():
    """A linear boundary without noise: the logits must reach several units.  The warm-started Jensen
    score of a large candidate is far above Jensen's from the prior (which stalls there), and the
    search ends on a large grid and prior."""
    assert GRID_SCALES == (0.2, 0.4, 0.8, 1.6) and PRIOR_SCALES == (0.5, 1.0, 2.0, 4.0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    model = DirectClassifier(features="linear", max_iter=300, grid_gains="none").fit(X, y)
    score = {(r["grid_scale"], r["prior_scale"]): r["elbo"] for r in model.selection_}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold = DirectClassifier(
            features="linear",
            grid_scale=1.6,
            prior_scale=4.0,
            bound="jensen",
            max_iter=SELECTION_MAX_ITER,
            grid_gains="none",
        ).fit(X, y)
    assert score[(1.6, 4.0)] > cold.elbo_ + 30  # measured: −21.0 against −80.9
    assert model.grid_scale_ >= 1.6 and model.prior_scale_ >= 4.0  # measured: 3.2 and 16
    assert np.mean(model.predict(X) == y) == 1.0


def test_selection_keeps_the_highest_elbo_candidate_and_never_loses_it(cancer):
    X, y = cancer
    model = DirectClassifier(n_features=32, lengthscale=5.0, bound="jj", max_iter=2000).fit(X, y)
    best = max(model.selection_, key=lambda r: r["elbo"])
    assert (model.grid_scale_, model.prior_scale_) == (best["grid_scale"], best["prior_scale"])
    assert model.elbo_ >= best["elbo"]
    assert len(model.selection_) >= 12


def test_one_class_and_jj_with_many_classes_are_refused():
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(DataError, match="2 classes"):
        DirectClassifier(**SMALL).fit(X, np.zeros(10))
    with pytest.raises(ParameterError, match="'jj' only for two classes"):
        DirectClassifier(**{**SMALL, "bound": "jj"}).fit(X, np.arange(10) % 3)


@pytest.mark.parametrize(
    "name,value",
    [("bound", "probit"), ("grid_scale", 0.0), ("n_samples", 0), ("bits", 9), ("n_features", 7)],
)
def test_an_option_out_of_range_raises_a_parameter_error_naming_it(name, value):
    X, y = make_blobs(n_samples=20, centers=2, random_state=0)
    with pytest.raises(ParameterError, match=name):
        DirectClassifier(**{name: value}).fit(X, y)


def test_every_option_has_a_constraint():
    assert set(DirectClassifier._parameter_constraints) == set(DirectClassifier().get_params())


def test_a_fit_stopped_by_max_iter_warns(cancer):
    X, y = cancer
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        model = DirectClassifier(**{**SMALL, "max_iter": 3}).fit(X, y)
    assert not model.converged_ and model.n_iter_ <= 3


def test_fitted_attributes_are_plain_arrays(cancer):
    X, y = cancer
    model = DirectClassifier(**SMALL).fit(X, y)
    K, b, m = model.q_weights_.shape
    assert model.q_weights_.dtype == np.float64 and (K, m) == (1, 15) and b == X.shape[1] + 1
    np.testing.assert_allclose(model.q_weights_.sum(axis=-1), 1.0, rtol=1e-12)
    assert model.sample_levels_.dtype == np.int8 and model.sample_levels_.shape == (64, K, b)
    assert np.abs(model.sample_levels_).max() <= 7
    np.testing.assert_array_equal(model.sample_levels_, model.sample(64, seed=model.random_state))
    assert 0.0 <= model.sparsity_ <= 1.0


def test_per_feature_grids_follow_the_gaussian_approximation_and_predictions_use_them(cancer):
    """Weight j lives on levels × Δ × g_j, g_j = |μ_j| / max|μ| from the Gaussian approximation on the
    chosen features (rounded to 2^-15), Δ = c × max|μ| and the prior sd f × its prior sd for the
    chosen factors (c, f); predict_proba is the average over the samples on that grid."""
    X, y = cancer
    model = DirectClassifier(n_features=32, lengthscale=5.0, max_iter=300).fit(X, y)
    rows = _Rows(model.feature_map_, X, y.astype(np.int64), 4096)
    Phi = rows.cache
    approx = C.gaussian_approximation(Phi.T @ Phi, rows.blocks, 1)
    gains, top = approx.grid_gains()
    np.testing.assert_allclose(model.grid_gains_, gains, atol=2.0**-16)
    assert model.grid_gains_.max() == 1.0 and model.grid_gains_.min() < 0.2
    chosen = max(model.selection_, key=lambda r: r["elbo"])
    c, f = chosen["factors"]
    assert c in GAIN_GRID_FACTORS and f == 16.0  # measured: (0.25, 16), the prior followed past its edge
    assert model.grid_scale_ == pytest.approx(c * top, rel=1e-6)
    assert model.prior_scale_ == pytest.approx(f * np.sqrt(approx.prior_var), rel=1e-6)
    W = model.sample_levels_[:, 0, :] * (model.grid_scale_ * model.grid_gains_)
    expected = expit(model.feature_map_.transform(X) @ W.T).mean(axis=1)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], expected, rtol=1e-9)


def test_per_feature_grids_reach_a_higher_elbo_than_one_grid(cancer):
    """Measured on these 285 rows, b = 32: −59.9 nats against −78.0 with one grid."""
    X, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gained = DirectClassifier(n_features=32, lengthscale=5.0).fit(X, y)
        one = DirectClassifier(n_features=32, lengthscale=5.0, grid_gains="none").fit(X, y)
    np.testing.assert_array_equal(one.grid_gains_, 1.0)
    assert gained.elbo_ > one.elbo_ + 5


def test_the_fit_does_not_depend_on_the_callers_blas_threads(cancer):
    """The fit (Gaussian approximation, search, final fit) runs on one BLAS thread whatever the caller
    allows, so the model is bit-identical under 1 and 2 threads."""
    from threadpoolctl import threadpool_limits

    X, y = cancer
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            fits.append(
                DirectClassifier(n_features=32, lengthscale=5.0, grid_scale=1.0, max_iter=100).fit(X, y)
            )
    np.testing.assert_array_equal(fits[0].q_weights_, fits[1].q_weights_)
    np.testing.assert_array_equal(fits[0].grid_gains_, fits[1].grid_gains_)
    assert fits[0].prior_scale_ == fits[1].prior_scale_
