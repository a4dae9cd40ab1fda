"""TFLite export, written without TensorFlow (the flatbuffers object API of ai-edge-litert's schema).

One graph, every op in both LiteRT and TensorFlow Lite Micro (docs/export.md has the picture):

    q int16 (n, d) ─DEQUANTIZE─► float32 ─FULLY_CONNECTED (float)─► θ or z ─[COS, SIN, CONCATENATION]─►
    φ̃ float32 ─QUANTIZE─► features_q ─FULLY_CONNECTED (integer)─► samples_q (n, S) ─DEQUANTIZE─►
    MEAN, SQUARED_DIFFERENCE, MEAN, MUL, ADD, RESHAPE ─► mean, variance float32 (n,) in target units

The inputs are the integer spec's int16 inputs (IS §2), so the host quantises exactly as for the C
runtime.  Two integer modes, because of what the runtimes accept (measured, docs/export.md):

* ``activations=16`` (default): 16x8 mode, int16 features, int8 weights (the levels), int64 bias, int16
  per-sample outputs.  TFLite Micro's FULLY_CONNECTED needs input and output of one type and takes INT4
  filters only with int8 inputs, so the levels are stored one per byte here.
* ``activations=8``: int8 features, INT4 per-tensor weights packed 2 per byte (low nibble first,
  validated after packing), int32 bias, int8 per-sample outputs: half the weight bytes, but each sample's
  output keeps only 8 bits (see :func:`error_bound`).

The integer FULLY_CONNECTED requantises with a power-of-two multiplier 2^−k (output scale = feature
scale · 2^k, weight scale 1), so every runtime computes acc/2^k of the exact int32/int64 accumulator,
rounded by its own convention; :func:`integer_part` reproduces each convention bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from direct_edge import __version__
from direct_edge.export.onnx_export import FloatFeatures, noise_variance
from direct_edge.runtime.blob import KIND_LINEAR, Blob

_T = schema.TensorType
_OP = schema.BuiltinOperator
_OPT = schema.BuiltinOptions
F32_EPS = 2.0**-24  # float32 unit roundoff


@dataclass(frozen=True)
class IntegerPart:
    """The quantised ensemble of a TFLite export: everything :func:`integer_part` needs.

    ``levels``: (S, b') int8 (b' = b − 1 for linear: the bias feature is in ``bias_q``);
    ``bias_q``: (S,) int64 in units of the feature scale; ``feature_scale``: s_φ (float32 value);
    ``out_shift``: k, the output scale is s_φ·2^k; ``activations``: 8 or 16.
    """

    levels: np.ndarray
    bias_q: np.ndarray
    feature_scale: float
    out_shift: int
    activations: int

    @property
    def qmax(self) -> int:
        return (1 << (self.activations - 1)) - 1


def _q_features(blob: Blob, feats: FloatFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The float feature map re-expressed on the int16 inputs q (x = scale·(q − zero)): (gain, shift)."""
    scale, zero = blob.input_scale, blob.input_zero
    if feats.kind == KIND_LINEAR:
        return feats.gain * scale, feats.shift - feats.gain * scale * zero
    gain = feats.gain * scale[:, None]  # (d, F)
    return gain, np.remainder(feats.shift - (scale * zero) @ feats.gain, 2 * math.pi)


def _float32(value: float) -> float:
    return float(np.float32(value))


def integer_parameters(blob: Blob, feats: FloatFeatures, activations: int = 16) -> IntegerPart:
    """Choose the feature scale, the bias and the output shift k (the smallest with no clamping)."""
    if activations not in (8, 16):
        raise ValueError("activations must be 8 or 16")
    qmax = (1 << (activations - 1)) - 1
    levels = blob.levels.astype(np.int64)
    if feats.kind == KIND_LINEAR:
        gain, shift = _q_features(blob, feats)
        zmax = float(np.max(np.abs(gain) * 32768 + np.abs(shift)))
        s_phi = _float32(max(zmax, 1.0) / qmax * (1 + 1e-6))
        bias = np.rint(levels[:, -1] / s_phi).astype(np.int64)  # the constant feature 1
        levels = levels[:, :-1]
    else:
        s_phi = _float32(1.0 / qmax)  # |cos|, |sin| ≤ 1
        bias = np.zeros(len(levels), dtype=np.int64)
    worst = int((np.abs(levels).sum(axis=1) * qmax + np.abs(bias)).max())
    k = 0
    while worst > qmax << k:  # round_shift(worst, k) ≤ qmax: no clamping anywhere
        k += 1
    return IntegerPart(levels.astype(np.int8), bias, s_phi, k, activations)


ROUNDINGS = ("half_up", "half_away", "double")


def _double_rounding(acc: np.ndarray, k: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul(acc, 2^30) then RoundingDivideByPOT(·, k − 1)."""
    prod = acc * (1 << 30)
    x = prod + np.where(prod >= 0, 1 << 30, 1 - (1 << 30))
    x = np.where(x >= 0, x >> 31, -((-x) >> 31))  # C's truncating division by 2^31
    mask = (1 << (k - 1)) - 1
    return (x >> (k - 1)) + ((x & mask) > (mask >> 1) + (x < 0))


def integer_part(part: IntegerPart, features_q: np.ndarray, rounding: str = "half_up") -> np.ndarray:
    """samples_q (n, S) int64: the exact accumulator features_q · levelsᵀ + bias divided by 2^k and
    clamped to the output type, rounded as a runtime does (measured, docs/export.md):

    ``half_up``: IS §1 round_shift (TFLite Micro's 16x8 kernel); ``half_away``: ties away from zero
    (LiteRT 2.3's reference kernels); ``double``: gemmlowp double rounding (TFLite Micro's int8 kernel).
    The three differ only where acc/2^k is within one output step of a tie, by at most 1.
    """
    acc = np.asarray(features_q, dtype=np.int64) @ part.levels.astype(np.int64).T + part.bias_q
    k = part.out_shift
    if k == 0:
        out = acc
    elif rounding == "half_up":
        out = (acc + (1 << (k - 1))) >> k
    elif rounding == "half_away":
        out = np.sign(acc) * ((np.abs(acc) + (1 << (k - 1))) >> k)
    elif rounding == "double":
        out = _double_rounding(acc, k)
    else:
        raise ValueError(f"rounding must be one of {ROUNDINGS}")
    return np.clip(out, -part.qmax - 1, part.qmax)


def float_features(blob: Blob, feats: FloatFeatures, q: np.ndarray) -> np.ndarray:
    """φ̃ of the graph in float64 on int16 inputs q (n, d): (n, b') (linear: without the bias feature)."""
    gain, shift = _q_features(blob, feats)
    qf = np.asarray(q, dtype=np.float64)
    if feats.kind == KIND_LINEAR:
        return qf * gain + shift
    theta = qf @ gain + shift
    return np.concatenate([np.cos(theta), np.sin(theta)], axis=1)


def error_bound(blob: Blob, feats: FloatFeatures, part: IntegerPart) -> float:
    """Bound on |mean − mean_float64| and |sd − sd_float64| in target units, on any int16 inputs.

    Per sample, in units of s_φ: each feature is off by at most ½ (QUANTIZE) plus its float32 error
    ε_f/s_φ; the bias by ½ (linear); the output rounding by 2^(k−1)·2 (2^(k−1) for single rounding, and
    up to one more output step for the double rounding of TFLite Micro).  The ensemble mean and sd are
    1-Lipschitz in the max-norm of the per-sample outputs; then the float32 tail (2^−18 of the range).
    """
    gain, shift = _q_features(blob, feats)
    d = blob.n_inputs
    if feats.kind == KIND_LINEAR:
        eps_f = 4 * F32_EPS * float(np.max(np.abs(gain) * 32768 + np.abs(shift)))
    else:
        phase = float(np.max(np.abs(gain).sum(axis=0) * 32768 + np.abs(shift)))
        eps_f = (d + 3) * F32_EPS * phase + 4 * F32_EPS  # phase sum, then cos/sin
    s = part.feature_scale
    L = float(np.abs(part.levels.astype(np.int64)).sum(axis=1).max())
    per_sample = L * (0.5 + eps_f / s) + (0.5 if feats.kind == KIND_LINEAR else 0.0)
    per_sample += (2.0 ** (part.out_shift - 1)) * 2 if part.out_shift else 1.0
    unit = feats.unit * s
    largest = unit * 2.0**part.out_shift * part.qmax  # the largest per-sample value, target units
    return unit * per_sample + 2.0**-18 * (largest + abs(blob.y_offset))


# ---- flatbuffer writing ---------------------------------------------------------------------------


def pack_int4(values: np.ndarray) -> bytes:
    """INT4 tensor data: 2 values per byte, low nibble first (the LiteRT/TFLM convention)."""
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise ValueError("values outside the 4-bit range [-8, 7]")
    nib = (flat & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: ``count`` int8 values."""
    raw = np.frombuffer(data, dtype=np.uint8)
    nib = np.empty(2 * raw.size, dtype=np.int16)
    nib[0::2], nib[1::2] = raw & 0xF, raw >> 4
    return ((nib[:count] ^ 8) - 8).astype(np.int8)


class _Builder:
    """Tensors, buffers and operators of one subgraph (buffer 0 is the empty sentinel)."""

    def __init__(self) -> None:
        self.tensors: list = []
        self.buffers = [schema.BufferT()]
        self.operators: list = []
        self.codes: dict[int, int] = {}

    def tensor(self, name, shape, ttype, data: bytes | None = None, scale=None, zero=0, dynamic=False) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type = name, list(shape), ttype
        if dynamic:
            t.shapeSignature = [-1, *shape[1:]]
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(data, dtype=np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            qp = schema.QuantizationParametersT()
            qp.scale, qp.zeroPoint = [float(scale)], [int(zero)]
            t.quantization = qp
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name, array: np.ndarray, ttype, scale=None) -> int:
        array = np.ascontiguousarray(array)
        return self.tensor(name, array.shape, ttype, array.tobytes(), scale)

    def op(self, code: int, inputs, outputs, options_type: int = 0, options=None) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes[code], list(inputs), list(outputs)
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def finish(self, inputs, outputs, description: str, meta: dict[str, str]) -> bytes:
        sub = schema.SubGraphT()
        sub.tensors, sub.inputs, sub.outputs, sub.operators, sub.name = (
            self.tensors,
            list(inputs),
            list(outputs),
            self.operators,
            "main",
        )
        codes = []
        for code in sorted(self.codes, key=self.codes.get):
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            codes.append(oc)
        model = schema.ModelT()
        model.version, model.operatorCodes, model.subgraphs = 3, codes, [sub]
        model.description = description
        model.buffers = self.buffers
        model.metadata = []
        for key, value in meta.items():
            buf = schema.BufferT()
            buf.data = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
            self.buffers.append(buf)
            entry = schema.MetadataT()
            entry.name, entry.buffer = key, len(self.buffers) - 1
            model.metadata.append(entry)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _fc_options():
    opts = schema.FullyConnectedOptionsT()
    return _OPT.FullyConnectedOptions, opts


def _mean_options():
    opts = schema.ReducerOptionsT()
    opts.keepDims = True
    return _OPT.ReducerOptions, opts


def build(
    blob: Blob,
    feats: FloatFeatures,
    activations: int = 16,
    batch: int = 1,
    debug_outputs: bool = False,
) -> bytes:
    """The .tflite bytes for ``blob``'s samples with the float feature map ``feats``.

    ``batch``: the input's first dimension (LiteRT can resize it; TFLite Micro uses it as is);
    ``debug_outputs``: also output features_q (n, b') and samples_q (n, S), for the exactness tests.
    The graph: int16 q -> float features (:func:`_features`) -> quantised features times the
    integer levels (:func:`_samples`) -> the samples' mean and variance (:func:`_moments`) -> target
    units (:func:`_to_target_units`).
    """
    part = integer_parameters(blob, feats, activations)
    g = _Builder()
    q = g.tensor("q", [batch, blob.n_inputs], _T.INT16, scale=1.0, dynamic=True)
    phi = _features(g, blob, feats, q, batch)
    fq, sq, f = _samples(g, part, phi, activations, batch)
    mean, variance = _moments(g, f, blob.n_samples, batch)
    outs = _to_target_units(g, blob, feats, mean, variance, batch)
    if debug_outputs:
        outs += [fq, sq]
    description = (
        f"direct-edge {__version__}: DIRECT Bayesian GLM, {blob.n_samples} posterior samples of "
        f"{blob.bits}-bit weights; input q int16 (IS §2), outputs mean and predictive variance "
        "in target units"
    )
    return g.finish([q], outs, description, _metadata(blob, part, activations))


def _features(g: _Builder, blob: Blob, feats: FloatFeatures, q: int, batch: int) -> int:
    """Float32 features φ (batch, b') of the int16 inputs ``q``: one affine FULLY_CONNECTED folds
    the dequantisation and the feature map's input weights; rff adds COS and SIN."""
    d = blob.n_inputs
    gain, shift = _q_features(blob, feats)
    qf = g.tensor("q_float", [batch, d], _T.FLOAT32, dynamic=True)
    g.op(_OP.DEQUANTIZE, [q], [qf])
    if feats.kind == KIND_LINEAR:
        w1 = np.diag(gain).astype(np.float32)  # (d, d): z_k = gain_k·q_k + shift_k
        width = d
    else:
        w1 = gain.T.astype(np.float32)  # (F, d)
        width = gain.shape[1]
    pre = g.tensor("z" if feats.kind == KIND_LINEAR else "theta", [batch, width], _T.FLOAT32, dynamic=True)
    b1 = g.const("shift", shift.astype(np.float32), _T.FLOAT32)
    g.op(_OP.FULLY_CONNECTED, [qf, g.const("gain", w1, _T.FLOAT32), b1], [pre], *_fc_options())
    if feats.kind == KIND_LINEAR:
        return pre
    cos = g.tensor("cos", [batch, width], _T.FLOAT32, dynamic=True)
    sin = g.tensor("sin", [batch, width], _T.FLOAT32, dynamic=True)
    g.op(_OP.COS, [pre], [cos])
    g.op(_OP.SIN, [pre], [sin])
    phi = g.tensor("phi", [batch, 2 * width], _T.FLOAT32, dynamic=True)
    opts = schema.ConcatenationOptionsT()
    opts.axis = 1
    g.op(_OP.CONCATENATION, [cos, sin], [phi], _OPT.ConcatenationOptions, opts)
    return phi


def _samples(g: _Builder, part: IntegerPart, phi: int, activations: int, batch: int) -> tuple[int, int, int]:
    """(features_q, samples_q, samples): φ quantised to int8/int16, times the S×b' integer levels
    (int8, or packed INT4 with int8 activations) with an integer bias, and the S per-sample
    outputs dequantised to float32."""
    itype = _T.INT8 if activations == 8 else _T.INT16
    s_phi = part.feature_scale
    fq = g.tensor("features_q", [batch, part.levels.shape[1]], itype, scale=s_phi, dynamic=True)
    g.op(_OP.QUANTIZE, [phi], [fq])
    if activations == 8:
        wdata = pack_int4(part.levels)
        # LiteRT silently accepts unpacked INT4 and computes garbage: check our own packing.
        if not np.array_equal(unpack_int4(wdata, part.levels.size).reshape(part.levels.shape), part.levels):
            raise AssertionError("INT4 packing does not round-trip")
        w2 = g.tensor("levels", part.levels.shape, _T.INT4, wdata, scale=1.0)
        b2 = g.const("bias_q", part.bias_q.astype("<i4"), _T.INT32, scale=s_phi)
    else:
        w2 = g.const("levels", part.levels.astype(np.int8), _T.INT8, scale=1.0)
        b2 = g.const("bias_q", part.bias_q.astype("<i8"), _T.INT64, scale=s_phi)
    s_out = s_phi * 2.0**part.out_shift  # exact in float32: the multiplier is exactly 2^-k
    n_samples = part.levels.shape[0]
    sq = g.tensor("samples_q", [batch, n_samples], itype, scale=s_out, dynamic=True)
    g.op(_OP.FULLY_CONNECTED, [fq, w2, b2], [sq], *_fc_options())
    f = g.tensor("samples", [batch, n_samples], _T.FLOAT32, dynamic=True)
    g.op(_OP.DEQUANTIZE, [sq], [f])
    return fq, sq, f


def _moments(g: _Builder, f: int, n_samples: int, batch: int) -> tuple[int, int]:
    """(mean, variance), each (batch, 1): the mean and population variance over the ``n_samples``
    columns of ``f`` (MEAN of the SQUARED_DIFFERENCE), as IS §7 defines them."""
    axis = g.const("axis", np.array([1], dtype=np.int32), _T.INT32)
    m = g.tensor("sample_mean", [batch, 1], _T.FLOAT32, dynamic=True)
    g.op(_OP.MEAN, [f, axis], [m], *_mean_options())
    dev2 = g.tensor("squared_deviation", [batch, n_samples], _T.FLOAT32, dynamic=True)
    g.op(_OP.SQUARED_DIFFERENCE, [f, m], [dev2])
    v = g.tensor("sample_variance", [batch, 1], _T.FLOAT32, dynamic=True)
    g.op(_OP.MEAN, [dev2, axis], [v], *_mean_options())
    return m, v


def _to_target_units(
    g: _Builder, blob: Blob, feats: FloatFeatures, mean: int, variance: int, batch: int
) -> list[int]:
    """The outputs "mean" and "variance", (batch,) float32 in target units: the sample moments
    scaled by the feature unit, plus y_offset and the noise variance respectively."""
    unit = feats.unit
    new_shape = g.const("flat", np.array([-1], dtype=np.int32), _T.INT32)
    outs = []
    for name, src, mult, add in (
        ("mean", mean, unit, blob.y_offset),
        ("variance", variance, unit * unit, noise_variance(blob)),
    ):
        scaled = g.tensor(f"{name}_scaled", [batch, 1], _T.FLOAT32, dynamic=True)
        g.op(_OP.MUL, [src, g.const(f"{name}_unit", np.array([mult], np.float32), _T.FLOAT32)], [scaled])
        shifted = g.tensor(f"{name}_2d", [batch, 1], _T.FLOAT32, dynamic=True)
        g.op(_OP.ADD, [scaled, g.const(f"{name}_offset", np.array([add], np.float32), _T.FLOAT32)], [shifted])
        out = g.tensor(name, [batch], _T.FLOAT32, dynamic=True)
        g.op(_OP.RESHAPE, [shifted, new_shape], [out])
        outs.append(out)
    return outs


def _metadata(blob: Blob, part: IntegerPart, activations: int) -> dict[str, str]:
    """The custom metadata entries: producer, sizes, the integer parameters and the input scales."""
    return {
        "producer": "direct-edge",
        "version": __version__,
        "bits": str(blob.bits),
        "samples": str(blob.n_samples),
        "sparsity": f"{blob.sparsity:.6f}",
        "grid_scale": repr(float(blob.meta.get("grid_scale", float("nan")))),
        "activations": f"int{activations}",
        "feature_scale": repr(part.feature_scale),
        "output_shift": str(part.out_shift),
        "input_scale": json.dumps(blob.input_scale.tolist()),
        "input_zero": json.dumps(blob.input_zero.tolist()),
        "training_summary": json.dumps(blob.meta.get("summary", {}), sort_keys=True),
    }


def check_int4_buffers(data: bytes) -> None:
    """Re-read a written model and check that every INT4 tensor's buffer holds ⌈count/2⌉ bytes (packed)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for t in model.subgraphs[0].tensors:
        if t.type == _T.INT4:
            count = int(np.prod(t.shape))
            size = len(model.buffers[t.buffer].data)
            if size != (count + 1) // 2:
                raise AssertionError(
                    f"INT4 tensor {t.name} holds {size} bytes for {count} values: not packed"
                )
