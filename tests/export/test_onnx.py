"""ONNX exports in the real runtimes: the integer graph bit-exact with the numpy reference, the float graph
within a float32 tolerance of float64 (onnxruntime CPU and onnx.reference.ReferenceEvaluator)."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the export extra is not installed")
pytest.importorskip("onnxruntime", reason="the export extra is not installed")

from onnx.reference import ReferenceEvaluator  # noqa: E402

from direct_edge.export import onnx_export  # noqa: E402
from direct_edge.export.packed import synthetic_blob  # noqa: E402
from direct_edge.runtime import reference  # noqa: E402
from direct_edge.runtime.blob import KIND_LINEAR, parse  # noqa: E402

N = 10_000
MODELS = {
    "linear-d9-S8": ("linear", 9, 10, 8, 4, 0.3),
    "linear-d4-S3-2bit": ("linear", 4, 5, 3, 2, 0.5),
    "rff-d9-b512-S32": ("rff", 9, 512, 32, 4, 0.5),
    "rff-d3-b64-S1": ("rff", 3, 64, 1, 4, 0.0),
    "rff-d2-b2000-S5-sparse": ("rff", 2, 2000, 5, 3, 0.9),
}


def blob_of(name: str):
    kind, d, b, S, bits, zeros = MODELS[name]
    return parse(synthetic_blob(kind, d, b, S, bits=bits, zeros=zeros, seed=len(name)))


def inputs(d: int, n: int = N, seed: int = 0) -> np.ndarray:
    """int16 inputs (n, d): random, plus the IS §9 extremes (all min, all max, alternating)."""
    q = np.random.default_rng(seed).integers(-32768, 32768, (n, d), dtype=np.int16)
    q[0], q[1] = -32768, 32767
    q[2] = np.where(np.arange(d) % 2, 32767, -32768)
    q[3] = np.where(np.arange(d) % 2, -32768, 32767)
    return q


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_integer_graph_is_bit_exact_with_the_reference_in_onnxruntime(name):
    blob = blob_of(name)
    model = onnx_export.integer_model(blob, per_sample=True)
    q = inputs(blob.n_inputs)
    mean_q, var_q, var_y_q, samples_q = onnx_export.session(onnx_export.to_bytes(model)).run(None, {"q": q})
    want = reference.predict(blob, q)
    assert mean_q.dtype == np.int32 and var_q.dtype == np.uint64 and var_y_q.dtype == np.uint64
    for got, exp in zip((mean_q, var_q, var_y_q), want, strict=True):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(samples_q, reference.sample_outputs(blob, q))


def test_integer_graph_is_bit_exact_in_the_reference_evaluator():
    blob = parse(synthetic_blob("rff", 3, 64, 4, zeros=0.3, seed=7))
    q = inputs(3)
    got = ReferenceEvaluator(onnx_export.integer_model(blob)).run(None, {"q": q})
    for g, w in zip(got, reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(np.asarray(g).astype(w.dtype), w)
    linear = blob_of("linear-d9-S8")
    q = inputs(9)
    got = ReferenceEvaluator(onnx_export.integer_model(linear)).run(None, {"q": q})
    np.testing.assert_array_equal(got[0], reference.predict(linear, q)[0])


def float64_outputs(blob, feats: onnx_export.FloatFeatures, x: np.ndarray):
    """(mean, variance, samples) in float64 of the float graph's own parameters: the model it stands for."""
    levels = blob.levels.astype(np.float64)
    if feats.kind == KIND_LINEAR:
        f = (x * feats.gain + feats.shift) @ levels[:, :-1].T + levels[:, -1]
    else:
        theta = x @ feats.gain + feats.shift
        f = np.concatenate([np.cos(theta), np.sin(theta)], axis=1) @ levels.T
    f = f * feats.unit + blob.y_offset
    return f.mean(axis=1), f.var(axis=1) + onnx_export.noise_variance(blob), f


def float_tolerance(blob, feats) -> float:
    """The stated tolerance: (b + d + 8) float32 roundings of the largest per-sample magnitude R."""
    L = np.abs(blob.levels.astype(np.float64)).sum(axis=1).max()
    zmax = (
        1.0 if feats.kind != KIND_LINEAR else float(np.max(np.abs(feats.gain * blob.input_scale) * 32768 + 8))
    )
    R = feats.unit * L * zmax + abs(blob.y_offset)
    return (blob.n_features + blob.n_inputs + 8) * 2.0**-24 * R


@pytest.mark.parametrize("name", list(MODELS))
def test_float_graph_is_within_the_float32_tolerance_of_float64(name):
    blob = blob_of(name)
    feats = onnx_export.features_from_blob(blob)
    model = onnx_export.float_model(blob, feats, per_sample=True)
    x = reference.dequantize_inputs(blob, inputs(blob.n_inputs)).astype(np.float32)
    mean, variance, samples = onnx_export.session(onnx_export.to_bytes(model)).run(None, {"x": x})
    m64, v64, f64 = float64_outputs(blob, feats, x.astype(np.float64))
    tol = float_tolerance(blob, feats)
    assert np.max(np.abs(samples - f64)) <= tol
    assert np.max(np.abs(mean - m64)) <= tol
    assert np.max(np.abs(np.sqrt(variance) - np.sqrt(v64))) <= tol
    ref = ReferenceEvaluator(model).run(None, {"x": x[:2000]})
    assert np.max(np.abs(ref[0] - m64[:2000])) <= tol


@pytest.fixture(scope="module", params=["rff", "linear"])
def trained_regressor(request):
    """A DirectRegressor fitted on the diabetes data (small, a few seconds)."""
    from sklearn.datasets import load_diabetes

    from direct_edge.trainer import DirectRegressor

    X, y = load_diabetes(return_X_y=True)
    return DirectRegressor(features=request.param, n_features=64, max_iter=100, grid_scale=1.0).fit(X, y)


def test_float_graph_of_a_trained_model_agrees_with_its_float64_predictions(trained_regressor):
    from direct_edge.export.cli import float64_samples
    from direct_edge.export.packed import pack

    model = trained_regressor
    blob = parse(pack(model, n_samples=16, seed=1))
    feats = onnx_export.features_from_model(model)
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.float_model(blob, feats)))
    q = inputs(blob.n_inputs)
    mean, variance = sess.run(None, {"x": reference.dequantize_inputs(blob, q).astype(np.float32)})
    f = float64_samples(model, blob, q)
    scale = np.abs(f).max()
    assert np.max(np.abs(mean - f.mean(axis=1))) <= 1e-5 * scale
    sd64 = np.sqrt(f.var(axis=1) + onnx_export.noise_variance(blob))
    assert np.max(np.abs(np.sqrt(variance) - sd64)) <= 1e-5 * scale


def test_files_pass_the_full_checker_store_int4_packed_and_carry_metadata():
    blob = blob_of("rff-d9-b512-S32")
    for model in (
        onnx_export.integer_model(blob),
        onnx_export.float_model(blob, onnx_export.features_from_blob(blob)),
    ):
        data = onnx_export.to_bytes(model)
        reread = onnx.load_from_string(data)
        onnx.checker.check_model(reread, full_check=True)
        assert reread.opset_import[0].version >= 21
        levels = [t for t in reread.graph.initializer if t.data_type == onnx.TensorProto.INT4]
        assert len(levels) == 1 and len(levels[0].raw_data) == (blob.n_features * blob.n_samples + 1) // 2
        props = {p.key: p.value for p in reread.metadata_props}
        assert props["producer"] == "direct-edge" and props["samples"] == "32" and props["bits"] == "4"
        assert {"version", "grid_scale", "sparsity", "training_summary"} <= props.keys()
        json.loads(props["training_summary"])


def test_default_onnxruntime_session_fuses_to_int8_activations_and_the_exporter_session_does_not():
    """The edge-notes trap, kept visible: onnxruntime's default MatMulNBits fusion quantises the
    activations; :func:`onnx_export.session` turns it off, which docs/export.md tells users to do."""
    import onnxruntime as ort

    blob = blob_of("linear-d9-S8")
    feats = onnx_export.features_from_blob(blob)
    data = onnx_export.to_bytes(onnx_export.float_model(blob, feats))
    x = reference.dequantize_inputs(blob, inputs(9, 2000)).astype(np.float32)
    m64 = float64_outputs(blob, feats, x.astype(np.float64))[0]
    exact = np.max(np.abs(onnx_export.session(data).run(None, {"x": x})[0] - m64))
    default = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert exact <= float_tolerance(blob, feats) < np.max(np.abs(default - m64))
