"""Text files: the separator, decimal mark and header rules, their overrides, and messages that name
the options reading a file the defaults do not."""

import gzip

import numpy as np
import pandas as pd
import pytest

from direct_edge.trainer.data import open_table, read_arrays
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.text_files import sniff


def write(path, text, opener=open):
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


SEMI_DECIMAL_COMMA = "a;b;y\n1,5;-2,25;3\n4,5;5;6,75\n"
SEMI_VALUES = (np.array([[1.5, -2.25], [4.5, 5.0]]), np.array([3.0, 6.75]))


@pytest.mark.parametrize(
    "lines, expected",
    [
        (["a,b,y", "1.5,2,3"], (",", ".", 3)),
        (["a;b;y", "1,5;2,25;3", "4;5,5;6"], (";", ",", 6)),
        (["1,5;2,25;3,0", "4,0;5,5;6,25"], (";", ",", 6)),  # csv.Sniffer says ","
        (["274,5 -0,25 3,0", "1,25 2,5 3,75"], (r"\s+", ",", 6)),  # csv.Sniffer says ","
        (["1.5  2   3", "4 5.25 6"], (r"\s+", ".", 6)),
        (["1, 2, 3", "4, 5, 6"], (",", ".", 6)),
        (["a|b|y", "1|2|3"], ("|", ".", 3)),
        (["y", "1", "2"], (r"\s+", ".", -1)),
    ],
)
def test_sniff_picks_the_format_that_reads_the_most_numbers(lines, expected):
    assert sniff(lines) == expected


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "t.csv",
            r"t.csv: cannot parse \(Error tokenizing data. C error: Expected 1 fields in line 2, saw 3\); "
            r"the file looks semicolon-separated with decimal commas: read it with sep=';', decimal=','$",
        ),
        (
            "t.txt",
            r"t.txt: read with sep=';', fields are not numbers; the file looks semicolon-separated with "
            r"decimal commas: read it with sep=';', decimal=','$",
        ),
    ],
)
def test_semicolons_with_decimal_commas_are_refused_naming_the_options_that_read_them(
    tmp_path, name, message
):
    path = write(tmp_path / name, SEMI_DECIMAL_COMMA)
    with pytest.raises(DataError, match=message):
        open_table(path)
    source = open_table(path, sep=";", decimal=",")
    assert source.input_names == ["a", "b"] and source.target_name == "y"
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, SEMI_VALUES[0])
    np.testing.assert_array_equal(y, SEMI_VALUES[1])


def test_whitespace_with_decimal_commas_names_decimal_comma(tmp_path):
    path = write(tmp_path / "t.txt", "274,5 -0,25 3,0\n1,25 2,5 3,75\n")
    with pytest.raises(DataError, match=r"looks whitespace-separated with decimal commas: read it with "):
        open_table(path)
    X, y = read_arrays(open_table(path, decimal=","))
    np.testing.assert_array_equal(X, [[274.5, -0.25], [1.25, 2.5]])
    np.testing.assert_array_equal(y, [3.0, 3.75])


def test_a_decimal_comma_deep_in_a_file_is_named_in_the_text_message(tmp_path):
    rows = ["a;b;y"] + [f"{i};{i};{i}" for i in range(100)] + ["1;2,5;3"]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    source = open_table(path, sep=";")
    with pytest.raises(
        DataError,
        match=r"column 'b', row 101 holds text '2,5', not a number; it looks like a number with a decimal "
        r"comma: read the file with decimal=','$",
    ):
        read_arrays(source)


@pytest.mark.parametrize(
    "name, text, sep",
    [
        ("t.txt", "a;b;y\n1.5;2;3\n", ";"),  # .txt: sniffed
        ("t.txt", "a|b|y\n1.5|2|3\n", "|"),
        ("t.csv", "a\tb\ty\n1.5\t2\t3\n", "\t"),  # explicit
        ("t.csv", "a\tb\ty\n1.5\t2\t3\n", "\\t"),  # a tab typed as backslash-t
        ("t.tsv", "a b  y\n1.5 2  3\n", r"\s+"),
    ],
)
def test_separators_sniffed_for_txt_or_given(tmp_path, name, text, sep):
    path = write(tmp_path / name, text)
    source = open_table(path, sep=None if name == "t.txt" else sep)
    assert source.input_names == ["a", "b"]
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, [[1.5, 2.0]])
    np.testing.assert_array_equal(y, [3.0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sep": "ab"}, r"the separator must be one character or r'\\s\+' \(whitespace\), got 'ab'"),
        ({"decimal": ""}, "the decimal mark must be one character, got ''"),
        ({"decimal": ","}, r"the decimal mark ',' is also the separator; give sep="),
        ({"header": "yes"}, "header must be None .*, True or False, got 'yes'"),
    ],
)
def test_bad_reader_options_are_data_errors(tmp_path, options, message):
    path = write(tmp_path / "t.csv", "a,b,y\n1,2,3\n")
    with pytest.raises(DataError, match=message):
        open_table(path, **options)


def test_pandas_default_header_is_a_header_and_numeric_names_stay_names(tmp_path):
    data = np.arange(12.0).reshape(3, 4) / 4
    path = tmp_path / "t.csv"
    pd.DataFrame(data).to_csv(path, index=False)  # header 0,1,2,3
    source = open_table(path)
    assert source.named_columns and source.input_names == ["0", "1", "2"] and source.target_name == "3"
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, data[:, :3])
    np.testing.assert_array_equal(y, data[:, 3])
    X, y = read_arrays(open_table(path, header=False))  # the same file read as data
    assert X.shape == (4, 3)
    np.testing.assert_array_equal(X[0], [0.0, 1.0, 2.0])


def test_a_target_named_like_a_number_is_chosen_by_name(tmp_path):
    path = write(tmp_path / "t.csv", "2021,2022,2023\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="index 2022 is out of range"):
        open_table(path, target="2022")  # numbers in the first row: data, no names
    source = open_table(path, target="2022", header=True)
    assert source.input_names == ["2021", "2023"] and source.target_name == "2022"
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, [[1.0, 3.0], [4.0, 6.0]])
    np.testing.assert_array_equal(y, [2.0, 5.0])


@pytest.mark.parametrize("marker", ["NA", "", "nan", "NULL", "N/A"])
def test_a_first_row_with_a_missing_value_is_data_not_a_header(tmp_path, marker):
    path = write(tmp_path / "t.csv", f"1,{marker},3\n4,5,6\n")
    source = open_table(path)
    assert not source.named_columns and source.input_names == ["x0", "x1"]
    with pytest.raises(DataError, match="column '1', row 1 holds a missing value or NaN"):
        read_arrays(source)


def test_header_false_reads_a_text_first_row_as_data_and_fails_on_it(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,y\n1,2,3\n")
    with pytest.raises(DataError, match="column '0', row 1 holds text 'a', not a number"):
        read_arrays(open_table(path, header=False))


@pytest.mark.parametrize("name", ["t.csv", "t.txt", "t.csv.gz"])
@pytest.mark.parametrize("header", [True, False])
def test_a_byte_order_mark_is_skipped(tmp_path, name, header):
    sep = " " if name.endswith(".txt") else ","
    text = "\ufeff" + (f"a{sep}b{sep}y\n" if header else "") + f"1{sep}2{sep}3\n4{sep}5{sep}6\n"
    path = write(tmp_path / name, text, gzip.open if name.endswith(".gz") else open)
    source = open_table(path)
    assert source.input_names == (["a", "b"] if header else ["x0", "x1"])
    X, y = read_arrays(source)
    np.testing.assert_array_equal(X, [[1.0, 2.0], [4.0, 5.0]])
    np.testing.assert_array_equal(y, [3.0, 6.0])


@pytest.mark.parametrize("suffix, compression", [(".bz2", "bz2"), (".xz", "xz"), (".zip", "zip")])
def test_compression_is_inferred_from_the_name(tmp_path, suffix, compression):
    path = tmp_path / f"t.csv{suffix}"
    pd.DataFrame({"a": [0.5, 1.5], "y": [2.0, 3.0]}).to_csv(path, index=False, compression=compression)
    X, y = read_arrays(open_table(path))
    np.testing.assert_array_equal(X, [[0.5], [1.5]])
    np.testing.assert_array_equal(y, [2.0, 3.0])
