"""Accuracy and honesty of the 4-bit posterior against the float conjugate model on the same features.

    python benchmarks/accuracy_benchmark.py --data-dir PATH/TO/uci [--sets autompg autos ...]
        [--features 256 2000] [--splits 3] [--variants default one-grid gains search512]
        [--json results.jsonl] [--no-extrapolation]

Per data set of the UCI folder (its fixed splits, ``test_mask.csv.gz``), b in ``--features`` and split:

1. ``DirectRegressor(n_features=b)`` with every other option at its default (hyperparameters chosen by
   the ELBO, docs/trainer.md §9), on the raw training rows.
2. scikit-learn's ``BayesianRidge`` (evidence maximisation, no intercept) on the *same* features: the
   fitted DIRECT model's feature map applied to the training rows, target standardised as DIRECT's.

Printed per case: test RMSE of each and their ratio (DIRECT / BayesianRidge), mean NLPD of a Gaussian
with each model's exact predictive mean and variance (nats per test point, target units) and the
difference, the share of test targets inside each central 95 % interval, whether DIRECT's final fit
converged, its wall time and the share of that time spent choosing hyperparameters (everything except
the final fits), and the check against the float model (docs/trainer.md §9): DIRECT's training RMSE over
the float conjugate model's on the same statistics, and whether the fit was flagged.  The summary then
counts how the flag matched the test rows: flagged fits with a test RMSE ratio above 1.05 and below it,
and unflagged ones.

``--variants`` runs each case once per variant, one right after the other (so their times compare):
``default`` (every option at its default: ``grid_gains="auto"``), ``one-grid`` (``grid_gains="none"``, one
grid for every weight: the default before per-feature grids), ``gains`` (``grid_gains="evidence"``:
per-feature grids only), ``search512`` (``search_features=512``: the search on at most 512 rff
features) and ``sparse-Z`` (``prior="sparse", zero_mass=Z`` for Z in ``ZERO_MASSES``: the sparsity curve;
``--sparsity-curve`` runs default and all of them, and ``--plot FILE`` draws test RMSE against the share
of zero weights per set).

The extrapolation case (``--no-extrapolation`` skips it): linear features, x ~ U[1000, 1010] (200
training rows), y = 0.3 (x − 1005) + N(0, 0.5²); 95 % coverage and mean predictive sd on 2,000 test
points inside [1000, 1010] and on 2,000 outside it (x in [0, 1000) ∪ (1010, 2000]), for DIRECT and for
BayesianRidge on the same features (the inputs plus a bias).

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
from sklearn.linear_model import BayesianRidge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import load_uci  # noqa: E402

from direct_edge.trainer import DirectRegressor, FloatGapWarning  # noqa: E402
from direct_edge.trainer.data import ArraySource  # noqa: E402

# The sparsity curve: the sparse prior (docs/trainer.md §2) at each extra mass on level 0, every other
# option at its default; "sparse-0" is the discretised Gaussian with the sparse prior's code path.
ZERO_MASSES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
VARIANTS = {
    "default": {},
    "one-grid": {"grid_gains": "none"},
    "gains": {"grid_gains": "evidence"},
    "search512": {"search_features": 512},
    "rotated": {"rotation": "eigen"},
    **{f"sparse-{zm:g}": {"prior": "sparse", "zero_mass": zm} for zm in ZERO_MASSES},
}
SETS = ("autompg", "autos", "concrete", "energy", "gas", "protein", "yacht")
Z95 = 1.959963984540054


def gaussian_scores(y: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> dict:
    """RMSE, mean NLPD (nats per point) and 95 % coverage of N(mean, sd²) on ``y``."""
    z = (y - mean) / sd
    return {
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
        "nlpd": float(np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * z**2)),
        "coverage95": float(np.mean(np.abs(z) <= Z95)),
        "mean_sd": float(np.mean(sd)),
    }


def fit_direct(X: np.ndarray, y: np.ndarray, **options) -> tuple[DirectRegressor, float, float]:
    """A DirectRegressor; returns (model, wall seconds, seconds spent outside the final fits).

    The final fits' time is summed between consecutive iterations of stage "fit" (with grid_gains
    "auto" there is one final fit per kind of grid; both count as final fits, everything else as the
    hyperparameter search)."""
    state = {"last": None, "stage": None, "final": 0.0}

    def callback(stage: str, iteration: int, value: float) -> None:
        now = time.perf_counter()
        if stage == state["stage"] == "fit":
            state["final"] += now - state["last"]
        state["last"], state["stage"] = now, stage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FloatGapWarning)  # recorded per case as "flagged"
        start = time.perf_counter()
        model = DirectRegressor(**options)
        model.fit_source(ArraySource(X, y), callback=callback)
        seconds = time.perf_counter() - start
    return model, seconds, seconds - state["final"]


def bayesian_ridge_on(model: DirectRegressor, Xtr, ytr, Xte) -> tuple[np.ndarray, np.ndarray]:
    """BayesianRidge on DIRECT's feature map; predictive mean and sd (target units) on ``Xte``."""
    scale, offset = model.y_scale_, model.y_offset_
    br = BayesianRidge(fit_intercept=False).fit(model.feature_map_.transform(Xtr), (ytr - offset) / scale)
    mean, sd = br.predict(model.feature_map_.transform(Xte), return_std=True)
    return mean * scale + offset, sd * scale


def uci_case(name: str, data_dir: str, b: int, split: int, variant: str) -> dict:
    X, y, masks = load_uci(name, data_dir)
    test = masks[:, split]
    Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]
    model, seconds, search_seconds = fit_direct(Xtr, ytr, n_features=b, **VARIANTS[variant])
    mean, sd = model.predict(Xte, return_std=True)
    direct = gaussian_scores(yte, mean, sd)
    start = time.perf_counter()
    br = gaussian_scores(yte, *bayesian_ridge_on(model, Xtr, ytr, Xte))
    return {
        "set": name,
        "b": b,
        "split": split,
        "variant": variant,
        "direct": direct,
        "bayesian_ridge": br,
        "rmse_ratio": direct["rmse"] / br["rmse"],
        "nlpd_diff": direct["nlpd"] - br["nlpd"],
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "elbo": float(model.elbo_),
        "seconds": seconds,
        "search_share": search_seconds / seconds,
        "br_seconds": time.perf_counter() - start,
        "grid_scale": model.grid_scale_,
        "prior_scale": model.prior_scale_,
        "lengthscale": None if model.lengthscale_ is None else float(np.mean(model.lengthscale_)),
        "noise_sd": float(np.sqrt(model.noise_variance_)),
        "train_rmse": float(model.train_rmse_),
        "float_train_rmse": float(model.float_train_rmse_),
        "train_ratio": float(model.train_rmse_ / model.float_train_rmse_),
        "flagged": model.float_gap_ is not None,
        "sparsity": float(model.sparsity_),
        "sample_sparsity": float(np.mean(model.sample(100, seed=split).levels == 0)),
    }


def extrapolation_case(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(1000, 1010, 200)
    y = 0.3 * (x - 1005) + 0.5 * rng.standard_normal(200)
    inside = rng.uniform(1000, 1010, 2000)
    outside = np.concatenate([rng.uniform(0, 1000, 1000), rng.uniform(1010, 2000, 1000)])
    model, _, _ = fit_direct(x[:, None], y, features="linear")
    out = {}
    for label, xt in (("inside", inside), ("outside", outside)):
        yt = 0.3 * (xt - 1005) + 0.5 * rng.standard_normal(xt.size)
        out[f"direct_{label}"] = gaussian_scores(yt, *model.predict(xt[:, None], return_std=True))
        out[f"br_{label}"] = gaussian_scores(yt, *bayesian_ridge_on(model, x[:, None], y, xt[:, None]))
    return out


def print_case(r: dict) -> None:
    d, br = r["direct"], r["bayesian_ridge"]
    print(
        f"{r['set']:<9} b={r['b']:<5} split {r['split']} {r['variant']:<9}  "
        f"RMSE {d['rmse']:.4f} / {br['rmse']:.4f} = "
        f"{r['rmse_ratio']:.3f}  NLPD {d['nlpd']:.3f} / {br['nlpd']:.3f} ({r['nlpd_diff']:+.3f})  "
        f"cov95 {d['coverage95']:.3f} / {br['coverage95']:.3f}  conv {str(r['converged']):<5} "
        f"{r['seconds']:.1f} s (search {100 * r['search_share']:.0f} %)  "
        f"Δ {r['grid_scale']} s {r['prior_scale']} ℓ {r['lengthscale']:.3g} noise {r['noise_sd']:.4g} "
        f"train {r['train_rmse']:.4g} ({r['train_ratio']:.3g}x float{', FLAGGED' if r['flagged'] else ''}) "
        f"sparsity {r['sparsity']:.3f}",
        flush=True,
    )


def summary(rows: list[dict]) -> None:
    print("\nmean over splits (DIRECT / BayesianRidge):")
    keys = sorted({(r["set"], r["b"], r["variant"]) for r in rows}, key=lambda k: (k[1], k[2], k[0]))
    for name, b, variant in keys:
        rs = [r for r in rows if (r["set"], r["b"], r["variant"]) == (name, b, variant)]
        ratio = np.mean([r["rmse_ratio"] for r in rs])
        dn = np.mean([r["nlpd_diff"] for r in rs])
        cov = np.mean([r["direct"]["coverage95"] for r in rs])
        brcov = np.mean([r["bayesian_ridge"]["coverage95"] for r in rs])
        conv = sum(r["converged"] for r in rs)
        share = np.mean([r["search_share"] for r in rs])
        secs = np.mean([r["seconds"] for r in rs])
        rmse = np.mean([r["direct"]["rmse"] for r in rs])
        zeros = np.mean([r.get("sample_sparsity", np.nan) for r in rs])
        elbo = np.mean([r["elbo"] for r in rs])
        print(
            f"| {name} | {b} | {variant} | {len(rs)} | {ratio:.3f} | {dn:+.3f} | {cov:.3f} | {brcov:.3f} | "
            f"{conv}/{len(rs)} | {secs:.1f} | {100 * share:.0f} % | {rmse:.4g} | {100 * zeros:.1f} % | "
            f"{elbo:.1f} |"
        )


def flag_check(rows: list[dict], worse: float = 1.05) -> None:
    """How the float-model flag (docs/trainer.md §9) matched the test rows: per flag, the fits whose test
    RMSE ratio is above ``worse`` and the largest and smallest ratios."""
    for flagged in (True, False):
        rs = [r for r in rows if r.get("flagged") is flagged]
        if rs:
            ratios = [r["rmse_ratio"] for r in rs]
            train = [r["train_ratio"] for r in rs]
            above = sum(x > worse for x in ratios)
            print(
                f"{'flagged' if flagged else 'not flagged'}: {len(rs)} fits, {above} with a test RMSE "
                f"ratio above {worse}; test ratio {min(ratios):.3f}–{max(ratios):.3f}, "
                f"training ratio {min(train):.3g}–{max(train):.3g}"
            )


def plot_sparsity(rows: list[dict], path: str) -> None:
    """Test RMSE (mean over splits, relative to BayesianRidge on the same features) against the share
    of zero weights in 100 posterior samples, one line per data set over the sparse variants, the
    default's point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted({r["set"] for r in rows}):
        points = []
        for variant in [f"sparse-{zm:g}" for zm in ZERO_MASSES] + ["default"]:
            rs = [r for r in rows if r["set"] == name and r["variant"] == variant]
            if rs:
                points.append(
                    (
                        variant,
                        np.mean([r["sample_sparsity"] for r in rs]),
                        np.mean([r["rmse_ratio"] for r in rs]),
                    )
                )
        curve = [(z, v) for variant, z, v in points if variant != "default"]
        (line,) = ax.plot([100 * z for z, _ in curve], [v for _, v in curve], "o-", label=name)
        for variant, z, v in points:
            if variant == "default":
                ax.plot(100 * z, v, "*", markersize=12, color=line.get_color())
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axvspan(51, 99.6, color="grey", alpha=0.1, label="paper's sparsity range")
    ax.set_xlabel("zero weights in posterior samples (%)")
    ax.set_ylabel("test RMSE / BayesianRidge's (same features)")
    ax.set_yscale("log")
    ticks = [1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the UCI folder (data sets in subfolders)")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--features", nargs="+", type=int, default=[256, 2000])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--json", help="append each case to this JSON-lines file")
    parser.add_argument("--no-extrapolation", action="store_true")
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--sparsity-curve", action="store_true", help="default and every sparse-Z variant")
    parser.add_argument("--plot", help="draw the sparsity curve into this image file")
    parser.add_argument("--replot", help="with --plot: draw it from this --json file instead of fitting")
    args = parser.parse_args()
    if args.replot:
        with open(args.replot) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        summary(rows)
        if args.plot:
            plot_sparsity(rows, args.plot)
        return
    if args.sparsity_curve:
        args.variants = ["default"] + [f"sparse-{zm:g}" for zm in ZERO_MASSES]
    rows = []
    if not args.no_extrapolation:
        ex = extrapolation_case()
        for k, v in ex.items():
            print(
                f"extrapolation {k:<15} cov95 {v['coverage95']:.3f}  mean sd {v['mean_sd']:.4f}  "
                f"RMSE {v['rmse']:.4f}",
                flush=True,
            )
    for b in args.features:
        for name in args.sets:
            for split in range(args.splits):
                for variant in args.variants:
                    r = uci_case(name, args.data_dir, b, split, variant)
                    print_case(r)
                    rows.append(r)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    summary(rows)
    flag_check(rows)
    if args.plot:
        plot_sparsity(rows, args.plot)


if __name__ == "__main__":
    main()
