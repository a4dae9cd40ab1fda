"""Trainer benchmark: statistics-pass throughput, n-independence of the ELBO, a protein fit.

    python benchmarks/trainer_benchmark.py --data-dir PATH/TO/uci [--quick] [--json results.json]

Every target is a ratio of two timings taken side by side in one run (absolute times on a shared
machine are noisy): the two sides are interleaved, repeated, and the best time of each is kept.

1. Statistics pass (compute_statistics on raw X with an rff map, chunked as in production) against
   a plain ``Phi.T @ Phi`` of the same size with Phi precomputed.  Target: throughput ratio >= 0.8.
   For reference it also times the pass as it was in commit 5eb675e (libm cos/sin, separate passes)
   and a variant with numpy's float32 sin/cos (defined here, not in the product), with its
   measured effect on ΦᵀΦ.
2. DirectGLM.elbo_and_grad (mean-field, 4-bit grid) with statistics of n = 1e3 and n = 1e6 rows.
   Target: time(n = 1e6) / time(n = 1e3) <= 1.1.
3. A full DirectRegressor fit on protein (split 0, rff b = 2000, 4 bits, mean-field, hyperparameters
   chosen by the ELBO) next to scikit-learn's BayesianRidge on the same features.

``--quick`` shrinks every size for a smoke run of a few seconds (its numbers mean nothing).
The UCI folder is read from ``--data-dir`` (see its README.md); nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.linalg import blas

from direct_edge.trainer import DirectGLM, DirectRegressor, FeatureMap, WeightGrid, compute_statistics
from direct_edge.trainer import regressor as regressor_module
from direct_edge.trainer.features import _RffKernel
from direct_edge.trainer.statistics import (
    DEFAULT_CHUNK_ROWS,
    SufficientStatistics,
    array_batches,
    iter_chunks,
)

D_INPUTS = 9  # like protein

FULL = {
    "pause_s": 0.3,
    "stats_n": 65536,
    "stats_b": (512, 2000),
    "stats_repeats": 5,
    "elbo_b": 512,
    "elbo_n": (1_000, 1_000_000),
    "elbo_calls": 200,
    "elbo_repeats": 7,
    "fit_features": 2000,
    "fit_max_train": None,
    "fit_params": {},
}
QUICK = {
    "pause_s": 0.02,
    "stats_n": 8192,
    "stats_b": (128, 256),
    "stats_repeats": 2,
    "elbo_b": 64,
    "elbo_n": (1_000, 20_000),
    "elbo_calls": 20,
    "elbo_repeats": 2,
    "fit_features": 64,
    "fit_max_train": 2000,
    # One candidate only, so the smoke run takes seconds (the full run searches by the ELBO).
    "fit_params": {"lengthscale": 1.8, "grid_scale": 0.2, "prior_scale": 0.5, "max_iter": 100},
}


# ---- helpers ------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, flush=True)


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int, pause: float) -> dict[str, float]:
    """Best wall time of each function over ``repeats`` rounds, the functions alternating.

    Each timing starts after a short pause: OpenBLAS worker threads keep spinning for a while
    after a call, and numpy and scipy each load their own OpenBLAS, so without the pause a
    Phi.T @ Phi (numpy's BLAS) timed right after scipy's dsyrk runs ~40 % slower on 2 cores.
    """
    best = {name: np.inf for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(pause)
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "thread_env": {k: v for k, v in os.environ.items() if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {
                **{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")},
                "loaded_by": Path(p.get("filepath", "")).parent.name,  # numpy.libs / scipy.libs / ...
            }
            for p in threadpool_info()
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def synthetic(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw (un-standardised) inputs and a smooth noisy target."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 20.0, d) + rng.uniform(-50.0, 50.0, d)
    Z = (X - X.mean(0)) / X.std(0)
    y = np.sin(Z[:, 0]) + 0.5 * Z[:, 1] * Z[:, 2 % d] + 0.3 * rng.standard_normal(n)
    return X, y


def rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    """‖a − ref‖ / ‖ref‖ (Frobenius)."""
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def rff_map(X: np.ndarray, b: int, seed: int = 0) -> FeatureMap:
    d = X.shape[1]
    return FeatureMap.rff(X.mean(0), X.std(0), b, 0.6 * np.sqrt(d), seed)


# ---- 1. statistics pass -------------------------------------------------------------------------


def statistics_as_in_5eb675e(fmap: FeatureMap, X: np.ndarray, y: np.ndarray, chunk: int) -> np.ndarray:
    """The statistics pass before this benchmark's optimisation (commit 5eb675e), for comparison:
    per chunk a fresh feature array from libm cos/sin, then dsyrk, Φᵀy and Φᵀ1 as separate passes;
    the Gram is mirrored at the end.  Returns the Gram matrix."""
    b = fmap.n_features
    gram, phi_y, phi_sum, y_sq, y_sum = np.zeros((b, b), order="F"), np.zeros(b), np.zeros(b), 0.0, 0.0
    for Xc, yc in iter_chunks(array_batches(X, y, chunk), chunk):
        Z = (Xc - fmap.input_offset) / fmap.input_scale
        phase = Z @ fmap.projection
        F = phase.shape[1]
        Phi = np.empty((Xc.shape[0], 2 * F))
        np.cos(phase, out=Phi[:, :F])
        np.sin(phase, out=Phi[:, F:])
        Phi *= fmap.amplitude
        gram = blas.dsyrk(1.0, Phi.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
        phi_y += Phi.T @ yc
        y_sq += float(yc @ yc)
        phi_sum += Phi.sum(axis=0)
        y_sum += float(yc.sum())
    upper = np.triu(gram)
    return upper + np.triu(upper, 1).T


def statistics_float32_sincos(
    fmap: FeatureMap, X: np.ndarray, y: np.ndarray, chunk: int
) -> SufficientStatistics:
    """The pass with numpy's SIMD float32 cos/sin instead of the float64 kernel (phase reduced to
    one turn in float64 first, blocks of rows as in the kernel, float64 accumulation): what a
    float32 shortcut would buy, and what it would cost in accuracy."""
    b, F = fmap.n_features, fmap.n_features // 2
    acc = np.zeros((b + 2, b + 2), order="F")
    buf = np.empty((chunk, b + 2))
    turns = fmap.projection / (2 * np.pi)
    rows = max(1, 16384 // F)
    u, t = np.empty((rows, F)), np.empty((rows, F))
    r32, v32 = np.empty((rows, F), dtype=np.float32), np.empty((rows, F), dtype=np.float32)
    magic = 1.5 * 2.0**52
    n = 0
    for Xc, yc in iter_chunks(array_batches(X, y, chunk), chunk):
        k = Xc.shape[0]
        B = buf[:k]
        Z = (Xc - fmap.input_offset) / fmap.input_scale
        for a0 in range(0, k, rows):
            m = min(rows, k - a0)
            ub, tb, rb, vb = u[:m], t[:m], r32[:m], v32[:m]
            np.matmul(Z[a0 : a0 + m], turns, out=ub)
            np.add(ub, magic, out=tb)
            tb -= magic
            ub -= tb  # phase − whole turns, in turns
            np.multiply(ub, 2 * np.pi, out=rb, casting="same_kind")
            np.cos(rb, out=vb)
            np.multiply(vb, fmap.amplitude, out=B[a0 : a0 + m, :F])
            np.sin(rb, out=vb)
            np.multiply(vb, fmap.amplitude, out=B[a0 : a0 + m, F:b])
        B[:, b] = yc
        B[:, b + 1] = 1.0
        acc = blas.dsyrk(1.0, B.T, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=1)
        n += k
    gram = np.triu(acc[:b, :b])
    gram = gram + np.triu(gram, 1).T
    return SufficientStatistics(
        n, gram, acc[:b, b].copy(), float(acc[b, b]), acc[:b, b + 1].copy(), float(acc[b, b + 1])
    )


def bench_statistics(cfg: dict) -> list[dict]:
    n, chunk = cfg["stats_n"], DEFAULT_CHUNK_ROWS
    X, y = synthetic(n, D_INPUTS, seed=1)
    rows = []
    for b in cfg["stats_b"]:
        fmap = rff_map(X, b)
        Phi = fmap.transform(X)
        fns = {
            "gram": lambda Phi=Phi: Phi.T @ Phi,
            "stats": lambda fmap=fmap: compute_statistics(fmap, array_batches(X, y, chunk), chunk),
            "stats_5eb675e": lambda fmap=fmap: statistics_as_in_5eb675e(fmap, X, y, chunk),
            "stats_f32": lambda fmap=fmap: statistics_float32_sincos(fmap, X, y, chunk),
        }
        # Feature time alone (same kernel, all rows), to split the pass into its two halves.
        out = np.empty((chunk, b))

        def features_only(fmap=fmap, out=out) -> None:
            kernel = _RffKernel(fmap)
            for start in range(0, n, chunk):
                rows = slice(start, min(start + chunk, n))
                fmap._transform_into(X[rows], out[: rows.stop - start], kernel, interleaved=True)

        fns["features_only"] = features_only
        best = interleaved_best(fns, cfg["stats_repeats"], cfg["pause_s"])

        # Accuracy: float64 statistics against the plain Gram of the precomputed basis, and the
        # float32-sin/cos variant against the float64 statistics.
        s64 = compute_statistics(fmap, array_batches(X, y, chunk), chunk)
        s32 = statistics_float32_sincos(fmap, X, y, chunk)
        G = Phi.T @ Phi
        row = {
            "b": b,
            "n": n,
            "chunk_rows": chunk,
            "seconds": {k: round(v, 4) for k, v in best.items()},
            "rows_per_s": {k: round(n / v) for k, v in best.items()},
            "ratio": best["gram"] / best["stats"],
            "ratio_5eb675e": best["gram"] / best["stats_5eb675e"],
            "ratio_f32": best["gram"] / best["stats_f32"],
            "feature_share": best["features_only"] / best["stats"],
            "gram_rel_diff_f64_vs_plain": rel_diff(s64.gram, G),
            "gram_rel_diff_f32_vs_f64": rel_diff(s32.gram, s64.gram),
            "gram_max_rel_diff_f32_vs_f64": float(np.max(np.abs(s32.gram - s64.gram)) / np.max(np.abs(G))),
            "phi_y_rel_diff_f32_vs_f64": rel_diff(s32.phi_y, s64.phi_y),
        }
        rows.append(row)
        log(
            f"  b={b:5d} n={n}: plain Gram {row['rows_per_s']['gram']:>9,} rows/s | statistics pass "
            f"{row['rows_per_s']['stats']:>9,} rows/s -> ratio {row['ratio']:.3f} (target >= 0.8) | "
            f"as in 5eb675e {row['ratio_5eb675e']:.3f} | float32 sin/cos {row['ratio_f32']:.3f} "
            f"(ΔG/G {row['gram_rel_diff_f32_vs_f64']:.1e}) | "
            f"features {100 * row['feature_share']:.0f}% of the pass"
        )
    return rows


# ---- 2. ELBO evaluation cost against n --------------------------------------------------------


def bench_elbo(cfg: dict) -> dict:
    b = cfg["elbo_b"]
    glms = {}
    for n in cfg["elbo_n"]:
        X, y = synthetic(n, D_INPUTS, seed=2)
        fmap = rff_map(X, b)
        t = time.perf_counter()
        stats = compute_statistics(fmap, array_batches(X, y, DEFAULT_CHUNK_ROWS)).standardised(
            y.mean(), y.std()
        )
        log(f"  statistics for n = {n:,}, b = {b}: {time.perf_counter() - t:.1f} s")
        glms[n] = DirectGLM(stats=stats, grid=WeightGrid.from_bits(4, 0.1))
        del X, y

    # Two operating points per n: the initial point (q at the prior) and the point reached by a
    # short fit (q concentrated, near-one-hot rows: where underflow could cost time).
    points = {}
    for n, glm in glms.items():
        points[(n, "initial")] = glm.initial_params()
        glm.fit(max_iter=60, stage_iter=40)
        points[(n, "fitted")] = glm.params.copy()
    calls = cfg["elbo_calls"]

    def timer(n: int, where: str) -> Callable[[], None]:
        glm, x = glms[n], points[(n, where)]

        def run() -> None:
            for _ in range(calls):
                glm.elbo_and_grad(x)

        return run

    fns = {f"{n}:{where}": timer(n, where) for (n, where) in points}
    n_small, n_large = cfg["elbo_n"]
    result = {"b": b, "m": 15, "calls_per_repeat": calls, "ms_per_call": {}, "ratio": {}}
    # BLAS threads as configured, and one thread (what DirectGLM.fit uses).
    for threads in ("default", "1"):
        if threads == "1":
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                best = interleaved_best(fns, cfg["elbo_repeats"], cfg["pause_s"])
        else:
            best = interleaved_best(fns, cfg["elbo_repeats"], cfg["pause_s"])
        for where in ("initial", "fitted"):
            small = best[f"{n_small}:{where}"] / calls
            large = best[f"{n_large}:{where}"] / calls
            key = f"{where}, BLAS threads {threads}"
            result["ms_per_call"][key] = {str(n_small): small * 1e3, str(n_large): large * 1e3}
            result["ratio"][key] = large / small
            log(
                f"  ELBO+gradient at b = {b}, {key}: n = {n_small:,} {small * 1e3:.3f} ms, "
                f"n = {n_large:,} {large * 1e3:.3f} ms -> ratio {large / small:.3f} (target <= 1.1)"
            )
    return result


# ---- 3. protein ---------------------------------------------------------------------------------


def load_uci(data_dir: Path, name: str, split: int = 0):
    folder = data_dir / name
    if not (folder / "data.csv.gz").exists():
        raise SystemExit(f"{folder / 'data.csv.gz'} not found: --data-dir must be the UCI folder")
    xy = np.loadtxt(folder / "data.csv.gz", delimiter=",")
    test = np.loadtxt(folder / "test_mask.csv.gz", delimiter=",", dtype=bool)[:, split]
    return xy[~test, :-1], xy[~test, -1], xy[test, :-1], xy[test, -1]


def gaussian_nlpd(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var))


class _FitTimer:
    """Times the regressor's statistics passes and its DirectGLM fits (outermost calls only) by
    wrapping them; restored on exit."""

    def __enter__(self) -> _FitTimer:
        self.stats_s, self.fits, self._depth = 0.0, [], 0
        self._compute = regressor_module.source_statistics
        self._fit = DirectGLM.fit
        timer = self

        def compute(*args, **kwargs):
            t = time.perf_counter()
            try:
                return timer._compute(*args, **kwargs)
            finally:
                timer.stats_s += time.perf_counter() - t

        def fit(glm, *args, **kwargs):
            timer._depth += 1
            t = time.perf_counter()
            try:
                return timer._fit(glm, *args, **kwargs)
            finally:
                timer._depth -= 1
                if timer._depth == 0:
                    timer.fits.append((time.perf_counter() - t, len(glm.trace_)))

        regressor_module.source_statistics = compute
        DirectGLM.fit = fit
        return self

    def __exit__(self, *exc) -> None:
        regressor_module.source_statistics = self._compute
        DirectGLM.fit = self._fit


def bench_protein(cfg: dict, data_dir: Path) -> dict:
    from sklearn.linear_model import BayesianRidge

    X_train, y_train, X_test, y_test = load_uci(data_dir, "protein")
    if cfg["fit_max_train"] is not None:
        X_train, y_train = X_train[: cfg["fit_max_train"]], y_train[: cfg["fit_max_train"]]
    log(f"  protein split 0: {len(y_train):,} train, {len(y_test):,} test rows, d = {X_train.shape[1]}")
    reg = DirectRegressor(
        features="rff", n_features=cfg["fit_features"], bits=4, family="mean-field", **cfg["fit_params"]
    )
    with _FitTimer() as timer:
        t = time.perf_counter()
        reg.fit(X_train, y_train)
        wall = time.perf_counter() - t
    fits = timer.fits
    final_fit_s, final_iter = fits[-1] if fits else (float("nan"), 0)
    selection_s = sum(s for s, _ in fits[:-1])
    mean, var = reg.predict_moments(X_test)
    samples = reg.sample(32, seed=0)
    direct = {
        "wall_s": wall,
        "statistics_s": timer.stats_s,
        "selection_fits_s": selection_s,
        "n_selection_fits": len(fits) - 1,
        "final_fit_s": final_fit_s,
        "other_s": wall - timer.stats_s - selection_s - final_fit_s,
        "final_fit_iterations": int(final_iter),
        "converged": bool(reg.converged_),
        "test_rmse": float(np.sqrt(np.mean((y_test - mean) ** 2))),
        "test_nlpd": gaussian_nlpd(y_test, mean, var),
        "sparsity_expected": float(reg.sparsity_),
        "sparsity_32_samples": float(samples.sparsity),
        "lengthscale": None if reg.lengthscale_ is None else float(np.mean(reg.lengthscale_)),
        "lengthscale_over_sqrt_d": None
        if reg.lengthscale_ is None
        else float(np.mean(reg.lengthscale_) / np.sqrt(X_train.shape[1])),
        "grid_scale": reg.grid_scale_,
        "prior_scale": reg.prior_scale_,
        "noise_sd": float(np.sqrt(reg.noise_variance_)),
        "elbo": reg.elbo_,
        "train_rmse": reg.train_rmse_,
    }
    log(
        f"  DIRECT 4-bit: wall {wall:.1f} s (statistics {timer.stats_s:.1f} s, {len(fits) - 1} selection "
        f"fits {selection_s:.1f} s, final fit {final_fit_s:.1f} s / {final_iter} iterations), "
        f"test RMSE {direct['test_rmse']:.4f}, NLPD {direct['test_nlpd']:.4f}, "
        f"sparsity {direct['sparsity_expected']:.3f} (32 samples: {direct['sparsity_32_samples']:.3f}), "
        f"lengthscale {direct['lengthscale_over_sqrt_d']}·sqrt(d), grid {reg.grid_scale_}·sd(y), "
        f"prior {reg.prior_scale_}·sd(y)"
    )

    t = time.perf_counter()
    Phi_train = reg.feature_map_.transform(X_train)
    Phi_test = reg.feature_map_.transform(X_test)
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    br = BayesianRidge().fit(Phi_train, y_train)
    br_fit_s = time.perf_counter() - t
    del Phi_train
    mean_br, std_br = br.predict(Phi_test, return_std=True)
    ridge = {
        "features_s": features_s,
        "fit_s": br_fit_s,
        "test_rmse": float(np.sqrt(np.mean((y_test - mean_br) ** 2))),
        "test_nlpd": gaussian_nlpd(y_test, mean_br, std_br**2),
        "noise_sd": float(1 / np.sqrt(br.alpha_)),
    }
    log(
        f"  BayesianRidge on the same features: fit {br_fit_s:.1f} s (+ features {features_s:.1f} s), "
        f"test RMSE {ridge['test_rmse']:.4f}, NLPD {ridge['test_nlpd']:.4f}"
    )
    return {
        "n_train": len(y_train),
        "n_test": len(y_test),
        "b": cfg["fit_features"],
        "direct": direct,
        "bayesian_ridge": ridge,
        "selection": reg.selection_,
    }


# ---- summary ------------------------------------------------------------------------------------


def summary_table(results: dict) -> str:
    """The targets as a markdown table (for docs/benchmarks.md)."""
    lines = ["| measurement | value | target | met |", "|---|---:|---:|:---:|"]
    for row in results.get("statistics", []):
        ok = "yes" if row["ratio"] >= 0.8 else "no"
        lines.append(
            f"| statistics pass / plain Gram throughput, b = {row['b']}, n = {row['n']:,} "
            f"(before: {row['ratio_5eb675e']:.2f}) | {row['ratio']:.2f} | >= 0.8 | {ok} |"
        )
    elbo = results.get("elbo")
    if elbo:
        n_small, n_large = (f"{int(k):,}" for k in next(iter(elbo["ms_per_call"].values())))
        for key, ratio in elbo["ratio"].items():
            ms = elbo["ms_per_call"][key]
            small, large = ms.values()
            lines.append(
                f"| ELBO+gradient time n = {n_large} / n = {n_small}, b = {elbo['b']}, {key} "
                f"({small:.3f} / {large:.3f} ms) | {ratio:.3f} | <= 1.1 | {'yes' if ratio <= 1.1 else 'no'} |"
            )
    fit = results.get("protein")
    if fit:
        d, r = fit["direct"], fit["bayesian_ridge"]
        lines.append(
            f"| protein fit wall time (statistics {d['statistics_s']:.1f} s, {d['n_selection_fits']} "
            f"selection fits {d['selection_fits_s']:.1f} s, final fit {d['final_fit_s']:.1f} s) "
            f"| {d['wall_s']:.1f} s | < 600 s | {'yes' if d['wall_s'] < 600 else 'no'} |"
        )
        for what in ("rmse", "nlpd"):
            lines.append(
                f"| protein test {what.upper()}: DIRECT 4-bit / BayesianRidge | "
                f"{d['test_' + what]:.4f} / {r['test_' + what]:.4f} | | |"
            )
        lines.append(
            f"| protein sparsity: expected / 32 samples | {d['sparsity_expected']:.3f} / "
            f"{d['sparsity_32_samples']:.3f} | | |"
        )
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="UCI folder (holds protein/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    parser.add_argument(
        "--parts", default="stats,elbo,fit", help="comma-separated subset of stats,elbo,fit (default: all)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"stats", "elbo", "fit"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")

    results: dict = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}
    results["machine"] = machine_info()
    results["load_average_start"] = load_average()
    m = results["machine"]
    log(
        f"machine: {m.get('cpu')}, {m['nproc']} CPUs, {m.get('memory_gib')} GiB; numpy {m['numpy']}, "
        f"scipy {m['scipy']}; load average {results['load_average_start']}"
    )
    start = time.perf_counter()
    if "stats" in parts:
        log("1. statistics pass against a plain Gram (best of interleaved repeats)")
        results["statistics"] = bench_statistics(cfg)
    if "elbo" in parts:
        log("2. ELBO + gradient cost against n")
        results["elbo"] = bench_elbo(cfg)
    if "fit" in parts:
        log("3. protein, split 0")
        results["protein"] = bench_protein(cfg, args.data_dir)
    results["total_s"] = time.perf_counter() - start
    results["load_average_end"] = load_average()
    log(f"done in {results['total_s']:.0f} s; load average {results['load_average_end']}")
    log("")
    log(summary_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
