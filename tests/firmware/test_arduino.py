"""firmware_examples/arduino: the sketch built with avr-gcc for an ATmega328P (Arduino Uno: 32 KB flash,
2 KB RAM) and run in simavr; outputs bit-exact with runtime/reference.py, footprint within the Uno's."""

from __future__ import annotations

import re
import shutil

import pytest

from .conftest import elf_size, make, require_tool, run, synthetic, write_model_dir, write_vectors

pytestmark = pytest.mark.firmware

# Uno: 32 KB flash less the 0.5 KB optiboot bootloader; static RAM (.data + .bss) at most half of the
# 2 KB, the rest for the stack (the runtime's deepest call uses at most 216 bytes, docs/runtime.md).
FLASH_BUDGET = 32 * 1024 - 512
STATIC_RAM_BUDGET = 1024
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
