"""DirectClassifier against logistic regression, float and with 4-bit weights, on the same features.

Benchmark code, not part of the product.  Data: scikit-learn's bundled breast_cancer (binary) and
digits (10 classes), one seeded, stratified 70/30 split each.  Features: the rff map DirectClassifier
chose by its ELBO (default options, b = 256); both logistic regressions are fitted on those same
features.

- ``direct``: ``DirectClassifier()`` (per-feature grids from the Gaussian approximation; bound "auto":
  the lengthscale scored on Jaakkola–Jordan or Böhning, the grid and prior scales on the Jensen bound
  (each candidate warm-started on the quadratic bound), the chosen one continued on Jensen; model
  average over 512 posterior samples).  ``--grid-gains none`` fits one grid for every weight instead.
- ``logreg``: ``LogisticRegressionCV`` (10 values of C, 5 folds, chosen by log loss), float64.
- ``logreg-4bit``: its weights quantised to 4 bits after training, symmetric per tensor
  (w_q = clip(round(w / s), −7, 7)·s, s = max|w| / 7), the intercept kept in float.
- ``gpc``: the calibration anchor, ``GaussianProcessClassifier`` (Laplace approximation, float64) with
  the kernel the rff features approximate, σ²·exp(−|z − z'|² / (2ℓ²)) on the same standardised inputs z
  (trainer/features.py; one isotropic ℓ, as DIRECT's), σ² and ℓ optimised by the marginal likelihood
  starting at σ² = 1 and DIRECT's ℓ.  Fitted on a seeded, stratified subsample of at most ``--gpc-rows``
  (500) training rows (standardisation still learned from all of them); multiclass is scikit-learn's
  one-vs-rest (one binary GP and one (σ², ℓ) per class, probabilities normalised over classes).

``--models`` picks the rows (default ``direct,logreg,gpc``; ``logreg`` brings ``logreg-4bit``).  Without
``direct`` the rff map is rebuilt from the lengthscale DIRECT chose in the recorded run
(``RECORDED_LENGTHSCALE_FACTOR``; same standardisation, b = 256, seed 0, so the same features), and the
selective-prediction and out-of-distribution parts, which need DIRECT, are skipped:

    python benchmarks/classification_benchmark.py --models logreg,gpc     # a few minutes

Metrics on the test rows: accuracy, log loss, Brier score (Σ_k (p_k − y_k)², mean over rows),
ECE (15 equal-width bins of the top-class confidence, the product's definition); selective prediction
(accuracy of the rows kept when the 5/10/20 % most uncertain are rejected, by mutual information or by
1 − max p); and, unless ``--no-ood``, out-of-distribution detection: trained on digits 0–4, the AUROC of
mutual information and predictive entropy at telling test digits 5–9 from 0–4 (logistic regression's
predictive entropy beside them).

``--bounds`` also fits each bound of docs/trainer.md §11 on the hyperparameters the default chose,
from the prior, and reports its own ELBO, the Jensen ELBO of the q it reached (the tightest of the
four, so one yardstick for all), test accuracy, log loss and fit time.

    python benchmarks/classification_benchmark.py --bounds --json classification-results.json

Without ``--bounds`` it runs only the default fits, the two regressions and the GPC anchor
(docs/benchmarks.md, Classification, gives the times).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF, ConstantKernel
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from direct_edge.trainer import DirectClassifier
from direct_edge.trainer import classification_elbo as C
from direct_edge.trainer.classification_cli import expected_calibration_error
from direct_edge.trainer.classifier import _Rows, fit_posterior
from direct_edge.trainer.elbo import log_softmax
from direct_edge.trainer.features import FeatureMap, InputMoments

DATASETS = {"breast_cancer": load_breast_cancer, "digits": load_digits}
SEED = 0
REJECT_SHARES = (0.05, 0.1, 0.2)
MODELS = ("direct", "logreg", "gpc")
GPC_ROWS = 500
# ℓ / sqrt(d) that DirectClassifier chose by its ELBO in the recorded default run (docs/benchmarks.md,
# Classification): breast_cancer ℓ = 5.48, digits ℓ = 4.8.  Used only when ``direct`` is not run.
RECORDED_LENGTHSCALE_FACTOR = {"breast_cancer": 1.0, "digits": 0.6}


def brier(y_index: np.ndarray, proba: np.ndarray) -> float:
    onehot = np.eye(proba.shape[1])[y_index]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def ece(y_index: np.ndarray, proba: np.ndarray) -> float:
    """The product's ECE (15 equal-width bins of the top-class confidence; direct-train's summary)."""
    return expected_calibration_error(proba, y_index)


def selective_accuracy(y_index: np.ndarray, proba: np.ndarray, score: np.ndarray) -> dict:
    """Accuracy of the rows kept when the share ``f`` with the largest ``score`` (n,) is rejected, for f in
    REJECT_SHARES (0 included): the selective prediction a device that abstains would make."""
    order = np.argsort(score, kind="stable")  # ascending: the most certain first
    correct = proba.argmax(axis=1) == y_index
    out = {}
    for share in (0.0, *REJECT_SHARES):
        keep = order[: int(round(len(order) * (1.0 - share)))]
        out[f"{round(100 * share)}%"] = float(correct[keep].mean())
    return out


def ood_case(seed: int = SEED) -> dict:
    """Out-of-distribution detection: DirectClassifier and LogisticRegressionCV trained on digits 0–4 (the
    same seeded split), scored on the test rows of 0–4 (in) and 5–9 (out); AUROC of each uncertainty
    score at telling them apart (1 is perfect, 0.5 chance)."""
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    known = ytr < 5
    start = time.perf_counter()
    model = DirectClassifier(random_state=seed).fit(Xtr[known], ytr[known])
    seconds = time.perf_counter() - start
    is_out = (yte >= 5).astype(int)
    entropy, mi = model.predict_uncertainty(Xte)
    lr = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=10000)
    lr.fit(model.feature_map_.transform(Xtr[known]), ytr[known])
    p = lr.predict_proba(model.feature_map_.transform(Xte))
    lr_entropy = -np.sum(p * np.log(np.clip(p, 1e-300, 1.0)), axis=1)
    return {
        "fit_seconds": seconds,
        "n_in": int((1 - is_out).sum()),
        "n_out": int(is_out.sum()),
        "auroc": {
            "direct mutual information": float(roc_auc_score(is_out, mi)),
            "direct predictive entropy": float(roc_auc_score(is_out, entropy)),
            "logreg predictive entropy": float(roc_auc_score(is_out, lr_entropy)),
        },
    }


def scores(y_index: np.ndarray, proba: np.ndarray) -> dict:
    return {
        "accuracy": accuracy_score(y_index, proba.argmax(axis=1)),
        "log_loss": log_loss(y_index, proba, labels=np.arange(proba.shape[1])),
        "brier": brier(y_index, proba),
        "ece": ece(y_index, proba),
    }


def quantised(lr: LogisticRegressionCV, bits: int = 4) -> LogisticRegressionCV:
    """A copy with coef_ on a symmetric per-tensor grid of 2^(bits−1) − 1 positive levels."""
    out = copy.deepcopy(lr)
    top = 2 ** (bits - 1) - 1
    scale = np.max(np.abs(lr.coef_)) / top
    out.coef_ = np.clip(np.round(lr.coef_ / scale), -top, top) * scale
    return out


def stratified_subsample(y: np.ndarray, n_rows: int, seed: int = SEED) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``n_rows`` of the labels ``y`` with the class shares of
    ``y`` (scikit-learn's stratified split); all indices when ``n_rows`` >= len(y)."""
    index = np.arange(len(y))
    if n_rows >= len(y):
        return index
    keep, _ = train_test_split(index, train_size=n_rows, random_state=seed, stratify=y)
    return np.sort(keep)


def fit_gpc(Ztr, ytr, Zte, lengthscale: float, n_rows: int = GPC_ROWS, seed: int = SEED) -> tuple:
    """GaussianProcessClassifier with σ²·RBF(ℓ) on standardised inputs, fitted on a stratified subsample of
    at most ``n_rows`` of (Ztr, ytr), hyperparameters from the marginal likelihood starting at σ² = 1 and
    ``lengthscale``.  Returns (test probabilities (n_test, classes), info: rows, seconds, the fitted
    ℓ and σ² per binary GP (one for two classes, one per class for one-vs-rest))."""
    keep = stratified_subsample(ytr, n_rows, seed)
    kernel = ConstantKernel(1.0) * RBF(length_scale=float(lengthscale))
    gpc = GaussianProcessClassifier(kernel=kernel, random_state=seed, multi_class="one_vs_rest")
    start = time.perf_counter()
    gpc.fit(Ztr[keep], ytr[keep])
    seconds = time.perf_counter() - start
    binaries = getattr(gpc.base_estimator_, "estimators_", [gpc.base_estimator_])
    kernels = [e.kernel_ for e in binaries]
    info = {
        "rows": int(len(keep)),
        "fit_seconds": seconds,
        "start_lengthscale": float(lengthscale),
        "lengthscales": [float(k.k2.length_scale) for k in kernels],
        "signal_variances": [float(k.k1.constant_value) for k in kernels],
        "log_marginal_likelihood": float(np.sum([e.log_marginal_likelihood_value_ for e in binaries])),
    }
    return gpc.predict_proba(Zte), info


def jensen_elbo(model: DirectClassifier, rows: _Rows, theta: np.ndarray) -> float:
    """The Jensen-bound ELBO (§11) of q = softmax(θ) on the model's grid (per-feature or not) and prior."""
    grid = model.weight_grid()
    lp = model._log_prior(
        model._grid(model.grid_scale_, model.grid_gains_), model.prior_scale_, theta.shape[1]
    )
    value = 0.0
    for Phi, labels in rows.blocks():
        value += C.exp_bound_log_lik(Phi, labels, theta, grid, "jensen")[0]
    return value + C.kl_terms(theta, lp)[0]


def compare_bounds(model: DirectClassifier, X, y_index, Xte, yte_index) -> list[dict]:
    K = model.q_weights_.shape[0]
    rows = _Rows(model.feature_map_, X, y_index, 4096)
    Phi = rows.cache
    gram = Phi.T @ Phi
    b = Phi.shape[1]
    log_prior = model._log_prior(model._grid(model.grid_scale_, model.grid_gains_), model.prior_scale_, b)
    grid = model.weight_grid()
    out = []
    for bound in C.BOUNDS:
        if bound == "jj" and K > 1:
            continue
        theta0 = np.broadcast_to(log_prior, (K, *log_prior.shape)).copy()
        start = time.perf_counter()
        fit = fit_posterior(bound, rows, gram, grid, log_prior, theta0, 1000)
        seconds = time.perf_counter() - start
        probe = copy.copy(model)
        probe.q_weights_ = np.exp(log_softmax(fit.theta))
        probe.sample_levels_ = probe.sample(512, 0)
        proba = probe.predict_proba(Xte)
        row = {
            "bound": bound,
            "elbo_own": fit.elbo,
            "elbo_jensen": jensen_elbo(model, rows, fit.theta),
            "iterations": fit.n_iter,
            "converged": fit.converged,
            "seconds": seconds,
            **scores(yte_index, proba),
        }
        print(f"    bound {bound}: {row}", flush=True)
        out.append(row)
    return out


def run(name: str, with_bounds: bool, grid_gains: str = "gaussian", models=MODELS, gpc_rows=GPC_ROWS) -> dict:
    X, y = DATASETS[name](return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=SEED, stratify=y)
    classes = np.unique(ytr)
    yte_index = np.searchsorted(classes, yte)
    result = {
        "dataset": name,
        "n_train": len(ytr),
        "n_test": len(yte),
        "classes": len(classes),
        "methods": {},
    }
    model = None
    if "direct" in models:
        start = time.perf_counter()
        model = DirectClassifier(random_state=SEED, grid_gains=grid_gains).fit(Xtr, ytr)
        fit_seconds = time.perf_counter() - start
        fmap, lengthscale = model.feature_map_, model.lengthscale_
        result |= {
            "features": fmap.n_features,
            "lengthscale": lengthscale,
            "grid_scale": model.grid_scale_,
            "prior_scale": model.prior_scale_,
            "grid_gains": {
                "min": float(model.grid_gains_.min()),
                "median": float(np.median(model.grid_gains_)),
            },
            "factors": max(model.selection_, key=lambda r: r["elbo"]).get("factors")
            if model.selection_
            else None,
            "elbo": model.elbo_,
            "direct_fit_seconds": fit_seconds,
            "direct_sparsity": model.sparsity_,
        }
        result["methods"]["direct"] = scores(yte_index, model.predict_proba(Xte))
    else:
        # The map DirectClassifier builds for its chosen lengthscale (standardisation from the training rows).
        lengthscale = RECORDED_LENGTHSCALE_FACTOR[name] * np.sqrt(X.shape[1])
        offset, scale = InputMoments().update(Xtr).offset_and_scale()
        fmap = FeatureMap.rff(offset, scale, 256, lengthscale, SEED)
        result |= {
            "features": fmap.n_features,
            "lengthscale": lengthscale,
            "lengthscale_from": "recorded run",
        }
    Ftr, Fte = fmap.transform(Xtr), fmap.transform(Xte)
    lr = None
    if "logreg" in models:
        start = time.perf_counter()
        lr = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=10000).fit(Ftr, ytr)
        result["logreg_fit_seconds"] = time.perf_counter() - start
        result["logreg_C"] = float(np.mean(lr.C_))
        result["methods"]["logreg"] = scores(yte_index, lr.predict_proba(Fte))
        result["methods"]["logreg-4bit"] = scores(yte_index, quantised(lr).predict_proba(Fte))
    if "gpc" in models:
        p_gpc, result["gpc"] = fit_gpc(
            fmap.standardise(Xtr), ytr, fmap.standardise(Xte), float(np.mean(lengthscale)), gpc_rows
        )
        result["methods"]["gpc"] = scores(yte_index, p_gpc)
    if model is not None:
        _, u_mi = model.predict_uncertainty(Xte)
        wrong = model.predict(Xte) != yte
        result["mutual_information"] = {
            "correct": float(u_mi[~wrong].mean()),
            "wrong": float(u_mi[wrong].mean()) if wrong.any() else None,
        }
        proba = model.predict_proba(Xte)
        result["selective"] = {
            "direct, reject by mutual information": selective_accuracy(yte_index, proba, u_mi),
            "direct, reject by 1 - max p": selective_accuracy(yte_index, proba, -proba.max(axis=1)),
        }
        if lr is not None:
            p_lr = lr.predict_proba(Fte)
            result["selective"]["logreg, reject by 1 - max p"] = selective_accuracy(
                yte_index, p_lr, -p_lr.max(axis=1)
            )
    print(json.dumps(result, indent=1, default=float), flush=True)
    if with_bounds and model is not None:
        result["bounds"] = compare_bounds(model, Xtr, np.searchsorted(classes, ytr), Xte, yte_index)
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| data set | method | accuracy | log loss | Brier | ECE |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for method, s in r["methods"].items():
            lines.append(
                f"| {r['dataset']} | {method} | {s['accuracy']:.4f} | {s['log_loss']:.4f} | "
                f"{s['brier']:.4f} | {s['ece']:.4f} |"
            )
    if any("bounds" in r for r in results):
        lines += [
            "",
            "| data set | bound | own ELBO | Jensen ELBO of its q | accuracy | log loss | iterations | s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            for b in r.get("bounds", []):
                lines.append(
                    f"| {r['dataset']} | {b['bound']} | {b['elbo_own']:.1f} | {b['elbo_jensen']:.1f} | "
                    f"{b['accuracy']:.4f} | {b['log_loss']:.4f} | {b['iterations']} | {b['seconds']:.1f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="breast_cancer,digits")
    parser.add_argument("--bounds", action="store_true", help="also compare the four bounds")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--grid-gains", default="gaussian", choices=["gaussian", "none"])
    parser.add_argument("--no-ood", action="store_true", help="skip the out-of-distribution case")
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated subset of direct,logreg,gpc (logreg brings logreg-4bit); without direct, "
        "the features use the recorded run's lengthscale and the DIRECT-only parts are skipped",
    )
    parser.add_argument("--gpc-rows", type=int, default=GPC_ROWS, help="training rows GPC is fitted on")
    args = parser.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    if unknown := set(models) - set(MODELS):
        parser.error(f"unknown models {sorted(unknown)}; choose from {', '.join(MODELS)}")
    warnings.simplefilter("ignore", ConvergenceWarning)
    results = [
        run(name, args.bounds, args.grid_gains, models, args.gpc_rows) for name in args.datasets.split(",")
    ]
    print(markdown(results))
    for r in results:
        for how, acc in r.get("selective", {}).items():
            print(
                f"selective {r['dataset']:<14} {how:<38} " + "  ".join(f"{k} {v:.4f}" for k, v in acc.items())
            )
    if not args.no_ood and "direct" in models:
        ood = ood_case()
        results.append({"dataset": "digits 0-4 -> 5-9", "ood": ood})
        print(json.dumps(ood, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
    main()
