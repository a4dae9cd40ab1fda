"""ONNX export: a float graph of the model and, with ``integer=True``, the integer specification itself.

Two graphs (docs/export.md has the pictures and the accuracy statements):

* :func:`float_model`: float32 inputs ``x`` (n, d) in input units -> ``mean`` (n,) and ``variance`` (n,)
  in target units (the predictive variance of y), optionally ``samples`` (n, S).  The standardisation and
  the feature map are float ops; the S posterior samples are one INT4 initializer (b, S), stored packed,
  dequantised with DequantizeLinear (per-tensor scale = the level's value in target units).
* :func:`integer_model`: int16 inputs ``q`` (n, d) (IS §2) -> ``mean_q`` int32, ``var_q`` and ``var_y_q``
  uint64, each (n,): docs/integer-spec.md §3–§5 (IS §n) with integer ONNX ops only, bit-exact with
  :mod:`direct_edge.runtime.reference` and the C runtime.

Both pass ``onnx.checker.check_model(full_check=True)`` and run in onnxruntime's CPU provider and in
``onnx.reference.ReferenceEvaluator``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from direct_edge import __version__
from direct_edge.export.packed import blob_input_range, rotation_integers
from direct_edge.runtime import reference
from direct_edge.runtime.blob import KIND_LINEAR, PHI_MAX, Blob, round_shift

OPSET = 21
# The IR version of opset 21 (onnx 1.16). onnxruntime loads the exact-moment graph from 1.18 (opset 21)
# and the graphs with INT4 initializers (Cast from INT4) from 1.23: measured, docs/export.md.
IR_VERSION = 10
PRODUCER = "direct-edge"


class _Graph:
    """A tiny builder: nodes and initializers with generated names, in insertion order."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0
        self.prefix = prefix  # keeps names apart from another graph's when the two are joined

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value, dtype, hint: str = "c") -> str:
        """An initializer holding ``value`` as ``dtype`` (a numpy or ml_dtypes type)."""
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value).astype(dtype), name))
        return name

    def wide(self, value, stored, hint: str = "c") -> str:
        """An int64 constant stored as the narrower ``stored`` type and Cast at load (smaller file;
        onnxruntime folds the Cast once when the session is created)."""
        return self.op("Cast", self.const(value, stored, hint), to=TensorProto.INT64, hint=hint)

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def output(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], **attrs))
        return name

    def model(self, name: str, inputs, outputs, meta: dict[str, str], doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits, doc_string=doc)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name=PRODUCER,
            producer_version=__version__,
        )
        helper.set_model_props(model, meta)
        onnx.checker.check_model(model, full_check=True)
        return model


def _metadata(blob: Blob, graph_kind: str, extra: dict | None = None) -> dict[str, str]:
    """metadata_props: producer, version, bits, grid scale, samples, sparsity, training summary."""
    meta = blob.meta
    props = {
        "producer": PRODUCER,
        "version": __version__,
        "graph": graph_kind,
        "spec": "integer-spec 1"
        if graph_kind == "integer"
        else "float32 evaluation of the posterior samples"
        if graph_kind == "float"
        else "float32 exact predictive moments (posterior weight means and variances)",
        "features": blob.kind_name,
        "inputs": str(blob.n_inputs),
        "weights": str(blob.n_features),
        "bits": str(blob.bits),
        "grid_scale": repr(float(meta.get("grid_scale", float("nan")))),
        "samples": str(blob.n_samples),
        "sparsity": f"{blob.sparsity:.6f}",
        "input_scale": json.dumps(blob.input_scale.tolist()),
        "input_zero": json.dumps(blob.input_zero.tolist()),
        "mean_scale": repr(blob.mean_scale),
        "y_offset": repr(blob.y_offset),
        "training_summary": json.dumps(meta.get("summary", {}), sort_keys=True),
    }
    props.update(extra or {})
    return props


def _int4(levels: np.ndarray) -> np.ndarray:
    """Levels as ml_dtypes.int4, so numpy_helper stores them packed (2 per byte, low nibble first)."""
    levels = np.asarray(levels)
    if levels.size and (levels.min() < -8 or levels.max() > 7):
        raise ValueError("levels outside the 4-bit range [-8, 7]")
    return levels.astype(ml_dtypes.int4)


# ---- float graph ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatFeatures:
    """The float feature map in the graph's form, float64 until written.

    Both kinds first take the inputs relative to a per-input ``origin`` (d,) in input units (the
    trainer's input mean), in float64, so that large input offsets cost no precision:
    linear: φ̃_k = (x_k − origin_k)·gain_k + shift_k (k < d) and the bias feature 1; ``gain``, ``shift``: (d,).
    rff: θ_j = Σ_k (x_k − origin_k)·gain_kj + shift_j (radians), φ̃ = [cos θ, sin θ]; ``gain``: (d, F),
    ``shift``: (F,).  ``unit``: the target-units value of level 1 times φ̃ = 1 (y_scale·Δ·amplitude).
    """

    kind: int
    gain: np.ndarray
    shift: np.ndarray
    unit: float
    origin: np.ndarray
    rotation: np.ndarray | None = None
    rotation_exact: np.ndarray | None = None

    def features(self, X: np.ndarray) -> np.ndarray:
        """φ̃ (n, b') in float64 for inputs ``X`` (n, d) in input units (linear: without the bias feature;
        rotated rff: the rotated features φ̃·Q)."""
        z = np.asarray(X, dtype=np.float64) - self.origin
        if self.kind == KIND_LINEAR:
            return z * self.gain + self.shift
        theta = z @ self.gain + self.shift
        phi = np.concatenate([np.cos(theta), np.sin(theta)], axis=1)
        return phi if self.rotation is None else phi @ self.rotation


ROTATION_SHIFT = 15  # IS §3.5: R_kj = round(V_jk·A·2^(15+s_k))


def rotation_matrix(R: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """IS §3.5's R (b, b) int16 (row k: rotated feature k) and shifts s (b,) as the float graphs' matrix
    Q (b, b) float64 with ψ̃ = φ̃·Q, Q_jk = R_kj·2^−(15+s_k): the integer runtime's quantised rotation
    A·V, exact in float32 (an int16 times a power of two ≥ 2^−31)."""
    R = np.asarray(R, dtype=np.float64)
    scale = 2.0 ** -(ROTATION_SHIFT + np.asarray(shifts, dtype=np.float64))
    return (R * scale[:, None]).T


def rotation_rounding(feats: FloatFeatures, weights: np.ndarray | None = None) -> float:
    """What R's rounding (Q against the trainer's A·V, ``feats.rotation_exact``) moves the graph's float64
    features from the trainer's own φ(x)ᵀV, for any x (unit-amplitude φ̃ with ‖φ̃‖₂ = √F, b = 2F;
    Cauchy–Schwarz): without ``weights``, the largest over the rotated features, √F·max_k ‖(Q − A·V)e_k‖₂;
    with ``weights`` (m, b), the largest over its rows w of |φ̃ᵀ(Q − A·V)w| ≤ √F·‖(Q − A·V)w‖₂ (an
    output's share, far below the per-feature bound times Σ|w|); plus float64 slack.  0 for unrotated
    features and where the reference is the float reading of Q itself (no ``rotation_exact``:
    :func:`features_from_blob`)."""
    if feats.rotation is None or feats.rotation_exact is None:
        return 0.0
    delta = feats.rotation - feats.rotation_exact
    b = delta.shape[0]
    w = np.eye(b) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    norms = np.sqrt(((delta @ w.T) ** 2).sum(axis=0))
    return float(norms.max() * math.sqrt(b / 2) + b * 2.0**-52 * np.abs(w).sum(axis=1).max())


def check_rotation(blob: Blob, feats: FloatFeatures) -> None:
    """ValueError unless ``feats`` rotates exactly as ``blob`` does (IS §3.5; both unrotated, or Q equal
    to :func:`rotation_matrix` of the blob's R and s): every graph uses the integer runtime's rotation."""
    R = blob.rotation
    if R is None and feats.rotation is None:
        return
    if R is None or feats.rotation is None:
        which = "the blob" if R is not None else "the float features"
        raise ValueError(f"only {which} carry a feature rotation (IS §3.5): export both from one model")
    if not np.array_equal(feats.rotation, rotation_matrix(R, blob.rotation_shift)):
        raise ValueError("the float features' rotation is not the blob's quantised R (IS §3.5)")


def rotated_feature_error(feats: FloatFeatures, eps: float, rounding: bool = True) -> float:
    """The largest float32 error of a rotated feature ψ̃_k (the graphs' float32 φ̃·Q) against the
    float64 features of ``feats`` given ``eps``, the largest float32 error of one unrotated φ̃_j:
    c·(ε + γ_b·(1 + ε)) with c = max_k Σ_j |Q_jk| (≈ √2 for an orthonormal V) and γ_b = b·2^−24 /
    (1 − b·2^−24), the float32 dot product of length b in any order (Q is exact in float32); with
    ``rounding``, plus :func:`rotation_rounding` (so against the trainer's own φ(x)ᵀV when ``feats``
    were built from the model)."""
    b = feats.rotation.shape[0]
    c = float(np.abs(feats.rotation).sum(axis=0).max())
    u = b * 2.0**-24
    return c * (eps + u / (1 - u) * (1 + eps)) + (rotation_rounding(feats) if rounding else 0.0)


def features_from_model(model, blob: Blob | None = None) -> FloatFeatures:
    """The trainer's own float parameters (a fitted DirectRegressor, or a DirectClassifier, whose
    ``unit`` is in logits): the float64 model, exactly (origin = the trainer's input offset, so ``shift``
    is 0).  A rotated map (``feature_map_.rotation``, IS §3.5) gets the integer runtime's quantised
    rotation Q (:func:`rotation_matrix`; from ``blob`` where given, else the exporter's own
    ``packed.rotation_integers`` of the model), unit amplitude, and ``rotation_exact`` = A·V, the
    trainer's rotation, against which the bounds count R's rounding (:func:`rotation_rounding`)."""
    fmap = model.feature_map_
    # a classifier (no y_scale_) has its unit in logits (nats) per level at φ̃ = 1
    unit = float(getattr(model, "y_scale_", 1.0) * model.grid_scale_ * feature_amplitude(fmap))
    inv = 1.0 / fmap.input_scale
    origin = np.array(fmap.input_offset, dtype=np.float64)
    if fmap.kind == "linear":
        return FloatFeatures(KIND_LINEAR, inv, np.zeros_like(inv), unit, origin)
    gain = fmap.projection * inv[:, None]
    if fmap.rotation is None:
        return FloatFeatures(1, gain, np.zeros(gain.shape[1]), unit, origin)
    if blob is not None and blob.rotation is not None:
        R, shifts = blob.rotation, blob.rotation_shift
    else:
        R, shifts = rotation_integers(fmap.rotation, fmap.amplitude)
    exact = fmap.rotation * fmap.amplitude
    return FloatFeatures(1, gain, np.zeros(gain.shape[1]), unit, origin, rotation_matrix(R, shifts), exact)


def feature_amplitude(fmap) -> float:
    """The amplitude of a trainer's feature map as the graphs compute it: 1 after a rotation (IS §3.5:
    the rotation's R carries A), else the map's own."""
    return 1.0 if getattr(fmap, "rotation", None) is not None else float(fmap.amplitude)


def features_from_blob(blob: Blob) -> FloatFeatures:
    """The float reading of the blob's integer parameters (IS §2–§3 without rounding), for blobs with
    no trained model behind them (synthetic benchmarks).  The IS §7 scale gives the level unit; the
    origin is the middle of the IS §2 input range (q = −½)."""
    inv = 1.0 / blob.input_scale  # q = x/scale + zero, unrounded
    origin = blob.input_scale * (-0.5 - blob.input_zero)
    q0 = -0.5  # the q of the origin
    if blob.kind == KIND_LINEAR:
        coef = blob.linear_m.astype(np.float64) / 2.0 ** (15 + blob.feature_frac)
        shift = (blob.linear_m * q0 + blob.linear_b) / 2.0 ** (15 + blob.feature_frac)
        unit = blob.mean_scale * 2.0 ** (blob.feature_frac - blob.pre_shift)
        return FloatFeatures(KIND_LINEAR, coef * inv, shift, unit, origin)
    turn = 2 * math.pi / 2.0**32
    W = blob.phase_w.astype(np.float64)  # (F, d)
    gain = (W * inv[None, :]).T * turn
    shift = np.remainder((blob.phase_c + W @ np.full(blob.n_inputs, q0)) * turn, 2 * math.pi)
    unit = blob.mean_scale * 2.0 ** (15 - blob.pre_shift)  # IS §7: A = 1 for a rotated blob
    if blob.rotation is None:
        return FloatFeatures(1, gain, shift, unit, origin)
    return FloatFeatures(1, gain, shift, unit, origin, rotation_matrix(blob.rotation, blob.rotation_shift))


HOLD_WIDTHS = 2**20  # how far beyond the training range, in training-range widths, the float graphs follow x


def hold_range(blob: Blob, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float graphs' hold range (low, high), float64 (d,) each, in input units: IS §2's training
    range [lo, hi] (:func:`blob_input_range`) widened by :data:`HOLD_WIDTHS` times its width on each
    side, within ±float64's largest value, and within ``origin`` ± float32's largest value (so that
    x − origin, which the graphs cast to float32, stays finite).  Every float graph (ONNX and TFLite)
    clips each input to it before the features; ``out_of_range`` still reads the unclipped input.

    Why it changes no meaningful answer: 2^20 widths out, float32 spaces the consecutive values of
    z = x − origin about a tenth of the training width apart, and an rff phase θ there is so large
    (≈1e7 rad for a lengthscale near the data's spread) that its own float32 spacing is about a radian;
    a few doublings further both exceed a full turn.  So the float32 features there are set by rounding
    rather than by x, and the float64 model's own answer, millions of widths from every training point,
    is the cosines' extrapolation (noise; NaN once x − origin overflows).  Without the hold, x beyond
    float32 (|x − origin| > 3.4e38) or a MatMul overflow makes inf, then NaN.  Held, every output is
    finite; linear features give the straight-line extrapolation at the hold point.  Inputs inside the
    hold range pass through unchanged (bit for bit).
    """
    lo, hi = blob_input_range(blob)
    half = hi / 2 - lo / 2  # half the width: never overflows (input_quantization's trick)
    big = np.finfo(np.float64).max
    f32 = float(np.finfo(np.float32).max)
    origin = np.asarray(origin, dtype=np.float64)
    with np.errstate(over="ignore"):  # an overflow is ±inf, then ±big
        low = np.maximum(lo - (2.0 * HOLD_WIDTHS) * half, -big)
        high = np.minimum(hi + (2.0 * HOLD_WIDTHS) * half, big)
        low = np.maximum(low, origin - f32)
        high = np.minimum(high, origin + f32)
    return low, high


@dataclass(frozen=True)
class ExactMoments:
    """Per-feature posterior moments of the weights in the graph's units (IS §6 in float): the
    predictive mean is Σ_i φ̃_i·mean_i + y_offset and the variance Σ_i φ̃_i²·var_i + noise, ``mean``
    and ``var`` (b,) in target units per unit of φ̃ (linear: the last entry is the bias feature's),
    ``noise`` = E_q[σ²] in target units².  Exact for a mean-field posterior; for a mixture the variance
    leaves out the covariance between weights (IS §6)."""

    mean: np.ndarray
    var: np.ndarray
    noise: float


def moments_from_model(model) -> ExactMoments:
    """The trained posterior's own weight moments (float64, unquantised)."""
    # standardised target units per Φ (with amplitude); the predictive variance with its rounding floor
    w_mean, w_var = model.posterior_.predictive_weight_moments()
    unit = float(model.y_scale_ * feature_amplitude(model.feature_map_))
    return ExactMoments(w_mean * unit, w_var * unit**2, float(model.noise_variance_))


def gain_values(blob: Blob) -> np.ndarray:
    """IS §3.4: the feature gains g_i = G_i·2^-15 as float64 (b,), exact (ones without gains)."""
    if blob.gains is None:
        return np.ones(blob.n_features)
    return blob.gains.astype(np.float64) / 32768.0


def moments_from_blob(blob: Blob, feats: FloatFeatures) -> ExactMoments:
    """The blob's exact-moment section (IS §6: μq/2^12 and vq/2^10 levels, each level worth g_i of
    the unit with feature gains, IS §3.4) in the graph's units; ValueError when the blob has none."""
    if not blob.has_exact:
        raise ValueError("the blob has no exact-moment section")
    g = gain_values(blob)
    mean = blob.exact_mean.astype(np.float64) / 4096.0 * feats.unit * g
    var = blob.exact_var.astype(np.float64) / 1024.0 * (feats.unit * g) ** 2
    return ExactMoments(mean, var, float(blob.noise_exact_q) * blob.mean_scale**2)


def floor_levels(blob: Blob) -> np.ndarray | None:
    """IS §5's variance floor of each weight's level, eq_i·2^-10 in level² (float64 (b,)), or None for a
    blob without it: what the float ensembles add to their samples' spread, Σ_i (g_i·φ_i)²·e_i."""
    return None if blob.floor is None else blob.floor.astype(np.float64) / 1024.0


def floor_variance(blob: Blob, feats: FloatFeatures, phi: np.ndarray) -> np.ndarray:
    """IS §5's rounding floor in float64 (n,), target units², from the float features ``phi`` of
    ``feats`` (n, b), or (n, d) for linear features without their constant): what :func:`float_model`
    adds to the samples' variance; zeros for a blob without the floor."""
    phi = np.asarray(phi, dtype=np.float64)
    floor = floor_levels(blob)
    if floor is None:
        return np.zeros(len(phi))
    w = feats.unit**2 * gain_values(blob) ** 2 * floor
    if feats.kind == KIND_LINEAR and phi.shape[1] == len(w) - 1:
        return (phi * phi) @ w[:-1] + w[-1]
    return (phi * phi) @ w


def noise_variance(blob: Blob) -> float:
    """The mean sampled noise variance in target units² (IS §7: noise_q · mean_scale²)."""
    return float(blob.noise_q) * blob.mean_scale**2


def _float_features(g: _Graph, blob: Blob, feats: FloatFeatures) -> str:
    """φ̃ float32 (n, b') of the graph input x float64 (n, d): Max and Min with the :func:`hold_range`
    in float64, Sub of the origin in float64, Cast to float32, then the affine map (linear, without the
    bias feature) or MatMul, Add, Cos, Sin, Concat; a rotated blob (IS §3.5) then one more MatMul with
    Q (:func:`rotation_matrix`).  ValueError where ``feats`` and ``blob`` rotate differently."""
    check_rotation(blob, feats)
    low, high = hold_range(blob, feats.origin)
    held = g.op("Max", "x", g.const(low, np.float64, "hold_low"), hint="x_above_low")
    held = g.op("Min", held, g.const(high, np.float64, "hold_high"), hint="x_held")
    z = g.op(
        "Cast", g.op("Sub", held, g.const(feats.origin, np.float64, "origin")), to=TensorProto.FLOAT, hint="z"
    )
    if feats.kind == KIND_LINEAR:
        return g.op(
            "Add", g.op("Mul", z, g.const(feats.gain, np.float32, "gain")), g.const(feats.shift, np.float32)
        )
    theta = g.op(
        "Add",
        g.op("MatMul", z, g.const(feats.gain, np.float32, "projection")),
        g.const(feats.shift, np.float32),
    )
    phi = g.op("Concat", g.op("Cos", theta), g.op("Sin", theta), axis=1, hint="phi")
    if feats.rotation is None:
        return phi
    return g.op("MatMul", phi, _rotation_constant(g, blob), hint="psi")


def _rotation_constant(g: _Graph, blob: Blob) -> str:
    """Q (b, b) float32 (:func:`rotation_matrix`) as R (int16, transposed) Cast to float32 times the
    per-column powers of two 2^−(15+s_k): half the bytes of a float32 initializer, every step exact,
    and onnxruntime folds both into one float32 constant when it loads the file."""
    scale = 2.0 ** -(ROTATION_SHIFT + blob.rotation_shift.astype(np.float64))
    return g.op(
        "Mul",
        g.op("Cast", g.const(blob.rotation.T, np.int16, "rotation_r"), to=TensorProto.FLOAT),
        g.const(scale[None, :], np.float32, "rotation_scale"),
        hint="rotation",
    )


def _out_of_range(g: _Graph, flags: str) -> str:
    """The IS §2.1 row flag ``out_of_range`` bool (n,) from per-input booleans (n, d): any of them."""
    per_input = g.op("Cast", flags, to=TensorProto.INT32, hint="flag_i32")
    any_flag = g.op("ReduceMax", per_input, g.const([1], np.int64, "axis"), keepdims=0, hint="any_flag")
    return g.output("Cast", [any_flag], "out_of_range", to=TensorProto.BOOL)


def _real_out_of_range(g: _Graph, blob: Blob) -> str:
    """IS §2.1 for the float64 input x: x < lo or x >= hi with the per-input float64 thresholds of
    :func:`reference.range_thresholds` (the same bits as the reference's quantisation for every x)."""
    lo, hi = reference.range_thresholds(blob, np.float64)
    below = g.op("Less", "x", g.const(lo, np.float64, "range_lo"))
    beyond = g.op("GreaterOrEqual", "x", g.const(hi, np.float64, "range_hi"))
    return _out_of_range(g, g.op("Or", below, beyond))


OUT_OF_RANGE = helper.make_tensor_value_info("out_of_range", TensorProto.BOOL, ["n"])


def exact_model(blob: Blob, feats: FloatFeatures, moments: ExactMoments) -> onnx.ModelProto:
    """The exact-moment float graph (IS §6 in float): x float64 (n, d) in input units -> mean,
    variance float64 (n,) in target units, from two MatMuls of φ̃ and φ̃² with the weights' posterior
    means and variances (float32 initializers (b', 1)); the same precision steps as :func:`float_model`.
    """
    g = _Graph()
    phi = _float_features(g, blob, feats)
    mean_w, var_w = np.asarray(moments.mean), np.asarray(moments.var)
    mean_c, var_c = 0.0, moments.noise
    if feats.kind == KIND_LINEAR:
        mean_c, var_c = float(mean_w[-1]), var_c + float(var_w[-1])
        mean_w, var_w = mean_w[:-1], var_w[:-1]
    f64 = TensorProto.DOUBLE
    flat = g.const([-1], np.int64, "flat")
    m = g.op("MatMul", phi, g.const(mean_w[:, None], np.float32, "weight_mean"))
    m = g.op("Cast", g.op("Reshape", m, flat), to=f64)
    g.output("Add", [m, g.const(blob.y_offset + mean_c, np.float64, "y_offset")], "mean")
    v = g.op("MatMul", g.op("Mul", phi, phi), g.const(var_w[:, None], np.float32, "weight_var"))
    v = g.op("Cast", g.op("Reshape", v, flat), to=f64)
    g.output("Add", [v, g.const(var_c, np.float64, "noise")], "variance")
    _real_out_of_range(g, blob)
    doc = (
        "DIRECT Bayesian GLM, exact-moment float graph: x (n, d) float64 in input units -> predictive "
        "mean and variance (n,) float64 in target units, from the posterior means and variances of the "
        "weights (no samples); out_of_range (n,) bool: an input outside the training range."
    )
    return g.model(
        "direct_edge_exact",
        [helper.make_tensor_value_info("x", f64, ["n", blob.n_inputs])],
        [
            helper.make_tensor_value_info("mean", f64, ["n"]),
            helper.make_tensor_value_info("variance", f64, ["n"]),
            OUT_OF_RANGE,
        ],
        _metadata(blob, "exact", {"origin": json.dumps(feats.origin.tolist())}),
        doc,
    )


def _float_weights(g: _Graph, blob: Blob, feats: FloatFeatures) -> tuple[str, np.ndarray]:
    """The blob's weight rows as a float32 (b', N) graph value (the INT4 levels Cast and scaled by
    ``feats.unit`` and the gains, constants onnxruntime folds) and the per-row bias (N,) float64: a linear
    model's constant feature φ̃ = [z, 1] contributes a per-row constant, added after the MatMul."""
    levels = blob.levels.astype(np.int64)  # (N, b)
    gains = gain_values(blob)
    bias = np.zeros(levels.shape[0])
    if feats.kind == KIND_LINEAR:
        bias = bias + feats.unit * gains[-1] * levels[:, -1]
        levels, gains = levels[:, :-1], gains[:-1]
    weights = g.op(
        "Mul",
        g.op("Cast", g.const(_int4(levels.T), ml_dtypes.int4, "levels"), to=TensorProto.FLOAT),
        g.const(feats.unit, np.float32, "unit"),
        hint="weights",
    )
    if blob.gains is not None:
        weights = g.op("Mul", weights, g.const(gains[:, None], np.float32, "gains"), hint="gained_weights")
    return weights, bias


def float_model(blob: Blob, feats: FloatFeatures, per_sample: bool = False) -> onnx.ModelProto:
    """The float graph: x float64 (n, d) in input units -> mean, variance float64 (n,) in target units
    [, samples float64 (n, S)].

    Precision: the first op subtracts ``feats.origin`` in float64 (so an input of 1e6 + [0, 10] keeps
    its digits), then the feature map and the ensemble run in float32 on values near the training data,
    and y_offset is added in float64 at the end.  The weights are ``blob.levels`` (the packed samples)
    as an INT4 initializer (b, S), turned into float32 by Cast and Mul (``feats.unit``): onnxruntime
    folds both into a float32 constant when it loads the file, and no optimisation level rewrites a
    float MatMul with lower precision (a DequantizeLinear(INT4) + MatMul pair would be fused into
    MatMulNBits with int8 activations at the default level).  The linear bias feature is folded into a
    per-sample bias.  Feature gains (IS §3.4) scale the weights' rows, g_i exact in float32 (a
    constant Mul that onnxruntime folds too).  Raises ValueError for levels outside [−8, 7].
    """
    g = _Graph()
    S, d = blob.n_samples, blob.n_inputs
    phi = _float_features(g, blob, feats)
    weights, bias = _float_weights(g, blob, feats)
    centred = g.op("MatMul", phi, weights, hint="centred")  # (n, S) float32, without y_offset
    if np.any(bias):
        centred = g.op("Add", centred, g.const(bias, np.float32, "bias"))
    f64 = TensorProto.DOUBLE
    y_offset = g.const(blob.y_offset, np.float64, "y_offset")
    if per_sample:
        g.output("Add", [g.op("Cast", centred, to=f64), y_offset], "samples")
    axis = g.const([1], np.int64, "axis")
    mean_k = g.op("ReduceMean", centred, axis, keepdims=1)
    mean_64 = g.op("Cast", g.op("Reshape", mean_k, g.const([-1], np.int64)), to=f64)
    g.output("Add", [mean_64, y_offset], "mean")
    dev = g.op("Sub", centred, mean_k)
    var_f = g.op("Cast", g.op("ReduceMean", g.op("Mul", dev, dev), axis, keepdims=0), to=f64)
    noise = noise_variance(blob)
    floor = floor_levels(blob)
    if floor is not None:  # IS §5: the grid's rounding floor, Σ (unit·g_i·φ_i)²·e_i, as the integer ensemble
        unit_sq = feats.unit**2 * gain_values(blob) ** 2 * floor
        if feats.kind == KIND_LINEAR:  # the constant feature (1 before unit and gain) is a constant term
            noise, unit_sq = noise + float(unit_sq[-1]), unit_sq[:-1]
        floor_f = g.op("MatMul", g.op("Mul", phi, phi), g.const(unit_sq, np.float32, "floor"), hint="floor_f")
        var_f = g.op("Add", var_f, g.op("Cast", floor_f, to=f64))
    g.output("Add", [var_f, g.const(noise, np.float64, "noise")], "variance")
    _real_out_of_range(g, blob)
    outputs = [
        helper.make_tensor_value_info("mean", f64, ["n"]),
        helper.make_tensor_value_info("variance", f64, ["n"]),
    ]
    if per_sample:
        outputs.append(helper.make_tensor_value_info("samples", f64, ["n", S]))
    outputs.append(OUT_OF_RANGE)
    doc = (
        "DIRECT Bayesian GLM, float graph: x (n, d) float64 in input units -> predictive mean and variance "
        "(n,) float64 in target units; the ensemble of S posterior samples of 4-bit weights; "
        "out_of_range (n,) bool: an input outside the training range."
    )
    return g.model(
        "direct_edge_float",
        [helper.make_tensor_value_info("x", f64, ["n", d])],
        outputs,
        _metadata(
            blob,
            "float",
            {"noise_variance": repr(noise_variance(blob)), "origin": json.dumps(feats.origin.tolist())},
        ),
        doc,
    )


def float_classifier_model(blob: Blob, feats: FloatFeatures) -> onnx.ModelProto:
    """The float graph of a classifier blob (MF §11): x float64 (n, d) in input units -> ``label``
    int64 (n,), ``proba`` float64 (n, C), ``entropy``, ``mutual_info`` float64 (n,) in nats,
    ``out_of_range`` bool (n,).  The same steps as :func:`float_model` up to the logits (origin
    subtracted in float64, then float32; the N = S·R weight rows as an INT4 initializer times
    ``feats.unit``, in logits), then per sample a float32 Softmax over the C logits ((0, z) for two
    classes), their mean over the S samples, its entropy, and the samples' mean entropy (IS §10 in float:
    the trainer's ``predict_proba`` and ``predict_uncertainty`` on the same samples)."""
    g = _Graph()
    C, d = blob.classes, blob.n_inputs
    R = 1 if C == 2 else C
    phi = _float_features(g, blob, feats)
    weights, bias = _float_weights(g, blob, feats)
    z = g.op("MatMul", phi, weights, hint="logits")  # (n, N) float32
    if np.any(bias):
        z = g.op("Add", z, g.const(bias, np.float32, "bias"))
    z = g.op("Reshape", z, g.const([-1, blob.n_samples // R, R], np.int64, "shape"))
    if R == 1:  # the logistic model: softmax(0, z)
        z = g.op("Concat", g.op("Mul", z, g.const(0.0, np.float32)), z, axis=2)
    p = g.op("Softmax", z, axis=2, hint="p")  # (n, S, C)

    def entropy(v: str) -> str:
        zero = g.const(0.0, np.float32)
        terms = g.op("Where", g.op("Greater", v, zero), g.op("Mul", v, g.op("Log", v)), zero)
        return g.op("Neg", g.op("ReduceSum", terms, g.const([-1], np.int64), keepdims=0))

    samples = g.const([1], np.int64, "samples_axis")
    mean = g.op("ReduceMean", p, samples, keepdims=0, hint="mean")
    f64 = TensorProto.DOUBLE
    g.output("ArgMax", [mean], "label", axis=1, keepdims=0, select_last_index=0)
    g.output("Cast", [mean], "proba", to=f64)
    h_total = entropy(mean)
    h_expected = g.op("ReduceMean", entropy(p), samples, keepdims=0)
    g.output("Cast", [h_total], "entropy", to=f64)
    mi = g.op("Max", g.op("Sub", h_total, h_expected), g.const(0.0, np.float32))
    g.output("Cast", [mi], "mutual_info", to=f64)
    _real_out_of_range(g, blob)
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        helper.make_tensor_value_info("proba", f64, ["n", C]),
        helper.make_tensor_value_info("entropy", f64, ["n"]),
        helper.make_tensor_value_info("mutual_info", f64, ["n"]),
        OUT_OF_RANGE,
    ]
    doc = (
        "DIRECT Bayesian classifier, float graph: x (n, d) float64 in input units -> label, proba (n, C) "
        "(the average of S posterior samples' softmax), entropy and mutual_info (n,) in nats; "
        "out_of_range (n,) bool: an input outside the training range."
    )
    extra = {"origin": json.dumps(feats.origin.tolist()), "classes": json.dumps(blob.meta.get("classes"))}
    return g.model(
        "direct_edge_float_classifier",
        [helper.make_tensor_value_info("x", f64, ["n", d])],
        outputs,
        _metadata(blob, "float", extra),
        doc,
    )


# ---- MF §10: a raw-column front end for the float graphs -------------------------------------------


def raw_front_end(model: onnx.ModelProto, schema) -> onnx.ModelProto:
    """The float graph ``model`` (input x (n, d)) with a front end that takes the raw columns of
    ``schema`` instead (docs/model-format.md §10): input ``raw`` float64 (n, c), column j a number in
    input units, a categorical column's level code (0 .. L − 1, in the schema's level order) or NaN for a
    missing value.  Slice per column; numeric: the value, and with mean-indicator imputation
    Where(IsNaN, fill, value) and Cast(IsNaN) as the indicator; categorical: Equal against the codes
    0 .. L − 1, Cast (one-hot); Concat -> x.  A new output ``refused`` bool (n,) marks the rows the
    host refuses (a code that is not a level, NaN where the column takes no missing value, an infinity);
    their other outputs are meaningless.  The x the graph computes equals ``runtime.schema.prepare`` of
    the same row bit for bit (the same float64 values), so the graph keeps its accuracy statement."""
    from direct_edge.runtime import schema as input_schema

    g = _Graph("raw_")
    f64 = TensorProto.DOUBLE
    parts, refused = [], []
    axis1 = g.const([1], np.int64, "axis1")
    for j, c in enumerate(schema.columns):
        col = g.op("Slice", "raw", g.const([j], np.int64), g.const([j + 1], np.int64), axis1, hint=f"col{j}")
        nan = g.op("IsNaN", col)
        if c.kind == input_schema.CATEGORICAL:
            codes = g.const(np.arange(len(c.levels), dtype=np.float64)[None, :], np.float64, "codes")
            hit = g.op("Equal", col, codes)
            parts.append(g.op("Cast", hit, to=f64, hint="one_hot"))
            seen = g.op("ReduceMax", g.op("Cast", hit, to=TensorProto.INT32), axis1, keepdims=1)
            refused.append(g.op("Not", g.op("Cast", seen, to=TensorProto.BOOL)))
            continue
        inf = g.op("IsInf", col)
        if c.missing == input_schema.MEAN_INDICATOR:
            parts.append(g.op("Where", nan, g.const([[c.fill]], np.float64, "fill"), col, hint="imputed"))
            parts.append(g.op("Cast", nan, to=f64, hint="indicator"))
            refused.append(inf)
        else:
            parts.append(col)
            refused.append(g.op("Or", nan, inf))
    g.nodes.append(helper.make_node("Concat", parts, ["x"], axis=1))
    any_refused = refused[0]
    for r in refused[1:]:
        any_refused = g.op("Or", any_refused, r)
    g.output("Reshape", [any_refused, g.const([-1], np.int64, "flat")], "refused")

    graph = model.graph
    front = helper.make_graph(
        g.nodes + list(graph.node),
        graph.name + "_raw",
        [helper.make_tensor_value_info("raw", f64, ["n", len(schema.columns)])],
        list(graph.output) + [helper.make_tensor_value_info("refused", TensorProto.BOOL, ["n"])],
        g.inits + list(graph.initializer),
        doc_string=graph.doc_string
        + " Input raw (n, c) float64: the raw columns (numbers, level codes, NaN for missing); refused (n,)"
        " bool: a row the model refuses.",
    )
    out = helper.make_model(
        front,
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
    )
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(
        columns=json.dumps(schema.column_names),
        levels=json.dumps({c.name: list(c.levels) for c in schema.columns if c.levels}),
        input_names=json.dumps(schema.input_names),
    )
    helper.set_model_props(out, meta)
    onnx.checker.check_model(out, full_check=True)
    return out


# ---- integer graph (IS §3–§5) --------------------------------------------------------------------


def _round_shift(g: _Graph, x: str, s: int) -> str:
    """IS §1 round_shift on int64: ⌊(x + 2^(s−1)) / 2^s⌋.

    ONNX int Div truncates toward zero and BitShift takes unsigned types only, so the floor of a signed
    quotient is written exactly as (y − y mod 2^s) / 2^s: Mod with fmod=0 takes the divisor's sign
    (so y mod 2^s ∈ [0, 2^s)) and the division of an exact multiple cannot truncate.
    """
    if s == 0:
        return x
    y = g.op("Add", x, g.const(1 << (s - 1), np.int64, "half"))
    div = g.const(1 << s, np.int64, "pow2")
    return g.op("Div", g.op("Sub", y, g.op("Mod", y, div, fmod=0)), div, hint="round_shift")


def _sin16_tables(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IS §3.3 folded into 1024-entry tables indexed by u = t >> 22: (y0, y1 − y0, sign), int64.

    Exact rewriting of the quadrant logic: for each u the spec's (y0, y1) and the sign are fixed, so
    one Gather per table replaces the branches; the sign stays separate because it applies after the
    interpolation's rounding.
    """
    T = table.astype(np.int64)
    u = np.arange(1024)
    qd, i = u >> 8, u & 0xFF
    odd = (qd & 1).astype(bool)
    y0 = np.where(odd, T[256 - i], T[i])
    y1 = np.where(odd, T[np.maximum(255 - i, 0)], T[np.minimum(i + 1, 256)])
    return y0, y1 - y0, np.where(qd >= 2, -1, 1)


def _sin16(g: _Graph, t: str, tables: tuple[np.ndarray, np.ndarray, np.ndarray]) -> str:
    """IS §3.3 on phases ``t`` (int64 holding u32 turns, so ≥ 0 and Div is the right shift)."""
    y0, dy, sign = tables
    u = g.op("Div", t, g.const(1 << 22, np.int64), hint="u")
    f = g.op("BitwiseAnd", g.op("Div", t, g.const(1 << 7, np.int64)), g.const(0x7FFF, np.int64), hint="f")
    start = g.op("Gather", g.wide(y0, np.int16, "y0_table"), u, axis=0)
    step = g.op("Gather", g.wide(dy, np.int32, "dy_table"), u, axis=0)
    v = g.op("Add", start, _round_shift(g, g.op("Mul", step, f), 15))
    return g.op("Mul", v, g.op("Gather", g.wide(sign, np.int8, "sign_table"), u, axis=0), hint="sin16")


def _features(g: _Graph, blob: Blob, q: str) -> str:
    """IS §3: int64 φ (n, b) (the linear bias feature excluded: it is folded into the accumulator),
    with feature gains the φ' of IS §3.4."""
    phi = _ungained_features(g, blob, q)
    if blob.gains is None:
        return phi
    G = blob.gains[:-1] if blob.kind == KIND_LINEAR else blob.gains
    return _round_shift(g, g.op("Mul", phi, g.wide(G, np.uint16, "G")), 15)


def _ungained_features(g: _Graph, blob: Blob, q: str) -> str:
    """IS §3.1–§3.3: int64 φ (n, b) (linear: without the bias feature)."""
    if blob.kind == KIND_LINEAR:
        affine = g.op(
            "Add",
            g.op("Mul", q, g.wide(blob.linear_m, np.int32, "M")),
            g.wide(blob.linear_b, np.int32, "B"),
        )
        return _round_shift(g, affine, 15)
    # IS §3.2: the exact sum in int64 (|W·q| < 2^46·d), then the u32 wrap as a mask.
    mask = g.const(0xFFFFFFFF, np.int64, "u32_mask")
    dot = g.op("MatMul", q, g.wide(blob.phase_w.T, np.int32, "W"))
    t = g.op("BitwiseAnd", g.op("Add", dot, g.wide(blob.phase_c, np.uint32, "C")), mask, hint="t")
    t_cos = g.op("BitwiseAnd", g.op("Add", t, g.const(1 << 30, np.int64, "quarter")), mask)
    # cos16 for all j, then sin16 for all j: the trainer's order, in one pass over (n, 2F) phases.
    phi = _sin16(g, g.op("Concat", t_cos, t, axis=1, hint="phases"), _sin16_tables(blob.table))
    return phi if blob.rotation is None else _rotate(g, blob, phi)


def _rotate(g: _Graph, blob: Blob, phi: str) -> str:
    """IS §3.5 on int64 φ (n, b): acc = φ·Rᵀ (an int64 MatMul, exact: |acc| < b·2^30 < 2^46),
    ψ_k = clamp(round_shift(acc_k, 15 + s_k), −32767, 32767) with a shift per column (the
    :func:`_round_shift` identity with per-column constants: Mod's result takes the divisor's sign)."""
    acc = g.op("MatMul", phi, g.wide(blob.rotation.T, np.int16, "R"), hint="rotation_acc")
    shift = ROTATION_SHIFT + blob.rotation_shift.astype(np.int64)
    y = g.op("Add", acc, g.const(np.left_shift(1, shift - 1), np.int64, "rotation_half"))
    div = g.const(np.left_shift(1, shift), np.int64, "rotation_pow2")
    psi = g.op("Div", g.op("Sub", y, g.op("Mod", y, div, fmod=0)), div, hint="rotation_round")
    psi = g.op("Max", psi, g.const(-PHI_MAX, np.int64, "psi_min"))
    return g.op("Min", psi, g.const(PHI_MAX, np.int64, "psi_max"), hint="psi")


def _mulshift96(g: _Graph, num: str, m2: int, s2: int) -> str:
    """IS §5 mulshift96 on uint64, exactly as the spec writes it (two 32×32-bit products, shifts)."""
    m = g.const(m2, np.uint64, "M2")
    lo = g.op("Mul", g.op("BitwiseAnd", num, g.const(0xFFFFFFFF, np.uint64)), m, hint="lo")
    hi = g.op("Mul", g.op("BitShift", num, g.const(32, np.uint64), direction="RIGHT"), m, hint="hi")
    total = g.op(
        "Add",
        g.op("Add", hi, g.op("BitShift", lo, g.const(32, np.uint64), direction="RIGHT")),
        g.const(1 << (s2 - 33), np.uint64, "round"),
    )
    return g.op("BitShift", total, g.const(s2 - 32, np.uint64), direction="RIGHT", hint="var_q")


def _edge(g: _Graph, blob: Blob, q: str) -> str:
    """IS §2.1 for int16 inputs q (n, d) int64: the output ``out_of_range`` (n,) bool, an input at
    −32768 or 32767 (at or beyond the edge; a prepared model's one-hot inputs not counted)."""
    # IS §2.1 for int16 inputs: an input at −32768 or 32767 (at or beyond the edge).
    values = q
    if blob.schema is not None and not blob.schema.plain:  # one-hot and indicator inputs sit at an edge
        picked = np.flatnonzero(blob.schema.value_inputs)
        # no numeric input: compare a column of zeros (never at an edge)
        values = (
            g.op("Gather", q, g.const(picked, np.int64, "value_inputs"), axis=1)
            if len(picked)
            else g.op(
                "Mul",
                g.op("Slice", q, g.const([0], np.int64), g.const([1], np.int64), g.const([1], np.int64)),
                g.const(0, np.int64, "zero"),
            )
        )
    at_min = g.op("Equal", values, g.const(-32768, np.int64, "q_min"))
    return _out_of_range(g, g.op("Or", at_min, g.op("Equal", values, g.const(32767, np.int64, "q_max"))))


def _sample_outputs(g: _Graph, blob: Blob, q: str, phi: str | None = None) -> str:
    """IS §3–§4: int64 q (n, d) -> the pre-shifted per-row outputs a (n, N) int64: one int32 MatMul of
    φ (n, b) with the levels (b, N) stored as an INT4 initializer (exact: IS §9 bounds every partial
    sum by L·32767 < 2^31); a linear model's bias feature is a per-row constant.  ``phi``: the
    features of :func:`_features` when the caller has them already."""
    phi = _features(g, blob, q) if phi is None else phi
    levels = blob.levels.astype(np.int64)
    bias = None
    if blob.kind == KIND_LINEAR:
        # The bias feature φ_d = 2^Fφ (φ'_d with gains) contributes w_sd·φ_d to acc_s: a per-sample constant.
        phi_d = 1 << blob.feature_frac
        if blob.gains is not None:
            phi_d = round_shift(phi_d * int(blob.gains[-1]), 15)
        bias = levels[:, -1] * phi_d
        levels = levels[:, :-1]
    w = g.op("Cast", g.const(_int4(levels.T), ml_dtypes.int4, "levels"), to=TensorProto.INT32, hint="w")
    acc = g.op("MatMul", g.op("Cast", phi, to=TensorProto.INT32), w, hint="acc32")
    acc = g.op("Cast", acc, to=TensorProto.INT64, hint="acc")
    if bias is not None:
        acc = g.op("Add", acc, g.const(bias, np.int64, "bias"))
    a = _round_shift(g, acc, blob.pre_shift)  # IS §4
    return a


def _floor(g: _Graph, blob: Blob, phi: str) -> str:
    """IS §5's floor_q (n,) uint64: §6's variance sum Σ_i eq_i·((φ_i·φ_i) >> 15) on the floors eq, then
    its shift.  ``phi``: :func:`_features` (a linear model's bias feature, excluded there, is a constant
    term).  Exact in int64: each term < 2^31, b < 2^16."""
    eq = blob.floor.astype(np.int64)
    bias = 0
    if blob.kind == KIND_LINEAR:
        phi_d = 1 << blob.feature_frac
        if blob.gains is not None:
            phi_d = round_shift(phi_d * int(blob.gains[-1]), 15)
        bias, eq = int(eq[-1]) * ((phi_d * phi_d) >> 15), eq[:-1]
    # φ² ≥ 0, so Div by 2^15 (truncating) is the spec's right shift.
    sq = g.op("Div", g.op("Mul", phi, phi), g.const(1 << 15, np.int64, "pow15"), hint="sq")
    v = g.op("ReduceSum", g.op("Mul", sq, g.const(eq, np.int64, "eq")), g.const([1], np.int64), keepdims=0)
    v = g.op(
        "Cast", g.op("Add", v, g.const(bias, np.int64, "eq_bias")), to=TensorProto.UINT64, hint="floor_v"
    )
    r2 = 2 * blob.pre_shift
    if r2 >= 5:
        v = g.op("Add", v, g.const(1 << (r2 - 6), np.uint64, "half")) if r2 > 5 else v
        return g.op("BitShift", v, g.const(r2 - 5, np.uint64), direction="RIGHT", hint="floor_q")
    return g.op("BitShift", v, g.const(5 - r2, np.uint64), direction="LEFT", hint="floor_q")


def integer_model(blob: Blob, per_sample: bool = False) -> onnx.ModelProto:
    """IS §3–§5 as integer ONNX ops: q int16 (n, d) -> mean_q int32, var_q uint64, var_y_q uint64 (n,)
    [, samples_q int32 (n, S): the pre-shifted a_s of IS §4].

    The ensemble is one int32 MatMul of φ (n, b) with the levels (b, S) stored as an INT4 initializer
    and Cast to int32.  Why not MatMulInteger: it takes 8-bit inputs only and φ is int16; int32 is exact
    because IS §9 bounds every partial sum by L·32767 < 2^31.  The bounds also keep every int64
    intermediate exact (|ΣA·M1| < 2^62, S·ΣA2 < 2^62), and uint64 holds IS §5's u64 steps.
    """
    g = _Graph()
    S = blob.n_samples
    q = g.op("Cast", "q", to=TensorProto.INT64, hint="q64")
    phi = _features(g, blob, q)
    a = _sample_outputs(g, blob, q, phi)
    if per_sample:
        g.output("Cast", [a], "samples_q", to=TensorProto.INT32)
    axis = g.const([1], np.int64, "axis")
    sum_a = g.op("ReduceSum", a, axis, keepdims=0, hint="sum_a")
    sum_a2 = g.op("ReduceSum", g.op("Mul", a, a), axis, keepdims=0, hint="sum_a2")
    mean = _round_shift(g, g.op("Mul", sum_a, g.const(blob.m1, np.int64, "M1")), blob.s1)
    g.output("Cast", [mean], "mean_q", to=TensorProto.INT32)
    num = g.op("Sub", g.op("Mul", sum_a2, g.const(S, np.int64, "S")), g.op("Mul", sum_a, sum_a), hint="num")
    var = _mulshift96(g, g.op("Cast", num, to=TensorProto.UINT64), blob.m2, blob.s2)
    if blob.has_floor:
        var = g.op("Add", var, _floor(g, blob, phi), hint="var_q_floor")
    g.output("Identity", [var], "var_q")
    g.output("Add", [var, g.const(blob.noise_q, np.uint64, "noise_q")], "var_y_q")
    _edge(g, blob, q)
    outputs = [
        helper.make_tensor_value_info("mean_q", TensorProto.INT32, ["n"]),
        helper.make_tensor_value_info("var_q", TensorProto.UINT64, ["n"]),
        helper.make_tensor_value_info("var_y_q", TensorProto.UINT64, ["n"]),
    ]
    if per_sample:
        outputs.append(helper.make_tensor_value_info("samples_q", TensorProto.INT32, ["n", S]))
    outputs.append(OUT_OF_RANGE)
    doc = (
        "DIRECT Bayesian GLM, integer graph (docs/integer-spec.md v1): q (n, d) int16 -> mean_q int32, "
        "var_q and var_y_q uint64; target units: mean = y_offset + mean_scale*mean_q, "
        "sd = mean_scale*sqrt(var_y_q) (metadata mean_scale, y_offset); out_of_range (n,) bool: an input "
        "at -32768 or 32767, at or beyond the training range's edge."
    )
    return g.model(
        "direct_edge_integer",
        [helper.make_tensor_value_info("q", TensorProto.INT16, ["n", blob.n_inputs])],
        outputs,
        _metadata(blob, "integer", {"pre_shift": str(blob.pre_shift)}),
        doc,
    )


# ---- integer classifier graph (IS §10) ------------------------------------------------------------


def _div_pow2(g: _Graph, x: str, s: int) -> str:
    """⌊x / 2^s⌋ for int64 x ≥ 0 (Div truncates, which is the floor of a non-negative quotient)."""
    return g.op("Div", x, g.const(1 << s, np.int64, "pow2"))


def _exp2_neg(g: _Graph, delta: str) -> str:
    """IS §10.2 EXP on int64 δ in [0, 2^23): the table and the interpolation by Gather, then the shift
    by n = δ >> 16 as a division by a table of powers of two (2^40 for n ≥ 32, where EXP is 0 because
    v ≤ 2^16, with no rounding constant: exactly the spec's 0)."""
    from direct_edge.runtime.classify import EXP_TABLE

    n = _div_pow2(g, delta, 16)
    f = g.op("BitwiseAnd", delta, g.const(0xFFFF, np.int64))
    i = _div_pow2(g, f, 8)
    t = g.op("BitwiseAnd", f, g.const(0xFF, np.int64))
    table = g.wide(EXP_TABLE, np.uint32, "exp_table")
    x0 = g.op("Gather", table, i, axis=0)
    x1 = g.op("Gather", table, g.op("Add", i, g.const(1, np.int64)), axis=0)
    step = g.op("Add", g.op("Mul", g.op("Sub", x0, x1), t), g.const(128, np.int64))
    v = g.op("Sub", x0, _div_pow2(g, step, 8), hint="v")
    k = np.arange(128)
    pow2 = np.where(k < 32, 2.0**k, 2.0**40).astype(np.int64)
    half = np.where((k >= 1) & (k < 32), 2.0 ** (k - 1), 0).astype(np.int64)
    num = g.op("Add", v, g.op("Gather", g.const(half, np.int64, "half_table"), n, axis=0))
    return g.op("Div", num, g.op("Gather", g.const(pow2, np.int64, "pow2_table"), n, axis=0), hint="exp")


def _log2_fixed(g: _Graph, x: str) -> str:
    """IS §10.2 LOG on int64 x in [1, 2^32): n, the highest set bit, by a five-step binary search;
    u = ⌊x·2^16 / 2^n⌋ (the spec's two cases in one exact division); then the table."""
    from direct_edge.runtime.classify import LOG_TABLE

    pow2 = g.const(2 ** np.arange(32, dtype=np.int64), np.int64, "pow2_n")
    n = g.op("Mul", x, g.const(0, np.int64))
    for k in (16, 8, 4, 2, 1):  # binary search: n + k ≤ 31 throughout
        candidate = g.op("Add", n, g.const(k, np.int64))
        above = g.op("GreaterOrEqual", x, g.op("Gather", pow2, candidate, axis=0))
        n = g.op("Where", above, candidate, n, hint="bit")
    u = g.op("Div", g.op("Mul", x, g.const(1 << 16, np.int64)), g.op("Gather", pow2, n, axis=0))
    f = g.op("Sub", u, g.const(1 << 16, np.int64))
    i = _div_pow2(g, f, 8)
    t = g.op("BitwiseAnd", f, g.const(0xFF, np.int64))
    table = g.wide(LOG_TABLE, np.uint32, "log_table")
    y0 = g.op("Gather", table, i, axis=0)
    y1 = g.op("Gather", table, g.op("Add", i, g.const(1, np.int64)), axis=0)
    step = _div_pow2(g, g.op("Add", g.op("Mul", g.op("Sub", y1, y0), t), g.const(128, np.int64)), 8)
    return g.op("Add", g.op("Add", g.op("Mul", n, g.const(1 << 16, np.int64)), y0), step, hint="log")


def _entropy(g: _Graph, p: str) -> str:
    """IS §10.4 H over the last axis of int64 probabilities p, clamped to 2^20."""
    logs = _log2_fixed(g, g.op("Max", p, g.const(1, np.int64)))
    terms = g.op("Mul", p, g.op("Sub", g.const(1 << 20, np.int64), logs))
    terms = g.op("Where", g.op("Greater", p, g.const(0, np.int64)), terms, g.const(0, np.int64))
    total = g.op("ReduceSum", terms, g.const([-1], np.int64), keepdims=0)
    h = _div_pow2(g, g.op("Add", total, g.const(1 << 15, np.int64)), 16)
    return g.op("Min", h, g.const(1 << 20, np.int64), hint="entropy")


def integer_classifier_model(blob: Blob) -> onnx.ModelProto:
    """IS §10 as integer ONNX ops for a classifier blob (MF §11): q int16 (n, d) -> ``label`` int64 (n,),
    ``proba`` int32 (n, C) in units of 2^-16, ``entropy``, ``expected_entropy``, ``mutual_info`` int32
    (n,) in units of 2^-16 bits, ``out_of_range`` bool (n,); bit-exact with runtime/classify.py.

    Every intermediate is int64 and stays within IS §10.6's bounds; the logit's round_shift may be of a
    negative value (:func:`_round_shift`), every other shift is of a non-negative one (Div)."""
    C = blob.classes
    R = 1 if C == 2 else C
    S = blob.n_samples // R
    g = _Graph()
    q = g.op("Cast", "q", to=TensorProto.INT64, hint="q64")
    a = _sample_outputs(g, blob, q)  # (n, S·R)
    ell = _round_shift(g, g.op("Mul", a, g.const(blob.logit_mult, np.int64, "Mz")), blob.logit_shift)
    ell = g.op("Reshape", ell, g.const([-1, S, R], np.int64, "shape"), hint="logits")
    if R == 1:  # the logistic model: (0, z)
        ell = g.op("Concat", g.op("Mul", ell, g.const(0, np.int64)), ell, axis=2)
    last = g.const([-1], np.int64, "last")
    top = g.op("ReduceMax", ell, last, keepdims=1)
    d_max = g.const(1 << 22, np.int64, "D")
    delta = g.op("Min", g.op("Sub", top, ell), d_max, hint="delta")
    total = g.op("ReduceSum", _exp2_neg(g, delta), last, keepdims=0)
    lam = g.op("Sub", _log2_fixed(g, total), g.const(1 << 20, np.int64), hint="lambda")
    arg = g.op("Min", g.op("Add", delta, g.op("Unsqueeze", lam, last)), d_max)
    p = _exp2_neg(g, arg)  # (n, S, C)
    m1 = g.const(blob.m1, np.int64, "M1")
    half = g.const(1 << (blob.s1 - 1), np.int64, "half_s1")
    axis1 = g.const([1], np.int64, "samples_axis")
    mean = _div_pow2(g, g.op("Add", g.op("Mul", g.op("ReduceSum", p, axis1, keepdims=0), m1), half), blob.s1)
    mean = g.op("Min", mean, g.const(1 << 16, np.int64), hint="mean")  # IS §10.3: a probability whatever M1
    g.output("ArgMax", [mean], "label", axis=1, keepdims=0, select_last_index=0)
    g.output("Cast", [mean], "proba", to=TensorProto.INT32)
    h_total = _entropy(g, mean)
    sum_h = g.op("ReduceSum", _entropy(g, p), axis1, keepdims=0)
    h_expected = _div_pow2(g, g.op("Add", g.op("Mul", sum_h, m1), half), blob.s1)
    h_expected = g.op("Min", h_expected, g.const(1 << 20, np.int64), hint="expected_entropy")
    mi = g.op("Max", g.op("Sub", h_total, h_expected), g.const(0, np.int64))
    g.output("Cast", [h_total], "entropy", to=TensorProto.INT32)
    g.output("Cast", [h_expected], "expected_entropy", to=TensorProto.INT32)
    g.output("Cast", [mi], "mutual_info", to=TensorProto.INT32)
    _edge(g, blob, q)
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        helper.make_tensor_value_info("proba", TensorProto.INT32, ["n", C]),
        helper.make_tensor_value_info("entropy", TensorProto.INT32, ["n"]),
        helper.make_tensor_value_info("expected_entropy", TensorProto.INT32, ["n"]),
        helper.make_tensor_value_info("mutual_info", TensorProto.INT32, ["n"]),
        OUT_OF_RANGE,
    ]
    doc = (
        "DIRECT Bayesian classifier, integer graph (docs/integer-spec.md §10): q (n, d) int16 -> label, "
        "proba (n, C) in units of 2^-16, entropy, expected_entropy, mutual_info in units of 2^-16 bits; "
        "out_of_range (n,) bool: an input at -32768 or 32767."
    )
    meta = _metadata(
        blob, "integer", {"pre_shift": str(blob.pre_shift), "classes": json.dumps(blob.meta.get("classes"))}
    )
    return g.model(
        "direct_edge_integer_classifier",
        [helper.make_tensor_value_info("q", TensorProto.INT16, ["n", blob.n_inputs])],
        outputs,
        meta,
        doc,
    )


def to_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def session(data: bytes):
    """An onnxruntime CPU session for exported bytes with default options (every graph optimisation;
    the float graphs hold their bound at every level), one intra-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
