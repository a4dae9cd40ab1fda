"""``direct-export``: the user's round trip in subprocesses, and one-line errors with no partial output."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_diabetes

from direct_edge.export.cli import main
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import CLI_GRAPHS

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A model.direct made by direct-train on the bundled diabetes data, as a user would."""
    work = tmp_path_factory.mktemp("trained")
    subprocess.run(
        [tool("direct-train"), "-q", "--n-features", "64", "--max-iter", "100", "--output", "model.direct"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    return work


def test_train_export_run_round_trip_agrees_with_the_reference(trained):
    done = subprocess.run(
        [tool("direct-export"), "model.bin", "--samples", "16", "--seed", "4"],
        cwd=trained,
        check=True,
        capture_output=True,
        text=True,
    )
    out = done.stdout
    assert "Warning" not in done.stderr, done.stderr  # nothing but the summary for a user to read
    assert "packed blob" in out and "samples        16 (seed 4)" in out
    X = load_diabetes(return_X_y=True)[0][:200]
    np.savetxt(trained / "in.csv", X, delimiter=",")
    run = subprocess.run(
        [tool("direct-run"), "model.bin", "in.csv"], cwd=trained, check=True, capture_output=True, text=True
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "mean,std,clipped" and len(lines) == 201
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    blob = parse((trained / "model.bin").read_bytes())
    _, mask = reference.quantize_inputs(blob, X, return_mask=True)  # held-out rows may leave the range
    np.testing.assert_array_equal(got[:, 2], (mask != 0).astype(float))
    assert blob.has_exact and run.stderr.count("ensemble") == 0  # the default: exact moments
    mean_q, _, var_y_q = reference.predict_exact(blob, reference.quantize_inputs(blob, X))
    mean, sd = reference.to_target_units(blob, mean_q, var_y_q)
    assert np.allclose(got[:, 0], mean, rtol=1e-8) and np.allclose(got[:, 1], sd, rtol=1e-8)


def test_header_output_compiles_on_its_own(trained, tmp_path):
    result = CliRunner().invoke(
        main, ["--model", str(trained / "model.direct"), str(tmp_path / "my-model.h")]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "my-model.h").read_text()
    assert "static const union" in text and "MY_MODEL_SIZE" in text
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to compile the generated header")
    src = tmp_path / "use.c"
    src.write_text(
        '#include "my-model.h"\nint main(void) { return my_model_blob.bytes[0] == 0x44 ? 0 : 1; }\n'
    )
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
    subprocess.run([cc, *flags, "-o", str(tmp_path / "use"), str(src)], check=True, cwd=tmp_path)
    assert subprocess.run([str(tmp_path / "use")]).returncode == 0
    data = bytes(int(v, 16) for v in text.split("= {{", 1)[1].split("}}", 1)[0].replace(",", " ").split())
    assert parse(data).n_samples == 32


@pytest.mark.parametrize(
    "args,message",
    [
        (["out.pb"], "cannot tell the format"),
        (["out.tflite", "--integer"], "--integer applies to .onnx"),
        (["out.onnx", "--model", "missing.direct"], "missing.direct"),
        (["out.bin", "--model", "missing.direct"], "missing.direct"),
        (["nodir/out.bin"], "does not exist"),
        (["out.bin", "--model", "garbage.direct"], "model file"),
        (["missing.direct", "out.bin"], "missing.direct"),
        (["garbage.direct", "out.bin", "--model", "garbage.direct"], "give the model once"),
        (["a.direct", "b.direct", "out.bin"], "expected [MODEL] OUTPUT"),
        (["garbage.direct", "out.bin", "--seed", "-1"], "--seed"),
        (["garbage.direct", "out.bin", "--samples", "0"], "--samples"),
    ],
)
def test_bad_arguments_give_one_line_and_no_output(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.direct").write_bytes(b"\x89DIRECT\n" + b"\0" * 40)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.direct"]


@pytest.mark.parametrize("spelling", ["positional", "option", "link"])
def test_the_output_is_never_written_over_the_model(trained, tmp_path, spelling):
    model = tmp_path / "model.bin"  # a model file named like an output
    model.write_bytes((trained / "model.direct").read_bytes())
    before = model.read_bytes()
    if spelling == "link":
        (tmp_path / "alias.bin").symlink_to(model)
        args = [str(model), str(tmp_path / "alias.bin")]
    else:
        args = [str(model), str(model)] if spelling == "positional" else ["--model", str(model), str(model)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "is the input" in result.output
    assert model.read_bytes() == before


@pytest.mark.parametrize("kind", ["blob", "garbage", "truncated"])
def test_a_file_that_is_not_a_model_is_named_in_one_line(trained, tmp_path, kind):
    """The error names the file it read, and a packed blob given for the model says what to give."""
    given, model = tmp_path / "given.bin", trained / "model.direct"
    if kind == "blob":
        assert CliRunner().invoke(main, [str(model), str(given)]).exit_code == 0
    elif kind == "garbage":
        given.write_bytes(b"id,x\n1,2\n")
    else:
        given.write_bytes(model.read_bytes()[:40])
    out = tmp_path / "again.bin"
    result = CliRunner().invoke(main, [str(given), str(out)])
    assert result.exit_code == 2 and not out.exists()
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"direct-export: error: {given}"), result.stderr
    if kind == "blob":
        assert "is a packed blob" in lines[0] and "give the .direct file" in lines[0]


def test_model_positional_equals_the_older_option(trained, tmp_path):
    new = CliRunner().invoke(main, [str(trained / "model.direct"), str(tmp_path / "a.bin"), "-q"])
    old = CliRunner().invoke(main, ["--model", str(trained / "model.direct"), str(tmp_path / "b.bin"), "-q"])
    assert new.exit_code == old.exit_code == 0 and new.output == old.output == ""
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_a_missing_export_package_gives_the_install_line(trained, tmp_path):
    """Without the export extra, .onnx and .tflite name the packages and the install command."""
    script = (
        "import sys; sys.modules['onnx'] = None; sys.modules['ai_edge_litert'] = None\n"
        "from direct_edge.export.cli import main; main()"
    )
    for name in ("m.onnx", "m.tflite"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(trained / "model.direct"), str(tmp_path / name)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and "pip install 'direct-edge[export]'" in done.stderr
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "name,args,check",
    CLI_GRAPHS,
)
def test_onnx_and_tflite_exports_from_the_command_line(trained, name, args, check):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    done = subprocess.run(
        [tool("direct-export"), name, "--samples", "8", *args],
        cwd=trained,
        check=True,
        capture_output=True,
        text=True,
    )
    assert check in done.stdout and "samples        8 (seed 0)" in done.stdout
    assert (trained / name).stat().st_size > 0
    # A clean export says nothing on stderr: LiteRT's delegate notice is not the user's business.
    assert done.stderr == ""


@pytest.mark.parametrize("name", ["closed.tflite", "closed.onnx", "closed.bin"])
def test_an_export_with_stderr_closed_still_writes_and_checks(trained, name):
    """With file descriptor 2 closed (`2>&-`) there is no stderr to keep LiteRT's notice out of: the
    export runs and checks as usual, exit 0."""
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    done = subprocess.run(
        [tool("direct-export"), name, "--samples", "8"],
        cwd=trained,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(2),
    )
    assert done.returncode == 0
    assert "samples        8 (seed 0)" in done.stdout and (trained / name).stat().st_size > 0


def _checks(out: str) -> dict[str, tuple[float, float]]:
    """{what: (in range, beyond)} from the summary's "check  WHAT: A sd(y) in ..., B beyond it" lines."""
    found = {}
    for line in out.splitlines():
        if line.strip().startswith("check") and "sd(y) in the training range" in line:
            what, rest = line.split("check", 1)[1].strip().split(": ", 1)
            inside, beyond = rest.split(" sd(y) in the training range, ")
            found[what] = (float(inside), float(beyond.split(" ")[0]))
    return found


def test_the_check_compares_with_the_trained_model_and_defaults_keep_it_small(trained, tmp_path):
    """By default the blob carries exact moments, and the float graphs use them: the difference from
    DirectRegressor.predict is small in the training range; the ensemble's is reported with a note."""
    from direct_edge.export.cli import check_batch, integer_outputs
    from direct_edge.trainer.model_file import load_model

    model = load_model(trained / "model.direct")
    out = CliRunner().invoke(main, [str(trained / "model.direct"), str(tmp_path / "m.bin")]).output
    checks = _checks(out)
    assert checks["exact mode - trained"][0] <= 1e-3
    ensemble = checks["ensemble (32 samples) - trained"][0]
    blob = parse((tmp_path / "m.bin").read_bytes())
    X, beyond = check_batch(blob)
    mean, sd = integer_outputs(blob, X, False)
    m, s = model.predict(X, return_std=True)
    want = np.max(np.maximum(np.abs(mean - m), np.abs(sd - s))[~beyond]) / model.y_scale_
    assert ensemble == pytest.approx(want, rel=1e-2)
    assert ("note           32 samples are" in out) == (ensemble > 0.05)
    assert "direct_predict_exact" in out or ensemble <= 0.05
    assert "--exact" not in out  # direct-run answers with the exact moments by default; no option needed
    out = CliRunner().invoke(
        main, [str(trained / "model.direct"), str(tmp_path / "n.bin"), "--no-exact-moments"]
    )
    assert "exact moments  no" in out.output and "exact mode - trained" not in out.output
    for name in ("m.onnx", "m.tflite"):
        pytest.importorskip("onnxruntime", reason="the export extra is not installed")
        pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
        out = CliRunner().invoke(main, [str(trained / "model.direct"), str(tmp_path / name)]).output
        ((inside, beyond),) = [v for k, v in _checks(out).items() if "exact moments" in k]
        assert inside <= 1e-4 and beyond <= 1e-4 and "note" not in out


def test_check_batch_covers_the_range_ends_and_beyond():
    from direct_edge.export.cli import check_batch
    from direct_edge.export.packed import blob_input_range, synthetic_blob

    blob = parse(synthetic_blob("rff", 5, 64, 4, seed=2))
    lo, hi = blob_input_range(blob)
    X, beyond = check_batch(blob)
    assert X.shape == (1000, 5) and beyond.sum() == 200 and not beyond[:800].any()
    np.testing.assert_array_equal(X[0], lo)
    np.testing.assert_array_equal(X[1], hi)
    assert np.all(X.min(axis=0) < lo) and np.all(X.max(axis=0) > hi)
    assert np.all(X >= lo - (hi - lo) / 4) and np.all(X <= hi + (hi - lo) / 4)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_a_column_spanning_most_of_float64_exports_and_checks(tmp_path, task):
    """A training column from −1e308 to 1e308 (finite, so the trainer takes it): its width overflows
    float64, which the check inputs must not (they did: "data row 5 has infinity", a RuntimeWarning)."""
    rng = np.random.default_rng(0)
    temp, vib = rng.normal(50, 5, 120), rng.normal(0, 1, 120)
    temp[3], temp[7] = 1e308, -1e308
    target = (
        np.where(vib > 0, "hi", "lo").tolist()
        if task == "classification"
        else (vib + 0.01 * temp.clip(0, 100)).tolist()
    )
    lines = ["temp,vib,y"] + [
        f"{float(a)!r},{float(b)!r},{c}" for a, b, c in zip(temp, vib, target, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    train = [tool("direct-train"), "d.csv", "--n-features", "32", "--max-iter", "30", "-q", "-o", "m.direct"]
    if task == "classification":
        train += ["--task", "classification"]
    assert subprocess.run(train, cwd=tmp_path, capture_output=True, text=True).returncode == 0
    done = subprocess.run(
        [tool("direct-export"), "m.direct", "m.bin"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "check" in done.stdout and (tmp_path / "m.bin").is_file()


def test_check_batch_stays_finite_for_a_range_near_the_ends_of_float64():
    from types import SimpleNamespace

    from direct_edge.export.cli import check_batch
    from direct_edge.export.packed import blob_input_range, input_quantization

    scale, zero = input_quantization(np.array([-1.7e308, 0.0, -1e308]), np.array([1.7e308, 1.0, 1e308]))
    blob = SimpleNamespace(input_scale=scale, input_zero=zero, n_inputs=3)
    lo, hi = blob_input_range(blob)
    with np.errstate(all="raise"):
        X, beyond = check_batch(blob)
    assert np.all(np.isfinite(X)) and beyond.sum() == 200
    np.testing.assert_array_equal(X[0], lo)
    np.testing.assert_array_equal(X[1], hi)


def test_avr_target_refuses_headers_avr_gcc_cannot_build(trained, tmp_path):
    """A header over 32,767 bytes: --target avr refuses it in one line (no file), the default writes it
    with a note; avr-gcc (when installed) rejects that header and builds one under the limit."""
    model = str(trained / "model.direct")
    big = ["--samples", "1100", "--layout", "dense4", "--no-exact-moments"]
    refused = CliRunner().invoke(main, [model, str(tmp_path / "big.h"), *big, "--target", "avr"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert (
        "an AVR runs a blob of at most 32,767 (avr-gcc's largest array, on an ATmega2560 too)"
        in refused.output
    )
    assert not (tmp_path / "big.h").exists()
    written = CliRunner().invoke(main, [model, str(tmp_path / "big.h"), *big])
    assert written.exit_code == 0 and "avr-gcc refuses arrays over 32,767 bytes" in written.output
    small = CliRunner().invoke(main, [model, str(tmp_path / "small.h"), "--target", "avr"])
    assert small.exit_code == 0 and "avr-gcc" not in small.output
    avr_gcc = shutil.which("avr-gcc")
    if avr_gcc is None:
        pytest.skip("avr-gcc is not installed (Debian: gcc-avr avr-libc)")
    for name, ok in (("big", False), ("small", True)):
        src = tmp_path / f"use_{name}.c"
        src.write_text(f'#include "{name}.h"\nint main(void) {{ return {name}_blob.bytes[0]; }}\n')
        done = subprocess.run(
            [
                avr_gcc,
                "-mmcu=atmega2560",
                "-Os",
                "-std=c99",
                "-c",
                str(src),
                "-o",
                str(tmp_path / f"{name}.o"),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert (done.returncode == 0) == ok, done.stderr
        if not ok:
            assert "size of array" in done.stderr and "too large" in done.stderr


def _with_meta_emptied(data: bytes) -> bytes:
    """The blob with its host metadata (MF §3 section 5) replaced by an empty JSON object, CRC redone."""
    from direct_edge.runtime.blob import SECTION_META

    off, size = parse(data).sections[SECTION_META]
    out = bytearray(data)
    out[off : off + size] = b"{}" + b" " * (size - 2)
    out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def test_the_blob_carries_the_schema_and_direct_run_matches_names_by_it(trained, tmp_path):
    """MF §10: names, target and training ranges in the schema section; direct-run reorders a header
    by it with the metadata gone, is positional with neither, and refuses a broken section in one line."""
    from direct_edge.runtime.blob import SECTION_SCHEMA
    from direct_edge.trainer.model_file import load_model

    model = load_model(trained / "model.direct")
    for name, args in (("with.bin", []), ("without.bin", ["--no-schema"])):
        result = CliRunner().invoke(main, [str(trained / "model.direct"), str(tmp_path / name), "-q", *args])
        assert result.exit_code == 0, result.output
    data = (tmp_path / "with.bin").read_bytes()
    schema = parse(data).schema
    names = list(load_diabetes().feature_names)
    assert schema.column_names == names and schema.target == "progression" and schema.plain
    assert [c.low for c in schema.columns] == model.input_min_.tolist()
    assert [c.high for c in schema.columns] == model.input_max_.tolist()
    bare = _with_meta_emptied(data)
    assert parse(bare).meta == {} and parse(bare).column_names == names
    (tmp_path / "bare.bin").write_bytes(bare)
    without = _with_meta_emptied((tmp_path / "without.bin").read_bytes())
    assert parse(without).sections[SECTION_SCHEMA] == (0, 0) and parse(without).column_names is None
    (tmp_path / "positional.bin").write_bytes(without)

    X = load_diabetes(return_X_y=True)[0][:20]
    order = list(range(len(names)))[::-1]
    lines = [",".join(names)] + [",".join(map(repr, row)) for row in X.tolist()]
    reversed_lines = [",".join(names[k] for k in order)] + [
        ",".join(map(repr, row)) for row in X[:, order].tolist()
    ]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "reversed.csv").write_text("\n".join(reversed_lines) + "\n")

    def run(model: str, rows: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [tool("direct-run"), model, rows], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    straight = run("bare.bin", "in.csv")
    assert straight.returncode == 0 and straight.stdout.count("\n") == 21
    assert run("bare.bin", "reversed.csv").stdout == straight.stdout  # matched by the schema's names
    assert run("positional.bin", "in.csv").stdout == straight.stdout
    assert run("positional.bin", "reversed.csv").stdout != straight.stdout  # no names: by position

    broken = bytearray(bare)
    broken[parse(bare).sections[SECTION_SCHEMA][0]] = 9  # schema version 9
    broken[-4:] = struct.pack("<I", zlib.crc32(bytes(broken[:-4])))
    (tmp_path / "broken.bin").write_bytes(bytes(broken))
    done = run("broken.bin", "in.csv")
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1
    assert "input schema section: schema version 9 is not supported" in done.stderr


def test_a_column_name_the_schema_cannot_hold_is_one_line_and_no_schema_exports(tmp_path):
    """MF §10 holds names of at most 255 bytes: a longer one stops the export in one line that says
    how to go on, and --no-schema exports the model without the section."""
    rng = np.random.default_rng(0)
    long_name = "x" * 300
    lines = [f"{long_name},b,y"] + [f"{a!r},{b!r},{a + b!r}" for a, b in rng.normal(size=(60, 2)).tolist()]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [tool("direct-train"), "data.csv", "-q", "--n-features", "16", "--max-iter", "50"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    result = CliRunner().invoke(main, [str(tmp_path / "model.direct"), str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "column name must be 1 to 255 bytes" in result.output and "--no-schema" in result.output
    assert not (tmp_path / "m.bin").exists()
    result = CliRunner().invoke(
        main, [str(tmp_path / "model.direct"), str(tmp_path / "m.bin"), "--no-schema"]
    )
    assert result.exit_code == 0 and parse((tmp_path / "m.bin").read_bytes()).schema is None


def test_the_ensemble_note_says_the_exact_moments_are_already_the_default(trained, tmp_path):
    """With few samples the ensemble is far from the trained model; the note for a .bin or .h says the
    exact moments are what direct-run and direct_predict_exact answer with, and asks for no option."""
    for name in ("few.bin", "few.h"):
        result = CliRunner().invoke(
            main, [str(trained / "model.direct"), str(tmp_path / name), "--samples", "2"]
        )
        assert result.exit_code == 0, result.output
        note = [line for line in result.output.splitlines() if "2 samples are" in line]
        assert len(note) == 1, result.output
        assert "direct-run's default answer (direct_predict_exact in C)" in note[0]
        assert "--exact" not in note[0] and "--samples" in note[0]


def _usage_program(header: str, name: str, values: list[float]) -> str:
    """A C program made of the header comment's "Use" lines themselves: the input array filled with
    ``values``, then every call as written; prints the refusal code, the clipped test and the outputs."""
    block = header[header.index(" * Use (") : header.index(" */")].splitlines()[1:]
    body = []
    for line in block:
        code = line.removeprefix(" *   ").split("  ")[0].strip()
        if not code:
            continue
        if code.endswith(":"):  # "<expression>: what it means"
            body.append(f'printf("clipped %d\\n", (int)({code[:-1]}));')
            continue
        if "_quantize_raw_" in code:
            code = f'printf("refused %d\\n", {code[:-1]});'
        body.append(code)
        if code.startswith(("double raw[", "float x[")):
            array = code.split()[1].split("[")[0]
            kind = code.split()[0]
            body += [f"{array}[{k}] = ({kind}){v!r};" for k, v in enumerate(values)]
    body.append('printf("out %ld %llu\\n", (long)p.mean, (unsigned long long)p.var_y);')
    body = [line.replace("nan;", "NAN;") for line in body]
    return (
        '#include <math.h>\n#include <stdio.h>\n#include "direct.h"\n'
        f'#include "{name}.h"\nint main(void) {{\n    '
        + "\n    ".join(body)
        + "\n    (void)mean;\n    (void)sd;\n    return 0;\n}\n"
    )


@pytest.mark.parametrize("schema", [True, False], ids=["raw-columns-exact", "plain-ensemble"])
def test_the_headers_use_lines_compile_and_give_the_runtimes_answer(tmp_path, schema):
    """The .h's comment block is a recipe: its lines, compiled as they stand (gcc -Werror -pedantic),
    take raw columns where the schema prepares the inputs and answer with the exact moments where the
    blob has them, equal to the numpy reference of the same raw row."""
    from direct_edge.export.c_header import render_blob
    from direct_edge.export.packed import synthetic_blob
    from direct_edge.runtime import schema as input_schema

    from .conftest import mixed_blob

    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    if schema:
        blob = mixed_blob()
        values = [0.5, 2.0, float("nan"), 1.0]  # age, colour = red, size missing, sex = m
        X = input_schema.prepare_columns(blob.schema, [[0.5], ["red"], [None], ["m"]])
        want = reference.predict_exact(blob, reference.quantize_inputs(blob, X))
    else:
        blob = parse(synthetic_blob("rff", 3, 32, 4, seed=2, exact=False))
        values = [0.25, -0.5, 0.125]
        want = reference.predict(blob, reference.quantize_inputs(blob, np.array([values])))
    header = render_blob(blob, "model")
    (tmp_path / "model.h").write_text(header)
    (tmp_path / "use.c").write_text(_usage_program(header, "model", values))
    c = Path(__file__).resolve().parents[2] / "runtime" / "c"
    exe = tmp_path / "use"
    built = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{c}", f"-I{tmp_path}",
         str(tmp_path / "use.c"), str(c / "direct.c"), str(c / "direct_predict.c"), "-lm", "-o", str(exe)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr + (tmp_path / "use.c").read_text()
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert ("refused 0" in lines) == schema
    assert "clipped 0" in lines
    assert f"out {int(want[0][0])} {int(want[2][0])}" in lines
