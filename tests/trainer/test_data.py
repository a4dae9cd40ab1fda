"""Data sources: chunked passes equal whole-file reads, bad values are named, splits are stable."""

import gzip
import sys

import numpy as np
import pytest

from direct_edge.trainer.data import (
    ArraySource,
    IterableSource,
    held_out_rows,
    open_table,
    read_arrays,
    split_source,
)
from direct_edge.trainer.errors import DataError

CHUNKS = (1, 7, 64, 1000)


def table(n=203, d=4, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, d + 1)) * [1, 10, 0.01, 1000, 3][: d + 1]
    data[:, 1] = np.round(data[:, 1])  # an integer column
    return data


def write_csv(path, data, header=True, sep=",", opener=open):
    with opener(path, "wt") as f:
        if header:
            f.write(sep.join(f"c{j}" for j in range(data.shape[1])) + "\n")
        for row in data:
            f.write(sep.join(repr(float(v)) for v in row) + "\n")


def concat(source, chunk_rows):
    chunks = list(source.batches(chunk_rows))
    assert all(1 <= len(y) <= chunk_rows and X.shape == (len(y), source.n_inputs) for X, y in chunks)
    assert all(X.dtype == np.float64 and y.dtype == np.float64 for X, y in chunks)
    return np.concatenate([X for X, _ in chunks]), np.concatenate([y for _, y in chunks])


@pytest.mark.parametrize(
    "name, header, sep",
    [
        ("t.csv", True, ","),
        ("t.csv", False, ","),
        ("t.csv.gz", True, ","),
        ("t.tsv", True, "\t"),
        ("t.txt", False, " "),
        ("t.txt", True, ","),
    ],
)
def test_chunked_text_passes_equal_loadtxt_of_the_whole_file(tmp_path, name, header, sep):
    path = tmp_path / name
    write_csv(path, table(), header, sep, gzip.open if name.endswith(".gz") else open)
    whole = np.loadtxt(path, delimiter=None if sep == " " else sep, skiprows=int(header), ndmin=2)
    source = open_table(path)
    assert source.n_rows is None  # unknown until the first pass ends
    expected_names = [f"c{j}" for j in range(4)] if header else [f"x{j}" for j in range(4)]
    assert source.input_names == expected_names
    assert source.target_name == ("c4" if header else "y")
    for chunk in CHUNKS:
        X, y = concat(source, chunk)
        np.testing.assert_array_equal(X, whole[:, :-1])
        np.testing.assert_array_equal(y, whole[:, -1])
    assert source.n_rows == whole.shape[0]


def test_chunked_parquet_passes_equal_the_whole_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = table()
    columns = {f"c{j}": data[:, j] for j in range(data.shape[1])}
    columns["c1"] = data[:, 1].astype(np.int64)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=50)  # chunks cross row groups
    source = open_table(path, target="c2")
    assert source.n_rows == data.shape[0]
    assert source.input_names == ["c0", "c1", "c3", "c4"] and source.target_name == "c2"
    for chunk in CHUNKS:
        X, y = concat(source, chunk)
        np.testing.assert_array_equal(X, np.delete(data, 2, axis=1))
        np.testing.assert_array_equal(y, data[:, 2])


def test_npz_with_x_and_y_or_one_matrix_and_npy_memory_map(tmp_path):
    data = table()
    np.savez(tmp_path / "xy.npz", X=data[:, :-1], y=data[:, -1])
    np.savez(tmp_path / "m.npz", data)
    np.save(tmp_path / "m.npy", data)
    for name, target, col in [
        ("xy.npz", None, -1),
        ("m.npz", None, -1),
        ("m.npz", "1", 1),
        ("m.npy", "-2", 3),
    ]:
        source = open_table(tmp_path / name, target)
        assert source.n_rows == data.shape[0] and source.target_name == "y"
        X, y = concat(source, 37)
        np.testing.assert_array_equal(X, np.delete(data, col % 5, axis=1))
        np.testing.assert_array_equal(y, data[:, col])
    assert isinstance(open_table(tmp_path / "m.npy").matrix, np.memmap)


def test_memory_mapped_arrays_are_read_a_chunk_at_a_time(tmp_path):
    data = table(n=1000)
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(1000, 4))
    X[:] = data[:, :-1]
    X.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    source = ArraySource(X, data[:, -1])
    for chunk in (1, 99, 5000):
        Xc, yc = concat(source, chunk)
        np.testing.assert_array_equal(Xc, data[:, :-1].astype(np.float32))
        np.testing.assert_array_equal(yc, data[:, -1])
    assert source.X is X  # nothing was copied at construction


def test_csv_pass_holds_one_chunk_at_a_time(tmp_path):
    import tracemalloc

    data = table(n=40_000)
    path = tmp_path / "big.csv"
    write_csv(path, data)
    source = open_table(path)
    next(iter(source.batches(10)))  # first use imports parts of pandas; keep that out of the count
    tracemalloc.start()
    n = sum(len(y) for _, y in source.batches(500))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 40_000
    # The table is 1.6 MB as float64 (a single 40,000-row chunk peaks at about 5 MB); 500-row
    # chunks peak at about 0.4 MB, mostly the parser's fixed buffers.
    assert peak < data.nbytes / 2


def test_target_by_name_and_by_index_for_headerless_files(tmp_path):
    data = table(n=20)
    write_csv(tmp_path / "h.csv", data, header=True)
    write_csv(tmp_path / "n.csv", data, header=False)
    src = open_table(tmp_path / "h.csv", target="c0")
    assert src.input_names == ["c1", "c2", "c3", "c4"] and src.target_name == "c0"
    np.testing.assert_array_equal(concat(src, 8)[1], data[:, 0])
    src = open_table(tmp_path / "n.csv", target="0")
    assert src.input_names == ["x0", "x1", "x2", "x3"] and src.target_name == "y"
    np.testing.assert_array_equal(concat(src, 8)[0], data[:, 1:])
    np.testing.assert_array_equal(concat(open_table(tmp_path / "n.csv", target="-3"), 8)[1], data[:, 2])


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,y\n1,2,3\n4,5,6\n", "no column named 'zz'; available columns: a, b, y"),
        ("1,2,3\n4,5,6\n", "target must be a 0-based column index from 0 to 2"),
        ("1,2,3\n4,5,6\n", "index 7 is out of range"),
    ],
)
def test_unknown_target_column_lists_what_is_available(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    target = "7" if "range" in message else "zz"
    with pytest.raises(DataError, match=message):
        open_table(tmp_path / "t.csv", target)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("abc", "column 'b', row 57 holds text 'abc', not a number"),
        ("", "column 'b', row 57 holds a missing value or NaN"),
        ("nan", "column 'b', row 57 holds a missing value or NaN"),
        ("inf", "column 'b', row 57 holds an infinite value"),
        ("-Infinity", "column 'b', row 57 holds an infinite value"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 10, 1000])
def test_bad_values_are_reported_with_column_and_row(tmp_path, cell, message, chunk):
    rows = [f"{i},{i * 2},{i % 3}" for i in range(100)]
    rows[56] = f"56,{cell},1"
    (tmp_path / "t.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    source = open_table(tmp_path / "t.csv")
    with pytest.raises(DataError, match=message):
        list(source.batches(chunk))


def test_bad_values_in_parquet_arrays_and_iterables_are_reported(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0, None], "y": [1.0, 2.0, 3.0]}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match="column 'a', row 3 holds a missing value"):
        list(open_table(tmp_path / "n.parquet").batches(2))
    pq.write_table(pa.table({"a": ["1", "x"], "y": [1.0, 2.0]}), tmp_path / "s.parquet")
    with pytest.raises(DataError, match="column 'a', row 2 holds text 'x'"):
        list(open_table(tmp_path / "s.parquet").batches(2))
    X = np.ones((10, 2))
    X[6, 1] = np.inf
    with pytest.raises(DataError, match="column 'x1', row 7 holds an infinite value"):
        list(ArraySource(X, np.ones(10)).batches(4))
    with pytest.raises(DataError, match="column 'y', row 2 holds a missing value"):
        list(IterableSource(lambda: iter([(np.ones((3, 2)), [1.0, np.nan, 1.0])])).batches(4))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("e.csv", b"", "the file is empty"),
        ("h.csv", b"a,b,y\n", "header but no data rows"),
        ("one.csv", b"y\n1\n2\n", "need at least 2 columns"),
        ("semi.csv", b"a;b;y\n1;2;3\n", "need at least 2 columns .* separated by commas"),
        ("latin1.csv", b"caf\xe9,y\n1,2\n", "not UTF-8 text"),
        ("d.csv", b"a,a,y\n1,2,3\n", "duplicate column names in the header: a"),
        ("t.xlsx", b"whatever", "unknown file type '.xlsx'"),
        ("bad.parquet", b"not parquet at all", "not a readable Parquet file"),
        ("bad.npz", b"not a zip", "not a readable .npz file"),
        ("two.npz", None, "expected arrays 'X' and 'y', or a single 2-D array; found a, b"),
    ],
)
def test_unusable_files_raise_data_error_at_open(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        np.savez(path, a=np.ones((2, 2)), b=np.ones(2))
    else:
        path.write_bytes(content)
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    with pytest.raises(DataError, match=message):
        open_table(path)


def test_missing_paths_and_directories_name_the_path(tmp_path):
    with pytest.raises(DataError, match=f"data file not found: {tmp_path / 'nope.csv'}"):
        open_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        open_table(tmp_path)


def test_ragged_rows_are_a_data_error(tmp_path):
    (tmp_path / "r.csv").write_text("a,b,y\n1,2,3\n1,2,3,4\n")
    with pytest.raises(DataError, match="cannot parse"):
        list(open_table(tmp_path / "r.csv").batches(10))


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"pip install direct-edge\[parquet\]"):
        open_table(tmp_path / "t.parquet")


@pytest.mark.parametrize("name", ["sales [2023].csv", "run?.csv", "data[1].csv", "a*b.csv"])
def test_an_existing_file_is_read_whatever_its_name_holds(tmp_path, name):
    (tmp_path / "data1.csv").write_text("a,y\n9,9\n")  # what data[1].csv matches as a pattern
    (tmp_path / "axb.csv").write_text("a,y\n9,9\n")
    (tmp_path / name).write_text("a,y\n1,2\n3,4\n")
    source = open_table(tmp_path / name)
    assert source.files == (str(tmp_path / name),) and source.where == str(tmp_path / name)
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, [[1.0], [3.0]])
    np.testing.assert_array_equal(y, [2.0, 4.0])


def test_a_pattern_naming_no_file_is_a_glob_read_as_one_table(tmp_path):
    data = table(n=30)
    for i, rows in enumerate(np.array_split(data, 3)):
        write_csv(tmp_path / f"part-{i}.csv", rows)
    pattern = str(tmp_path / "part-[0-9].csv")
    source = open_table(pattern, target="c0")
    assert source.files == tuple(str(tmp_path / f"part-{i}.csv") for i in range(3))
    assert source.where == f"{pattern} (3 files)" and source.input_names == ["c1", "c2", "c3", "c4"]
    X, y = concat(source, 7)
    np.testing.assert_array_equal(X, data[:, 1:])
    np.testing.assert_array_equal(y, data[:, 0])
    train, _, _ = split_source(source, 0.5, seed=1)
    assert train.files == source.files
    with pytest.raises(DataError, match=r"no data files match '.*none-\*\.csv'"):
        open_table(tmp_path / "none-*.csv")


def test_files_of_single_sources(tmp_path):
    write_csv(tmp_path / "t.csv", table(n=5))
    np.save(tmp_path / "m.npy", table(n=5))
    np.savez(tmp_path / "m.npz", X=np.ones((3, 2)), y=np.ones(3))
    for name in ("t.csv", "m.npy", "m.npz"):
        assert open_table(tmp_path / name).files == (str(tmp_path / name),)
    assert ArraySource(np.ones((3, 2)), np.ones(3)).files == ()


def test_pandas_index_columns_in_parquet_are_not_inputs(tmp_path):
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [1.0, 2.0, 3.0], "y": [7.0, 8.0, 9.0]})
    frame.index = [10, 20, 30]
    frame.to_parquet(tmp_path / "unnamed.parquet")  # stored as __index_level_0__
    frame.rename_axis("id").to_parquet(tmp_path / "named.parquet")  # stored as id
    frame.to_parquet(tmp_path / "range.parquet", index=False)
    for name in ("unnamed.parquet", "named.parquet", "range.parquet"):
        source = open_table(tmp_path / name)
        assert source.input_names == ["a", "b"] and source.target_name == "y"
        X, y = concat(source, 2)
        np.testing.assert_array_equal(X, frame[["a", "b"]].to_numpy())
        np.testing.assert_array_equal(y, [7.0, 8.0, 9.0])


def test_iterable_source_is_re_iterable_and_re_cuts_batches():
    data = table(n=50)

    def factory():
        for start in range(0, 50, 13):
            yield data[start : start + 13, :-1], data[start : start + 13, -1]

    source = IterableSource(factory)
    assert source.n_inputs == 4 and source.n_rows is None
    for chunk in (5, 100):
        X, y = concat(source, chunk)
        np.testing.assert_array_equal(X, data[:, :-1])
        np.testing.assert_array_equal(y, data[:, -1])
    assert source.n_rows == 50


# ---- split --------------------------------------------------------------------------------------


def rows_of(X, y):
    return {tuple(r) for r in np.column_stack([X, y])}


def test_split_is_independent_of_chunk_rows_and_the_same_on_every_pass(tmp_path):
    data = table(n=997)
    write_csv(tmp_path / "t.csv", data)
    train, X_test, y_test = split_source(open_table(tmp_path / "t.csv"), 0.25, seed=3)
    first = concat(train, 1000)
    for chunk in (1, 7, 64, 1000):
        X, y = concat(train, chunk)
        np.testing.assert_array_equal(X, first[0])
        np.testing.assert_array_equal(y, first[1])
    assert train.n_rows == len(first[1])
    # Disjoint, complete, in file order, and the same test set as held_out_rows says.
    held = held_out_rows(0, 997, 0.25, 3)
    np.testing.assert_array_equal(X_test, data[held, :-1])
    np.testing.assert_array_equal(y_test, data[held, -1])
    np.testing.assert_array_equal(first[0], data[~held, :-1])
    # The same split from another kind of source over the same rows.
    train2, X_test2, _ = split_source(ArraySource(data[:, :-1], data[:, -1]), 0.25, seed=3)
    np.testing.assert_array_equal(X_test2, X_test)
    np.testing.assert_array_equal(concat(train2, 50)[0], first[0])


def test_held_out_rows_depend_only_on_the_row_index():
    whole = held_out_rows(0, 100_000, 0.2, seed=7)
    pieces = np.concatenate([held_out_rows(s, min(333, 100_000 - s), 0.2, 7) for s in range(0, 100_000, 333)])
    np.testing.assert_array_equal(whole, pieces)
    # About the requested share (binomial: sd = sqrt(n p (1 - p)) ≈ 126), and seeds differ.
    assert abs(int(whole.sum()) - 20_000) < 6 * 126
    assert (whole != held_out_rows(0, 100_000, 0.2, seed=8)).mean() > 0.2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_must_be_strictly_between_0_and_1(fraction):
    with pytest.raises(DataError, match="between 0 and 1"):
        split_source(ArraySource(np.ones((10, 1)), np.ones(10)), fraction, 0)


def test_split_with_no_held_out_rows_is_a_data_error():
    with pytest.raises(DataError, match="no rows were held out"):
        split_source(ArraySource(np.ones((2, 1)), np.ones(2)), 1e-9, 0)


def test_read_arrays_gathers_a_source():
    data = table(n=30)
    X, y = read_arrays(ArraySource(data[:, :-1], data[:, -1]), chunk_rows=4)
    np.testing.assert_array_equal(X, data[:, :-1])
    np.testing.assert_array_equal(y, data[:, -1])
