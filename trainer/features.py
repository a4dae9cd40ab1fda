"""Feature maps φ(x), described by plain parameters that every consumer reads.

Spec: docs/trainer.md §3.  The trainer evaluates the map in float64 here; the exporters and the
integer runtime reproduce it from the same parameters (offsets, scales, projection, amplitude).

    z = (x − input_offset) / input_scale                      (standardisation, learned from training data)
    linear: φ(x) = [z, 1]                                     (b = d + 1)
    rff:    φ(x) = amplitude · [cos(z P), sin(z P)]           (b = 2F, P = Ω / ℓ, Ω_ij ~ N(0, 1),
                                                               amplitude = F^(-1/2))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from direct_edge.trainer.errors import DataError

FEATURE_KINDS = ("linear", "rff")


@dataclass
class InputMoments:
    """Streaming per-column count, mean and sum of squared deviations (Chan et al. merge).

    Used to learn the input standardisation in one pass over chunks.
    """

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, X: np.ndarray) -> InputMoments:
        """Add a chunk ``X``: (k, d) float64.  Returns self."""
        X = np.asarray(X, dtype=np.float64)
        k = X.shape[0]
        if k == 0:
            return self
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = k, mean_b, m2_b
            return self
        n = self.n + k
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * k / n)
        self.n = n
        return self

    def offset_and_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(d,) means and (d,) standard deviations; constant columns get scale 1."""
        if self.n == 0:
            raise DataError("no rows to learn the input standardisation from")
        sd = np.sqrt(self.m2 / self.n)
        sd[~(sd > 1e-12 * np.maximum(1.0, np.abs(self.mean)))] = 1.0
        return self.mean.copy(), sd


@dataclass
class FeatureMap:
    """A fixed basis φ: R^d -> R^b given by plain parameters (see module docstring).

    ``projection``: (d, F) float64, rff only (already divided by the lengthscales);
    ``amplitude``: F^(-1/2) for rff, 1 for linear.
    """

    kind: str
    input_offset: np.ndarray
    input_scale: np.ndarray
    projection: np.ndarray | None = None
    amplitude: float = 1.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise DataError(f"unknown features {self.kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        self.input_offset = np.asarray(self.input_offset, dtype=np.float64)
        self.input_scale = np.asarray(self.input_scale, dtype=np.float64)
        if self.kind == "rff":
            self.projection = np.asarray(self.projection, dtype=np.float64)
            if self.projection.ndim != 2 or self.projection.shape[0] != self.n_inputs:
                raise DataError("rff projection must have shape (n_inputs, n_frequencies)")

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

    @property
    def n_inputs(self) -> int:
        return int(self.input_offset.shape[0])

    @property
    def n_features(self) -> int:
        if self.kind == "linear":
            return self.n_inputs + 1
        return 2 * int(self.projection.shape[1])

    def transform(self, X: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Features of raw inputs ``X``: (n, d) -> (n, b) array of ``dtype``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise DataError(f"expected inputs with {self.n_inputs} columns, got shape {X.shape}")
        Z = (X - self.input_offset) / self.input_scale
        if self.kind == "linear":
            out = np.empty((X.shape[0], self.n_inputs + 1), dtype=dtype)
            out[:, :-1] = Z
            out[:, -1] = 1.0
            return out
        # Phase in float64 (its error grows with |z P|); cos/sin may then run in float32 when asked.
        phase = (Z @ self.projection).astype(dtype, copy=False)
        n_freq = phase.shape[1]
        out = np.empty((X.shape[0], 2 * n_freq), dtype=dtype)
        np.cos(phase, out=out[:, :n_freq])
        np.sin(phase, out=out[:, n_freq:])
        out *= dtype(self.amplitude)
        return out

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Split into (JSON-able metadata, named arrays) for the model file (docs/model-file.md §3)."""
        meta = {"kind": self.kind, "amplitude": float(self.amplitude), "info": self.info}
        arrays = {"input_offset": self.input_offset, "input_scale": self.input_scale}
        if self.kind == "rff":
            arrays["projection"] = self.projection
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
        )
