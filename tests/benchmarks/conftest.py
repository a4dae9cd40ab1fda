"""Fixtures for the tests of the benchmark code in benchmarks/.

The benchmarks are scripts, not a package (they import each other as siblings), so their modules are
loaded from their files.  The trainer tests' enumeration oracles (``brute``) are shared with them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` as the module ``name`` (registered in sys.modules, as dataclasses need)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


brute = load_module("_trainer_test_oracles", ROOT / "tests" / "trainer" / "conftest.py").brute


@pytest.fixture(scope="session")
def baselines() -> ModuleType:
    """benchmarks/baselines.py."""
    return load_module("baselines", ROOT / "benchmarks" / "baselines.py")


@pytest.fixture(scope="session")
def classification_benchmark() -> ModuleType:
    """benchmarks/classification_benchmark.py."""
    return load_module("classification_benchmark", ROOT / "benchmarks" / "classification_benchmark.py")
