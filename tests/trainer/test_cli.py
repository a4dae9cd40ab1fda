"""direct-train: real runs on real files; every user error is one line, exit code 2, no output file."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from direct_edge.trainer.cli import main
from direct_edge.trainer.data import open_table, split_source
from direct_edge.trainer.model_file import load_model
from direct_edge.trainer.regressor import DirectRegressor

# Small, fixed hyperparameters keep each run well under a second.
FAST = ["--n-features", "32", "--max-iter", "100", "--lengthscale", "1.5", "--grid-scale", "0.2"]
FAST += ["--prior-scale", "0.5"]
FAST_PARAMS = dict(n_features=32, max_iter=100, lengthscale=1.5, grid_scale=0.2, prior_scale=0.5)
SCRIPT = Path(sys.executable).with_name("direct-train")


def regression_data(n=120, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, d))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] - 0.2 * X[:, 2] ** 2 + 0.1 * rng.standard_normal(n)
    return X, 10 * y + 3


def write_csv(path, X, y, header=True, target_first=False):
    cols = np.column_stack([y, X] if target_first else [X, y])
    names = ["y"] + [f"a{j}" for j in range(X.shape[1])] if target_first else None
    names = names or [f"a{j}" for j in range(X.shape[1])] + ["y"]
    lines = [",".join(names)] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in cols]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args):
    """``direct-train args...`` in process; stdout and stderr come back separately."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, output: Path, message: str = ""):
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("direct-train: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not output.exists()


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The models here are tiny; on a busy machine BLAS threads only contend (10x slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def data():
    return regression_data()


@pytest.fixture
def csv(tmp_path, data):
    return write_csv(tmp_path / "train.csv", *data)


# ---- happy paths --------------------------------------------------------------------------------


def test_demo_without_data_trains_on_diabetes_and_prints_the_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # scikit-learn's feature-name warnings included
        result = run("--n-features", "32", "--max-iter", "100")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.direct").is_file()
    out = result.stdout
    for key in ("diabetes", "rows n", "inputs d", "features b", "ELBO", "grid scale", "lengthscale", "E[σ²]"):
        assert key in out
    for key in ("train RMSE / NLPD", "test RMSE / NLPD", "sparsity", "chosen by ELBO", "model.direct"):
        assert key in out
    assert "fit ..." in out and "iteration    50  ELBO" in out
    model = load_model(tmp_path / "model.direct")
    s = model.summary_
    assert s["n_inputs"] == 10 and s["n_train"] + s["n_test"] == 442
    assert 50 < s["n_test"] < 130  # about 20% held out
    assert s["grid_scale"] == model.grid_scale_ and np.isfinite(s["test_nlpd"])


def test_csv_with_header_and_target_matches_an_in_process_fit(tmp_path, data):
    path = write_csv(tmp_path / "t.csv", *data, target_first=True)
    out = tmp_path / "m.direct"
    result = run(path, "--target", "y", "-o", out, *FAST, "--quiet")
    assert result.exit_code == 0, result.output
    assert "ELBO" in result.stdout and "iteration" not in result.stdout  # --quiet: summary only
    loaded = load_model(out)
    reference = DirectRegressor(**FAST_PARAMS).fit_source(open_table(path, "y"))
    X, y = data
    np.testing.assert_array_equal(loaded.predict_moments(X)[0], reference.predict_moments(X)[0])
    np.testing.assert_array_equal(loaded.predict_moments(X)[1], reference.predict_moments(X)[1])
    assert loaded.summary_["input_names"] == ["a0", "a1", "a2"] and loaded.summary_["target"] == "y"
    # The stored train scores are those of the loaded model.
    mean, var = loaded.predict_moments(X)
    assert loaded.summary_["train_rmse"] == pytest.approx(np.sqrt(np.mean((y - mean) ** 2)), rel=1e-10)
    nlpd = np.mean(0.5 * np.log(2 * np.pi * var) + (y - mean) ** 2 / (2 * var))
    assert loaded.summary_["train_nlpd"] == pytest.approx(nlpd, rel=1e-10)


@pytest.mark.parametrize("gains", ["evidence", "none"])
def test_grid_gains_reach_the_fit_the_summary_and_the_model_file(tmp_path, csv, data, gains):
    # The grid scale is searched (FAST gives one), so "evidence" has per-feature grids to choose.
    out = tmp_path / "m.direct"
    options = ["--n-features", "32", "--max-iter", "100", "--lengthscale", "1.5", "--prior-scale", "0.5"]
    result = run(csv, "-o", out, *options, "--grid-gains", gains, "--quiet")
    assert result.exit_code == 0, result.output
    loaded = load_model(out)
    assert loaded.grid_gains == gains
    assert (loaded.posterior_.weight_grid.gains is not None) == (gains == "evidence")
    assert loaded.summary_["per_feature_grids"] == (gains == "evidence")
    assert ("per-feature grids" in result.stdout) == (gains == "evidence")
    reference = DirectRegressor(
        n_features=32, max_iter=100, lengthscale=1.5, prior_scale=0.5, grid_gains=gains
    ).fit_source(open_table(csv, None))
    X, _ = data
    np.testing.assert_array_equal(loaded.predict(X), reference.predict(X))


def test_headerless_csv_with_a_target_index(tmp_path, data):
    path = write_csv(tmp_path / "t.csv", *data, header=False, target_first=True)
    out = tmp_path / "m.direct"
    result = run(path, "--target", "0", "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    loaded = load_model(out)
    assert loaded.summary_["target"] == "y" and loaded.summary_["input_names"] == ["x0", "x1", "x2"]
    X, y = data
    assert loaded.summary_["train_rmse"] < 0.6 * y.std()


def test_parquet_and_npz_inputs(tmp_path, data):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y = data
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "t": y}), tmp_path / "d.parquet")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    preds = []
    for name in ("d.parquet", "d.npz"):
        out = tmp_path / f"{name}.direct"
        result = run(tmp_path / name, "-o", out, *FAST)
        assert result.exit_code == 0, result.output
        preds.append(load_model(out).predict(X))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-9)  # same rows, same model


def test_test_file_is_scored(tmp_path, csv):
    X_test, y_test = regression_data(n=40, seed=1)
    test = write_csv(tmp_path / "test.csv", X_test, y_test)
    out = tmp_path / "m.direct"
    result = run(csv, "--test", test, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "test RMSE / NLPD" in result.stdout
    loaded = load_model(out)
    assert loaded.summary_["n_test"] == 40 and loaded.summary_["n_train"] == 120
    mean = loaded.predict(X_test)
    assert loaded.summary_["test_rmse"] == pytest.approx(np.sqrt(np.mean((y_test - mean) ** 2)), rel=1e-10)


def test_test_fraction_holds_out_the_split_rows(tmp_path, csv):
    out = tmp_path / "m.direct"
    result = run(csv, "--test-fraction", "0.3", "--seed", "5", "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    summary = load_model(out).summary_
    _, X_test, _ = split_source(open_table(csv), 0.3, 5)
    assert summary["n_test"] == len(X_test) and summary["n_train"] == 120 - len(X_test)


def test_plot_writes_a_png(tmp_path, csv):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "m.direct", tmp_path / "fit.png"
    result = run(csv, "--plot", png, "-o", out, *FAST, "--test-fraction", "0.2")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


@pytest.mark.slow
def test_installed_console_script_runs(tmp_path, csv):
    out = tmp_path / "m.direct"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    ok = subprocess.run([SCRIPT, csv, "-o", out, *FAST], capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert out.is_file() and "train RMSE" in ok.stdout
    bad = subprocess.run(
        [SCRIPT, tmp_path / "missing.csv", "-o", tmp_path / "x.direct"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"direct-train: error: data file not found: {tmp_path / 'missing.csv'}"
    ]
    assert "Traceback" not in bad.stderr + bad.stdout and not (tmp_path / "x.direct").exists()


# ---- user errors --------------------------------------------------------------------------------

BAD_CSV = {
    "nan.csv": ("a,b,y\n1,2,3\n4,,6\n7,8,9\n", "column 'b', row 2 holds a missing value or NaN"),
    "inf.csv": ("a,b,y\n1,2,3\n4,5,inf\n7,8,9\n", "column 'y', row 2 holds an infinite value"),
    "text.csv": ("a,b,y\n1,2,3\n4,5,6\n7,eight,9\n", "column 'b', row 3 holds text 'eight'"),
    "empty.csv": ("", "the file is empty"),
    "header.csv": ("a,b,y\n", "header but no data rows"),
    "one_row.csv": ("a,b,y\n1,2,3\n", "need at least 2 training rows"),
}


@pytest.mark.parametrize("name", sorted(BAD_CSV))
def test_bad_data_is_one_line_and_exit_code_2(tmp_path, name):
    text, message = BAD_CSV[name]
    (tmp_path / name).write_text(text)
    out = tmp_path / "m.direct"
    assert_user_error(run(tmp_path / name, "-o", out, *FAST), out, message)


def test_failed_training_leaves_an_existing_output_untouched(tmp_path):
    (tmp_path / "text.csv").write_text(BAD_CSV["text.csv"][0])
    out = tmp_path / "m.direct"
    out.write_bytes(b"previous model")
    result = run(tmp_path / "text.csv", "-o", out, *FAST)
    assert result.exit_code == 2 and result.stderr.startswith("direct-train: error: ")
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.direct", "text.csv"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing.csv"], "data file not found: {tmp}/missing.csv"),
        (["{tmp}"], "is a directory"),
        (["{csv}", "--target", "nope"], "no column named 'nope'; available columns: a0, a1, a2, y"),
        (["{tmp}/data.xlsx"], "unknown file type '.xlsx'"),
        (["{csv}", "--n-features", "10000000"], "features need about"),
        (["{csv}", "--n-features", "33"], "must be even"),
        (["{csv}", "--test", "{tmp}/missing.csv"], "data file not found"),
        (["{csv}", "--test", "{tmp}/narrow.csv"], "has 1 input columns, the training data 3"),
        (["{csv}", "--test", "{tmp}/renamed.csv"], "has input columns a0, b1, a2"),
        (["{csv}", "--test", "{tmp}/text.csv"], "row 3 holds text 'eight'"),
        (["{csv}", "--test", "{csv}", "--test-fraction", "0.2"], "either --test or --test-fraction"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(tmp_path, csv, args, message):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "narrow.csv").write_text("a,y\n1,2\n3,4\n")
    (tmp_path / "renamed.csv").write_text("a0,b1,a2,y\n1,2,3,4\n")
    (tmp_path / "text.csv").write_text("a0,a1,a2,y\n1,2,3,4\n1,2,3,4\n7,eight,9,9\n")
    out = tmp_path / "m.direct"
    fill = {"tmp": tmp_path, "csv": csv}
    result = run(*FAST, "-o", out, *[a.format(**fill) for a in args])  # args last: they override FAST
    assert_user_error(result, out, message.format(**fill))


@pytest.mark.parametrize(
    "output, message",
    [
        ("{tmp}/no/such/dir/m.direct", "does not exist"),
        ("{csv}/m.direct", "is not a directory"),
        ("{tmp}", "is a directory"),
    ],
)
def test_unwritable_output_fails_before_training(tmp_path, csv, output, message):
    out = Path(output.format(tmp=tmp_path, csv=csv))
    result = run(csv, "-o", out, *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("direct-train: error: ") and message in result.stderr
    assert "ELBO" not in result.stdout  # nothing was trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]


def test_read_only_directory_is_refused(tmp_path, csv):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert_user_error(
            run(csv, "-o", locked / "m.direct", *FAST), locked / "m.direct", "cannot write output"
        )
    finally:
        locked.chmod(0o755)


def test_unwritable_plot_path_fails_before_training(tmp_path, csv):
    out = tmp_path / "m.direct"
    assert_user_error(run(csv, "-o", out, "--plot", tmp_path / "none" / "p.png", *FAST), out, "plot")


def test_missing_matplotlib_says_what_to_install(tmp_path, csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "m.direct"
    assert_user_error(
        run(csv, "-o", out, "--plot", tmp_path / "p.png", *FAST), out, "pip install direct-edge[plot]"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--features", "poly"], "--features"),
        (["--grid-scale", "0"], "--grid-scale"),
        (["--test-fraction", "1"], "--test-fraction"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        (["--max-iter", "0"], "--max-iter"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_usage_errors_are_one_line_naming_the_option(tmp_path, csv, args, message):
    out = tmp_path / "m.direct"
    assert_user_error(run(csv, "-o", out, *args), out, message)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("which", ["glob data", "glob test"])
def test_an_output_is_never_written_over_a_file_a_glob_reads(tmp_path, csv, which, task):
    """DATA or --test as a glob: every file it matches is an input, the model may not replace any."""
    folder = tmp_path / "g"
    folder.mkdir()
    text = csv.read_text()
    for name in ("a.csv", "b.csv"):
        (folder / name).write_text(text)
    pattern = str(folder / "*.csv")
    args = [pattern, "-o", folder / "b.csv"] if which == "glob data" else [csv, "--test", pattern]
    if which == "glob test":
        args += ["-o", folder / "a.csv"]
    if task == "classification":
        args += ["--task", "classification", "--target", "y"]
    result = run(*args, *FAST)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is the input" in result.stderr
    assert all((folder / n).read_text() == text for n in ("a.csv", "b.csv"))


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", ["plot.txt", "plot", "plot.pdf"])
def test_the_plot_path_must_say_png(tmp_path, csv, name, task):
    """The figure is a PNG whatever the path says: a path that names another kind of file is refused
    before any work, so nothing is written under a misleading name."""
    out, plot = tmp_path / "m.direct", tmp_path / name
    args = [csv, "-o", out, "--plot", plot, *FAST]
    if task == "classification":
        args += ["--task", "classification", "--target", "y"]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"direct-train: error: --plot {plot}: the plot is a PNG image; give a path ending in .png"
    ]
    assert not out.exists() and not plot.exists()


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("spelling", ["same", "dot", "link"])
def test_the_plot_never_replaces_the_model(tmp_path, csv, existing, spelling):
    out = tmp_path / "m.png"  # -o takes any name; the plot's must end in .png
    if existing:
        out.write_bytes(b"previous model")
    plot = {"same": out, "dot": tmp_path / "." / "m.png", "link": tmp_path / "alias.png"}[spelling]
    if spelling == "link":
        plot.symlink_to(out)
    result = run(csv, "-o", out, "--plot", plot, *FAST)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"direct-train: error: -o and --plot name the same file {out}; give them different paths"
    ]
    assert (out.read_bytes() == b"previous model") if existing else not out.exists()


@pytest.mark.parametrize("which", ["data", "test", "link", "plot"])
def test_an_output_is_never_written_over_an_input(tmp_path, csv, which):
    before = csv.read_bytes()
    if which == "data":
        args = [csv, "-o", csv]
    elif which == "test":
        (tmp_path / "t.csv").write_bytes(before)
        args = [csv, "--test", tmp_path / "t.csv", "-o", tmp_path / "t.csv"]
    elif which == "link":
        (tmp_path / "alias.direct").symlink_to(csv)
        args = [csv, "-o", tmp_path / "alias.direct"]
    else:
        args = [csv, "-o", tmp_path / "m.direct", "--plot", csv]
    result = run(*args, *FAST)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is the input" in result.stderr
    assert csv.read_bytes() == before and not (tmp_path / "m.direct").exists()


def test_scheduler_without_dask_says_what_to_install(tmp_path, csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "direct_edge.trainer.distributed", None)
    out = tmp_path / "m.direct"
    assert_user_error(
        run(csv, "-o", out, "--scheduler", "tcp://127.0.0.1:1", *FAST), out, "pip install 'direct-edge[dask]'"
    )


def test_version_is_the_package_version():
    from direct_edge import __version__

    for flag in ("--version", "-V"):
        result = run(flag)
        assert result.exit_code == 0 and result.stdout == f"direct-train {__version__}\n"


def test_a_glob_of_files_trains_like_the_concatenated_file(tmp_path):
    X, y = regression_data(n=150)
    whole = write_csv(tmp_path / "whole.csv", X, y)
    (tmp_path / "parts").mkdir()
    write_csv(tmp_path / "parts" / "a.csv", X[:60], y[:60])
    write_csv(tmp_path / "parts" / "b.csv", X[60:], y[60:])
    # Linear features: an rff fit may move to another local optimum when round-off changes.
    linear = ["--features", "linear", "--grid-scale", "0.2", "--prior-scale", "0.5", "-q"]
    assert run(whole, "-o", tmp_path / "w.direct", *linear).exit_code == 0
    assert run(tmp_path / "parts" / "*.csv", "-o", tmp_path / "g.direct", *linear).exit_code == 0
    w, g = load_model(tmp_path / "w.direct"), load_model(tmp_path / "g.direct")
    assert g.summary_["n_train"] == 150
    assert g.elbo_ == pytest.approx(w.elbo_, rel=1e-10)
    result = run(tmp_path / "parts" / "*.parquet", "-o", tmp_path / "none.direct")
    assert_user_error(result, tmp_path / "none.direct", "no data files match")


def test_float32_precision_option_trains_a_model(tmp_path, csv):
    out = tmp_path / "m.direct"
    result = run(csv, "-o", out, *FAST, "--precision", "float32", "-q")
    assert result.exit_code == 0, result.output
    assert load_model(out).precision == "float32"


def test_without_scheduler_nothing_about_dask_is_imported(tmp_path, csv):
    """direct-train on a file and on a glob, in a fresh interpreter: no dask module gets loaded."""
    code = (
        "import sys\n"
        "from direct_edge.trainer.cli import main\n"
        f"for data in {[str(csv), str(csv.parent / '*.csv')]!r}:\n"
        f"    main([data, '-o', {str(tmp_path / 'm.direct')!r}, *{FAST!r}, '-q'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'dask_expr')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "m.direct").exists()


# ---- real files: separators, headers, names, several targets ----------------------------------


def test_semicolons_with_decimal_commas_read_with_sep_and_decimal(tmp_path, data):
    X, y = data
    plain = write_csv(tmp_path / "plain.csv", X, y)
    text = plain.read_text().replace(",", ";").replace(".", ",")
    (tmp_path / "euro.csv").write_text(text)
    refused = run(tmp_path / "euro.csv", "-o", tmp_path / "a.direct", *FAST)
    assert refused.exit_code == 2 and "sep=';', decimal=','" in refused.stderr
    read = run(tmp_path / "euro.csv", "-o", tmp_path / "b.direct", "--sep", ";", "--decimal", ",", *FAST)
    same = run(plain, "-o", tmp_path / "c.direct", *FAST)
    assert read.exit_code == same.exit_code == 0, read.output
    assert load_model(tmp_path / "b.direct").elbo_ == load_model(tmp_path / "c.direct").elbo_


def test_numeric_column_names_stay_names_and_the_summary_lists_the_inputs(tmp_path, data):
    """pandas' to_csv(index=False) of an unnamed frame writes the header 0,1,2,3: names, not data.
    A header of years is data-like, so --header says it; a column named 2022 is then the target."""
    X, y = data
    rows = [",".join(repr(float(v)) for v in row) for row in np.column_stack([X, y])]
    (tmp_path / "years.csv").write_text("\n".join(["2020,2021,2022,2023", *rows]) + "\n")
    result = run(tmp_path / "years.csv", "--header", "--target", "2022", "-o", tmp_path / "m.direct", *FAST)
    assert result.exit_code == 0, result.output
    assert "inputs d           3: 2020, 2021, 2023" in result.stdout
    assert load_model(tmp_path / "m.direct").summary_["n_train"] == len(y)
    (tmp_path / "pandas.csv").write_text("\n".join(["0,1,2,3", *rows]) + "\n")
    result = run(tmp_path / "pandas.csv", "-o", tmp_path / "p.direct", *FAST)
    assert result.exit_code == 0, result.output
    assert "inputs d           3: 0, 1, 2" in result.stdout and "target '3'" in result.stdout
    assert load_model(tmp_path / "p.direct").summary_["n_train"] == len(y)


def test_several_targets_are_refused_in_one_line(tmp_path, csv):
    out = tmp_path / "m.direct"
    assert_user_error(
        run(csv, "--target", "a0", "--target", "y", "-o", out, *FAST), out, "a model predicts one"
    )


def test_a_file_whose_name_looks_like_a_pattern_is_that_file(tmp_path, data):
    X, y = data
    path = write_csv(tmp_path / "sales [2023].csv", X, y)
    write_csv(tmp_path / "sales 2.csv", X[:10], y[:10])  # what the pattern would match
    result = run(path, "-o", tmp_path / "m.direct", *FAST)
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "m.direct").summary_["n_train"] == len(y)


def test_a_fit_stopped_by_max_iter_says_so(tmp_path, csv):
    result = run(csv, "-o", tmp_path / "m.direct", *FAST, "--max-iter", "1")
    assert result.exit_code == 0, result.output
    first, *rest = result.stderr.splitlines()
    assert first == "direct-train: warning: the final fit stopped at --max-iter 1 before the ELBO converged"
    # a fit stopped after one iteration may also be flagged against the float model (trainer.md §9)
    assert all(line.startswith("direct-train: warning: the training RMSE is ") for line in rest)
    assert len(rest) <= 1
    assert "converged          NO: the final fit stopped at --max-iter 1" in result.stdout
    assert load_model(tmp_path / "m.direct").summary_["converged"] is False
