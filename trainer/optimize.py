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


def maximise_lbfgs(
    objective: Objective,
    x0: np.ndarray,
    max_iter: int,
    tol: float = 1e-9,
    callback: Callable[[int, float], None] | None = None,
) -> OptimResult:
    """Maximise ``objective`` (value, gradient) with scipy's L-BFGS-B from ``x0``.

    ``tol`` is the relative change of the objective at which L-BFGS-B stops (its ``ftol``).
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
            "maxcor": 10,
        },
    )
    return OptimResult(res.x, -float(res.fun), int(res.nit), bool(res.success), str(res.message), trace)


def maximise_adam(
    objective: Objective,
    x0: np.ndarray,
    max_iter: int,
    learning_rate: float = 0.05,
    beta1: float = 0.9,
    beta2: float = 0.999,
    callback: Callable[[int, float], None] | None = None,
) -> OptimResult:
    """Maximise a stochastic objective with Adam (Kingma & Ba) for ``max_iter`` steps."""
    x = np.array(x0, dtype=np.float64)
    m1 = np.zeros_like(x)
    m2 = np.zeros_like(x)
    trace: list[float] = []
    for it in range(1, int(max_iter) + 1):
        value, grad = objective(x)
        m1 = beta1 * m1 + (1 - beta1) * grad
        m2 = beta2 * m2 + (1 - beta2) * grad * grad
        step = learning_rate * (m1 / (1 - beta1**it)) / (np.sqrt(m2 / (1 - beta2**it)) + 1e-8)
        x += step
        trace.append(float(value))
        if callback is not None:
            callback(it, float(value))
    return OptimResult(
        x, trace[-1] if trace else float("nan"), len(trace), False, "fixed number of Adam steps", trace
    )
