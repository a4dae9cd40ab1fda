"""model.direct: round trips, and every kind of damaged or foreign file is rejected (docs/model-file.md)."""

import json
import struct
import zlib

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from direct_edge.trainer import DirectRegressor, ModelFileError, load_model, save_model
from direct_edge.trainer.model_file import (
    _PREFIX,
    MAGIC,
    decode,
    encode,
    model_from_arrays,
    model_to_arrays,
)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def small_model(diabetes):
    X, y = diabetes
    return DirectRegressor(n_features=16, lengthscale=3.0, grid_scale=0.2, prior_scale=0.5, max_iter=50).fit(
        X, y
    )


@pytest.mark.parametrize(
    "params",
    [
        {"features": "linear"},
        {"n_features": 32, "lengthscale": [2.0] * 10, "grid_scale": 0.1, "prior_scale": 0.5},
        {
            "n_features": 16,
            "family": "mixture",
            "n_components": 3,
            "lengthscale": 3.0,
            "grid_scale": 0.2,
            "prior_scale": 0.5,
            "bits": 3,
            "symmetric": False,
        },
    ],
)
def test_round_trip_reproduces_predictions_samples_and_attributes(tmp_path, diabetes, params):
    X, y = diabetes
    model = DirectRegressor(max_iter=100, **params).fit(X, y)
    path = tmp_path / "model.direct"
    save_model(path, model, {"test_rmse": 1.5})
    loaded = load_model(path)
    mean, sd = model.predict(X, return_std=True)
    mean2, sd2 = loaded.predict(X, return_std=True)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(sd, sd2)
    np.testing.assert_array_equal(model.sample(8, seed=3).levels, loaded.sample(8, seed=3).levels)
    assert loaded.get_params() == model.get_params()
    for key in (
        "elbo_",
        "n_iter_",
        "grid_scale_",
        "prior_scale_",
        "n_train_",
        "sparsity_",
        "noise_variance_",
    ):
        assert getattr(loaded, key) == getattr(model, key), key
    assert loaded.trace_ == model.trace_
    assert loaded.summary_ == {"test_rmse": 1.5}
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_every_truncation_is_rejected(tmp_path, small_model):
    blob = encode(*model_to_arrays(small_model))
    for cut in range(len(blob)):
        with pytest.raises(ModelFileError):
            decode(blob[:cut])


def test_random_bit_flips_are_rejected(small_model):
    blob = bytearray(encode(*model_to_arrays(small_model)))
    rng = np.random.default_rng(0)
    for _ in range(1000):
        damaged = bytearray(blob)
        pos = int(rng.integers(len(damaged)))
        damaged[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(ModelFileError):
            model_from_arrays(*decode(bytes(damaged)))


def _reencode(meta: dict, table: list, payload: bytes, major: int = 1) -> bytes:
    """A file with a *valid* CRC around arbitrary content, to reach the checks behind the CRC."""
    header = json.dumps({"meta": meta, "arrays": table}).encode()
    header += b" " * ((-(_PREFIX.size + len(header))) % 16)
    body = _PREFIX.pack(MAGIC, major, 0, len(header)) + header + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _parts(blob: bytes):
    _, _, _, hlen = _PREFIX.unpack_from(blob, 0)
    header = json.loads(blob[_PREFIX.size : _PREFIX.size + hlen])
    return header["meta"], header["arrays"], blob[_PREFIX.size + hlen : -4]


def test_content_behind_a_valid_crc_is_still_checked(small_model):
    blob = encode(*model_to_arrays(small_model))
    meta, table, payload = _parts(blob)
    # A future major version.
    with pytest.raises(ModelFileError, match="not supported"):
        decode(_reencode(meta, table, payload, major=2))
    # An array that claims to run past the end.
    bad = [dict(e) for e in table]
    bad[0]["offset"] = len(payload)
    with pytest.raises(ModelFileError, match="past the end"):
        decode(_reencode(meta, bad, payload))
    # A size that disagrees with the shape.
    bad = [dict(e) for e in table]
    bad[0]["nbytes"] += 8
    with pytest.raises(ModelFileError, match="inconsistent size"):
        decode(_reencode(meta, bad, payload))
    # A dtype that is not allowed (e.g. pickled objects).
    bad = [dict(e) for e in table]
    bad[0]["dtype"] = "|O"
    with pytest.raises(ModelFileError):
        decode(_reencode(meta, bad, payload))
    # Probabilities that do not sum to one.
    m, arrays = decode(blob)
    arrays["posterior.q_noise"] = arrays["posterior.q_noise"] * 2
    with pytest.raises(ModelFileError, match="probability"):
        model_from_arrays(*decode(encode(m, arrays)))
    # Posterior shape that does not match the feature map.
    m, arrays = decode(blob)
    arrays["posterior.q_weights"] = arrays["posterior.q_weights"][:, :-1]
    with pytest.raises(ModelFileError, match="do not match"):
        model_from_arrays(*decode(encode(m, arrays)))
    # Missing metadata.
    m, arrays = decode(blob)
    del m["params"]
    with pytest.raises(ModelFileError, match="malformed"):
        model_from_arrays(*decode(encode(m, arrays)))


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, MAGIC, MAGIC + b"\1\0\1\0"],
)
def test_foreign_or_empty_files_are_rejected(tmp_path, content):
    path = tmp_path / "foreign.direct"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_missing_file_and_directory_are_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.direct")
    with pytest.raises(ModelFileError, match="directory"):
        load_model(tmp_path)


def test_failed_save_leaves_previous_file_untouched(tmp_path, small_model, monkeypatch):
    path = tmp_path / "model.direct"
    path.write_bytes(b"previous")
    import direct_edge.trainer.model_file as mf

    def broken_fsync(fd):
        raise OSError("disk full")

    # Fails after the temp file was written, before the rename.
    monkeypatch.setattr(mf.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        save_model(path, small_model)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.direct"]
