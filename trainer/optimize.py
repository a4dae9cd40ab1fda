"""Optimisers over a flat parameter vector: L-BFGS-B (exact gradients) and Adam (stochastic ones).

Both maximise; both record the objective after every iteration in ``trace`` (a list of floats).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass
class OptimResult:
    x: np.ndarray
    value: float
    n_iter: int
    converged: bool
    message: str
    trace: list[float] = field(default_factory=list)
    # True when the run stopped at its iteration limit (or L-BFGS-B's evaluation limit) before its
    # convergence test passed.
    limit_reached: bool = False


def maximise_lbfgs(
    objective: Objective,
    x0: np.ndarray,
    max_iter: int,
    tol: float = 1e-9,
    callback: Callable[[int, float], None] | None = None,
    maxcor: int = 10,
) -> OptimResult:
    """Maximise ``objective`` (value, gradient) with scipy's L-BFGS-B from ``x0``: (p,) float64.

    At most ``max_iter`` iterations (and 2·max_iter + 20 objective evaluations).  ``tol`` is the
    relative change of the objective at which L-BFGS-B stops (its ``ftol``); ``gtol`` is 1e-8.
    ``callback(iteration, value)`` runs after every iteration; ``maxcor`` is the number of stored
    correction pairs (L-BFGS memory).  The result's ``limit_reached`` says
    that it stopped at one of the two limits instead.
    """
    trace: list[float] = []

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(x)
        return -value, -grad

    def on_iter(intermediate_result) -> None:
        trace.append(-float(intermediate_result.fun))
        if callback is not None:
            callback(len(trace), trace[-1])

    if max_iter <= 0:
        value, _ = objective(x0)
        return OptimResult(x0.copy(), value, 0, False, "no iterations requested", [])
    res = minimize(
        neg,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=on_iter,
        options={
            "maxiter": int(max_iter),
            "maxfun": 2 * int(max_iter) + 20,
            "ftol": tol,
            "gtol": 1e-8,
            "maxcor": int(maxcor),
        },
    )
    return OptimResult(
        res.x,
        -float(res.fun),
        int(res.nit),
        bool(res.success),
        str(res.message),
        trace,
        limit_reached=res.status == 1,  # scipy: "maximum number of iterations/evaluations exceeded"
    )


class Adam:
    """Adam's moment estimates (Kingma & Ba) for maximising over a flat vector of ``size`` entries.

    :meth:`step` takes the gradient at the current point and returns the increment to add to it, so a
    caller owns its loop (stopping rule, learning-rate schedule, what it records) and shares the update.
    """

    def __init__(self, size: int, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.beta1, self.beta2 = beta1, beta2
        self.m1 = np.zeros(size)
        self.m2 = np.zeros(size)
        self.t = 0

    def step(self, grad: np.ndarray, learning_rate: float) -> np.ndarray:
        """Increment (shape of ``grad``) for an ascent step of size ``learning_rate``."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m1 = b1 * self.m1 + (1 - b1) * grad
        self.m2 = b2 * self.m2 + (1 - b2) * grad * grad
        return learning_rate * (self.m1 / (1 - b1**self.t)) / (np.sqrt(self.m2 / (1 - b2**self.t)) + 1e-8)


def maximise_adam(
    objective: Objective,
    x0: np.ndarray,
    max_iter: int,
    learning_rate: float = 0.05,
    beta1: float = 0.9,
    beta2: float = 0.999,
    callback: Callable[[int, float], None] | None = None,
) -> OptimResult:
    """Maximise a stochastic objective with Adam for exactly ``max_iter`` steps (no stopping test, so
    the result never reports convergence).  ``trace`` holds the objective's value at each step's start."""
    x = np.array(x0, dtype=np.float64)
    adam = Adam(x.size, beta1, beta2)
    trace: list[float] = []
    for it in range(1, int(max_iter) + 1):
        value, grad = objective(x)
        x += adam.step(grad, learning_rate)
        trace.append(float(value))
        if callback is not None:
            callback(it, float(value))
    return OptimResult(
        x, trace[-1] if trace else float("nan"), len(trace), False, "fixed number of Adam steps", trace
    )
