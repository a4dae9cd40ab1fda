"""The C runtime's resources per target, measured two ways, and the docs' table that states them.

Static: tests/firmware/resources.py compiles the runtime as the firmware example's Makefile does and
sums gcc's -fstack-usage frames over the call graph of the linked image (an upper bound).  Painted:
the firmware examples fill the free stack with a pattern around one call and print how much of it the
call changed, under QEMU (Cortex-M0, M4) and simavr (ATmega328P, ATmega2560).  The painted depth must
not exceed the static bound (else the analysis missed a path) and must come near it (else the bound
is loose), and docs/runtime.md's "Resources per target" table must state numbers at or above the
measured ones, so that code that grows makes this test fail until the table is updated.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT, make, require_newlib, require_tool, run, write_vectors
from .resources import CALLS, TARGETS, measure

pytestmark = pytest.mark.firmware

DOC = ROOT / "docs" / "runtime.md"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STACK_LINE = re.compile(r"^stack open (\d+) predict (\d+) exact (\d+)$")
# The painted depth of a call is at least this share of the static bound: the one path the run takes
# is the deepest or close to it for these calls, so a bound much above it would be a loose analysis.
TIGHTNESS = 0.75


def doc_table() -> dict[str, dict[str, int | tuple[int, int]]]:
    """docs/runtime.md's "Resources per target" table: target -> flash (open, predict, both), static RAM
    and, per call, (bound, painted), bytes."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Resources per target", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0].startswith("target") or set(cells[0]) <= {"-", ":"}:
            continue
        name = cells[0].split()[0].strip("*`").lower()

        def stack(cell: str) -> tuple[int, int]:
            bound, painted = re.fullmatch(r"(\d+) \((\d+)\)", cell).groups()
            return int(bound), int(painted)

        flash = tuple(int(v.replace(",", "")) for v in cells[2].split("/"))
        rows[name] = {
            "flash": flash,
            "ram": int(cells[3]),
            **{call: stack(cell) for call, cell in zip(CALLS, cells[4:], strict=True)},
        }
    return rows


def painted(target: str, model_dir: Path, build: Path) -> dict[str, int]:
    """Build the target's firmware example for ``model_dir`` and run it; the painted depth per call."""
    if target.startswith("cortex"):
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
        require_newlib()
        short = target[-2:]
        make("cortex-m", "all", TARGET=short, MODEL_DIR=str(model_dir), BUILD=str(build))
        machine = {"m0": "microbit", "m4": "mps2-an386"}[short]
        done = run(
            ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", "none"]
            + ["-semihosting", "-kernel", str(build / "app.elf")]
        )
        text = done.stdout
    else:
        require_tool("avr-gcc", "avr-g++", "simavr")
        make("arduino", "all", MCU=target, MODEL_DIR=str(model_dir), BUILD=str(build))
        done = run(["simavr", "-m", target, "-f", "16000000", str(build / "direct_edge.elf")], timeout=300.0)
        text = ANSI.sub("", done.stdout + done.stderr)
    lines = [line.strip().removesuffix(".") for line in text.splitlines()]
    assert "open OK" in lines or target.startswith("cortex"), text[-1000:]
    found = [m for m in map(STACK_LINE.match, lines) if m]
    assert len(found) == 1, text[-2000:]
    return dict(zip(CALLS, (int(v) for v in found[0].groups()), strict=True))


@pytest.fixture(scope="module")
def documented():
    return doc_table()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_measured_resources_are_within_the_documented_ones(target, trained_header, documented, tmp_path):
    """Static analysis bounds the painted run, and the docs' table bounds both (the trained diabetes
    demo, b = 256, S = 8 with the exact-moment section, as the firmware READMEs export it)."""
    spec = TARGETS[target]
    require_tool(f"{spec.prefix}gcc", f"{spec.prefix}objdump", f"{spec.prefix}size", f"{spec.prefix}nm")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    write_vectors(model_dir, 4, seed=3)
    live = painted(target, model_dir, tmp_path / "build")
    static = measure(spec)
    print(
        f"{target} {spec.opt()}: flash {static.flash}, static RAM {static.ram}, "
        f"stack {static.stack}, painted {live}"
    )
    doc = documented[target]
    for call in CALLS:
        assert live[call] <= static.stack[call], (
            f"{call}: painted {live[call]} B over the static {static.stack}"
        )
        assert live[call] >= TIGHTNESS * static.stack[call], (
            f"{call}: painted {live[call]} B, static {static.stack}"
        )
        bound, doc_painted = doc[call]
        assert static.stack[call] <= bound, f"{call}: {static.stack[call]} B of stack, docs say {bound}"
        assert doc_painted <= bound
    flash = (static.flash["open"], static.flash["predict"], static.flash["all"])
    assert all(m <= d for m, d in zip(flash, doc["flash"], strict=True)), (
        f"flash {flash}, docs {doc['flash']}"
    )
    assert static.ram["all"] <= doc["ram"], f"static RAM {static.ram['all']}, docs {doc['ram']}"


def test_the_table_covers_every_target(documented):
    assert set(TARGETS) <= set(documented)


def test_avr_keeps_the_status_names_out_of_ram():
    """The 13 status names stay in flash on AVR: the runtime's only static RAM is direct_status_name's
    9-byte copy (an array of string pointers took 114 bytes of .data)."""
    require_tool("avr-gcc", "avr-objdump", "avr-size", "avr-nm")
    assert measure(TARGETS["atmega328p"]).ram["all"] == 9
