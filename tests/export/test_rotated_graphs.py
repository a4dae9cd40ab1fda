"""Rotated rff features (docs/integer-spec.md §3.5) in the ONNX and TFLite graphs.

A fitted DirectRegressor whose feature map is then rotated by an orthonormal V (the eigenvectors of its
training Gram matrix, or the Q of a random matrix's QR) is a valid model to export: its features are
φ(x)ᵀV.  The blob carries V as the quantised R and shifts s; every graph multiplies the float32
unit-amplitude features by the same Q_jk = R_kj·2^−(15+s_k) (the integer ONNX graph does IS §3.5
itself), so the graphs are compared with the trainer's own float64 model within bounds that count R's
rounding (``FloatFeatures.rotation_error``) and the float32 product: the TFLite graphs with
``tflite_export.error_bound`` / ``exact_error_bound``, the float ONNX graphs with the tolerance of
docs/export.md, the integer ONNX graph bit for bit with the numpy reference.  Inputs: the export's
check batch (corners, inside, a quarter width beyond) and the corners of ``feature_domain`` (half the
width beyond each end).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the export extra is not installed")
pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")

from ai_edge_litert.interpreter import OpResolverType  # noqa: E402

from direct_edge.export import cli as export_cli  # noqa: E402
from direct_edge.export import onnx_export, tflite_export  # noqa: E402
from direct_edge.export.packed import pack  # noqa: E402
from direct_edge.runtime import reference  # noqa: E402
from direct_edge.runtime.blob import parse  # noqa: E402

from .conftest import CLI_GRAPHS, gained_regressor, run_litert, run_tflm  # noqa: E402

F32 = 2.0**-24


def diabetes_regressor(n_features: int, grid_scale: float = 1.0):
    """A small DirectRegressor on scikit-learn's diabetes data, hyperparameters fixed (no search); the
    coarse default grid gives the ensemble a variance floor (MF §5.2)."""
    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning

    from direct_edge.trainer import DirectRegressor

    X, y = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DirectRegressor(
            n_features=n_features, lengthscale=2.0, grid_scale=grid_scale, prior_scale=0.5, max_iter=60
        ).fit(X, y)
    return model, X


def rotate(model, X: np.ndarray, how: str):
    """``model`` with its feature map rotated by an orthonormal V: "eigh", the eigenvectors of the
    training Gram matrix ΦᵀΦ (largest first, as the trainer orders them), or "qr", the Q of a random
    Gaussian matrix's QR."""
    b = model.feature_map_.n_features
    if how == "eigh":
        Phi = model.feature_map_.transform(X)
        _, V = np.linalg.eigh(Phi.T @ Phi)
        V = V[:, ::-1]
    else:
        V, _ = np.linalg.qr(np.random.default_rng(b).standard_normal((b, b)))
    model.feature_map_ = model.feature_map_.rotated(V)
    return model


ROTATED = {
    "b32-eigh": (32, False, "eigh"),
    "b32-gains-qr": (32, True, "qr"),
    "b256-eigh": (256, False, "eigh"),
}


@pytest.fixture(scope="module", params=list(ROTATED))
def rotated(request):
    """(model, blob, inputs X): a rotated model packed with 16 samples, exact moments and its floor."""
    b, gains, how = ROTATED[request.param]
    model, X = gained_regressor(b) if gains else diabetes_regressor(b)
    model = rotate(model, X, how)
    blob = parse(pack(model, n_samples=16, seed=1, exact=True))
    assert blob.has_exact and (blob.gains is not None) == gains
    assert blob.has_floor == (not gains)  # the plain fits have the ensemble's floor, the gained one none
    return model, blob, rows_of(blob)


def rows_of(blob, n_uniform: int = 4000) -> np.ndarray:
    """The export's check batch (range corners, 800 inside, 200 up to a quarter width beyond), the
    corners of ``feature_domain`` (half the width beyond each end: all low, all high, alternating) and
    ``n_uniform`` rows uniform over it."""
    X, _ = export_cli.check_batch(blob)
    lo, hi = tflite_export.feature_domain(blob)
    alternate = np.arange(blob.n_inputs) % 2 == 1
    far = np.array([lo, hi, np.where(alternate, hi, lo), np.where(alternate, lo, hi)])
    uniform = lo + (hi - lo) * np.random.default_rng(11).uniform(0.0, 1.0, (n_uniform, blob.n_inputs))
    return np.concatenate([X, far, uniform])


def feed(blob, X: np.ndarray) -> np.ndarray:
    return (X - tflite_export.host_origin(blob)).astype(np.float32)


def float64_reference(model, blob, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples (n, S), mean, predictive sd) in float64 of the blob's samples on the trainer's own
    rotated features φ(x)ᵀV (what direct-export compares with)."""
    f = export_cli.float64_samples(model, blob, X)
    sd = np.sqrt(f.var(axis=1) + export_cli.float64_floor(model, blob, X) + onnx_export.noise_variance(blob))
    return f, f.mean(axis=1), sd


def onnx_float_tolerance(blob, feats, X: np.ndarray) -> float:
    """docs/export.md's tolerance of the float ONNX ensemble graph for a rotated blob, against the
    trainer's float64 features: (1 + c)·(b + d + 8)·2^−24·R + unit·δ_R, with R = unit·L·max|ψ̃|,
    c = max_k Σ_j |Q_jk| (the rotation's float32 product) and δ_R = ``rotation_rounding`` of the gained
    levels (what R's rounding moves a sample's output)."""
    levels = blob.levels.astype(np.float64)
    L = float(np.abs(levels).sum(axis=1).max())
    R = feats.unit * L * max(1.0, float(np.max(np.abs(feats.features(X)))))
    c = float(np.abs(feats.rotation).sum(axis=0).max())
    rounding = onnx_export.rotation_rounding(feats, levels * onnx_export.gain_values(blob))
    return (1 + c) * (blob.n_features + blob.n_inputs + 8) * F32 * R + feats.unit * rounding


def test_the_blob_and_the_graph_features_carry_the_same_quantised_rotation(rotated):
    model, blob, X = rotated
    assert blob.rotation is not None and blob.rotation.shape == (blob.n_features, blob.n_features)
    feats = onnx_export.features_from_model(model, blob)
    Q = onnx_export.rotation_matrix(blob.rotation, blob.rotation_shift)
    np.testing.assert_array_equal(feats.rotation, Q)
    np.testing.assert_array_equal(Q.astype(np.float32).astype(np.float64), Q)  # exact in float32
    # The model alone quantises V as the packer does.
    np.testing.assert_array_equal(onnx_export.features_from_model(model).rotation, Q)
    # Unit amplitude after the rotation (IS §3.5, §7 with A = 1).
    assert feats.unit == pytest.approx(model.y_scale_ * model.grid_scale_, rel=1e-15)
    # The float64 reading of the graph's features is within R's rounding of the trainer's φ(x)ᵀV, and
    # R's rounding is visible (Q is not A·V).
    trainer = model.feature_map_.transform(X)
    gap = float(np.max(np.abs(feats.features(X) - trainer)))
    assert 0 < gap <= onnx_export.rotation_rounding(feats) < 1e-3
    # ... and an output's share of it within its own (tighter) bound.
    w = onnx_export.moments_from_model(model).mean
    assert np.max(np.abs((feats.features(X) - trainer) @ w)) <= onnx_export.rotation_rounding(feats, w)
    assert (
        onnx_export.rotation_rounding(feats, w) < onnx_export.rotation_rounding(feats) * np.abs(w).sum() / 4
    )
    # Read from the blob alone: the same Q, and no rounding to count (the reference is Q itself).
    from_blob = onnx_export.features_from_blob(blob)
    np.testing.assert_array_equal(from_blob.rotation, Q)
    assert onnx_export.rotation_rounding(from_blob) == 0.0


def test_a_graph_refuses_features_that_rotate_otherwise(rotated):
    model, blob, _ = rotated
    feats = onnx_export.features_from_model(model, blob)
    import dataclasses

    plain = dataclasses.replace(feats, rotation=None, rotation_exact=None)
    moments = onnx_export.moments_from_model(model)
    with pytest.raises(ValueError, match="rotation"):
        onnx_export.exact_model(blob, plain, moments)
    with pytest.raises(ValueError, match="rotation"):
        tflite_export.build(blob, plain)
    other = dataclasses.replace(feats, rotation=feats.rotation[:, ::-1].copy())
    with pytest.raises(ValueError, match="rotation"):
        onnx_export.float_model(blob, other)
    with pytest.raises(ValueError, match="rotation"):
        tflite_export.build_exact(blob, other, moments)


LEVELS = (None, "ORT_DISABLE_ALL", "ORT_ENABLE_ALL")


def ort_session(data: bytes, level: str | None):
    """onnxruntime as users create it: default options, only the optimisation level set."""
    import onnxruntime as ort

    if level is None:
        return ort.InferenceSession(data)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(data, options)


@pytest.mark.parametrize("level", LEVELS)
def test_onnx_float_graphs_agree_with_the_trained_model_within_their_bounds(rotated, level):
    import onnx

    model, blob, X = rotated
    feats = onnx_export.features_from_model(model, blob)
    f, m64, sd64 = float64_reference(model, blob, X)
    ensemble = onnx_export.float_model(blob, feats, per_sample=True)
    onnx.checker.check_model(ensemble, full_check=True)
    mean, variance, samples, flag = ort_session(onnx_export.to_bytes(ensemble), level).run(None, {"x": X})
    tol = onnx_float_tolerance(blob, feats, X)
    assert np.max(np.abs(samples - f)) <= tol
    assert np.max(np.abs(mean - m64)) <= tol
    assert np.max(np.abs(np.sqrt(variance) - sd64)) <= tol
    np.testing.assert_array_equal(flag, reference.out_of_range(blob, X) != 0)
    # The exact graph against DirectRegressor.predict: within the (looser) TFLite exact bound, which
    # holds for the ONNX graph's fewer float32 steps too.
    moments = onnx_export.moments_from_model(model)
    exact = onnx_export.exact_model(blob, feats, moments)
    onnx.checker.check_model(exact, full_check=True)
    mean, variance = ort_session(onnx_export.to_bytes(exact), level).run(None, {"x": X})[:2]
    m, sd = model.predict(X, return_std=True)
    bound = tflite_export.exact_error_bound(blob, feats, moments)
    assert np.max(np.abs(mean - m)) <= bound
    assert np.max(np.abs(np.sqrt(variance) - sd)) <= bound
    assert bound <= 0.01 * model.y_scale_


def test_onnx_integer_graph_is_bit_exact_with_the_reference(rotated):
    model, blob, X = rotated
    q = np.concatenate([reference.quantize_inputs(blob, X), extreme_rows(blob.n_inputs)])
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob, per_sample=True)))
    mean_q, var_q, var_y_q, samples_q, edge = sess.run(None, {"q": q})
    for got, want in zip((mean_q, var_q, var_y_q), reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(samples_q, reference.sample_outputs(blob, q))
    np.testing.assert_array_equal(edge, reference.at_edge(q) != 0)


def test_rotated_graphs_in_the_onnx_reference_evaluator(rotated):
    """onnx.reference.ReferenceEvaluator runs the rotated graphs as onnxruntime does: the integer graph
    bit-exact with the reference, the float ensemble within the same tolerance."""
    from onnx.reference import ReferenceEvaluator

    model, blob, X = rotated
    X = X[:1500]
    q = reference.quantize_inputs(blob, X)
    got = ReferenceEvaluator(onnx_export.integer_model(blob)).run(None, {"q": q})
    for g, w in zip(got[:3], reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(np.asarray(g).astype(w.dtype), w)
    feats = onnx_export.features_from_model(model, blob)
    mean = ReferenceEvaluator(onnx_export.float_model(blob, feats)).run(None, {"x": X})[0]
    assert np.max(np.abs(mean - float64_reference(model, blob, X)[1])) <= onnx_float_tolerance(blob, feats, X)


def extreme_rows(d: int, n: int = 2000) -> np.ndarray:
    """int16 rows: all −32768, all 32767, alternating both ways, then random."""
    q = np.random.default_rng(9).integers(-32768, 32768, (n, d)).astype(np.int16)
    q[0], q[1] = -32768, 32767
    q[2], q[3] = np.where(np.arange(d) % 2, 32767, -32768), np.where(np.arange(d) % 2, -32768, 32767)
    return q


ROUNDING = {
    ("litert", 16): "half_away",
    ("litert", 8): "half_away",
    ("tflm", 16): "half_up",
    ("tflm", 8): "double",
}


def check_ensemble(model, blob, feats, part, X, outs, rounding: str | None) -> None:
    """The TFLite ensemble's statements for one runtime's outputs on inputs X (float64): the integer
    part bit for bit given the runtime's own features_q (for a kernel of known ``rounding``; LiteRT's
    default XNNPACK kernels round their own way), the features within one step of the float64 ones
    quantised, mean and sd within ``error_bound`` of the trainer's float64 model."""
    fq = outs["features_q"].astype(np.int64)
    if rounding is not None:
        np.testing.assert_array_equal(outs["samples_q"], tflite_export.integer_part(part, fq, rounding))
    ideal = np.clip(
        np.round(tflite_export.float_features(feats, X, blob) / part.feature_scale), -part.qmax - 1, part.qmax
    )
    assert np.max(np.abs(fq - ideal)) <= 1
    _, m64, sd64 = float64_reference(model, blob, X)
    bound = tflite_export.error_bound(blob, feats, part)
    assert np.max(np.abs(outs["mean"] - m64)) <= bound
    assert np.max(np.abs(np.sqrt(outs["variance"]) - sd64)) <= bound


OUTPUT_NAMES = ("mean", "variance", "out_of_range", "features_q", "samples_q")


@pytest.mark.parametrize("activations", [16, 8])
def test_tflite_ensemble_in_litert_is_within_its_bound(rotated, activations):
    model, blob, X = rotated
    feats = onnx_export.features_from_model(model, blob)
    part = tflite_export.integer_parameters(blob, feats, activations)
    data = tflite_export.build(blob, feats, activations, debug_outputs=True)
    for resolver, rounding in ((OpResolverType.BUILTIN_REF, ROUNDING["litert", activations]), (None, None)):
        outs = run_litert(data, feed(blob, X), resolver)
        check_ensemble(model, blob, feats, part, X, outs, rounding)
        np.testing.assert_array_equal(outs["out_of_range"], reference.out_of_range(blob, X) != 0)


@pytest.mark.parametrize("activations", [16, 8])
def test_tflite_ensemble_in_tflite_micro_is_within_its_bound(rotated, tmp_path, activations):
    model, blob, X = rotated
    feats = onnx_export.features_from_model(model, blob)
    part = tflite_export.integer_parameters(blob, feats, activations)
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_export.build(blob, feats, activations, debug_outputs=True))
    rows = np.concatenate([X[:300], X[1000:1004]])
    outs = dict(zip(OUTPUT_NAMES, run_tflm(path, feed(blob, rows), len(OUTPUT_NAMES)), strict=True))
    check_ensemble(model, blob, feats, part, rows, outs, ROUNDING["tflm", activations])


def test_tflite_exact_graph_in_litert_and_tflite_micro_gives_the_trained_moments(rotated, tmp_path):
    model, blob, X = rotated
    feats = onnx_export.features_from_model(model, blob)
    moments = onnx_export.moments_from_model(model)
    path = tmp_path / "exact.tflite"
    path.write_bytes(tflite_export.build_exact(blob, feats, moments))
    bound = tflite_export.exact_error_bound(blob, feats, moments)
    m, sd = model.predict(X, return_std=True)
    rows = np.concatenate([X[:300], X[1000:1004]])
    out = run_litert(path.read_bytes(), feed(blob, X))
    mean, variance = run_tflm(path, feed(blob, rows), 2)
    m_rows, sd_rows = model.predict(rows, return_std=True)
    for got_m, got_v, want_m, want_sd in (
        (out["mean"], out["variance"], m, sd),
        (mean, variance, m_rows, sd_rows),
    ):
        assert np.max(np.abs(got_m - want_m)) <= bound
        assert np.max(np.abs(np.sqrt(got_v) - want_sd)) <= bound
    assert bound <= 0.01 * model.y_scale_


# ---- the rotation changes nothing else -------------------------------------------------------------


def test_an_identity_rotation_gives_the_unrotated_graphs_outputs_bit_for_bit():
    """b = 32 (A = 1/4, a power of two) and V = I: R = 2^14·I with s = 1, so Q = A·I exactly and every
    float product of the rotated graphs equals the unrotated graphs' (the unit is 4 times larger, the
    features 4 times smaller): the ONNX float and exact graphs and the TFLite exact graph give the same
    bits as for the unrotated model.  Any other change of the rotated path (amplitude, unit, order,
    gains) breaks it."""
    model, _ = diabetes_regressor(32)
    blob = parse(pack(model, n_samples=8, seed=2, exact=True))
    turned = copy.deepcopy(model)
    turned.feature_map_ = turned.feature_map_.rotated(np.eye(32))
    turned_blob = parse(pack(turned, n_samples=8, seed=2, exact=True))
    assert turned_blob.rotation is not None and blob.rotation is None
    np.testing.assert_array_equal(turned_blob.levels, blob.levels)
    X = rows_of(blob)
    outputs = []
    for m, b in ((model, blob), (turned, turned_blob)):
        feats = onnx_export.features_from_model(m, b)
        moments = onnx_export.moments_from_model(m)
        ensemble = onnx_export.float_model(b, feats, per_sample=True)
        mean, variance, samples, flag = onnx_export.session(onnx_export.to_bytes(ensemble)).run(
            None, {"x": X}
        )
        exact = onnx_export.session(onnx_export.to_bytes(onnx_export.exact_model(b, feats, moments)))
        lite = run_litert(tflite_export.build_exact(b, feats, moments), feed(b, X))
        # The ensemble adds the blob's noise_q·mean_scale² in float64, whose IS §7 rounding depends on A.
        outputs.append(
            {
                "onnx float": [mean, samples, flag],
                "onnx float variance": variance - onnx_export.noise_variance(b),
                "onnx exact": exact.run(None, {"x": X}),
                "tflite exact": [lite[k] for k in sorted(lite)],
            }
        )
    unrotated, rotated_ = outputs
    for name in ("onnx float", "onnx exact", "tflite exact"):
        for a, c in zip(unrotated[name], rotated_[name], strict=True):
            np.testing.assert_array_equal(a, c, err_msg=name)
    v = unrotated["onnx float variance"]
    ulps = np.abs(rotated_["onnx float variance"] - v) / np.spacing(v + onnx_export.noise_variance(blob))
    assert np.max(ulps) <= 2


# ---- classifiers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_rotated_classifier_graphs(kind, tmp_path):
    """A rotated iris classifier (IS §10 after §3.5): the integer ONNX graph equals runtime/classify.py
    bit for bit; the float ONNX graph is within 10^-5 of the float64 model average plus half of what R's
    rounding moves a logit (softmax moves by at most ½ per nat); the TFLite graph in LiteRT and TFLite
    Micro within docs/export.md's 1/256."""
    from direct_edge.export.cli import float64_class_probabilities
    from direct_edge.export.packed import pack_classifier
    from direct_edge.runtime import classify

    from .conftest import iris_classifier

    model, _, X = iris_classifier(kind)
    model = rotate(model, X, "eigh")
    blob = parse(pack_classifier(model, n_samples=8))
    assert blob.rotation is not None
    feats = onnx_export.features_from_model(model, blob)
    rows = rows_of(blob)
    want = float64_class_probabilities(model, blob, rows)
    q = reference.quantize_inputs(blob, rows)
    ref = classify.classify(blob, q)
    label, proba = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_classifier_model(blob))).run(
        ["label", "proba"], {"q": q}
    )
    np.testing.assert_array_equal(label, ref["label"])
    np.testing.assert_array_equal(proba, ref["proba"])
    graph = onnx_export.float_classifier_model(blob, feats)
    proba = onnx_export.session(onnx_export.to_bytes(graph)).run(["proba"], {"x": rows})[0]
    rounding = onnx_export.rotation_rounding(feats, blob.levels * onnx_export.gain_values(blob))
    assert np.max(np.abs(proba - want)) <= 1e-5 + 0.5 * feats.unit * rounding
    data = tflite_export.build_classifier(blob, feats)
    assert np.max(np.abs(run_litert(data, feed(blob, rows))["proba"] - want)) < 1 / 256
    path = tmp_path / "c.tflite"
    path.write_bytes(data)
    _, micro = run_tflm(path, feed(blob, rows[:200]), 2)
    assert np.max(np.abs(micro - want[:200])) < 1 / 256


# ---- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,args,check",
    CLI_GRAPHS,
)
def test_direct_export_writes_working_graphs_of_a_rotated_model(tmp_path, name, args, check):
    """direct-export of a saved rotated model: each file runs and gives what the statements above say
    (exact graphs: the trained moments within the exact bound; float ensemble: the float64 samples within
    the tolerance; integer ONNX: the reference bit for bit; TFLite ensemble: within its bound)."""
    from click.testing import CliRunner

    from direct_edge.export.cli import main
    from direct_edge.trainer import save_model

    model, X = diabetes_regressor(32)
    model = rotate(model, X, "eigh")
    save_model(tmp_path / "model.direct", model)
    result = CliRunner().invoke(
        main, [str(tmp_path / "model.direct"), str(tmp_path / name), "--samples", "8", *args]
    )
    assert result.exit_code == 0, result.output
    assert check in result.output
    data = (tmp_path / name).read_bytes()
    blob = parse(pack(model, n_samples=8, seed=0, exact=True))  # what direct-export packed
    feats = onnx_export.features_from_model(model, blob)
    X = rows_of(blob)
    if "--integer" in args:
        q = reference.quantize_inputs(blob, X)
        got = onnx_export.session(data).run(["mean_q", "var_q", "var_y_q"], {"q": q})
        for g, w in zip(got, reference.predict(blob, q), strict=True):
            np.testing.assert_array_equal(g, w)
        return
    if name.endswith(".tflite"):
        out = run_litert(data, feed(blob, X))
        mean, variance = out["mean"], out["variance"]
    else:
        mean, variance = onnx_export.session(data).run(["mean", "variance"], {"x": X})
    if "--ensemble" in args:
        _, want_m, want_sd = float64_reference(model, blob, X)
        if name.endswith(".tflite"):
            bound = tflite_export.error_bound(blob, feats, tflite_export.integer_parameters(blob, feats, 8))
        else:
            bound = onnx_float_tolerance(blob, feats, X)
    else:
        want_m, want_sd = model.predict(X, return_std=True)
        bound = tflite_export.exact_error_bound(blob, feats, onnx_export.moments_from_model(model))
    assert np.max(np.abs(mean - want_m)) <= bound
    assert np.max(np.abs(np.sqrt(variance) - want_sd)) <= bound
