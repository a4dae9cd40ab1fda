"""Sufficient statistics: the only way data enter a DIRECT fit (docs/trainer.md §4).

One streaming pass over (X, y) chunks accumulates, in float64,

    n, G = ΦᵀΦ (b, b), h = Φᵀy (b,), c = yᵀy, Φᵀ1 (b,), Σy

Peak memory is O(b² + chunk·b).  Statistics of disjoint row sets add up (``a + b``), so they can be
computed anywhere and merged.  Φᵀ1 and Σy let the target be centred and scaled afterwards
(:meth:`SufficientStatistics.standardised`) without a second pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from direct_edge.trainer.errors import DataError
from direct_edge.trainer.features import FeatureMap, _RffKernel

DEFAULT_CHUNK_ROWS = 4096


@dataclass
class SufficientStatistics:
    """Statistics of a Gaussian GLM over a set of rows.

    ``gram``: (b, b) ΦᵀΦ; ``phi_y``: (b,) Φᵀy; ``y_sq``: yᵀy; ``phi_sum``: (b,) Φᵀ1;
    ``y_sum``: Σy; ``n``: number of rows.  All float64.
    """

    n: int
    gram: np.ndarray
    phi_y: np.ndarray
    y_sq: float
    phi_sum: np.ndarray
    y_sum: float

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

    @property
    def y_mean(self) -> float:
        return self.y_sum / self.n

    @property
    def y_var(self) -> float:
        """Population variance of y over the rows (0 for a constant target)."""
        return max(self.y_sq / self.n - self.y_mean**2, 0.0)

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        if not isinstance(other, SufficientStatistics):
            return NotImplemented
        if other.n_features != self.n_features:
            raise DataError("cannot merge statistics of different feature maps")
        return SufficientStatistics(
            self.n + other.n,
            self.gram + other.gram,
            self.phi_y + other.phi_y,
            self.y_sq + other.y_sq,
            self.phi_sum + other.phi_sum,
            self.y_sum + other.y_sum,
        )

    def standardised(self, y_offset: float, y_scale: float) -> SufficientStatistics:
        """Statistics of the target (y − y_offset) / y_scale, from the raw ones (exact algebra)."""
        mu, s = float(y_offset), float(y_scale)
        phi_y = (self.phi_y - mu * self.phi_sum) / s
        y_sq = (self.y_sq - 2.0 * mu * self.y_sum + self.n * mu * mu) / (s * s)
        y_sum = (self.y_sum - self.n * mu) / s
        return SufficientStatistics(self.n, self.gram, phi_y, y_sq, self.phi_sum, y_sum)

    def residual_sum_of_squares(self, w: np.ndarray) -> float:
        """‖y − Φw‖² for weights ``w``: (b,), without touching the data."""
        w = np.asarray(w, dtype=np.float64)
        return float(self.y_sq - 2.0 * w @ self.phi_y + w @ (self.gram @ w))


def check_memory_for(n_features: int, copies: int = 4) -> None:
    """Raise DataError when ``copies`` float64 (b, b) matrices do not fit in the available memory.

    A fit holds the Gram matrix a few times (accumulator, symmetric copy, problem); checking before
    allocating turns an out-of-memory crash into a clear message.
    """
    import os

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


def iter_chunks(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], chunk_rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-cut an iterable of (X, y) batches into chunks of at most ``chunk_rows`` rows."""
    for X, y in batches:
        X = np.asarray(X)
        y = np.asarray(y).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise DataError(f"each batch must be (X: (k, d), y: (k,)); got {X.shape} and {y.shape}")
        for start in range(0, X.shape[0], chunk_rows):
            yield X[start : start + chunk_rows], y[start : start + chunk_rows]


def compute_statistics(
    feature_map: FeatureMap,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
    total_rows: int | None = None,
) -> SufficientStatistics:
    """One streaming pass: features of each chunk, then rank-k updates of the statistics.

    ``batches``: iterable of (X: (k, d), y: (k,)) in raw input units (arrays, memory maps, chunks
    of a CSV or Parquet file, ...).  ``progress`` shows a tqdm bar over rows.
    Returns float64 statistics of the raw target.

    Each chunk's features are written into one reused (chunk, b + 2) buffer whose last two
    columns hold y and 1, so a single symmetric rank-k update of a (b + 2)² accumulator yields
    ΦᵀΦ, Φᵀy, Φᵀ1, yᵀy and Σy together (no separate passes over Φ, no allocation per chunk).
    rff features are written as (cos_j, sin_j) pairs (the fast sin/cos kernel's natural layout)
    and the statistics are permuted back to the feature map's order at the end.
    """
    kernel = _RffKernel(feature_map) if feature_map.kind == "rff" else None

    def features(X: np.ndarray, out: np.ndarray) -> None:
        feature_map._transform_into(X, out, kernel, interleaved=True)

    b = feature_map.n_features
    stats = _statistics_pass(b, iter_chunks(batches, chunk_rows), features, progress, total_rows)
    if feature_map.kind == "rff":
        # Interleaved index 2j + p (p = 0: cos, 1: sin) -> the map's index p·F + j.
        F = b // 2
        stats.gram = np.ascontiguousarray(stats.gram.reshape(F, 2, F, 2).transpose(1, 0, 3, 2)).reshape(b, b)
        stats.phi_y = stats.phi_y.reshape(F, 2).T.ravel()
        stats.phi_sum = stats.phi_sum.reshape(F, 2).T.ravel()
    return stats


def _copy_into(Phi: np.ndarray, out: np.ndarray) -> None:
    out[...] = Phi


def _statistics_pass(
    b: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    fill: Callable[[np.ndarray, np.ndarray], None],
    progress: bool = False,
    total_rows: int | None = None,
) -> SufficientStatistics:
    """The accumulation shared by every statistics pass.

    ``fill(X, out)`` writes a chunk's b features into ``out`` (k, b).  They go into one reused
    (chunk, b + 2) buffer whose last two columns hold y and 1, so a single symmetric rank-k update
    of a (b + 2)² accumulator yields ΦᵀΦ, Φᵀy, Φᵀ1, yᵀy and Σy together.
    """
    acc = np.zeros((b + 2, b + 2), order="F")  # Fortran order: dsyrk updates it in place
    n = 0
    buf = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_rows, unit="rows", desc="statistics", leave=False)
    try:
        for X, y in chunks:
            k = int(X.shape[0])
            if k == 0:
                continue
            if buf is None or buf.shape[0] < k:
                buf = np.empty((k, b + 2))
            B = buf[:k]
            fill(X, B[:, :b])
            B[:, b] = y
            B[:, b + 1] = 1.0
            # dsyrk does half the flops of BᵀB; a C-ordered (k, b+2) B is a Fortran-ordered Bᵀ.
            acc = blas.dsyrk(1.0, B.T, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=1)
            n += k
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    # Only the upper triangle was accumulated (the lower one is still zero): G = U + Uᵀ with the
    # diagonal counted once (halving a doubled float is exact).
    upper = acc[:b, :b]
    gram = np.empty((b, b))
    np.add(upper.T, upper, out=gram)
    gram.flat[:: b + 1] *= 0.5
    return SufficientStatistics(
        n, gram, acc[:b, b].copy(), float(acc[b, b]), acc[:b, b + 1].copy(), float(acc[b, b + 1])
    )


def array_batches(
    X: np.ndarray, y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) chunks of in-memory or memory-mapped arrays, read one chunk at a time."""
    for start in range(0, len(y), chunk_rows):
        yield X[start : start + chunk_rows], y[start : start + chunk_rows]
