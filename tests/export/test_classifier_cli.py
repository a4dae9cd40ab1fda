"""``direct-export`` and ``direct-run`` for classifiers (docs/model-format.md §11, docs/integer-spec.md §10):
a .bin and a .h from a classifier's model file, per-row class, probabilities and uncertainty printed by
both engines identically and as the reference computes them, and one-line errors with exit code 2."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

from direct_edge.export.cli import main as export_main
from direct_edge.runtime import classify, reference
from direct_edge.runtime.blob import parse
from direct_edge.runtime.cli import main as run_main
from direct_edge.trainer.classifier import DirectClassifier
from direct_edge.trainer.model_file import save_model


@pytest.fixture(scope="module")
def iris_files(tmp_path_factory):
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    params = dict(features="rff", n_features=32, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DirectClassifier(n_samples=16, max_iter=100, **params).fit(X, labels)
    folder = tmp_path_factory.mktemp("cls")
    save_model(folder / "m.direct", model)
    np.savetxt(folder / "x.csv", X[::10], delimiter=",", fmt="%.3f")
    return folder, X[::10], model


def test_export_writes_a_classifier_blob_and_header(iris_files):
    folder, _, model = iris_files
    done = CliRunner().invoke(
        export_main, [str(folder / "m.direct"), str(folder / "m.bin"), "--samples", "8"]
    )
    assert done.exit_code == 0, done.output
    assert "classes   3: setosa, versicolor, virginica" in done.output
    assert "max |integer - float64| probability" in done.output
    blob = parse((folder / "m.bin").read_bytes())
    assert (blob.classes, blob.n_samples, blob.meta["classes"]) == (
        3,
        24,
        ["setosa", "versicolor", "virginica"],
    )
    done = CliRunner().invoke(export_main, [str(folder / "m.direct"), str(folder / "m.h"), "--samples", "8"])
    assert done.exit_code == 0, done.output
    text = (folder / "m.h").read_text()
    assert "#define M_N_CLASSES 3u" in text and '"setosa", "versicolor", "virginica"' in text


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_run_prints_class_probabilities_and_uncertainty_per_row(iris_files, engine):
    folder, X, _ = iris_files
    CliRunner().invoke(export_main, [str(folder / "m.direct"), str(folder / "m.bin"), "--samples", "8"])
    done = CliRunner().invoke(run_main, [str(folder / "m.bin"), str(folder / "x.csv"), "--engine", engine])
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert lines[0] == "class,p_setosa,p_versicolor,p_virginica,entropy,mutual_info,clipped"
    blob = parse((folder / "m.bin").read_bytes())
    want = classify.classify(
        blob, reference.quantize_inputs(blob, np.loadtxt(folder / "x.csv", delimiter=","))
    )
    names = ["setosa", "versicolor", "virginica"]
    nats = math.log(2) / 65536
    assert len(lines) == 1 + len(X)
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        assert cells[0] == names[want["label"][i]]
        assert [float(c) for c in cells[1:4]] == [float(f"{p / 65536:.6f}") for p in want["proba"][i]]
        assert float(cells[4]) == float(f"{want['entropy'][i] * nats:.6f}")
        assert float(cells[5]) == float(f"{want['mutual_info'][i] * nats:.6f}")
        assert cells[6] == "0"


def test_bad_requests_are_one_line_with_exit_code_2(iris_files, tmp_path):
    folder, _, _ = iris_files
    CliRunner().invoke(export_main, [str(folder / "m.direct"), str(folder / "m.bin"), "--samples", "8"])
    (tmp_path / "bad.csv").write_text("1,2\n")
    cases = [
        (
            export_main,
            [str(folder / "m.direct"), str(tmp_path / "m.tflite"), "--activations", "8"],
            "int8 ones are too coarse",
        ),
        (
            export_main,
            [str(folder / "m.direct"), str(tmp_path / "m.bin"), "--samples", "17"],
            "between 1 and 16",
        ),
        (export_main, [str(folder / "m.direct"), str(tmp_path / "m.bin"), "--layout", "gap4"], "dense4"),
        (run_main, [str(folder / "m.bin"), str(tmp_path / "bad.csv")], "has 2 values, the model takes 4"),
        (run_main, [str(folder / "m.bin"), str(folder / "x.csv"), "--exact"], "is a classifier"),
    ]
    for command, args, expected in cases:
        done = CliRunner().invoke(command, args)
        assert done.exit_code == 2, done.output
        errors = [line for line in done.output.splitlines() if "error:" in line]
        assert len(errors) == 1 and expected in errors[0], done.output


def test_export_writes_the_integer_onnx_graph_and_checks_it(iris_files):
    pytest.importorskip("onnxruntime")
    folder, _, _ = iris_files
    args = [str(folder / "m.direct"), str(folder / "m.onnx"), "--integer", "--samples", "8"]
    done = CliRunner().invoke(export_main, args)
    assert done.exit_code == 0, done.output
    assert "onnxruntime - integer reference on 1000 inputs: bit-exact" in done.output


def test_export_writes_the_float_onnx_graph_and_checks_it(iris_files):
    pytest.importorskip("onnxruntime")
    folder, _, _ = iris_files
    done = CliRunner().invoke(
        export_main, [str(folder / "m.direct"), str(folder / "f.onnx"), "--samples", "8"]
    )
    assert done.exit_code == 0, done.output
    assert "ONNX (float graph), classifier" in done.output
    gap = float(re.search(r"max \|onnxruntime float - float64\| probability = (\S+)", done.output).group(1))
    assert gap < 1e-5


def test_export_writes_a_tflite_classifier_and_checks_it(iris_files):
    pytest.importorskip("ai_edge_litert")
    folder, _, _ = iris_files
    done = CliRunner().invoke(
        export_main, [str(folder / "m.direct"), str(folder / "m.tflite"), "--samples", "8"]
    )
    assert done.exit_code == 0, done.output
    gap = float(re.search(r"max \|LiteRT - float64\| probability = (\S+)", done.output).group(1))
    assert gap < 1 / 256


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_tflite_classifier_runs_in_tflite_micro_as_in_litert(tmp_path, kind):
    """The classifier .tflite in TFLite Micro the way its documentation teaches (the file, one invoke
    per row): the same label as LiteRT and probabilities within 1/256 of the float64 model average of
    the same samples (docs/export.md, Classifiers), on training rows and on rows far outside them."""
    pytest.importorskip("ai_edge_litert")
    tfm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    from ai_edge_litert.interpreter import Interpreter

    from direct_edge.export import onnx_export, tflite_export
    from direct_edge.export.cli import float64_class_probabilities
    from direct_edge.export.packed import pack_classifier

    X, y = load_iris(return_X_y=True)
    if kind == "binary":
        y = (y == 2).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DirectClassifier(
            n_features=32, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0, n_samples=8, max_iter=100
        ).fit(X, y)
    blob = parse(pack_classifier(model, n_samples=8))
    payload = tflite_export.build_classifier(blob, onnx_export.features_from_model(model), 16)
    path = tmp_path / "m.tflite"
    path.write_bytes(payload)
    rng = np.random.default_rng(1)
    far = np.stack([X.min(0) - 3 * X.std(0), X.max(0) + 3 * X.std(0)])
    rows = np.concatenate([X[::5], far, rng.uniform(0, 8, (8, 4))])
    fed = (rows - tflite_export.host_origin(blob)).astype(np.float32)
    lite = Interpreter(model_content=payload).get_signature_runner()(**{tflite_export.input_name(blob): fed})
    micro = tfm.Interpreter.from_file(str(path))
    labels, probas = [], []
    for row in fed:
        micro.set_input(row[None, :], 0)
        micro.invoke()
        outs = [micro.get_output(i) for i in range(5)]
        labels.append(next(o for o in outs if o.dtype == np.int32)[0])
        probas.append(next(o for o in outs if o.ndim == 2)[0])
    probas = np.array(probas)
    np.testing.assert_array_equal(np.array(labels), lite["label"])
    assert np.max(np.abs(probas - float64_class_probabilities(model, blob, rows))) < 1 / 256
    # Same int16 logits; the two float32 SOFTMAX/LOG kernels differ in their exp (measured 1.3e-5 apart).
    assert np.max(np.abs(probas - lite["proba"])) < 1e-4
