"""A DirectClassifier through the model file (docs/model-file.md §8): exact round trip with its labels,
and a damaged or inconsistent file refused with one ModelFileError line."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from direct_edge.trainer.classifier import DirectClassifier
from direct_edge.trainer.errors import ModelFileError
from direct_edge.trainer.model_file import decode, encode, load_model, save_model


@pytest.fixture(scope="module")
def iris_model():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    params = dict(features="rff", n_features=16, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0)
    return DirectClassifier(n_samples=8, max_iter=60, **params).fit(X, names), X


@pytest.fixture(scope="module")
def binary_model():
    X, y = load_breast_cancer(return_X_y=True)
    model = DirectClassifier(features="linear", grid_scale=0.4, prior_scale=1.0, n_samples=8, max_iter=60)
    return model.fit(X, y), X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("which", ["iris_model", "binary_model"])
def test_a_classifier_round_trips_exactly_with_its_labels(which, request, tmp_path):
    model, X = request.getfixturevalue(which)
    path = tmp_path / "m.direct"
    save_model(path, model)
    loaded = load_model(path)
    assert type(loaded) is DirectClassifier
    assert list(loaded.classes_) == list(model.classes_)
    assert np.array_equal(loaded.sample_levels_, model.sample_levels_)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(loaded.predict(X), model.predict(X))
    save_model(tmp_path / "again.direct", loaded)  # the loaded model writes the same bytes
    assert (tmp_path / "again.direct").read_bytes() == path.read_bytes()


def _rewrite(path, edit) -> None:
    """Apply ``edit(meta, arrays)`` to a file and write it back with a valid CRC."""
    meta, arrays = decode(path.read_bytes())
    edit(meta, arrays)
    path.write_bytes(encode(meta, arrays))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_damaged_classifier_file_is_one_clear_line(iris_model, tmp_path):
    model, _ = iris_model
    path = tmp_path / "m.direct"
    save_model(path, model)
    good = path.read_bytes()
    cases = {
        "CRC-32 mismatch": lambda: path.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:]),
        "classes must be distinct": lambda: _rewrite(path, lambda m, a: m.update(classes=["a", "a", "b"])),
        "do not fit 4 classes": lambda: _rewrite(path, lambda m, a: m.update(classes=["a", "b", "c", "d"])),
        "must be a string or a finite number": lambda: _rewrite(
            path, lambda m, a: m.update(classes=[1, None, 2])
        ),
        "sample levels must be grid levels": lambda: _rewrite(
            path, lambda m, a: a.update({"posterior.sample_levels": a["posterior.sample_levels"] * 0 + 9})
        ),
        "has no array 'posterior.sample_levels'": lambda: _rewrite(
            path, lambda m, a: a.pop("posterior.sample_levels")
        ),
    }
    for expected, damage in cases.items():
        path.write_bytes(good)
        damage()
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        message = str(info.value)
        assert expected in message and "\n" not in message, message


def test_a_regressor_file_has_no_task_and_still_loads_as_one(tmp_path):
    from direct_edge.trainer import DirectRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    model = DirectRegressor(features="linear", grid_scale=0.2, prior_scale=1.0, max_iter=20).fit(X, X[:, 0])
    save_model(tmp_path / "r.direct", model)
    raw = (tmp_path / "r.direct").read_bytes()
    (length,) = struct.unpack_from("<I", raw, 12)
    assert "task" not in json.loads(raw[16 : 16 + length])["meta"]
    assert zlib.crc32(raw[:-4]) == struct.unpack_from("<I", raw, len(raw) - 4)[0]
    assert type(load_model(tmp_path / "r.direct")) is DirectRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_file_mutants_load_and_predict_or_raise_model_file_error(iris_model, binary_model):
    """The model-file fuzz (docs/model-file.md §6) on classifier files: every mutant either raises
    ModelFileError or loads and gives finite probabilities without a numpy warning."""
    import warnings

    from direct_edge.trainer.model_file import classifier_from_arrays, classifier_to_arrays

    from .test_model_file_fuzz import SECONDS, SEED, run_fuzz

    files = {
        name: encode(*classifier_to_arrays(m))
        for name, (m, _) in (("iris", iris_model), ("bc", binary_model))
    }
    rows = {name: X[:5] for name, (_, X) in (("iris", iris_model), ("bc", binary_model))}

    def check(blob: bytes) -> str:
        try:
            model = classifier_from_arrays(*decode(blob))
        except ModelFileError:
            return "rejected"
        X = rows["iris"] if model.n_features_in_ == 4 else rows["bc"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = model.predict_proba(X)
        assert np.all(np.isfinite(p)), "a loaded classifier predicts non-finite probabilities"
        return "loaded"

    counts, escapes = run_fuzz(files, check, SECONDS, SEED)
    print(f"\nclassifier model-file fuzz: {sum(counts.values())} mutants, {dict(counts)}")
    assert not escapes, f"{len(escapes)} mutants escaped ModelFileError: {sorted(set(escapes))[:8]}"
    assert counts["rejected"] > 0 and counts["loaded"] > 0, counts


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_direct_export_ends_every_classifier_mutant_with_exit_0_or_one_error_line(
    iris_model, binary_model, tmp_path
):
    """Classifier-file mutants through ``direct-export MODEL out.bin`` in process: exit 0, or exit 2 with
    one ``direct-export: error:`` line (the run that found extreme input scales overflowing
    ``linear_parameters`` and ``logit_parameters`` into OverflowError)."""
    from click.testing import CliRunner

    from direct_edge.export.cli import main
    from direct_edge.trainer.model_file import classifier_to_arrays

    from .test_model_file_fuzz import SECONDS, SEED, run_fuzz

    files = {
        name: encode(*classifier_to_arrays(m))
        for name, (m, _) in (("iris", iris_model), ("bc", binary_model))
    }
    runner, model, out = CliRunner(), tmp_path / "mutant.direct", tmp_path / "out.bin"

    def check(blob: bytes) -> str:
        model.write_bytes(blob)
        out.unlink(missing_ok=True)
        result = runner.invoke(main, [str(model), str(out), "-q", "--samples", "8"])
        lines = result.stderr.splitlines()
        if result.exit_code == 0:
            return "exported"
        assert result.exit_code == 2, repr(result.exception)
        assert len(lines) == 1 and lines[0].startswith("direct-export: error: "), lines
        assert not out.exists()
        return "refused"

    counts, escapes = run_fuzz(files, check, SECONDS, SEED)
    assert not escapes, f"{len(escapes)} mutants escaped: {sorted(set(escapes))[:8]}"
    assert counts["refused"] > 0 and counts["exported"] > 0, counts


# ---- the input schema (MF §10) of a classifier trained with --categorical / --missing ---------------


@pytest.fixture(scope="module")
def schema_model():
    """A classifier fitted on the 5 inputs a schema makes of 3 raw columns (iris' sepal length plain, a
    two-level category, petal width with a missing-value indicator), carrying that schema."""
    import pandas as pd

    from direct_edge.runtime import schema as input_schema

    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(2)
    kind = (X[:, 1] > 3.0).astype(float)
    gap = (rng.random(len(y)) < 0.2).astype(float)
    Column = input_schema.Column
    schema = input_schema.Schema(
        (
            Column("sepal", low=float(X[:, 0].min()), high=float(X[:, 0].max())),
            Column("kind", input_schema.CATEGORICAL, levels=("narrow", "wide")),
            Column("petal", missing=input_schema.MEAN_INDICATOR, low=0.1, high=2.5, fill=1.2),
        ),
        "species",
    )
    prepared = np.column_stack([X[:, 0], 1 - kind, kind, np.where(gap == 1, 1.2, X[:, 3]), gap])
    frame = pd.DataFrame(prepared, columns=schema.input_names)
    model = DirectClassifier(features="linear", grid_scale=0.5, prior_scale=1.0, n_samples=8, max_iter=60)
    model.fit(frame, y)
    model.schema_ = schema
    return model, frame


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_input_schema_round_trips_and_a_broken_one_is_one_line(schema_model, iris_model, tmp_path):
    """meta.schema (§8 as §5): written for a classifier with a preprocessing stage, read back equal
    (same bytes when the loaded model is saved again), checked as the regressor's is (MF §10's rules, d,
    the names of fitted.feature_names_in_); a classifier file without it loads with schema_ None."""
    from direct_edge.trainer.model_file import classifier_from_arrays, classifier_to_arrays

    model, frame = schema_model
    path = tmp_path / "m.direct"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.schema_ == model.schema_ and loaded.schema_.n_inputs == 5
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert decode(path.read_bytes())[0]["schema"]["columns"][1] == {
        "name": "kind", "kind": "categorical", "missing": "refuse", "levels": ["narrow", "wide"]
    }  # fmt: skip
    save_model(tmp_path / "again.direct", loaded)
    assert (tmp_path / "again.direct").read_bytes() == path.read_bytes()
    plain, _ = iris_model
    save_model(tmp_path / "plain.direct", plain)
    assert "schema" not in decode((tmp_path / "plain.direct").read_bytes())[0]
    assert load_model(tmp_path / "plain.direct").schema_ is None
    meta, arrays = classifier_to_arrays(model)
    cases = [
        (lambda s: s["columns"][1].update(levels=["wide", "wide"]), "needs 1 to 65535 distinct levels"),
        (lambda s: s["columns"][1].pop("levels"), "is categorical and has no 'levels'"),
        (lambda s: s["columns"][0].pop("fill"), "is numeric and needs 'low', 'high' and 'fill'"),
        (lambda s: s["columns"][0].update(low=9.0), "needs a finite training range low <= high"),
        (lambda s: s["columns"].pop(), "makes 3 inputs, the model has d = 5"),
        (lambda s: s["columns"][2].update(missing="zero"), "meta.schema.columns[2].missing must be one of"),
        (lambda s: s["columns"][1].update(levels=["thin", "wide"]), "names other inputs than fitted."),
        (lambda s: s.pop("target"), "meta.schema"),
    ]
    for edit, message in cases:
        m = json.loads(json.dumps(meta))
        edit(m["schema"])
        with pytest.raises(ModelFileError, match="^model file is malformed: ") as info:
            classifier_from_arrays(*decode(encode(m, arrays)))
        assert message in str(info.value) and "\n" not in str(info.value)
