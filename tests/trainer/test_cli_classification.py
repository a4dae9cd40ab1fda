"""direct-train --task classification: real runs on real files (breast_cancer with integer labels,
iris with text labels); the printed scores are recomputed from the saved model; every user error is
one line, exit code 2, no output file; the model goes through direct-export and direct-run."""

import csv
import io
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer, load_iris

from direct_edge.trainer.classification_cli import (
    classification_scores,
    expected_calibration_error,
    label_chunk,
    reliability_bins,
)
from direct_edge.trainer.cli import main
from direct_edge.trainer.data import held_out_rows
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.model_file import load_model

# Fixed hyperparameters (no ELBO search) and few iterations keep each fit well under a second.
FAST = ["--n-features", "32", "--max-iter", "60", "--lengthscale", "3", "--grid-scale", "0.4"]
FAST += ["--prior-scale", "1", "--samples", "32"]
CLS = ["--task", "classification"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, output, message=""):
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("direct-train: error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not output.exists()


@pytest.fixture(autouse=True)
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def frame_of(loader, text_labels: bool) -> pd.DataFrame:
    data = loader()
    frame = pd.DataFrame(data.data, columns=[re.sub(r"\W+", "_", n).strip("_") for n in data.feature_names])
    frame["label"] = data.target_names[data.target] if text_labels else data.target
    return frame


@pytest.fixture
def cancer_csv(tmp_path):
    path = tmp_path / "cancer.csv"
    frame_of(load_breast_cancer, text_labels=False).to_csv(path, index=False)
    return path


@pytest.fixture
def iris_csv(tmp_path):
    path = tmp_path / "iris.csv"
    frame_of(load_iris, text_labels=True).to_csv(path, index=False)
    return path


def printed(stdout: str, key: str) -> str:
    """The value of the summary row ``key``."""
    for line in stdout.splitlines():
        if line.strip().startswith(key + "  "):
            return line.strip()[len(key) :].strip()
    raise AssertionError(f"no row {key!r} in\n{stdout}")


# ---- the ECE --------------------------------------------------------------------------------------


def test_ece_matches_a_hand_computation():
    proba = np.array([[0.9, 0.1], [0.95, 0.05], [0.22, 0.78], [0.62, 0.38], [0.87, 0.13]])
    labels = np.array([0, 1, 1, 1, 0])
    # 15 bins of width 1/15: 0.9 and 0.87 share bin 14 (both right), 0.95 is alone in bin 15 (wrong),
    # 0.78 in bin 12 (right), 0.62 in bin 10 (wrong).
    # ECE = (2·|1 − 0.885| + |0 − 0.95| + |1 − 0.78| + |0 − 0.62|) / 5 = 2.02 / 5
    assert expected_calibration_error(proba, labels) == pytest.approx(0.404, abs=1e-12)
    # One bin: |accuracy − mean confidence| = |3/5 − 4.12/5|
    assert expected_calibration_error(proba, labels, n_bins=1) == pytest.approx(0.224, abs=1e-12)
    bins = reliability_bins(proba.max(axis=1), proba.argmax(axis=1) == labels)
    assert bins.count.tolist() == [0] * 9 + [1, 0, 1, 0, 2, 1]
    assert bins.confidence[13] == pytest.approx(0.885) and np.isnan(bins.accuracy[0])


def test_perfectly_calibrated_three_classes_have_zero_ece():
    proba = np.tile([0.5, 0.25, 0.25], (4, 1))
    assert expected_calibration_error(proba, np.array([0, 0, 1, 2])) == pytest.approx(0.0, abs=1e-15)


# ---- happy paths ----------------------------------------------------------------------------------


def check_summary_against_the_saved_model(stdout, model, X_test, y_test):
    scores = classification_scores(model, X_test, y_test)
    assert printed(stdout, "test accuracy") == f"{scores['accuracy']:.4f}"
    assert printed(stdout, "test log loss") == f"{scores['log_loss']:.4f} nats"
    assert printed(stdout, "test Brier score") == f"{scores['brier']:.4f}"
    assert printed(stdout, "test ECE") == f"{scores['ece']:.4f} (15 bins)"
    # ...and by hand, without the module's helper
    proba = model.predict_proba(X_test)
    index = np.searchsorted(model.classes_, y_test)
    rows = np.arange(len(index))
    assert scores["accuracy"] == np.mean(model.predict(X_test) == y_test)
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log(proba[rows, index])), rel=1e-10)
    onehot = np.eye(len(model.classes_))[index]
    assert scores["brier"] == pytest.approx(np.mean(np.sum((proba - onehot) ** 2, axis=1)), rel=1e-10)
    s = model.summary_
    assert s["n_test"] == len(y_test) and s["test_accuracy"] == scores["accuracy"]
    assert s["test_ece"] == pytest.approx(scores["ece"], rel=1e-12)
    return scores


def test_integer_labels_with_a_test_fraction(tmp_path, cancer_csv):
    out = tmp_path / "m.direct"
    result = run(cancer_csv, *CLS, "--test-fraction", "0.25", "--seed", "3", "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    model = load_model(out)
    assert model.classes_.tolist() == [0, 1] and np.issubdtype(model.classes_.dtype, np.integer)
    frame = pd.read_csv(cancer_csv)
    held = held_out_rows(0, len(frame), 0.25, 3)  # the split regression makes
    X, y = frame.drop(columns="label"), frame["label"].to_numpy()
    scores = check_summary_against_the_saved_model(result.stdout, model, X[held], y[held])
    assert scores["accuracy"] > 0.85
    s = model.summary_
    assert s["task"] == "classification" and s["n_train"] == int((~held).sum()) and s["target"] == "label"
    assert printed(result.stdout, "rows n") == f"{s['n_train']} train, {s['n_test']} test"
    assert printed(result.stdout, "classes").startswith("2: 0 ")
    assert "nats on correct rows" in printed(result.stdout, "test mutual info")
    assert printed(result.stdout, "converged").startswith(("yes", "NO"))
    assert "training a classifier on" in result.stdout and "final ELBO" in result.stdout


def test_text_labels_with_a_test_file(tmp_path):
    frame = frame_of(load_iris, text_labels=True).sample(frac=1.0, random_state=0)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:110].to_csv(train, index=False)
    frame.iloc[110:].to_csv(test, index=False)
    out = tmp_path / "m.direct"
    result = run(train, *CLS, "--test", test, "-o", out, *FAST, "-q")
    assert result.exit_code == 0, result.output
    assert "ELBO" in result.stdout and "iteration" not in result.stdout and "final ELBO" not in result.stdout
    model = load_model(out)
    assert model.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    held = frame.iloc[110:]
    scores = check_summary_against_the_saved_model(
        result.stdout, model, held.drop(columns="label"), held["label"].to_numpy()
    )
    assert scores["accuracy"] > 0.8
    assert list(model.feature_names_in_) == list(frame.columns[:-1])


def test_npz_float_labels_become_integers_and_no_test_rows_is_said(tmp_path):
    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "d.npz", X=X, y=y.astype(np.float64))
    out = tmp_path / "m.direct"
    result = run(tmp_path / "d.npz", *CLS, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert load_model(out).classes_.tolist() == [0, 1, 2]
    assert "no held-out rows" in printed(result.stdout, "test")
    assert "train accuracy" in result.stdout


def test_label_chunks_keep_the_file_type():
    assert label_chunk(np.array([1, 2]), "f", "y", 0).dtype == np.int64
    assert label_chunk(np.array([1.0, 2.0]), "f", "y", 0).tolist() == [1, 2]
    assert label_chunk(np.array(["a", 3, 4.0], dtype=object), "f", "y", 0).tolist() == ["a", "3", "4"]
    assert label_chunk(np.array([True, False]), "f", "y", 0).tolist() == ["True", "False"]
    with pytest.raises(DataError, match="row 12 holds a missing label"):
        label_chunk(np.array(["a", None], dtype=object), "f", "y", 10)


def test_plot_is_a_png_reliability_diagram(tmp_path, iris_csv):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "m.direct", tmp_path / "rel.png"
    result = run(iris_csv, *CLS, "--test-fraction", "0.3", "--plot", png, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert printed(result.stdout, "plot") == str(png)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_and_run_the_saved_classifier(tmp_path, iris_csv):
    """direct-train → direct-export → direct-run: the integer runtime gives the trained model's
    classes and probabilities (the same 32 posterior samples)."""
    from direct_edge.export.cli import main as export_main
    from direct_edge.runtime.cli import main as run_main

    out, blob = tmp_path / "m.direct", tmp_path / "m.bin"
    assert run(iris_csv, *CLS, "-o", out, *FAST, "-q").exit_code == 0
    exported = CliRunner().invoke(export_main, [str(out), str(blob)], catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    assert "classifier" in exported.stdout and "Warning" not in exported.output
    frame = pd.read_csv(iris_csv)
    inputs = frame.drop(columns="label")
    inputs.to_csv(tmp_path / "rows.csv", index=False)
    ran = CliRunner().invoke(run_main, [str(blob), str(tmp_path / "rows.csv")], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    assert list(rows[0]) == [
        "class",
        "p_setosa",
        "p_versicolor",
        "p_virginica",
        "entropy",
        "mutual_info",
        "clipped",
    ]
    model = load_model(out)
    proba = model.predict_proba(inputs)
    got = np.array([[float(r[f"p_{c}"]) for c in model.classes_] for r in rows])
    assert np.max(np.abs(got - proba)) < 0.01
    sure = np.sort(proba, axis=1)[:, -1] - np.sort(proba, axis=1)[:, -2] > 0.02
    assert np.array_equal(np.array([r["class"] for r in rows])[sure], model.predict(inputs)[sure])


# ---- the regression side --------------------------------------------------------------------------


def test_regression_on_few_integer_values_notes_the_classification_option(tmp_path, cancer_csv):
    out = tmp_path / "m.direct"
    result = run(cancer_csv, "-o", out, *FAST[:6], "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "direct-train: note: the target 'label' holds only 2 distinct values, all integers (0, 1); if they "
        "are classes, train a classifier with --task classification"
    ]
    assert out.exists()


def test_regression_on_a_text_target_points_to_classification(tmp_path, iris_csv):
    out = tmp_path / "m.direct"
    assert_user_error(
        run(iris_csv, "-o", out, *FAST[:6]),
        out,
        "column 'label', row 1 holds text 'setosa', not a number (class labels? train a classifier with "
        "--task classification)",
    )


# ---- user errors ----------------------------------------------------------------------------------

BAD_LABELS = {
    "float.csv": ("a,b,y\n1,2,0\n4,5,1.5\n7,8,1\n", "the target 'y', row 2 holds 1.5, not a class label"),
    "nan.csv": ("a,b,y\n1,2,cat\n4,5,\n7,8,dog\n", "the target 'y', row 2 holds a missing label"),
    "nan_int.csv": ("a,b,y\n1,2,0\n4,5,1\n7,8,NA\n", "the target 'y', row 3 holds a missing label"),
    "one.csv": ("a,b,y\n1,2,cat\n4,5,cat\n7,8,cat\n", "holds one class only ('cat')"),
    "one_int.csv": ("a,b,y\n1,2,1\n4,5,1\n7,8,1\n", "holds one class only (1) in the training rows"),
    "spaces.csv": (
        'a,b,y\n1,2,ok\n4,5,"ok "\n7,8,busy\n',
        "holds labels that differ only in surrounding spaces, 'ok' and 'ok '",
    ),
    "text_input.csv": ("a,b,y\n1,2,0\n4,x,1\n7,8,1\n", "column 'b', row 2 holds text 'x', not a number"),
    "one_row.csv": ("a,b,y\n1,2,0\n", "need at least 2 training rows"),
}


@pytest.mark.parametrize("name", sorted(BAD_LABELS))
def test_bad_labels_are_one_line_and_exit_code_2(tmp_path, name):
    text, message = BAD_LABELS[name]
    (tmp_path / name).write_text(text)
    out = tmp_path / "m.direct"
    assert_user_error(run(tmp_path / name, *CLS, "-o", out, *FAST), out, message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--family", "mixture"], "--family applies to regression only"),
        (["--family", "mean-field"], "--family applies to regression only"),
        (["--components", "3"], "--components applies to regression only"),
        (["--entropy", "reinforce"], "--entropy applies to regression only"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler applies to regression only"),
        (["--categorical", "a0"], "--categorical names a0, not an input column"),
        (["--task", "ordinal"], "--task"),
        (["--plot", "{tmp}/none/p.png"], "plot"),
        (["--test", "{tmp}/unseen.csv"], "row 2 holds the label 'fish', a class not seen in training"),
        (["--test", "{tmp}/narrow.csv"], "has 1 input columns, the training data 2"),
        (["--n-features", "33"], "must be even"),
    ],
)
def test_bad_options_are_one_line_and_exit_code_2(tmp_path, args, message):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{'cat' if i % 2 else 'dog'}\n" for i in range(20)))
    (tmp_path / "unseen.csv").write_text("a,b,y\n1,2,cat\n3,4,fish\n")
    (tmp_path / "narrow.csv").write_text("a,y\n1,cat\n3,dog\n")
    out = tmp_path / "m.direct"
    result = run(data, *CLS, "-o", out, *FAST, *[a.format(tmp=tmp_path) for a in args])
    assert_user_error(result, out, message)


def test_demo_without_data_is_breast_cancer_with_text_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*CLS, *FAST, "-q")
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "model.direct")
    assert model.classes_.tolist() == ["benign", "malignant"]
    s = model.summary_
    assert s["n_train"] + s["n_test"] == 569 and 80 < s["n_test"] < 150  # 20% held out
    assert printed(result.stdout, "data") == "breast cancer (scikit-learn), target 'diagnosis'"


# ---- the preprocessing stage: --categorical and --missing (trainer/preprocessing.py, MF §10) --------


@pytest.fixture
def raw_labelled(tmp_path):
    """A messy CSV with text class labels: an ID, a text category, a numeric category code, a numeric
    column with empty and NA cells, the label ("hot"/"mild"/"cold") depending on all of them."""
    rng = np.random.default_rng(5)
    n = 240
    frame = pd.DataFrame(
        {
            "id": [f"row-{i:04d}" for i in range(n)],
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "code": rng.choice([1, 2, 7], n),
            "size": rng.uniform(1, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.15, "size"] = np.nan
    score = 1.5 * frame["x"] + frame["colour"].map({"red": 1.5, "green": -1.5, "blue": 0.0})
    score += (frame["code"] == 7) + 0.5 * (frame["size"].fillna(3.0) - 3) + 0.3 * rng.standard_normal(n)
    frame["label"] = np.where(score > 0.6, "hot", np.where(score < -0.6, "cold", "mild"))
    path = tmp_path / "raw.csv"
    frame.to_csv(path, index=False)
    return path


STAGE = ["--drop", "id", "--categorical", "colour,code", "--missing", "mean-indicator"]


def text_rows(path) -> tuple[list[list[str]], list[str]]:
    """The file's input cells as text (x, colour, code, size) and its labels."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [r[1:5] for r in rows], [r[5] for r in rows]


def test_the_stage_is_fitted_stored_and_prepares_what_the_runtime_prepares(tmp_path, raw_labelled):
    """--categorical and --missing mean-indicator with text labels: the classifier's schema_ is the
    regression stage's (levels sorted as text, the training mean in a gap plus an indicator), stored in
    the model file, and the summary's training scores are those of the saved model on
    runtime.schema.prepare of the file's text rows: the trainer prepared exactly what a device does."""
    from direct_edge.runtime import schema as input_schema
    from direct_edge.runtime.schema import prepare

    out = tmp_path / "m.direct"
    result = run(raw_labelled, *CLS, "-o", out, *FAST, *STAGE)
    assert result.exit_code == 0, result.output
    model = load_model(out)
    s = model.schema_
    assert s.column_names == ["x", "colour", "code", "size"] and s.target == "label"
    assert s.input_names == [
        "x", "colour=blue", "colour=green", "colour=red", "code=1", "code=2", "code=7", "size", "size_missing"
    ]  # fmt: skip
    assert list(model.feature_names_in_) == s.input_names == model.summary_["input_names"]
    assert printed(result.stdout, "inputs d") == "9: " + ", ".join(s.input_names)
    frame = pd.read_csv(raw_labelled)
    size = s.columns[3]
    assert (size.kind, size.missing) == (input_schema.NUMERIC, input_schema.MEAN_INDICATOR)
    assert size.fill == pytest.approx(frame["size"].mean(), rel=1e-15)
    assert (size.low, size.high) == (frame["size"].min(), frame["size"].max())
    raw, labels = text_rows(raw_labelled)
    X = prepare(s, raw)
    assert X[:, -1].sum() == frame["size"].isna().sum() > 0
    names = pd.DataFrame(X, columns=s.input_names)
    scores = classification_scores(model, names, np.asarray(labels, dtype=object))
    assert model.summary_["train_accuracy"] == scores["accuracy"] > 0.7
    assert model.summary_["train_log_loss"] == pytest.approx(scores["log_loss"], rel=1e-12)
    assert model.classes_.tolist() == ["cold", "hot", "mild"]


def test_held_out_rows_go_through_the_training_stage(tmp_path, raw_labelled):
    """--test FILE is read through the stage fitted on DATA (its scores are the saved model's on the
    runtime's preparation of the test file's text); --test-fraction holds out prepared rows; an unseen
    level in the test file is one line naming it."""
    from direct_edge.runtime.schema import prepare

    frame = pd.read_csv(raw_labelled)
    frame.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[180:].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "m.direct"
    args = [tmp_path / "train.csv", *CLS, "-o", out, *FAST, *STAGE]
    result = run(*args, "--test", tmp_path / "test.csv")
    assert result.exit_code == 0, result.output
    model = load_model(out)
    raw, labels = text_rows(tmp_path / "test.csv")
    X = pd.DataFrame(prepare(model.schema_, raw), columns=model.schema_.input_names)
    check_summary_against_the_saved_model(result.stdout, model, X, np.asarray(labels, dtype=object))
    assert model.summary_["n_train"] == 180
    result = run(*args, "--test-fraction", "0.25")
    assert result.exit_code == 0, result.output
    assert 0 < load_model(out).summary_["n_test"] < 180
    frame.loc[190, "colour"] = "purple"
    frame.iloc[180:].to_csv(tmp_path / "test.csv", index=False)
    out.unlink()
    assert_user_error(
        run(*args, "--test", tmp_path / "test.csv"),
        out,
        "data row 11 has the level 'purple' in column colour, not seen in training",
    )


@pytest.mark.parametrize(
    "args, edit, message",
    [
        (["--categorical", "nope"], None, "--categorical names nope, not an input column"),
        (["--categorical", "colour,code"], None, "column 'size', row {gap} holds a missing value; remove"),
        (["--missing", "mean-indicator"], None, "holds text 'red', not a number (a category?"),
        (STAGE[2:], ("colour", 4, np.nan), "column 'colour', row 5 holds a missing value; a categorical"),
        (STAGE[2:], ("x", 6, "abc"), "column 'x', row 7 holds text 'abc', not a number"),
        (STAGE[2:], ("label", 8, np.nan), "the target 'label', row 9 holds a missing label"),
        (["--missing", "sometimes"], None, "'sometimes' is not one of 'refuse', 'mean-indicator'"),
    ],
)
def test_stage_errors_are_one_line_and_exit_code_2(tmp_path, raw_labelled, args, edit, message):
    frame = pd.read_csv(raw_labelled)
    if edit is not None:
        column, row, value = edit
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    frame.to_csv(raw_labelled, index=False)
    out = tmp_path / "m.direct"
    message = message.format(gap=int(np.flatnonzero(frame["size"].isna())[0]) + 1)
    assert_user_error(run(raw_labelled, *CLS, "-o", out, *FAST, "--drop", "id", *args), out, message)


@pytest.mark.parametrize("args", [["--missing", "mean-indicator"], ["--categorical", "mean_radius"]])
def test_the_stage_on_the_demo_or_arrays_is_refused(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "model.direct"
    assert_user_error(run(*CLS, *FAST, *args), out, "read one CSV, text or Parquet file")
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).normal(size=(20, 2)), y=np.arange(20) % 2)
    assert_user_error(run(tmp_path / "d.npz", *CLS, *FAST, *args), out, "read one CSV, text or Parquet file")
