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
