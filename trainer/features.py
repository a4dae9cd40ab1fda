"""Feature maps φ(x), described by plain parameters that every consumer reads.

Spec: docs/trainer.md §3.  The trainer evaluates the map in float64 here; the exporters and the
integer runtime reproduce it from the same parameters (offsets, scales, projection, amplitude).

    z = (x − input_offset) / input_scale                      (standardisation, learned from training data)
    linear: φ(x) = [z, 1]                                     (b = d + 1)
    rff:    φ(x) = amplitude · [cos(z P), sin(z P)]           (b = 2F, P = Ω / ℓ, Ω_ij ~ N(0, 1),
                                                               amplitude = F^(-1/2))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from direct_edge.trainer.errors import DataError

FEATURE_KINDS = ("linear", "rff")


# A spread below this many ulps of a column's mean is rounding, not signal (InputMoments).
CONSTANT_ULPS = 8


@dataclass
class InputMoments:
    """Streaming per-column count, mean, sum of squared deviations (Chan et al. merge), min and max.

    Used to learn the input standardisation in one pass over chunks; the range feeds the integer
    export's input quantisation (docs/integer-spec.md §2).  Sums are kept in units of ``unit`` (per
    column, the largest magnitude in the first rows seen), so that columns near the ends of the
    float64 range (1e-300, 1e200, ±1.7e308) neither overflow nor underflow: ``mean`` is in the data's
    units, ``m2`` is Σ((x − mean) / unit)².
    """

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    unit: np.ndarray | None = None

    def update(self, X: np.ndarray) -> InputMoments:
        """Add a chunk ``X``: (k, d) float64.  Returns self."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return self
        if self.unit is None:
            unit = np.max(np.abs(X), axis=0)
            self.unit = np.where((unit > 0) & np.isfinite(unit), unit, 1.0)
        Z = X / self.unit
        mean_z = Z.mean(axis=0)
        chunk = InputMoments(
            X.shape[0],
            mean_z * self.unit,
            ((Z - mean_z) ** 2).sum(axis=0),
            X.min(axis=0),
            X.max(axis=0),
            self.unit,
        )
        merged = self + chunk
        self.n, self.mean, self.m2, self.low, self.high = (
            merged.n,
            merged.mean,
            merged.m2,
            merged.low,
            merged.high,
        )
        return self

    def __add__(self, other: InputMoments) -> InputMoments:
        """The moments of both row sets (Chan et al.'s merge, in this object's units)."""
        if not isinstance(other, InputMoments):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        m2_other = other.m2 * (other.unit / self.unit) ** 2
        n = self.n + other.n
        delta = other.mean / self.unit - self.mean / self.unit  # in units, so that it cannot overflow
        mean = (self.mean / self.unit + delta * (other.n / n)) * self.unit
        m2 = self.m2 + m2_other + delta**2 * (self.n * other.n / n)
        low, high = np.minimum(self.low, other.low), np.maximum(self.high, other.high)
        return InputMoments(n, mean, m2, low, high, self.unit)

    def offset_and_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(d,) means and (d,) standard deviations; a constant column gets its own magnitude |mean|
        as the scale (1 when it is all zeros).

        A column is constant when all its values are equal, or when its spread is below what float64
        resolves at its own magnitude (a few ulps of the mean): a test relative to the column's
        magnitude, so that units (1e-28 or 1e200) and offsets never decide what counts as constant."""
        if self.n == 0:
            raise DataError("no rows to learn the input standardisation from")
        sd = self.unit * np.sqrt(self.m2 / self.n)
        magnitude = np.abs(self.mean)
        constant = (self.high == self.low) | ~(sd > CONSTANT_ULPS * np.finfo(np.float64).eps * magnitude)
        # A constant column's scale is its own magnitude (1 for zeros), so its units decide nothing.
        sd[constant] = np.where(magnitude[constant] > 0, magnitude[constant], 1.0)
        return self.mean.copy(), sd


@dataclass
class FeatureMap:
    """A fixed basis φ: R^d -> R^b given by plain parameters (see module docstring).

    ``projection``: (d, F) float64, rff only (already divided by the lengthscales);
    ``amplitude``: F^(-1/2) for rff, 1 for linear; ``rotation``: None, or (b, b) float64 with
    orthonormal columns V, rff only: the map's features are then φ(x)ᵀV, the rff features rotated
    into the eigenbasis of the training Gram matrix (docs/trainer.md §3, "Rotated features").
    """

    kind: str
    input_offset: np.ndarray
    input_scale: np.ndarray
    projection: np.ndarray | None = None
    amplitude: float = 1.0
    info: dict = field(default_factory=dict)
    rotation: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise DataError(f"unknown features {self.kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        self.input_offset = np.asarray(self.input_offset, dtype=np.float64)
        self.input_scale = np.asarray(self.input_scale, dtype=np.float64)
        if self.kind == "rff":
            self.projection = np.asarray(self.projection, dtype=np.float64)
            if self.projection.ndim != 2 or self.projection.shape[0] != self.n_inputs:
                raise DataError("rff projection must have shape (n_inputs, n_frequencies)")
        if self.rotation is not None:
            self.rotation = np.asarray(self.rotation, dtype=np.float64)
            b = self.n_features
            if self.kind != "rff" or self.rotation.shape != (b, b):
                raise DataError(f"a feature rotation needs rff features and shape ({b}, {b})")
            if not np.all(np.isfinite(self.rotation)) or not is_orthonormal(self.rotation):
                raise DataError("a feature rotation must have finite, orthonormal columns")

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """z = (x − input_offset) / input_scale for ``X``: (n, d) float64.  Where x − offset would
        overflow (inputs near ±1.7e308), z is computed as x/scale − offset/scale instead."""
        X = np.asarray(X, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X - self.input_offset) / self.input_scale
        wide = ~np.isfinite(Z)
        if wide.any():
            Z[wide] = (X / self.input_scale - self.input_offset / self.input_scale)[wide]
        return Z

    @classmethod
    def linear(cls, input_offset: np.ndarray, input_scale: np.ndarray) -> FeatureMap:
        """Standardised inputs plus a bias feature (b = d + 1)."""
        return cls("linear", input_offset, input_scale)

    @classmethod
    def rff(
        cls,
        input_offset: np.ndarray,
        input_scale: np.ndarray,
        n_features: int,
        lengthscale: float | np.ndarray = 1.0,
        seed: int = 0,
    ) -> FeatureMap:
        """Random Fourier features of an RBF kernel on standardised inputs.

        ``n_features`` = b (even, b = 2F); ``lengthscale``: scalar or (d,) for ARD, in standardised
        input units; ``seed`` fixes Ω.
        """
        d = np.asarray(input_offset).shape[0]
        if n_features < 2 or n_features % 2:
            raise DataError(f"rff needs an even number of features >= 2, got {n_features}")
        ell = np.broadcast_to(np.asarray(lengthscale, dtype=np.float64), (d,))
        if not np.all(np.isfinite(ell)) or np.any(ell <= 0):
            raise DataError("lengthscales must be positive and finite")
        n_freq = n_features // 2
        omega = np.random.default_rng(seed).standard_normal((d, n_freq))
        info = {"lengthscale": ell.tolist(), "seed": int(seed)}
        return cls("rff", input_offset, input_scale, omega / ell[:, None], n_freq**-0.5, info)

    def rotated(self, rotation: np.ndarray) -> FeatureMap:
        """This map followed by ``rotation`` ((b, b) orthonormal columns V): features φ(x)ᵀV."""
        return replace(self, rotation=rotation)

    def unrotated(self) -> FeatureMap:
        """This map without its rotation (itself when it has none)."""
        return self if self.rotation is None else replace(self, rotation=None)

    @property
    def n_inputs(self) -> int:
        return int(self.input_offset.shape[0])

    @property
    def n_features(self) -> int:
        if self.kind == "linear":
            return self.n_inputs + 1
        return 2 * int(self.projection.shape[1])

    def transform(self, X: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Features of raw inputs ``X``: (n, d) -> (n, b) array of ``dtype``.

        Computed in float64 (then rounded to ``dtype``); rff uses the table-based sin/cos of
        :class:`_RffKernel`, which agrees with ``np.cos``/``np.sin`` to about |phase|·1e-16.
        """
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((X.shape[0] if X.ndim == 2 else 0, self.n_features), dtype=np.float64)
        self._transform_into(X, out)
        if self.rotation is not None:
            out = out @ self.rotation
        return out.astype(dtype, copy=False)

    def _transform_into(
        self, X: np.ndarray, out: np.ndarray, kernel: _RffKernel | None = None, interleaved: bool = False
    ) -> None:
        """Write the features of ``X``: (k, d) into ``out``: (k, b), a float array or a view
        of one (e.g. the first b columns of a wider buffer).  ``kernel``: a prepared
        :class:`_RffKernel` of this map, reused across calls.  ``interleaved`` (rff only): columns
        in the order cos_1, sin_1, cos_2, sin_2, ... (used by the statistics pass)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise DataError(f"expected inputs with {self.n_inputs} columns, got shape {X.shape}")
        Z = self.standardise(X)
        if self.kind == "linear":
            out[:, :-1] = Z
            out[:, -1] = 1.0
            return
        (kernel or _RffKernel(self)).features(Z, out, interleaved)  # before any rotation

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Split into (JSON-able metadata, named arrays) for the model file (docs/model-file.md §3)."""
        meta = {"kind": self.kind, "amplitude": float(self.amplitude), "info": self.info}
        arrays = {"input_offset": self.input_offset, "input_scale": self.input_scale}
        if self.kind == "rff":
            arrays["projection"] = self.projection
        if self.rotation is not None:
            arrays["rotation"] = self.rotation
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> FeatureMap:
        return cls(
            meta["kind"],
            arrays["input_offset"],
            arrays["input_scale"],
            arrays.get("projection"),
            float(meta["amplitude"]),
            dict(meta.get("info", {})),
            arrays.get("rotation"),
        )


#: Largest |VᵀV − I| entry accepted as orthonormal: eigh's vectors are within ~b·1e-16 of it, a file's
#: round trip is exact, and a corrupt matrix is far off.
ORTHONORMAL_TOL = 1e-9


def is_orthonormal(V: np.ndarray) -> bool:
    """Whether the columns of the square ``V`` are orthonormal to within :data:`ORTHONORMAL_TOL`."""
    V = np.asarray(V, dtype=np.float64)
    return (
        V.ndim == 2
        and V.shape[0] == V.shape[1]
        and bool(np.max(np.abs(V.T @ V - np.eye(V.shape[0])), initial=0.0) <= ORTHONORMAL_TOL)
    )


# ---- fast float64 sin/cos for rff features ------------------------------------------------------
#
# libm's float64 cos and sin cost about 8 ns per value here: more per feature than the Gram update at
# b = 512.  The kernel below evaluates both from one table and two short polynomials,
#
#     u = phase · N/2π (folded into the projection),  k = rint(u),  f = u − k (exact),  r = f·2π/N
#     A·(cos + i sin)(phase) = T_k · (cos r + i sin r),   T_k = A·exp(2πik/N)
#
# with the rff amplitude A folded into the complex table T, so the last step is one complex multiply
# (numpy's SIMD loop) that writes (cos, sin) pairs.  With N = 1024, |r| ≤ 3.1e-3 and the truncated
# series cos r ≈ 1 − r²/2 + r⁴/24, sin r ≈ r − r³/6 + r⁵/120 are exact to < 1e-18 (their
# coefficients absorb 2π/N, so they take f directly).  The result matches np.cos/np.sin of the
# float64 phase to within the phase's own rounding (|phase|·1e-16) and is as close to the exact
# features as they are (checked against long-double references).  k mod N is read from the low
# mantissa bits of u + 1.5·2⁵² (valid for |u| < 2⁵⁰; larger phases fall back to np.cos/np.sin).
# Work happens in row blocks that stay in cache; the phase is never materialised for a chunk.
# The statistics pass runs this kernel in one worker thread per core (docs/trainer.md §4).

_SINCOS_STEPS = 1024
_SINCOS_MAGIC = 1.5 * 2.0**52
_SINCOS_MAX_STEPS = 2.0**50
_BLOCK_VALUES = 16384  # phase values per block: the ~0.5 MB of scratch stays in L2
_BLOCK_VALUES_FLOAT32 = 32768  # float32 path: fewer, larger numpy calls (measured 2.4 vs 3.4 ns/pair)


class _RffKernel:
    """cos/sin features of an rff map, prepared once per map and reused across chunks."""

    def __init__(self, fmap: FeatureMap) -> None:
        steps = _SINCOS_STEPS
        self.raw_projection = fmap.projection
        self.amplitude = float(fmap.amplitude)
        self.projection = np.ascontiguousarray(fmap.projection * (steps / (2.0 * np.pi)))  # u = z·P
        self.n_freq = int(self.projection.shape[1])
        self.max_projection = float(np.max(np.abs(self.projection), initial=0.0))
        self.turns = np.ascontiguousarray(fmap.projection / (2.0 * np.pi))  # phase in turns (float32 path)
        # Table in long double where the platform has it (correctly rounded float64 entries).
        pi = np.longdouble("3.14159265358979323846264338327950288")
        angles = np.arange(steps, dtype=np.longdouble) * (2 * pi / steps)
        amp = np.longdouble(fmap.amplitude)
        self.table = np.empty(steps, dtype=np.complex128)
        self.table.real = (amp * np.cos(angles)).astype(np.float64)
        self.table.imag = (amp * np.sin(angles)).astype(np.float64)
        h = 2 * pi / steps
        self.sin_coef = tuple(float(c) for c in (h, -(h**3) / 6, h**5 / 120))
        self.cos_coef = tuple(float(c) for c in (-(h**2) / 2, h**4 / 24))

    def features(self, Z: np.ndarray, out: np.ndarray, interleaved: bool = False) -> None:
        """``Z``: (k, d) standardised inputs.  Writes A·cos(zP) into ``out[:, :F]`` and A·sin(zP)
        into ``out[:, F:2F]``; with ``interleaved`` (float64 ``out`` whose rows are contiguous)
        the pairs A·(cos_j, sin_j) go to columns (2j, 2j + 1) instead, one complex value each."""
        k, F = Z.shape[0], self.n_freq
        if k == 0:
            return
        bound = float(np.max(np.sum(np.abs(Z), axis=1))) * self.max_projection
        if not bound < _SINCOS_MAX_STEPS:  # huge or non-finite phases: plain libm
            phase = Z @ self.raw_projection
            if interleaved:
                np.cos(phase, out=out[:, 0 : 2 * F : 2])
                np.sin(phase, out=out[:, 1 : 2 * F : 2])
            else:
                np.cos(phase, out=out[:, :F])
                np.sin(phase, out=out[:, F : 2 * F])
            out[:, : 2 * F] *= self.amplitude
            return
        Z = np.ascontiguousarray(Z)
        rows = max(1, _BLOCK_VALUES // F)
        shape = (min(rows, k), F)
        scratch = [np.empty(shape), np.empty(shape), np.empty(shape)]
        scratch += [np.empty(shape, dtype=np.complex128), np.empty(shape, dtype=np.complex128)]
        direct = interleaved and out.dtype == np.float64
        for a0 in range(0, k, rows):
            a1 = min(a0 + rows, k)
            if a1 - a0 != shape[0]:  # last, shorter block
                scratch = [x[: a1 - a0] for x in scratch]
            if direct:
                self._block(Z[a0:a1], out[a0:a1, : 2 * F].view(np.complex128), scratch)
                continue
            pairs = scratch[4]
            self._block(Z[a0:a1], pairs, scratch)
            if interleaved:
                out[a0:a1, 0 : 2 * F : 2] = pairs.real
                out[a0:a1, 1 : 2 * F : 2] = pairs.imag
            else:
                out[a0:a1, :F] = pairs.real
                out[a0:a1, F : 2 * F] = pairs.imag

    def _block(self, Z: np.ndarray, pairs: np.ndarray, scratch: list) -> None:
        """A·exp(i·phase) of one block of rows into the complex array ``pairs`` (rows, F), which
        may be scratch[4] itself."""
        u, t, a, tk, e = scratch
        idx = a.view(np.int64)
        np.matmul(Z, self.projection, out=u)
        np.add(u, _SINCOS_MAGIC, out=t)
        np.bitwise_and(t.view(np.int64), _SINCOS_STEPS - 1, out=idx)  # k mod N
        t -= _SINCOS_MAGIC  # k
        u -= t  # f = u − k, |f| ≤ 1/2
        self.table.take(idx, out=tk, mode="clip")  # T_k
        np.multiply(u, u, out=t)  # f²
        s1, s3, s5 = self.sin_coef
        np.multiply(t, s5, out=a)  # the indices are no longer needed
        a += s3
        a *= t
        a += s1
        np.multiply(a, u, out=e.imag)  # sin r
        c2, c4 = self.cos_coef
        np.multiply(t, c4, out=u)
        u += c2
        u *= t
        np.add(u, 1.0, out=e.real)  # cos r
        np.multiply(tk, e, out=pairs)

    def unit_features_float32(self, Z: np.ndarray, out: np.ndarray) -> None:
        """float32 cos(zP) into ``out[:, :F]`` and sin(zP) into ``out[:, F:2F]``, WITHOUT the
        amplitude (the statistics pass scales its float64 sums by A² and A instead).

        ``Z``: (k, d) standardised inputs; ``out``: (k, >= 2F) float32 with contiguous rows.  The
        phase is reduced to one turn in float64 (u = z·P/2π, r = 2π(u − rint u), |r| ≤ π) before it
        is rounded to float32, so the error is that of numpy's SIMD float32 cos/sin of a float32 r:
        at most about 2e-7 absolute (|r|·2⁻²⁴ plus 1-2 ulp; measured 1.5e-7), independent of |phase|.
        About 2.5 ns per (cos, sin) pair here, against 6 ns for the float64 kernel.
        """
        k, F = Z.shape[0], self.n_freq
        if k == 0:
            return
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        rows = max(1, _BLOCK_VALUES_FLOAT32 // F)
        shape = (min(rows, k), F)
        u, t, r = np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.float32)
        for a0 in range(0, k, rows):
            a1 = min(a0 + rows, k)
            m = a1 - a0
            um, tm, rm = u[:m], t[:m], r[:m]
            np.matmul(Z[a0:a1], self.turns, out=um)
            np.rint(um, out=tm)
            um -= tm  # exact: |u − rint u| ≤ 1/2
            um *= 2.0 * np.pi
            rm[...] = um
            np.cos(rm, out=out[a0:a1, :F])
            np.sin(rm, out=out[a0:a1, F : 2 * F])
