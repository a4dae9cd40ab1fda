"""``direct-run``: predictions per CSV row from both engines, and one-line errors."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse
from direct_edge.runtime.cli import main


@pytest.fixture()
def model(tmp_path):
    data = synthetic_blob("rff", 3, 32, 8, seed=2, exact=True)
    (tmp_path / "m.bin").write_bytes(data)
    return tmp_path, parse(data)


def parse_output(text: str) -> np.ndarray:
    lines = text.splitlines()
    assert lines[0] == "mean,std,clipped"
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


@pytest.mark.parametrize("flag, exact", [([], True), (["--exact"], True), (["--ensemble"], False)])
def test_rows_in_give_reference_mean_and_sd_out(model, flag, exact):
    """The blob has the exact-moment section: the default and --exact give the exact moments,
    --ensemble the samples, and nothing is said on stderr."""
    tmp_path, blob = model
    X = reference.dequantize_inputs(
        blob, np.random.default_rng(0).integers(-30000, 30000, (50, 3)).astype(np.int16)
    )
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c", comments="")
    result = CliRunner().invoke(main, [str(tmp_path / "m.bin"), str(tmp_path / "x.csv"), *flag])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    q = reference.quantize_inputs(blob, X)
    mean_q, _, var_y_q = (reference.predict_exact if exact else reference.predict)(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_y_q)
    got = parse_output(result.stdout)
    assert np.allclose(got[:, 0], mean, rtol=1e-8, atol=0) and np.allclose(got[:, 1], sd, rtol=1e-8)


def test_quantized_inputs_and_output_file(model):
    tmp_path, blob = model
    q = np.array([[-32768, 0, 32767], [1, 2, 3]], np.int16)
    np.savetxt(tmp_path / "q.csv", q, delimiter=",", fmt="%d")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(
        main, [str(tmp_path / "m.bin"), str(tmp_path / "q.csv"), "--quantized", "-o", str(out)]
    )
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == (
        "direct-run: note: 1 of 2 rows had inputs at -32768 or 32767, at or beyond the "
        "edge of the training range (clipped there; predictions are the edge's)\n"
    )
    assert parse_output(out.read_text())[:, 2].tolist() == [1, 0]
    mean_q, _, var_y_q = reference.predict_exact(blob, q)  # the blob has the section: the default
    assert np.allclose(
        parse_output(out.read_text())[:, 0], reference.to_target_units(blob, mean_q, var_y_q)[0]
    )


@pytest.mark.parametrize(
    "make_input,extra,message",
    [
        ("1,2\n", [], "has 2 values"),
        ("1,2,3\n1,2,x\n", [], "data row 2 has a value that is not a number"),
        ("1,2,nan\n", [], "data row 1 has a missing value in column 3"),
        ("1,2,3\n4,,6\n", [], "data row 2 has a missing value in column 2"),
        ("NA,2,3\n4,5,6\n", [], "data row 1 has a missing value in column 1"),
        ("a,NA,c\n4,5,6\n", [], "mixes column names with numbers or missing values"),
        (",2,3\n4,5,6\n", [], "data row 1 has a missing value in column 1"),
        ("x,2,3\n4,5,6\n", [], "mixes column names"),
        ("a,b,c\n1,NA,3\n", [], "data row 1 has a missing value in column 2"),
        ("1,2,inf\n", [], "NaN or infinity"),
        ("", [], "no input rows"),
        ("1.5,2,3\n", ["--quantized"], "must be integers"),
        ("1,2,3\n", ["-o", "nodir/out.csv"], "cannot write"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(model, make_input, extra, message):
    tmp_path, _ = model
    (tmp_path / "x.csv").write_text(make_input)
    result = CliRunner().invoke(main, [str(tmp_path / "m.bin"), str(tmp_path / "x.csv"), *extra])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "nodir").exists()


def test_corrupt_and_training_files_are_rejected(model):
    tmp_path, blob = model
    damaged = bytearray(blob.data)
    damaged[200] ^= 1
    (tmp_path / "bad.bin").write_bytes(bytes(damaged))
    (tmp_path / "x.csv").write_text("1,2,3\n")
    result = CliRunner().invoke(main, [str(tmp_path / "bad.bin"), str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "CRC" in result.output
    (tmp_path / "model.direct").write_bytes(b"\x89DIRECT\n" + b"\0" * 40)
    result = CliRunner().invoke(main, [str(tmp_path / "model.direct"), str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "direct-export" in result.output


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("header", ["", "a,b,c\n"])
def test_a_byte_order_mark_is_not_data_and_never_costs_a_row(model, header):
    """Excel's "CSV UTF-8" starts with a BOM: every row must still come out, in order."""
    tmp_path, blob = model
    rows = "0.5,1,2\n-1,0,3\n2,2,2\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (header + rows).encode())
    (tmp_path / "plain.csv").write_text(rows)
    with_bom, plain = (
        run_cli(tmp_path / "m.bin", tmp_path / "bom.csv"),
        run_cli(tmp_path / "m.bin", tmp_path / "plain.csv"),
    )
    assert with_bom.exit_code == plain.exit_code == 0
    assert with_bom.output == plain.output and len(parse_output(plain.stdout)) == 3


def test_header_options_override_the_rule(model):
    """Column names that look like numbers stay names with --header; --no-header keeps a row of names
    as data (and so refuses it, being text)."""
    tmp_path, _ = model
    (tmp_path / "numnames.csv").write_text("2020,2021,2022\n1,2,3\n")
    decided = run_cli(tmp_path / "m.bin", tmp_path / "numnames.csv")
    assert decided.exit_code == 0 and len(parse_output(decided.stdout)) == 2
    forced = run_cli(tmp_path / "m.bin", tmp_path / "numnames.csv", "--header")
    assert forced.exit_code == 0 and len(parse_output(forced.stdout)) == 1
    (tmp_path / "names.csv").write_text("a,b,c\n1,2,3\n")
    refused = run_cli(tmp_path / "m.bin", tmp_path / "names.csv", "--no-header")
    assert refused.exit_code == 2 and "data row 1 has a value that is not a number" in refused.output


@pytest.mark.parametrize("which", ["model", "inputs", "link"])
def test_the_output_is_never_written_over_an_input(model, which):
    tmp_path, blob = model
    (tmp_path / "x.csv").write_text("1,2,3\n")
    target = {"model": tmp_path / "m.bin", "inputs": tmp_path / "x.csv", "link": tmp_path / "link.csv"}[which]
    if which == "link":
        target.symlink_to(tmp_path / "x.csv")
    before = {p: p.read_bytes() for p in (tmp_path / "m.bin", tmp_path / "x.csv")}
    result = run_cli(tmp_path / "m.bin", tmp_path / "x.csv", "-o", target)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "is the input" in result.output
    assert {p: p.read_bytes() for p in before} == before


def test_version_and_help():
    from direct_edge import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and result.output == f"direct-run {__version__}\n"
    assert run_cli("-h").exit_code == 0


# ---- inputs matched by name ------------------------------------------------------------------


@pytest.fixture(scope="module")
def named_model(tmp_path_factory):
    """A blob packed from a model trained on a CSV whose columns are named a, b, c (target y)."""
    from direct_edge.export.packed import pack
    from direct_edge.trainer.cli import train

    work = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] - 2 * X[:, 2] + 0.1 * rng.standard_normal(200)
    lines = ["a,b,c,y"] + [",".join(repr(float(v)) for v in row) for row in np.column_stack([X, y])]
    (work / "train.csv").write_text("\n".join(lines) + "\n")
    model = train(
        str(work / "train.csv"), "y", str(work / "m.direct"), quiet=True, features="linear", max_iter=300
    )
    (work / "m.bin").write_bytes(pack(model, n_samples=8))
    return work, X[:20]


def write_columns(path, X, names):
    order = {"a": 0, "b": 1, "c": 2}
    cols = [X[:, order[n]] if n in order else np.zeros(len(X)) for n in names]
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in np.column_stack(cols)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_columns_in_another_order_are_matched_by_name(named_model, engine):
    work, X = named_model
    write_columns(work / "abc.csv", X, ["a", "b", "c"])
    write_columns(work / "cab.csv", X, ["c", "a", "b"])
    np.savetxt(work / "plain.csv", X, delimiter=",")  # no header: positional, the training order
    outs = [
        run_cli(work / "m.bin", work / f, "--engine", engine) for f in ("abc.csv", "cab.csv", "plain.csv")
    ]
    assert all(r.exit_code == 0 for r in outs), [r.output for r in outs]
    assert outs[0].output == outs[1].output == outs[2].output


@pytest.mark.parametrize(
    "names, message",
    [
        (["a", "b", "x"], "missing c; unknown x"),
        (["a", "b"], "missing c"),
        (["a", "b", "c", "d"], "unknown d"),
        (["a", "a", "c"], "missing b"),
    ],
)
def test_a_header_that_does_not_name_the_inputs_is_refused(named_model, names, message):
    work, X = named_model
    write_columns(work / "bad.csv", X, names)
    result = run_cli(work / "m.bin", work / "bad.csv")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "the model's inputs are a, b, c" in result.output and message in result.output
    # only extra columns (an ID, the target): the line says how to keep the model's own
    assert ("keep only the model's columns, e.g. cut -d, -f1,2,3" in result.output) == (names[-1] == "d")


def test_extra_columns_are_refused_with_the_command_that_keeps_the_models_own(named_model):
    """The training file as it stands (an ID first, the target last, the inputs in another order) is
    refused in one line that names the unknown columns and the cut command selecting the model's, and
    that command's output gives the answer of the plain file."""
    work, X = named_model
    write_columns(work / "train.csv", X, ["id", "c", "a", "b", "y"])  # id and y: columns of zeros
    result = run_cli(work / "m.bin", work / "train.csv")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "unknown id, y" in result.output
    command = result.output.split("e.g. ")[1].strip().split()
    assert command == ["cut", "-d,", "-f2,3,4"]
    cut = subprocess.run([*command, str(work / "train.csv")], capture_output=True, text=True, check=True)
    (work / "kept.csv").write_text(cut.stdout)
    write_columns(work / "abc.csv", X, ["a", "b", "c"])
    kept, plain = run_cli(work / "m.bin", work / "kept.csv"), run_cli(work / "m.bin", work / "abc.csv")
    assert kept.exit_code == 0 and kept.output == plain.output


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_rows_outside_the_training_range_are_flagged_and_counted(model, engine):
    """IS §2.1: the clipped column is the reference's out-of-range flag of the real inputs, for both
    engines; rows beyond an end get the end's prediction, and stderr says how many there were."""
    tmp_path, blob = model
    lo = blob.input_scale * (-32768 - blob.input_zero)
    hi = blob.input_scale * (32767 - blob.input_zero)
    rng = np.random.default_rng(4)
    X = rng.uniform(lo - (hi - lo) / 4, hi + (hi - lo) / 4, (2000, 3))
    X[:4] = [lo, hi, hi + (hi - lo), hi + 100 * (hi - lo)]
    X[4:8] = (lo + hi) / 2
    X[4:8, 0] = [lo[0], hi[0], hi[0] + 2 * (hi[0] - lo[0]), hi[0] + 5 * (hi[0] - lo[0])]
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%.17g")
    args = [str(tmp_path / "m.bin"), str(tmp_path / "x.csv"), "--engine", engine]
    result = CliRunner().invoke(main, args)
    if engine == "c" and result.exit_code == 2 and "C engine is not available" in result.output:
        pytest.skip("C runtime unavailable")
    assert result.exit_code == 0, result.output
    got = parse_output(result.stdout)
    want = reference.out_of_range(blob, X) != 0
    assert got[:, 2].tolist() == want.astype(int).tolist()
    assert want[:8].tolist() == [False, False, True, True, False, False, True, True]
    assert 0 < want.sum() < len(want)
    assert np.array_equal(got[6:8], got[[5, 5]] * [1, 1, 0] + [0, 0, 1])  # the edge's mean and sd
    assert result.stderr == (
        f"direct-run: note: {want.sum()} of 2000 rows had inputs outside the training range "
        "(clipped; predictions there are the edge's)\n"
    )
    inside = CliRunner().invoke(main, [str(tmp_path / "m.bin"), "-", "--engine", engine], input="0,0,0\n")
    assert inside.exit_code == 0 and inside.stderr == "" and inside.stdout.endswith(",0\n")


def test_quantized_inputs_flag_the_edges_in_both_engines(model):
    tmp_path, blob = model
    rng = np.random.default_rng(5)
    q = rng.choice(np.array([-32768, -32767, 0, 32766, 32767], np.int16), (500, 3))
    np.savetxt(tmp_path / "q.csv", q, delimiter=",", fmt="%d")
    outs = [
        CliRunner().invoke(
            main, [str(tmp_path / "m.bin"), str(tmp_path / "q.csv"), "--quantized", "--engine", e]
        )
        for e in ("reference", "c")
    ]
    if "C engine is not available" in outs[1].output:
        pytest.skip("C runtime unavailable")
    assert [o.exit_code for o in outs] == [0, 0]
    assert outs[0].stdout == outs[1].stdout and outs[0].stderr == outs[1].stderr
    assert parse_output(outs[0].stdout)[:, 2].tolist() == (reference.at_edge(q) != 0).astype(int).tolist()


# ---- exact moments by default ------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model trained by direct-train and packed by direct-export with its default options, as a user
    would: the blob carries the exact-moment section (IS §6)."""
    from direct_edge.export.cli import main as export_main
    from direct_edge.trainer.cli import main as train_main

    work = tmp_path_factory.mktemp("exported")
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(300)
    np.savetxt(work / "train.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
    trained = CliRunner().invoke(
        train_main,
        [str(work / "train.csv"), "--target", "y", "-o", str(work / "m.direct"), "-q"]
        + ["--n-features", "64", "--max-iter", "100"],
    )
    assert trained.exit_code == 0, trained.output
    done = CliRunner().invoke(export_main, [str(work / "m.direct"), str(work / "m.bin")])
    assert done.exit_code == 0, done.output
    blob = parse((work / "m.bin").read_bytes())
    assert blob.has_exact and blob.n_samples == 32
    rows = rng.normal(size=(200, 3)) * 1.5
    np.savetxt(work / "rows.csv", rows, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    return work, blob, rows


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_a_default_export_runs_the_exact_moments_bit_for_bit(exported, engine):
    """direct-run's default on a blob written by a default direct-export is reference.predict_exact:
    the same integers from the engine it runs, and the same printed rows; --ensemble is the samples."""
    from direct_edge.runtime.cli import format_rows, predict

    work, blob, rows = exported
    q, mask = reference.quantize_inputs(blob, rows, return_mask=True)
    want = reference.predict_exact(blob, q)
    try:
        got = predict(blob, q, engine, exact=True)
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"C runtime unavailable: {exc}")
    for g, w in zip(got[:3], want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    result = run_cli(work / "m.bin", work / "rows.csv", "--engine", engine)
    assert result.exit_code == 0, result.output
    assert result.stdout == format_rows(*reference.to_target_units(blob, want[0], want[2]), mask)
    assert "ensemble" not in result.stderr
    mean_exact = parse_output(result.stdout)[:, 0]
    ensemble = run_cli(work / "m.bin", work / "rows.csv", "--engine", engine, "--ensemble")
    assert ensemble.exit_code == 0 and "ensemble" not in ensemble.stderr
    mean_q, _, var_y_q = reference.predict(blob, q)
    assert ensemble.stdout == format_rows(*reference.to_target_units(blob, mean_q, var_y_q), mask)
    assert not np.array_equal(parse_output(ensemble.stdout)[:, 0], mean_exact)


@pytest.fixture()
def no_exact(tmp_path):
    data = synthetic_blob("rff", 3, 32, 8, seed=2, exact=False)
    (tmp_path / "s.bin").write_bytes(data)
    blob = parse(data)
    q = np.random.default_rng(3).integers(-20000, 20000, (20, 3)).astype(np.int16)  # inside the range
    np.savetxt(tmp_path / "x.csv", reference.dequantize_inputs(blob, q), delimiter=",", fmt="%.17g")
    return tmp_path, blob


@pytest.mark.parametrize("engine", ["reference", "c"])
def test_without_the_section_the_samples_run_with_one_note(no_exact, engine):
    """No exact-moment section: the default is the ensemble, bit for bit, and stderr has one line saying
    so, with the largest Monte Carlo standard error sd_f/sqrt(S) of the mean over the rows."""
    tmp_path, blob = no_exact
    result = run_cli(tmp_path / "s.bin", tmp_path / "x.csv", "--engine", engine)
    if engine == "c" and "C engine is not available" in result.output:
        pytest.skip("C runtime unavailable")
    assert result.exit_code == 0, result.output
    q, mask = reference.quantize_inputs(blob, np.loadtxt(tmp_path / "x.csv", delimiter=","), return_mask=True)
    mean_q, var_q, var_y_q = reference.predict(blob, q)
    from direct_edge.runtime.cli import format_rows

    assert result.stdout == format_rows(*reference.to_target_units(blob, mean_q, var_y_q), mask)
    _, sd_f = reference.to_target_units(blob, mean_q, var_q)
    _, sd = reference.to_target_units(blob, mean_q, var_y_q)
    se = sd_f / np.sqrt(8)
    assert result.stderr == (
        f"direct-run: note: {tmp_path / 's.bin'} has no exact-moment section, so this is the 8-sample "
        "ensemble: the standard error of its mean against the trained model's (sd_f/sqrt(S)) is up to "
        f"{se.max():.3g} in target units ({(se / sd).max():.3g} of the predictive sd) on these rows; "
        "direct-export stores the exact moments by default where they fit\n"
    )
    assert se.max() > 0
    asked = run_cli(tmp_path / "s.bin", tmp_path / "x.csv", "--engine", engine, "--ensemble")
    assert asked.exit_code == 0 and asked.stdout == result.stdout and asked.stderr == ""


def test_exact_on_a_blob_without_the_section_is_one_line(no_exact):
    tmp_path, _ = no_exact
    result = run_cli(tmp_path / "s.bin", tmp_path / "x.csv", "--exact")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.output == (
        f"direct-run: error: {tmp_path / 's.bin'} has no exact-moment section; "
        "re-export it without --no-exact-moments or drop --exact\n"
    )
