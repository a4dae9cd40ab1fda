"""TFLite exports in LiteRT (reference kernels), TensorFlow Lite Micro and tflite-runtime 2.14.

What is exact (docs/export.md): given the int features the runtime quantised, its integer
FULLY_CONNECTED equals :func:`tflite_export.integer_part` bit for bit with that runtime's rounding; the
features are within one step of the float64 features quantised; mean and sd are within
:func:`tflite_export.error_bound` of the float64 evaluation of the same samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from direct_edge.export import onnx_export, tflite_export  # noqa: E402
from direct_edge.export.packed import synthetic_blob  # noqa: E402
from direct_edge.runtime import reference  # noqa: E402
from direct_edge.runtime.blob import KIND_LINEAR, parse  # noqa: E402

from .conftest import mixed_blob, run_litert, run_tflm  # noqa: E402

N = 10_000
MODELS = {
    "linear-d9-S8": ("linear", 9, 10, 8, 0.3),
    "rff-d9-b512-S32": ("rff", 9, 512, 32, 0.5),
    "rff-d3-b64-S1": ("rff", 3, 64, 1, 0.0),
}
# Measured rounding of each runtime's integer FULLY_CONNECTED, by feature width.
ROUNDING = {
    ("litert", 16): "half_away",
    ("litert", 8): "half_away",
    ("tflm", 16): "half_up",
    ("tflm", 8): "double",
}


def model_of(name: str):
    kind, d, b, S, zeros = MODELS[name]
    blob = parse(synthetic_blob(kind, d, b, S, zeros=zeros, seed=len(name)))
    return blob, onnx_export.features_from_blob(blob)


def inputs(blob, n: int = N, seed: int = 0) -> np.ndarray:
    """float64 inputs (n, d) in input units over tflite_export.feature_domain (the training range and
    half its width beyond each end), its corners included."""
    lo, hi = tflite_export.feature_domain(blob)
    X = lo + (hi - lo) * np.random.default_rng(seed).uniform(0.0, 1.0, (n, blob.n_inputs))
    X[0], X[1] = lo, hi
    X[2] = np.where(np.arange(blob.n_inputs) % 2, hi, lo)
    return X


def float64_moments(blob, feats, x):
    """Mean and predictive sd (n,) of the blob's samples with the float64 feature map."""
    phi = tflite_export.float_features(feats, x)
    levels = blob.levels.astype(np.float64)
    f = phi @ levels[:, :-1].T + levels[:, -1] if feats.kind == KIND_LINEAR else phi @ levels.T
    f = f * feats.unit + blob.y_offset
    floor = onnx_export.floor_variance(blob, feats, phi)
    return f.mean(axis=1), np.sqrt(f.var(axis=1) + floor + onnx_export.noise_variance(blob))


def check(blob, feats, part, x, outs: dict, rounding: str) -> None:
    """The three statements of the module docstring, on one runtime's outputs."""
    fq = outs["features_q"].astype(np.int64)
    np.testing.assert_array_equal(outs["samples_q"], tflite_export.integer_part(part, fq, rounding))
    ideal = np.clip(
        np.round(tflite_export.float_features(feats, x) / part.feature_scale), -part.qmax - 1, part.qmax
    )
    assert np.max(np.abs(fq - ideal)) <= 1
    mean64, sd64 = float64_moments(blob, feats, x)
    bound = tflite_export.error_bound(blob, feats, part)
    assert np.max(np.abs(outs["mean"] - mean64)) <= bound
    assert np.max(np.abs(np.sqrt(outs["variance"]) - sd64)) <= bound


def feed(blob, x: np.ndarray) -> np.ndarray:
    """What the host feeds: float32 x minus the stated origin (zero for these models)."""
    return (x - tflite_export.host_origin(blob)).astype(np.float32)


OUTPUT_NAMES = ("mean", "variance", "out_of_range", "features_q", "samples_q")


@pytest.mark.parametrize("activations", [16, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_litert_reference_kernels_agree_with_the_integer_part_and_float64(name, activations):
    blob, feats = model_of(name)
    part = tflite_export.integer_parameters(blob, feats, activations)
    x = inputs(blob)
    graph = tflite_export.build(blob, feats, activations, debug_outputs=True)
    outs = run_litert(graph, feed(blob, x), OpResolverType.BUILTIN_REF)
    check(blob, feats, part, x, outs, ROUNDING["litert", activations])


@pytest.mark.parametrize("activations", [16, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_tflite_micro_agrees_with_the_integer_part_and_float64(tmp_path, name, activations):
    blob, feats = model_of(name)
    part = tflite_export.integer_parameters(blob, feats, activations)
    x = inputs(blob, 1000)
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_export.build(blob, feats, activations, debug_outputs=True))
    outs = dict(zip(OUTPUT_NAMES, run_tflm(path, feed(blob, x), len(OUTPUT_NAMES)), strict=True))
    check(blob, feats, part, x, outs, ROUNDING["tflm", activations])


def test_the_input_needs_no_quantisation_recipe_and_the_signature_names_everything(tmp_path):
    """The input is float32 with no quantisation parameters (so the standard recipe is: feed x), its
    first dimension is dynamic, and "serving_default" names x, mean, variance and out_of_range; the
    metadata names x's columns."""
    blob, feats = model_of("rff-d9-b512-S32")
    moments = onnx_export.moments_from_blob(blob, feats)
    for data in (tflite_export.build(blob, feats), tflite_export.build_exact(blob, feats, moments)):
        it = Interpreter(model_content=data)
        (detail,) = it.get_input_details()
        assert detail["dtype"] == np.float32 and detail["quantization"] == (0.0, 0)
        assert list(detail["shape_signature"]) == [-1, 9]
        assert it.get_signature_list() == {
            "serving_default": {"inputs": ["x"], "outputs": ["mean", "out_of_range", "variance"]}
        }
        names = json.loads(read_metadata(data)["input_names"])
        assert names == [f"x{k}" for k in range(9)]  # x's columns, in order (no schema: positions)
        out = it.get_signature_runner("serving_default")(x=feed(blob, inputs(blob, 7)))
        assert out["mean"].shape == out["variance"].shape == (7,)


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_graph_in_litert_and_tflite_micro_is_within_its_bound(tmp_path, name):
    blob, feats = model_of(name)
    moments = onnx_export.moments_from_blob(blob, feats)
    path = tmp_path / "exact.tflite"
    path.write_bytes(tflite_export.build_exact(blob, feats, moments))
    x = inputs(blob)
    phi = feats.features(x)
    mean_w, var_w = moments.mean, moments.var
    if feats.kind == KIND_LINEAR:
        phi = np.concatenate([phi, np.ones((len(x), 1))], axis=1)
    m64 = phi @ mean_w + blob.y_offset
    sd64 = np.sqrt(phi**2 @ var_w + moments.noise)
    bound = tflite_export.exact_error_bound(blob, feats, moments)
    out = run_litert(path.read_bytes(), feed(blob, x), OpResolverType.AUTO)
    mean, variance = run_tflm(path, feed(blob, x[:1000]), 2)
    for m, v, k in ((out["mean"], out["variance"], len(x)), (mean, variance, 1000)):
        assert np.max(np.abs(m - m64[:k])) <= bound
        assert np.max(np.abs(np.sqrt(v) - sd64[:k])) <= bound


@pytest.fixture(scope="module")
def trained_models():
    """The diabetes rff model and a timestamp model (an input at 1e6 + [0, 10]; outputs span 2)."""
    import warnings

    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning

    from direct_edge.trainer import DirectRegressor

    rng = np.random.default_rng(0)
    X = np.column_stack([1e6 + rng.uniform(0, 10, 400), rng.normal(0, 1, 400)])
    y = np.sin(X[:, 0] - 1e6) + 0.1 * rng.normal(size=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return [
            DirectRegressor(n_features=64, max_iter=100).fit(*load_diabetes(return_X_y=True)),
            DirectRegressor(n_features=64, max_iter=60).fit(X, y),
        ]


def test_trained_models_in_litert_and_tflite_micro_give_the_trained_moments(tmp_path, trained_models):
    """Exact graph against DirectRegressor.predict and the ensemble graph against the float64 samples,
    over and beyond the training range, fed as the runtimes teach (the timestamp model gets its stated
    origin: fed x itself, its input name refuses it)."""
    from direct_edge.export.cli import check_batch, float64_samples
    from direct_edge.export.packed import pack

    for model in trained_models:
        blob = parse(pack(model, n_samples=16, seed=1, exact=True))
        feats = onnx_export.features_from_model(model)
        X, _ = check_batch(blob)
        m, sd = model.predict(X, return_std=True)
        moments = onnx_export.moments_from_model(model)
        path = tmp_path / "exact.tflite"
        path.write_bytes(tflite_export.build_exact(blob, feats, moments))
        bound = tflite_export.exact_error_bound(blob, feats, moments)
        out = run_litert(path.read_bytes(), feed(blob, X), OpResolverType.AUTO)
        mean, variance = run_tflm(path, feed(blob, X[:300]), 2)
        for mm, vv, k in ((out["mean"], out["variance"], len(X)), (mean, variance, 300)):
            assert np.max(np.abs(mm - m[:k])) <= bound
            assert np.max(np.abs(np.sqrt(vv) - sd[:k])) <= bound
        assert bound <= 1e-3 * float(model.y_scale_)
        part = tflite_export.integer_parameters(blob, feats, 16)
        out = run_litert(tflite_export.build(blob, feats), feed(blob, X), OpResolverType.AUTO)
        f = float64_samples(model, blob, X)
        assert np.max(np.abs(out["mean"] - f.mean(axis=1))) <= tflite_export.error_bound(blob, feats, part)
        fed = feed(blob, X)  # IS §2.1 of the value fed, plus the origin in float64 (the timestamp model)
        want = reference.out_of_range(blob, fed.astype(np.float64) + tflite_export.host_origin(blob)) != 0
        assert 0 < want.sum() < len(want)
        np.testing.assert_array_equal(out["out_of_range"], want)
    runner = Interpreter(model_content=tflite_export.build(blob, feats)).get_signature_runner()
    assert (
        tflite_export.input_name(blob) == "x_minus_origin" and tflite_export.host_origin(blob)[0] == 1000005.0
    )
    with pytest.raises(ValueError):
        runner(x=X.astype(np.float32))


def read_metadata(data: bytes) -> dict[str, str]:
    """A .tflite file's metadata entries (name -> UTF-8 text)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    return {m.name.decode(): bytes(model.buffers[m.buffer].data).decode() for m in model.metadata}


def test_int4_weights_are_packed_two_per_byte_low_nibble_first():
    values = np.array([-8, 7, -1, 0, 3, -5, 1], dtype=np.int8)
    data = tflite_export.pack_int4(values)
    assert data == bytes([0x78, 0x0F, 0xB3, 0x01])
    np.testing.assert_array_equal(tflite_export.unpack_int4(data, len(values)), values)
    blob, feats = model_of("rff-d9-b512-S32")
    tflite_export.check_int4_buffers(tflite_export.build(blob, feats, 8))
    with pytest.raises(ValueError):
        tflite_export.pack_int4(np.array([8]))


# ---- tflite-runtime 2.14 (numpy < 2) in its own virtual environment -------------------------------

RUNNER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tflite_runtime.interpreter import Interpreter, OpResolverType
    model, x_path, out_path = sys.argv[1:]
    x = np.load(x_path)
    it = Interpreter(model_path=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    np.savez(out_path, **it.get_signature_runner()(x=x))
    """
)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "direct-edge"


@pytest.fixture(scope="session")
def tflite_runtime_python() -> str:
    """python of a cached venv with tflite-runtime 2.14 and numpy < 2 (created once, from the registry)."""
    venv = _cache_dir() / "tflite-runtime-2.14"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import tflite_runtime.interpreter"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError):
        pytest.skip("tflite-runtime 2.14 venv could not be created (offline, or no wheel for this Python)")
    return str(python)


@pytest.mark.slow
@pytest.mark.parametrize("activations", [16, 8])
def test_tflite_runtime_2_14_agrees_with_the_integer_part_and_float64(
    tflite_runtime_python, tmp_path, activations
):
    blob, feats = model_of("rff-d9-b512-S32")
    part = tflite_export.integer_parameters(blob, feats, activations)
    x = inputs(blob)
    (tmp_path / "m.tflite").write_bytes(tflite_export.build(blob, feats, activations, debug_outputs=True))
    np.save(tmp_path / "x.npy", feed(blob, x))
    (tmp_path / "run.py").write_text(RUNNER)
    subprocess.run(
        [tflite_runtime_python, "run.py", "m.tflite", "x.npy", "out.npz"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    outs = dict(np.load(tmp_path / "out.npz"))
    check(blob, feats, part, x, outs, {16: "half_up", 8: "double"}[activations])


# ---- MF §10: the raw-column front end --------------------------------------------------------------


def test_the_raw_front_end_prepares_what_the_host_prepares_in_litert_and_tflite_micro(tmp_path):
    """A blob whose schema prepares its inputs: the graphs take ``raw`` float32 (numbers, level codes,
    NaN for missing) and give, in LiteRT and TensorFlow Lite Micro, the outputs of the x graph fed
    float32 of runtime.schema.prepare of the same rows, bit for bit; ``refused`` marks exactly the rows
    the host refuses."""
    from direct_edge.runtime.schema import raw_from_inputs

    blob = mixed_blob()
    spec = blob.schema
    feats = onnx_export.features_from_blob(blob)
    moments = onnx_export.moments_from_blob(blob, feats)
    rng = np.random.default_rng(4)
    lo = blob.input_scale * (-32768.0 - blob.input_zero)
    hi = blob.input_scale * (32767.0 - blob.input_zero)
    X = rng.uniform(lo - (hi - lo) / 4, hi + (hi - lo) / 4, (600, 8)).astype(np.float32).astype(np.float64)
    raw, prepared = raw_from_inputs(spec, X)
    cells = [(1, 3.0), (1, -1.0), (1, 0.5), (1, np.nan), (0, np.nan), (0, np.inf), (2, -np.inf), (3, 2.0)]
    for i, (j, v) in enumerate(cells):
        raw[i, j] = v
    refused = np.zeros(len(raw), dtype=bool)
    refused[: len(cells)] = True
    raw32 = raw.astype(np.float32)
    graphs = {
        "exact": tflite_export.build_exact(blob, feats, moments),
        "ensemble16": tflite_export.build(blob, feats, 16),
    }
    plain = mixed_blob(with_schema=False)  # the same parameters without the schema: the x graphs
    x_graphs = {
        "exact": tflite_export.build_exact(plain, feats, moments),
        "ensemble16": tflite_export.build(plain, feats, 16),
    }
    for name, data in graphs.items():
        runner = Interpreter(model_content=data).get_signature_runner()
        assert list(runner.get_input_details()) == ["raw"]
        assert json.loads(read_metadata(data)["columns"]) == ["age", "colour", "size", "sex"]
        got = runner(raw=raw32)
        want = Interpreter(model_content=x_graphs[name]).get_signature_runner()(x=prepared.astype(np.float32))
        np.testing.assert_array_equal(got["refused"], refused, err_msg=name)
        ok = ~refused
        for key in ("mean", "variance", "out_of_range"):
            np.testing.assert_array_equal(got[key][ok], want[key][ok], err_msg=f"{name} {key}")
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        micro = run_tflm(path, raw32[:120], 4)
        x_path = tmp_path / f"{name}-x.tflite"
        x_path.write_bytes(x_graphs[name])
        micro_x = run_tflm(x_path, prepared[:120].astype(np.float32), 3)  # micro's own float kernels
        np.testing.assert_array_equal(micro[3], refused[:120], err_msg=f"micro {name}")
        for k in range(3):
            np.testing.assert_array_equal(
                micro[k][ok[:120]], micro_x[k][ok[:120]], err_msg=f"micro {name} {k}"
            )


def test_raw_columns_far_from_zero_are_refused_in_one_line():
    """Raw columns and an input origin (float32 cannot hold the inputs) cannot go together in TFLite
    yet: the export says so in one line instead of writing a graph fed the wrong values."""
    import dataclasses

    from direct_edge.export.packed import ExportError, input_quantization

    blob = mixed_blob()
    lo, hi = blob_input_range_of(blob)
    lo[0], hi[0] = 1e6, 1e6 + 10.0  # age: a timestamp-like input
    scale, zero = input_quantization(lo, hi)
    far = dataclasses.replace(blob, input_scale=scale, input_zero=zero)
    assert tflite_export.host_origin(far)[0] != 0
    feats = onnx_export.features_from_blob(far)
    with pytest.raises(ExportError, match="TFLite cannot take both yet") as info:
        tflite_export.build(far, feats)
    assert "\n" not in str(info.value)


def blob_input_range_of(blob):
    from direct_edge.export.packed import blob_input_range

    lo, hi = blob_input_range(blob)
    return lo.copy(), hi.copy()
