"""Choosing the inputs of a real, messy file: an ID column, a date, pandas' unnamed index column,
columns in another order; through the API (open_table), the command line and the Dask reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from direct_edge.trainer import DataError, load_model
from direct_edge.trainer.cli import main
from direct_edge.trainer.data import open_table

FAST = ["--n-features", "16", "--max-iter", "100", "--lengthscale", "1.5", "--grid-scale", "0.2"]


@pytest.fixture
def messy(tmp_path):
    """A CSV as pandas writes it with its index: an unnamed index column, a text ID, a date."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "id": [f"row-{i:04d}" for i in range(n)],
            "date": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.normal(size=n),
        }
    )
    frame["y"] = 2 * frame["a"] - frame["c"] + 0.1 * rng.standard_normal(n)
    path = tmp_path / "messy.csv"
    frame.to_csv(path)  # index=True: an unnamed first column
    return path, frame


def values(source) -> tuple[np.ndarray, np.ndarray]:
    Xs, ys = zip(*source.batches(50), strict=True)
    return np.concatenate(Xs), np.concatenate(ys)


def test_dropping_the_index_id_and_date_reads_the_numbers(messy):
    path, frame = messy
    source = open_table(path, "y", drop=["", "id", "date"])
    assert source.input_names == ["a", "b", "c"] and source.target_name == "y"
    X, y = values(source)
    np.testing.assert_array_equal(X, frame[["a", "b", "c"]].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())


def test_inputs_in_another_order_are_read_in_that_order(messy):
    path, frame = messy
    source = open_table(path, "y", inputs=["c", "a"])
    assert source.input_names == ["c", "a"]
    X, _ = values(source)
    np.testing.assert_array_equal(X, frame[["c", "a"]].to_numpy())


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "column 1 has no name (pandas writes its index so)"),
        ({"drop": [""]}, "column 'id', row 1 holds text 'row-0000'"),
        ({"inputs": ["a", "nope"]}, "no column named 'nope'"),
        ({"inputs": ["a", "a"]}, "inputs named more than once: a"),
        ({"inputs": ["a", "y"]}, "the target 'y' cannot also be an input"),
        ({"drop": ["y"]}, "the target 'y' cannot be dropped"),
        ({"inputs": ["a"], "drop": ["b"]}, "--inputs or --drop, not both"),
        ({"drop": ["", "id", "date", "a", "b", "c"]}, "no input columns left"),
    ],
)
def test_column_choices_that_cannot_work_are_one_clear_error(messy, options, message):
    path, _ = messy
    with pytest.raises(DataError, match=None) as err:
        values(open_table(path, "y", **options))
    assert message in str(err.value)


def test_headerless_files_choose_inputs_by_index(tmp_path):
    rng = np.random.default_rng(1)
    M = rng.normal(size=(40, 4))
    np.savetxt(tmp_path / "m.csv", M, delimiter=",")
    source = open_table(tmp_path / "m.csv", "3", inputs=["2", "0"])
    X, y = values(source)
    np.testing.assert_array_equal(X, M[:, [2, 0]])
    np.testing.assert_array_equal(y, M[:, 3])
    assert source.input_names == ["x0", "x1"]


def test_parquet_columns_are_chosen_too(tmp_path, messy):
    pytest.importorskip("pyarrow", reason="Parquet needs: pip install 'direct-edge[parquet]'")
    _, frame = messy
    frame.to_parquet(tmp_path / "m.parquet")
    source = open_table(tmp_path / "m.parquet", "y", drop=["id", "date", "b"])
    X, _ = values(source)
    np.testing.assert_array_equal(X, frame[["a", "c"]].to_numpy())


def test_the_command_line_trains_on_the_chosen_inputs_and_lists_them(tmp_path, messy):
    path, frame = messy
    out = tmp_path / "m.direct"
    result = CliRunner().invoke(
        main, [str(path), "--target", "y", "--drop", ",id", "--drop", "date", "-o", str(out), *FAST]
    )
    assert result.exit_code == 0, result.output
    assert "inputs d           3: a, b, c" in result.stdout
    model = load_model(out)
    assert model.summary_["input_names"] == ["a", "b", "c"]
    assert np.isfinite(model.predict(frame[["a", "b", "c"]].to_numpy())).all()
    refused = CliRunner().invoke(main, [str(path), "--target", "y", "-o", str(out), *FAST])
    assert refused.exit_code == 2 and "has no name" in refused.stderr and refused.stderr.count("\n") == 1


def test_the_dask_reader_reads_only_the_chosen_columns(tmp_path, messy):
    pytest.importorskip("dask.dataframe", reason="the Dask path needs: pip install 'direct-edge[dask]'")
    from direct_edge.trainer.distributed import DaskSource

    path, frame = messy
    source = DaskSource.from_files(str(path), "y", inputs=["c", "a"])
    assert source.input_names == ["c", "a"]
    X, y = values(source)
    np.testing.assert_array_equal(X, frame[["c", "a"]].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())


# ---- the preprocessing stage: --categorical and --missing (trainer/preprocessing.py, MF §10) ----------


@pytest.fixture
def raw_table(tmp_path):
    """A messy CSV as pandas writes it: an ID, a date, a text category, a numeric category code, a
    numeric column with empty and NA cells; and a file of raw rows to predict (header in another
    order, an empty cell, the code written as 2.0)."""
    rng = np.random.default_rng(1)
    n = 200
    frame = pd.DataFrame(
        {
            "id": [f"row-{i:04d}" for i in range(n)],
            "date": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "code": rng.choice([1, 2, 7], n),
            "size": rng.uniform(1, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.15, "size"] = np.nan
    effect = frame["colour"].map({"red": 1.0, "green": -1.0, "blue": 0.0}) + (frame["code"] == 7)
    frame["y"] = 2 * frame["x"] + effect + frame["size"].fillna(3.0) + 0.1 * rng.standard_normal(n)
    path = tmp_path / "raw.csv"
    frame.to_csv(path, index=False)
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "size,colour,code,x\n3.5,red,1,0.25\n,blue,2.0,-1.5\nNA,green,7,0.0\n"
        "4.75, red ,2,9.5\n1e-3,blue,1,-0.125\n"
    )
    return path, rows


PREPARE = ["--drop", "id,date", "--categorical", "colour,code", "--missing", "mean-indicator"]


def train_prepared(path, out):
    result = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", *FAST, *PREPARE])
    assert result.exit_code == 0, result.output
    return load_model(out)


def test_the_stage_is_fitted_recorded_and_its_inputs_listed(tmp_path, raw_table):
    from direct_edge.runtime import schema as input_schema

    path, _ = raw_table
    model = train_prepared(path, tmp_path / "m.direct")
    s = model.schema_
    assert s.column_names == ["x", "colour", "code", "size"] and s.target == "y"
    assert s.input_names == [
        "x", "colour=blue", "colour=green", "colour=red", "code=1", "code=2", "code=7", "size", "size_missing"
    ]  # fmt: skip
    assert list(model.feature_names_in_) == s.input_names == model.summary_["input_names"]
    frame = pd.read_csv(path)
    size = s.columns[3]
    assert (size.missing, size.kind) == (input_schema.MEAN_INDICATOR, input_schema.NUMERIC)
    assert size.fill == frame["size"].mean(skipna=True) or abs(size.fill - frame["size"].mean()) < 1e-15
    assert (size.low, size.high) == (frame["size"].min(), frame["size"].max())
    assert s.columns[0].plain and (s.columns[0].low, s.columns[0].high) == (frame.x.min(), frame.x.max())


def test_the_trainer_prepares_exactly_what_the_runtime_prepares_from_the_text(tmp_path, raw_table):
    """The training matrix (pandas' chunks through the stage) equals runtime.schema.prepare of the
    file's text rows, bit for bit: one rule for training and for every device."""
    import csv

    from direct_edge.runtime.schema import prepare
    from direct_edge.trainer.preprocessing import prepare_source

    path, _ = raw_table
    source = prepare_source(
        open_table(str(path), drop=["id", "date"]), ["colour", "code"], "mean-indicator", 64
    )
    X, y = values(source)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    raw = [[r[2], r[3], r[4], r[5]] for r in rows]
    want = prepare(source.schema, raw)
    np.testing.assert_array_equal(X, want)
    np.testing.assert_array_equal(y, [float(r[6]) for r in rows])
    assert X[:, -1].sum() == sum(r[5] == "" for r in rows) > 0


def test_direct_run_takes_raw_rows_and_equals_the_host_bit_for_bit(tmp_path, raw_table):
    """Raw rows (text levels, a code written 2.0, empty and NA cells, columns in another order) through
    direct-run on both engines equal the host's integer prediction of the same rows prepared by the
    schema; an unseen level and a missing category are refused in one line."""
    import subprocess
    import sys
    from pathlib import Path

    from direct_edge.export.cli import main as export_main
    from direct_edge.runtime import reference
    from direct_edge.runtime.blob import parse
    from direct_edge.runtime.cli import format_rows
    from direct_edge.runtime.schema import prepare

    path, rows = raw_table
    model = train_prepared(path, tmp_path / "m.direct")
    done = CliRunner().invoke(export_main, [str(tmp_path / "m.direct"), str(tmp_path / "m.bin"), "-q"])
    assert done.exit_code == 0, done.output
    blob = parse((tmp_path / "m.bin").read_bytes())
    assert blob.schema == model.schema_
    raw = [["0.25", "red", "1", "3.5"], ["-1.5", "blue", "2", ""], ["0.0", "green", "7", "NA"]]
    raw += [["9.5", "red", "2", "4.75"], ["-0.125", "blue", "1", "1e-3"]]
    X = prepare(blob.schema, raw)
    assert X[1].tolist() == [-1.5, 1, 0, 0, 0, 1, 0, model.schema_.columns[3].fill, 1]
    q, mask = reference.quantize_inputs(blob, X, return_mask=True)
    mean_q, _, var_y_q = reference.predict_exact(blob, q)
    want = format_rows(*reference.to_target_units(blob, mean_q, var_y_q), mask)
    assert mask.tolist()[3] != 0 and not any(mask.tolist()[:3])  # x = 9.5 lies beyond the training range
    tool = str(Path(sys.executable).with_name("direct-run"))
    for engine in ("reference", "c"):
        run = subprocess.run(
            [tool, "m.bin", str(rows), "--engine", engine], cwd=tmp_path, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == want, engine
    q_rows = tmp_path / "q.csv"  # --quantized: only the inputs with a numeric value count for clipped
    q_rows.write_text(
        ",".join(blob.schema.input_names) + "\n" + "\n".join(",".join(map(str, r)) for r in q.tolist())
    )
    edge = reference.at_edge(q[:, blob.schema.value_inputs]) != 0
    assert edge.tolist() == (mask != 0).tolist() == [False, False, False, True, True]  # x = 9.5, size 1e-3
    assert (reference.at_edge(q) != 0).all()  # every row has one-hot inputs at -32768 and 32767
    for engine in ("reference", "c"):
        run = subprocess.run(
            [tool, "m.bin", "q.csv", "--quantized", "--engine", engine],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert [line.split(",")[2] for line in run.stdout.splitlines()[1:]] == [str(int(e)) for e in edge]
    for line, message in (
        ("0.1,purple,1,2\n", "data row 1 has the level 'purple' in column colour, not seen in training"),
        ("0.1,red,3,2\n", "has the level '3' in column code"),
        ("0.1,,1,2\n", "has a missing value in column colour"),
        ("abc,red,1,2\n", "has a value that is not a number in column x"),
    ):
        (tmp_path / "bad.csv").write_text("x,colour,code,size\n" + line)
        run = subprocess.run([tool, "m.bin", "bad.csv"], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1, run.stderr
        assert message in run.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--categorical", "nope"], "--categorical names nope, not an input column"),
        (["--categorical", "id"], "--categorical names id, not an input column"),
        (["--drop", "colour,code"], "column 'size', row "),
        (["--categorical", "colour"], "or train with --missing mean-indicator"),
        (["--missing", "mean-indicator"], "holds text 'red', not a number (a category? name the column"),
    ],
)
def test_stage_options_that_cannot_work_are_one_line(tmp_path, raw_table, args, message):
    path, _ = raw_table
    out = tmp_path / "m.direct"
    result = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", *FAST, "--drop", "id,date", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("extra", ["colour=red", "size_missing"])
def test_a_column_named_like_a_made_input_is_one_line(tmp_path, raw_table, extra, task):
    """A column named like another's one-hot level or missing-value indicator would make two model
    inputs of one name: refused before training (MF §10), in both tasks."""
    path, _ = raw_table
    frame = pd.read_csv(path)
    frame[extra] = 1.0
    if task == "classification":
        frame["y"] = np.where(frame["y"] > frame["y"].median(), "high", "low")
    frame.to_csv(tmp_path / "clash.csv", index=False)
    out = tmp_path / "m.direct"
    task_args = ["--task", "classification"] if task == "classification" else []
    args = [str(tmp_path / "clash.csv"), "-o", str(out), "-q", "--target", "y", *FAST, *PREPARE, *task_args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"direct-train: error: {tmp_path / 'clash.csv'}: two columns make the model input {extra!r} "
        "(a column named like a category level or a missing-value indicator of another); rename or drop one"
    ]
    assert not out.exists()


def test_a_schema_whose_inputs_share_a_name_is_refused_by_the_reader():
    from direct_edge.runtime import schema as input_schema

    columns = (
        input_schema.Column("mode", input_schema.CATEGORICAL, levels=("idle", "run")),
        input_schema.Column("mode=idle", input_schema.NUMERIC, low=0.0, high=1.0),
    )
    blob = input_schema.Schema(columns, "y")
    with pytest.raises(input_schema.SchemaError, match="two columns make the model input 'mode=idle'"):
        blob.check()


def test_a_missing_category_at_training_and_the_demo_are_refused(tmp_path, raw_table):
    path, _ = raw_table
    frame = pd.read_csv(path)
    frame.loc[4, "colour"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    out = tmp_path / "m.direct"
    result = CliRunner().invoke(main, [str(tmp_path / "gap.csv"), "-o", str(out), "-q", *FAST, *PREPARE])
    assert result.exit_code == 2 and "column 'colour', row 5 holds a missing value" in result.stderr
    result = CliRunner().invoke(main, ["-o", str(out), "-q", *FAST, "--missing", "mean-indicator"])
    assert result.exit_code == 2 and "read one CSV, text or Parquet file" in result.stderr
    assert not out.exists()


def test_the_float_graphs_take_the_same_raw_rows_and_give_the_hosts_answer(tmp_path, raw_table):
    """direct-export .onnx and .tflite of a model trained with the stage: the same raw rows (codes in
    the metadata's level order, NaN for a missing value) in onnxruntime and LiteRT give the trained
    model's prediction on the host's preparation of those rows, within each graph's stated bound."""
    import json

    pytest.importorskip("onnxruntime")
    Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    from direct_edge.export import onnx_export, tflite_export
    from direct_edge.export.cli import main as export_main
    from direct_edge.runtime import reference
    from direct_edge.runtime.blob import parse
    from direct_edge.runtime.schema import prepare

    path, _ = raw_table
    model = train_prepared(path, tmp_path / "m.direct")
    for name in ("m.onnx", "m.tflite", "m.bin"):
        done = CliRunner().invoke(export_main, [str(tmp_path / "m.direct"), str(tmp_path / name), "-q"])
        assert done.exit_code == 0, done.output
    text_rows = [["0.25", "red", "1", "3.5"], ["-1.5", "blue", "2", ""], ["0.0", "green", "7", "NA"]]
    text_rows += [["1.75", "red", "2", "4.75"], ["-0.125", "blue", "1", "1.0"]]
    schema = model.schema_
    mean, sd = model.predict_rows(prepare(schema, text_rows))
    onnx = pytest.importorskip("onnx")
    levels = json.loads({p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}["levels"])
    raw = np.array(
        [
            [
                float(r[0]),
                levels["colour"].index(r[1]),
                levels["code"].index(r[2]),
                float(r[3]) if r[3] not in ("", "NA") else np.nan,
            ]
            for r in text_rows
        ]
    )
    got = onnx_export.session((tmp_path / "m.onnx").read_bytes()).run(None, {"raw": raw})
    scale = float(model.y_scale_)
    assert (
        np.max(np.abs(got[0] - mean)) <= 1e-5 * scale and np.max(np.abs(np.sqrt(got[1]) - sd)) <= 1e-5 * scale
    )
    assert not got[3].any()
    blob = parse((tmp_path / "m.bin").read_bytes())
    feats = onnx_export.features_from_model(model)
    bound = tflite_export.exact_error_bound(blob, feats, onnx_export.moments_from_model(model))
    out = Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()(
        raw=raw.astype(np.float32)
    )
    assert (
        np.max(np.abs(out["mean"] - mean)) <= bound and np.max(np.abs(np.sqrt(out["variance"]) - sd)) <= bound
    )
    X = prepare(schema, text_rows)  # size 1.0 lies below the training minimum: out of range
    flags = reference.out_of_range(blob, X.astype(np.float32).astype(np.float64)) != 0
    assert flags.tolist() == [False] * 4 + [True] and not out["refused"].any()
    np.testing.assert_array_equal(out["out_of_range"], flags)
    np.testing.assert_array_equal(got[2], reference.out_of_range(blob, X) != 0)


def test_held_out_rows_go_through_the_training_stage(tmp_path, raw_table):
    """--test FILE is read through the stage fitted on DATA (its unseen level is refused in one line);
    --test-fraction holds out prepared rows."""
    path, _ = raw_table
    frame = pd.read_csv(path)
    frame.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[150:].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "m.direct"
    args = [str(tmp_path / "train.csv"), "-o", str(out), "-q", *FAST, *PREPARE]
    result = CliRunner().invoke(main, [*args, "--test", str(tmp_path / "test.csv")])
    assert result.exit_code == 0, result.output
    summary = load_model(out).summary_
    assert summary["n_test"] == 50 and np.isfinite(summary["test_rmse"]) and summary["n_train"] == 150
    result = CliRunner().invoke(main, [*args, "--test-fraction", "0.25"])
    assert result.exit_code == 0 and 0 < load_model(out).summary_["n_test"] < 150
    frame.loc[160, "colour"] = "purple"
    frame.iloc[150:].to_csv(tmp_path / "test.csv", index=False)
    out.unlink()
    result = CliRunner().invoke(main, [*args, "--test", str(tmp_path / "test.csv")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "data row 11 has the level 'purple' in column colour, not seen in training" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, column, cell",
    [
        (["--drop", "id,date"], "colour", "red"),  # no stage: the plain reader
        (["--drop", "id", "--categorical", "colour,code"], "date", "2024-01-01"),  # the stage's reader
        (["--drop", "date", "--missing", "mean-indicator", "--categorical", "colour"], "id", "row-0000"),
    ],
)
def test_a_text_column_names_the_options_that_handle_it(tmp_path, raw_table, args, column, cell):
    """A text cell where a number belongs, whichever reader meets it, is one line that names the column
    and both ways out: --categorical for a category, --drop for an ID, a date or a note."""
    path, _ = raw_table
    out = tmp_path / "m.direct"
    result = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", *FAST, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{column!r}, row 1 holds text {cell!r}, not a number" in result.stderr, result.stderr
    assert "--categorical" in result.stderr and "leave it out with --drop" in result.stderr
    assert not out.exists()
