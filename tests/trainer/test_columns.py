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
