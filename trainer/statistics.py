"""Sufficient statistics: the only way data enter a DIRECT fit (docs/trainer.md §4).

One streaming pass over (X, y) chunks accumulates, in float64,

    n, G = ΦᵀΦ (b, b), h = Φᵀy (b,), c = yᵀy, Φᵀ1 (b,), Σy

Peak memory is O(b² + chunk·b).  Statistics of disjoint row sets add up (``a + b``), so they can be
computed anywhere and merged.  Φᵀ1 and Σy let the target be centred and scaled afterwards
(:meth:`SufficientStatistics.standardised`) without a second pass.

The target sums are kept in the units u = (y − c) / k, with c and k the mean and the largest
deviation of the first chunk a worker sees (h = Φᵀu, uᵀu and Σu): raw sums of a target with a large
offset (timestamps, prices in cents, altitudes) would cancel catastrophically when centred, so that
y + 10⁹ would fit another model than y, and raw squares of a target near 1e160 or 1e-170 overflow or
underflow.  In these units centring and scaling lose nothing (docs/trainer.md §4).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from direct_edge.trainer.blas import one_blas_thread
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, _RffKernel
from direct_edge.trainer.tables import rechunk

DEFAULT_CHUNK_ROWS = 4096
PRECISIONS = ("float64", "float32")
# Worker threads of a pass by default: each holds a (b + 2)² float64 accumulator (32 MB at b = 2000).
MAX_THREADS = 8


@dataclass
class SufficientStatistics:
    """Statistics of a Gaussian GLM over a set of rows.

    The target sums are of u = (y − ``y_shift``) / ``y_unit`` (module docstring): ``gram``: (b, b)
    ΦᵀΦ; ``phi_y``: (b,) Φᵀu; ``y_sq``: uᵀu; ``phi_sum``: (b,) Φᵀ1; ``y_sum``: Σu; ``n``: number
    of rows.  All float64.  With the defaults (shift 0, unit 1) they are sums of y itself, as for
    :meth:`standardised` statistics, which is what the ELBO takes.
    """

    n: int
    gram: np.ndarray
    phi_y: np.ndarray
    y_sq: float
    phi_sum: np.ndarray
    y_sum: float
    y_shift: float = 0.0
    y_unit: float = 1.0

    @classmethod
    def from_basis(
        cls, Phi: np.ndarray, y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> SufficientStatistics:
        """Statistics of a given basis ``Phi``: (n, b) (array or memory map) and target ``y``: (n,)."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if Phi.ndim != 2 or Phi.shape[0] != y.shape[0]:
            raise DataError(f"Phi must be (n, b) with n = len(y); got {Phi.shape} and {y.shape}")
        return _statistics_pass(Phi.shape[1], array_batches(Phi, y, chunk_rows), _copy_into)

    @property
    def n_features(self) -> int:
        return int(self.phi_y.shape[0])

    def rotated(self, rotation: np.ndarray) -> SufficientStatistics:
        """The statistics of the rotated features ΦV (``rotation`` V: (b, b)): VᵀΦᵀΦV, VᵀΦᵀu and
        VᵀΦᵀ1, the target sums unchanged (docs/trainer.md §4).  O(b³), no pass over the rows."""
        V = np.asarray(rotation, dtype=np.float64)
        gram = V.T @ self.gram @ V
        return replace(self, gram=0.5 * (gram + gram.T), phi_y=V.T @ self.phi_y, phi_sum=V.T @ self.phi_sum)

    @property
    def y_mean(self) -> float:
        return self.y_shift + self.y_unit * (self.y_sum / self.n)

    @property
    def y_sd(self) -> float:
        """Population standard deviation of y over the rows (0 for a constant target)."""
        centre = self.y_sum / self.n
        return self.y_unit * float(np.sqrt(max(self.y_sq / self.n - centre * centre, 0.0)))

    @property
    def y_var(self) -> float:
        """Population variance of y over the rows (0 for a constant target)."""
        return self.y_sd**2

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        if not isinstance(other, SufficientStatistics):
            return NotImplemented
        if other.n_features != self.n_features:
            raise DataError("cannot merge statistics of different feature maps")
        other = other.in_units(self.y_shift, self.y_unit)
        return SufficientStatistics(
            self.n + other.n,
            self.gram + other.gram,
            self.phi_y + other.phi_y,
            self.y_sq + other.y_sq,
            self.phi_sum + other.phi_sum,
            self.y_sum + other.y_sum,
            self.y_shift,
            self.y_unit,
        )

    def in_units(self, y_shift: float, y_unit: float) -> SufficientStatistics:
        """The same statistics with the target sums of u' = (y − ``y_shift``) / ``y_unit`` (exact
        algebra: u' = a·u + δ with a = k/k', δ = (c − c')/k')."""
        c, k = float(y_shift), float(y_unit)
        if c == self.y_shift and k == self.y_unit:
            return self
        a, delta = self.y_unit / k, self.y_shift / k - c / k  # no overflow near ±1.7e308
        return SufficientStatistics(
            self.n,
            self.gram,
            a * self.phi_y + delta * self.phi_sum,
            a * a * self.y_sq + 2.0 * a * delta * self.y_sum + self.n * delta * delta,
            self.phi_sum,
            a * self.y_sum + self.n * delta,
            c,
            k,
        )

    def standardised(self, y_offset: float, y_scale: float) -> SufficientStatistics:
        """Statistics of the target (y − y_offset) / y_scale, as sums of that target itself (shift 0,
        unit 1).  Exact algebra; with ``y_offset`` near the mean nothing cancels, as the sums are
        kept in units near the data's own."""
        own = self.in_units(y_offset, y_scale)
        return SufficientStatistics(self.n, self.gram, own.phi_y, own.y_sq, self.phi_sum, own.y_sum)

    def residual_sum_of_squares(self, w: np.ndarray) -> float:
        """‖y − Φw‖² for weights ``w``: (b,), without touching the data."""
        w = np.asarray(w, dtype=np.float64)
        own = self.in_units(0.0, 1.0)
        return float(own.y_sq - 2.0 * w @ own.phi_y + w @ (self.gram @ w))


def check_memory_for(n_features: int, copies: int = 4) -> None:
    """Raise DataError when ``copies`` float64 (b, b) matrices do not fit in the available memory.

    A fit holds the Gram matrix a few times (accumulator, symmetric copy, problem); checking before
    allocating turns an out-of-memory crash into a clear message.
    """
    need = copies * 8 * int(n_features) ** 2
    try:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > avail:
        raise DataError(
            f"{n_features} features need about {need / 2**30:.1f} GiB for the Gram matrix but only "
            f"{avail / 2**30:.1f} GiB is available; use fewer features"
        )


def gram_eigenbasis(stats: SufficientStatistics) -> np.ndarray:
    """Orthonormal eigenvectors V (b, b) of ``stats.gram`` ΦᵀΦ, columns by decreasing eigenvalue, each
    signed so that its largest-magnitude entry is positive (eigh's signs are arbitrary; this makes the
    basis a function of the Gram matrix alone).  ΦV are the rotated features of docs/trainer.md §3,
    whose Gram matrix is diagonal.  O(b³)."""
    _, V = np.linalg.eigh(0.5 * (stats.gram + stats.gram.T))
    V = np.ascontiguousarray(V[:, ::-1])
    top = V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])]
    return V * np.where(top < 0, -1.0, 1.0)


def iter_chunks(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-cut an iterable of (X, y) batches into chunks of at most ``chunk_rows`` rows."""
    return rechunk((_checked_batch(X, y) for X, y in batches), chunk_rows)


def _checked_batch(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise DataError(f"each batch must be (X: (k, d), y: (k,)); got {X.shape} and {y.shape}")
    return X, y


def compute_statistics(
    feature_map: FeatureMap,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
    total_rows: int | None = None,
    precision: str = "float64",
    threads: int | None = None,
) -> SufficientStatistics:
    """One streaming pass: features of each chunk, then rank-k updates of the statistics.

    ``batches``: iterable of (X: (k, d), y: (k,)) in raw input units (arrays, memory maps, chunks
    of a CSV or Parquet file, ...).  ``progress`` shows a tqdm bar over rows.
    ``precision``: "float64" (default) or "float32" (docs/trainer.md §4: float32 features and a
    float32 Gram update per chunk, summed in float64; about 2× faster, ΦᵀΦ within ~1e-7 relative).
    ``threads``: worker threads, each with its own accumulator and one BLAS thread; None = the
    usable cores, at most :data:`MAX_THREADS`.  Returns float64 statistics of the raw target.

    float64: each chunk's features are written into one reused (chunk, b + 2) buffer whose last
    two columns hold y and 1, so a single symmetric rank-k update of a (b + 2)² accumulator yields
    ΦᵀΦ, Φᵀy, Φᵀ1, yᵀy and Σy together (no separate passes over Φ, no allocation per chunk).
    rff features are written as (cos_j, sin_j) pairs (the fast sin/cos kernel's natural layout)
    and the statistics are permuted back to the feature map's order at the end.
    """
    if precision not in PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if feature_map.rotation is not None:
        stats = compute_statistics(
            feature_map.unrotated(), batches, chunk_rows, progress, total_rows, precision, threads
        )
        return stats.rotated(feature_map.rotation)
    kernel = _RffKernel(feature_map) if feature_map.kind == "rff" else None
    rff = feature_map.kind == "rff"

    def features(X: np.ndarray, out: np.ndarray) -> None:
        feature_map._transform_into(X, out, kernel, interleaved=True)

    def features_float32(X: np.ndarray, out: np.ndarray) -> None:
        Z = feature_map.standardise(X)
        if rff:
            kernel.unit_features_float32(Z, out)
        else:
            out[:, :-1] = Z
            out[:, -1] = 1.0

    b = feature_map.n_features
    fill = features_float32 if precision == "float32" else features
    chunks = iter_chunks(batches, chunk_rows)
    stats = _statistics_pass(b, chunks, fill, progress, total_rows, precision, threads)
    if rff and precision == "float64":
        # Interleaved index 2j + p (p = 0: cos, 1: sin) -> the map's index p·F + j.
        F = b // 2
        stats.gram = np.ascontiguousarray(stats.gram.reshape(F, 2, F, 2).transpose(1, 0, 3, 2)).reshape(b, b)
        stats.phi_y = stats.phi_y.reshape(F, 2).T.ravel()
        stats.phi_sum = stats.phi_sum.reshape(F, 2).T.ravel()
    elif rff:
        # The float32 kernel leaves out the amplitude A; scaling the float64 sums costs one rounding.
        a = float(feature_map.amplitude)
        stats.gram *= a * a
        stats.phi_y *= a
        stats.phi_sum *= a
    return stats


def _copy_into(Phi: np.ndarray, out: np.ndarray) -> None:
    out[...] = Phi


def default_threads() -> int:
    """Worker threads for a statistics pass: the usable cores, at most :data:`MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class _Accumulator:
    """One worker's running sums over the chunks it is given (docs/trainer.md §4).

    Each chunk's features go into one reused (chunk, b + 2) buffer whose last two columns hold the
    target and 1, so one symmetric rank-k product BᵀB per chunk yields ΦᵀΦ, Φᵀy, Φᵀ1, yᵀy and Σy.
    numpy's ``B.T @ B`` is that product: numpy recognises the transposed operand and calls BLAS
    syrk (half the flops of a general product), and, unlike ``scipy.linalg.blas.dsyrk``, it
    releases the GIL, so worker threads run their products in parallel.  The product is added
    into a float64 (b + 2)² accumulator.

    The target column holds u = (y − c) / k, with c and k the mean and the largest deviation of the
    first chunk this worker sees (module docstring).

    float32: the buffer and the product are float32, so float32 sums never run over more than one
    chunk.  The target column holds the chunk's target in the chunk's own units, (y − c_j) / k_j:
    Φᵀu is recovered per chunk as (k_j/k)·Φᵀ((y − c_j)/k_j) + ((c_j − c)/k)·Φᵀ1 in float64, so a
    target with a large offset loses nothing to float32 and the float32 sums do not depend on how
    chunks are grouped; uᵀu and Σu are summed in float64.
    """

    def __init__(self, b: int, fill: Callable[[np.ndarray, np.ndarray], None], precision: str) -> None:
        self.b, self.fill, self.float32 = b, fill, precision == "float32"
        self.dtype = np.float32 if self.float32 else np.float64
        self.acc = np.zeros((b + 2, b + 2))
        self.part = np.empty((b + 2, b + 2), dtype=self.dtype)
        self.buf: np.ndarray | None = None
        self.n = 0
        self.phi_y = np.zeros(b)  # float32 path only: Φᵀu, summed in float64 over chunks
        self.y_sq = 0.0
        self.y_sum = 0.0
        self.y_shift: float | None = None  # c and k, set by the first chunk
        self.y_unit = 1.0

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        k, b = int(X.shape[0]), self.b
        if k == 0:
            return
        if self.buf is None or self.buf.shape[0] < k:
            self.buf = np.empty((k, b + 2), dtype=self.dtype)
        B = self.buf[:k]
        self.fill(X, B[:, :b])
        B[:, b + 1] = 1.0
        self.n += k
        y = np.asarray(y, dtype=np.float64)
        if self.y_shift is None:
            self.y_shift, self.y_unit = target_units(y)
        u = y / self.y_unit - self.y_shift / self.y_unit  # never overflows, unlike y − c near ±1.7e308
        if not self.float32:
            B[:, b] = u
            np.matmul(B.T, B, out=self.part)  # syrk; the result is exactly symmetric
            self.acc += self.part
            return
        self.y_sq += float(u @ u)
        self.y_sum += float(np.sum(u))
        # The float32 column is the chunk in its own units, so the float32 sums depend on the chunk
        # alone (not on which worker or partition it went to); Φᵀu follows in float64.
        c_chunk, k_chunk = target_units(y)
        np.subtract(y / k_chunk, c_chunk / k_chunk, out=B[:, b], casting="same_kind")
        np.matmul(B.T, B, out=self.part)
        self.acc += self.part
        a, delta = k_chunk / self.y_unit, (c_chunk - self.y_shift) / self.y_unit
        self.phi_y += a * self.part[:b, b].astype(np.float64) + delta * self.part[:b, b + 1].astype(
            np.float64
        )

    def statistics(self) -> SufficientStatistics:
        """The float64 statistics of every row added."""
        b, acc = self.b, self.acc
        gram = acc[:b, :b].copy()  # a sum of exactly symmetric products: exactly symmetric
        phi_sum = acc[:b, b + 1].copy()
        units = (0.0 if self.y_shift is None else self.y_shift, self.y_unit)
        if not self.float32:
            return SufficientStatistics(
                self.n, gram, acc[:b, b].copy(), float(acc[b, b]), phi_sum, float(acc[b, b + 1]), *units
            )
        return SufficientStatistics(self.n, gram, self.phi_y.copy(), self.y_sq, phi_sum, self.y_sum, *units)


def target_units(y: np.ndarray) -> tuple[float, float]:
    """(c, k) for the target sums (module docstring): the mean of ``y`` and its largest deviation
    from it, both computed in units of max |y| so that neither overflows; k = 1 when all are equal."""
    top = float(np.max(np.abs(y)))
    if not np.isfinite(top) or top == 0.0:
        return 0.0, 1.0
    z = y / top
    mean_z = float(np.mean(z))
    spread = float(np.max(np.abs(z - mean_z)))
    return mean_z * top, (spread * top) if spread > 0.0 else 1.0


def _statistics_pass(
    b: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    fill: Callable[[np.ndarray, np.ndarray], None],
    progress: bool = False,
    total_rows: int | None = None,
    precision: str = "float64",
    threads: int | None = None,
) -> SufficientStatistics:
    """The accumulation shared by every statistics pass.

    ``fill(X, out)`` writes a chunk's b features into ``out`` (k, b) (float64, or float32 for
    ``precision="float32"``).  With more than one thread, chunk i goes to worker i mod W (each
    worker: features, then a one-thread BLAS rank-k update into its own accumulator; numpy and the
    BLAS release the GIL, so W cores stay busy without OpenBLAS's spinning worker threads), and
    the W accumulators are added in order at the end: the result is the same on every run with
    the same ``threads``.
    """
    workers = default_threads() if threads is None else max(1, int(threads))
    accs = [_Accumulator(b, fill, precision) for _ in range(workers)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_rows, unit="rows", desc="statistics", leave=False)
    # One BLAS thread per worker, also with one worker: a product split over BLAS threads sums in
    # another order, so the statistics would depend on the machine's thread count (trainer/blas.py).
    try:
        with one_blas_thread():
            if workers == 1:
                for X, y in chunks:
                    accs[0].add(X, y)
                    if bar is not None:
                        bar.update(int(X.shape[0]))
            else:
                _run_workers(chunks, accs, bar)
    finally:
        if bar is not None:
            bar.close()
    stats = accs[0].statistics()
    for acc in accs[1:]:
        if acc.n:
            stats = stats + acc.statistics()
    return stats


def _run_workers(chunks: Iterable[tuple[np.ndarray, np.ndarray]], accs: list[_Accumulator], bar) -> None:
    """Feed chunk i to ``accs[i % W]``, each in its own thread; re-raise the first worker error."""
    queues = [queue.Queue(maxsize=2) for _ in accs]
    failed: list[BaseException] = []

    def work(acc: _Accumulator, q: queue.Queue) -> None:
        while (item := q.get()) is not None:
            if failed:
                continue  # drain, so the reader never blocks on a full queue
            try:
                acc.add(*item)
            except BaseException as exc:  # handed to the calling thread below
                failed.append(exc)

    pool = [
        threading.Thread(target=work, args=(a, q), daemon=True) for a, q in zip(accs, queues, strict=True)
    ]
    for t in pool:
        t.start()
    try:
        for i, (X, y) in enumerate(chunks):
            if failed:
                break
            queues[i % len(accs)].put((X, y))
            if bar is not None:
                bar.update(int(X.shape[0]))
    finally:
        for q in queues:
            q.put(None)
        for t in pool:
            t.join()
    if failed:
        raise failed[0]


def array_batches(
    X: np.ndarray, y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) chunks of in-memory or memory-mapped arrays, read one chunk at a time."""
    return rechunk([(X, y)], chunk_rows)
