"""TFLite export, written without TensorFlow (the flatbuffers object API of ai-edge-litert's schema).

One graph, every op in both LiteRT and TensorFlow Lite Micro (docs/export.md has the picture):

    x float32 (n, d) ─SUB origin, MAXIMUM, MINIMUM (hold range)─► FULLY_CONNECTED (float) ─► θ or z
    ─[COS, SIN, CONCATENATION; rotated (IS §3.5): FULLY_CONNECTED (float) with Qᵀ]─► φ̃ float32
    ─QUANTIZE─► features_q ─FULLY_CONNECTED (integer)─►
    samples_q (n, S) ─DEQUANTIZE─► MEAN, SQUARED_DIFFERENCE, MEAN, MUL, ADD, RESHAPE ─►
    mean, variance float32 (n,) in target units

The input is float32 x in input units, so it carries no quantisation parameters and a user feeds it as
LiteRT's and TFLite Micro's documentation teach; the quantisation happens inside the graph (QUANTIZE of
the features).  The first dimension is dynamic and the "serving_default" signature names ``x``, ``mean``
and ``variance``.  Where float32 cannot hold an input to IS §2's resolution (a timestamp of 1e6 with a
range of 10), the host subtracts a stated origin first (:func:`host_origin`; zero for most data).
Two integer modes, because of what the runtimes accept (measured, docs/export.md):

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
from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from direct_edge import __version__
from direct_edge.export.onnx_export import (
    ExactMoments,
    FloatFeatures,
    check_rotation,
    floor_levels,
    gain_values,
    hold_range,
    noise_variance,
    rotated_feature_error,
    rotation_rounding,
)
from direct_edge.export.packed import ExportError, blob_input_range
from direct_edge.runtime import reference
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


def feature_domain(blob: Blob) -> tuple[np.ndarray, np.ndarray]:
    """The inputs the quantised features cover without saturating: the training range widened by half
    its width on each side, float64 (d,) each (linear features beyond it saturate, as IS §2 inputs do
    at the range's ends; rff features are bounded everywhere)."""
    lo, hi = blob_input_range(blob)
    half = (hi - lo) / 2
    return lo - half, hi + half


def host_origin(blob: Blob) -> np.ndarray:
    """What the host subtracts (in float64) from each input before feeding float32 (d,): 0 wherever
    float32 holds the input to 1/65536 of its range over :func:`feature_domain` (IS §2's own
    resolution), else the middle of the range rounded to that resolution's power of ten, so that
    x − origin is small and exact in float32.  All zeros for most data: the standard recipe (feed x)."""
    lo, hi = feature_domain(blob)
    width = hi - lo
    largest = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float32)
    fine = np.spacing(largest).astype(np.float64) <= width / 65536.0
    step = 10.0 ** np.floor(np.log10(width / 4))
    middle = np.round((lo + hi) / 2 / step) * step
    return np.where(fine, 0.0, middle)


def _float32(value: float) -> float:
    return float(np.float32(value))


def integer_parameters(blob: Blob, feats: FloatFeatures, activations: int = 16) -> IntegerPart:
    """Choose the feature scale s_φ (linear: the largest |z| over :func:`feature_domain`; rff: 1), the
    bias and the output shift k (the smallest with no clamping).  ValueError for other ``activations``."""
    if activations not in (8, 16):
        raise ValueError("activations must be 8 or 16")
    qmax = (1 << (activations - 1)) - 1
    levels = blob.levels.astype(np.int64)
    if feats.kind == KIND_LINEAR:
        # Gains (IS §3.4) only shrink the features: the ungained largest |z| still covers them.
        zmax = float(np.max(_largest_features(blob, feats)))
        s_phi = _float32(max(zmax, 1.0) / qmax * (1 + 1e-6))
        bias = np.rint(levels[:, -1] * gain_values(blob)[-1] / s_phi).astype(np.int64)  # the feature g_d
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


def input_name(blob: Blob) -> str:
    """The graph input's name: "x", or "x_minus_origin" when :func:`host_origin` is not all zero, so a
    caller that feeds x itself through the signature runner is stopped by the name."""
    return "x_minus_origin" if np.any(host_origin(blob)) else "x"


def _largest_inputs(blob: Blob, feats: FloatFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(largest |x − host origin|, largest |x − feats.origin|) over :func:`feature_domain`, (d,) each."""
    lo, hi = feature_domain(blob)
    fed = host_origin(blob)
    return (
        np.maximum(np.abs(lo - fed), np.abs(hi - fed)),
        np.maximum(np.abs(lo - feats.origin), np.abs(hi - feats.origin)),
    )


def _largest_features(blob: Blob, feats: FloatFeatures) -> np.ndarray:
    """Linear: the largest |z_k| over :func:`feature_domain`, (d,); rff: the largest |θ_j|, (F,)."""
    _, z = _largest_inputs(blob, feats)
    if feats.kind == KIND_LINEAR:
        return np.abs(feats.gain) * z + np.abs(feats.shift)
    return np.abs(feats.gain).T @ z + np.abs(feats.shift)


def float_features(feats: FloatFeatures, x: np.ndarray, blob: Blob | None = None) -> np.ndarray:
    """φ̃ of the graph in float64 on inputs x (n, d) in input units: (n, b') (linear: no bias feature);
    with a ``blob`` that has feature gains, each times its gain g_i (IS §3.4), what the ensemble
    graph quantises."""
    phi = feats.features(x)
    if blob is not None and blob.gains is not None:
        phi = phi * gain_values(blob)[: phi.shape[1]]
    return phi


def feature_error(blob: Blob, feats: FloatFeatures, rounding: bool = True) -> float:
    """ε_f: the largest float32 error of a feature of the graph against float64, over
    :func:`feature_domain`: the input fed as float32 (½ ulp), the float32 origin and SUB (½ ulp each),
    then the affine map (linear) or the phase sum and COS/SIN (rff), 2^−24 relative per rounding; for
    a rotated map (IS §3.5) that of the rotated features, the float32 FULLY_CONNECTED with Q included
    and, with ``rounding``, R's rounding against the trainer's φ(x)ᵀV (``onnx_export.rotated_feature_error``;
    the bounds below count R's rounding per output instead, ``onnx_export.rotation_rounding``)."""
    fed, z = _largest_inputs(blob, feats)
    graph_origin = np.abs(feats.origin - host_origin(blob))
    e_in = F32_EPS * (fed + graph_origin + z)  # error of z_k = x_k − origin_k in the graph
    largest = _largest_features(blob, feats)
    if feats.kind == KIND_LINEAR:
        return float(np.max(np.abs(feats.gain) * e_in + 4 * F32_EPS * largest))
    d = blob.n_inputs
    eps = float(np.max(np.abs(feats.gain).T @ e_in + (d + 3) * F32_EPS * largest) + 4 * F32_EPS)
    return eps if feats.rotation is None else rotated_feature_error(feats, eps, rounding)


def _top(feats: FloatFeatures, eps_f: float) -> float:
    """The largest |feature| in the graph (rff): 1 for float32 cos and sin; 1 + ε_f for rotated
    features, whose float64 values are at most 1 (a unit vector times an orthonormal V)."""
    return 1.0 if feats.rotation is None else 1.0 + eps_f


def error_bound(blob: Blob, feats: FloatFeatures, part: IntegerPart) -> float:
    """Bound on |mean − mean_float64| and |sd − sd_float64| in target units, for any input x in
    :func:`feature_domain` fed as float32 (the float64 evaluation at the float64 x).

    Per sample, in units of s_φ: each feature is off by at most ½ (QUANTIZE) plus its float32 error
    ε_f/s_φ (:func:`feature_error`); the bias by ½ (linear); the output rounding by 2^(k−1)·2 (2^(k−1)
    for single rounding, and up to one more output step for the double rounding of TFLite Micro).  The
    ensemble mean and sd are 1-Lipschitz in the max-norm of the per-sample outputs; then the float32
    tail (2^−18 of the range).
    """
    eps_f = feature_error(blob, feats, rounding=False)
    top = _top(feats, eps_f + rotation_rounding(feats))
    if blob.gains is not None:  # the MUL by g_i ≤ 1 (exact in float32) rounds once more
        eps_f += F32_EPS * (
            float(np.max(_largest_features(blob, feats))) if feats.kind == KIND_LINEAR else top
        )
    s = part.feature_scale
    L = float(np.abs(part.levels.astype(np.int64)).sum(axis=1).max())
    per_sample = L * (0.5 + eps_f / s) + (0.5 if feats.kind == KIND_LINEAR else 0.0)
    if feats.rotation is not None:  # R's rounding, per sample: |φ̃ᵀ(Q − A·V)(g∘w_s)|
        per_sample += rotation_rounding(feats, part.levels * gain_values(blob)) / s
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
        model.signatureDefs = [_signature(SIGNATURE_KEY, self.tensors, inputs, outputs)]
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


SIGNATURE_KEY = "serving_default"


def _signature(key: str, tensors: list, inputs, outputs):
    """The SignatureDef LiteRT's ``get_signature_runner()`` finds: inputs and outputs by tensor name."""

    def entries(indices):
        out = []
        for i in indices:
            m = schema.TensorMapT()
            m.name, m.tensorIndex = tensors[i].name, i
            out.append(m)
        return out

    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = key, 0
    sig.inputs, sig.outputs = entries(inputs), entries(outputs)
    return sig


def _fc_options():
    opts = schema.FullyConnectedOptionsT()
    return _OPT.FullyConnectedOptions, opts


def _mean_options():
    opts = schema.ReducerOptionsT()
    opts.keepDims = True
    return _OPT.ReducerOptions, opts


def range_limits(blob: Blob) -> tuple[np.ndarray, np.ndarray]:
    """IS §2.1 on the value v the graph is fed (x minus :func:`host_origin`, float32): per input the
    lowest and the highest v in range, float32 (d,) each, so that v is out of range exactly when
    v < low or v > high (the real input being v + origin in float64; ±inf where no finite v is out of
    range on that side)."""
    low, beyond = reference.range_thresholds(blob, np.float32, host_origin(blob))
    high = np.where(np.isinf(beyond), beyond, np.nextafter(beyond, np.float32(-np.inf)))
    return low.astype(np.float32), high.astype(np.float32)


def _out_of_range(g: _Builder, blob: Blob, x: int, batch: int) -> int:
    """The output "out_of_range", bool (batch,): IS §2.1 for the fed float32 inputs, as
    max_k max(low_k − v_k, v_k − high_k) > 0 (SUB, MAXIMUM, REDUCE_MAX, GREATER: ops both runtimes
    have; a float32 difference is > 0 exactly when the first operand is larger, so this is the same
    comparison as v < low or v > high)."""
    low, high = range_limits(blob)
    d = blob.n_inputs
    below = g.tensor("below_low", [batch, d], _T.FLOAT32, dynamic=True)
    above = g.tensor("above_high", [batch, d], _T.FLOAT32, dynamic=True)
    sub = (_OPT.SubOptions, schema.SubOptionsT())
    g.op(_OP.SUB, [g.const("input_low_limit", low, _T.FLOAT32), x], [below], *sub)
    g.op(_OP.SUB, [x, g.const("input_high_limit", high, _T.FLOAT32)], [above], *sub)
    excess = g.tensor("range_excess", [batch, d], _T.FLOAT32, dynamic=True)
    g.op(_OP.MAXIMUM, [below, above], [excess], _OPT.MaximumMinimumOptions, schema.MaximumMinimumOptionsT())
    worst = g.tensor("range_excess_row", [batch], _T.FLOAT32, dynamic=True)
    opts = schema.ReducerOptionsT()
    opts.keepDims = False
    axis = g.const("input_axis", np.array([1], dtype=np.int32), _T.INT32)
    g.op(_OP.REDUCE_MAX, [excess, axis], [worst], _OPT.ReducerOptions, opts)
    flag = g.tensor("out_of_range", [batch], _T.BOOL, dynamic=True)
    zero = g.const("zero", np.array([0.0], np.float32), _T.FLOAT32)
    g.op(_OP.GREATER, [worst, zero], [flag], _OPT.GreaterOptions, schema.GreaterOptionsT())
    return flag


def _graph_input(g: _Builder, blob: Blob, batch: int) -> tuple[int, int, list[int]]:
    """(graph input, x, extra outputs): x float32 (batch, d) itself, or, for a blob whose schema prepares
    its inputs (MF §10), ``raw`` float32 (batch, c) through :func:`_raw_front_end`, whose x is the
    prepared inputs and whose extra output is ``refused``."""
    spec = blob.schema
    if spec is None or spec.plain:
        x = g.tensor(input_name(blob), [batch, blob.n_inputs], _T.FLOAT32, dynamic=True)
        return x, x, []
    if np.any(host_origin(blob)):
        raise ExportError(
            "this model's inputs lie too far from zero for float32 and it prepares raw columns "
            "(categorical or missing values): TFLite cannot take both yet; export .onnx, .bin or .h"
        )
    raw = g.tensor("raw", [batch, len(spec.columns)], _T.FLOAT32, dynamic=True)
    x, refused = _raw_front_end(g, spec, raw, batch)
    return raw, x, [refused]


def _raw_front_end(g: _Builder, spec, raw: int, batch: int) -> tuple[int, int]:
    """MF §10 in TFLite: ``raw`` (batch, c) float32 -> (x (batch, d), refused bool (batch,)).  SPLIT into
    columns; numeric: the value, with mean-indicator imputation SELECT_V2(NOT_EQUAL(v, v), fill, v) and
    SELECT_V2 of 1/0 as the indicator; categorical: EQUAL against the codes 0 .. L − 1, SELECT_V2 of 1/0
    (one-hot); CONCATENATION.  refused: a code that is not a level (REDUCE_MAX of the one-hot is 0), NaN
    where the column takes no missing value, an infinity (|v| > the largest float32); LOGICAL_OR, RESHAPE.
    Ops both LiteRT and TFLite Micro have."""
    from direct_edge.runtime import schema as input_schema

    c = len(spec.columns)
    cols = [g.tensor(f"raw_{j}", [batch, 1], _T.FLOAT32, dynamic=True) for j in range(c)]
    opts = schema.SplitOptionsT()
    opts.numSplits = c
    g.op(
        _OP.SPLIT,
        [g.const("raw_axis", np.array(1, dtype=np.int32), _T.INT32), raw],
        cols,
        _OPT.SplitOptions,
        opts,
    )
    one = g.const("one", np.array([[1.0]], np.float32), _T.FLOAT32)
    zero = g.const("zero_1x1", np.array([[0.0]], np.float32), _T.FLOAT32)
    big = g.const("float32_max", np.array([[np.finfo(np.float32).max]], np.float32), _T.FLOAT32)
    parts, refusals = [], []

    def flag(name: str, code: int, inputs, options_type: int, options, width: int = 1) -> int:
        out = g.tensor(name, [batch, width], _T.BOOL, dynamic=True)
        g.op(code, inputs, [out], options_type, options)
        return out

    def select(name: str, cond: int, a: int, b: int, width: int = 1) -> int:
        out = g.tensor(name, [batch, width], _T.FLOAT32, dynamic=True)
        g.op(_OP.SELECT_V2, [cond, a, b], [out], _OPT.SelectV2Options, schema.SelectV2OptionsT())
        return out

    for j, (col, column) in enumerate(zip(cols, spec.columns, strict=True)):
        if column.kind == input_schema.CATEGORICAL:
            L = len(column.levels)
            codes = g.const(f"codes_{j}", np.arange(L, dtype=np.float32)[None, :], _T.FLOAT32)
            hit = flag(f"hit_{j}", _OP.EQUAL, [col, codes], _OPT.EqualOptions, schema.EqualOptionsT(), L)
            ones = g.const(f"ones_{j}", np.ones((1, L), np.float32), _T.FLOAT32)
            zeros = g.const(f"zeros_{j}", np.zeros((1, L), np.float32), _T.FLOAT32)
            one_hot = select(f"one_hot_{j}", hit, ones, zeros, L)
            parts.append(one_hot)
            seen = g.tensor(f"seen_{j}", [batch, 1], _T.FLOAT32, dynamic=True)
            red = schema.ReducerOptionsT()
            red.keepDims = True
            g.op(
                _OP.REDUCE_MAX,
                [one_hot, g.const(f"axis_{j}", np.array([1], np.int32), _T.INT32)],
                [seen],
                _OPT.ReducerOptions,
                red,
            )
            refusals.append(
                flag(f"unknown_{j}", _OP.EQUAL, [seen, zero], _OPT.EqualOptions, schema.EqualOptionsT())
            )
            continue
        nan = flag(f"nan_{j}", _OP.NOT_EQUAL, [col, col], _OPT.NotEqualOptions, schema.NotEqualOptionsT())
        size = g.tensor(f"abs_{j}", [batch, 1], _T.FLOAT32, dynamic=True)
        g.op(_OP.ABS, [col], [size], _OPT.AbsOptions, schema.AbsOptionsT())
        inf = flag(f"inf_{j}", _OP.GREATER, [size, big], _OPT.GreaterOptions, schema.GreaterOptionsT())
        if column.missing == input_schema.MEAN_INDICATOR:
            fill = g.const(f"fill_{j}", np.array([[column.fill]], np.float32), _T.FLOAT32)
            parts += [select(f"imputed_{j}", nan, fill, col), select(f"indicator_{j}", nan, one, zero)]
            refusals.append(inf)
        else:
            parts.append(col)
            refusals.append(
                flag(
                    f"bad_{j}", _OP.LOGICAL_OR, [nan, inf], _OPT.LogicalOrOptions, schema.LogicalOrOptionsT()
                )
            )
    x = g.tensor("x_prepared", [batch, spec.n_inputs], _T.FLOAT32, dynamic=True)
    cat = schema.ConcatenationOptionsT()
    cat.axis = 1
    g.op(_OP.CONCATENATION, parts, [x], _OPT.ConcatenationOptions, cat)
    any_refused = refusals[0]
    for j, r in enumerate(refusals[1:]):
        any_refused = flag(
            f"refused_{j}",
            _OP.LOGICAL_OR,
            [any_refused, r],
            _OPT.LogicalOrOptions,
            schema.LogicalOrOptionsT(),
        )
    refused = g.tensor("refused", [batch], _T.BOOL, dynamic=True)
    g.op(_OP.RESHAPE, [any_refused, g.const("refused_shape", np.array([-1], np.int32), _T.INT32)], [refused])
    return x, refused


def build(
    blob: Blob,
    feats: FloatFeatures,
    activations: int = 16,
    batch: int = 1,
    debug_outputs: bool = False,
) -> bytes:
    """The .tflite bytes for ``blob``'s samples with the float feature map ``feats``.

    Input ``x`` float32 (batch, d) in input units minus :func:`host_origin` (zero for most data, then
    simply x); outputs ``mean`` and ``variance`` float32 (batch,) in target units.  The first dimension
    is dynamic (shape_signature −1: LiteRT resizes it, the signature runner does so by itself);
    ``batch`` is the stored shape, the one TFLite Micro uses.  One SignatureDef, "serving_default",
    names the inputs and outputs.  ``debug_outputs``: also output features_q (n, b') and samples_q
    (n, S), for the exactness tests.  The graph: x -> float features (:func:`_features`) -> quantised
    features times the integer levels (:func:`_samples`) -> the samples' mean and variance
    (:func:`_moments`) -> target units (:func:`_to_target_units`).  ValueError for ``activations``
    other than 8 or 16.
    """
    part = integer_parameters(blob, feats, activations)
    g = _Builder()
    graph_input, x, extra = _graph_input(g, blob, batch)
    phi = _gained(g, blob, _features(g, blob, feats, x, batch), batch)
    fq, sq, f = _samples(g, part, phi, activations, batch)
    mean, variance = _moments(g, f, blob.n_samples, batch)
    if blob.has_floor:
        variance = _floor(g, blob, phi, variance, batch)
    outs = (
        _to_target_units(g, blob, feats, mean, variance, batch) + [_out_of_range(g, blob, x, batch)] + extra
    )
    if debug_outputs:
        outs += [fq, sq]
    description = (
        f"direct-edge {__version__}: DIRECT Bayesian GLM, {blob.n_samples} posterior samples of "
        f"{blob.bits}-bit weights; input x float32 in input units"
        + ("" if not np.any(host_origin(blob)) else " minus metadata input_origin")
        + ", outputs mean and predictive variance in target units and out_of_range (IS §2.1)"
    )
    return g.finish([graph_input], outs, description, _metadata(blob, part, activations))


def hold_limits(blob: Blob, feats: FloatFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The graphs' :func:`onnx_export.hold_range` on z = x − ``feats.origin`` (what the SUB of the
    graph's origin makes of the fed value), float32 (d,) each, rounded inward (so finite: the hold range
    keeps |z| within float32's largest value)."""
    low, high = hold_range(blob, feats.origin)
    z_low, z_high = low - feats.origin, high - feats.origin
    low32, high32 = z_low.astype(np.float32), z_high.astype(np.float32)
    low32 = np.where(low32 < z_low, np.nextafter(low32, np.float32(np.inf)), low32)
    high32 = np.where(high32 > z_high, np.nextafter(high32, np.float32(-np.inf)), high32)
    return low32.astype(np.float32), high32.astype(np.float32)


def _features(g: _Builder, blob: Blob, feats: FloatFeatures, x: int, batch: int) -> int:
    """Float32 features φ (batch, b') of the float32 inputs ``x``: SUB of the float32 origin (what the
    host did not subtract), MAXIMUM and MINIMUM with :func:`hold_limits` (the hold range, the same as
    the ONNX graphs'), then one affine FULLY_CONNECTED (the standardisation and the feature map's input
    weights); rff adds COS and SIN, and a rotated blob (IS §3.5) a float32 FULLY_CONNECTED with Q
    (``onnx_export.rotation_matrix``, the integer runtime's quantised rotation).  ValueError where
    ``feats`` and ``blob`` rotate differently."""
    check_rotation(blob, feats)
    d = blob.n_inputs
    origin = (feats.origin - host_origin(blob)).astype(np.float32)
    centred = g.tensor("x_centred", [batch, d], _T.FLOAT32, dynamic=True)
    g.op(
        _OP.SUB, [x, g.const("origin", origin, _T.FLOAT32)], [centred], _OPT.SubOptions, schema.SubOptionsT()
    )
    low, high = hold_limits(blob, feats)
    above = g.tensor("x_above_hold_low", [batch, d], _T.FLOAT32, dynamic=True)
    minmax = (_OPT.MaximumMinimumOptions, schema.MaximumMinimumOptionsT())
    g.op(_OP.MAXIMUM, [centred, g.const("hold_low", low, _T.FLOAT32)], [above], *minmax)
    z = g.tensor("x_held", [batch, d], _T.FLOAT32, dynamic=True)
    g.op(_OP.MINIMUM, [above, g.const("hold_high", high, _T.FLOAT32)], [z], *minmax)
    if feats.kind == KIND_LINEAR:
        w1 = np.diag(feats.gain).astype(np.float32)  # (d, d): z_k·gain_k + shift_k
        width = d
    else:
        w1 = feats.gain.T.astype(np.float32)  # (F, d)
        width = feats.gain.shape[1]
    pre = g.tensor("z" if feats.kind == KIND_LINEAR else "theta", [batch, width], _T.FLOAT32, dynamic=True)
    b1 = g.const("shift", feats.shift.astype(np.float32), _T.FLOAT32)
    g.op(_OP.FULLY_CONNECTED, [z, g.const("gain", w1, _T.FLOAT32), b1], [pre], *_fc_options())
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
    if feats.rotation is None:
        return phi
    # IS §3.5 in float32: ψ̃ = φ̃·Q, weights Qᵀ (row k: R_kj·2^−(15+s_k), exact), a zero bias.
    b = 2 * width
    psi = g.tensor("psi", [batch, b], _T.FLOAT32, dynamic=True)
    rotation = g.const("rotation", feats.rotation.T.astype(np.float32), _T.FLOAT32)
    zero = g.const("rotation_bias", np.zeros(b, np.float32), _T.FLOAT32)
    g.op(_OP.FULLY_CONNECTED, [phi, rotation, zero], [psi], *_fc_options())
    return psi


def _gained(g: _Builder, blob: Blob, phi: int, batch: int) -> int:
    """IS §3.4 in float: φ̃ (batch, b') times the feature gains g_i (exact in float32), one MUL; φ̃
    itself without gains."""
    if blob.gains is None:
        return phi
    width = blob.n_features - 1 if blob.kind == KIND_LINEAR else blob.n_features
    gains = g.const("feature_gains", gain_values(blob)[None, :width].astype(np.float32), _T.FLOAT32)
    out = g.tensor("phi_gained", [batch, width], _T.FLOAT32, dynamic=True)
    g.op(_OP.MUL, [phi, gains], [out], _OPT.MulOptions, schema.MulOptionsT())
    return out


def build_exact(blob: Blob, feats: FloatFeatures, moments: ExactMoments, batch: int = 1) -> bytes:
    """The exact-moment .tflite (IS §6 in float32): x float32 (batch, d) as in :func:`build`, the same
    float features, then FULLY_CONNECTED of φ̃ with the weights' posterior means and of φ̃² (MUL) with
    their variances (float32 (1, b') each, the bias feature and the noise as the biases), RESHAPE ->
    ``mean``, ``variance`` float32 (batch,) in target units.  Every op in LiteRT and TFLite Micro; a
    "serving_default" signature and a dynamic first dimension as in :func:`build`."""
    g = _Builder()
    graph_input, x, extra = _graph_input(g, blob, batch)
    phi = _features(g, blob, feats, x, batch)
    mean_w, var_w = np.asarray(moments.mean, dtype=np.float64), np.asarray(moments.var, dtype=np.float64)
    mean_c, var_c = blob.y_offset, moments.noise
    if feats.kind == KIND_LINEAR:
        mean_c, var_c = mean_c + float(mean_w[-1]), var_c + float(var_w[-1])
        mean_w, var_w = mean_w[:-1], var_w[:-1]
    width = len(mean_w)
    square = g.tensor("phi_squared", [batch, width], _T.FLOAT32, dynamic=True)
    g.op(_OP.MUL, [phi, phi], [square], _OPT.MulOptions, schema.MulOptionsT())
    flat = g.const("flat", np.array([-1], dtype=np.int32), _T.INT32)
    outs = []
    for name, src, w, c in (("mean", phi, mean_w, mean_c), ("variance", square, var_w, var_c)):
        col = g.tensor(f"{name}_2d", [batch, 1], _T.FLOAT32, dynamic=True)
        weights = g.const(f"weight_{name}", w[None, :].astype(np.float32), _T.FLOAT32)
        bias = g.const(f"{name}_constant", np.array([c], np.float32), _T.FLOAT32)
        g.op(_OP.FULLY_CONNECTED, [src, weights, bias], [col], *_fc_options())
        out = g.tensor(name, [batch], _T.FLOAT32, dynamic=True)
        g.op(_OP.RESHAPE, [col, flat], [out])
        outs.append(out)
    outs.append(_out_of_range(g, blob, x, batch))
    outs += extra
    description = (
        f"direct-edge {__version__}: DIRECT Bayesian GLM, exact predictive moments (posterior weight means "
        "and variances); input x float32 in input units"
        + ("" if not np.any(host_origin(blob)) else " minus metadata input_origin")
        + ", outputs mean and predictive variance in target units and out_of_range (IS §2.1)"
    )
    meta = {
        "producer": "direct-edge",
        "version": __version__,
        "graph": "exact",
        "input": "x float32 (n, d) in input units minus input_origin, columns in the order of input_names",
        "input_names": json.dumps(input_names(blob)),
        "input_origin": json.dumps(host_origin(blob).tolist()),
        "input_low": json.dumps(blob_input_range(blob)[0].tolist()),
        "input_high": json.dumps(blob_input_range(blob)[1].tolist()),
        "training_summary": json.dumps(blob.meta.get("summary", {}), sort_keys=True),
    } | _raw_metadata(blob)
    return g.finish([graph_input], outs, description, meta)


def exact_error_bound(blob: Blob, feats: FloatFeatures, moments: ExactMoments) -> float:
    """Bound on |mean − mean_float64| and |sd − sd_float64| (target units) of :func:`build_exact` on
    inputs in :func:`feature_domain`: feature errors ε_f times Σ|mean_i| for the mean, plus
    (b' + 4)·2^−24 of the largest Σ|φ̃_i·mean_i| + |constant| for the dot product; for the sd,
    the variance's absolute error (2·ε_f + (b' + 4)·2^−24 relative per term) over √noise (both sds are
    at least √noise), or its square root (√ is ½-Hölder), whichever is smaller.  Rotated features
    (IS §3.5): ε_f without R's rounding for the mean, which gets R's rounding as one output
    (``onnx_export.rotation_rounding`` of the weight means) instead, and a variance error that uses
    ‖ψ‖₂ = 1 (below)."""
    eps_f = feature_error(blob, feats)
    b = len(moments.mean)
    top = _top(feats, eps_f)  # the largest float32 feature: 1 (cos, sin), 1 + ε_f rotated
    mean_abs, var_abs = float(np.abs(moments.mean).sum()), float(np.abs(moments.var).sum())
    mean_err = eps_f * mean_abs + (b + 4) * F32_EPS * (top * mean_abs + abs(blob.y_offset))
    var_err = (2 * eps_f + (b + 4) * F32_EPS) * var_abs + 4 * F32_EPS * moments.noise
    if feats.rotation is not None:
        # The mean: R's rounding as one output (rotation_rounding with the weights), not per feature.
        float_eps = feature_error(blob, feats, rounding=False)
        mean_err += (float_eps - eps_f) * mean_abs + rotation_rounding(feats, moments.mean)
        # The variance: ψ̃² − ψ² = 2ψe + e² with |e_k| ≤ ε_f and ‖ψ‖₂ = 1 (a unit vector rotated), so
        # Σ v_k·|2ψ_k·e_k + e_k²| ≤ 2ε_f·‖v‖₂ + ε_f²·Σ v_k; the float32 MUL and dot product round
        # Σ v_k·ψ̃_k² ≤ max v·‖ψ̃‖₂² ≤ max v·(1 + √b·ε_f)² by (b + 4)·2^−24 at most.
        v = np.asarray(moments.var, dtype=np.float64)
        var_err = (
            2 * eps_f * float(np.linalg.norm(v))
            + eps_f**2 * var_abs
            + (b + 4) * F32_EPS * float(np.max(np.abs(v))) * (1 + np.sqrt(b) * eps_f) ** 2
            + 4 * F32_EPS * moments.noise
        )
    return mean_err + float(min(np.sqrt(var_err), var_err / np.sqrt(moments.noise)))


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


def _floor(g: _Builder, blob: Blob, phi: int, variance: int, batch: int) -> int:
    """IS §5's rounding floor in float: ``variance`` (batch, 1) plus Σ_i φ'_i²·e_i (FULLY_CONNECTED of
    the gained features squared with the floors, a linear model's constant feature as the bias), in the
    samples' units."""
    floor = floor_levels(blob)
    constant = 0.0
    if blob.kind == KIND_LINEAR:  # the constant feature, 1 times its gain
        constant, floor = float(floor[-1] * gain_values(blob)[-1] ** 2), floor[:-1]
    width = len(floor)
    square = g.tensor("phi_gained_squared", [batch, width], _T.FLOAT32, dynamic=True)
    g.op(_OP.MUL, [phi, phi], [square], _OPT.MulOptions, schema.MulOptionsT())
    col = g.tensor("floor_variance", [batch, 1], _T.FLOAT32, dynamic=True)
    weights = g.const("weight_floor", floor[None, :].astype(np.float32), _T.FLOAT32)
    bias = g.const("floor_constant", np.array([constant], np.float32), _T.FLOAT32)
    g.op(_OP.FULLY_CONNECTED, [square, weights, bias], [col], *_fc_options())
    out = g.tensor("sample_variance_floored", [batch, 1], _T.FLOAT32, dynamic=True)
    g.op(_OP.ADD, [variance, col], [out])
    return out


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


def input_names(blob: Blob) -> list[str]:
    """The names of x's d columns, in order (``Blob.input_names``: the schema's inputs, MF §10)."""
    return blob.input_names


def _raw_metadata(blob: Blob) -> dict[str, str]:
    """For a graph with the raw-column input (MF §10): the columns, the categorical levels in code
    order, and what to feed."""
    spec = blob.schema
    if spec is None or spec.plain:
        return {}
    return {
        "input": "raw float32 (n, c): the columns (numbers, level codes, NaN for missing)",
        "columns": json.dumps(spec.column_names),
        "levels": json.dumps({c.name: list(c.levels) for c in spec.columns if c.levels}),
    }


def _metadata(blob: Blob, part: IntegerPart, activations: int) -> dict[str, str]:
    """The custom metadata entries: producer, sizes, the integer parameters, the input origin and range."""
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
        "input": "x float32 (n, d) in input units minus input_origin, columns in the order of input_names",
        "input_names": json.dumps(input_names(blob)),
        "input_origin": json.dumps(host_origin(blob).tolist()),
        "input_low": json.dumps(blob_input_range(blob)[0].tolist()),
        "input_high": json.dumps(blob_input_range(blob)[1].tolist()),
        "training_summary": json.dumps(blob.meta.get("summary", {}), sort_keys=True),
    } | _raw_metadata(blob)


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


# ---- classifiers (IS §10 in float after the integer ensemble; MF §11) -------------------------------


def build_classifier(blob: Blob, feats: FloatFeatures, activations: int = 16, batch: int = 1) -> bytes:
    """The .tflite bytes of a classifier blob (MF §11): x float32 (batch, d) as in :func:`build`, the same
    float features, QUANTIZE and the integer FULLY_CONNECTED of the N = S·R weight rows (standard
    quantisation: int16 features and int8 levels, or int8 and INT4), DEQUANTIZE, then in float32 the
    logits (× ``feats.unit``, in nats), RESHAPE to (batch, S, R) ((0, z) for two classes), SOFTMAX per
    sample, MEAN over the samples -> ``proba`` (batch, C); ``label`` int32 (ARG_MAX); ``entropy`` and
    ``mutual_info`` float32 (batch,) in nats (LOG of the probabilities floored at 1e-30, so a
    probability of 0 adds 0); ``out_of_range``.  Every op in LiteRT and TFLite Micro; one
    "serving_default" signature; a dynamic first dimension."""
    part = integer_parameters(blob, feats, activations)
    C = blob.classes
    R = 1 if C == 2 else C
    S = blob.n_samples // R
    g = _Builder()
    graph_input, x, extra = _graph_input(g, blob, batch)
    phi = _gained(g, blob, _features(g, blob, feats, x, batch), batch)
    _, _, f = _samples(g, part, phi, activations, batch)  # (batch, N) float32, units of level·φ̃
    z = g.tensor("logits_flat", [batch, blob.n_samples], _T.FLOAT32, dynamic=True)
    unit = g.const("logit_unit", np.array([feats.unit], np.float32), _T.FLOAT32)
    g.op(_OP.MUL, [f, unit], [z], _OPT.MulOptions, schema.MulOptionsT())
    shaped = g.tensor("logits_rows", [batch, S, R], _T.FLOAT32, dynamic=True)
    g.op(_OP.RESHAPE, [z, g.const("logit_shape", np.array([-1, S, R], dtype=np.int32), _T.INT32)], [shaped])
    if R == 1:  # the logistic model: softmax(0, z)
        zeros = g.tensor("zero_logits", [batch, S, 1], _T.FLOAT32, dynamic=True)
        g.op(_OP.MUL, [shaped, g.const("nought", np.array([0.0], np.float32), _T.FLOAT32)], [zeros])
        logits = g.tensor("logits", [batch, S, 2], _T.FLOAT32, dynamic=True)
        opts = schema.ConcatenationOptionsT()
        opts.axis = 2
        g.op(_OP.CONCATENATION, [zeros, shaped], [logits], _OPT.ConcatenationOptions, opts)
    else:
        logits = shaped
    p = g.tensor("sample_proba", [batch, S, C], _T.FLOAT32, dynamic=True)
    soft = schema.SoftmaxOptionsT()
    soft.beta = 1.0
    g.op(_OP.SOFTMAX, [logits], [p], _OPT.SoftmaxOptions, soft)

    def reduce(op: int, src: int, axis: int, shape: list[int], name: str) -> int:
        out = g.tensor(name, shape, _T.FLOAT32, dynamic=True)
        opts = schema.ReducerOptionsT()
        opts.keepDims = False
        g.op(
            op,
            [src, g.const(f"{name}_axis", np.array([axis], dtype=np.int32), _T.INT32)],
            [out],
            _OPT.ReducerOptions,
            opts,
        )
        return out

    def entropy(src: int, shape: list[int], name: str) -> int:
        floor = g.tensor(f"{name}_floored", [*shape, C], _T.FLOAT32, dynamic=True)
        g.op(
            _OP.MAXIMUM,
            [src, g.const(f"{name}_tiny", np.array([1e-30], np.float32), _T.FLOAT32)],
            [floor],
            _OPT.MaximumMinimumOptions,
            schema.MaximumMinimumOptionsT(),
        )
        logs = g.tensor(f"{name}_log", [*shape, C], _T.FLOAT32, dynamic=True)
        g.op(_OP.LOG, [floor], [logs])
        terms = g.tensor(f"{name}_terms", [*shape, C], _T.FLOAT32, dynamic=True)
        g.op(_OP.MUL, [src, logs], [terms], _OPT.MulOptions, schema.MulOptionsT())
        total = reduce(_OP.SUM, terms, len(shape), shape, f"{name}_sum")
        out = g.tensor(name, shape, _T.FLOAT32, dynamic=True)
        g.op(_OP.NEG, [total], [out])
        return out

    proba = reduce(_OP.MEAN, p, 1, [batch, C], "proba")
    label = g.tensor("label", [batch], _T.INT32, dynamic=True)
    am = schema.ArgMaxOptionsT()
    am.outputType = _T.INT32
    g.op(
        _OP.ARG_MAX,
        [proba, g.const("class_axis", np.array([1], dtype=np.int32), _T.INT32)],
        [label],
        _OPT.ArgMaxOptions,
        am,
    )
    h_total = entropy(proba, [batch], "entropy")
    h_expected = reduce(_OP.MEAN, entropy(p, [batch, S], "sample_entropy"), 1, [batch], "expected_entropy")
    gap = g.tensor("entropy_gap", [batch], _T.FLOAT32, dynamic=True)
    g.op(_OP.SUB, [h_total, h_expected], [gap], _OPT.SubOptions, schema.SubOptionsT())
    mi = g.tensor("mutual_info", [batch], _T.FLOAT32, dynamic=True)
    g.op(
        _OP.MAXIMUM,
        [gap, g.const("mi_floor", np.array([0.0], np.float32), _T.FLOAT32)],
        [mi],
        _OPT.MaximumMinimumOptions,
        schema.MaximumMinimumOptionsT(),
    )
    outs = [label, proba, h_total, mi, _out_of_range(g, blob, x, batch), *extra]
    description = (
        f"direct-edge {__version__}: DIRECT Bayesian classifier, {C} classes, {S} posterior samples of "
        f"{blob.bits}-bit weights; input x float32 in input units"
        + ("" if not np.any(host_origin(blob)) else " minus metadata input_origin")
        + "; outputs label, proba (model average), entropy and mutual_info in nats, out_of_range (IS §2.1)"
    )
    meta = _metadata(blob, part, activations) | {"classes": json.dumps(blob.meta.get("classes"))}
    return g.finish([graph_input], outs, description, meta)
