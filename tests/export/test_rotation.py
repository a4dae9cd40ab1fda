"""The .bin and .h exports of a rotated model (IS §3.5, MF §5.3): the model file keeps V, direct-export
writes the rotation into both, and a C program built from the generated header (its MODEL_SCRATCH_BYTES
scratch, the library's sources) predicts bit-exactly with the reference."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_diabetes

from direct_edge.export.cli import main
from direct_edge.export.packed import rotation_integers
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse
from direct_edge.trainer import DirectRegressor
from direct_edge.trainer.model_file import save_model

from .conftest import PREDICT_HARNESS

C_DIR = Path(__file__).resolve().parents[2] / "runtime" / "c"


@pytest.fixture(scope="module")
def rotated_file(tmp_path_factory):
    """A model.direct of an rff DirectRegressor (b = 64) rotated by its Gram matrix's eigenvectors."""
    X, y = load_diabetes(return_X_y=True)
    model = DirectRegressor(features="rff", n_features=64, lengthscale=2.0, max_iter=60).fit(X, y)
    Phi = model.feature_map_.transform(X)
    model.feature_map_ = model.feature_map_.rotated(np.linalg.eigh(Phi.T @ Phi)[1])
    path = tmp_path_factory.mktemp("rotated") / "model.direct"
    save_model(path, model)
    return path, model, X


def test_bin_export_carries_the_rotation(rotated_file, tmp_path):
    path, model, X = rotated_file
    for suffix in (".bin", ".h"):  # the AVR build has no rotation: refused at export time, nothing written
        avr = CliRunner().invoke(main, [str(path), str(tmp_path / f"avr{suffix}"), "--target", "avr"])
        assert avr.exit_code == 2 and "Traceback" not in avr.output, avr.output
        assert avr.output.count("\n") == 1 and "DIRECT_ROTATION 0" in avr.output, avr.output
        assert not (tmp_path / f"avr{suffix}").exists()
    args = [str(path), str(tmp_path / "m.bin"), "--exact-moments"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"rotation\s+yes \(8,256 bytes", result.output), result.output  # 2·b² + b
    blob = parse((tmp_path / "m.bin").read_bytes())
    R, s = rotation_integers(model.feature_map_.rotation, model.feature_map_.amplitude)
    assert blob.has_rotation
    np.testing.assert_array_equal(blob.rotation, R)
    np.testing.assert_array_equal(blob.rotation_shift, s)
    # the blob's features are the model's rotated ones (times the gains, IS §3.4), within IS §3.5's bound
    q = reference.quantize_inputs(blob, X)
    psi = reference.features(blob, q).astype(np.float64)
    want = model.feature_map_.transform(reference.dequantize_inputs(blob, q)) * 2.0**15
    gains = np.ones(blob.n_features) if blob.gains is None else blob.gains / 32768.0
    eps = reference.feature_error(blob) + (0.5 if blob.gains is not None else 0.0)
    assert np.max(np.abs(psi - want * gains)) <= eps


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_header_export_predicts_bit_exactly_in_c(rotated_file, tmp_path, compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    path, _, X = rotated_file
    result = CliRunner().invoke(main, [str(path), str(tmp_path / "model.h"), "--exact-moments", "-q"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "model.h").read_text()
    assert "#define MODEL_SCRATCH_BYTES 256u" in text  # 4·b: the rff features beside the rotated ones
    (tmp_path / "main.c").write_text(PREDICT_HARNESS)
    exe = tmp_path / "main"
    sources = [str(C_DIR / f) for f in ("direct.c", "direct_predict.c", "direct_classify.c")]
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", f"-I{C_DIR}", f"-I{tmp_path}"]
    done = subprocess.run(
        [compiler, *flags, str(tmp_path / "main.c"), *sources, "-o", str(exe)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "#define MODEL_ROTATED 1" in text
    # Built against a library without the rotation, the program stops at compile time, saying why.
    without = subprocess.run(
        [
            compiler,
            *flags,
            "-DDIRECT_ROTATION=0",
            "-c",
            str(tmp_path / "main.c"),
            "-o",
            str(tmp_path / "m.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert without.returncode != 0 and "needs the C library built with DIRECT_ROTATION 1" in without.stderr
    blob = parse(_blob_of(tmp_path / "model.h"))
    q = reference.quantize_inputs(blob, X[:200])
    q = np.concatenate([q, np.full((1, 10), -32768, np.int16), np.full((1, 10), 32767, np.int16)])
    run = subprocess.run(
        [str(exe)],
        input="\n".join(" ".join(map(str, row)) for row in q) + "\n",
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    got = np.array([[int(v) for v in line.split()] for line in run.stdout.splitlines()])
    mean, var, var_y = reference.predict(blob, q)
    e_mean, e_var, e_var_y = reference.predict_exact(blob, q)
    np.testing.assert_array_equal(
        got, np.stack([mean, var, var_y, e_mean, e_var, e_var_y], 1).astype(np.int64)
    )


def _blob_of(header) -> bytes:
    """The blob bytes of a generated header's initialiser (0x.. literals inside the union's braces)."""
    text = header.read_text()
    body = text.split("bytes[", 1)[1].split("{{", 1)[1].split("}}", 1)[0]
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9A-Fa-f]{2})", body))


def test_a_model_trained_with_rotation_goes_to_every_format_and_both_engines_agree(tmp_path):
    """The user's path end to end: ``direct-train --rotation eigen`` on the bundled demo, ``direct-export``
    to each format (every check line within its bound, exit 0), and ``direct-run`` giving the same
    bytes from the numpy reference and the C library, exact and ensemble."""
    from direct_edge.runtime.cli import main as run_main
    from direct_edge.trainer.cli import main as train_main

    runner = CliRunner()
    model = tmp_path / "m.direct"
    trained = runner.invoke(train_main, ["--rotation", "eigen", "--quiet", "-o", str(model)])
    assert trained.exit_code == 0, trained.output
    for suffix in (".bin", ".h", ".onnx", ".tflite"):
        done = runner.invoke(main, [str(model), str(tmp_path / f"m{suffix}")])
        assert done.exit_code == 0, (suffix, done.output)
        if suffix != ".h":
            assert re.search(r"rotation\s+yes \(131,328 bytes", done.output), (suffix, done.output)
    X, _ = load_diabetes(return_X_y=True)
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in r) for r in X[:300]))
    for mode in ([], ["--ensemble"]):
        outs = [
            runner.invoke(run_main, [str(tmp_path / "m.bin"), str(rows), "--engine", engine, *mode])
            for engine in ("reference", "c")
        ]
        if outs[1].exit_code == 2 and "C engine is not available" in outs[1].output:
            pytest.skip("C runtime unavailable")
        assert outs[0].exit_code == 0 and outs[1].exit_code == 0, (outs[0].output, outs[1].output)
        assert outs[0].stdout == outs[1].stdout
        assert len(outs[0].stdout.splitlines()) == 301


def test_exact_moments_far_from_the_trained_model_are_flagged(tmp_path):
    """A rotated model with many directions (b = 1,024 on 100 rows): per-direction grids whose steps span
    orders of magnitude leave the small ones few bits in the integer features, and the exact moments end
    well away from the trained model. direct-export must say so in a note with both modes' distances,
    not only print the check line."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 5))
    y = (
        np.sin(X[:, 0])
        + 0.5 * np.cos(1.5 * X[:, 1])
        + 0.3 * X[:, 2] * X[:, 3]
        + 0.1 * rng.standard_normal(100)
    )
    model = DirectRegressor(n_features=1024, rotation="eigen").fit(X, y)
    save_model(tmp_path / "m.direct", model)
    done = CliRunner().invoke(main, [str(tmp_path / "m.direct"), str(tmp_path / "m.bin")])
    assert done.exit_code == 0, done.output
    check = re.search(r"exact mode - trained: ([0-9.e+-]+) sd\(y\) in the training range", done.output)
    ensemble = re.search(r"ensemble \(32 samples\) - trained: ([0-9.e+-]+) sd\(y\)", done.output)
    assert check and float(check.group(1)) > 0.05, done.output  # the case
    note = re.search(
        r"note\s+exact moments are ([0-9.e+-]+) sd\(y\) from the trained model .*the 32 samples "
        r"are ([0-9.e+-]+) \(direct-run --ensemble",
        done.output,
    )
    assert note, done.output
    assert note.group(1) == check.group(1) and note.group(2) == ensemble.group(1)
