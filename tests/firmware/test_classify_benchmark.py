"""benchmarks/firmware_benchmark.py's classification part at its smallest size (b = 64, S = 1, two and ten
classes): firmware_examples/classify/bench.c builds warning-free, its outputs equal runtime/classify.py's
bit for bit, and the counts per prediction add up and stay in a sane range."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from .conftest import ROOT, require_newlib, require_tool

pytestmark = pytest.mark.firmware


def _benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports its siblings lazily
    spec = importlib.util.spec_from_file_location(
        "firmware_benchmark", ROOT / "benchmarks" / "firmware_benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# instructions (Cortex-M) or cycles (AVR) per multiply-accumulate of the logit rows: a loose sane range
PER_MAC = {"M0": (2.0, 40.0), "M4": (1.0, 30.0), "AVR": (10.0, 400.0)}


@pytest.mark.parametrize("target", ["M0", "M4", "AVR"])
def test_classification_counts_are_bit_exact_and_add_up(target, tmp_path):
    if target == "AVR":
        require_tool("avr-gcc", "simavr")
    else:
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
        require_newlib()
    rows, exact = _benchmark().classification_rows(tmp_path, [target], [64], [1], [2, 10])
    assert exact and [r["exact"] for r in rows] == [True, True]
    binary, multi = rows
    assert (binary["R"], multi["R"]) == (1, 10)
    lo, hi = PER_MAC[target]
    for r in rows:
        assert r["unit"] == ("cycles" if target == "AVR" else "instructions")
        assert 0 < r["features"] < r["classify"] and r["dots"] > 0 and r["rest"] > 0
        assert r["classify"] == r["features"] + r["dots"] + r["rest"]
        assert lo <= r["dots_per_mac"] <= hi, r
    assert multi["dots"] > 5 * binary["dots"] and multi["rest"] > binary["rest"]
