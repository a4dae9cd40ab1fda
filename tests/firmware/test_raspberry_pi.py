"""firmware_examples/raspberry-pi cross-compiled static for aarch64 and armhf and run under qemu-user
(Cortex-A53: Pi 3 / Zero 2, Cortex-A72: Pi 4, Cortex-A7: 32-bit): CSV rows of raw values in, outputs
equal to runtime/reference.py (integers bit for bit, the float display to the last bit)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import make, require_tool, run, synthetic, vectors, write_model_dir

pytestmark = pytest.mark.firmware

# (build target, cross compiler, emulator, -cpu)
CONFIGS = {
    "aarch64-a53": ("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a53"),
    "aarch64-a72": ("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a72"),
    "armhf-a7": ("armhf", "arm-linux-gnueabihf-gcc", "qemu-arm", "cortex-a7"),
}
ROWS = 400


def raw_rows(blob, rows: int, seed: int) -> np.ndarray:
    """Real input values (rows, d): uniform over each input's clipping range widened by 10 % on both
    sides (so some saturate, IS §2), plus one row exactly at the range ends."""
    rng = np.random.default_rng(seed)
    lo = reference.dequantize_inputs(blob, np.full((1, blob.n_inputs), -32768, dtype=np.int16))[0]
    hi = reference.dequantize_inputs(blob, np.full((1, blob.n_inputs), 32767, dtype=np.int16))[0]
    u = rng.uniform(-0.1, 1.1, (rows, blob.n_inputs))
    X = lo + u * (hi - lo)
    X[0], X[1] = lo, hi
    return X


def csv_text(X: np.ndarray) -> str:
    header = ",".join(f"x{k}" for k in range(X.shape[1]))
    return header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"


def expected(blob, X: np.ndarray, ensemble: bool = False) -> list[tuple[float, float, int, int, int]]:
    """What predict prints: the exact moments when the blob carries them (unless -e), else the ensemble."""
    q = reference.quantize_inputs(blob, X)
    predict = reference.predict_exact if blob.has_exact and not ensemble else reference.predict
    mean_q, var_f, var_y = predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_y)
    return list(zip(mean.tolist(), sd.tolist(), mean_q.tolist(), var_f.tolist(), var_y.tolist(), strict=True))


def parsed(stdout: str) -> list[tuple[float, float, int, int, int]]:
    """The CSV that predict -i prints (the same header convention as direct-run)."""
    lines = stdout.splitlines()
    assert lines[0] == "mean,std,mean_q,var_f_q,var_y_q"
    out = []
    for line in lines[1:]:
        a, b, c, d, e = line.split(",")
        out.append((float(a), float(b), int(c), int(d), int(e)))
    return out


@pytest.fixture(scope="module")
def builds(trained_header, tmp_path_factory):
    """The example built once per target with the trained model compiled in."""
    work = tmp_path_factory.mktemp("pi")
    model_dir = work / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    out = {}
    for target, cc in (("aarch64", "aarch64-linux-gnu-gcc"), ("armhf", "arm-linux-gnueabihf-gcc")):
        if shutil.which(cc) is not None:
            make("raspberry-pi", "all", TARGET=target, MODEL_DIR=str(model_dir), BUILD=str(work / target))
            out[target] = work / target / "predict"
    return out


def _run(config: str, builds, args: list[str], stdin: str) -> str:
    target, cc, qemu, cpu = CONFIGS[config]
    require_tool(cc, qemu)
    done = run([qemu, "-cpu", cpu, str(builds[target]), "-i", *args], input=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pi_compiled_in_model_matches_reference_bit_for_bit(config, builds, trained_header):
    blob = parse(vectors.read_blob_bytes(trained_header))
    X = raw_rows(blob, ROWS, seed=3)
    assert blob.has_exact  # direct-export's default: the example answers with the exact moments
    assert parsed(_run(config, builds, [], csv_text(X))) == expected(blob, X)


def test_pi_ensemble_on_request_and_exact_by_default_differ(builds, trained_header):
    """-e gives the S-sample ensemble of the same blob, bit for bit, and it is not the default's answer."""
    blob = parse(vectors.read_blob_bytes(trained_header))
    X = raw_rows(blob, 50, seed=8)
    exact = parsed(_run("aarch64-a53", builds, [], csv_text(X)))
    ensemble = parsed(_run("aarch64-a53", builds, ["-e"], csv_text(X)))
    assert exact == expected(blob, X)
    assert ensemble == expected(blob, X, ensemble=True)
    assert [r[2] for r in exact] != [r[2] for r in ensemble]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pi_blob_file_matches_reference_bit_for_bit(config, builds, tmp_path):
    """A packed model.bin given on the command line (another layout, S = 32, nonzero variances)."""
    data = synthetic("rff", 128, 32, 0.5, "bitmap4", seed=5, d=4)
    (tmp_path / "model.bin").write_bytes(data)
    blob = parse(data)
    X = raw_rows(blob, ROWS, seed=4)
    got = parsed(_run(config, builds, [str(tmp_path / "model.bin")], csv_text(X)))
    assert got == expected(blob, X)
    assert any(row[3] > 0 for row in got)


def test_pi_rejects_a_malformed_row(builds):
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    done = run(["qemu-aarch64", str(builds["aarch64"])], input="1,2\n3,4,5\n")
    assert done.returncode == 2 and "expected" in done.stderr


def test_pi_linear_model_from_another_model_dir_matches_reference(tmp_path):
    """model.h with another model builds too (the Makefile takes MODEL_DIR)."""
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    write_model_dir(tmp_path / "m", synthetic("linear", 9, 4, 0.2, "dense4", seed=9), 4)
    make("raspberry-pi", "all", TARGET="aarch64", MODEL_DIR=str(tmp_path / "m"), BUILD=str(tmp_path / "b"))
    X = raw_rows(parse(vectors.read_blob_bytes(tmp_path / "m" / "model.h")), 50, seed=1)
    done = run(["qemu-aarch64", str(tmp_path / "b" / "predict"), "-i"], input=csv_text(X))
    blob = parse(vectors.read_blob_bytes(tmp_path / "m" / "model.h"))
    assert parsed(done.stdout) == expected(blob, X)
