"""TFLite exports in LiteRT (reference kernels), TensorFlow Lite Micro and tflite-runtime 2.14.

What is exact (docs/export.md): given the int features the runtime quantised, its integer
FULLY_CONNECTED equals :func:`tflite_export.integer_part` bit for bit with that runtime's rounding; the
features are within one step of the float64 features quantised; mean and sd are within
:func:`tflite_export.error_bound` of the float64 evaluation of the same samples.
"""

from __future__ import annotations

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


def inputs(d: int, n: int = N, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).integers(-32768, 32768, (n, d), dtype=np.int16)
    q[0], q[1] = -32768, 32767
    q[2] = np.where(np.arange(d) % 2, 32767, -32768)
    return q


def float64_moments(blob, feats, q):
    """Mean and predictive sd (n,) of the blob's samples with the float64 feature map."""
    phi = tflite_export.float_features(blob, feats, q)
    levels = blob.levels.astype(np.float64)
    f = phi @ levels[:, :-1].T + levels[:, -1] if feats.kind == KIND_LINEAR else phi @ levels.T
    f = f * feats.unit + blob.y_offset
    return f.mean(axis=1), np.sqrt(f.var(axis=1) + onnx_export.noise_variance(blob))


def check(blob, feats, part, q, outs: dict, rounding: str) -> None:
    """The three statements of the module docstring, on one runtime's outputs."""
    fq = outs["features_q"].astype(np.int64)
    np.testing.assert_array_equal(outs["samples_q"], tflite_export.integer_part(part, fq, rounding))
    ideal = np.clip(
        np.round(tflite_export.float_features(blob, feats, q) / part.feature_scale), -part.qmax - 1, part.qmax
    )
    assert np.max(np.abs(fq - ideal)) <= 1
    mean64, sd64 = float64_moments(blob, feats, q)
    bound = tflite_export.error_bound(blob, feats, part)
    assert np.max(np.abs(outs["mean"] - mean64)) <= bound
    assert np.max(np.abs(np.sqrt(outs["variance"]) - sd64)) <= bound


def run_litert(data: bytes, q: np.ndarray) -> dict:
    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(q.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], q)
    it.invoke()
    return {o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()}


OUTPUT_NAMES = ("mean", "variance", "features_q", "samples_q")


@pytest.mark.parametrize("activations", [16, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_litert_reference_kernels_agree_with_the_integer_part_and_float64(name, activations):
    blob, feats = model_of(name)
    part = tflite_export.integer_parameters(blob, feats, activations)
    q = inputs(blob.n_inputs)
    outs = run_litert(tflite_export.build(blob, feats, activations, debug_outputs=True), q)
    check(blob, feats, part, q, outs, ROUNDING["litert", activations])


@pytest.mark.parametrize("activations", [16, 8])
@pytest.mark.parametrize("name", list(MODELS))
def test_tflite_micro_agrees_with_the_integer_part_and_float64(name, activations):
    tfm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    blob, feats = model_of(name)
    part = tflite_export.integer_parameters(blob, feats, activations)
    q = inputs(blob.n_inputs)
    data = tflite_export.build(blob, feats, activations, batch=N, debug_outputs=True)
    interp = tfm.Interpreter.from_bytes(data, arena_size=256 << 20)
    interp.set_input(q, 0)
    interp.invoke()
    outs = {k: interp.get_output(i) for i, k in enumerate(OUTPUT_NAMES)}
    check(blob, feats, part, q, outs, ROUNDING["tflm", activations])


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
    model, q_path, out_path = sys.argv[1:]
    q = np.load(q_path)
    it = Interpreter(model_path=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(q.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], q)
    it.invoke()
    np.savez(out_path, **{o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()})
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
    q = inputs(blob.n_inputs)
    (tmp_path / "m.tflite").write_bytes(tflite_export.build(blob, feats, activations, debug_outputs=True))
    np.save(tmp_path / "q.npy", q)
    (tmp_path / "run.py").write_text(RUNNER)
    subprocess.run(
        [tflite_runtime_python, "run.py", "m.tflite", "q.npy", "out.npz"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    outs = dict(np.load(tmp_path / "out.npz"))
    check(blob, feats, part, q, outs, {16: "half_up", 8: "double"}[activations])


def test_tflite_of_a_trained_model_is_within_its_bound_of_the_integer_reference():
    """Against the spec's integer reference: both are within their bounds of float64."""
    blob, feats = model_of("rff-d9-b512-S32")
    part = tflite_export.integer_parameters(blob, feats, 16)
    q = inputs(blob.n_inputs)
    outs = run_litert(tflite_export.build(blob, feats, 16), q)
    mean_q, _, var_y_q = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_y_q)
    both = tflite_export.error_bound(blob, feats, part) + blob.mean_scale * (reference.error_bound(blob) + 2)
    assert np.max(np.abs(outs["mean"] - mean)) <= both
    assert np.max(np.abs(np.sqrt(outs["variance"]) - sd)) <= both
