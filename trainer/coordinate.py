"""Exact coordinate ascent for the mean-field ELBO (docs/trainer.md §5, "Coordinate steps").

Two closed-form mean-field updates, each the exact maximiser of the ELBO over one factor with every
other factor held fixed, so neither can lower the ELBO:

- q(σ²) given q(w): ρ_k ∝ π_k exp(−(n/2) log 2πσ²_k − R/(2σ²_k)) (:func:`noise_step`);
- q(w_i) given q(σ²) and the other q(w_j): Q_il ∝ P_il exp(−(κ/2)[2W_il((Gs)_i − g_i s_i − h_i) + g_i W_il²])
  with κ = E_q[1/σ²] (:func:`weight_logits`), because E_q‖y − Φw‖² is linear in Q_i once the other
  factors are fixed.

A sweep updates q(σ²), then every q(w_i) in index order, keeping Gs up to date by one axpy with the
i-th Gram row per weight: O(b² + b·m + K) per sweep from the statistics, whatever n.  Parameters are
logits as in :func:`direct_edge.trainer.elbo.mean_field_elbo`: ``theta`` (b, m), ``eta`` (K,); the steps
return normalised logits (log-probabilities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from direct_edge.trainer import elbo as E

MAXCOR = 10
STEP_TOL = 1e-6


def noise_step(problem: E.Problem, theta: np.ndarray) -> np.ndarray:
    """The optimal q(σ²) given q(w) = row-softmax(``theta``: (b, m)): its log-probabilities (K,)."""
    s, t = E.weight_moments(problem, np.exp(E.log_softmax(theta)))
    sq_res, _ = E.expected_sq_residual(problem, s, t)
    return E.log_softmax(E.optimal_noise_logits(problem, float(sq_res)))


def noise_precision(problem: E.Problem, eta: np.ndarray) -> float:
    """κ = E_q[1/σ²] under ρ = softmax(``eta``: (K,))."""
    return float(np.exp(E.log_softmax(eta)) @ (1.0 / problem.noise))


def weight_logits(problem: E.Problem, i: int, s: np.ndarray, Gs: np.ndarray, kappa: float) -> np.ndarray:
    """Log-probabilities (m,) of the optimal q(w_i) given the other factors.

    ``s`` (b,) are the current means E[w], ``Gs`` (b,) = G s at those means, ``kappa`` = E[1/σ²].
    Only the other weights' means enter (through (Gs)_i − g_i s_i), so the current q(w_i) does not.
    """
    g = problem.gram_diag[i]
    lin = Gs[i] - g * s[i] - problem.phi_y[i]
    W = problem.grid[i]
    return E.log_softmax(problem.log_prior[i] - 0.5 * kappa * (2.0 * lin * W + g * W * W))


def weight_sweep(
    problem: E.Problem, theta: np.ndarray, kappa: float, order: np.ndarray | None = None
) -> float:
    """One pass of exact weight steps over ``order`` (default 0..b−1), in place on ``theta`` (b, m).

    Returns the largest change of a mean E[w_i] in units of that weight's grid step.  Only the rows
    in ``order`` change.  Per weight the loop does seven numpy calls on length-b or length-m vectors:
    (Gs)_i as a dot of G's i-th row with the current means (so no running sum drifts), the logits,
    their shift, exp, and one (2, m) product for Σ e·W and Σ e.  The new logits of every visited row
    are then formed in one vectorised log-softmax from the stored (Gs)_i − g_i s_i − h_i, which is
    the same expression the loop used, so the stored q(w_i) has the mean the later weights saw.
    """
    p = problem
    b = p.shape[0]
    grid = p.grid
    s = np.sum(np.exp(E.log_softmax(theta)) * grid, axis=1)
    start = s.copy()
    base = p.log_prior - (0.5 * kappa) * p.gram_diag[:, None] * (grid * grid)  # s does not move this
    moments = np.stack([grid, np.ones_like(grid)], axis=1)  # (b, 2, m): Σ e·W and Σ e in one product
    # Row views and Python floats up front: indexing a 2-D array per weight costs as much as a ufunc.
    g, h = p.gram_diag.tolist(), p.phi_y.tolist()
    gram_rows, base_rows, grid_rows, moment_rows = list(p.gram), list(base), list(grid), list(moments)
    visit = list(range(b)) if order is None else [int(i) for i in order]
    lin = np.zeros(b)
    exp, dot = np.exp, np.dot
    for i in visit:
        s_i = float(s[i])
        li = float(dot(gram_rows[i], s)) - g[i] * s_i - h[i]
        logits = base_rows[i] - (kappa * li) * grid_rows[i]
        logits -= logits.max()
        total, z = dot(moment_rows[i], exp(logits))
        s[i] = total / z
        lin[i] = li
    rows = np.asarray(visit, dtype=np.intp)
    theta[rows] = E.log_softmax(base[rows] - kappa * lin[rows, None] * grid[rows])
    if rows.size == 0:
        return 0.0
    return float(np.max(np.abs(s[rows] - start[rows]) / _grid_steps(p)[rows]))


def _grid_steps(problem: E.Problem) -> np.ndarray:
    """(b,) smallest spacing of each grid row (the unit of the convergence test)."""
    return np.min(np.abs(np.diff(problem.grid, axis=1)), axis=1)


@dataclass
class CoordinateResult:
    """Outcome of :func:`maximise_coordinate`: logits, ELBO (nats), sweeps run, whether the stopping
    test passed before ``max_sweeps``, and the ELBO after every sweep."""

    theta: np.ndarray
    eta: np.ndarray
    value: float
    n_iter: int
    converged: bool
    message: str
    trace: list[float] = field(default_factory=list)
    moved: float = np.inf  # largest move of a weight mean in the last sweep, in grid steps


def maximise_coordinate(
    problem: E.Problem,
    theta: np.ndarray,
    eta: np.ndarray,
    max_sweeps: int,
    tol: float = 1e-12,
    step_tol: float = 1e-9,
    fixed_rho: np.ndarray | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> CoordinateResult:
    """Coordinate ascent on the mean-field ELBO from (``theta`` (b, m), ``eta`` (K,)).

    A sweep sets q(σ²) to its optimum (unless ``fixed_rho`` (K,) holds it), then each q(w_i) in turn.
    Stops after the first sweep whose ELBO gain is at most ``tol``·max(1, |ELBO|) and whose largest
    move of a weight mean is at most ``step_tol`` grid steps, or after ``max_sweeps`` sweeps.
    ``callback(sweep, elbo)`` runs after every sweep.  The inputs are not modified.
    """
    theta = np.array(theta, dtype=np.float64)
    eta = np.array(eta, dtype=np.float64)
    fixed = None if fixed_rho is None else np.asarray(fixed_rho, dtype=np.float64)

    def value_of() -> float:
        return E.mean_field_elbo(problem, theta, eta, fixed_rho=fixed)[0]

    if fixed is None:
        eta = noise_step(problem, theta)
    current = value_of()
    trace: list[float] = []
    for sweep in range(1, int(max_sweeps) + 1):
        kappa = float(fixed @ (1.0 / problem.noise)) if fixed is not None else noise_precision(problem, eta)
        moved = weight_sweep(problem, theta, kappa)
        if fixed is None:
            eta = noise_step(problem, theta)
        new = value_of()
        trace.append(new)
        if callback is not None:
            callback(sweep, new)
        gain, current = new - current, new
        if gain <= tol * max(1.0, abs(new)) and moved <= step_tol:
            return CoordinateResult(
                theta, eta, new, sweep, True, "coordinate ascent at a fixed point", trace, moved
            )
    return CoordinateResult(
        theta, eta, current, len(trace), False, "coordinate ascent stopped at max_sweeps", trace, moved
    )


def maximise_mean_field(
    problem: E.Problem,
    theta: np.ndarray,
    eta: np.ndarray,
    max_iter: int,
    tol: float = 1e-10,
    fixed_rho: np.ndarray | None = None,
    callback: Callable[[int, float], None] | None = None,
    first_sweeps: int = 50,
    phase_sweeps: int = 20,
    switch_tol: float = 1e-8,
    step_tol: float = STEP_TOL,
) -> CoordinateResult:
    """Coordinate sweeps alternating with L-BFGS-B on the logits (docs/trainer.md §5).

    Rounds: sweeps (at most ``first_sweeps`` in the first round, ``phase_sweeps`` after) until one
    gains at most ``switch_tol``·max(1, |ELBO|); then L-BFGS-B (``ftol`` = ``tol``) from there; a
    round that gains at most ``tol``·max(1, |ELBO|) in all ends the fit (converged).  Every sweep and
    every L-BFGS-B iteration counts one iteration of ``max_iter``; the fit always ends with sweeps, so
    its answer is a point that coordinate steps no longer move.  ``fixed_rho`` (K,) holds q(σ²)
    fixed (the staged start of §8).  Returns logits, ELBO and the per-iteration trace.
    """
    from direct_edge.trainer.optimize import maximise_lbfgs

    b, m = problem.shape
    fixed = None if fixed_rho is None else np.asarray(fixed_rho, dtype=np.float64)
    trace: list[float] = []
    used = 0

    def record(_: int, value: float) -> None:
        trace.append(value)
        if callback is not None:
            callback(len(trace), value)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        if fixed is None:
            value, d_theta, d_eta = E.mean_field_elbo(problem, x[: b * m].reshape(b, m), x[b * m :])
            return value, np.concatenate([d_theta.ravel(), d_eta])
        value, d_theta, _ = E.mean_field_elbo(problem, x.reshape(b, m), eta, fixed_rho=fixed)
        return value, d_theta.ravel()

    def sweeps(theta: np.ndarray, eta: np.ndarray, limit: int) -> CoordinateResult:
        return maximise_coordinate(
            problem, theta, eta, min(limit, max_iter - used), switch_tol, np.inf, fixed, record
        )

    cd = sweeps(theta, eta, first_sweeps)
    used += cd.n_iter
    theta, eta, value = cd.theta, cd.eta, cd.value
    while used < max_iter:
        start = value
        x0 = np.concatenate([theta.ravel(), eta]) if fixed is None else theta.ravel().copy()
        lb = maximise_lbfgs(objective, x0, max_iter - used, tol, record, maxcor=MAXCOR)
        used += lb.n_iter
        if lb.value > value:
            theta = lb.x[: b * m].reshape(b, m).copy()
            eta = lb.x[b * m :].copy() if fixed is None else eta
        if used >= max_iter:
            break
        cd = sweeps(theta, eta, phase_sweeps)
        used += cd.n_iter
        theta, eta, value = cd.theta, cd.eta, cd.value
        if value - start <= tol * max(1.0, abs(value)) and cd.moved <= step_tol:
            return CoordinateResult(
                theta, eta, value, used, True, "coordinate steps and L-BFGS-B converged", trace
            )
    value = E.mean_field_elbo(problem, theta, eta, fixed_rho=fixed)[0]
    return CoordinateResult(theta, eta, value, used, False, "stopped at max_iter", trace)
