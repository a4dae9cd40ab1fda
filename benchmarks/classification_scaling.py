"""How a classifier fit's cost grows with the number of rows n (docs/trainer.md §11).

Benchmark code, not part of the product.  A synthetic binary and a 10-class problem (d = 8 Gaussian
inputs, labels from a random rff function), b = 256 rff features, 4-bit grid; for each n in --rows:

- ``pass``: two passes over the rows in chunks of 50,000, one for ΦᵀΦ (once per fit) and one for
  Böhning's bound terms around the current logits (:func:`direct_edge.trainer.classification_elbo.
  quadratic_bound`, what each outer step pays): O(n·b²) and O(n·b·K);
- ``inner``: one evaluation of the quadratic bound's ELBO and gradient (``quadratic_elbo``), which the
  inner L-BFGS-B iterations call: O(K·b² + K·b·m) from the bound's terms, whatever n (median of 200);
- ``jensen``: one evaluation of the Jensen bound's ELBO and gradient (``exp_bound_elbo``, kind
  "jensen"), the default final bound: O(n·b·m·K) (median of 3; skipped above --jensen-max rows).

The ratio column divides each by its value at the smallest n.  Memory is bounded by the chunk (the rows
are generated chunk by chunk from a seed, never held whole).

    python benchmarks/classification_scaling.py --rows 1000 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from direct_edge.trainer import classification_elbo as C
from direct_edge.trainer.elbo import log_softmax
from direct_edge.trainer.features import FeatureMap
from direct_edge.trainer.grid import WeightGrid, prior_log_probs

D, B, CHUNK = 8, 256, 50_000


def chunks(n: int, K: int, seed: int = 0):
    """(X (k, D), labels (k,)) chunks of n synthetic rows: Gaussian inputs, labels the argmax of K random
    rff functions plus logistic noise (K = 1: the sign of one)."""
    truth = FeatureMap.rff(np.zeros(D), np.ones(D), 64, 1.5, seed + 1)
    w = np.random.default_rng(seed + 2).standard_normal((64, max(K, 2))) * 3.0
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, start])
        X = rng.standard_normal((min(CHUNK, n - start), D))
        z = truth.transform(X) @ w + rng.logistic(size=(len(X), w.shape[1]))
        yield X, (z[:, 1] > z[:, 0]).astype(np.int64) if K == 1 else np.argmax(z, axis=1)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(n: int, K: int, jensen_max: int) -> dict:
    fmap = FeatureMap.rff(np.zeros(D), np.ones(D), B, 2.0, 0)
    grid = WeightGrid.from_bits(4, 0.2)
    values = np.broadcast_to(grid.values, (B, grid.levels.size))
    log_prior = np.broadcast_to(
        prior_log_probs(grid.values, "gaussian", 1.0), (K, B, grid.levels.size)
    ).copy()
    theta = np.random.default_rng(3).standard_normal((K, B, grid.levels.size))
    s, v = C.weight_moments(values, np.exp(log_softmax(theta)))

    def one_pass():
        gram = np.zeros((B, B))
        for X, _ in chunks(n, K):  # ΦᵀΦ: once per fit (the statistics pass)
            Phi = fmap.transform(X)
            gram += Phi.T @ Phi
        blocks = ((fmap.transform(X), labels) for X, labels in chunks(n, K))  # per outer step
        return C.quadratic_bound("boehning", gram, blocks, s, v)

    start = time.perf_counter()
    bound = one_pass()
    pass_seconds = time.perf_counter() - start
    inner = median_seconds(lambda: C.quadratic_elbo(bound, theta, values, log_prior), 200)
    jensen = None
    if n <= jensen_max:
        Phi, labels = map(
            np.concatenate, zip(*((fmap.transform(X), y) for X, y in chunks(n, K)), strict=True)
        )
        jensen = median_seconds(lambda: C.exp_bound_elbo(Phi, labels, theta, values, log_prior, "jensen"), 3)
    return {"n": n, "K": K, "pass": pass_seconds, "inner": inner, "jensen": jensen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 10], help="logit rows K (1: binary)")
    parser.add_argument("--jensen-max", type=int, default=100_000)
    args = parser.parse_args()
    print("| K | n | pass (s) | inner (ms) | inner / smallest n | Jensen eval (s) | Jensen / smallest n |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for K in args.classes:
        first = None
        for n in sorted(args.rows):
            r = measure(n, K, args.jensen_max)
            first = first or r
            jensen = "—" if r["jensen"] is None else f"{r['jensen']:.3f}"
            ratio = "—" if r["jensen"] is None else f"{r['jensen'] / first['jensen']:.1f}"
            print(
                f"| {K} | {n:,} | {r['pass']:.2f} | {1e3 * r['inner']:.3f} | "
                f"{r['inner'] / first['inner']:.2f} | {jensen} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
