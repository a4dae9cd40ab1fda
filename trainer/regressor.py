"""DirectRegressor: a scikit-learn estimator around DirectGLM with its own feature map.

It learns the input standardisation, standardises the target, computes the sufficient statistics in
one streaming pass per feature map, chooses the hyperparameters it was not given by the ELBO on the
training data (docs/trainer.md §9), and fits the posterior.  Everything is in units of the
standardised target internally; predictions come back in the target's units.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from direct_edge.trainer.data import ArraySource, is_dask_collection, source_moments, source_statistics
from direct_edge.trainer.errors import DataError, FloatGapWarning
from direct_edge.trainer.evidence import ConjugatePosterior, conjugate_posterior, grid_gains
from direct_edge.trainer.features import FEATURE_KINDS, FeatureMap
from direct_edge.trainer.grid import GAIN_FRAC_BITS, PRIOR_KINDS, WeightGrid, noise_grid, prior_log_probs
from direct_edge.trainer.model import ENTROPIES, FAMILIES, DirectGLM
from direct_edge.trainer.posterior import Posterior, PosteriorSamples, rounding_floor
from direct_edge.trainer.statistics import (
    PRECISIONS,
    SufficientStatistics,
    check_memory_for,
    gram_eigenbasis,
)

# Candidate sets searched by the ELBO when a hyperparameter is not given (standardised units;
# lengthscales are multiples of sqrt(d)).  The ranges are those that worked on the UCI
# sets in a reference run (docs/trainer.md §9).
LENGTHSCALE_FACTORS = (0.2, 0.35, 0.6, 1.0)
GRID_SCALES = (0.05, 0.1, 0.2, 0.4)
# With per-feature grids (grid_gains="evidence") the grid step of weight i is c·r_i, r_i its size under
# the conjugate posterior (trainer/evidence.py); c is searched from these (docs/trainer.md §2, §9).
GAIN_GRID_FACTORS = (0.1, 0.15, 0.25, 0.4)
GRID_GAINS = ("auto", "evidence", "none")
# rotation="eigen" (docs/trainer.md §3, "Rotated features"): the rff features rotated into the eigenbasis
# of their training Gram matrix, where the conjugate posterior factorises, so the factorised q loses
# nothing to correlations between weights.  The Gram matrix there is diagonal, so coordinate steps are
# exact per weight and every fit uses them.  The per-direction grids are sized from the data, so a prior
# wider than the evidence's buys ELBO by filling that box (measured: a factor of 32 chosen on every UCI
# set, with worse test NLPD on yacht and autos); the prior sd stays the evidence's, and only Δ is searched.
ROTATIONS = ("none", "eigen")
ROTATED_OPTIMIZER = "coordinate"
ROTATED_PRIOR_FACTORS = (1.0,)
# The statistics of every lengthscale candidate are kept for the second kind of grid up to this many
# bytes of Gram matrices (b = 2,000: 32 MB each); beyond it that search repeats its passes.
PASS_CACHE_BYTES = 2**30
# ... and the prior sd as a factor of the conjugate posterior's evidence-maximising prior sd.
GAIN_PRIOR_FACTORS = (0.5, 1.0, 2.0)
PRIOR_SCALES = (0.25, 0.5, 1.0)
# Short fits rank the candidates (staged start plus joint iterations); the chosen one is refitted.
SELECTION_MAX_ITER = 150
# A best candidate on the edge of its set is followed outwards by halving/doubling, this many times.
MAX_EDGE_STEPS = 2
SELECTION_STAGE_ITER = 100
# The mean-field optimisers (DirectGLM.fit's ``optimizer``, docs/trainer.md §5, §9): the candidates'
# short fits keep L-BFGS-B alone, so the search chooses what it chose before coordinate steps existed;
# the final fit is "combined" (that L-BFGS-B fit continued by coordinate steps to a fixed point, and the
# coordinate optimiser from the same start), so it never ends below L-BFGS-B alone.
SEARCH_OPTIMIZER = "lbfgs"
OPTIMIZER = "combined"
# A final fit that stops at max_iter is continued by coordinate steps (and L-BFGS-B between them) to a
# fixed point, for up to POLISH_ITER_FACTOR·max_iter more iterations (§9 step 4).  Coordinate sweeps are
# cheap (b = 512: about 1 ms), and where L-BFGS-B creeps they can need more than max_iter: at b = 512,
# gas (two splits) and energy split 1 stopped at the cap with a budget of max_iter and converge with
# this one (energy split 1 after 7,411 iterations in all; docs/benchmarks.md, "Accuracy against b").
POLISH_OPTIMIZER = "coordinate"
POLISH_ITER_FACTOR = 4

# docs/trainer.md §9, "Against the float model": a fit whose training RMSE exceeds the conjugate model's
# on the same statistics by this factor is flagged (FloatGapWarning).  Measured on seven UCI sets at
# b = 64..2,000, two splits (docs/benchmarks.md, "Accuracy against b"): 37 of 39 flagged fits were more
# than 1.05× worse than the float model on test rows, and 43 of 45 others within 1.05×.
FLOAT_GAP = 1.25
# ... each RMSE taken as at least this share of sd(y): below it both fit the rows, and the statistics
# resolve no more than about 1e-8 of it.
FLOAT_GAP_FLOOR = 1e-3
# ... and a fit whose noise sd is below this share of the float model's (each at least FLOAT_GAP_FLOOR·
# sd(y)): its intervals are then likely too narrow.  Measured: rotated fits of 10 and 20 rows at b = 256
# had 0.24 and 0.12 (test coverage of 90 % intervals 0.59 and 0.49); 18 rotated UCI fits at b = 256 had
# 0.90-1.09.
NOISE_GAP = 0.5


def float_gap_causes(params: dict, option: Callable[[str], str] = str) -> str:
    """The measured causes of a gap to the float model (docs/trainer.md §9) that can apply to a fit with
    ``params`` (``get_params()``), as one phrase naming the options through ``option`` (the Python
    name, or the command line's spelling)."""
    causes = []
    if params["features"] == "rff" and params.get("rotation", "none") == "none":
        fewer, rotation = option("n_features"), option("rotation")
        causes.append(
            "more features than a factorised posterior can use with these rows "
            f"(fewer {fewer}, or {rotation} eigen)"
        )
    if params.get("rotation", "none") == "eigen" and (
        params.get("grid_gains") == "none" or params["grid_scale"] is not None
    ):
        causes.append(
            "one grid for rotated directions whose sizes span orders of magnitude "
            f"({option('grid_gains')} evidence)"
        )
    causes.append(f"a target so nearly noise-free that the {params['bits']}-bit grid's steps show")
    if params["prior"] == "sparse":
        causes.append(f"the sparse prior's extra zeros ({option('zero_mass')})")
    if params["grid_scale"] is not None:
        causes.append(f"the given {option('grid_scale')} too coarse")
    return causes[0] if len(causes) == 1 else ", ".join(causes[:-1]) + " or " + causes[-1]


ProgressCallback = Callable[[str, int, float], None]


class ParameterError(DataError, InvalidParameterError):
    """An option of :class:`DirectRegressor` outside its allowed values.

    Both scikit-learn's ``InvalidParameterError`` (what its estimators raise, and what its checks
    expect) and this package's :class:`DataError` (which ``direct-train`` reports in one line).  The
    message names the parameter, its allowed values and the value given.
    """


# Bounds of the options given in units of sd(y) (docs/trainer.md §1, §2).  A 4-bit grid with Δ = 1e-4
# reaches ±7e-4 sd(y) per weight, less than any fit can use, and smaller steps stop the packed export
# from representing the noise (its variance in units of the integer output overflows); Δ = 100 already
# puts the first nonzero level 100 sd(y) away.  Inside these bounds the log prior over any grid of
# 2..8 bits is finite (|level·Δ/s| <= 127·1e6).
SCALE_RANGE = (1e-4, 1e2)

# The options every DIRECT estimator shares (the feature map, the grid and prior, the optimiser and the
# statistics pass), in scikit-learn's declarative form; each estimator adds its own.
MODEL_CONSTRAINTS: dict = {
    "features": [StrOptions(set(FEATURE_KINDS))],
    "n_features": [Interval(Integral, 2, None, closed="left")],
    "lengthscale": [None, Interval(Real, 0, None, closed="neither"), "array-like"],
    "bits": [Interval(Integral, 2, 8, closed="both")],
    "symmetric": ["boolean"],
    "grid_scale": [None, Interval(Real, *SCALE_RANGE, closed="both")],
    "prior": [StrOptions(set(PRIOR_KINDS))],
    "prior_scale": [None, Interval(Real, *SCALE_RANGE, closed="both")],
    "zero_mass": [Interval(Real, 0, 1, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    "precision": [StrOptions(set(PRECISIONS))],
    "random_state": [Interval(Integral, 0, None, closed="left")],
}


class DirectRegressor(RegressorMixin, BaseEstimator):
    """Bayesian regression with 4-bit (by default) discrete weights, fitted by exact VI.

    Parameters
    ----------
    features : {"rff", "linear"}, default "rff"
        Random Fourier features of an RBF kernel, or the inputs plus a bias (docs/trainer.md §3).
    n_features : int >= 2, even for "rff", default 256
        b, the number of rff features (a cos and a sin per frequency); ignored for linear features
        (b = d + 1).
    lengthscale : float > 0, array-like (d,) of floats > 0, or None, default None
        rff lengthscale in standardised input units, one per input for ARD; None chooses from
        sqrt(d) × {0.2, 0.35, 0.6, 1.0} by the ELBO (§9).
    bits : int in [2, 8], default 4
        Weight grid width (§2).  The packed export (``direct-export``, the integer runtimes) holds
        at most 4 bits; wider grids serve the float predictions of this class only.
    symmetric : bool, default True
        Levels −(2^(k−1)−1)..2^(k−1)−1, or the two's-complement range −2^(k−1)..2^(k−1)−1.
    grid_scale : float in [1e-4, 100], or None, default None
        Δ in units of sd(y); None chooses from {0.05, 0.1, 0.2, 0.4} by the ELBO.
    prior : {"gaussian", "uniform", "sparse"}, default "gaussian"
        Discretised N(0, prior_scale²), uniform, or gaussian plus ``zero_mass`` extra
        probability on level 0.
    prior_scale : float in [1e-4, 100], or None, default None
        In units of sd(y); None chooses from {0.25, 0.5, 1.0} by the ELBO.  Unused by "uniform".
    zero_mass : float in [0, 1), default 0.5
        Extra prior mass on level 0 (prior "sparse" only).
    family : {"mean-field", "mixture"}, default "mean-field"
        Variational family (§5, §6).
    n_components : int >= 1, default 5
        Mixture components r (family "mixture" only).
    entropy : {"bound", "reinforce"}, default "bound"
        Mixture entropy: deterministic bound (L-BFGS-B) or score-function estimate (Adam) (§6).
    n_entropy_samples : int >= 1, default 10
        Samples per step of the score-function estimate (entropy "reinforce" only).
    max_iter : int >= 1, default 2000
        Bound on the iterations of the final fit (§9 step 4): the coordinate sweeps and L-BFGS-B
        iterations that optimise q(w) and q(σ²) jointly (§5; for a mixture, those of the mixture
        fit, after a mean-field final fit with the same bound), or the Adam steps of entropy
        "reinforce", which always runs all of them.  Not counted: the short fits that score the
        candidates of the search (§9) and, when nothing is searched, the starts of §8 that run
        before the joint optimisation.  A mean-field final fit that stops at this bound is continued
        by coordinate steps (§5) for up to ``max_iter`` more; a fit that stops there too warns
        (``ConvergenceWarning``).
    chunk_rows : int >= 1, default 4096
        Rows per chunk in the statistics pass (memory O(b² + chunk_rows·b)).
    precision : {"float64", "float32"}, default "float64"
        Statistics pass precision (§4: float32 is about 2× faster at large b, ΦᵀΦ within ~1e-7
        relative, accumulated in float64).
    random_state : int >= 0, default 0
        Seed of the rff frequencies and of the mixture's symmetry breaking.
    grid_gains : {"auto", "evidence", "none"}, default "auto"
        "evidence": each weight gets a grid of its own step, c·r_i, where r_i is the weight's size
        under the evidence-maximising conjugate Gaussian posterior on the same statistics (§2,
        trainer/evidence.py); the integer runtime applies the ratio r_i / max r to its feature
        (docs/integer-spec.md, feature gains).  c is chosen from {0.1, 0.15, 0.25, 0.4} by the ELBO
        when ``grid_scale`` is None; a given ``grid_scale`` is the step of the largest weight's
        grid, in sd(y); a searched ``prior_scale`` is a factor {0.5, 1, 2} of the evidence's
        prior sd.  "none": one grid, levels × ``grid_scale``, for every weight.  "auto": both, each
        with its own search, and the fit with the higher ELBO is kept (about twice the time); with a
        given ``grid_scale``, "none".  The
        integer runtime applies per-feature gains to its features (docs/integer-spec.md §3.4).
    search_features : int >= 2 or None, default None
        Run the hyperparameter search (§9) on at most this many rff features, then score the chosen
        lengthscale and the next shorter one at ``n_features`` (§9 step 3b).  None: search at
        ``n_features``.  At b = 2,000 a value of 512 makes the fit 2.5–4× faster; the ELBO it ends
        at can be lower (docs/benchmarks.md, accuracy against the float model).
    rotation : {"none", "eigen"}, default "none"
        "eigen" (rff only): the features are rotated into the eigenbasis of their training Gram
        matrix, φ(x)ᵀV (docs/trainer.md §3, "Rotated features"), where the weights' conjugate
        posterior factorises, so the 4-bit factorised posterior keeps up with the float model when
        b is large next to the number of rows (docs/benchmarks.md, "Rotated features").  Each
        direction gets its own grid (``grid_gains`` "auto" means "evidence"), the prior sd is the
        evidence's unless ``prior_scale`` is given, and every fit uses coordinate steps.  The device
        then computes b² more multiply-adds per prediction and holds 2b² + b more bytes
        (docs/integer-spec.md §3.5).

    Attributes
    ----------
    n_iter_ : int
        Iterations of the final fit, <= max_iter, or <= 5·max_iter when it was continued by
        coordinate steps (docs/trainer.md §9 step 4).
    converged_ : bool
        The final fit's convergence test passed (mean-field, §5: a round of L-BFGS-B and coordinate
        sweeps gained at most 1e-10 of the ELBO and the last sweep moved no weight mean by more than
        1e-6 grid steps; mixture: L-BFGS-B's relative ELBO change below 1e-10, or a vanishing
        gradient).  False when it stopped at max_iter, and always for entropy "reinforce".
    trace_ : list of float
        ELBO (nats) after every iteration of the chosen candidate's short fit (if any), the final
        fit and, for a mixture, the mixture fit: longer than ``n_iter_``.
    feature_map_, posterior_, y_offset_, y_scale_, elbo_, grid_scale_,
    prior_scale_, lengthscale_, noise_variance_ (E[σ²] in target units²), sparsity_ (expected
    share of zero weights under q), selection_ (candidates and their ELBO), n_train_, fit_time_,
    input_min_, input_max_ (per-input training range, for the integer export),
    train_rmse_ (of the predictive mean, from the statistics), n_features_in_.
    float_train_rmse_ : float
        Training RMSE (target units) of the float conjugate model on the same features and
        statistics: the posterior mean of y = φ(x)ᵀw + ε, w ~ N(0, λ⁻¹I), at the evidence-maximising
        λ and noise (scikit-learn's ``BayesianRidge``, trainer/evidence.py).  ``train_rmse_`` well
        above it flags a 4-bit fit that falls behind the float model (docs/trainer.md §9).
    float_noise_sd_ : float
        The same float model's noise sd α^-½ (target units); ``noise_variance_``'s root far below it
        flags intervals that are likely too narrow (``noise_gap_``, docs/trainer.md §9).

    Raises
    ------
    ParameterError
        From ``fit``/``fit_source``, for an option outside the values above.
    DataError
        From ``fit``/``fit_source``, for unusable data (fewer than 2 rows, NaN, ...).

    Warns
    -----
    ConvergenceWarning
        Once per fit whose final fit stopped at ``max_iter`` before converging.
    FloatGapWarning
        Once per fit whose ``train_rmse_`` exceeds ``FLOAT_GAP`` (1.25) × ``float_train_rmse_``, and
        once per fit whose noise sd is below ``NOISE_GAP`` (0.5) × ``float_noise_sd_``
        (docs/trainer.md §9, "Against the float model").
    """

    _parameter_constraints: dict = {
        **MODEL_CONSTRAINTS,
        "family": [StrOptions(set(FAMILIES))],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "entropy": [StrOptions(set(ENTROPIES))],
        "n_entropy_samples": [Interval(Integral, 1, None, closed="left")],
        "grid_gains": [StrOptions(set(GRID_GAINS))],
        "search_features": [None, Interval(Integral, 2, None, closed="left")],
        "rotation": [StrOptions(set(ROTATIONS))],
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
        family: str = "mean-field",
        n_components: int = 5,
        entropy: str = "bound",
        n_entropy_samples: int = 10,
        max_iter: int = 2000,
        chunk_rows: int = 4096,
        precision: str = "float64",
        random_state: int = 0,
        grid_gains: str = "auto",
        search_features: int | None = None,
        rotation: str = "none",
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
        self.family = family
        self.n_components = n_components
        self.entropy = entropy
        self.n_entropy_samples = n_entropy_samples
        self.max_iter = max_iter
        self.chunk_rows = chunk_rows
        self.precision = precision
        self.random_state = random_state
        self.grid_gains = grid_gains
        self.search_features = search_features
        self.rotation = rotation

    # ---- fitting ------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: np.ndarray, y: np.ndarray) -> DirectRegressor:
        """Fit on arrays ``X``: (n, d), ``y``: (n,).  Returns self.

        ``X`` and ``y`` may also be dask collections (a DataFrame and a Series with the same
        partitions, or Arrays): the statistics are then computed per partition on the current Dask
        scheduler and summed (docs/trainer.md §10).
        """
        if is_dask_collection(X):
            from direct_edge.trainer.distributed import DaskSource

            return self.fit_source(DaskSource.from_collection(X, y))
        with np.errstate(
            over="ignore", invalid="ignore"
        ):  # its finiteness check sums X (overflow near 1.7e308)
            X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64, ensure_min_samples=2)
        return self._fit(ArraySource(X, y), progress=False, callback=None)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_source(
        self, source, progress: bool = False, callback: ProgressCallback | None = None
    ) -> DirectRegressor:
        """Fit from a re-iterable source of (X, y) chunks (a ``TableSource`` from
        :mod:`direct_edge.trainer.data`, or anything with ``batches(chunk_rows)`` and ``n_inputs``).

        Two or more streaming passes: input moments, then one statistics pass per rff lengthscale
        candidate.  ``callback(stage, iteration, elbo)`` reports the optimisation.
        """
        self.n_features_in_ = int(source.n_inputs)
        # scikit-learn's convention: names when the data named its columns, none otherwise (never
        # the names of an earlier fit)
        if getattr(source, "named_columns", False):
            self.feature_names_in_ = np.asarray(source.input_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self._fit(source, progress=progress, callback=callback)

    def _validate_params(self) -> None:
        """scikit-learn's check of ``_parameter_constraints`` (called by ``_fit_context``), plus the
        one rule between two options.  Raises :class:`ParameterError`."""
        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from None
        if self.rotation != "none" and self.features != "rff":
            raise ParameterError(
                "The 'rotation' parameter of DirectRegressor must be 'none' for features='linear' "
                f"(only rff features are rotated). Got {self.rotation!r} instead."
            )
        if self.features == "rff" and self.n_features % 2:
            raise ParameterError(
                "The 'n_features' parameter of DirectRegressor must be even for features='rff' "
                f"(a cos and a sin per frequency). Got {self.n_features!r} instead."
            )

    def _check_lengthscale(self, n_inputs: int) -> None:
        """An array ``lengthscale`` needs one positive finite value per input; raises ParameterError."""
        if self.lengthscale is None or np.ndim(self.lengthscale) == 0:
            return
        ell = np.asarray(self.lengthscale)
        ok = ell.shape == (n_inputs,) and np.issubdtype(ell.dtype, np.number)
        if not (ok and np.all(np.isfinite(ell)) and np.all(ell > 0)):
            raise ParameterError(
                "The 'lengthscale' parameter of DirectRegressor must be None, a float > 0 or an array of "
                f"{n_inputs} finite floats > 0 (one per input). Got {self.lengthscale!r} instead."
            )

    def _fit(self, source, progress: bool, callback: ProgressCallback | None) -> DirectRegressor:
        """The steps of docs/trainer.md §9 in order; each is one method below.  With ``grid_gains``
        "auto" they run once with one shared grid and once with per-feature grids (§2), and the fit
        with the higher ELBO is kept.  The options have been validated by ``_fit_context``."""
        start = time.perf_counter()
        if self.features == "rff":
            self._check_lengthscale(self.n_features_in_)
        units = self._learn_units(source)
        search = _CandidateSearch(self, source, units, progress, callback)
        if self.grid_gains != "auto":
            modes: tuple = (self.grid_gains,)
        elif self.grid_scale is not None:  # a grid scale given in sd(y) is one shared grid's step
            modes = ("none",)
        else:  # rotated directions differ in size by orders of magnitude: one grid would not do
            modes = ("evidence",) if self.rotation == "eigen" else ("none", "evidence")
        best = None
        for mode in modes:
            self._gains_mode = mode
            search.fitted.clear()
            search.stage_suffix = " (per-feature grids)" if mode == "evidence" and len(modes) > 1 else ""
            result = self._fit_grid(search, units)
            if best is None or result[0].elbo_ > best[0].elbo_:
                best = (*result, mode)
        glm, trace, fmap, ell, scales, stats, mode = best
        self._gains_mode = mode
        self._record_fit(units, fmap, ell, scales, glm, trace, search.selection, stats)
        for name in ("_gains_cache", "_gains_mode"):
            self.__dict__.pop(name, None)  # statistics of every candidate, O(b²) each
        self.fit_time_ = time.perf_counter() - start
        if glm.limit_reached_:
            self._warn_not_converged()
        if self.float_gap_ is not None:
            self._warn_float_gap()
        if self.noise_gap_ is not None:
            self._warn_noise_gap()
        return self

    def _fit_grid(self, search: _CandidateSearch, units: _Units) -> tuple:
        """§9 steps 1–4 for one kind of grid (``self._gains_mode``).  Returns (model, trace, map,
        lengthscale, scales, statistics)."""
        grid_scales, prior_scales = self._candidate_scales()
        mid = (grid_scales[len(grid_scales) // 2], prior_scales[len(prior_scales) // 2])
        searched = len(grid_scales) * len(prior_scales) > 1 or self.lengthscale is None
        b_search = int(self.n_features)
        if self.features == "rff" and searched and self.search_features is not None:
            b_search = min(b_search, int(self.search_features))
        ell, fmap, stats = self._choose_features(search, units, mid, b_search)
        best_scales = self._choose_scales(search, stats, ell, grid_scales, prior_scales, mid)
        if b_search != int(self.n_features):
            ell, fmap, stats = self._refine_features(search, units, ell, best_scales)
        glm, trace = self._final_fit(search, stats, best_scales)
        return glm, trace, fmap, ell, best_scales, stats

    def _optimizer(self, default: str) -> str:
        """The mean-field optimiser for a fit that would use ``default``: coordinate steps for rotated
        features (exact per weight on their diagonal Gram matrix), else ``default``."""
        return ROTATED_OPTIMIZER if self.rotation == "eigen" else default

    @property
    def _gains(self) -> str:
        """The kind of grid being fitted: "none" or "evidence" (``grid_gains`` unless it is "auto")."""
        return self.__dict__.get("_gains_mode", self.grid_gains)

    def _warn_not_converged(self) -> None:
        """One ConvergenceWarning for a final fit that stopped at its iteration limit."""
        warnings.warn(
            f"DirectRegressor: the final fit stopped at its limit of max_iter={self.max_iter} "
            f"iterations before the ELBO converged (ELBO {self.elbo_:.6g} nats; converged_ is False). "
            "The posterior is usable but may not be the optimum: increase max_iter to fit further, "
            f"e.g. DirectRegressor(max_iter={2 * self.max_iter}).",
            ConvergenceWarning,
            stacklevel=5,
        )

    @property
    def float_gap_(self) -> float | None:
        """``train_rmse_ / float_train_rmse_``, each taken as at least ``FLOAT_GAP_FLOOR``·sd(y), when
        it exceeds ``FLOAT_GAP`` (docs/trainer.md §9, "Against the float model"), else None (also for a
        model loaded from a file written before the check, which holds no ``float_train_rmse_``).
        Raises ``NotFittedError`` before ``fit``.

        The floor: both RMSEs come from the statistics (yᵀy − 2wᵀΦᵀy + wᵀΦᵀΦw), which resolve about
        1e-8·sd(y) at best, so below it a ratio would be round-off (a float model fitting exactly
        would give 1e300x, changing with an offset of y)."""
        check_is_fitted(self, "posterior_")
        if getattr(self, "float_train_rmse_", None) is None:
            return None
        floor = FLOAT_GAP_FLOOR * self.y_scale_
        ratio = max(self.train_rmse_, floor) / max(self.float_train_rmse_, floor)
        return ratio if ratio > FLOAT_GAP else None

    @property
    def noise_gap_(self) -> float | None:
        """The noise sd E[σ²]^½ over the float model's (``float_noise_sd_``), each taken as at least
        ``FLOAT_GAP_FLOOR``·sd(y), when below ``NOISE_GAP`` (docs/trainer.md §9, "Against the float
        model"), else None (also for a model loaded from a file without ``float_noise_sd_``).  Raises
        ``NotFittedError`` before ``fit``."""
        check_is_fitted(self, "posterior_")
        if getattr(self, "float_noise_sd_", None) is None:
            return None
        floor = FLOAT_GAP_FLOOR * self.y_scale_
        ratio = max(float(np.sqrt(self.noise_variance_)), floor) / max(self.float_noise_sd_, floor)
        return ratio if ratio < NOISE_GAP else None

    def _warn_noise_gap(self) -> None:
        """One FloatGapWarning for a fit whose noise estimate is far below the float model's."""
        warnings.warn(
            f"DirectRegressor: the {self.bits}-bit posterior's noise sd is {self.noise_gap_:.3g}x that of "
            f"the float conjugate model on the same {self.feature_map_.n_features} features and "
            f"{self.n_train_} rows ({np.sqrt(self.noise_variance_):.4g} against {self.float_noise_sd_:.4g}), "
            "so its predictive intervals are likely too narrow: with this few rows per feature the fit "
            "holds the training targets closer than the noise allows; use fewer n_features or more rows "
            "(docs/trainer.md §9, 'Against the float model').",
            FloatGapWarning,
            stacklevel=5,
        )

    def _warn_float_gap(self) -> None:
        """One FloatGapWarning for a fit that falls behind the float model on its training rows."""
        warnings.warn(
            f"DirectRegressor: the {self.bits}-bit posterior's training RMSE is {self.float_gap_:.3g}x that "
            f"of the float conjugate model on the same {self.feature_map_.n_features} features and "
            f"{self.n_train_} rows ({self.train_rmse_:.4g} against {self.float_train_rmse_:.4g}); its test "
            f"RMSE is then likely above the float model's too. Measured causes: "
            f"{float_gap_causes(self.get_params())} (docs/trainer.md §9, 'Against the float model').",
            FloatGapWarning,
            stacklevel=5,
        )

    def _learn_units(self, source) -> _Units:
        """One pass for the input and target moments (§1, §3); sets ``input_min_``, ``input_max_``.

        Raises DataError for fewer than 2 rows, or when b features would not fit in memory."""
        moments, y_moments = source_moments(source, int(self.chunk_rows))
        if moments.n < 2:
            raise DataError(f"need at least 2 training rows, got n_samples = {moments.n}")
        offset, scale = moments.offset_and_scale()
        y_offset, y_scale = (float(v[0]) for v in y_moments.offset_and_scale())
        self.input_min_, self.input_max_ = moments.low.copy(), moments.high.copy()
        d = offset.shape[0]
        check_memory_for(d + 1 if self.features == "linear" else int(self.n_features))
        return _Units(offset, scale, y_offset, y_scale)

    def _candidate_scales(self) -> tuple[tuple, tuple]:
        """The grid scales and prior scales to try: the given value, or the candidate set of §9
        (a uniform prior has no scale: (None,))."""
        searched = GAIN_GRID_FACTORS if self._gains == "evidence" else GRID_SCALES
        grid_scales = searched if self.grid_scale is None else (float(self.grid_scale),)
        if self.prior == "uniform":
            prior_scales: tuple = (None,)
        else:
            searched = GAIN_PRIOR_FACTORS if self._gains == "evidence" else PRIOR_SCALES
            if self.rotation == "eigen" and self._gains == "evidence":
                searched = ROTATED_PRIOR_FACTORS
            prior_scales = searched if self.prior_scale is None else (float(self.prior_scale),)
        return grid_scales, prior_scales

    def _choose_features(
        self, search: _CandidateSearch, units: _Units, mid: tuple, b_search: int
    ) -> tuple[object, FeatureMap, SufficientStatistics]:
        """§9 step 1: the feature map and its statistics.  Returns (lengthscale or None, map, stats).

        Each rff lengthscale candidate costs a statistics pass with ``b_search`` features and is scored
        at the middle scales ``mid``; only the best candidate's statistics are kept, and its fit is
        reused by step 2."""
        if self.features == "linear":
            return None, *search.prepare(FeatureMap.linear(units.offset, units.scale))
        if self.lengthscale is not None:
            return self.lengthscale, *search.prepare(self._rff(units, self.lengthscale, b_search))
        d = units.offset.shape[0]
        best: dict = {}

        def score_lengthscale(factor: float) -> float:
            ell = factor * np.sqrt(d)
            fmap, stats = search.prepare(self._rff(units, ell, b_search))
            glm = search.score(stats, mid, "lengthscale", ell)
            score = self._features_score(glm, stats)
            if not best or score > best["score"]:
                best.update(ell=ell, fmap=fmap, stats=stats, glm=glm, score=score)
            return score

        tried = {f: score_lengthscale(f) for f in LENGTHSCALE_FACTORS}
        search_past_edge(tried, score_lengthscale)
        search.lengthscales = [f * np.sqrt(d) for f in tried]
        search.fitted[mid] = best["glm"]
        return best["ell"], best["fmap"], best["stats"]

    def _refine_features(
        self, search: _CandidateSearch, units: _Units, ell, scales: tuple
    ) -> tuple[object, FeatureMap, SufficientStatistics]:
        """§9 step 3b: the map chosen on ``search_features`` features, built at the requested b.

        More features resolve shorter lengthscales, so when ℓ was searched the next shorter candidate
        is scored too (a statistics pass and a short fit at ``scales`` each, as in step 1); the better
        one is kept, and its short fit is where the final fit starts.  Returns (ℓ, map, stats)."""
        candidates = [ell]
        if self.lengthscale is None:
            shorter = [e for e in search.lengthscales if e < ell]
            candidates.append(max(shorter) if shorter else ell / 2.0)
        search.fitted.clear()  # fits of the smaller map
        best = None
        for candidate in candidates:
            fmap, stats = search.prepare(self._rff(units, candidate))
            glm = search.score(stats, scales, "features", candidate)
            score = self._features_score(glm, stats)
            if best is None or score > best[4]:
                best = (candidate, fmap, stats, glm, score)
        search.fitted[scales] = best[3]
        return best[:3]

    def _features_score(self, glm: DirectGLM, stats: SufficientStatistics) -> float:
        """How a feature map (a lengthscale) is ranked: its candidate's ELBO, or with rotation "eigen"
        the lower of that and the float model's log evidence on the same statistics (§9).

        Rotated, each direction's grid is sized from its conjugate posterior mean, which it can then hold
        exactly on a level; the ELBO counts that fit at the grid's Occam factor (at most ln 15 nats a
        direction), not the posterior's, so it can rank maps whose features interpolate the rows first
        (yacht, b = 2,000: ELBO +557 at ℓ = 0.12 against a float log evidence of −381, test RMSE 4.5×
        that of ℓ = 2.45).  The float evidence has the right Occam factor but cannot see where the 4-bit
        fit fails (energy, b = 256: best evidence at ℓ = 11.3, where the 4-bit fit is 16× the float
        model's RMSE); a map must score well by both."""
        if self.rotation != "eigen":
            return glm.elbo_
        return min(glm.elbo_, self._conjugate(stats).log_evidence)

    def _choose_scales(
        self,
        search: _CandidateSearch,
        stats: SufficientStatistics,
        ell,
        grid_scales: tuple,
        prior_scales: tuple,
        mid: tuple,
    ) -> tuple:
        """§9 steps 2–3 on the chosen features: every (grid scale, prior scale) pair, then each axis
        followed past its edge while its best value sits on the edge.  Returns the best pair."""
        fitted = search.fitted

        def score_scales(scales: tuple) -> float:
            if scales not in fitted:
                fitted[scales] = search.score(stats, scales, "scales", ell)
            return fitted[scales].elbo_

        if len(grid_scales) * len(prior_scales) > 1:
            for scales in product(grid_scales, prior_scales):
                score_scales(scales)
            best_g, best_p = search.best()
            if len(grid_scales) > 1:
                tried = {g: score_scales((g, best_p)) for g in grid_scales}
                best_g = search_past_edge(tried, lambda g: score_scales((g, best_p)))
            if len(prior_scales) > 1:
                tried = {p: score_scales((best_g, p)) for p in prior_scales}
                search_past_edge(tried, lambda p: score_scales((best_g, p)))
        return search.best() if fitted else mid

    def _final_fit(
        self, search: _CandidateSearch, stats: SufficientStatistics, scales: tuple
    ) -> tuple[DirectGLM, list[float]]:
        """§9 step 4: continue from the best candidate (so the result can only improve on it) and fit
        from the "auto" start of §8, keeping the higher ELBO (the candidate's short L-BFGS-B fit can
        sit in a basin the fresh start escapes, and the reverse); with nothing searched, only the
        "auto" fit.  A mixture then starts from the kept fit (§6).  Returns (the fitted model, the
        ELBO trace of the kept run: the candidate's short fit, if kept, and the final fit)."""
        candidate = search.fitted.get(scales)
        mf = self._glm(stats, *scales, "mean-field")
        mf.fit(
            int(self.max_iter),
            init="auto",
            callback=search.reporter("fit"),
            optimizer=self._optimizer(OPTIMIZER),
        )
        trace = list(mf.trace_)
        if candidate is not None:
            short = list(candidate.trace_)
            candidate.fit(
                int(self.max_iter),
                init="warm",
                callback=search.reporter("fit"),
                optimizer=self._optimizer(OPTIMIZER),
            )
            if candidate.elbo_ > mf.elbo_:
                mf, trace = candidate, short + candidate.trace_
        if not mf.converged_:
            # L-BFGS-B on logits creeps where q saturates (a weight's q on one level): the kept run
            # can use every iteration gaining 1e-5 nats each.  Coordinate steps reach the fixed point
            # from there in a few hundred sweeps (energy at b = 256: 674, +0.0067 nats), and never
            # lower the ELBO, so the kept run is continued by them for up to POLISH_ITER_FACTOR·max_iter
            # more.
            used = mf.n_iter_
            mf.fit(
                POLISH_ITER_FACTOR * int(self.max_iter),
                init="warm",
                callback=search.reporter("fit"),
                optimizer=POLISH_OPTIMIZER,
            )
            mf.n_iter_ += used
            trace += mf.trace_
        glm = mf
        if self.family == "mixture":
            glm = self._glm(stats, *scales, "mixture")
            glm.params = glm.params_from_mean_field(mf)
            glm.fit(int(self.max_iter), init="warm", callback=search.reporter("fit mixture"))
            trace += glm.trace_
        return glm, trace

    def _record_fit(
        self,
        units: _Units,
        fmap: FeatureMap,
        ell,
        scales: tuple,
        glm: DirectGLM,
        trace: list[float],
        selection: list[dict],
        stats: SufficientStatistics,
    ) -> None:
        """Set the fitted attributes (units of the target where the docstring says so)."""
        self.feature_map_ = fmap
        self.posterior_ = glm.posterior()
        # docs/trainer.md §7: the predictive variance floor, from the conjugate posterior on the same
        # statistics (computed for per-feature grids anyway; one O(b³) step otherwise).
        conjugate = self._conjugate(stats)
        offset = conjugate.mean - self.posterior_.weight_moments()[0]
        self.posterior_.variance_floor = rounding_floor(self.posterior_.grid, conjugate.var, offset)
        self.y_offset_, self.y_scale_ = units.y_offset, units.y_scale
        if ell is None:
            self.lengthscale_ = None
        else:
            ell = np.asarray(ell, dtype=np.float64)
            self.lengthscale_ = float(ell) if ell.ndim == 0 else ell
        self.grid_scale_ = float(glm.weight_grid.scale)
        self.prior_scale_ = None if scales[1] is None else self._prior_sd(stats, scales[1])
        self.elbo_ = float(glm.elbo_)
        self.n_iter_ = int(glm.n_iter_)
        self.converged_ = bool(glm.converged_)
        self.trace_ = trace
        self.selection_ = selection
        self.n_train_ = int(stats.n)
        mean_w, _ = self.posterior_.weight_moments()
        rss = max(stats.residual_sum_of_squares(mean_w), 0.0)
        self.train_rmse_ = float(np.sqrt(rss / stats.n)) * units.y_scale
        rss = max(stats.residual_sum_of_squares(conjugate.mean), 0.0)
        self.float_train_rmse_ = float(np.sqrt(rss / stats.n)) * units.y_scale
        self.float_noise_sd_ = float(np.sqrt(conjugate.noise_var)) * units.y_scale

    @staticmethod
    def _row(stage: str, ell, grid_scale: float, prior_scale: float | None, elbo: float) -> dict:
        return {
            "stage": stage,
            "lengthscale": None if ell is None else float(np.mean(ell)),
            "grid_scale": grid_scale,
            "prior_scale": prior_scale,
            "elbo": float(elbo),
        }

    def _rff(self, units: _Units, ell, n_features: int | None = None) -> FeatureMap:
        b = int(self.n_features) if n_features is None else int(n_features)
        return FeatureMap.rff(units.offset, units.scale, b, ell, int(self.random_state))

    def _grid(self, stats: SufficientStatistics, grid_scale: float) -> WeightGrid:
        """The weight grid for a candidate: levels × ``grid_scale``; with per-feature gains, the gains
        of ``stats`` (computed once per statistics) and, for a searched candidate, Δ = ``grid_scale``
        (the factor c) × the largest weight's size."""
        if self._gains == "none":
            return WeightGrid.from_bits(int(self.bits), grid_scale, bool(self.symmetric))
        gains, top, _ = self._evidence(stats)
        delta = float(grid_scale) if self.grid_scale is not None else float(grid_scale) * top
        if self.rotation == "eigen" and delta > SCALE_RANGE[1]:
            # Directions with a tiny eigenvalue can need weights far beyond Δ's bound (energy, b = 2,000,
            # ℓ = 5.7: c·max r = 130 sd(y)).  Clipping Δ would shrink every direction's range by that
            # ratio; capping the sizes at the bound's instead leaves every other direction its own grid
            # and gives only the largest ones a range short of their means (their features are small
            # on every row).  Test RMSE there: 1.14× the float model's with Δ clipped, 1.01× capped.
            ref = SCALE_RANGE[1] / float(grid_scale)
            gains = np.clip(gains * (top / ref), 2.0**-GAIN_FRAC_BITS, 1.0)
        delta = float(np.clip(delta, *SCALE_RANGE))
        return WeightGrid.from_bits(int(self.bits), delta, bool(self.symmetric)).with_gains(gains)

    def _prior_sd(self, stats: SufficientStatistics, prior_scale: float | None) -> float:
        """The prior sd for a candidate: ``prior_scale`` itself, or with per-feature grids and a searched
        prior scale, ``prior_scale`` (a factor) × the evidence's prior sd."""
        if prior_scale is None:
            return 1.0
        if self._gains == "none" or self.prior_scale is not None:
            return float(prior_scale)
        return float(np.clip(float(prior_scale) * self._evidence(stats)[2], *SCALE_RANGE))

    def _evidence(self, stats: SufficientStatistics) -> tuple[np.ndarray, float, float]:
        """:func:`evidence.grid_gains` of ``stats`` (gains, largest size, prior sd)."""
        return grid_gains(self._conjugate(stats))

    def _conjugate(self, stats: SufficientStatistics) -> ConjugatePosterior:
        """:func:`evidence.conjugate_posterior` of ``stats``, computed once per statistics of a fit (an
        O(b³) eigendecomposition)."""
        cache = self.__dict__.setdefault("_gains_cache", [])
        found = next((entry for entry in cache if entry[0] is stats), None)
        if found is None:
            found = (stats, conjugate_posterior(stats))
            cache.append(found)
        return found[1]

    def _glm(
        self, stats: SufficientStatistics, grid_scale: float, prior_scale: float | None, family: str
    ) -> DirectGLM:
        grid = self._grid(stats, grid_scale)
        kind = self.prior
        prior_sd = self._prior_sd(stats, prior_scale)
        log_prior = prior_log_probs(grid.values, kind, prior_sd, float(self.zero_mass))
        return DirectGLM(
            stats=stats,
            grid=grid,
            log_prior=log_prior,
            noise_grid=noise_grid(),
            family=family,
            n_components=int(self.n_components),
            entropy=self.entropy,
            n_entropy_samples=int(self.n_entropy_samples),
            seed=int(self.random_state),
        )

    # ---- prediction ---------------------------------------------------------------------------

    @property
    def noise_variance_(self) -> float:
        """E_q[σ²] in target units² (inf or 0 with numpy's warning where that is beyond float64)."""
        check_is_fitted(self, "posterior_")
        return float(self.posterior_.noise_variance_mean * np.square(np.float64(self.y_scale_)))

    @property
    def sparsity_(self) -> float:
        """Expected share of zero weights under q (the mean sparsity of posterior samples)."""
        check_is_fitted(self, "posterior_")
        post: Posterior = self.posterior_
        zero = post.grid == 0.0
        p_zero = np.einsum("k,kij,ij->i", post.mixture_weights, post.q_weights, zero)
        return float(p_zero.mean())

    def _standardised_moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance (n,) of the standardised target for ``X``: (n, d)."""
        check_is_fitted(self, "posterior_")
        with np.errstate(over="ignore", invalid="ignore"):  # scikit-learn's finiteness check sums X,
            X = validate_data(self, X, reset=False, dtype=np.float64)  # which overflows near 1.7e308
        return self.posterior_.predict_moments(self.feature_map_.transform(X))

    def predict_rows(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and sd (n,) in target units, like ``predict(X, return_std=True)``, for rows
        already in the model's input order as the product's own passes hold them (a table source's
        chunks, the export's check batch): ``X``: (n, d) float64 array, no comparison of column
        names, which an array does not carry.  Raises DataError for another number of columns."""
        check_is_fitted(self, "posterior_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"expected rows of {self.n_features_in_} inputs, got shape {X.shape}")
        mean, var = self.posterior_.predict_moments(self.feature_map_.transform(X))
        return mean * self.y_scale_ + self.y_offset_, np.sqrt(var) * self.y_scale_

    def predict_moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact predictive mean (n,) and variance of y (n,) in target units for ``X``: (n, d).

        A variance beyond float64's range (a target in units near 1e±160) is inf or 0 with numpy's
        overflow warning; :meth:`predict` gives the standard deviation, which stays representable."""
        mean, var = self._standardised_moments(X)
        return mean * self.y_scale_ + self.y_offset_, var * np.square(np.float64(self.y_scale_))

    def predict(self, X: np.ndarray, return_std: bool = False):
        """Predictive mean (n,), and with ``return_std`` the predictive sd of y (n,)."""
        mean, var = self._standardised_moments(X)
        mean = mean * self.y_scale_ + self.y_offset_
        return (mean, np.sqrt(var) * self.y_scale_) if return_std else mean

    def sample(self, n_samples: int, seed: int = 0) -> PosteriorSamples:
        """Posterior samples: levels (S, b) int8, weights in units of the standardised target
        (multiply by ``y_scale_`` for target units), noise variances (standardised units)."""
        check_is_fitted(self, "posterior_")
        return self.posterior_.sample(n_samples, seed)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = False
        return tags


@dataclass(frozen=True)
class _Units:
    """What the first pass learns: input means and sds (d,) (§3) and the target's mean and sd (§1)."""

    offset: np.ndarray
    scale: np.ndarray
    y_offset: float
    y_scale: float


class _CandidateSearch:
    """State shared by the steps of one fit: the statistics pass, short candidate fits, the record.

    ``fitted`` maps (grid scale, prior scale) to the candidate fitted at the chosen features;
    ``selection`` lists every candidate scored, in order (``DirectRegressor.selection_``).
    """

    def __init__(
        self,
        regressor: DirectRegressor,
        source,
        units: _Units,
        progress: bool,
        callback: ProgressCallback | None,
    ) -> None:
        self.regressor = regressor
        self.source = source
        self.units = units
        self.progress = progress
        self.callback = callback
        self.selection: list[dict] = []
        self.fitted: dict[tuple, DirectGLM] = {}
        self.lengthscales: list[float] = []  # every rff lengthscale candidate scored
        self.stage_suffix = ""  # appended to the stage names in ``selection``
        self.passes: dict = {}  # statistics per feature map, reused by a second kind of grid

    def statistics(self, fmap: FeatureMap) -> SufficientStatistics:
        """One statistics pass (§4) with ``fmap``, standardised to the target's units (§1)."""
        reg = self.regressor
        key = (fmap.kind, fmap.n_features, repr(fmap.info))
        if key in self.passes:
            return self.passes[key]
        raw = source_statistics(self.source, fmap, int(reg.chunk_rows), self.progress, reg.precision)
        stats = raw.standardised(self.units.y_offset, self.units.y_scale)
        held = sum(held.gram.nbytes for held in self.passes.values())
        if held + stats.gram.nbytes <= PASS_CACHE_BYTES:  # else the second kind of grid passes again
            self.passes[key] = stats
        return stats

    def prepare(self, fmap: FeatureMap) -> tuple[FeatureMap, SufficientStatistics]:
        """The feature map the fit uses and its statistics: ``fmap`` and its pass, or with rotation
        "eigen" the map rotated into its Gram matrix's eigenbasis and the rotated statistics (§3)."""
        stats = self.statistics(fmap)
        if self.regressor.rotation != "eigen":
            return fmap, stats
        rotation = gram_eigenbasis(stats)
        return fmap.rotated(rotation), stats.rotated(rotation)

    def reporter(self, stage: str) -> Callable[[int, float], None] | None:
        """The optimiser's callback for ``stage``, or None without a progress callback."""
        callback = self.callback
        if callback is None:
            return None
        return lambda it, value: callback(stage, it, value)

    def score(self, stats: SufficientStatistics, scales: tuple, stage: str, ell) -> DirectGLM:
        """A short mean-field fit of one candidate (§9) at ``scales`` (grid scale, prior scale),
        recorded in ``selection``."""
        reg = self.regressor
        glm = reg._glm(stats, *scales, "mean-field")
        glm.fit(
            SELECTION_MAX_ITER,
            stage_iter=SELECTION_STAGE_ITER,
            callback=self.reporter(stage),
            optimizer=reg._optimizer(SEARCH_OPTIMIZER),
        )
        self.selection.append(reg._row(stage + self.stage_suffix, ell, *scales, glm.elbo_))
        return glm

    def best(self) -> tuple:
        """The (grid scale, prior scale) of the fitted candidate with the highest ELBO."""
        return max(self.fitted, key=lambda k: self.fitted[k].elbo_)


def search_past_edge(
    tried: dict[float, float], score: Callable[[float], float], max_steps: int = MAX_EDGE_STEPS
) -> float:
    """Continue a geometric candidate search past its edge: while the best of ``tried`` (value ->
    ELBO, updated in place) is the smallest or the largest value, score half or twice it, at most
    ``max_steps`` times.  Returns the best value."""
    for _ in range(max_steps):
        best, values = max(tried, key=tried.get), sorted(tried)
        if best == values[0]:
            new = best / 2.0
        elif best == values[-1]:
            new = best * 2.0
        else:
            break
        tried[new] = score(new)
    return max(tried, key=tried.get)


def source_rows(source) -> int | None:
    """Number of rows of a source when known in advance (for a progress bar)."""
    n = getattr(source, "n_rows", None)
    return int(n) if n is not None else None
