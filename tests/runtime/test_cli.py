"""``direct-run``: predictions per CSV row from both engines, and one-line errors."""

from __future__ import annotations

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
    assert lines[0] == "mean,std"
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


@pytest.mark.parametrize("exact", [False, True])
def test_rows_in_give_reference_mean_and_sd_out(model, exact):
    tmp_path, blob = model
    X = reference.dequantize_inputs(
        blob, np.random.default_rng(0).integers(-30000, 30000, (50, 3)).astype(np.int16)
    )
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c", comments="")
    args = [str(tmp_path / "m.bin"), str(tmp_path / "x.csv")] + (["--exact"] if exact else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    q = reference.quantize_inputs(blob, X)
    mean_q, _, var_y_q = (reference.predict_exact if exact else reference.predict)(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_y_q)
    got = parse_output(result.output)
    assert np.allclose(got[:, 0], mean, rtol=1e-8, atol=0) and np.allclose(got[:, 1], sd, rtol=1e-8)


def test_quantized_inputs_and_output_file(model):
    tmp_path, blob = model
    q = np.array([[-32768, 0, 32767], [1, 2, 3]], np.int16)
    np.savetxt(tmp_path / "q.csv", q, delimiter=",", fmt="%d")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(
        main, [str(tmp_path / "m.bin"), str(tmp_path / "q.csv"), "--quantized", "-o", str(out)]
    )
    assert result.exit_code == 0 and result.output == ""
    mean_q, _, var_y_q = reference.predict(blob, q)
    assert np.allclose(
        parse_output(out.read_text())[:, 0], reference.to_target_units(blob, mean_q, var_y_q)[0]
    )


@pytest.mark.parametrize(
    "make_input,extra,message",
    [
        ("1,2\n", [], "has 2 values"),
        ("1,2,3\n1,2,x\n", [], "data row 2 has a value that is not a number"),
        ("1,2,nan\n", [], "NaN"),
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
