"""Classification in integer arithmetic (docs/integer-spec.md §10, docs/model-format.md §11): the tables
and functions of runtime/classify.py against float64 within their stated errors, the packed classifier
blob and its header rules, the numpy reference against the float64 softmax of the same samples within
IS §10.5's bound, and the C library bit-exact with the reference on 10,000 rows per model."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris

from direct_edge.export.cli import float64_class_probabilities
from direct_edge.export.packed import ExportError, pack_classifier, synthetic_blob
from direct_edge.runtime import classify, reference
from direct_edge.runtime.blob import FORMAT_MINOR, BlobError, parse
from direct_edge.runtime.native import NativeModel
from direct_edge.runtime.native import classify as native_classify
from direct_edge.trainer.classifier import DirectClassifier

from .conftest import C_DIR, patched, portable_library_without
from .test_c_library import random_inputs

N_ROWS = 10_000
ONE = 1 << 16


# --- the tables and the two functions (IS §10.2) ---------------------------------------------------


def test_the_tables_are_the_specs_formulas_and_the_c_librarys():
    X, Y = classify.EXP_TABLE, classify.LOG_TABLE
    assert (X[0], X[128], X[256], Y[0], Y[256]) == (65536, 46341, 32768, 0, 65536)
    assert np.all(np.diff(X) < 0) and np.all(np.diff(Y) > 0)
    assert np.max(X[:-1] - X[1:]) == 177 and np.max(Y[1:] - Y[:-1]) == 369  # IS §10.6
    source = (C_DIR / "direct_classify.c").read_text()
    for name, table in (("exp_table", X), ("log_table", Y)):
        body = re.search(rf"{name}\[257\] DIRECT_ROM = \{{(.*?)\}};", source, re.DOTALL).group(1)
        assert [int(v) for v in re.findall(r"UINT32_C\((\d+)\)", body)] == table.tolist(), name


def test_exp_is_within_its_stated_error_everywhere():
    delta = np.arange(0, 20 << 16, dtype=np.int64)  # every argument where the result can be nonzero
    got = classify.exp2_neg(delta)
    exact = ONE * np.exp2(-delta / ONE)
    n = delta >> 16
    assert np.all(np.abs(got - exact) <= 1.06 * 2.0**-n + 0.5)
    assert np.max(np.abs(got - exact)) <= 1.56
    assert got[0] == ONE and np.all(classify.exp2_neg(np.array([32 << 16, 1 << 22])) == 0)


def test_log_is_within_its_stated_error():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.arange(1, 1 << 18), rng.integers(1, 1 << 32, 200_000), [2**32 - 1]])
    got = classify.log2_fixed(x)
    err = np.abs(got - ONE * np.log2(x.astype(np.float64)))
    assert err.max() <= 2.64, err.max()
    assert classify.log2_fixed(np.array([1, 2, ONE]))[:].tolist() == [0, ONE, 16 * ONE]


@pytest.mark.parametrize("C", [2, 3, 10, 255])
def test_integer_softmax_is_within_e_p_of_the_float_softmax_of_the_same_logits(C):
    rng = np.random.default_rng(C)
    ell = rng.normal(0, rng.uniform(0.1, 20, (4000, 1)), (4000, C)) * ONE  # logits in bits, then units
    ell[:5] = [0] * C  # all equal
    ell[5, 0] = 2**40  # one dominant logit (beyond D)
    ell[6] = np.arange(C) * (1 << 21)  # differences near D
    ell = np.rint(ell).astype(np.int64)
    p = classify.probabilities(ell)
    z = (ell - ell.max(axis=1, keepdims=True)) / ONE * math.log(2)
    exact = ONE * np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    e_p = 0.18 + 1.56 + math.log(2) * 2.64 + 1.56 * (C - 1)
    assert np.max(np.abs(p - exact)) <= e_p, (np.max(np.abs(p - exact)), e_p)
    assert np.all(p >= 0) and np.all(p <= ONE)


def test_entropy_of_certain_and_uniform_vectors():
    H = classify.entropy(np.array([[ONE, 0, 0, 0], [ONE // 4] * 4, [ONE // 2, ONE // 2, 0, 0]]))
    assert H.tolist() == [0, 2 * ONE, ONE]


# --- trained models (small, fast), packed ----------------------------------------------------------


def _fit(data, **params) -> tuple[DirectClassifier, np.ndarray]:
    X, y = data(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DirectClassifier(n_samples=32, max_iter=150, **params).fit(X, y), X


MODELS = {
    "breast_cancer-linear": (load_breast_cancer, dict(features="linear", grid_scale=0.4, prior_scale=1.0)),
    "iris-rff": (
        load_iris,
        dict(features="rff", n_features=32, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0),
    ),
    "digits-rff": (
        load_digits,
        dict(
            features="rff", n_features=64, lengthscale=8.0, grid_scale=0.8, prior_scale=2.0, grid_gains="none"
        ),
    ),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def packed(request):
    data, params = MODELS[request.param]
    model, X = _fit(data, **params)
    return request.param, model, X, pack_classifier(model, n_samples=16)


def _inputs(blob, X: np.ndarray, n: int = N_ROWS) -> np.ndarray:
    """The training rows quantised, then random int16 rows with the extremes (all −32768, all 32767,
    alternating) first, n rows in all."""
    q = reference.quantize_inputs(blob, X)
    return np.concatenate([random_inputs(np.random.default_rng(1), n - len(q), blob.n_inputs), q])


def test_the_blob_is_a_classifier_with_its_labels(packed):
    name, model, X, data = packed
    blob = parse(data)
    C = len(model.classes_)
    R = 1 if C == 2 else C
    assert (blob.classes, blob.n_samples, blob.layout, blob.noise_q) == (C, 16 * R, 0, 0)
    assert (
        blob.meta["classes"] == model.classes_.tolist() and blob.minor == FORMAT_MINOR >= 3
    )  # classifiers since 1.3
    assert np.array_equal(blob.levels.reshape(16, R, -1), model.sample_levels_[:16])
    with pytest.raises(BlobError, match="TASK"):
        reference.predict(blob, reference.quantize_inputs(blob, X[:2]))


def test_reference_probabilities_are_within_the_spec_bound_of_float64(packed):
    name, model, X, data = packed
    blob = parse(data)
    rng = np.random.default_rng(2)
    lo, hi = X.min(axis=0), X.max(axis=0)
    real = np.concatenate([X, rng.uniform(lo, hi, (N_ROWS - len(X), X.shape[1]))])
    q = reference.quantize_inputs(blob, real)
    out = classify.classify(blob, q)
    exact = float64_class_probabilities(model, blob, q)
    err = np.max(np.abs(out["proba"] - ONE * exact))
    assert err <= classify.probability_error_bound(blob), (name, err)
    assert err <= ONE / 256, (name, err)  # the target: 1/256 of float64
    # the trainer's model average over the same 16 samples predicts the same class almost everywhere
    agree = np.mean(out["label"][: len(X)] == np.argmax(model.predict_proba(X, model.sample_levels_[:16]), 1))
    assert agree >= 0.99, agree
    # entropy and mutual information against the trainer's definitions (nats), same samples
    p_s = np.exp(model._sample_log_probs(X, model.sample_levels_[:16]))
    p_bar = p_s.mean(axis=0)
    H = -np.sum(np.where(p_bar > 0, p_bar * np.log(np.maximum(p_bar, 1e-300)), 0.0), axis=1)
    H_s = -np.mean(np.sum(np.where(p_s > 0, p_s * np.log(np.maximum(p_s, 1e-300)), 0.0), axis=2), axis=0)
    to_nats = math.log(2) / ONE
    assert np.max(np.abs(out["entropy"][: len(X)] * to_nats - H)) < 0.01
    assert np.max(np.abs(out["mutual_info"][: len(X)] * to_nats - np.maximum(H - H_s, 0))) < 0.01


def test_c_library_is_bit_exact_with_the_reference_on_10000_rows(packed):
    name, _, X, data = packed
    blob = parse(data)
    q = _inputs(blob, X)
    want = classify.classify(blob, q)
    got = native_classify(NativeModel(data), q)
    for key in ("label", "proba", "entropy", "expected_entropy", "mutual_info"):
        assert np.array_equal(got[key], want[key]), (name, key)
    assert np.array_equal(got["out_of_range"], reference.input_mask((q == -32768) | (q == 32767)))


def test_the_c_library_refuses_what_it_cannot_classify(packed):
    name, _, X, data = packed
    regression = synthetic_blob("linear", 3, 4, 5, seed=2, layout="dense4")
    q = np.zeros((1, 3), dtype=np.int16)
    with pytest.raises(BlobError, match="TASK"):
        native_classify(NativeModel(regression), q)
    with pytest.raises(BlobError, match="TASK"):
        classify.classify(parse(regression), q)


# --- header rules (MF §11) -------------------------------------------------------------------------


def test_classifier_header_rules_are_checked_by_both_readers(packed):
    name, _, _, data = packed
    blob = parse(data)
    cases = {
        "logit shift": ("logit_shift", 0),
        "logit shift 63": ("logit_shift", 63),
        "logit multiplier": ("logit_mult", 0),
        "logit multiplier 2^31": ("logit_mult", 2**31),
        "class count": ("classes", 1),
    }
    # N = S·R rows: a class count that does not divide them
    cases["rows"] = ("classes", next(c for c in range(3, 256) if blob.n_samples % c))
    for field, value in cases.values():
        bad = patched(data, field, value)
        with pytest.raises(BlobError, match="HEADER"):
            parse(bad)
        with pytest.raises(BlobError, match="HEADER"):
            NativeModel(bad)


def test_pack_refuses_more_samples_than_the_model_holds(packed):
    _, model, _, _ = packed
    with pytest.raises(ExportError, match="samples must be between 1 and 32"):
        pack_classifier(model, n_samples=33)


def test_integer_onnx_graph_is_bit_exact_with_the_reference_on_10000_rows(packed):
    pytest.importorskip("onnxruntime")
    from direct_edge.export import onnx_export

    name, _, X, data = packed
    blob = parse(data)
    q = _inputs(blob, X)
    want = classify.classify(blob, q)
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_classifier_model(blob)))
    keys = ["label", "proba", "entropy", "expected_entropy", "mutual_info", "out_of_range"]
    got = dict(zip(keys, sess.run(keys, {"q": q}), strict=True))
    for key in keys[:-1]:
        assert np.array_equal(got[key].astype(np.int64), want[key]), (name, key)
    assert np.array_equal(got["out_of_range"], np.any((q == -32768) | (q == 32767), axis=1))


def test_float_onnx_graph_is_the_float64_model_average_in_float32(packed):
    pytest.importorskip("onnxruntime")
    from direct_edge.export import onnx_export

    name, model, X, data = packed
    blob = parse(data)
    rng = np.random.default_rng(3)
    lo, hi = X.min(axis=0), X.max(axis=0)
    real = np.concatenate([X, rng.uniform(lo, hi, (N_ROWS - len(X), X.shape[1]))])
    graph = onnx_export.float_classifier_model(blob, onnx_export.features_from_model(model))
    sess = onnx_export.session(onnx_export.to_bytes(graph))
    label, proba, entropy, mi = sess.run(["label", "proba", "entropy", "mutual_info"], {"x": real})
    exact = float64_class_probabilities(model, blob, real)
    assert np.max(np.abs(proba - exact)) < 1e-5, (name, np.max(np.abs(proba - exact)))
    top = np.sort(exact, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-5  # away from ties, float32 picks the float64 class
    assert np.array_equal(label[clear], np.argmax(exact, axis=1)[clear])
    p_s = np.exp(model._sample_log_probs(real, model.sample_levels_[:16]))
    H = -np.sum(p_s.mean(0) * np.log(np.maximum(p_s.mean(0), 1e-300)), axis=1)
    H_s = -np.mean(np.sum(p_s * np.log(np.maximum(p_s, 1e-300)), axis=2), axis=0)
    assert np.max(np.abs(entropy - H)) < 1e-4 and np.max(np.abs(mi - np.maximum(H - H_s, 0))) < 1e-4


def test_tflite_classifier_is_within_1_256_of_float64_on_10000_rows(packed):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from direct_edge.export import onnx_export, tflite_export

    name, model, X, data = packed
    blob = parse(data)
    rng = np.random.default_rng(4)
    lo, hi = X.min(axis=0), X.max(axis=0)
    real = np.concatenate([X, rng.uniform(lo, hi, (N_ROWS - len(X), X.shape[1]))])
    payload = tflite_export.build_classifier(blob, onnx_export.features_from_model(model))
    runner = Interpreter(model_content=payload).get_signature_runner()
    out = runner(
        **{tflite_export.input_name(blob): (real - tflite_export.host_origin(blob)).astype(np.float32)}
    )
    exact = float64_class_probabilities(model, blob, real)
    err = np.max(np.abs(out["proba"] - exact))
    assert err < 1 / 256, (name, err)
    top = np.sort(exact, axis=1)
    clear = top[:, -1] - top[:, -2] > 2 * err
    assert np.array_equal(out["label"][clear], np.argmax(exact, axis=1)[clear])
    assert out["entropy"].shape == out["mutual_info"].shape == (N_ROWS,) and np.all(out["mutual_info"] >= 0)


def test_the_regression_calls_refuse_a_classifier_blob_in_python(packed):
    _, _, _, data = packed
    native = NativeModel(data)
    assert native.n_classes == parse(data).classes
    with pytest.raises(BlobError, match="TASK"):
        native.predict(np.zeros((1, native.n_inputs), dtype=np.int16))
    # The C calls refuse it themselves (a C user has no Python check in front): DIRECT_ERR_TASK = 13.
    import ctypes

    from direct_edge.runtime.native import _Prediction

    x = (ctypes.c_int16 * native.n_inputs)()
    scratch = (ctypes.c_uint64 * (native._scratch_size // 8 + 1))()
    for name in ("direct_predict", "direct_predict_exact"):
        out = _Prediction()
        fn = getattr(native._lib, name)
        assert fn(ctypes.byref(native._model), x, scratch, native._scratch_size, ctypes.byref(out)) == 13, (
            name
        )


def test_a_regression_only_build_refuses_classifier_blobs_and_opens_the_rest(packed, tmp_path):
    """-DDIRECT_CLASSIFY=0 (MF §11): direct_model_open says HEADER to a classifier, as a 1.2 reader."""
    from direct_edge.runtime.native import load_library

    _, _, _, data = packed
    path = portable_library_without(tmp_path, "DIRECT_CLASSIFY")
    with pytest.raises(BlobError, match="HEADER"):
        NativeModel(data, library=str(path))
    regression = synthetic_blob("rff", 3, 16, 4, seed=3, layout="dense4")
    q = random_inputs(np.random.default_rng(0), 50, 3)
    got = NativeModel(regression, library=str(path)).predict(q)
    assert all(
        np.array_equal(g, w) for g, w in zip(got, reference.predict(parse(regression), q), strict=True)
    )
    assert load_library(str(path)).direct_status_name(13) == b"?"  # TASK is never returned there
