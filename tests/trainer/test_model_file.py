"""model.direct: round trips, and every kind of damaged or foreign file is rejected (docs/model-file.md)."""

import json
import struct
import warnings
import zlib

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning

from direct_edge.trainer import DirectRegressor, ModelFileError, load_model, save_model
from direct_edge.trainer.model_file import (
    _PREFIX,
    ARRAYS,
    HEADER,
    MAGIC,
    META,
    ListOf,
    Nullable,
    Object,
    RegressorParams,
    check_content,
    decode,
    encode,
    json_depth,
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
        {"n_features": 32, "lengthscale": 3.0, "grid_gains": "evidence"},
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
    gains, loaded_gains = model.posterior_.weight_grid.gains, loaded.posterior_.weight_grid.gains
    assert (gains is None) == (loaded_gains is None)
    assert (gains is not None) == (model.grid_gains == "evidence") or model.grid_gains == "auto"
    if gains is not None:
        np.testing.assert_array_equal(gains, loaded_gains)
    np.testing.assert_array_equal(loaded.posterior_.variance_floor, model.posterior_.variance_floor)
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
    with pytest.raises(ModelFileError, match="must hold probabilities"):
        model_from_arrays(*decode(encode(m, arrays)))
    # Posterior shape that does not match the feature map.
    m, arrays = decode(blob)
    arrays["posterior.q_weights"] = arrays["posterior.q_weights"][:, :-1]
    arrays["posterior.variance_floor"] = arrays["posterior.variance_floor"][:-1]
    with pytest.raises(ModelFileError, match="need b = 2F >= 2, got b = 15, F = 8"):
        model_from_arrays(*decode(encode(m, arrays)))
    # Missing metadata.
    m, arrays = decode(blob)
    del m["params"]
    with pytest.raises(ModelFileError, match="^model file is malformed: meta has no 'params'$"):
        model_from_arrays(*decode(encode(m, arrays)))


def test_grid_gains_behind_a_valid_crc_are_checked(diabetes):
    X, y = diabetes
    model = DirectRegressor(n_features=16, lengthscale=3.0, grid_gains="evidence", max_iter=50).fit(X, y)
    meta, arrays = model_to_arrays(model)
    model_from_arrays(*decode(encode(meta, arrays)))
    for bad, why in (
        (np.zeros(16), "gains"),  # a zero gain would erase its feature
        (np.full(16, 1.5), "gains"),  # above 1: the device's u16 holds at most 2^15
        (np.full(16, 0.3), "multiple"),  # not what the device holds
        (np.ones(15), "b"),  # one per feature
    ):
        broken = dict(arrays, **{"grid.gains": bad})
        with pytest.raises(ModelFileError, match=why):
            model_from_arrays(*decode(encode(meta, broken)))


def test_the_variance_floor_behind_a_valid_crc_is_checked_and_files_without_it_load(diabetes):
    X, y = diabetes
    model = DirectRegressor(n_features=16, lengthscale=3.0, max_iter=50).fit(X, y)
    meta, arrays = model_to_arrays(model)
    assert np.all(arrays["posterior.variance_floor"] >= 0) and np.any(arrays["posterior.variance_floor"] > 0)
    for bad, why in (
        (np.full(16, -1e-3), ">= 0"),
        (np.full(16, 1e300), "step²/12"),  # more than one grid cell: not a rounding floor
        (np.full(16, np.nan), "finite"),
        (np.ones(15), "b"),
    ):
        broken = dict(arrays, **{"posterior.variance_floor": bad})
        with pytest.raises(ModelFileError, match=why):
            model_from_arrays(*decode(encode(meta, broken)))
    # A file written before the floor existed predicts q's own moments (docs/trainer.md §7).
    old = model_from_arrays(*decode(encode(meta, {k: v for k, v in arrays.items() if "floor" not in k})))
    assert old.posterior_.variance_floor is None
    Phi = model.feature_map_.transform(X)
    q_var = model.posterior_.predict_moments(Phi, include_rounding=False)[1]
    np.testing.assert_allclose(
        old.predict(X, return_std=True)[1], np.sqrt(q_var) * model.y_scale_, rtol=1e-12
    )


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


# ---- the schema (docs/model-file.md §2, §5) ---------------------------------------------------------


def _unnamed_keys(value, rule, where="header") -> list[str]:
    """Keys in ``value`` that ``rule`` does not name (free-form objects and parameters excepted)."""
    if isinstance(rule, Nullable):
        rule = rule.rule
    if isinstance(rule, RegressorParams):
        return [f"{where}.{k}" for k in value if k not in RegressorParams.names()]
    if isinstance(rule, Object) and not rule.free:
        missing = [f"{where}.{k}" for k in value if k not in rule.fields]
        return missing + [
            x
            for k, v in value.items()
            if k in rule.fields
            for x in _unnamed_keys(v, rule.fields[k], f"{where}.{k}")
        ]
    if isinstance(rule, ListOf):
        return [x for i, v in enumerate(value) for x in _unnamed_keys(v, rule.item, f"{where}[{i}]")]
    return []


CONFIGURATIONS = [
    {"features": "linear", "max_iter": 20},
    {"n_features": 8, "lengthscale": [2.0] * 10, "grid_scale": 0.1, "prior_scale": 0.5, "max_iter": 20},
    {"n_features": 8, "family": "mixture", "n_components": 2, "bits": 3, "symmetric": False, "max_iter": 20},
]


@pytest.mark.parametrize("params", CONFIGURATIONS)
def test_every_file_the_writer_produces_validates_and_the_schema_names_every_key(diabetes, params):
    X, y = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DirectRegressor(**params).fit(X, y)
    meta, arrays = model_to_arrays(model, {"test_rmse": 1.5})
    blob = encode(meta, arrays)
    header = json.loads(blob[16 : 16 + struct.unpack_from("<I", blob, 12)[0]])
    HEADER.check(header, "header")
    assert _unnamed_keys(header, HEADER) == []
    assert set(arrays) <= {spec.name for spec in ARRAYS}
    dims = check_content(*decode(blob))
    assert (
        dims["d"] == 10
        and dims["b"] == model.feature_map_.n_features
        and dims["m"] == arrays["grid.levels"].size
    )
    assert set(RegressorParams.names()) == set(meta["params"])
    assert "fit_time_" not in meta["fitted"], "timings make files differ between identical fits"


def test_the_schema_rejects_each_kind_of_bad_value_with_its_path():
    fitted = META.fields["fitted"]
    good = {
        "elbo_": -1.5,
        "n_iter_": 3,
        "converged_": True,
        "grid_scale_": 0.2,
        "prior_scale_": None,
        "n_train_": 10,
        "train_rmse_": 0.5,
        "y_offset_": 0.0,
        "y_scale_": 1.0,
        "n_features_in_": 2,
    }
    fitted.check(good, "meta.fitted")
    fitted.check({**good, "fit_time_": 0.25, "unknown_key": [1]}, "meta.fitted")  # older and newer files
    cases = [
        ("y_scale_", float("inf"), "meta.fitted.y_scale_ must be a finite number > 0, got inf"),
        ("y_scale_", 0, "meta.fitted.y_scale_ must be a finite number > 0, got 0"),
        ("y_offset_", float("nan"), "meta.fitted.y_offset_ must be a finite number, got nan"),
        ("y_offset_", 2**1024, "meta.fitted.y_offset_ must be a finite number, got 1797"),
        ("n_iter_", 2.0, "meta.fitted.n_iter_ must be an integer >= 0, got 2.0"),
        ("n_iter_", True, "meta.fitted.n_iter_ must be an integer >= 0, got True"),
        ("converged_", 1, "meta.fitted.converged_ must be true or false, got 1"),
        ("prior_scale_", -1.0, "meta.fitted.prior_scale_ must be null or a finite number > 0, got -1.0"),
        ("n_features_in_", [2], "meta.fitted.n_features_in_ must be an integer >= 1, got [2]"),
    ]
    for key, value, message in cases:
        with pytest.raises(ModelFileError) as info:
            fitted.check({**good, key: value}, "meta.fitted")
        assert str(info.value).startswith(f"model file is malformed: {message}"), str(info.value)
    with pytest.raises(ModelFileError, match=r"^model file is malformed: meta.fitted has no 'y_scale_'$"):
        fitted.check({k: v for k, v in good.items() if k != "y_scale_"}, "meta.fitted")


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth("{}") == 1
    assert json_depth('{"a": [1, {"b": []}]}') == 4
    assert json_depth('{"a": "[[[[{{{{"}') == 1
    assert json_depth('{"a": "\\"[[["}') == 1
    assert json_depth("[" * 5000 + "]" * 5000) == 5000


def _edit_header(blob: bytes, edit) -> bytes:
    meta, table, payload = _parts(blob)
    edit(meta, table)
    return _reencode(meta, table, payload)


def _entry(table: list, name: str) -> dict:
    return next(e for e in table if e["name"] == name)


@pytest.mark.parametrize(
    "edit, message",
    [
        # Numbers that overflowed int conversion or numpy (OverflowError before).
        (
            lambda m, t: _entry(t, "trace").update(offset=float("inf")),
            "header.arrays[8].offset must be an integer",
        ),
        (
            lambda m, t: _entry(t, "trace").update(offset=2**64),
            "header.arrays[8].offset must be an integer in",
        ),
        (
            lambda m, t: _entry(t, "trace").update(shape=[2**64]),
            "header.arrays[8].shape[0] must be an integer in",
        ),
        (
            lambda m, t: _entry(t, "trace").update(shape=[0, 2**40, 2**40]),
            "array 'trace' has too many elements",
        ),
        (lambda m, t: _entry(t, "trace").update(offset=8), "header.arrays[8].offset must be an integer in"),
        # A 0-d lengthscale (IndexError before).
        (
            lambda m, t: _entry(t, "lengthscale").update(shape=[], nbytes=8),
            "array 'lengthscale' must be <f8 with 1 dimension(s)",
        ),
        # Types and values the content rules refuse.
        (
            lambda m, t: m["fitted"].update(y_scale_=float("-inf")),
            "meta.fitted.y_scale_ must be a finite number > 0",
        ),
        (lambda m, t: m["grid"].update(bits=9), "meta.grid.bits must be an integer in [2, 8], got 9"),
        (
            lambda m, t: m["feature_map"].update(kind="poly"),
            "meta.feature_map.kind must be one of 'linear', 'rff'",
        ),
        (lambda m, t: m["params"].update(bits="4"), "meta.params holds a bad option: The 'bits' parameter"),
        (lambda m, t: m["params"].update(lengthscale=[[1.0], [2.0, 3.0]]), "meta.params holds a bad option"),
        (lambda m, t: m["fitted"].update(n_features_in_=9), "fitted.n_features_in_ must equal d = 10"),
        (lambda m, t: m.update(arrays=None, selection={}), "meta.selection must be a list, got {}"),
        (lambda m, t: t.append(dict(t[0])), "arrays[13] repeats the name 'feature_map.input_offset'"),
        (lambda m, t: t.remove(_entry(t, "posterior.noise")), "the file has no array 'posterior.noise'"),
    ],
)
def test_header_values_behind_a_valid_crc_raise_one_model_file_error(small_model, edit, message):
    blob = _edit_header(encode(*model_to_arrays(small_model)), edit)
    with pytest.raises(ModelFileError) as info:
        model_from_arrays(*decode(blob))
    text = str(info.value)
    assert text.startswith("model file is malformed: ") and message in text and "\n" not in text, text


def test_deep_or_huge_headers_are_refused_before_parsing(small_model, monkeypatch):
    meta, table, payload = _parts(encode(*model_to_arrays(small_model)))
    deep = json.dumps({"meta": meta, "arrays": table})[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    body = _PREFIX.pack(MAGIC, 1, 1, len(deep) + (-(16 + len(deep)) % 16))
    body += deep.encode() + b" " * (-(16 + len(deep)) % 16) + payload
    with pytest.raises(ModelFileError, match="^model file header nests deeper than 32 levels$"):
        decode(body + struct.pack("<I", zlib.crc32(body)))  # RecursionError before
    import direct_edge.trainer.model_file as mf

    monkeypatch.setattr(mf, "MAX_HEADER_BYTES", 1024)
    with pytest.raises(ModelFileError, match="^model file header is larger than 0 MiB$"):
        decode(encode(*model_to_arrays(small_model)))


def test_values_that_overflow_together_are_refused(small_model):
    meta, arrays = model_to_arrays(small_model)
    meta["fitted"]["y_scale_"] = 1e308  # each value finite, the predictive sd (>= 3e308) is not
    arrays["posterior.noise"] = arrays["posterior.noise"] * 1e4
    with pytest.raises(ModelFileError, match="overflows when it predicts in its training range"):
        model_from_arrays(*decode(encode(meta, arrays)))
    meta, arrays = model_to_arrays(small_model)
    arrays["feature_map.input_scale"] = arrays["feature_map.input_scale"] * 1e-30
    with pytest.raises(ModelFileError, match="must exceed 8 ulps of the input offset"):
        model_from_arrays(*decode(encode(meta, arrays)))


def test_files_in_the_current_format_from_before_the_schema_still_load(diabetes, small_model):
    """1.1 files that store fit_time_ (written before timings left the file) and 1.0 files without
    the training range load and predict as the model does."""
    X, _ = diabetes
    meta, arrays = model_to_arrays(small_model)
    meta["fitted"]["fit_time_"] = 1.25
    old = model_from_arrays(*decode(encode(meta, arrays)))
    np.testing.assert_array_equal(old.predict(X), small_model.predict(X))
    del arrays["data.input_min"], arrays["data.input_max"]
    oldest = model_from_arrays(*decode(encode(meta, arrays)))
    np.testing.assert_array_equal(oldest.predict(X), small_model.predict(X))
    assert not hasattr(oldest, "input_min_") and not hasattr(oldest, "fit_time_")


def test_input_names_survive_save_and_load(tmp_path):
    """A model fitted on a DataFrame keeps feature_names_in_ through the file, so a pipeline that
    predicts on a DataFrame still works (scikit-learn checks the names)."""
    import pandas as pd

    from direct_edge.trainer import DirectRegressor, load_model, save_model

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["temp", "load", "speed"])
    y = frame["temp"] - frame["speed"] + 0.1 * rng.standard_normal(80)
    model = DirectRegressor(features="linear", max_iter=100).fit(frame, y)
    save_model(tmp_path / "m.direct", model)
    loaded = load_model(tmp_path / "m.direct")
    assert list(loaded.feature_names_in_) == ["temp", "load", "speed"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_a_later_fit_on_unnamed_data_forgets_the_old_names():
    import pandas as pd

    from direct_edge.trainer import DirectRegressor
    from direct_edge.trainer.data import ArraySource

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(60, 2)), columns=["p", "q"])
    y = frame["p"].to_numpy()
    model = DirectRegressor(features="linear", max_iter=100).fit(frame, y)
    assert list(model.feature_names_in_) == ["p", "q"]
    model.fit_source(ArraySource(frame.to_numpy(), y))
    assert not hasattr(model, "feature_names_in_")
    model.predict(frame.to_numpy())  # no stale names to complain about
    model.fit_source(ArraySource(frame.to_numpy(), y, ["u", "v"]))
    assert list(model.feature_names_in_) == ["u", "v"]


def _with_schema(model):
    """A copy of ``model`` whose 10 diabetes inputs are described by a schema (MF §10): the first
    input plain, the second categorical over two levels, the third numeric with its indicator."""
    import copy

    from direct_edge.runtime import schema as input_schema

    Column = input_schema.Column
    with_schema = copy.copy(model)
    with_schema.schema_ = input_schema.Schema(
        (
            Column("age", low=-0.1, high=0.1),
            Column("sex", input_schema.CATEGORICAL, levels=("f", "m")),
            Column("bmi", missing=input_schema.MEAN_INDICATOR, low=-0.09, high=0.17, fill=0.0),
            *(Column(f"s{k}", low=-0.2, high=0.2) for k in range(1, 6)),
        ),
        "progression",
    )
    return with_schema


def test_the_input_schema_round_trips_and_a_broken_one_is_one_line(tmp_path, small_model):
    """meta.schema (§5): written for a model trained with a preprocessing stage, read back equal, and
    checked against MF §10's rules and d; a file without it still loads (schema_ absent)."""
    model = _with_schema(small_model)
    save_model(tmp_path / "m.direct", model)
    loaded = load_model(tmp_path / "m.direct")
    assert loaded.schema_ == model.schema_ and loaded.schema_.n_inputs == 10
    assert getattr(load_model_of(small_model, tmp_path), "schema_", None) is None
    meta, arrays = model_to_arrays(model)
    cases = [
        (lambda s: s["columns"][1].update(levels=["f", "f"]), "needs 1 to 65535 distinct levels"),
        (lambda s: s["columns"][1].pop("levels"), "is categorical and has no 'levels'"),
        (lambda s: s["columns"][0].pop("fill"), "is numeric and needs 'low', 'high' and 'fill'"),
        (lambda s: s["columns"][0].update(low=1.0), "needs a finite training range low <= high"),
        (lambda s: s["columns"].pop(), "makes 9 inputs, the model has d = 10"),
        (lambda s: s["columns"][2].update(missing="zero"), "meta.schema.columns[2].missing must be one of"),
        (lambda s: s["columns"][3].update(name="age"), "column 'age' appears twice"),
    ]
    for edit, message in cases:
        m = json.loads(json.dumps(meta))
        edit(m["schema"])
        with pytest.raises(ModelFileError, match="^model file is malformed: ") as info:
            model_from_arrays(*decode(encode(m, arrays)))
        assert message in str(info.value) and "\n" not in str(info.value)


def load_model_of(model, tmp_path):
    save_model(tmp_path / "plain.direct", model)
    return load_model(tmp_path / "plain.direct")


def test_random_damage_to_the_schema_is_a_model_file_error_or_loads(small_model):
    """meta.schema's values replaced by junk of every JSON type (CRC recomputed by re-encoding): each
    file either loads with a schema that passes MF §10's rules or raises one ModelFileError line."""
    from direct_edge.runtime import schema as input_schema

    meta, arrays = model_to_arrays(_with_schema(small_model))
    junk = [
        None,
        True,
        0,
        -1,
        1.5,
        float("nan"),
        "",
        "x",
        "numeric",
        "categorical",
        [],
        ["a", "a"],
        {},
        2**70,
    ]
    rng = np.random.default_rng(9)
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(400):
        m = json.loads(json.dumps(meta))
        s = m["schema"]
        for _ in range(int(rng.integers(1, 3))):
            value = junk[int(rng.integers(len(junk)))]
            if rng.random() < 0.2:
                s[["target", "columns"][int(rng.integers(2))]] = value
                continue
            if not isinstance(s.get("columns"), list) or not s["columns"]:
                continue
            column = s["columns"][int(rng.integers(len(s["columns"])))]
            if isinstance(column, dict):
                keys = ["name", "kind", "missing", "low", "high", "fill", "levels"]
                column[keys[int(rng.integers(len(keys)))]] = value
        try:
            model = model_from_arrays(*decode(encode(m, arrays)))
        except ModelFileError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("model file is malformed: ")
            outcomes["error"] += 1
        else:
            model.schema_.check()
            assert isinstance(model.schema_, input_schema.Schema) and model.schema_.n_inputs == 10
            outcomes["loaded"] += 1
    assert outcomes["error"] > 300 and outcomes["loaded"] > 0, outcomes
