"""DirectClassifier: Bayesian logistic and softmax classification with discrete weights, fitted by VI.

The classification counterpart of :class:`~direct_edge.trainer.regressor.DirectRegressor`
(docs/trainer.md §11): the same feature maps (§3), grids and priors (§2), a mean-field categorical
q over every weight, and an ELBO on a lower bound of the expected log-likelihood whose expectation
is exact (trainer/classification_elbo.py).  Binary labels use one weight vector and the logistic
likelihood; K ≥ 3 classes use K weight vectors and the softmax likelihood.

Fitting with a quadratic bound (Böhning's, the default, or Jaakkola–Jordan's) alternates an outer
step, one pass over the rows that moves the bound's expansion points to the current q, and an inner
L-BFGS-B optimisation of q whose cost per iteration does not depend on n.  Grid scale, prior scale
and rff lengthscale are chosen by the ELBO when not given (as §9 does for regression).  By default
each feature has its own grid, levels × Δ × g_j, with g_j proportional to the size of its weights
under a continuous Gaussian approximation (Böhning's bound, prior by its evidence), as regression's
per-feature grids are sized by its conjugate posterior (§2).
Predictions average the likelihood over posterior samples drawn once, with a fixed seed, at fit
time (``sample_levels_``): the Bayesian model average an integer runtime holding the same samples
reproduces.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from itertools import product
from numbers import Integral

import numpy as np
from scipy.special import log_expit, log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from direct_edge.trainer import classification_elbo as C
from direct_edge.trainer.blas import one_blas_thread
from direct_edge.trainer.elbo import log_softmax as row_log_softmax
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, InputMoments
from direct_edge.trainer.grid import WeightGrid, prior_log_probs
from direct_edge.trainer.optimize import maximise_lbfgs
from direct_edge.trainer.posterior import sample_indices
from direct_edge.trainer.regressor import (
    LENGTHSCALE_FACTORS,
    MODEL_CONSTRAINTS,
    SCALE_RANGE,
    ParameterError,
    search_past_edge,
)
from direct_edge.trainer.statistics import array_batches, check_memory_for, compute_statistics

# Candidate sets searched by the ELBO (§11), in logit units: a weight's value adds Δ·level·φ_j to a
# logit, and an rff feature is of size ~b^-½, so a confident logit needs weights of a few units
# (logistic regression on digits' b = 256 features: rms 1.9, largest 7.6).  Lengthscales are those of
# regression (multiples of sqrt(d)); each set is followed past its edge like regression's
# (search_past_edge).
GRID_SCALES = (0.2, 0.4, 0.8, 1.6)
PRIOR_SCALES = (0.5, 1.0, 2.0, 4.0)
# With per-feature grids (grid_gains="gaussian") weight j's grid step is c·|μ_j|, |μ_j| its size under
# the Gaussian approximation (classification_elbo.gaussian_approximation), and the prior sd is f times
# that approximation's prior sd; c and f are searched from these (§11), followed past their edges.
GAIN_GRID_FACTORS = (0.15, 0.25, 0.4, 0.6)
GAIN_PRIOR_FACTORS = (1.0, 2.0, 4.0)
GRID_GAINS = ("gaussian", "none")
# Inner L-BFGS-B iterations between two updates of a quadratic bound, and the relative ELBO change
# between outer steps below which a fit has converged.
INNER_ITER = 50
OUTER_TOL = 1e-7
# Iterations of a candidate's short fit (§11); the chosen candidate is continued for max_iter.
SELECTION_MAX_ITER = 150
# Training features are kept in memory up to this many float64 entries (256 MB), else recomputed
# chunk by chunk on every pass.
CACHE_ENTRIES = 1 << 25


class _Rows:
    """The training rows as blocks of (Φ (k, b), labels (k,)): cached features, or features recomputed
    from ``X`` chunk by chunk on each pass when they would not fit in ``CACHE_ENTRIES``."""

    def __init__(self, fmap: FeatureMap, X: np.ndarray, labels: np.ndarray, chunk_rows: int) -> None:
        self.fmap, self.X, self.labels, self.chunk_rows = fmap, X, labels, int(chunk_rows)
        small = X.shape[0] * fmap.n_features <= CACHE_ENTRIES
        self.cache = fmap.transform(X) if small else None

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.cache is not None:
            yield self.cache, self.labels
            return
        for a in range(0, self.X.shape[0], self.chunk_rows):
            rows = slice(a, a + self.chunk_rows)
            yield self.fmap.transform(self.X[rows]), self.labels[rows]


class _Fit:
    """One posterior fit: θ (K, b, m), its ELBO (nats, on the bound), iterations, convergence, trace."""

    def __init__(self, theta: np.ndarray) -> None:
        self.theta = theta
        self.elbo = -np.inf
        self.n_iter = 0
        self.converged = False
        self.trace: list[float] = []


def fit_posterior(
    bound: str,
    rows: _Rows,
    gram: np.ndarray | None,
    grid: np.ndarray,
    log_prior: np.ndarray,
    theta: np.ndarray,
    max_iter: int,
) -> _Fit:
    """Maximise the ELBO on ``bound`` over θ (K, b, m) from ``theta``, for at most ``max_iter``
    L-BFGS-B iterations in all.  ``gram``: ΦᵀΦ (b, b) (Böhning only).

    Quadratic bounds: repeat {one pass to put the bound at the current q (§11); at most
    ``INNER_ITER`` iterations on that bound} until an outer step raises the ELBO by less than
    ``OUTER_TOL`` relative.  The ELBO reported is the bound's at the final q, re-expanded there (so
    it never decreases from one outer step to the next).  "exp" and "jensen": one L-BFGS-B run."""
    fit = _Fit(theta.copy())
    shape = theta.shape

    def record(it: int, value: float) -> None:
        fit.trace.append(value)

    if bound in ("exp", "jensen"):
        tilts = None
        if 2 * rows.X.shape[0] * grid.size <= CACHE_ENTRIES:
            tilts = [(C.Tilts.build(Phi, grid), Phi, labels) for Phi, labels in rows.blocks()]

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = 0.0, np.zeros(shape)
            th = x.reshape(shape)
            blocks = tilts if tilts is not None else ((None, Phi, t) for Phi, t in rows.blocks())
            for tilt, Phi, labels in blocks:
                if tilt is None:
                    v, g = C.exp_bound_log_lik(Phi, labels, th, grid, bound)
                else:
                    v, g = C.tilted_bound_log_lik(tilt, labels, th, bound)
                value, grad = value + v, grad + g
            kl, kl_grad, Q = C.kl_terms(th, log_prior)
            return value + kl, (grad + C.softmax_backward(Q, kl_grad)).ravel()

        res = maximise_lbfgs(objective, fit.theta.ravel(), max_iter, 1e-10, record)
        fit.theta, fit.elbo, fit.n_iter = res.x.reshape(shape), res.value, res.n_iter
        fit.converged = not res.limit_reached
        return fit

    previous = -np.inf
    while True:
        s, v = C.weight_moments(grid, np.exp(row_log_softmax(fit.theta)))
        qb = C.quadratic_bound(bound, gram, rows.blocks(), s, v)
        value, _ = C.quadratic_elbo(qb, fit.theta, grid, log_prior)
        fit.elbo = value
        if value - previous <= OUTER_TOL * abs(value):
            fit.converged = True
            return fit
        if fit.n_iter >= max_iter:
            return fit
        previous = value

        def objective(x: np.ndarray, qb=qb) -> tuple[float, np.ndarray]:
            val, grad = C.quadratic_elbo(qb, x.reshape(shape), grid, log_prior)
            return val, grad.ravel()

        res = maximise_lbfgs(
            objective, fit.theta.ravel(), min(INNER_ITER, max_iter - fit.n_iter), 1e-12, record
        )
        fit.theta = res.x.reshape(shape)
        fit.n_iter += res.n_iter
        if res.n_iter == 0:
            fit.converged = True
            fit.elbo = max(fit.elbo, res.value)
            return fit


class DirectClassifier(ClassifierMixin, BaseEstimator):
    """Bayesian classification with 4-bit (by default) discrete weights, fitted by exact VI on a bound.

    Binary labels: p(y = classes_[1] | x) = σ(wᵀφ(x)), one weight vector.  K ≥ 3 classes:
    p(y = classes_[k] | x) = softmax(Wφ(x))_k, K weight vectors.  Labels may be of any type that
    ``numpy.unique`` sorts (ints, strings, ...).  docs/trainer.md §11.

    Parameters
    ----------
    features : {"rff", "linear"}, default "rff"
        Random Fourier features of an RBF kernel, or the inputs plus a bias (§3).
    n_features : int >= 2, even for "rff", default 256
        b, the rff features per output (ignored for linear features: b = d + 1).
    lengthscale : float > 0, array-like (d,) of floats > 0, or None, default None
        rff lengthscale in standardised input units; None chooses from sqrt(d) × {0.2, 0.35, 0.6,
        1.0} by the ELBO.
    bits : int in [2, 8], default 4
        Weight grid width (§2).
    symmetric : bool, default True
        Levels −(2^(k−1)−1)..2^(k−1)−1, or two's complement.
    grid_scale : float in [1e-4, 100], or None, default None
        Δ in logit units; None chooses from {0.2, 0.4, 0.8, 1.6} by the ELBO.
    prior : {"gaussian", "uniform", "sparse"}, default "gaussian"
        Prior over each weight's grid row (§2).
    prior_scale : float in [1e-4, 100], or None, default None
        sd of the gaussian prior in logit units; None chooses from {0.5, 1, 2, 4} by the ELBO.
    zero_mass : float in [0, 1), default 0.5
        Extra prior mass on level 0 (prior "sparse" only).
    bound : {"auto", "boehning", "jj", "jensen", "exp"}, default "auto"
        Lower bound on the log-likelihood (§11): Böhning's fixed-curvature quadratic bound (cost per
        iteration independent of n), Jaakkola–Jordan's (binary only; a weighted Gram per outer
        step), or the paper's exp bound / its Jensen form (O(n·b·m·K) per iteration).
        "auto" chooses the lengthscale on a quadratic bound (Jaakkola–Jordan for two classes,
        Böhning for more: n-independent inner iterations), then scores the grid and prior scales on
        the Jensen bound, the tightest, and continues the chosen one on it (the quadratic bounds,
        looser for confident rows, prefer scales too small to be confident; measured in §11).
    max_iter : int >= 1, default 1000
        Bound on the L-BFGS-B iterations of the final fit (all inner iterations together).
    n_samples : int >= 1, default 512
        Posterior samples drawn at fit time (seed ``random_state``) over which ``predict_proba``
        averages the likelihood.
    chunk_rows : int >= 1, default 4096
        Rows per chunk of the statistics pass and of the passes of the outer steps.
    precision : {"float64", "float32"}, default "float64"
        Precision of the Gram pass (§4).
    random_state : int >= 0, default 0
        Seed of the rff frequencies and of the posterior samples.
    grid_gains : {"gaussian", "none"}, default "gaussian"
        "gaussian": per-feature grids (§11): weight j lives on levels × Δ × g_j with g_j = |μ_j| / max|μ|
        in [2^-10, 1], μ the posterior mean of a continuous Gaussian approximation (Böhning's bound,
        prior by its evidence); a searched Δ is c × max|μ| (c from {0.15, 0.25, 0.4, 0.6}) and a
        searched prior sd f × the approximation's (f from {1, 2, 4}); a given ``grid_scale`` or
        ``prior_scale`` is used as it is.  The integer runtime applies such gains to its features
        (docs/integer-spec.md §3.4).  "none": one grid for every weight.

    Attributes
    ----------
    classes_ : (n_classes,) array of the labels, sorted.
    feature_map_ : FeatureMap.
    q_weights_ : (K, b, m) float64, q over each weight's grid levels (K = 1 for binary labels).
    grid_levels_ : (m,) int64 levels; ``grid_scale_`` Δ; ``grid_gains_`` (b,) float64 g_j in (0, 1]
        (all 1 with ``grid_gains="none"``), multiples of 2^-15: level × Δ × g_j is weight j in logit units.
    sample_levels_ : (n_samples, K, b) int8 levels of the posterior samples.
    elbo_ : ELBO on the bound (nats); ``bound_``, ``prior_scale_``, ``lengthscale_``, ``n_iter_``,
    ``converged_``, ``trace_``, ``selection_`` (candidates and their ELBO), ``n_train_``,
    ``input_min_``, ``input_max_``, ``n_features_in_``, ``fit_time_``.

    Raises
    ------
    ParameterError
        From ``fit``, for an option outside the values above ("jj" with more than two classes).
    DataError
        From ``fit``, for unusable data (fewer than 2 rows, one class, NaN, ...).
    """

    _parameter_constraints: dict = {
        **MODEL_CONSTRAINTS,
        "bound": [StrOptions({"auto", *C.BOUNDS})],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "grid_gains": [StrOptions(set(GRID_GAINS))],
    }

    def __init__(
        self,
        features: str = "rff",
        n_features: int = 256,
        lengthscale: float | np.ndarray | None = None,
        bits: int = 4,
        symmetric: bool = True,
        grid_scale: float | None = None,
        prior: str = "gaussian",
        prior_scale: float | None = None,
        zero_mass: float = 0.5,
        bound: str = "auto",
        max_iter: int = 1000,
        n_samples: int = 512,
        chunk_rows: int = 4096,
        precision: str = "float64",
        random_state: int = 0,
        grid_gains: str = "gaussian",
    ) -> None:
        self.features = features
        self.n_features = n_features
        self.lengthscale = lengthscale
        self.bits = bits
        self.symmetric = symmetric
        self.grid_scale = grid_scale
        self.prior = prior
        self.prior_scale = prior_scale
        self.zero_mass = zero_mass
        self.bound = bound
        self.max_iter = max_iter
        self.n_samples = n_samples
        self.chunk_rows = chunk_rows
        self.precision = precision
        self.random_state = random_state
        self.grid_gains = grid_gains

    # ---- fitting ------------------------------------------------------------------------------

    def _validate_params(self) -> None:
        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from None
        if self.features == "rff" and self.n_features % 2:
            raise ParameterError(
                "The 'n_features' parameter of DirectClassifier must be even for features='rff' "
                f"(a cos and a sin per frequency). Got {self.n_features!r} instead."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, y: np.ndarray) -> DirectClassifier:
        """Fit on ``X``: (n, d) numbers and ``y``: (n,) labels.  Returns self.

        Raises DataError for fewer than 2 rows or one class, ParameterError for bad options."""
        start = time.perf_counter()
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise DataError(f"need at least 2 classes to classify, got 1 class ({self.classes_[0]!r})")
        K = 1 if self.classes_.size == 2 else int(self.classes_.size)
        if self.bound == "jj" and K > 1:
            raise ParameterError(
                "The 'bound' parameter of DirectClassifier may be 'jj' only for two classes; "
                f"got {self.classes_.size} classes. Use 'boehning'."
            )
        d = X.shape[1]
        self._check_lengthscale(d)
        check_memory_for(d + 1 if self.features == "linear" else int(self.n_features))
        moments = InputMoments().update(X)
        offset, scale = moments.offset_and_scale()
        self.input_min_, self.input_max_ = moments.low.copy(), moments.high.copy()
        labels = labels.astype(np.int64)
        with one_blas_thread():
            self._search_and_fit(X, labels, K, offset, scale)
        self.n_train_ = int(X.shape[0])
        self.fit_time_ = time.perf_counter() - start
        return self

    def _check_lengthscale(self, n_inputs: int) -> None:
        if self.features != "rff" or self.lengthscale is None or np.ndim(self.lengthscale) == 0:
            return
        ell = np.asarray(self.lengthscale)
        ok = ell.shape == (n_inputs,) and np.issubdtype(ell.dtype, np.number)
        if not (ok and np.all(np.isfinite(ell)) and np.all(ell > 0)):
            raise ParameterError(
                "The 'lengthscale' parameter of DirectClassifier must be None, a float > 0 or an array of "
                f"{n_inputs} finite floats > 0 (one per input). Got {self.lengthscale!r} instead."
            )

    def _grid(self, grid_scale: float, gains: np.ndarray | None = None) -> WeightGrid:
        grid = WeightGrid.from_bits(int(self.bits), float(grid_scale), bool(self.symmetric))
        return grid if gains is None else grid.with_gains(gains)

    def weight_grid(self) -> np.ndarray:
        """(b, m) float64: the fitted grid's weight values, level × Δ × g_j, in logit units."""
        check_is_fitted(self, "q_weights_")
        return self.grid_scale_ * self.grid_gains_[:, None] * self.grid_levels_[None, :].astype(np.float64)

    def _log_prior(self, grid: WeightGrid, prior_scale: float | None, b: int) -> np.ndarray:
        lp = prior_log_probs(grid.values, self.prior, prior_scale or 1.0, float(self.zero_mass))
        return np.ascontiguousarray(np.broadcast_to(lp, (b, grid.levels.size)))

    def _search_and_fit(
        self, X: np.ndarray, labels: np.ndarray, K: int, offset: np.ndarray, scale: np.ndarray
    ) -> None:
        """§11: lengthscale (one feature pass each, scored at the middle scales), then grid and prior
        scales on the chosen features, each set followed past its edge; then the final fit,
        continued from the best candidate.  With ``bound="auto"`` the lengthscale stage is scored on a
        quadratic bound and the scales on the Jensen bound (so the scales' ELBOs are the final fit's
        kind).  Sets the fitted attributes."""
        gained = self.grid_gains == "gaussian"
        grid_set, prior_set = (
            (GAIN_GRID_FACTORS, GAIN_PRIOR_FACTORS) if gained else (GRID_SCALES, PRIOR_SCALES)
        )
        grid_scales = grid_set if self.grid_scale is None else (float(self.grid_scale),)
        if self.prior == "uniform":
            prior_scales: tuple = (None,)
        else:
            prior_scales = prior_set if self.prior_scale is None else (float(self.prior_scale),)
        mid = (grid_scales[len(grid_scales) // 2], prior_scales[len(prior_scales) // 2])
        if self.bound == "auto":
            # The lengthscale on a cheap quadratic bound; the scales on the tight Jensen bound, because a
            # quadratic bound's looseness grows with the logits' size and so biases it towards small Δ
            # (digits: Böhning chose Δ = 0.2, accuracy 0.894; Jensen's ELBO prefers Δ = 0.8, 0.957).
            # A scales candidate is first fitted on the quadratic bound and continued on Jensen: from
            # the prior, L-BFGS-B on Jensen alone stalls where the logits must grow large (separable
            # data: Jensen −80.9 after 150 iterations where JJ reached −27.3 on the same candidate).
            search_bound, scale_bound, final_bound = ("jj" if K == 1 else "boehning"), "jensen", "jensen"
        else:
            search_bound = scale_bound = final_bound = self.bound
        selection: list[dict] = []
        searching = len(grid_scales) * len(prior_scales) > 1 or (
            self.features == "rff" and self.lengthscale is None
        )

        def problem(ell) -> tuple:
            """(feature map, rows, ΦᵀΦ or None, (gains, largest size, prior sd) or None)."""
            if self.features == "linear":
                fmap = FeatureMap.linear(offset, scale)
            else:
                fmap = FeatureMap.rff(offset, scale, int(self.n_features), ell, int(self.random_state))
            rows = _Rows(fmap, X, labels, int(self.chunk_rows))
            gram = gains = None
            if search_bound == "boehning" or gained:
                batches = array_batches(X, labels.astype(np.float64), int(self.chunk_rows))
                gram = compute_statistics(fmap, batches, int(self.chunk_rows), precision=self.precision).gram
            if gained:
                approx = C.gaussian_approximation(gram, rows.blocks, K)
                gains = (*approx.grid_gains(), float(np.sqrt(approx.prior_var)))
            return fmap, rows, gram, gains

        def actual(data, scales) -> tuple[float, float | None]:
            """A candidate's Δ and prior sd in logit units: with per-feature grids, searched factors
            times the Gaussian approximation's largest weight and prior sd."""
            gains = data[3]
            if gains is None:
                return float(scales[0]), scales[1]
            delta = float(scales[0]) * (gains[1] if self.grid_scale is None else 1.0)
            sd = scales[1]
            if sd is not None and self.prior_scale is None:
                sd = float(sd) * gains[2]
            clip = (lambda v: v) if sd is None else (lambda v: float(np.clip(v, *SCALE_RANGE)))
            return float(np.clip(delta, *SCALE_RANGE)), clip(sd)

        def setup(data, scales) -> tuple[WeightGrid, np.ndarray, np.ndarray]:
            """The candidate's grid, log prior (b, m) and weight values (b, m)."""
            delta, sd = actual(data, scales)
            grid = self._grid(delta, None if data[3] is None else data[3][0])
            log_prior = self._log_prior(grid, sd, data[0].n_features)
            return grid, log_prior, np.ascontiguousarray(np.broadcast_to(grid.values, log_prior.shape))

        def candidate(data, ell, scales, stage: str, bound: str) -> _Fit:
            fmap, rows, gram, _ = data
            grid, log_prior, values = setup(data, scales)
            theta0 = np.broadcast_to(log_prior, (K, *log_prior.shape)).copy()
            if bound != search_bound:  # warm start on the cheap bound, scored on ``bound``
                warm = fit_posterior(search_bound, rows, gram, values, log_prior, theta0, SELECTION_MAX_ITER)
                theta0 = warm.theta
            fit = fit_posterior(bound, rows, gram, values, log_prior, theta0, SELECTION_MAX_ITER)
            if bound != search_bound:
                fit.n_iter += warm.n_iter
                fit.trace = warm.trace + fit.trace
            selection.append(
                {
                    "stage": stage,
                    "bound": bound,
                    "lengthscale": None if ell is None else float(np.mean(ell)),
                    "grid_scale": actual(data, scales)[0],
                    "prior_scale": actual(data, scales)[1],
                    "factors": scales if gained else None,
                    "elbo": float(fit.elbo),
                }
            )
            return fit

        # Step 1: features.
        if self.features == "linear" or self.lengthscale is not None:
            ell = None if self.features == "linear" else self.lengthscale
            data = problem(ell)
            fitted: dict[tuple, _Fit] = {}
        else:
            best: dict = {}

            def score_lengthscale(factor: float) -> float:
                ell = factor * np.sqrt(X.shape[1])
                data = problem(ell)
                fit = candidate(data, ell, mid, "lengthscale", search_bound)
                if not best or fit.elbo > best["fit"].elbo:
                    best.update(ell=ell, data=data, fit=fit)
                return fit.elbo

            tried = {f: score_lengthscale(f) for f in LENGTHSCALE_FACTORS}
            search_past_edge(tried, score_lengthscale)
            ell, data = best["ell"], best["data"]
            # Scores on another bound are not comparable with the scales stage's.
            fitted = {mid: best["fit"]} if scale_bound == search_bound else {}

        # Step 2: scales on the chosen features.
        def score_scales(scales: tuple) -> float:
            if scales not in fitted:
                fitted[scales] = candidate(data, ell, scales, "scales", scale_bound)
            return fitted[scales].elbo

        if len(grid_scales) * len(prior_scales) > 1:
            for scales in product(grid_scales, prior_scales):
                score_scales(scales)
            best_g, best_p = max(fitted, key=lambda k: fitted[k].elbo)
            if len(grid_scales) > 1:
                tried = {g: score_scales((g, best_p)) for g in grid_scales}
                best_g = search_past_edge(tried, lambda g: score_scales((g, best_p)))
            if len(prior_scales) > 1:
                tried = {p: score_scales((best_g, p)) for p in prior_scales}
                search_past_edge(tried, lambda p: score_scales((best_g, p)))
        scales = max(fitted, key=lambda k: fitted[k].elbo) if fitted else mid

        # Step 3: the final fit, continued from the chosen candidate (never worse than it).
        fmap, rows, gram, _ = data
        grid, log_prior, values = setup(data, scales)
        start = fitted[scales] if scales in fitted else None
        theta0 = (
            start.theta if start is not None else np.broadcast_to(log_prior, (K, *log_prior.shape)).copy()
        )
        fit = fit_posterior(final_bound, rows, gram, values, log_prior, theta0, int(self.max_iter))
        if final_bound == scale_bound and start is not None and start.elbo > fit.elbo:
            fit.theta, fit.elbo = start.theta, start.elbo  # never worse than the candidate it continues

        self.feature_map_ = fmap
        self.bound_ = final_bound
        self.grid_levels_ = grid.levels.copy()
        self.grid_scale_, self.prior_scale_ = actual(data, scales)
        b = fmap.n_features
        self.grid_gains_ = np.ones(b) if grid.gains is None else grid.gains.copy()
        if ell is None:
            self.lengthscale_ = None
        else:
            ell = np.asarray(ell, dtype=np.float64)
            self.lengthscale_ = float(ell) if ell.ndim == 0 else ell
        self.q_weights_ = np.exp(row_log_softmax(fit.theta))
        self.elbo_ = float(fit.elbo)
        self.n_iter_ = int(fit.n_iter)
        self.converged_ = bool(fit.converged)
        self.trace_ = (start.trace if start is not None else []) + fit.trace
        self.selection_ = selection if searching else []
        self.sample_levels_ = self.sample(int(self.n_samples), int(self.random_state))
        if not fit.converged:
            warnings.warn(
                f"DirectClassifier: the final fit stopped at its limit of max_iter={self.max_iter} "
                f"L-BFGS-B iterations before the ELBO converged (ELBO {self.elbo_:.6g} nats); increase "
                f"max_iter to fit further, e.g. DirectClassifier(max_iter={2 * self.max_iter}).",
                ConvergenceWarning,
                stacklevel=4,
            )

    # ---- posterior ----------------------------------------------------------------------------

    def sample(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """(n_samples, K, b) int8 grid levels drawn from q (weight j = level × Δ × g_j, :meth:`weight_grid`),
        reproducible for a given ``seed`` (one ``numpy.random.default_rng(seed)``)."""
        check_is_fitted(self, "q_weights_")
        K, b, m = self.q_weights_.shape
        rng = np.random.default_rng(seed)
        index = sample_indices(self.q_weights_.reshape(1, K * b, m), np.ones(1), int(n_samples), rng)
        return self.grid_levels_[index].reshape(int(n_samples), K, b).astype(np.int8)

    @property
    def sparsity_(self) -> float:
        """Expected share of zero weights under q."""
        check_is_fitted(self, "q_weights_")
        return float(self.q_weights_[..., self.grid_levels_ == 0].sum(axis=-1).mean())

    def weight_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the weights, each (K, b), in logit units."""
        check_is_fitted(self, "q_weights_")
        return C.weight_moments(self.weight_grid(), self.q_weights_)

    # ---- prediction ---------------------------------------------------------------------------

    def _sample_log_probs(self, X: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """log p(class | x, W_s) for every posterior sample: (S, n, n_classes)."""
        check_is_fitted(self, "q_weights_")
        with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn's finiteness check sums X,
            X = validate_data(self, X, reset=False, dtype=np.float64)  # which overflows near 1.7e308
        levels = self.sample_levels_ if levels is None else levels
        S, K, b = levels.shape
        W = levels.reshape(S * K, b).astype(np.float64) * (self.grid_scale_ * self.grid_gains_)
        Z = (self.feature_map_.transform(X) @ W.T).reshape(X.shape[0], S, K).transpose(1, 0, 2)
        if K == 1:
            return np.concatenate([log_expit(-Z), log_expit(Z)], axis=2)
        return log_softmax(Z, axis=2)

    def predict_log_proba(self, X: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """(n, n_classes) log of the Bayesian model average, log mean_s p(class | x, W_s), over the
        posterior samples ``sample_levels_`` (or ``levels`` (S, K, b) int8 from :meth:`sample`)."""
        log_p = self._sample_log_probs(X, levels)
        top = log_p.max(axis=0)
        log_mean = top + np.log(np.mean(np.exp(log_p - top), axis=0))
        return log_mean - np.logaddexp.reduce(log_mean, axis=1, keepdims=True)

    def predict_proba(self, X: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """(n, n_classes) Bayesian model average over the posterior samples; columns follow
        ``classes_``.  Monte Carlo over ``n_samples`` draws with a fixed seed (docs/trainer.md §11
        gives the error against many more samples)."""
        return np.exp(self.predict_log_proba(X, levels))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Binary: (n,) log-odds of ``classes_[1]`` under the model average (> 0 where it is
        predicted).  More classes: (n, n_classes) log probabilities of the model average."""
        check_is_fitted(self, "q_weights_")
        log_p = self.predict_log_proba(X)
        return log_p[:, 1] - log_p[:, 0] if self.classes_.size == 2 else log_p

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n,) the most probable class under the model average."""
        check_is_fitted(self, "q_weights_")
        return self.classes_[np.argmax(self.predict_log_proba(X), axis=1)]

    def predict_uncertainty(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive entropy and mutual information, each (n,) in nats, from the posterior samples.

        Entropy H[p̄] of the model average p̄ = mean_s p_s (total uncertainty); mutual information
        H[p̄] − mean_s H[p_s] ≥ 0 between the label and the weights (the epistemic part: how much the
        samples disagree)."""
        log_p = self._sample_log_probs(X)
        p = np.exp(log_p)
        mean_entropy = -np.mean(np.sum(p * log_p, axis=2), axis=0)
        p_bar = p.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.sum(np.where(p_bar > 0, p_bar * np.log(p_bar), 0.0), axis=1)
        return entropy, np.maximum(entropy - mean_entropy, 0.0)
