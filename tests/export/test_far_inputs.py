"""The float graphs hold each input to the hold range (``onnx_export.hold_range``: the training range
widened by 2^20 widths on each side) before the features: every output stays finite for any finite
input (1e300, ±1.7e308 in ONNX; 1e30, ±3e38 in TFLite), the answer beyond the hold point is the answer
at it, ``out_of_range`` still reads the unclipped input, and inputs inside the range give the same bits
as the graph without the hold.  onnxruntime with default options, LiteRT and TFLite Micro."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the export extra is not installed")

from direct_edge.export import onnx_export  # noqa: E402
from direct_edge.export.packed import blob_input_range, pack, synthetic_blob  # noqa: E402
from direct_edge.runtime.blob import parse  # noqa: E402

from .conftest import iris_classifier, mixed_blob, run_litert, run_tflm  # noqa: E402

FAR64 = [1e300, -1e300, 1.7e308, -1.7e308, 1e30, -1e30]
FAR32 = [1e30, -1e30, 3e38, -3e38]
REGRESSION = ("mean", "variance")
CLASSIFICATION = ("label", "proba", "entropy", "mutual_info")


@pytest.fixture(scope="module", params=["rff", "linear"])
def regressor(request):
    """(model, blob, training inputs) of a DirectRegressor on the diabetes data."""
    from sklearn.datasets import load_diabetes

    from direct_edge.trainer import DirectRegressor

    X, y = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DirectRegressor(features=request.param, n_features=64, max_iter=100, grid_scale=1.0).fit(X, y)
    return model, parse(pack(model, n_samples=16, seed=1, exact=True)), X


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def classifier(request):
    """(model, blob, training inputs) of a DirectClassifier on iris, binary or three classes."""
    return iris_classifier(request.param)


def far_rows(blob, X: np.ndarray, feats) -> tuple[np.ndarray, dict[str, slice], np.ndarray]:
    """float64 rows: the training middle with input 0, then every input, at each of FAR64, at the
    hold point's high and low end and one float64 step inside each.  Returns (rows, {name: rows of that
    value}, in-range rows)."""
    lo, hi = blob_input_range(blob)
    middle = lo / 2 + hi / 2
    low, high = onnx_export.hold_range(blob, feats.origin)
    values = {f"{v:g}": np.full(blob.n_inputs, v) for v in FAR64}
    values |= {
        "hold_high": high,
        "hold_low": low,
        "inside_high": np.nextafter(high, -np.inf),
        "inside_low": np.nextafter(low, np.inf),
    }
    rows, where = [], {}
    for name, v in values.items():
        one = middle.copy()
        one[0] = v[0]
        where[name] = slice(len(rows), len(rows) + 2)
        rows += [one, v]  # input 0 alone, then every input
    return np.array(rows), where, X[::7]


def check_finite(out: dict, names) -> None:
    for name in names:
        assert np.all(np.isfinite(out[name])), name
    if "variance" in out:
        assert np.all(out["variance"] > 0)
    if "proba" in out:
        p = out["proba"]
        assert np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(out["entropy"] >= 0) and np.all(out["mutual_info"] >= 0)


def run_onnx(model, feed: dict) -> dict:
    sess = onnx_export.session(onnx_export.to_bytes(model))
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))


def unheld(monkeypatch, d: int) -> None:
    """The graphs as they were before the hold: limits ±inf (Max, Min with them are the identity)."""
    from direct_edge.export import tflite_export

    def everything(blob, origin):
        return np.full(d, -np.inf), np.full(d, np.inf)

    monkeypatch.setattr(onnx_export, "hold_range", everything)
    monkeypatch.setattr(tflite_export, "hold_range", everything)


def check_onnx(build, blob, X, feats, names, monkeypatch) -> None:
    rows, where, inside = far_rows(blob, X, feats)
    out = run_onnx(build(), {"x": rows})
    check_finite(out, names)
    assert out["out_of_range"].all()
    for name in names:  # beyond the hold point, the answer at it
        v = out[name]
        for far in ("1e+300", "1.7e+308"):
            np.testing.assert_array_equal(v[where[far]], v[where["hold_high"]], err_msg=f"{name} {far}")
        for far in ("-1e+300", "-1.7e+308"):
            np.testing.assert_array_equal(v[where[far]], v[where["hold_low"]], err_msg=f"{name} {far}")
    held = run_onnx(build(), {"x": inside})
    assert not held["out_of_range"].any()
    with monkeypatch.context() as m:
        unheld(m, blob.n_inputs)
        before = run_onnx(build(), {"x": inside})
    for name in [*names, "out_of_range"]:
        np.testing.assert_array_equal(held[name], before[name], err_msg=name)


def test_onnx_regression_graphs_stay_finite_far_out(regressor, monkeypatch):
    model, blob, X = regressor
    feats = onnx_export.features_from_model(model)
    moments = onnx_export.moments_from_model(model)
    check_onnx(lambda: onnx_export.exact_model(blob, feats, moments), blob, X, feats, REGRESSION, monkeypatch)
    check_onnx(lambda: onnx_export.float_model(blob, feats), blob, X, feats, REGRESSION, monkeypatch)
    if model.feature_map_.kind == "linear":  # the straight line, extrapolated to the hold point
        rows, where, _ = far_rows(blob, X, feats)
        mean = run_onnx(onnx_export.exact_model(blob, feats, moments), {"x": rows})["mean"]
        want = model.predict(rows[where["hold_high"]])
        np.testing.assert_allclose(mean[where["1e+300"]], want, rtol=1e-4)


def test_onnx_classifier_graph_stays_finite_far_out(classifier, monkeypatch):
    model, blob, X = classifier
    feats = onnx_export.features_from_model(model)
    check_onnx(
        lambda: onnx_export.float_classifier_model(blob, feats), blob, X, feats, CLASSIFICATION, monkeypatch
    )


def test_onnx_raw_front_end_stays_finite_far_out():
    """The raw-column graphs feed the same features: a numeric column at 1e300 or −1.7e308."""
    from .conftest import mixed_schema

    blob = mixed_blob()
    feats = onnx_export.features_from_blob(blob)
    schema = mixed_schema()
    lo, hi = blob_input_range(blob)
    middle = lo / 2 + hi / 2  # x: age, colour (3), size, its indicator, sex (2)
    rows = np.tile(np.array([middle[0], 1.0, middle[4], 0.0]), (6, 1))
    rows[:5, 0] = [1e300, -1.7e308, 1.7e308, -1e300, 1e30]
    rows[4, 2] = np.nan  # the imputed column, far on its neighbour
    for graph in (
        onnx_export.float_model(blob, feats),
        onnx_export.exact_model(blob, feats, onnx_export.moments_from_blob(blob, feats)),
    ):
        out = run_onnx(onnx_export.raw_front_end(graph, schema), {"raw": rows})
        check_finite(out, REGRESSION)
        assert out["out_of_range"][:5].all()  # (the synthetic ranges leave no row of codes in range)
        assert not out["refused"].any()


# ---- TFLite --------------------------------------------------------------------------------------


def fed_rows(blob, X, feats) -> tuple[np.ndarray, dict[str, slice], np.ndarray]:
    """float32 rows as the host feeds them (x minus host_origin, zero here): the training middle with
    input 0, then every input, at each of FAR32, at the fed value whose centred value is the hold
    limit, and one float32 step inside it.  Returns (rows, {name: rows}, in-range rows)."""
    from direct_edge.export import tflite_export

    assert not np.any(tflite_export.host_origin(blob))
    lo, hi = blob_input_range(blob)
    middle = (lo / 2 + hi / 2).astype(np.float32)
    origin = feats.origin.astype(np.float32)
    z_low, z_high = tflite_export.hold_limits(blob, feats)
    assert np.all(np.isfinite(z_low)) and np.all(np.isfinite(z_high))

    def reaching(z, up):  # the float32 v nearest the middle whose v − origin (float32) is z or beyond
        v = (z + origin).astype(np.float32)
        step = np.float32(np.inf if up else -np.inf)
        for _ in range(8):
            short = (v - origin < z) if up else (v - origin > z)
            v = np.where(short, np.nextafter(v, step), v).astype(np.float32)
        return v

    high, low = reaching(z_high, True), reaching(z_low, False)
    assert np.all(high - origin >= z_high) and np.all(low - origin <= z_low)
    values = {f"{v:g}": np.full(blob.n_inputs, v, np.float32) for v in FAR32}
    values |= {
        "hold_high": high,
        "hold_low": low,
        "inside_high": np.nextafter(high, np.float32(-np.inf)),
        "inside_low": np.nextafter(low, np.float32(np.inf)),
    }
    rows, where = [], {}
    for name, v in values.items():
        one = middle.copy()
        one[0] = v[0]
        where[name] = slice(len(rows), len(rows) + 2)
        rows += [one, v]
    return np.array(rows, np.float32), where, X[::7].astype(np.float32)


def run_micro(tmp_path, data: bytes, x: np.ndarray, names) -> dict:
    """TFLite Micro (conftest.run_tflm) on ``data``; outputs by the graph's order ``names``."""
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    return dict(zip(names, run_tflm(path, x, len(names)), strict=True))


def check_tflite(tmp_path, build, blob, X, feats, names, monkeypatch) -> None:
    pytest.importorskip("ai_edge_litert")
    rows, where, inside = fed_rows(blob, X, feats)
    data = build()
    outs = {"litert": run_litert(data, rows)}
    outs["micro"] = run_micro(tmp_path, data, rows, [*names, "out_of_range"])
    for engine, out in outs.items():
        check_finite(out, names)
        assert out["out_of_range"].all(), engine
        for name in names:
            v = out[name]
            np.testing.assert_array_equal(
                v[where["3e+38"]], v[where["hold_high"]], err_msg=f"{engine} {name}"
            )
            np.testing.assert_array_equal(
                v[where["-3e+38"]], v[where["hold_low"]], err_msg=f"{engine} {name}"
            )
    held = run_litert(data, inside)
    assert not held["out_of_range"].any()
    with monkeypatch.context() as m:
        unheld(m, blob.n_inputs)
        before = run_litert(build(), inside)
    for name in [*names, "out_of_range"]:
        np.testing.assert_array_equal(held[name], before[name], err_msg=name)


def test_tflite_regression_graphs_stay_finite_far_out(tmp_path, regressor, monkeypatch):
    from direct_edge.export import tflite_export

    model, blob, X = regressor
    feats = onnx_export.features_from_model(model)
    moments = onnx_export.moments_from_model(model)
    graphs = {
        "exact": lambda: tflite_export.build_exact(blob, feats, moments),
        "ensemble16": lambda: tflite_export.build(blob, feats, 16),
        "ensemble8": lambda: tflite_export.build(blob, feats, 8),
    }
    for build in graphs.values():
        check_tflite(tmp_path, build, blob, X, feats, REGRESSION, monkeypatch)


def test_tflite_classifier_graph_stays_finite_far_out(tmp_path, classifier, monkeypatch):
    from direct_edge.export import tflite_export

    model, blob, X = classifier
    feats = onnx_export.features_from_model(model)
    for activations in (16, 8):
        check_tflite(
            tmp_path,
            lambda a=activations: tflite_export.build_classifier(blob, feats, a),
            blob,
            X,
            feats,
            CLASSIFICATION,
            monkeypatch,
        )


def test_hold_range_is_2_20_widths_out_and_keeps_x_minus_origin_finite_in_float32():
    """The hold range is the training range widened by 2^20 widths on each side; with an origin far
    from it (1e300) it shrinks to origin ± float32's largest value, finite."""
    blob = parse(synthetic_blob("rff", 3, 64, 4, seed=3))
    feats = onnx_export.features_from_blob(blob)
    lo, hi = blob_input_range(blob)
    low, high = onnx_export.hold_range(blob, feats.origin)
    assert np.all(low < lo) and np.all(high > hi)
    width = hi / 2 - lo / 2
    np.testing.assert_allclose(high - hi, 2.0**21 * width, rtol=1e-12)
    huge = np.array([1e300, -1e300, 5.0])
    low, high = onnx_export.hold_range(blob, huge)
    f32 = float(np.finfo(np.float32).max)
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    assert np.all(high - huge <= f32) and np.all(huge - low <= f32)
