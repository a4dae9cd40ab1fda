"""DirectGLM: the DIRECT model on a given basis, in the paper's terms (docs/trainer.md §5–§8).

y = Φ w + ε, ε ~ N(0, σ²), every w_i on a discrete grid, σ² on a discrete noise grid.  The data enter
only through :class:`SufficientStatistics`; the numerics live in :mod:`direct_edge.trainer.elbo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from direct_edge.trainer import coordinate as CD
from direct_edge.trainer import elbo as E
from direct_edge.trainer.blas import one_blas_thread
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.grid import WeightGrid, normalise_log_probs
from direct_edge.trainer.grid import noise_grid as default_noise_grid
from direct_edge.trainer.optimize import OptimResult, maximise_adam, maximise_lbfgs
from direct_edge.trainer.posterior import Posterior, PosteriorSamples
from direct_edge.trainer.statistics import SufficientStatistics

FAMILIES = ("mean-field", "mixture")
ENTROPIES = ("bound", "reinforce")
INITS = ("auto", "gaussian", "staged", "prior", "warm")
OPTIMIZERS = ("combined", "coordinate", "lbfgs")
LBFGS_STARTS = ("gaussian", "staged")  # the starts of "auto" for "lbfgs" and "coordinate" (§8)
# "combined" (docs/trainer.md §5, §8): the coordinate optimiser from these starts under init="auto"
# (from the given start otherwise, when COMBINED_SAME_START), and the old L-BFGS-B fit from
# LBFGS_STARTS (or the given start).  COMBINED_KEEP "guard": keep the coordinate run when its ELBO is
# at least the L-BFGS-B fit's (it is the same for statistics equal to round-off), else continue the
# L-BFGS-B fit with coordinate steps; "best": continue every L-BFGS-B run and keep the highest.
COMBINED_COORDINATE_STARTS = ("gaussian",)
COMBINED_SAME_START = True
COMBINED_KEEP = "guard"
# Two starts whose ELBOs differ by at most this much (relative) are a tie, and the first start of
# "auto" is kept: statistics that agree to round-off then choose the same start (docs/trainer.md §8).
ELBO_TIE_TOL = 1e-9
_POLISHED = "lbfgs-then-coordinate"  # internal: L-BFGS-B, then coordinate steps (a run of "combined")


@dataclass
class _Run:
    """One fit's answer and record, as :meth:`DirectGLM._fit_best_of` compares them."""

    elbo: float
    params: np.ndarray
    converged: bool
    message: str
    trace: list[float]
    n_iter: int
    limit_reached: bool


def _better(first: _Run | None, second: _Run | None) -> _Run | None:
    """``second`` if its ELBO beats ``first``'s by more than ELBO_TIE_TOL·max(1, |ELBO|), else
    ``first`` (either may be None: no run)."""
    if first is None or second is None:
        return second if first is None else first
    return second if second.elbo > first.elbo + ELBO_TIE_TOL * max(1.0, abs(first.elbo)) else first


class DirectGLM:
    """Bayesian GLM with discrete weights, fitted by exact variational inference.

    Build from a basis ``Phi`` (n, b) and ``y`` (n,), or from ``stats``.  ``grid``: a
    :class:`WeightGrid`, values (m,) shared by all weights, or (b, m) per weight (default: 4-bit
    levels × 0.25·sd(y)).  ``log_prior``: (m,) or (b, m), rows normalised here (default uniform).
    ``noise_grid``: (K,) variances (default var(y)·geomspace(1e-5, 1, 26)); ``log_noise_prior``:
    (K,) (default uniform).  ``family``: "mean-field" or "mixture" with ``n_components`` r;
    ``entropy`` (mixture only): "bound" (deterministic, L-BFGS-B) or "reinforce" (score-function
    estimate with ``n_entropy_samples`` samples, Adam).  ``seed`` drives the mixture's symmetry
    breaking and REINFORCE samples.

    A freshly built mean-field model holds the prior as its variational distribution.
    """

    def __init__(
        self,
        Phi: np.ndarray | None = None,
        y: np.ndarray | None = None,
        *,
        stats: SufficientStatistics | None = None,
        grid: WeightGrid | np.ndarray | None = None,
        log_prior: np.ndarray | None = None,
        noise_grid: np.ndarray | None = None,
        log_noise_prior: np.ndarray | None = None,
        family: str = "mean-field",
        n_components: int = 5,
        entropy: str = "bound",
        n_entropy_samples: int = 10,
        seed: int = 0,
    ) -> None:
        if stats is None:
            if Phi is None or y is None:
                raise DataError("DirectGLM needs either (Phi, y) or stats")
            stats = SufficientStatistics.from_basis(Phi, y)
        elif Phi is not None or y is not None:
            raise DataError("give either (Phi, y) or stats, not both")
        if stats.n < 1:
            raise DataError("statistics hold no rows")
        if family not in FAMILIES:
            raise DataError(f"family must be one of {FAMILIES}, got {family!r}")
        if entropy not in ENTROPIES:
            raise DataError(f"entropy must be one of {ENTROPIES}, got {entropy!r}")
        if family == "mixture" and (int(n_components) < 1):
            raise DataError("n_components must be >= 1")
        self.stats = stats
        self.family = family
        self.n_components = int(n_components) if family == "mixture" else 1
        self.entropy = entropy
        self.n_entropy_samples = int(n_entropy_samples)
        self.seed = int(seed)
        b = stats.n_features
        y_sd = float(np.sqrt(stats.y_var)) or 1.0

        if grid is None:
            grid = WeightGrid.from_bits(4, 0.25 * y_sd)
        self.weight_grid = grid if isinstance(grid, WeightGrid) else None
        values = grid.values if isinstance(grid, WeightGrid) else np.asarray(grid, dtype=np.float64)
        if values.ndim == 1:
            values = np.broadcast_to(values, (b, values.shape[0]))
        if values.ndim != 2 or values.shape[0] != b or values.shape[1] < 2:
            raise DataError(f"grid must have shape (m,) or ({b}, m) with m >= 2, got {values.shape}")
        m = values.shape[1]
        if log_prior is None:
            log_prior = np.zeros(m)
        log_prior = np.broadcast_to(normalise_log_probs(log_prior, "log_prior"), (b, m))
        if log_prior.shape != (b, m):
            raise DataError(f"log_prior must have shape (m,) or ({b}, {m})")
        if noise_grid is None:
            noise_grid = (stats.y_var if stats.y_var > 0 else 1.0) * default_noise_grid()
        noise = np.asarray(noise_grid, dtype=np.float64).reshape(-1)
        if noise.size < 1 or not np.all(np.isfinite(noise)) or np.any(noise <= 0):
            raise DataError("noise_grid must hold positive finite variances")
        if log_noise_prior is None:
            log_noise_prior = np.zeros(noise.size)
        log_noise_prior = normalise_log_probs(log_noise_prior, "log_noise_prior")
        if log_noise_prior.shape != noise.shape:
            raise DataError("log_noise_prior must have the shape of noise_grid")
        self.problem = E.Problem.build(
            stats, np.ascontiguousarray(values), np.ascontiguousarray(log_prior), noise, log_noise_prior
        )
        self.params = self.initial_params()
        self.trace_: list[float] = []
        self.n_iter_ = 0
        self.converged_ = False
        self.limit_reached_ = False

    # ---- parameter layout -------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return self.problem.shape[0]

    def _sizes(self) -> list[tuple[str, tuple[int, ...]]]:
        b, m = self.problem.shape
        K = self.problem.noise.size
        if self.family == "mean-field":
            return [("theta", (b, m)), ("eta", (K,))]
        r = self.n_components
        sizes = [("theta", (r, b, m)), ("alpha", (r,))]
        if self.entropy == "bound":
            sizes.append(("log_A", (b, m)))
        return sizes + [("eta", (K,))]

    def unpack(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Split a flat parameter vector into named arrays (views)."""
        out, pos = {}, 0
        for name, shape in self._sizes():
            size = int(np.prod(shape))
            out[name] = params[pos : pos + size].reshape(shape)
            pos += size
        if pos != params.size:
            raise DataError(f"parameter vector has {params.size} entries, expected {pos}")
        return out

    def pack(self, **parts: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.asarray(parts[name], dtype=np.float64).ravel() for name, _ in self._sizes()]
        )

    def initial_params(self) -> np.ndarray:
        """q at the prior (mean-field); prior plus seeded logit noise per component (mixture)."""
        p = self.problem
        if self.family == "mean-field":
            return self.pack(theta=p.log_prior, eta=p.log_noise_prior)
        rng = np.random.default_rng(self.seed)
        r = self.n_components
        theta = p.log_prior[None] + 0.1 * rng.standard_normal((r, *p.shape))
        return self.pack(theta=theta, alpha=np.zeros(r), log_A=p.log_prior, eta=p.log_noise_prior)

    # ---- objective ----------------------------------------------------------------------------

    def elbo_and_grad(
        self,
        params: np.ndarray,
        rng: np.random.Generator | None = None,
        n_entropy_samples: int | None = None,
    ) -> tuple[float, np.ndarray]:
        """ELBO (nats) and its gradient wrt the flat ``params``.

        Mean-field: exact.  Mixture with entropy "bound": the exact value and gradient of the
        deterministic lower bound.  Mixture with "reinforce": exact likelihood and prior terms plus a
        score-function estimate of the entropy and its gradient (stochastic; uses ``rng`` and
        ``n_entropy_samples``, default the model's).
        """
        q = self.unpack(np.asarray(params, dtype=np.float64))
        if self.family == "mean-field":
            value, d_theta, d_eta = E.mean_field_elbo(self.problem, q["theta"], q["eta"])
            return value, self.pack(theta=d_theta, eta=d_eta)
        if self.entropy == "bound":
            value, d_theta, d_alpha, d_log_A, d_eta = E.mixture_elbo_bound(
                self.problem, q["theta"], q["alpha"], q["log_A"], q["eta"]
            )
            return value, self.pack(theta=d_theta, alpha=d_alpha, log_A=d_log_A, eta=d_eta)
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        n_samples = self.n_entropy_samples if n_entropy_samples is None else int(n_entropy_samples)
        value, d_theta, d_alpha, d_eta = E.mixture_elbo_reinforce(
            self.problem, q["theta"], q["alpha"], q["eta"], rng, n_samples
        )
        return value, self.pack(theta=d_theta, alpha=d_alpha, eta=d_eta)

    def elbo(self, params: np.ndarray | None = None) -> float:
        """ELBO at ``params`` (default: the current ones).  Mean-field: exact.  Mixture: the
        deterministic bound, or with "reinforce" a seeded Monte Carlo estimate of the entropy
        (1,000 samples) added to the exact likelihood and prior terms."""
        params = self.params if params is None else params
        if self.family == "mixture" and self.entropy == "reinforce":
            return self.elbo_and_grad(params, np.random.default_rng(self.seed), 1000)[0]
        return self.elbo_and_grad(params)[0]

    # ---- fitting ------------------------------------------------------------------------------

    def fit(
        self,
        max_iter: int = 3000,
        init: str = "auto",
        tol: float = 1e-10,
        stage_iter: int = 300,
        learning_rate: float = 0.01,
        callback: Callable[[int, float], None] | None = None,
        optimizer: str = "combined",
    ) -> DirectGLM:
        """Maximise the ELBO.  Returns self.

        ``optimizer`` (mean-field, docs/trainer.md §5): "combined" (default) runs the old L-BFGS-B
        path from each of its starts and continues each with coordinate steps to a fixed point, and
        also runs the coordinate optimiser from its own start (``COMBINED_COORDINATE_STARTS`` under
        "auto", the given start otherwise), keeping the highest ELBO, so it never ends below
        "lbfgs" from the same starts; "coordinate" alternates exact coordinate steps (q(σ²) given
        q(w), then each q(w_i) given the rest) with L-BFGS-B on the logits and ends with coordinate
        steps; "lbfgs" is L-BFGS-B alone (the optimiser before coordinate steps, kept for
        comparison).  A mixture's own fit is always L-BFGS-B (or Adam); ``optimizer`` then applies
        to its mean-field start.

        ``init`` (docs/trainer.md §8): "staged" restarts from the prior, first fits q(w) with q(σ²)
        held on the noise level nearest 0.1·var(y) for ``stage_iter`` iterations, then sets q(σ²) to
        its optimum given q(w), then optimises everything jointly; "gaussian" starts from the
        conjugate Gaussian posterior discretised onto the grid; "auto" (default) runs both and keeps
        the higher ELBO (the mean-field objective has many local optima and neither start wins
        everywhere); "prior" is the naive joint optimisation from the prior, which often stalls with
        q(σ²) saturated at the top of the noise grid; "warm" continues from the current parameters.
        Mixtures start from a fitted mean-field posterior with perturbed components (unless "warm").

        ``max_iter`` bounds the iterations of the joint optimisation: coordinate sweeps plus L-BFGS-B
        iterations (each L-BFGS-B run makes at most 2·its limit + 20 ELBO evaluations; for "combined"
        the L-BFGS-B iterations and the coordinate steps after them share max_iter), or Adam steps
        for entropy "reinforce" (exactly max_iter).  The staged start's first stage and a mixture's
        mean-field start run before it, each with its own limit; with "auto" each start has max_iter.
        ``tol``: L-BFGS-B's relative change of the ELBO at which it stops, and for "coordinate" also
        the relative gain of a round (L-BFGS-B, then sweeps) at which the fit stops.
        ``callback(iteration, elbo)`` runs after every iteration (sweep), stages included.

        Sets ``elbo_`` (nats), ``params``, ``trace_`` (the ELBO after every iteration of the kept
        run, stages included), ``n_iter_`` (its joint iterations, <= max_iter), ``converged_``
        (the convergence test passed: L-BFGS-B's, or for "coordinate" and "combined" a round that
        gained at most ``tol`` and ends at a coordinate fixed point; always False for Adam, which has
        none), ``limit_reached_`` (the joint optimisation stopped at max_iter or at the evaluation
        limit; for "coordinate" and "combined" exactly ``not converged_``)
        and ``message_``.  Raises DataError for an unknown ``init`` or ``optimizer``.
        """
        if init not in INITS:
            raise DataError(f"init must be one of {INITS}, got {init!r}")
        if optimizer not in OPTIMIZERS:
            raise DataError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        # One BLAS thread: an iteration is a gemv with G plus L-BFGS-B's own (single-threaded)
        # update, and idle OpenBLAS workers spinning between calls slow the latter down.  Measured
        # on 2 cores: b = 2000, 3.5 ms per iteration with 1 thread against 15.7 ms with 2; b = 32,
        # about 7x faster on a loaded machine.
        with one_blas_thread():
            return self._fit(max_iter, init, tol, stage_iter, learning_rate, callback, optimizer)

    def _fit(
        self,
        max_iter: int,
        init: str,
        tol: float,
        stage_iter: int,
        learning_rate: float,
        callback: Callable[[int, float], None] | None,
        optimizer: str = "combined",
    ) -> DirectGLM:
        self.trace_ = []

        def record(it: int, value: float) -> None:
            self.trace_.append(value)
            if callback is not None:
                callback(len(self.trace_), value)

        if self.family == "mean-field" and optimizer == "combined":
            return self._fit_combined(max_iter, init, tol, stage_iter, learning_rate, callback)
        if self.family == "mean-field" and init == "auto":
            runs = [(start, optimizer) for start in LBFGS_STARTS]
            return self._restore(self._fit_best_of(runs, max_iter, tol, stage_iter, learning_rate, callback))
        x0 = self.params if init == "warm" else self.initial_params()
        if self.family == "mean-field":
            if init == "staged":
                x0 = self._staged_start(x0, stage_iter, tol, record, optimizer)
            elif init == "gaussian":
                x0 = self._gaussian_start()
            if optimizer == "coordinate":
                res = self._maximise_coordinate(x0, max_iter, tol, record)
            elif optimizer == _POLISHED:
                res = self._maximise_polished(x0, max_iter, tol, record)
            else:
                res = maximise_lbfgs(self.elbo_and_grad, x0, max_iter, tol, record)
        else:
            if init != "warm":
                x0 = self._mixture_start(max_iter, init, tol, stage_iter, record, optimizer)
            if self.entropy == "bound":
                res = maximise_lbfgs(self.elbo_and_grad, x0, max_iter, tol, record)
            else:
                rng = np.random.default_rng(self.seed)
                res = maximise_adam(
                    lambda x: self.elbo_and_grad(x, rng), x0, max_iter, learning_rate, callback=record
                )
        self._finish(res)
        return self

    def _fit_combined(
        self,
        max_iter: int,
        init: str,
        tol: float,
        stage_iter: int,
        learning_rate: float,
        callback: Callable[[int, float], None] | None,
    ) -> DirectGLM:
        """The "combined" mean-field fit (§5, §8).  The coordinate optimiser runs from its own starts
        and L-BFGS-B alone from the old default's starts (the old default's answer, its tie rule
        included).  With COMBINED_KEEP "guard", the coordinate run is kept when its ELBO is at least
        the L-BFGS-B answer's (within the tie tolerance); otherwise that answer is continued by
        coordinate steps to a fixed point for the iterations it left.  With "best", every L-BFGS-B run
        is continued so and the highest ELBO of all runs is kept (ties to the earlier run).  Either
        way the result is at least the old default's ELBO (less the tie tolerance)."""
        warm = self.params.copy()
        if init == "auto":
            own_starts, lbfgs_starts = COMBINED_COORDINATE_STARTS, LBFGS_STARTS
        else:
            own_starts, lbfgs_starts = ((init,) if COMBINED_SAME_START else ()), (init,)
        args = (max_iter, tol, stage_iter, learning_rate, callback)
        own = self._fit_best_of([(start, "coordinate") for start in own_starts], *args)
        if COMBINED_KEEP == "best":
            polished = self._fit_best_of([(start, _POLISHED) for start in lbfgs_starts], *args)
            return self._restore(_better(own, polished))
        self.params = warm
        old = self._fit_best_of([(start, "lbfgs") for start in lbfgs_starts], *args)
        if own is not None and _better(own, old) is own:
            return self._restore(own)
        self._restore(old)
        res = self._continue_with_coordinate(max_iter, tol, callback)
        self._finish(res)
        return self

    def _continue_with_coordinate(
        self, max_iter: int, tol: float, callback: Callable[[int, float], None] | None
    ) -> OptimResult:
        """Continue the L-BFGS-B run held now (``trace_``, ``n_iter_``) with the "coordinate"
        optimisation for the iterations of ``max_iter`` it left; the result counts both."""

        def record(it: int, value: float) -> None:
            self.trace_.append(value)
            if callback is not None:
                callback(len(self.trace_), value)

        used, first = self.n_iter_, self.message_
        left = int(max_iter) - used
        if left <= 0:
            message = f"L-BFGS-B used all max_iter iterations ({first}); no coordinate steps"
            return OptimResult(self.params, self.elbo_, used, False, message, [], True)
        cd = self._maximise_coordinate(self.params, left, tol, record)
        message = f"L-BFGS-B ({first}), then {cd.message}"
        return OptimResult(cd.x, cd.value, used + cd.n_iter, cd.converged, message, [], cd.limit_reached)

    def _fit_best_of(
        self,
        runs: list[tuple[str, str]],
        max_iter: int,
        tol: float,
        stage_iter: int,
        learning_rate: float,
        callback: Callable[[int, float], None] | None,
    ) -> _Run | None:
        """Fit each (start, optimiser) of ``runs`` and return the run with the highest ELBO (None for
        no runs).  A later run replaces an earlier one only when its ELBO is higher by more than
        ``ELBO_TIE_TOL``·max(1, |ELBO|), so a tie goes to the earlier run whatever the round-off.
        Every "warm" run starts from the parameters held when this is called."""
        best = None
        warm = self.params.copy()
        for init, optimizer in runs:
            self.params = warm.copy()
            self._fit(max_iter, init, tol, stage_iter, learning_rate, callback, optimizer)
            run = _Run(
                self.elbo_,
                self.params.copy(),
                self.converged_,
                self.message_,
                list(self.trace_),
                self.n_iter_,
                self.limit_reached_,
            )
            best = run if best is None else _better(best, run)
        self.params = warm
        return best

    def _restore(self, run: _Run) -> DirectGLM:
        """Hold ``run``'s parameters and fit attributes."""
        self.elbo_, self.params, self.converged_, self.message_ = (
            run.elbo,
            run.params,
            run.converged,
            run.message,
        )
        self.trace_, self.n_iter_, self.limit_reached_ = list(run.trace), run.n_iter, run.limit_reached
        return self

    def _finish(self, res: OptimResult) -> None:
        """Take the joint optimisation's result (``trace_`` already holds every iteration)."""
        self.params = res.x
        self.n_iter_ = int(res.n_iter)
        self.converged_ = res.converged
        self.limit_reached_ = res.limit_reached
        self.message_ = res.message
        self.elbo_ = self.elbo()

    def _target_variance(self) -> float:
        """var(y), or the mean square of y when the statistics cannot centre it (both starts
        scale their noise guess by it); for a target that is exactly constant, ten times the
        smallest noise variance on the grid, so the starts begin at the grid's smallest noise."""
        spread = self.stats.y_var if self.stats.y_var > 0 else self.problem.y_sq / self.problem.n
        return spread if spread > 0 else 10.0 * float(np.min(self.problem.noise))

    def _maximise_coordinate(
        self, x0: np.ndarray, max_iter: int, tol: float, record: Callable
    ) -> OptimResult:
        """The "coordinate" joint optimisation of a mean-field model from ``x0`` (§5)."""
        q = self.unpack(x0)
        res = CD.maximise_mean_field(self.problem, q["theta"], q["eta"], max_iter, tol, callback=record)
        x = self.pack(theta=res.theta, eta=res.eta)
        limit = not res.converged and res.n_iter >= max_iter
        return OptimResult(x, res.value, res.n_iter, res.converged, res.message, res.trace, limit)

    def _maximise_polished(self, x0: np.ndarray, max_iter: int, tol: float, record: Callable) -> OptimResult:
        """L-BFGS-B alone from ``x0`` (the old optimiser, ``max_iter`` iterations), then the
        "coordinate" optimisation from its end for the iterations it left (§5).  The coordinate part
        never lowers the ELBO, so the result is at least L-BFGS-B's.  It converges only at a
        coordinate fixed point; when L-BFGS-B used every iteration, it stops at the limit."""
        lb = maximise_lbfgs(self.elbo_and_grad, x0, max_iter, tol, record)
        left = int(max_iter) - lb.n_iter
        if left <= 0:
            message = f"L-BFGS-B used all max_iter iterations ({lb.message}); no coordinate steps"
            return OptimResult(lb.x, lb.value, lb.n_iter, False, message, lb.trace, True)
        cd = self._maximise_coordinate(lb.x, left, tol, record)
        message = f"L-BFGS-B ({lb.message}), then {cd.message}"
        n_iter = lb.n_iter + cd.n_iter
        return OptimResult(
            cd.x, cd.value, n_iter, cd.converged, message, lb.trace + cd.trace, cd.limit_reached
        )

    def _staged_start(
        self, x0: np.ndarray, stage_iter: int, tol: float, record: Callable, optimizer: str = "lbfgs"
    ) -> np.ndarray:
        p = self.problem
        q = self.unpack(x0.copy())
        target = 0.1 * self._target_variance()
        rho = np.zeros(p.noise.size)
        rho[np.argmin(np.abs(np.log(p.noise) - np.log(max(target, 1e-300))))] = 1.0
        theta_shape = q["theta"].shape
        if optimizer == "coordinate":  # the polished runs take the old L-BFGS-B stage below
            res = CD.maximise_mean_field(
                p, q["theta"], q["eta"], stage_iter, tol, fixed_rho=rho, callback=record
            )
            return self.pack(theta=res.theta, eta=CD.noise_step(p, res.theta))

        def stage_objective(theta_flat: np.ndarray) -> tuple[float, np.ndarray]:
            value, d_theta, _ = E.mean_field_elbo(p, theta_flat.reshape(theta_shape), q["eta"], fixed_rho=rho)
            return value, d_theta.ravel()

        res = maximise_lbfgs(stage_objective, q["theta"].ravel().copy(), stage_iter, tol, record)
        theta = res.x.reshape(theta_shape)
        s, t = E.weight_moments(p, np.exp(E.log_softmax(theta)))
        sq_res, _ = E.expected_sq_residual(p, s, t)
        return self.pack(theta=theta, eta=E.optimal_noise_logits(p, float(sq_res)))

    def _gaussian_start(self) -> np.ndarray:
        """q(w) from the conjugate Gaussian posterior, discretised onto the grid.

        The continuous model with the prior's mean and variance per weight and noise variance
        σ0² has posterior N(μ, Σ), Σ = (G/σ0² + D⁻¹)⁻¹, μ = Σ(h/σ0² + D⁻¹ m0).  σ0² starts at
        0.1·var(y) and is re-estimated once from the residual of μ.  Each Q_i is then
        ∝ exp(−(W_ij − μ_i)²/(2 max(Σ_ii, Δ_i²/4))) (the floor keeps it from collapsing onto one
        level), and q(σ²) is set to its optimum given q(w).
        """
        p = self.problem
        prior = np.exp(p.log_prior)
        m0 = np.sum(prior * p.grid, axis=1)
        d0 = np.maximum(np.sum(prior * p.grid**2, axis=1) - m0**2, 1e-12)
        y_var = self._target_variance()
        noise = 0.1 * y_var
        for _ in range(2):
            A = p.gram / noise
            A[np.diag_indices_from(A)] += 1.0 / d0
            try:
                chol = np.linalg.cholesky(A)
            except np.linalg.LinAlgError:
                return self.initial_params()
            rhs = p.phi_y / noise + m0 / d0
            mu = np.linalg.solve(chol.T, np.linalg.solve(chol, rhs))
            rss = p.y_sq - 2.0 * mu @ p.phi_y + mu @ (p.gram @ mu)
            noise = max(rss / p.n, 1e-6 * y_var)
        inv_chol = np.linalg.solve(chol, np.eye(chol.shape[0]))
        var = np.sum(inv_chol**2, axis=0)  # diag(A⁻¹) = column norms of L⁻¹
        step = np.min(np.abs(np.diff(p.grid, axis=1)), axis=1)
        var = np.maximum(var, step**2 / 4)
        theta = -0.5 * (p.grid - mu[:, None]) ** 2 / var[:, None]
        Q = np.exp(E.log_softmax(theta))
        s, t = E.weight_moments(p, Q)
        sq_res, _ = E.expected_sq_residual(p, s, t)
        return self.pack(theta=theta, eta=E.optimal_noise_logits(p, float(sq_res)))

    def _mixture_start(
        self, max_iter: int, init: str, tol: float, stage_iter: int, record: Callable, optimizer: str
    ) -> np.ndarray:
        mf = DirectGLM(
            stats=self.stats,
            grid=self.problem.grid,
            log_prior=self.problem.log_prior,
            noise_grid=self.problem.noise,
            log_noise_prior=self.problem.log_noise_prior,
        )
        mf.fit(
            max_iter=max_iter, init=init, tol=tol, stage_iter=stage_iter, callback=record, optimizer=optimizer
        )
        return self.params_from_mean_field(mf)

    def params_from_mean_field(self, mf: DirectGLM) -> np.ndarray:
        """Mixture parameters that start at a fitted mean-field model ``mf`` of the same problem
        (docs/trainer.md §6): each component's logits are mf's plus seeded N(0, 0.1²) noise (to
        break the symmetry), α uniform, the bound's auxiliary A at the mixture's marginals, q(σ²)
        from mf.  Larger noise makes the starting bound exponentially loose in b (measured at
        b = 256: -1e17 nats at noise 0.5 against -538 at 0.1, same final ELBO or better)."""
        q_mf = mf.unpack(mf.params)
        rng = np.random.default_rng(self.seed)
        r = self.n_components
        theta = q_mf["theta"][None] + 0.1 * rng.standard_normal((r, *self.problem.shape))
        log_A = E.logsumexp(E.log_softmax(theta), axis=0) - np.log(r)
        return self.pack(theta=theta, alpha=np.zeros(r), log_A=log_A, eta=q_mf["eta"])

    # ---- posterior ----------------------------------------------------------------------------

    def posterior(self, params: np.ndarray | None = None) -> Posterior:
        """The variational distribution at ``params`` (flat, this model's layout; default: the current
        ones) as a stand-alone :class:`Posterior`."""
        q = self.unpack(self.params if params is None else np.asarray(params, dtype=np.float64))
        Q = np.exp(E.log_softmax(q["theta"]))
        alpha = np.ones(1) if self.family == "mean-field" else np.exp(E.log_softmax(q["alpha"]))
        return Posterior(
            grid=self.problem.grid,
            q_weights=Q[None] if Q.ndim == 2 else Q,
            mixture_weights=alpha,
            noise=self.problem.noise,
            q_noise=np.exp(E.log_softmax(q["eta"])),
            weight_grid=self.weight_grid,
        )

    def predict_moments(
        self, Phi_test: np.ndarray, include_noise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact predictive mean (n,) and variance (n,) for ``Phi_test``: (n, b); see
        :meth:`Posterior.predict_moments`."""
        return self.posterior().predict_moments(Phi_test, include_noise)

    def sample(self, n_samples: int, seed: int = 0) -> PosteriorSamples:
        """``n_samples`` draws of (w, σ²) from q, reproducible for a given ``seed``."""
        return self.posterior().sample(n_samples, seed)

    def mode(self) -> np.ndarray:
        """(b,) grid indices of the posterior mode (see :meth:`Posterior.mode`)."""
        return self.posterior().mode()
