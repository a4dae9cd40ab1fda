"""``direct-export`` and ``direct-run`` for classifiers (docs/model-format.md §11, docs/integer-spec.md §10):
a .bin and a .h from a classifier's model file, per-row class, probabilities and uncertainty printed by
both engines identically and as the reference computes them, and one-line errors with exit code 2."""

from __future__ import annotations

import math
import re
import subprocess
import sys
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

from .conftest import iris_classifier, run_tflm


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


def test_the_tflite_classifier_export_says_nothing_on_stderr(iris_files, tmp_path):
    """In a fresh process (LiteRT announces its delegate once per process, at the first invoke), the
    check's run of the classifier leaves stderr empty."""
    pytest.importorskip("ai_edge_litert")
    folder, _, _ = iris_files
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "direct_edge.export.cli",
            str(folder / "m.direct"),
            str(tmp_path / "m.tflite"),
            "--samples",
            "8",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "LiteRT - float64" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_tflite_classifier_runs_in_tflite_micro_as_in_litert(tmp_path, kind):
    """The classifier .tflite in TFLite Micro the way its documentation teaches (the file, one invoke
    per row): the same label as LiteRT and probabilities within 1/256 of the float64 model average of
    the same samples (docs/export.md, Classifiers), on training rows and on rows far outside them."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro not installed")
    from ai_edge_litert.interpreter import Interpreter

    from direct_edge.export import onnx_export, tflite_export
    from direct_edge.export.cli import float64_class_probabilities

    model, blob, X = iris_classifier(kind)
    payload = tflite_export.build_classifier(blob, onnx_export.features_from_model(model), 16)
    path = tmp_path / "m.tflite"
    path.write_bytes(payload)
    rng = np.random.default_rng(1)
    far = np.stack([X.min(0) - 3 * X.std(0), X.max(0) + 3 * X.std(0)])
    rows = np.concatenate([X[::5], far, rng.uniform(0, 8, (8, 4))])
    fed = (rows - tflite_export.host_origin(blob)).astype(np.float32)
    lite = Interpreter(model_content=payload).get_signature_runner()(**{tflite_export.input_name(blob): fed})
    outs = run_tflm(path, fed, 5)  # per output, stacked over the rows: the label (int32, 1-D), proba (2-D)
    labels = next(o for o in outs if o.dtype == np.int32)
    probas = next(o for o in outs if o.ndim == 2)
    np.testing.assert_array_equal(labels, lite["label"])
    assert np.max(np.abs(probas - float64_class_probabilities(model, blob, rows))) < 1 / 256
    # Same int16 logits; the two float32 SOFTMAX/LOG kernels differ in their exp (measured 1.3e-5 apart).
    assert np.max(np.abs(probas - lite["proba"])) < 1e-4


# ---- a classifier trained with --categorical and --missing mean-indicator (MF §10) ----------------


@pytest.fixture(scope="module")
def raw_classifier(tmp_path_factory):
    """direct-train --task classification with the preprocessing stage on a messy CSV (an ID, a text
    category, a numeric category code, a numeric column with empty and NA cells, text labels), then
    direct-export to .bin and .h.  Returns (folder, model, blob, the training CSV)."""
    import pandas as pd

    from direct_edge.trainer.cli import main as train_main
    from direct_edge.trainer.model_file import load_model

    folder = tmp_path_factory.mktemp("raw_cls")
    rng = np.random.default_rng(8)
    n = 240
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "code": rng.choice([1, 2, 7], n),
            "size": rng.uniform(1, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.15, "size"] = np.nan
    frame.loc[[3, 5], "size"] = np.nan  # gaps among the first rows, which the tests run
    score = 1.5 * frame["x"] + frame["colour"].map({"red": 1.5, "green": -1.5, "blue": 0.0})
    score += (frame["code"] == 7) + 0.5 * (frame["size"].fillna(3.0) - 3) + 0.3 * rng.standard_normal(n)
    frame["label"] = np.where(score > 0.6, "hot", np.where(score < -0.6, "cold", "mild"))
    frame.to_csv(folder / "train.csv", index=False)
    args = [str(folder / "train.csv"), "--task", "classification", "-o", str(folder / "m.direct"), "-q"]
    args += ["--drop", "id", "--categorical", "colour,code", "--missing", "mean-indicator"]
    args += ["--n-features", "32", "--lengthscale", "3", "--grid-scale", "0.4", "--prior-scale", "1"]
    args += ["--max-iter", "60", "--samples", "32"]
    done = CliRunner().invoke(train_main, args)
    assert done.exit_code == 0, done.output
    for name in ("m.bin", "m.h"):
        done = CliRunner().invoke(export_main, [str(folder / "m.direct"), str(folder / name)])
        assert done.exit_code == 0, done.output
        assert (
            "schema    4 columns -> 9 inputs: x, colour (3 levels), code (3 levels), size (mean-indicator)"
            in (done.output)
        )
    model = load_model(folder / "m.direct")
    blob = parse((folder / "m.bin").read_bytes())
    assert blob.schema == model.schema_ and blob.classes == 3
    return folder, model, blob, folder / "train.csv"


def trainer_rows(blob, path, n: int):
    """The first ``n`` rows of the training CSV ``path`` as the trainer prepares them (its
    preprocessing stage through the classification reader), and their raw text cells (x, colour,
    code, size)."""
    import csv
    import io

    from direct_edge.trainer.classification_cli import read_labelled
    from direct_edge.trainer.data import open_table
    from direct_edge.trainer.preprocessing import apply_schema

    lines = path.read_text().splitlines()[: n + 1]
    head = path.with_name("head.csv")
    head.write_text("\n".join(lines) + "\n")
    X, _ = read_labelled(apply_schema(open_table(str(head), "label", drop=["id"]), blob.schema), 64)
    text = [r[1:5] for r in csv.reader(io.StringIO("\n".join(lines[1:])))]
    return X, text


def expected_lines(blob, X) -> list[str]:
    """direct-run's CSV for prepared rows X: IS §10 on their IS §2 quantisation (the integer runtime)."""
    q, clipped = reference.quantize_inputs(blob, X, return_mask=True)
    want = classify.classify(blob, q)
    labels, nats = blob.meta["classes"], math.log(2) / 65536
    lines = ["class," + ",".join(f"p_{c}" for c in labels) + ",entropy,mutual_info,clipped"]
    for i in range(len(X)):
        probs = ",".join(f"{p / 65536:.6f}" for p in want["proba"][i].tolist())
        lines.append(
            f"{labels[want['label'][i]]},{probs},{want['entropy'][i] * nats:.6f},"
            f"{want['mutual_info'][i] * nats:.6f},{int(clipped[i] != 0)}"
        )
    return lines


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_run_takes_raw_rows_as_the_trainer_prepares_them(raw_classifier, tmp_path, engine):
    """direct-run on raw CSV rows of a classifier with a schema (text levels, a code written 2.0, empty
    and NA cells, the columns in another order): the class, probabilities, entropy and mutual
    information of the integer runtime on the trainer's own preparation of the same rows."""
    folder, model, blob, train = raw_classifier
    X, text = trainer_rows(blob, train, 40)
    assert X[:, -1].sum() >= 2 and X[:, 1:4].sum() == 40  # gaps taken, one-hot colours
    rows = ["size,colour,code,x"]
    for i, (x, colour, code, size) in enumerate(text):
        size = size if size or i % 2 else "NA"
        rows.append(f"{size},{colour},{code + '.0' if i % 3 == 0 else code},{x}")
    (tmp_path / "raw.csv").write_text("\n".join(rows) + "\n")
    done = CliRunner().invoke(
        run_main, [str(folder / "m.bin"), str(tmp_path / "raw.csv"), "--engine", engine]
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == expected_lines(blob, X)
    got = np.array([[float(c) for c in line.split(",")[1:4]] for line in done.stdout.splitlines()[1:]])
    import pandas as pd

    proba = model.predict_proba(pd.DataFrame(X, columns=blob.schema.input_names))
    assert np.max(np.abs(got - proba)) < 0.02  # the trained model's average of the same 32 samples


def test_raw_rows_the_schema_refuses_are_one_line(raw_classifier, tmp_path):
    folder, _, _, _ = raw_classifier
    for line, message in (
        ("0.1,purple,1,2\n", "data row 1 has the level 'purple' in column colour, not seen in training"),
        ("0.1,red,3,2\n", "has the level '3' in column code"),
        ("0.1,,1,2\n", "has a missing value in column colour"),
        (",red,1,2\n", "has a missing value in column x"),
        ("abc,red,1,2\n", "has a value that is not a number in column x"),
    ):
        (tmp_path / "bad.csv").write_text("x,colour,code,size\n" + line)
        for engine in ("reference", "c"):
            done = CliRunner().invoke(
                run_main, [str(folder / "m.bin"), str(tmp_path / "bad.csv"), "--engine", engine]
            )
            assert done.exit_code == 2 and done.stdout == "", done.output
            assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


CLASSIFY_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "direct.h"
#include "m.h"

int main(void) {
    direct_model m;
    uint64_t scratch[(M_CLASSIFY_SCRATCH_BYTES + 7) / 8];
    char line[4096];
    if (direct_model_open(&m, m_blob.bytes, M_SIZE) != DIRECT_OK) {
        return 1;
    }
    while (fgets(line, sizeof line, stdin) != NULL) {
        double raw[M_N_COLUMNS];
        int16_t q[M_N_INPUTS];
        direct_classification c;
        uint32_t k;
        int rc;
        char *p = line;
        for (k = 0; k < M_N_COLUMNS; ++k) {
            raw[k] = strtod(p, &p);
        }
        rc = m_quantize_raw_f64(raw, q);
        if (rc != 0) {
            printf("refused %d\n", rc);
            continue;
        }
        if (direct_classify(&m, q, scratch, sizeof scratch, &c) != DIRECT_OK) {
            return 2;
        }
        printf("%u", (unsigned)c.label);
        for (k = 0; k < c.n_classes; ++k) {
            printf(" %u", (unsigned)c.proba[k]);
        }
        printf(" %u %u %d\n", (unsigned)c.entropy, (unsigned)c.mutual_info,
               (c.out_of_range & M_RANGE_MASK) != 0);
    }
    return 0;
}
"""


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_header_raw_helper_feeds_direct_classify(raw_classifier, tmp_path, compiler):
    """The classifier's .h carries the raw-column helpers: raw rows (level codes, NaN for a gap) through
    m_quantize_raw_f64 and the C library's direct_classify (C99, -Wall -Wextra -Werror -pedantic)
    give, bit for bit, the integer reference on the trainer's preparation of the same rows; a code that
    is not a level and a gap in a column without a policy are refused (1 + the column)."""
    import shutil
    import subprocess
    from pathlib import Path

    import direct_edge.runtime

    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    folder, _, blob, train = raw_classifier
    c_dir = Path(direct_edge.runtime.__file__).parent / "c"
    (tmp_path / "m.h").write_text((folder / "m.h").read_text())
    (tmp_path / "harness.c").write_text(CLASSIFY_HARNESS)
    sources = [str(c_dir / s) for s in ("direct.c", "direct_predict.c", "direct_classify.c")]
    exe = tmp_path / "harness"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", f"-I{c_dir}", f"-I{tmp_path}"]
    built = subprocess.run(
        [compiler, *flags, str(tmp_path / "harness.c"), *sources, "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0 and built.stderr == "", built.stderr
    X, text = trainer_rows(blob, train, 60)
    schema = blob.schema
    raw = []
    for x, colour, code, size in text:
        codes = [schema.columns[1].levels.index(colour), schema.columns[2].levels.index(code)]
        raw.append(f"{x} {codes[0]} {codes[1]} {size or 'nan'}")
    raw += ["0.5 3 0 2.0", "nan 0 0 2.0", "0.5 0 -1 nan"]  # refused: colour, x, code
    ran = subprocess.run([str(exe)], input="\n".join(raw) + "\n", capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    got = ran.stdout.splitlines()
    q = reference.quantize_inputs(blob, X)
    want = classify.classify(blob, q)
    edge = reference.at_edge(q[:, schema.value_inputs]) != 0  # IS §2.1 on int16: at -32768 or 32767
    assert edge.any()  # the rows hold the training extremes of x or size
    for i in range(len(X)):
        expect = [want["label"][i], *want["proba"][i], want["entropy"][i], want["mutual_info"][i]]
        assert got[i].split() == [str(int(v)) for v in expect] + [str(int(edge[i]))], i
    assert got[len(X) :] == ["refused 2", "refused 1", "refused 3"]


def test_the_float_graphs_take_raw_columns_and_the_integer_graph_q(raw_classifier, tmp_path):
    """The float ONNX and TFLite classifier graphs of a model with a schema take ``raw`` as the regression
    graphs do (level codes in the metadata's order, NaN for a gap) and add ``refused``: their
    probabilities on raw rows are the float64 softmax of the same samples on the trainer's preparation
    of those rows (ONNX within 1e-5, LiteRT within 1/256), out_of_range is the reference's; the integer
    ONNX graph takes the prepared, quantised q and is bit-exact with the reference."""
    import json

    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    from direct_edge.export import onnx_export
    from direct_edge.export.cli import float64_class_probabilities

    folder, model, blob, train = raw_classifier
    for name, extra in (("f.onnx", []), ("i.onnx", ["--integer"]), ("m.tflite", [])):
        done = CliRunner().invoke(export_main, [str(folder / "m.direct"), str(tmp_path / name), *extra])
        assert done.exit_code == 0, done.output
        if name == "f.onnx":
            assert "onnxruntime float - float64| probability" in done.output and "raw rows" in done.output
        if name == "i.onnx":
            assert "onnxruntime - integer reference on 1000 inputs: bit-exact" in done.output
    X, text = trainer_rows(blob, train, 60)
    meta = {p.key: p.value for p in onnx.load(tmp_path / "f.onnx").metadata_props}
    assert json.loads(meta["columns"]) == ["x", "colour", "code", "size"]
    levels = json.loads(meta["levels"])
    raw = np.array(
        [
            [float(x), levels["colour"].index(c), levels["code"].index(k), float(s) if s else np.nan]
            for x, c, k, s in text
        ]
    )
    bad = np.array([[0.5, 3, 0, 2.0], [np.nan, 0, 0, 2.0], [0.5, 0, 0.5, 2.0]])
    want = float64_class_probabilities(model, blob, X)
    sess = onnx_export.session((tmp_path / "f.onnx").read_bytes())
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"raw": np.vstack([raw, bad])}), strict=True))
    assert names[-1] == "refused" and got["refused"].tolist() == [False] * len(X) + [True] * 3
    assert np.max(np.abs(got["proba"][: len(X)] - want)) < 1e-5
    np.testing.assert_array_equal(got["out_of_range"][: len(X)], reference.out_of_range(blob, X) != 0)
    out = Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()(
        raw=np.vstack([raw, bad]).astype(np.float32)
    )
    assert out["refused"].tolist() == [False] * len(X) + [True] * 3
    assert np.max(np.abs(out["proba"][: len(X)] - want)) < 1 / 256
    q = reference.quantize_inputs(blob, X)
    isess = onnx_export.session((tmp_path / "i.onnx").read_bytes())
    label, proba = isess.run(["label", "proba"], {"q": q})
    ref = classify.classify(blob, q)
    assert np.array_equal(label, ref["label"]) and np.array_equal(proba, ref["proba"])


def test_tflite_refuses_raw_columns_with_an_input_origin_in_one_line(tmp_path):
    """A classifier with a schema whose numeric input lies far from zero (a timestamp of 1e6 over a range
    of 10): TFLite cannot take both the origin and the raw columns, so .tflite is refused in one line
    naming why, as for regression, and nothing is written; .onnx takes it."""
    pytest.importorskip("ai_edge_litert")
    from direct_edge.trainer.cli import main as train_main

    rng = np.random.default_rng(3)
    t = 1e6 + rng.uniform(0, 10, 120)
    region = rng.choice(["a", "b"], 120)
    label = np.where((t - 1e6 > 5) ^ (region == "a"), "yes", "no")
    rows = "".join(f"{v:.4f},{r},{y}\n" for v, r, y in zip(t, region, label, strict=True))
    (tmp_path / "far.csv").write_text("t,region,label\n" + rows)
    args = [str(tmp_path / "far.csv"), "--task", "classification", "--categorical", "region", "-q"]
    args += ["--features", "linear", "--grid-scale", "0.4", "--prior-scale", "1", "--max-iter", "40"]
    done = CliRunner().invoke(train_main, [*args, "-o", str(tmp_path / "far.direct")])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(export_main, [str(tmp_path / "far.direct"), str(tmp_path / "far.tflite")])
    assert done.exit_code == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.output
    assert "too far from zero for float32 and it prepares raw columns" in done.stderr
    assert not (tmp_path / "far.tflite").exists()
