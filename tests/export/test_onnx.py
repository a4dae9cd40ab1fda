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

from .conftest import mixed_blob  # noqa: E402

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
    mean_q, var_q, var_y_q, samples_q, _ = onnx_export.session(onnx_export.to_bytes(model)).run(
        None, {"q": q}
    )
    want = reference.predict(blob, q)
    assert mean_q.dtype == np.int32 and var_q.dtype == np.uint64 and var_y_q.dtype == np.uint64
    for got, exp in zip((mean_q, var_q, var_y_q), want, strict=True):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(samples_q, reference.sample_outputs(blob, q))


def test_integer_graph_is_bit_exact_in_the_reference_evaluator():
    blob = parse(synthetic_blob("rff", 3, 64, 4, zeros=0.3, seed=7))
    q = inputs(3)
    got = ReferenceEvaluator(onnx_export.integer_model(blob)).run(None, {"q": q})
    np.testing.assert_array_equal(got.pop(), reference.at_edge(q) != 0)
    for g, w in zip(got, reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(np.asarray(g).astype(w.dtype), w)
    linear = blob_of("linear-d9-S8")
    q = inputs(9)
    got = ReferenceEvaluator(onnx_export.integer_model(linear)).run(None, {"q": q})
    np.testing.assert_array_equal(got[0], reference.predict(linear, q)[0])


LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def user_session(path, level: str | None = None):
    """onnxruntime as users create it: ``InferenceSession(path)``, only the optimisation level set
    (None: the defaults, which are ORT_ENABLE_ALL with every fusion)."""
    import onnxruntime as ort

    if level is None:
        return ort.InferenceSession(str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(path), options)


def saved(tmp_path, model: onnx.ModelProto, name: str = "m.onnx"):
    path = tmp_path / name
    path.write_bytes(onnx_export.to_bytes(model))
    return path


@pytest.mark.parametrize("level", [None, *LEVELS])
def test_integer_graph_is_bit_exact_at_every_optimisation_level(tmp_path, level):
    blob = blob_of("rff-d9-b512-S32")
    q = inputs(blob.n_inputs)
    got = user_session(saved(tmp_path, onnx_export.integer_model(blob)), level).run(None, {"q": q})
    np.testing.assert_array_equal(got.pop(), reference.at_edge(q) != 0)
    for g, w in zip(got, reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(g, w)
    linear = blob_of("linear-d9-S8")
    q = inputs(9)
    got = user_session(saved(tmp_path, onnx_export.integer_model(linear)), level).run(None, {"q": q})
    np.testing.assert_array_equal(got[0], reference.predict(linear, q)[0])


def float_inputs(blob, n: int = N, seed: int = 0) -> np.ndarray:
    """float64 inputs (n, d) in input units: the range's corners, uniform inside, and up to half the
    width beyond each end (the float graph extrapolates like the trained model)."""
    from direct_edge.export.packed import blob_input_range

    lo, hi = blob_input_range(blob)
    X = lo + (hi - lo) * np.random.default_rng(seed).uniform(-0.5, 1.5, (n, blob.n_inputs))
    X[0], X[1] = lo, hi
    return X


def float64_outputs(blob, feats: onnx_export.FloatFeatures, x: np.ndarray):
    """(mean, variance, samples) in float64 of the float graph's own parameters: the model it stands for."""
    levels = blob.levels.astype(np.float64)
    phi = feats.features(x)
    f = phi @ levels[:, :-1].T + levels[:, -1] if feats.kind == KIND_LINEAR else phi @ levels.T
    f = f * feats.unit + blob.y_offset
    variance = f.var(axis=1) + onnx_export.floor_variance(blob, feats, phi) + onnx_export.noise_variance(blob)
    return f.mean(axis=1), variance, f


def float_tolerance(blob, feats, x) -> float:
    """The stated tolerance: (b + d + 8) float32 roundings of the largest per-sample magnitude R
    without y_offset (added in float64), R = unit·L·max|φ̃| over the inputs ``x``."""
    L = np.abs(blob.levels.astype(np.float64)).sum(axis=1).max()
    R = feats.unit * L * max(1.0, float(np.max(np.abs(feats.features(x)))))
    return (blob.n_features + blob.n_inputs + 8) * 2.0**-24 * R


@pytest.mark.parametrize("level", [None, *LEVELS])
@pytest.mark.parametrize("name", list(MODELS))
def test_float_graph_is_within_the_float32_tolerance_at_every_optimisation_level(tmp_path, name, level):
    blob = blob_of(name)
    feats = onnx_export.features_from_blob(blob)
    path = saved(tmp_path, onnx_export.float_model(blob, feats, per_sample=True))
    x = float_inputs(blob)
    mean, variance, samples, _ = user_session(path, level).run(None, {"x": x})
    assert mean.dtype == np.float64 and variance.shape == (N,)
    m64, v64, f64 = float64_outputs(blob, feats, x)
    tol = float_tolerance(blob, feats, x)
    assert np.max(np.abs(samples - f64)) <= tol
    assert np.max(np.abs(mean - m64)) <= tol
    assert np.max(np.abs(np.sqrt(variance) - np.sqrt(v64))) <= tol


def test_float_graph_in_the_reference_evaluator():
    blob = blob_of("rff-d9-b512-S32")
    feats = onnx_export.features_from_blob(blob)
    x = float_inputs(blob, 2000)
    ref = ReferenceEvaluator(onnx_export.float_model(blob, feats)).run(None, {"x": x})
    assert np.max(np.abs(ref[0] - float64_outputs(blob, feats, x)[0])) <= float_tolerance(blob, feats, x)


def test_no_optimisation_level_leaves_a_lossy_fused_matmul(tmp_path):
    """What the ALL level makes of the float graphs: plain float MatMul/Gemm (weights folded to
    float32 at load), never MatMulNBits (int8 activations at accuracy level 4)."""
    import onnxruntime as ort

    blob = blob_of("rff-d9-b512-S32")
    feats = onnx_export.features_from_blob(blob)
    for i, model in enumerate((onnx_export.float_model(blob, feats), onnx_export.integer_model(blob))):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"optimized{i}.onnx")
        ort.InferenceSession(str(saved(tmp_path, model)), options)
        ops = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
        assert "MatMulNBits" not in ops and "DequantizeLinear" not in ops


@pytest.fixture(scope="module", params=["rff", "linear"])
def trained_regressor(request):
    """A DirectRegressor fitted on the diabetes data (small, a few seconds)."""
    from sklearn.datasets import load_diabetes

    from direct_edge.trainer import DirectRegressor

    X, y = load_diabetes(return_X_y=True)
    return DirectRegressor(features=request.param, n_features=64, max_iter=100, grid_scale=1.0).fit(X, y)


@pytest.fixture(scope="module")
def offset_regressor():
    """rff model of an input at 1e6 + [0, 10] (a timestamp) and a standard normal one; outputs span 2."""
    from direct_edge.trainer import DirectRegressor

    rng = np.random.default_rng(0)
    X = np.column_stack([1e6 + rng.uniform(0, 10, 400), rng.normal(0, 1, 400)])
    y = np.sin(X[:, 0] - 1e6) + 0.1 * rng.normal(size=400)
    return DirectRegressor(n_features=64, max_iter=60).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("level", [None, *LEVELS])
def test_graphs_of_trained_models_agree_with_float64_and_the_trained_moments(
    tmp_path, trained_regressor, offset_regressor, level
):
    """Float graph against the float64 samples, exact graph against DirectRegressor.predict, on the
    check batch (over and beyond the training range), for the diabetes models and the timestamp model
    (which lost 0.05 on outputs of size 2 when the graph took float32 inputs)."""
    from direct_edge.export.cli import check_batch, float64_floor, float64_samples
    from direct_edge.export.packed import pack

    for model in (trained_regressor, offset_regressor):
        blob = parse(pack(model, n_samples=16, seed=1, exact=True))
        feats = onnx_export.features_from_model(model)
        X, beyond = check_batch(blob)
        assert beyond.sum() == 200 and np.all(X[0] == X.min(axis=0, where=~beyond[:, None], initial=np.inf))
        mean, variance = user_session(saved(tmp_path, onnx_export.float_model(blob, feats)), level).run(
            None, {"x": X}
        )[:2]
        f = float64_samples(model, blob, X)
        span = np.ptp(f)
        assert np.max(np.abs(mean - f.mean(axis=1))) <= 2e-6 * span
        sd64 = np.sqrt(f.var(axis=1) + float64_floor(model, blob, X) + onnx_export.noise_variance(blob))
        assert np.max(np.abs(np.sqrt(variance) - sd64)) <= 2e-6 * span
        moments = onnx_export.moments_from_model(model)
        exact = saved(tmp_path, onnx_export.exact_model(blob, feats, moments), "exact.onnx")
        mean, variance = user_session(exact, level).run(None, {"x": X})[:2]
        m, sd = model.predict(X, return_std=True)
        assert np.max(np.abs(mean - m)) <= 2e-6 * span
        assert np.max(np.abs(np.sqrt(variance) - sd)) <= 2e-6 * span


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
    exact = onnx_export.exact_model(
        blob,
        onnx_export.features_from_blob(blob),
        onnx_export.moments_from_blob(blob, onnx_export.features_from_blob(blob)),
    )
    onnx.checker.check_model(onnx.load_from_string(onnx_export.to_bytes(exact)), full_check=True)


# ---- MF §10: the raw-column front end --------------------------------------------------------------


def test_the_raw_front_end_prepares_what_the_host_prepares(tmp_path):
    """Raw rows (numbers, level codes, NaN for a missing value) through the float graphs' raw input give
    the x graph's outputs on runtime.schema.prepare of the same rows, bit for bit, and ``refused`` is
    set exactly on the rows the host refuses (an unknown or fractional code, NaN in a column without a
    missing-value policy, an infinity); the graph passes onnx's full check."""
    from direct_edge.runtime.schema import SchemaError, prepare, raw_from_inputs

    blob = mixed_blob()
    schema = blob.schema
    feats = onnx_export.features_from_blob(blob)
    rng = np.random.default_rng(3)
    lo = blob.input_scale * (-32768.0 - blob.input_zero)
    hi = blob.input_scale * (32767.0 - blob.input_zero)
    X = rng.uniform(lo - (hi - lo) / 4, hi + (hi - lo) / 4, (3000, 8))
    raw, prepared = raw_from_inputs(schema, X)
    assert np.isnan(raw[:, 2]).any() and set(raw[:, 1].tolist()) == {0.0, 1.0, 2.0}
    bad = raw.copy()
    cells = [(1, 3.0), (1, -1.0), (1, 0.5), (1, np.nan), (0, np.nan), (0, np.inf), (2, -np.inf), (3, 2.0)]
    for i, (j, v) in enumerate(cells):
        bad[i, j] = v

    def as_text(j: int, v: float) -> str:  # the raw cell as a CSV holds it
        levels = schema.columns[j].levels
        if levels:
            return levels[int(v)] if v in range(len(levels)) else "no-such-level"
        return "" if np.isnan(v) else repr(float(v))

    refused_by_host = []
    for row in bad[: len(cells) + 2]:
        try:
            prepare(schema, [[as_text(j, v) for j, v in enumerate(row)]])
            refused_by_host.append(False)
        except SchemaError:
            refused_by_host.append(True)
    assert refused_by_host == [True] * len(cells) + [False, False]
    graphs = {
        "exact": onnx_export.exact_model(blob, feats, onnx_export.moments_from_blob(blob, feats)),
        "float": onnx_export.float_model(blob, feats),
    }
    for name, graph in graphs.items():
        x_sess = onnx_export.session(onnx_export.to_bytes(graph))
        raw_graph = onnx_export.raw_front_end(graph, schema)
        assert [i.name for i in raw_graph.graph.input] == ["raw"]
        meta = {p.key: p.value for p in raw_graph.metadata_props}
        assert json.loads(meta["columns"]) == ["age", "colour", "size", "sex"]
        assert json.loads(meta["levels"]) == {"colour": ["blue", "green", "red"], "sex": ["f", "m"]}
        raw_sess = onnx_export.session(onnx_export.to_bytes(raw_graph))
        names = ["mean", "variance", "out_of_range"]
        want = x_sess.run(names, {"x": prepared})
        got = raw_sess.run([*names, "refused"], {"raw": raw})
        for n, g, w in zip(names, got, want, strict=False):
            np.testing.assert_array_equal(g, w, err_msg=f"{name} {n}")
        assert not got[3].any()
        np.testing.assert_array_equal(got[2], reference.out_of_range(blob, prepared) != 0)
        refused = raw_sess.run(["refused"], {"raw": bad})[0]
        np.testing.assert_array_equal(refused[: len(cells) + 2], refused_by_host, err_msg=name)
        assert not refused[len(cells) :].any()
