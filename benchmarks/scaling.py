"""Scaling benchmark: training time and memory against n, on "electric", with b fixed.

    python benchmarks/scaling.py [--features 512,2000] [--precision float64,float32]
                                 [--sizes 1e4,3e4,1e5,3e5,1e6,full] [--json scaling.json]
                                 [--figure docs/figures/scaling.png] [--quick]

Data: UCI household power ("electric", 2,075,259 rows, 11 inputs, target Global_active_power in kW)
from ``benchmarks/datasets.py: load_electric`` (``pip install 'direct-edge[bench]'``).  The rows are
shuffled once (seed 0) and written to one temporary ``.npy``; the run for size n memory-maps it and
streams its first n rows, so the data are file-backed pages, not the process's own memory.

Each (b, precision, n) runs in a fresh subprocess, which times, one after the other:

1. ``moments``: the pass over the data for the input and target standardisation;
2. ``statistics``: ``compute_statistics`` with an rff map (chunks of 4,096 rows, default threads);
3. ``fit``: one ``DirectGLM.fit`` (mean-field, ``init="auto"``, at most ``--max-iter`` L-BFGS-B
   iterations per start) with FIXED hyperparameters (no search): ℓ = 0.35·√d, Δ = 0.1·sd(y), Gaussian
   prior sd 0.5·sd(y), 4 bits, the regressor's noise grid.  This is what ``DirectRegressor`` does with
   all hyperparameters given.  Its wall time depends on how many iterations the optimiser needs (at
   small n it runs to the cap); the cost of one iteration, timed as 20 ELBO + gradient evaluations at
   the fitted q (one BLAS thread, best of 3), is what must not depend on n.

Memory: a sampler thread reads ``RssAnon`` (the process's own, anonymous memory; Linux) every 5 ms
during 2 and 3 and keeps the peak; ``ru_maxrss`` (which also counts the memory-mapped data pages the
pass has touched) is reported too.  Both are compared with the size of Φ (n·b·8 bytes), which is
never formed.

With both precisions at the largest n, the float32 statistics are compared with the float64 ones:
max relative error of ΦᵀΦ and Φᵀy, the ELBO of the float64 optimum scored with float32 statistics,
and the float32 fit continued from the float64 optimum (its predictive mean and variance on 20,000
rows against the float64 fit's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FULL_N = 2_075_259
LENGTHSCALE_FACTOR = 0.35  # × sqrt(d), standardised inputs (docs/trainer.md §9's second candidate)
GRID_SCALE = 0.1  # × sd(y)
PRIOR_SCALE = 0.5  # × sd(y)
SEED = 0
TARGETS_S = {512: 20.0, 2000: 90.0}  # statistics + fit on the full data (the scaling targets)


# ---- one configuration, in a child process -------------------------------------------------------


class PeakAnonMemory:
    """Peak of /proc/self/status RssAnon (bytes) sampled every ``interval`` s in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self) -> PeakAnonMemory:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (s).  Unlike wall time it does not grow
    when other jobs share the cores, so it shows how much of a slow run was contention."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_evaluations(glm, calls: int = 20, repeats: int = 3) -> float:
    """ms per ELBO + gradient evaluation at the fitted q, one BLAS thread as in the fit (best of
    ``repeats`` runs of ``calls``): the per-iteration cost, which must not depend on n."""
    from threadpoolctl import threadpool_limits

    best = float("inf")
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                glm.elbo_and_grad(glm.params)
            best = min(best, (time.perf_counter() - t0) / calls)
    return 1e3 * best


def run_child(args: argparse.Namespace) -> None:
    """Moments, statistics and one fit for one (b, precision, n); prints one JSON line."""
    from direct_edge.trainer import DirectGLM, FeatureMap, WeightGrid, noise_grid, prior_log_probs
    from direct_edge.trainer.features import InputMoments
    from direct_edge.trainer.statistics import array_batches, compute_statistics, default_threads

    data = np.load(args.data, mmap_mode="r")
    n, b = int(args.n), int(args.b)
    X, y = data[:n, :-1], data[:n, -1]
    d = X.shape[1]
    chunk = 4096

    baseline_anon = PeakAnonMemory.current()
    t0 = time.perf_counter()
    moments, y_moments = InputMoments(), InputMoments()
    for Xc, yc in array_batches(X, y, 65536):
        moments.update(Xc)
        y_moments.update(np.asarray(yc).reshape(-1, 1))
    offset, scale = moments.offset_and_scale()
    y_offset, y_scale = (float(v[0]) for v in y_moments.offset_and_scale())
    t_moments = time.perf_counter() - t0

    fmap = FeatureMap.rff(offset, scale, b, LENGTHSCALE_FACTOR * np.sqrt(d), SEED)
    with PeakAnonMemory() as mem_stats:
        t0, c0 = time.perf_counter(), cpu_seconds()
        raw = compute_statistics(fmap, array_batches(X, y, 65536), chunk, precision=args.precision)
        t_stats, c_stats = time.perf_counter() - t0, cpu_seconds() - c0
    stats = raw.standardised(y_offset, y_scale)
    grid = WeightGrid.from_bits(4, GRID_SCALE)
    log_prior = prior_log_probs(grid.values, "gaussian", PRIOR_SCALE)
    with PeakAnonMemory() as mem_fit:
        t0, c0 = time.perf_counter(), cpu_seconds()
        glm = DirectGLM(stats=stats, grid=grid, log_prior=log_prior, noise_grid=noise_grid())
        glm.fit(int(args.max_iter), init="auto")
        t_fit, c_fit = time.perf_counter() - t0, cpu_seconds() - c0
    eval_ms = time_evaluations(glm)
    mean_w, _ = glm.posterior().weight_moments()
    rmse = float(np.sqrt(max(stats.residual_sum_of_squares(mean_w), 0.0) / stats.n)) * y_scale
    if args.save:
        np.savez(
            args.save,
            gram=raw.gram,
            phi_y=raw.phi_y,
            phi_sum=raw.phi_sum,
            scalars=np.array([raw.n, raw.y_sq, raw.y_sum, y_offset, y_scale]),
            offset=offset,
            scale=scale,
            params=glm.params,
        )
    result = {
        "n": n,
        "b": b,
        "precision": args.precision,
        "threads": default_threads(),
        "moments_s": t_moments,
        "statistics_s": t_stats,
        "statistics_cpu_s": c_stats,
        "fit_s": t_fit,
        "fit_cpu_s": c_fit,
        "fit_iterations": int(glm.n_iter_),
        "elbo_eval_ms": eval_ms,
        "elbo": float(glm.elbo_),
        "train_rmse_kw": rmse,
        "baseline_anon_bytes": baseline_anon,
        "peak_anon_statistics_bytes": mem_stats.peak,
        "peak_anon_fit_bytes": mem_fit.peak,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "phi_bytes": n * b * 8,
        "data_bytes": int(X.shape[0]) * (d + 1) * 8,
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(result), flush=True)


# ---- float32 against float64 ---------------------------------------------------------------------


def compare_precisions(f64: Path, f32: Path, data: Path, b: int, max_iter: int) -> dict:
    """Errors of the float32 statistics (and of what they lead to) against the float64 ones."""
    from direct_edge.trainer import DirectGLM, FeatureMap, WeightGrid, noise_grid, prior_log_probs
    from direct_edge.trainer.statistics import SufficientStatistics

    def load(path: Path) -> tuple[SufficientStatistics, np.ndarray, dict]:
        z = np.load(path)
        n, y_sq, y_sum, y_offset, y_scale = z["scalars"]
        raw = SufficientStatistics(int(n), z["gram"], z["phi_y"], float(y_sq), z["phi_sum"], float(y_sum))
        return (
            raw,
            z["params"],
            {"y_offset": y_offset, "y_scale": y_scale, "offset": z["offset"], "scale": z["scale"]},
        )

    (r64, p64, m64), (r32, _, _) = load(f64), load(f32)
    s64 = r64.standardised(m64["y_offset"], m64["y_scale"])
    s32 = r32.standardised(m64["y_offset"], m64["y_scale"])
    grid = WeightGrid.from_bits(4, GRID_SCALE)
    log_prior = prior_log_probs(grid.values, "gaussian", PRIOR_SCALE)
    glm64 = DirectGLM(stats=s64, grid=grid, log_prior=log_prior, noise_grid=noise_grid())
    glm32 = DirectGLM(stats=s32, grid=grid, log_prior=log_prior, noise_grid=noise_grid())
    glm64.params = p64
    e64 = glm64.elbo()
    e32_same_q = glm32.elbo(p64)
    glm32.params = p64.copy()
    glm32.fit(max_iter, init="warm")
    X = np.load(data, mmap_mode="r")[:20_000, :-1]
    d = X.shape[1]
    fmap = FeatureMap.rff(m64["offset"], m64["scale"], b, LENGTHSCALE_FACTOR * np.sqrt(d), SEED)
    Phi = fmap.transform(np.asarray(X))
    (mu64, v64), (mu32, v32) = glm64.predict_moments(Phi), glm32.predict_moments(Phi)
    sd = float(m64["y_scale"])

    def rel(a: np.ndarray, ref: np.ndarray) -> float:
        return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))

    return {
        "b": b,
        "n": r64.n,
        "gram_max_rel_error": rel(r32.gram, r64.gram),
        "phi_y_max_rel_error_standardised": rel(s32.phi_y, s64.phi_y),
        "phi_sum_max_rel_error": rel(r32.phi_sum, r64.phi_sum),
        "elbo_float64": e64,
        "elbo_same_q_float32_minus_float64": e32_same_q - e64,
        "elbo_after_warm_fit_float32_minus_float64": float(glm32.elbo_) - e64,
        "warm_fit_iterations": int(glm32.n_iter_),
        "pred_mean_max_abs_diff_kw": float(np.max(np.abs(mu32 - mu64))) * sd,
        "pred_sd_max_rel_diff": float(np.max(np.abs(np.sqrt(v32 / v64) - 1.0))),
        "y_sd_kw": sd,
    }


# ---- the driver ----------------------------------------------------------------------------------


def write_data(path: Path, quick: bool) -> int:
    """The electric rows, shuffled (seed 0), as one (N, 12) float64 .npy (target last)."""
    from datasets import load_electric

    X, y = load_electric()
    order = np.random.default_rng(SEED).permutation(len(y))
    if quick:
        order = order[:200_000]
    np.save(path, np.column_stack([X[order], y[order]]))
    return len(order)


def parse_sizes(text: str, n_max: int) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip()
        sizes.append(n_max if part == "full" else min(int(float(part)), n_max))
    return sorted(set(sizes))


def in_child(args: list[str]) -> str:
    """Run this script with ``args`` in a fresh Python process; its last line of output."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def child_command(data: Path, b: int, precision: str, n: int, max_iter: int, save: Path | None) -> list[str]:
    cmd = ["--child", "--data", str(data)]
    cmd += ["--b", str(b), "--precision-one", precision, "--n", str(n), "--max-iter", str(max_iter)]
    return cmd + (["--save", str(save)] if save else [])


def peak_own(row: dict) -> int:
    """Peak anonymous memory (bytes) over the statistics pass and the fit."""
    return max(row["peak_anon_statistics_bytes"], row["peak_anon_fit_bytes"])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| n | b | precision | moments (s) | statistics (s) | statistics CPU (s) | fit (s) | iterations "
        "| ms / ELBO+gradient "
        "| statistics + fit (s) "
        "| own memory before (MiB) | peak own memory (MiB) | ru_maxrss (MiB) | Φ would be (GiB) |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['b']} | {r['precision']} | {r['moments_s']:.2f} | {r['statistics_s']:.2f} "
            f"| {r['statistics_cpu_s']:.1f} "
            f"| {r['fit_s']:.2f} | {r['fit_iterations']} | {r['elbo_eval_ms']:.2f} "
            f"| {r['statistics_s'] + r['fit_s']:.1f} "
            f"| {r['baseline_anon_bytes'] / 2**20:.0f} | {peak_own(r) / 2**20:.0f} "
            f"| {r['ru_maxrss_bytes'] / 2**20:.0f} | {r['phi_bytes'] / 2**30:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_s, ax_f, ax_m = fig.subplots(1, 3)
    keys = sorted({(r["b"], r["precision"]) for r in rows})
    for b, prec in keys:
        rs = sorted((r for r in rows if r["b"] == b and r["precision"] == prec), key=lambda r: r["n"])
        n = np.array([r["n"] for r in rs])
        color = (
            f"C{sorted({r['b'] for r in rows}).index(b)}"  # one colour per b, one line style per precision
        )
        style = {
            "marker": "o",
            "color": color,
            "ls": "-" if prec == "float64" else "--",
            "label": f"b = {b}, {prec}",
        }
        ax_s.plot(n, [r["statistics_s"] for r in rs], **style)
        ax_f.plot(n, [r["elbo_eval_ms"] for r in rs], **style)
        peak = [peak_own(r) / 2**20 for r in rs]
        ax_m.plot(n, peak, **style)
    for b in sorted({r["b"] for r in rows}):
        n = np.array(sorted({r["n"] for r in rows}))
        ax_m.plot(n, n * b * 8 / 2**20, ":", color="gray", lw=1)
        ax_m.annotate(
            f"size of Φ, b = {b}", (n[-1], n[-1] * b * 8 / 2**20), fontsize=7, ha="right", va="bottom"
        )
    for b, target in TARGETS_S.items():
        if any(r["b"] == b for r in rows):
            ax_s.axhline(target, color="gray", lw=0.6, ls=":")
    ax_s.set(xscale="log", yscale="log", xlabel="rows n", ylabel="seconds", title="statistics pass (∝ n)")
    ax_f.set(
        xscale="log",
        yscale="log",
        xlabel="rows n",
        ylabel="ms per ELBO + gradient",
        title="fit: cost per iteration (independent of n)",
    )
    ax_m.set(xscale="log", yscale="log", xlabel="rows n", ylabel="MiB", title="peak own memory vs size of Φ")
    ax_s.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", default="512,2000", help="comma-separated b values")
    ap.add_argument("--precision", default="float64,float32", help="comma-separated precisions")
    ap.add_argument("--sizes", default="1e4,3e4,1e5,3e5,1e6,full")
    ap.add_argument("--max-iter", type=int, default=2000, help="L-BFGS-B iterations per start of the fit")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--figure", help="write the PNG figure here")
    ap.add_argument("--quick", action="store_true", help="200,000 rows, small b: a smoke run")
    # Internal: one configuration in a child process.
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--b", help=argparse.SUPPRESS)
    ap.add_argument("--n", help=argparse.SUPPRESS)
    ap.add_argument("--precision-one", dest="precision_one", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument("--write-data", dest="write_data", help=argparse.SUPPRESS)
    ap.add_argument("--compare", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.precision = args.precision_one
        run_child(args)
        return
    if args.write_data:
        print(write_data(Path(args.write_data), args.quick))
        return
    if args.compare:
        f64, f32 = (Path(p) for p in args.compare)
        print(json.dumps(compare_precisions(f64, f32, Path(args.data), int(args.b), args.max_iter)))
        return

    from trainer_benchmark import machine_info

    bs = [int(v) for v in args.features.split(",")]
    precisions = [p.strip() for p in args.precision.split(",")]
    if args.quick:
        bs, args.sizes, args.max_iter = [64, 128], "1e4,3e4,1e5,full", 200
    info = machine_info()
    info["load_average_start"] = list(os.getloadavg())
    print(json.dumps(info, indent=1), flush=True)
    started = time.perf_counter()
    rows, comparisons = [], []
    with tempfile.TemporaryDirectory(prefix="direct-scaling-") as tmp:
        data = Path(tmp) / "electric-shuffled.npy"
        # Children do the heavy lifting: a child's ru_maxrss starts at its parent's peak (Linux keeps the
        # high-water mark across fork and exec), so this process never holds the data itself.
        n_max = int(in_child(["--write-data", str(data)] + (["--quick"] if args.quick else [])))
        sizes = parse_sizes(args.sizes, n_max)
        for b in bs:
            saved = {}
            for n in sizes:
                for prec in precisions:
                    save = Path(tmp) / f"stats-{b}-{prec}.npz" if n == sizes[-1] else None
                    row = json.loads(in_child(child_command(data, b, prec, n, args.max_iter, save)))
                    rows.append(row)
                    if save:
                        saved[prec] = save
                    print(
                        f"b={b:5d} n={n:9,d} {prec}: moments {row['moments_s']:6.2f} s, "
                        f"statistics {row['statistics_s']:7.2f} s ({row['statistics_cpu_s']:.1f} CPU s), "
                        f"fit {row['fit_s']:6.2f} s "
                        f"({row['fit_iterations']} it), peak own memory "
                        f"{peak_own(row) / 2**20:.0f} MiB, "
                        f"load {row['load_average'][0]:.2f}",
                        flush=True,
                    )
            if {"float64", "float32"} <= saved.keys():
                compare = ["--compare", str(saved["float64"]), str(saved["float32"]), "--data", str(data)]
                comp = json.loads(in_child(compare + ["--b", str(b), "--max-iter", str(args.max_iter)]))
                comparisons.append(comp)
                print(json.dumps(comp, indent=1), flush=True)
    info["load_average_end"] = list(os.getloadavg())
    info["wall_s"] = time.perf_counter() - started
    print()
    print(markdown_table(rows))
    for b in bs:
        for prec in precisions:
            full = [r for r in rows if r["b"] == b and r["precision"] == prec and r["n"] == max(sizes)]
            if full and b in TARGETS_S:
                total = full[0]["statistics_s"] + full[0]["fit_s"]
                print(
                    f"b = {b}, {prec}: statistics + fit {total:.1f} s at n = {full[0]['n']:,} "
                    f"(target {TARGETS_S[b]:.0f} s)"
                )
    print(f"load average {info['load_average_start']} at the start, {info['load_average_end']} at the end")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "rows": rows, "float32_vs_float64": comparisons}, indent=1)
        )
    if args.figure:
        plot(rows, Path(args.figure))


if __name__ == "__main__":
    main()
