"""firmware_examples/arduino: the sketch built with avr-gcc for an ATmega328P (Arduino Uno: 32 KB flash,
2 KB RAM) and run in simavr; outputs bit-exact with runtime/reference.py, footprint within the Uno's."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest

from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import (
    EXAMPLES,
    elf_size,
    make,
    make_rows,
    require_tool,
    run,
    synthetic,
    vectors,
    write_model_dir,
    write_vectors,
)

pytestmark = pytest.mark.firmware

# Uno: 32 KB flash less the 0.5 KB optiboot bootloader; static RAM (.data + .bss) at most half of the
# 2 KB, the rest for the stack (the runtime's deepest call uses at most 216 bytes, docs/runtime.md).
FLASH_BUDGET = 32 * 1024 - 512
STATIC_RAM_BUDGET = 1024
MEGA_FLASH_BUDGET = 256 * 1024 - 8 * 1024  # ATmega2560 (Arduino Mega): less its 8 KB bootloader,
MEGA_STATIC_RAM_BUDGET = 4096  # and half of its 8 KB RAM
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run_sim(model_dir, build, mcu: str = "atmega328p") -> list[str]:
    require_tool("avr-gcc", "avr-g++", "simavr")
    make("arduino", "all", MCU=mcu, MODEL_DIR=str(model_dir), BUILD=str(build))
    elf = str(build / "direct_edge.elf")
    done = run(["simavr", "-m", mcu, "-f", "16000000", elf], timeout=300.0)
    # simavr prints each line USART0 sends on stderr, coloured and ending in ".".
    text = ANSI.sub("", done.stdout + done.stderr)
    return [line.strip().removesuffix(".") for line in text.splitlines()]


def test_avr_b256_s8_trained_model_fits_an_uno_and_is_bit_exact(trained_header, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    want = write_vectors(model_dir, 40, seed=11)
    lines = _run_sim(model_dir, tmp_path / "build")
    assert [line for line in lines if line[:1].isdigit()] == want
    assert "PASS: 40 of 40 rows match the reference" in lines
    assert "mode exact" in lines  # the exported blob carries the exact moments: direct_predict_exact
    flash, ram = elf_size("avr-size", tmp_path / "build" / "direct_edge.elf")
    assert flash <= FLASH_BUDGET, f"{flash} bytes of flash"
    assert ram <= STATIC_RAM_BUDGET, f"{ram} bytes of static RAM"


@pytest.mark.parametrize(
    "case",
    [
        ("rff", 128, 8, 0.5, "bitmap4"),
        ("rff", 256, 8, 0.9, "gap4"),
        ("rff", 128, 16, 0.7, "grouped"),
        ("linear", 17, 32, 0.2, "dense4"),
    ],
    ids=lambda c: f"{c[0]}-b{c[1]}-S{c[2]}-{c[4]}",
)
def test_avr_every_layout_is_bit_exact(case, tmp_path):
    kind, b, S, zeros, layout = case
    want = write_model_dir(tmp_path / "model", synthetic(kind, b, S, zeros, layout, seed=S, d=5), 24, seed=b)
    lines = _run_sim(tmp_path / "model", tmp_path / "build")
    assert [line for line in lines if line[:1].isdigit()] == want
    assert "PASS: 24 of 24 rows match the reference" in lines
    assert "mode ensemble" in lines  # no exact section: the ensemble is the fallback


def test_avr_applies_feature_gains_read_from_program_memory(tmp_path):
    """IS §3.4 with the blob in flash: the gains are read with pgm_read_word like every other array."""
    from direct_edge.export.packed import synthetic_blob

    blob = synthetic_blob("rff", 5, 64, 8, zeros=0.5, seed=9, layout="gap4", exact=False, gains=True)
    want = write_model_dir(tmp_path / "model", blob, 24, seed=2)
    lines = _run_sim(tmp_path / "model", tmp_path / "build")
    assert [line for line in lines if line[:1].isdigit()] == want
    assert "PASS: 24 of 24 rows match the reference" in lines
    assert "mode ensemble" in lines  # no exact section: the ensemble is the fallback


def test_atmega2560_runs_a_blob_at_avr_gccs_array_limit(tmp_path):
    """The largest model an AVR runs is one array of at most 32,767 bytes (avr-gcc's object limit; the
    runtime reads the blob as one array with 16-bit flash addresses): a 32,544-byte blob (b = 1024,
    S = 34) on an ATmega2560 in simavr, bit-exact, with "open OK" from the flash-kept status names."""
    from direct_edge.export.packed import synthetic_blob

    blob = synthetic_blob("rff", 6, 1024, 34, zeros=0.0, seed=4, layout="dense4", exact=False)
    assert len(blob) == 32544
    want = write_model_dir(tmp_path / "model", blob, 3, seed=5)
    lines = _run_sim(tmp_path / "model", tmp_path / "build", mcu="atmega2560")
    assert "open OK" in lines
    assert [line for line in lines if line[:1].isdigit()] == want
    assert "PASS: 3 of 3 rows match the reference" in lines


def _make_rows_module():
    spec = importlib.util.spec_from_file_location("make_rows", EXAMPLES / "make_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _host_lines(blob, q: np.ndarray) -> list[str]:
    """The row lines from the host: q (the host's int16 inputs for the rows), the numpy reference's
    exact moments where the blob carries them (else its S-sample ensemble), and model_output_fixed's
    integer formula at 2 decimals."""
    mean_q, _, var_y = (reference.predict_exact if blob.has_exact else reference.predict)(blob, q)
    out = _make_rows_module().output_fixed
    lines = []
    for i in range(len(q)):
        mean, sd = out(blob, int(mean_q[i]), int(var_y[i]), 2)
        qs = " ".join(str(int(v)) for v in q[i])
        lines.append(f"row {i} {qs} {int(mean_q[i])} {int(var_y[i])} {mean} {sd}")
    return lines


def test_avr_predicts_your_rows_with_the_fixed_point_helper(trained_header, tmp_path):
    """Your CSV rows (columns in another order than the model's, one beyond the training range) via
    make_rows.py, kept in flash: model_quantize_fixed, direct_predict_exact, model_output_fixed, printed
    as integers; every line equals the host's (IS §2 and the exact moments of the numpy reference on the
    same rows) bit for bit. On an ATmega2560: the b = 256 model with the helpers is about 2 KB more than
    an Uno's flash (the raw-rows test below runs a b = 64 model on the ATmega328P)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    write_vectors(model_dir, 4, seed=1)
    names = ["s6", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5"]
    rng = np.random.default_rng(3)
    # multiples of 2^-10: x * 2^FRAC_BITS is exact, so the device sees the very values the host does
    values = rng.integers(-123, 124, (10, len(names))) / 1024.0
    values[0] = 0.0
    values[1, 0] = 1.0  # beyond the training range: saturates
    csv_text = ",".join(names) + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in values)
    want = make_rows(model_dir, csv_text + "\n", "fixed")
    blob = parse(vectors.read_blob_bytes(model_dir / "model.h"))
    order = [names.index(n) for n in ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")]
    assert want == _host_lines(blob, reference.quantize_inputs(blob, values[:, order]))
    lines = _run_sim(model_dir, tmp_path / "build", mcu="atmega2560")
    assert "mode exact" in lines and "PASS: 4 of 4 rows match the reference" in lines
    got = [line for line in lines if line.startswith("row ")]
    assert got == want and len(got) == 10
    flash, ram = elf_size("avr-size", tmp_path / "build" / "direct_edge.elf")
    assert flash <= MEGA_FLASH_BUDGET, f"{flash} bytes of flash"
    assert ram <= MEGA_STATIC_RAM_BUDGET, f"{ram} bytes of static RAM"


@pytest.mark.parametrize("moments", ["exact", "ensemble"])
def test_avr_predicts_raw_rows_with_model_quantize_raw_fixed(moments, raw_header, tmp_path):
    """Raw rows of a model with a categorical and a mean-indicator column (header in another order, a
    level as text, an empty and an NA cell, a value beyond the range) via make_rows.py: the ATmega328P
    prepares them with model_quantize_raw_fixed; the printed inputs and outputs equal the host's
    preparation (runtime/schema.py), IS §2 and the numpy reference bit for bit: its exact moments, or,
    for the same model exported with --no-exact-moments, its S-sample ensemble (direct_predict)."""
    from direct_edge.runtime import schema as input_schema

    from .conftest import cli

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    if moments == "exact":
        shutil.copy(raw_header, model_dir / "model.h")
    else:
        model = str(raw_header.parent / "m.direct")
        # the sketch is built without the ensemble floor (DIRECT_FLOOR=0, its Makefile): leave it out
        args = [cli("direct-export"), "--model", model, "--samples", "8", "--no-exact-moments"]
        args += ["--no-ensemble-floor", "-q"]
        done = run([*args, str(model_dir / "model.h")])
        assert done.returncode == 0, done.stderr
    write_vectors(model_dir, 4, seed=1)
    want = make_rows(
        model_dir,
        "x,size,colour\n0.25,2.5,red\n-1.5,,blue\n0.0,NA,green\n9.5,4.75, red \n0.125,1e0,green\n",
        "fixed",
    )
    blob = parse(vectors.read_blob_bytes(model_dir / "model.h"))
    given = {
        "size": ["2.5", "", "NA", "4.75", "1e0"],
        "colour": ["red", "blue", "green", " red ", "green"],
        "x": ["0.25", "-1.5", "0.0", "9.5", "0.125"],
    }
    raw = [given[name] for name in blob.schema.column_names]
    host_q = reference.quantize_inputs(blob, input_schema.prepare_columns(blob.schema, raw))
    assert blob.has_exact == (moments == "exact")
    assert want == _host_lines(blob, host_q)
    lines = _run_sim(model_dir, tmp_path / "build")
    assert f"mode {moments}" in lines and "PASS: 4 of 4 rows match the reference" in lines
    got = [line for line in lines if line.startswith("row ")]
    assert got == want and len(got) == 5
    flash, ram = elf_size("avr-size", tmp_path / "build" / "direct_edge.elf")
    assert flash <= FLASH_BUDGET, f"{flash} bytes of flash"
    assert ram <= STATIC_RAM_BUDGET, f"{ram} bytes of static RAM"
