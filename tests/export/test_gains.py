"""Per-feature grid gains end to end (docs/integer-spec.md §3.4, docs/model-format.md §5.1).

A real gained model (:func:`conftest.gained_regressor`: diabetes, a ``DirectGLM`` on per-feature grids
with gains from 2^-15 to 1) is packed, and every runtime must compute it: the blob reads back as
packed; the C library (ctypes and ``direct-run --engine c``) equals the numpy reference bit for bit in
both modes; the exact mode is within its bound of ``DirectRegressor.predict``, the ensemble within
IS §8's bound of the float64 samples; ONNX float within its bound, ONNX integer bit-exact; TFLite
(LiteRT, TFLite Micro where installed) within its bounds; the generated .h compiles and predicts
bit-exact.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export import cli as export_cli
from direct_edge.export.packed import gain_integers, pack
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import PREDICT_HARNESS, gained_regressor, run_tflm

C_DIR = Path(__file__).resolve().parents[2] / "runtime" / "c"
N_RANDOM = 3000


@pytest.fixture(scope="module", params=["rff", "linear"])
def gained(request):
    """(model, X, blob bytes, parsed blob) for a gained rff (b = 32) or linear (b = 11) model."""
    model, X = gained_regressor(kind=request.param)
    data = pack(model, n_samples=16, seed=1, exact=True)
    return model, X, data, parse(data)


def int16_rows(blob, X: np.ndarray) -> np.ndarray:
    """The training rows quantised, then random int16 rows with the extremes: ≥ 3,000 rows."""
    rng = np.random.default_rng(5)
    q = rng.integers(-32768, 32768, (N_RANDOM, blob.n_inputs)).astype(np.int16)
    q[0], q[1], q[2, ::2], q[3, 1::2] = -32768, 32767, 32767, -32768
    return np.concatenate([reference.quantize_inputs(blob, X), q])


def test_the_blob_holds_the_trained_gains_samples_and_level_moments(gained):
    model, _, _, blob = gained
    grid = model.posterior_.weight_grid
    assert blob.has_gains and blob.has_exact
    np.testing.assert_array_equal(blob.gains, gain_integers(grid.gains))
    assert blob.gains.min() == 1 and blob.gains.max() == 32768
    np.testing.assert_array_equal(blob.levels, model.posterior_.sample(16, seed=1).levels)
    # IS §6 with gains: the moments of each level, weight / (Δ·g_i); the variance is the predictive one,
    # floored (trainer §7) at most at the rounding variance of one level, 1/12, whatever the gain.
    w_mean, w_var = model.posterior_.predictive_weight_moments()
    unit = grid.scale * grid.gains
    want_mean = np.clip(np.rint(w_mean / unit * 4096), -32768, 32767)
    want_var = np.clip(np.rint(w_var / unit**2 * 1024), 0, 65535)
    np.testing.assert_array_equal(blob.exact_mean, want_mean)
    np.testing.assert_array_equal(blob.exact_var, want_var)
    floor = model.posterior_.variance_floor
    assert np.all(floor / unit**2 <= 1 / 12 + 1e-12)
    np.testing.assert_array_equal(w_var, np.maximum(model.posterior_.weight_moments()[1], floor))


def test_exact_mode_is_within_its_bound_of_the_trained_model(gained):
    model, X, _, blob = gained
    q = reference.quantize_inputs(blob, X)
    mean_q, var_q, var_y_q = reference.predict_exact(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    Phi = model.feature_map_.transform(reference.dequantize_inputs(blob, q))
    f_mean, f_var = model.posterior_.predict_moments(Phi, include_noise=False)
    f_mean = f_mean * model.y_scale_ + model.y_offset_
    f_sd = np.sqrt(f_var) * model.y_scale_
    # IS §3.4, §6: μ_i (in levels) is quantised to 2^-13 of a level worth g_i·Δ; feature i is off by
    # at most g_i·ε_φ + ½ units of 2^-Fφ (of the amplitude); the result is rounded once more.
    grid = model.posterior_.weight_grid
    mu = model.posterior_.weight_moments()[0] / (grid.scale * grid.gains)
    eps = grid.gains * reference.feature_error(blob) + 0.5
    level_unit = model.y_scale_ * grid.scale * model.feature_map_.amplitude
    frac = 2.0**-blob.feature_frac
    mean_bound = (
        level_unit * (np.sum(np.abs(mu) * eps) * frac + np.sum(grid.gains) * 2.0**-13) + blob.mean_scale
    )
    assert np.max(np.abs(mean - f_mean)) <= mean_bound
    assert mean_bound < 0.01 * np.std(f_mean)
    # IS §6's sq_i = (φ'_i·φ'_i) >> 15 drops less than one unit per feature whatever φ'_i: with gains a
    # weight on a fine grid can have a large level variance vq_i and a small feature, so the bound is
    # 2^(5−2r)·Σ vq_i output units² besides the relative quantisation (IS §3.4).
    var_bound = blob.mean_scale**2 * 2.0 ** (5 - 2 * blob.pre_shift) * (float(np.sum(blob.exact_var)) + 1)
    assert np.all(np.abs(sd**2 - f_sd**2) <= 0.01 * f_sd**2 + var_bound)
    assert np.max(np.abs(sd - f_sd)) <= 0.005 * model.y_scale_
    # The trained model's own predictions (in-range rows: the training data).
    p_mean, p_sd = model.predict(X, return_std=True)
    assert np.max(np.abs(mean - p_mean)) <= mean_bound + np.max(np.abs(f_mean - p_mean))
    _, sd_y = reference.to_target_units(blob, mean_q, var_y_q)
    assert np.max(np.abs(sd_y - p_sd) / p_sd) <= 0.01
    # What direct-export prints: the exact mode against predict, in sd(y).
    trained = export_cli.TrainedCheck.of(model, blob)
    inside, _ = trained.difference(*export_cli.integer_outputs(blob, trained.X, True))
    assert inside < 1e-3


def test_ensemble_is_within_the_spec_bound_of_the_float64_samples(gained):
    model, X, _, blob = gained
    q = int16_rows(blob, X)
    diff, bound = export_cli.max_difference(model, blob, q)
    assert diff <= bound
    # The gains matter: the same samples on the shared grid Δ (no gains) are far outside the bound.
    gained_f = export_cli.float64_samples(model, blob, q) - model.y_offset_
    Phi = model.feature_map_.transform(reference.dequantize_inputs(blob, q))
    shared_grid_f = Phi @ (blob.levels * model.grid_scale_).T * model.y_scale_
    assert np.max(np.abs(gained_f - shared_grid_f)) > 100 * bound


@pytest.fixture(scope="module")
def native_library(tmp_path_factory) -> str:
    from direct_edge.runtime.native import NativeUnavailable, build_library

    try:
        return str(build_library(tmp_path_factory.mktemp("native") / "libdirect.so"))
    except NativeUnavailable as exc:
        pytest.skip(f"C runtime unavailable: {str(exc).splitlines()[0]}")


def _same(got, want) -> None:
    for name, a, b in zip(("mean", "var_f", "var_y"), got, want, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_c_library_is_bit_exact_with_the_reference(gained, native_library):
    from direct_edge.runtime.native import NativeModel

    _, X, data, blob = gained
    q = int16_rows(blob, X)
    model = NativeModel(data, library=native_library)
    _same(model.predict(q), reference.predict(blob, q))
    _same(model.predict_exact(q), reference.predict_exact(blob, q))
    np.testing.assert_array_equal(model.features(q[:500]), reference.features(blob, q[:500]))


@pytest.mark.parametrize("mode", ["--exact", "--ensemble"])
def test_direct_run_c_engine_equals_the_reference_engine(gained, native_library, tmp_path, mode, monkeypatch):
    from click.testing import CliRunner

    from direct_edge.runtime.cli import main

    _, X, data, blob = gained
    q = int16_rows(blob, X)[: len(X) + 2000]
    (tmp_path / "m.bin").write_bytes(data)
    np.savetxt(tmp_path / "q.csv", q, delimiter=",", fmt="%d")
    monkeypatch.setenv("DIRECT_EDGE_NATIVE_LIB", native_library)
    outputs = []
    for engine in ("reference", "c"):
        args = [str(tmp_path / "m.bin"), str(tmp_path / "q.csv"), "--quantized", mode, "--engine", engine]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == len(q) + 1


def test_onnx_float_and_integer_graphs(gained):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    from direct_edge.export import onnx_export

    model, X, _, blob = gained
    trained = export_cli.TrainedCheck.of(model, blob)
    # Integer graph: bit-exact with the reference (the check direct-export prints).
    lines = export_cli.check_onnx(
        model, blob, export_cli.render_onnx(model, blob, True), True, False, trained
    )
    assert lines[1].endswith("(bit-exact)"), lines
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob)))
    q = int16_rows(blob, X)
    got = sess.run(["mean_q", "var_q", "var_y_q"], {"q": q})
    _same(tuple(got), reference.predict(blob, q))
    # Float ensemble graph: within 2e-6 of the float64 samples (docs/export.md), relative to the outputs.
    sess = onnx_export.session(export_cli.render_onnx(model, blob, False, exact=False))
    mean, variance = sess.run(["mean", "variance"], {"x": trained.X})
    f = export_cli.float64_samples(model, blob, trained.X)
    scale = np.max(np.abs(f)) + 1.0
    assert np.max(np.abs(mean - f.mean(axis=1))) <= 2e-6 * scale
    sd64 = np.sqrt(
        f.var(axis=1) + export_cli.float64_floor(model, blob, trained.X) + onnx_export.noise_variance(blob)
    )
    assert np.max(np.abs(np.sqrt(variance) - sd64)) <= 2e-6 * scale
    # Exact float graph: the trained moments, within 2e-6 of predict.
    sess = onnx_export.session(export_cli.render_onnx(model, blob, False, exact=True))
    mean, variance = sess.run(["mean", "variance"], {"x": trained.X})
    assert np.max(np.abs(mean - trained.mean)) <= 2e-6 * scale
    assert np.max(np.abs(np.sqrt(variance) - trained.sd)) <= 2e-6 * scale
    # The graph read from the blob alone gives the same moments as the trained ones.
    feats = onnx_export.features_from_model(model)
    from_blob = onnx_export.moments_from_blob(blob, feats)
    from_model = onnx_export.moments_from_model(model)
    assert np.max(np.abs(from_blob.mean - from_model.mean)) <= 2.0**-12 * feats.unit


def test_tflite_graphs_are_within_their_bounds(gained, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    from ai_edge_litert.interpreter import Interpreter

    from direct_edge.export import onnx_export, tflite_export

    model, _, _, blob = gained
    trained = export_cli.TrainedCheck.of(model, blob)
    feats = onnx_export.features_from_model(model)
    x = (trained.X - tflite_export.host_origin(blob)).astype(np.float32)
    f = export_cli.float64_samples(model, blob, trained.X)
    for activations in (16, 8):
        part = tflite_export.integer_parameters(blob, feats, activations)
        data = tflite_export.build(blob, feats, activations, debug_outputs=True)
        out = Interpreter(model_content=data).get_signature_runner()(**{tflite_export.input_name(blob): x})
        bound = tflite_export.error_bound(blob, feats, part)
        assert np.max(np.abs(out["mean"] - f.mean(axis=1))) <= bound
        sd64 = np.sqrt(
            f.var(axis=1)
            + export_cli.float64_floor(model, blob, trained.X)
            + onnx_export.noise_variance(blob)
        )
        assert np.max(np.abs(np.sqrt(out["variance"]) - sd64)) <= bound
        # The graph quantises g_i·φ̃_i.
        ideal = np.clip(
            np.round(tflite_export.float_features(feats, trained.X, blob) / part.feature_scale),
            -part.qmax - 1,
            part.qmax,
        )
        assert np.max(np.abs(out["features_q"].astype(np.int64) - ideal)) <= 1
    moments = onnx_export.moments_from_model(model)
    data = tflite_export.build_exact(blob, feats, moments)
    out = Interpreter(model_content=data).get_signature_runner()(**{tflite_export.input_name(blob): x})
    bound = tflite_export.exact_error_bound(blob, feats, moments)
    assert np.max(np.abs(out["mean"] - trained.mean)) <= bound
    assert np.max(np.abs(np.sqrt(out["variance"]) - trained.sd)) <= bound
    # TFLite Micro, one row per invoke, where it is installed.
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_export.build(blob, feats, 16))
    (means,) = run_tflm(path, x[:200], 1)
    part = tflite_export.integer_parameters(blob, feats, 16)
    assert np.max(np.abs(means - f[:200].mean(axis=1))) <= tflite_export.error_bound(blob, feats, part)


def test_generated_header_compiles_and_predicts_bit_exact(gained, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    from direct_edge.export.c_header import render_blob

    _, X, _, blob = gained
    (tmp_path / "model.h").write_text(render_blob(blob, "model"), encoding="utf-8")
    (tmp_path / "main.c").write_text(PREDICT_HARNESS, encoding="utf-8")
    exe = tmp_path / "main"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", f"-I{C_DIR}", f"-I{tmp_path}"]
    sources = [str(tmp_path / "main.c"), str(C_DIR / "direct.c"), str(C_DIR / "direct_predict.c")]
    done = subprocess.run(
        ["gcc", *flags, *sources, "-o", str(exe)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    q = int16_rows(blob, X)[:2500]
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in q) + "\n"
    run = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    got = np.array([[int(v) for v in line.split()] for line in run.stdout.splitlines()], dtype=object)
    ens, exact = reference.predict(blob, q), reference.predict_exact(blob, q)
    want = np.column_stack([*(a.astype(object) for a in ens), *(a.astype(object) for a in exact)])
    assert got.shape == want.shape and np.array_equal(got, want)
