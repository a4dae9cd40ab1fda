"""firmware_examples/cortex-m built for Cortex-M0 (QEMU microbit) and Cortex-M4 (QEMU mps2-an386), run
under qemu-system-arm with semihosting, outputs bit-exact with runtime/reference.py; footprints budgeted."""

from __future__ import annotations

import re
import shutil
import sys

import numpy as np
import pytest

from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import (
    EXAMPLES,
    ROOT,
    elf_size,
    make,
    make_rows,
    require_newlib,
    require_tool,
    result_lines,
    run,
    synthetic,
    vectors,
    write_model_dir,
    write_vectors,
)

pytestmark = pytest.mark.firmware

TARGETS = {"m0": "microbit", "m4": "mps2-an386"}
ROWS = 200
# (kind, b, S, share of zeros, layout): every sample layout of MF §6 and both feature kinds.
SYNTHETIC = {
    "rff-b64-S32-dense4": ("rff", 64, 32, 0.0, "dense4"),
    "rff-b128-S8-bitmap4": ("rff", 128, 8, 0.5, "bitmap4"),
    "rff-b256-S8-grouped": ("rff", 256, 8, 0.7, "grouped"),
    "rff-b256-S16-gap4": ("rff", 256, 16, 0.9, "gap4"),
    "linear-b33-S8-auto": ("linear", 33, 8, 0.3, "auto"),
}
# Whole image (runtime + model + test vectors + newlib-nano printf and semihosting) for the trained
# b = 256, S = 8 model; static RAM is .data + .bss (the 2 KB stack and printf's heap come on top).
FLASH_BUDGET = {"m0": 40 * 1024, "m4": 36 * 1024}
STATIC_RAM_BUDGET = 1024


def _tools() -> None:
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    require_newlib()


def _build_and_run(target: str, model_dir, build, **variables: str) -> tuple[str, int]:
    make("cortex-m", "all", TARGET=target, MODEL_DIR=str(model_dir), BUILD=str(build), **variables)
    done = run(
        [
            "qemu-system-arm",
            "-M",
            TARGETS[target],
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting",
            "-kernel",
            str(build / "app.elf"),
        ],
        timeout=120.0,
    )
    return done.stdout, done.returncode


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("case", sorted(SYNTHETIC))
def test_cortex_m_outputs_equal_reference_on_every_layout(target, case, tmp_path):
    _tools()
    kind, b, S, zeros, layout = SYNTHETIC[case]
    want = write_model_dir(tmp_path / "model", synthetic(kind, b, S, zeros, layout, seed=b + S), ROWS, seed=S)
    stdout, code = _build_and_run(target, tmp_path / "model", tmp_path / "build")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    assert f"PASS: {ROWS} of {ROWS}" in stdout
    assert "mode ensemble" in stdout.splitlines()  # no exact section: the ensemble is the fallback


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize(("d", "b", "S"), [(3, 62, 1), (7, 62, 3), (8, 64, 1), (33, 30, 2)])
def test_cortex_m_feature_map_and_few_samples_at_every_input_count(target, d, b, S, tmp_path):
    """The feature-map kernels' edges: d < 4 and d > 32 (the M0's C fallback), odd d and d mod 4 ≠ 0 (the
    M0 assembly's one-input tail), odd F = b/2 (the M4's unpaired last phase), and S = 1 or odd S (the
    single-sample dense4 paths)."""
    _tools()
    from direct_edge.export.packed import synthetic_blob

    blob = synthetic_blob("rff", d, b, S, zeros=0.0, seed=d + b + S, layout="dense4", exact=False)
    want = write_model_dir(tmp_path / "model", blob, ROWS, seed=d)
    stdout, code = _build_and_run(target, tmp_path / "model", tmp_path / "build")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    assert f"PASS: {ROWS} of {ROWS}" in stdout


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize(("layout", "b"), [("bitmap4", 56), ("bitmap4", 64), ("gap4", 600), ("grouped", 600)])
def test_cortex_m_sparse_kernels_at_their_edges(target, layout, b, tmp_path):
    """The sparse kernels' edge rows (tests/runtime/conftest.py sparse_edge_levels, S = 11): the M0's
    assembly and the M4's RBIT/CLZ bitmap words (3 tail bytes at b = 56, whole words at 64) and gap4 and
    grouped with gaps past 255."""
    _tools()
    from direct_edge.export.packed import synthetic_blob
    from tests.runtime.conftest import sparse_edge_levels

    levels = sparse_edge_levels(b, seed=b)
    blob = synthetic_blob("rff", 5, b, len(levels), seed=b, layout=layout, exact=False, levels=levels)
    want = write_model_dir(tmp_path / "model", blob, ROWS, seed=b)
    stdout, code = _build_and_run(target, tmp_path / "model", tmp_path / "build")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    assert f"PASS: {ROWS} of {ROWS}" in stdout


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_cortex_m_applies_feature_gains_bit_exactly(target, tmp_path):
    """A fitted model on per-feature grids (IS §3.4): the M0's assembly and the M4's DSP kernel read
    the gained features."""
    _tools()
    from direct_edge.export.packed import pack
    from tests.export.conftest import gained_regressor

    model, _ = gained_regressor(n_features=64)
    want = write_model_dir(tmp_path / "model", pack(model, n_samples=8, layout="dense4"), ROWS, seed=3)
    stdout, code = _build_and_run(target, tmp_path / "model", tmp_path / "build")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    assert f"PASS: {ROWS} of {ROWS}" in stdout


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_cortex_m_trained_model_is_bit_exact_and_within_budget(target, trained_header, tmp_path):
    _tools()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    want = write_vectors(model_dir, ROWS, seed=7)
    stdout, code = _build_and_run(target, model_dir, tmp_path / "build")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    # direct-export's default blob carries the exact moments: the example answers with them, and they
    # are not the ensemble's numbers (so the comparison above tells the two calls apart)
    assert "mode exact" in stdout.splitlines()
    blob = parse(vectors.read_blob_bytes(model_dir / "model.h"))
    q = vectors.test_inputs(blob.n_inputs, ROWS, 7)
    assert not np.array_equal(reference.predict(blob, q)[0], reference.predict_exact(blob, q)[0])
    flash, ram = elf_size("arm-none-eabi-size", tmp_path / "build" / "app.elf")
    assert flash <= FLASH_BUDGET[target], f"{target}: {flash} bytes of flash"
    assert ram <= STATIC_RAM_BUDGET, f"{target}: {ram} bytes of static RAM"


def test_cortex_m_example_exits_nonzero_when_outputs_differ(tmp_path):
    """The device's own check is real: vectors for another seed's samples make it fail (exit 1)."""
    _tools()
    blob = synthetic("rff", 64, 8, 0.5, "dense4", seed=1)
    write_model_dir(tmp_path / "model", blob, 8)
    other = write_model_dir(tmp_path / "other", synthetic("rff", 64, 8, 0.5, "dense4", seed=2), 8)
    assert other
    header = (tmp_path / "model" / "model.h").read_text()
    (tmp_path / "other" / "model.h").write_text(header)  # same size and d, different expected outputs
    stdout, code = _build_and_run("m4", tmp_path / "other", tmp_path / "build")
    assert code == 1 and "FAIL" in stdout


def _rows(model_dir, target: str) -> list[str]:
    """rows.csv (columns in another order than the model's) through make_rows.py into rows.h; the lines
    the example must print for them, from make_rows.py --print (the numpy reference)."""
    names = ["s6", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5"]
    rng = np.random.default_rng(3)
    values = rng.uniform(-0.12, 0.12, (12, len(names)))
    values[0] = 0.0
    values[1, 0] = 1.0  # beyond the training range: saturates
    csv_text = ",".join(names) + "\n" + "\n".join(",".join(f"{v:.6g}" for v in row) for row in values)
    return make_rows(model_dir, csv_text + "\n", "float" if target == "m4" else "fixed")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_cortex_m_predicts_your_rows_with_the_generated_helpers(target, trained_header, tmp_path):
    """Your CSV rows via make_rows.py: quantised on the device by model.h's helpers (fixed point on the
    M0, float on the M4F), outputs in target units by model_output_fixed, all printed as integers and
    equal to the numpy reference bit for bit."""
    _tools()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    write_vectors(model_dir, 8, seed=1)
    want = _rows(model_dir, target)
    stdout, code = _build_and_run(target, model_dir, tmp_path / "build")
    assert code == 0, stdout[-2000:]
    got = [line.strip() for line in stdout.splitlines() if line.startswith("row ")]
    assert got == want and len(got) == 12
    assert not re.search(
        r'printf\("[^"]*%[-+ #0-9.]*[fgeFGE]', (EXAMPLES / "cortex-m" / "main.c").read_text()
    )


def test_rows_h_refuses_to_build_beside_a_model_h_it_was_not_made_for(trained_header, raw_header, tmp_path):
    """make_rows.py writes the check into rows.h itself, so every example that includes model.h and then
    rows.h refuses a rows.h made for another model, in one #error line saying what to run."""
    require_tool("gcc")
    raw_rows = make_rows(_model_dir(tmp_path / "raw", raw_header), "x,size,colour\n0.25,2.5,red\n", "fixed")
    plain_csv = ",".join(["0.01"] * 10) + "\n"
    plain_rows = make_rows(_model_dir(tmp_path / "plain", trained_header), plain_csv, "fixed")
    assert len(raw_rows) == len(plain_rows) == 1
    source = tmp_path / "probe.c"
    source.write_text(
        '#include "direct.h"\n#include "model.h"\n#include "rows.h"\nint main(void) { return 0; }\n'
    )

    def build(model_dir, rows_dir):
        probe = tmp_path / f"{model_dir.name}-with-rows-of-{rows_dir.name}"
        probe.mkdir()
        shutil.copy(model_dir / "model.h", probe / "model.h")
        shutil.copy(rows_dir / "rows.h", probe / "rows.h")
        include = ["-I", str(ROOT / "runtime" / "c"), "-I", str(probe)]
        return run(["gcc", "-std=c99", "-fsyntax-only", *include, str(source)])

    for own in (tmp_path / "raw", tmp_path / "plain"):
        done = build(own, own)
        assert done.returncode == 0, done.stderr
    for model_dir, rows_dir, message in (
        (
            tmp_path / "plain",
            tmp_path / "raw",
            "rows.h holds raw columns but model.h has no raw-column helpers",
        ),
        (tmp_path / "raw", tmp_path / "plain", "rows.h was made for another model.h: run make_rows.py"),
    ):
        done = build(model_dir, rows_dir)
        assert done.returncode != 0 and message in done.stderr, done.stderr


def _model_dir(path, header):
    path.mkdir()
    shutil.copy(header, path / "model.h")
    return path


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_cortex_m_predicts_raw_rows_with_the_raw_column_helpers(target, raw_header, tmp_path):
    """Raw rows of a model with a categorical and a mean-indicator column (header in another order, a
    level as text, an empty and an NA cell, a value beyond the range) through make_rows.py: the M4F
    quantises them with model_quantize_raw_f64, the M0 with model_quantize_raw_fixed; the printed q and
    outputs equal the host's preparation, IS §2 and the exact moments bit for bit."""
    _tools()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(raw_header, model_dir / "model.h")
    write_vectors(model_dir, 8, seed=1)
    path = "float" if target == "m4" else "fixed"
    want = make_rows(
        model_dir,
        "x,size,colour\n0.25,2.5,red\n-1.5,,blue\n0.0,NA,green\n9.5,4.75, red \n0.125,1e0,green\n",
        path,
    )
    stdout, code = _build_and_run(target, model_dir, tmp_path / "build")
    assert code == 0, stdout[-2000:]
    got = [line.strip() for line in stdout.splitlines() if line.startswith("row ")]
    assert got == want and len(got) == 5
    # the host's own answer for the same raw rows: direct-run on the blob inside model.h
    from direct_edge.runtime import schema as input_schema

    blob = parse(vectors.read_blob_bytes(model_dir / "model.h"))
    columns = [
        ["2.5", "", "NA", "4.75", "1e0"],
        ["red", "blue", "green", " red ", "green"],
        ["0.25", "-1.5", "0.0", "9.5", "0.125"],
    ]
    order = [blob.schema.column_names.index(n) for n in ("size", "colour", "x")]
    raw = [None] * 3
    for given, k in enumerate(order):
        raw[k] = columns[given]
    q = reference.quantize_inputs(blob, input_schema.prepare_columns(blob.schema, raw))
    mean_q = reference.predict_exact(blob, q)[0]
    if path == "float":  # f64 raw helper: the host's preparation and IS §2 exactly
        assert [int(line.split()[-4]) for line in got] == mean_q.tolist()


@pytest.mark.parametrize(
    "rows, message",
    [
        ("x,size,colour\n0.25,2.5,purple\n", "the level 'purple' in column colour, not seen in training"),
        ("x,size,colour\n,2.5,red\n", "has a missing value in column x"),
        ("x,size,shade\n0.25,2.5,red\n", "the model's columns are colour, size, x"),
        ("0.25,2.5\n", "row 1 has 2 values, the model takes 3"),
    ],
)
def test_make_rows_refuses_raw_rows_the_host_refuses_in_one_line(raw_header, tmp_path, rows, message):
    (tmp_path / "rows.csv").write_text(rows)
    done = run(
        [
            sys.executable,
            str(EXAMPLES / "make_rows.py"),
            str(raw_header),
            str(tmp_path / "rows.csv"),
            "-o",
            str(tmp_path / "rows.h"),
        ]
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "rows.h").exists()


def test_cortex_m_builds_with_a_model_h_exported_elsewhere(trained_header, tmp_path):
    """A model.h (and its test vectors) copied into the example folder without the model.direct it came
    from: make builds and runs with them instead of asking for the model file."""
    from .conftest import ROOT

    _tools()
    work = tmp_path / "cortex-m"
    shutil.copytree(EXAMPLES / "cortex-m", work, ignore=shutil.ignore_patterns("build", "model.*", "*.h"))
    shutil.copy(trained_header, work / "model.h")
    write_vectors(work, 4, seed=2)
    done = run(["make", "-s", "-C", str(work), "TARGET=m0", "all", f"RUNTIME={ROOT / 'runtime' / 'c'}"])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize(("d", "b", "layout"), [(7, 62, "dense4"), (3, 16, "gap4"), (9, 64, "bitmap4")])
def test_cortex_m_rotates_features_bit_exactly(target, d, b, layout, tmp_path):
    """IS §3.5 on the devices (make ROTATION=1): the M0's assembly and the M4's DSP feature loops write the
    rff features into the scratch's second half (MODEL_SCRATCH_BYTES = 4·b), then the rotation, gains and
    floor; d < 4, odd F = 31 and d > 4 on the feature loops' paths."""
    _tools()
    from direct_edge.export.packed import synthetic_blob

    blob = synthetic_blob(
        "rff", d, b, 5, seed=d + b, layout=layout, exact=False, rotation=True, gains=b == 64, floor=True
    )
    want = write_model_dir(tmp_path / "model", blob, ROWS, seed=d)
    stdout, code = _build_and_run(target, tmp_path / "model", tmp_path / "build", ROTATION="1")
    assert result_lines(stdout) == want
    assert code == 0, stdout[-2000:]
    assert f"PASS: {ROWS} of {ROWS}" in stdout
    # the example's default build (DIRECT_ROTATION 0) stops at compile time and says why (model.h's #error)
    args = ["make", "-s", "-C", str(EXAMPLES / "cortex-m"), "all", f"TARGET={target}"]
    args += [f"MODEL_DIR={tmp_path / 'model'}", f"BUILD={tmp_path / 'build-default'}"]
    done = run(args, timeout=300.0)
    assert done.returncode != 0, done.stdout
    assert "needs the C library built with DIRECT_ROTATION 1" in done.stderr, done.stderr[-2000:]
