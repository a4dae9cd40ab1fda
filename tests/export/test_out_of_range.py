"""IS §2.1 in the graphs: the ``out_of_range`` output of the float and integer ONNX graphs (onnxruntime,
default session) equals the numpy reference's flag bit for bit on 10,000 rows inside, at the ends, at
the thresholds and beyond."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from direct_edge.export import onnx_export  # noqa: E402
from direct_edge.export.packed import synthetic_blob  # noqa: E402
from direct_edge.runtime import reference  # noqa: E402
from direct_edge.runtime.blob import parse  # noqa: E402

from .conftest import run_tflm  # noqa: E402


def edge_rows(blob, n: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """n real rows: a third inside with one input at a special value (an end, a threshold or the value
    of ``dtype`` just below it, half a step beyond an end, ±far), the specials themselves, the rest
    uniform over twice the range."""
    rng = np.random.default_rng(seed)
    d = blob.n_inputs
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    t_lo, t_hi = reference.range_thresholds(blob, dtype)
    far = 1e12 if dtype == np.float64 else 1e30
    down = dtype(-np.inf)
    special = [
        lo,
        hi,
        t_lo,
        t_hi,
        np.nextafter(t_lo, down),
        np.nextafter(t_hi, down),
        lo - blob.input_scale / 2,
        hi + blob.input_scale / 2,
        np.full(d, -far),
        np.full(d, far),
    ]
    special = np.array(special, dtype=np.float64)
    X = rng.uniform(lo - (hi - lo) / 2, hi + (hi - lo) / 2, (n, d))
    m = n // 3
    X[:m] = rng.uniform(lo, hi, (m, d))
    cols = rng.integers(0, d, m)
    X[np.arange(m), cols] = special[rng.integers(0, len(special), m), cols]
    X[m : m + len(special)] = special
    return X.astype(dtype)


BLOBS = [("linear", 3, 4), ("rff", 5, 64), ("linear", 40, 41)]


@pytest.mark.parametrize("kind,d,b", BLOBS)
def test_onnx_graphs_flag_the_reference_rows(kind, d, b):
    blob = parse(synthetic_blob(kind, d, b, 4, seed=d, layout="dense4", exact=True))
    feats = onnx_export.features_from_blob(blob)
    X = edge_rows(blob, 10_000, seed=d)
    q, mask = reference.quantize_inputs(blob, X, return_mask=True)
    want = mask != 0
    assert 0 < want.sum() < len(want)
    graphs = {
        "float": onnx_export.float_model(blob, feats),
        "exact": onnx_export.exact_model(blob, feats, onnx_export.moments_from_blob(blob, feats)),
    }
    for name, model in graphs.items():
        got = onnx_export.session(onnx_export.to_bytes(model)).run(["out_of_range"], {"x": X})[0]
        assert got.dtype == np.bool_ and got.shape == (len(X),), name
        np.testing.assert_array_equal(got, want, err_msg=name)
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob)))
    extremes = np.random.default_rng(d).choice(
        np.array([-32768, -32767, 0, 32766, 32767], np.int16), (3000, d)
    )
    q = np.concatenate([q, extremes])
    got = sess.run(["out_of_range"], {"q": q})[0]
    np.testing.assert_array_equal(got, reference.at_edge(q) != 0)


def tflite_graphs(blob) -> dict[str, bytes]:
    from direct_edge.export import tflite_export

    feats = onnx_export.features_from_blob(blob)
    return {
        "exact": tflite_export.build_exact(blob, feats, onnx_export.moments_from_blob(blob, feats)),
        "ensemble16": tflite_export.build(blob, feats, 16),
        "ensemble8": tflite_export.build(blob, feats, 8),
    }


def fed_rows_and_flags(blob, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows as a host feeds them (x − origin) over, at and beyond the range ends, and the
    reference's IS §2.1 row flag of the real value each stands for (fed + origin in float64)."""
    from direct_edge.export import tflite_export

    origin = tflite_export.host_origin(blob)
    fed = (edge_rows(blob, n, seed=seed, dtype=np.float32).astype(np.float64) - origin).astype(np.float32)
    low, high = tflite_export.range_limits(blob)
    d = blob.n_inputs
    ends = np.array(
        [low, high, np.nextafter(low, np.float32(-np.inf)), np.nextafter(high, np.float32(np.inf))]
    )
    fed[:4] = ends  # every input at the lowest / highest value in range, then one float32 step beyond
    middle = (low / 2 + high / 2).astype(np.float32)
    for i, e in enumerate(ends):  # one input at each limit, the others at the range's middle
        rows = np.tile(middle, (d, 1))
        rows[np.arange(d), np.arange(d)] = e[np.arange(d)]
        fed[4 + i * d : 4 + (i + 1) * d] = rows
    want = reference.out_of_range(blob, fed.astype(np.float64) + origin) != 0
    return fed, want


@pytest.mark.parametrize("kind,d,b", BLOBS)
def test_tflite_graphs_flag_the_reference_rows_in_litert(kind, d, b):
    """IS §2.1 in TFLite: the "out_of_range" output of the serving_default signature equals the
    reference's flag, bit for bit, on rows inside, at the lowest and highest value in range, one float32
    step beyond each and far beyond, for the exact-moment and both ensemble graphs."""
    Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    blob = parse(synthetic_blob(kind, d, b, 4, seed=d, layout="dense4", exact=True))
    fed, want = fed_rows_and_flags(blob, 10_000, seed=d)
    assert 0 < want.sum() < len(want)
    assert not want[:2].any() and want[2:4].all()  # at the limits / one float32 step beyond
    assert not want[4 : 4 + 2 * d].any() and want[4 + 2 * d : 4 + 4 * d].all()
    for name, data in tflite_graphs(blob).items():
        runner = Interpreter(model_content=data).get_signature_runner()
        assert set(runner.get_output_details()) == {"mean", "variance", "out_of_range"}, name
        (input_name,) = runner.get_input_details()
        got = runner(**{input_name: fed})["out_of_range"]
        assert got.dtype == np.bool_ and got.shape == (len(fed),), name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("kind,d,b", BLOBS[:2])
def test_tflite_graphs_flag_the_reference_rows_in_tflite_micro(tmp_path, kind, d, b):
    """The same in TensorFlow Lite Micro, one invoke per row (its stored batch of 1), output 2."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    blob = parse(synthetic_blob(kind, d, b, 4, seed=d, layout="dense4", exact=True))
    fed, want = fed_rows_and_flags(blob, 400, seed=d)
    for name, data in tflite_graphs(blob).items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        got = run_tflm(path, fed, 3)[2]
        np.testing.assert_array_equal(got.astype(bool), want, err_msg=name)


def test_prepared_inputs_count_only_their_values_in_the_integer_graph():
    """A model whose schema prepares its inputs (MF §10): one-hot and indicator inputs are always at
    an int16 edge, so the integer graph's out_of_range looks at the numeric values' inputs only, as
    direct-run --quantized and the header's RANGE_MASK do."""
    from .conftest import mixed_blob

    blob = mixed_blob()
    rng = np.random.default_rng(2)
    q = rng.choice(np.array([-32768, -32767, 0, 32766, 32767], np.int16), (3000, 8))
    sess = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob)))
    got = sess.run(["out_of_range"], {"q": q})[0]
    values = blob.schema.value_inputs
    assert values.tolist() == [True, False, False, False, True, False, False, False]
    np.testing.assert_array_equal(got, reference.at_edge(q[:, values]) != 0)
    assert 0 < got.sum() < (reference.at_edge(q) != 0).sum()
