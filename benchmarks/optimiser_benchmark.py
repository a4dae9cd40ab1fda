"""Optimiser benchmark: the mean-field optimisers of docs/trainer.md §5 side by side, in one run.

    python benchmarks/optimiser_benchmark.py --data-dir PATH/TO/uci [--sets concrete energy yacht]
        [--features 256] [--split 0] [--variants old coordinate combined best] [--json results.json]

Variants (every one maximises the same mean-field ELBO; set through ``regressor.SEARCH_OPTIMIZER``,
``regressor.OPTIMIZER`` and ``model.COMBINED_KEEP``):

- ``old``: L-BFGS-B alone for the candidates' short fits and the final fit (the default before
  coordinate steps);
- ``coordinate``: the coordinate optimiser for every fit (the previous default);
- ``combined`` (the default): candidates by L-BFGS-B alone (so the same hyperparameters as ``old``), the
  final fit "combined" with COMBINED_KEEP "guard";
- ``best``: as ``combined`` with COMBINED_KEEP "best" (every L-BFGS-B run continued by coordinate
  steps, the highest ELBO kept).

Printed per case and variant: ELBO (nats), wall time of the whole
``fit`` (statistics passes included), iterations of the final fit, whether it converged, the noise sd
E[σ²]^½ and the training RMSE (target units), and on the UCI test split the NLPD (nats per point) and
the share of test targets inside the central 95 % Gaussian predictive interval.

1. The synthetic example of docs/trainer.md §5: X ~ N(0, 1)^(500×3), y = sin(x0) + 0.5 x1 + 0.1 ε
   (seed 0), rff b = 32, ℓ = 1, Δ = 0.3, s = 1, max_iter 3000; fitted on y and on y + 1e9 (statistics
   equal to round-off), and on chunk_rows 100 and 1000.
2. UCI sets (the fixed split ``--split`` of the folder's test masks), rff b = ``--features``, all
   hyperparameters chosen by the ELBO (§9), default max_iter; then the same sets at the
   hyperparameters the old optimiser chose, so the ELBOs are of one objective.
3. "one q(σ²) step": the ELBO gain of a single closed-form q(σ²) update applied to the old optimiser's
   answer (weights unchanged), a measure of how far from the optimum it stopped.

The UCI folder is read from ``--data-dir`` (see its README.md); nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import load_uci  # noqa: E402

from direct_edge.trainer import DirectRegressor  # noqa: E402
from direct_edge.trainer import coordinate as CD  # noqa: E402
from direct_edge.trainer import elbo as E  # noqa: E402
from direct_edge.trainer import model as model_module  # noqa: E402
from direct_edge.trainer import regressor as regressor_module  # noqa: E402

# variant: (regressor.SEARCH_OPTIMIZER, regressor.OPTIMIZER, model.COMBINED_KEEP)
VARIANTS = {
    "old": ("lbfgs", "lbfgs", "guard"),
    "coordinate": ("coordinate", "coordinate", "guard"),
    "combined": ("lbfgs", "combined", "guard"),
    "best": ("lbfgs", "combined", "best"),
}
SYNTHETIC = {"n_features": 32, "lengthscale": 1.0, "grid_scale": 0.3, "prior_scale": 1.0, "max_iter": 3000}


def fit(optimizer: str, X: np.ndarray, y: np.ndarray, **options) -> tuple[DirectRegressor, float]:
    """A DirectRegressor fitted with the variant ``optimizer`` (a key of VARIANTS); returns (model,
    wall seconds)."""
    defaults = (regressor_module.SEARCH_OPTIMIZER, regressor_module.OPTIMIZER, model_module.COMBINED_KEEP)
    search, final, keep = VARIANTS[optimizer]
    regressor_module.SEARCH_OPTIMIZER, regressor_module.OPTIMIZER = search, final
    model_module.COMBINED_KEEP = keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model = DirectRegressor(**options).fit(X, y)
            return model, time.perf_counter() - start
    finally:
        regressor_module.SEARCH_OPTIMIZER, regressor_module.OPTIMIZER, model_module.COMBINED_KEEP = defaults


def scores(model: DirectRegressor, X: np.ndarray, y: np.ndarray) -> dict:
    """NLPD (nats per point) and 95 % coverage of the Gaussian predictive on (X, y)."""
    mean, sd = model.predict(X, return_std=True)
    z = (y - mean) / sd
    nlpd = float(np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * z**2))
    return {"nlpd": nlpd, "coverage95": float(np.mean(np.abs(z) <= 1.959964))}


def row(model: DirectRegressor, seconds: float) -> dict:
    return {
        "elbo": float(model.elbo_),
        "seconds": round(seconds, 3),
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        "noise_sd": float(np.sqrt(model.noise_variance_)),
        "train_rmse": float(model.train_rmse_),
        "grid_scale": model.grid_scale_,
        "prior_scale": model.prior_scale_,
        "lengthscale": None if model.lengthscale_ is None else float(np.mean(model.lengthscale_)),
    }


def print_row(label: str, optimizer: str, r: dict) -> None:
    extra = "".join(f"  {k} {r[k]:.4f}" for k in ("nlpd", "coverage95", "noise_step_gain") if k in r)
    print(
        f"{label:<22} {optimizer:<10} ELBO {r['elbo']:>12.3f}  {r['seconds']:>7.2f} s  iter {r['n_iter']:>5}"
        f"  conv {str(r['converged']):<5}  noise sd {r['noise_sd']:.4f}  rmse {r['train_rmse']:.4f}{extra}",
        flush=True,
    )


def synthetic(results: list, variants: tuple) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(500)
    for optimizer in variants:
        preds = {}
        for label, offset, chunk in (
            ("y", 0.0, 4096),
            ("y + 1e9", 1e9, 4096),
            ("chunk 100", 0.0, 100),
            ("chunk 1000", 0.0, 1000),
        ):
            model, seconds = fit(optimizer, X, y + offset, chunk_rows=chunk, **SYNTHETIC)
            r = row(model, seconds)
            preds[label] = model.predict(X) - offset
            print_row(f"synthetic {label}", optimizer, r)
            results.append({"case": f"synthetic {label}", "optimizer": optimizer, **r})
        sd = np.std(y)
        for a, b in (("y", "y + 1e9"), ("chunk 100", "chunk 1000")):
            gap = np.max(np.abs(preds[a] - preds[b])) / sd
            print(f"  {optimizer}: max |prediction difference| {a} vs {b}: {gap:.2e} sd(y)")


def uci(name: str, data_dir: str, features: int, split: int, results: list, variants: tuple) -> None:
    X, y, masks = load_uci(name, data_dir)
    test = masks[:, split]
    Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]
    chosen = None
    for optimizer in variants:
        model, seconds = fit(optimizer, Xtr, ytr, n_features=features)
        r = {**row(model, seconds), **scores(model, Xte, yte)}
        print_row(f"{name} (searched)", optimizer, r)
        results.append({"case": f"{name} searched", "optimizer": optimizer, **r})
        if chosen is None or optimizer == "old":
            chosen = {
                "lengthscale": model.lengthscale_,
                "grid_scale": model.grid_scale_,
                "prior_scale": model.prior_scale_,
            }
    for optimizer in variants:
        model, seconds = fit(optimizer, Xtr, ytr, n_features=features, **chosen)
        r = {**row(model, seconds), **scores(model, Xte, yte), "noise_step_gain": noise_step_gain(model)}
        print_row(f"{name} (old's hyper.)", optimizer, r)
        results.append({"case": f"{name} fixed", "optimizer": optimizer, **r})


def noise_step_gain(model: DirectRegressor) -> float:
    """ELBO gain (nats) of one closed-form q(σ²) step at the model's q(w), from its own statistics."""
    post = model.posterior_
    problem = model._benchmark_problem
    theta = np.log(np.maximum(post.q_weights[0], 1e-300))
    before = E.mean_field_elbo(problem, theta, np.log(np.maximum(post.q_noise, 1e-300)))[0]
    return float(E.mean_field_elbo(problem, theta, CD.noise_step(problem, theta))[0] - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the UCI folder (data sets in subfolders)")
    parser.add_argument("--sets", nargs="+", default=["concrete", "energy", "yacht"])
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic example")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    variants = tuple(args.variants)
    _record_problems()
    results: list = []
    if not args.no_synthetic:
        synthetic(results, variants)
    for name in args.sets:
        uci(name, args.data_dir, args.features, args.split, results, variants)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _record_problems() -> None:
    """Keep the final fit's ELBO problem on each regressor (``_benchmark_problem``), for the q(σ²) step."""
    original = DirectRegressor._final_fit

    def final_fit(self, search, stats, scales):
        glm, trace = original(self, search, stats, scales)
        self._benchmark_problem = glm.problem
        return glm, trace

    DirectRegressor._final_fit = final_fit


if __name__ == "__main__":
    main()
