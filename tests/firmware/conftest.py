"""Shared helpers for the firmware tests: tools, a trained model, model headers and test vectors.

Each example directory is built with its own Makefile (the commands a user runs), with ``model.h``
and ``test_vectors.h`` written into a temporary MODEL_DIR: ``model.h`` is what ``direct-export model.h``
writes (export/c_header.py), ``test_vectors.h`` what firmware_examples/make_test_vectors.py writes.
The tests compare the printed integer outputs with runtime/reference.py themselves, line by line.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export.c_header import render
from direct_edge.runtime.blob import parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "firmware_examples"


def _load_vectors_module():
    spec = importlib.util.spec_from_file_location("make_test_vectors", EXAMPLES / "make_test_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vectors = _load_vectors_module()


def require_tool(*names: str) -> None:
    """Skip the test with a one-line reason unless every executable in ``names`` is on PATH."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def require_newlib() -> None:
    """Skip unless arm-none-eabi-gcc finds newlib's semihosting library (libnewlib-arm-none-eabi)."""
    require_tool("arm-none-eabi-gcc")
    done = run(["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", "-print-file-name=librdimon.a"])
    if not Path(done.stdout.strip()).is_file():
        pytest.skip("newlib for arm-none-eabi not installed (libnewlib-arm-none-eabi)")


def cli(name: str) -> str:
    """The project's console script ``name`` next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or pytest.skip(f"{name} not installed"))


def run(args: list[str], timeout: float = 120.0, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout, **kw)


def make(example: str, *targets: str, **variables: str) -> subprocess.CompletedProcess:
    """``make -C firmware_examples/EXAMPLE TARGETS VAR=value ...``; fails the test with make's output."""
    args = ["make", "-s", "-C", str(EXAMPLES / example), *targets] + [
        f"{k}={v}" for k, v in variables.items()
    ]
    done = run(args, timeout=300.0)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def write_model_dir(directory: Path, blob_bytes: bytes, rows: int, seed: int = 0) -> list[str]:
    """model.h and test_vectors.h for ``blob_bytes`` in ``directory``; returns the expected lines."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.h").write_text(render(blob_bytes, "model"), encoding="utf-8")
    return write_vectors(directory, rows, seed)


def write_vectors(directory: Path, rows: int, seed: int = 0) -> list[str]:
    """test_vectors.h from ``directory/model.h`` with the example's own script; the expected lines."""
    done = run(
        [
            sys.executable,
            str(EXAMPLES / "make_test_vectors.py"),
            str(directory / "model.h"),
            "-o",
            str(directory / "test_vectors.h"),
            "--rows",
            str(rows),
            "--seed",
            str(seed),
        ]
    )
    assert done.returncode == 0, done.stderr
    blob = parse(vectors.read_blob_bytes(directory / "model.h"))
    return vectors.expected_lines(blob, vectors.test_inputs(blob.n_inputs, rows, seed))


def result_lines(stdout: str) -> list[str]:
    """The ``row mean var_f var_y`` lines of a firmware's output (lines starting with a digit)."""
    return [line.strip() for line in stdout.splitlines() if line[:1].isdigit()]


def elf_size(tool: str, elf: Path) -> tuple[int, int]:
    """(flash, static RAM) bytes of an ELF: text + data, data + bss (Berkeley format of ``*-size``)."""
    done = run([tool, str(elf)])
    assert done.returncode == 0, done.stderr
    text, data, bss = (int(v) for v in done.stdout.splitlines()[1].split()[:3])
    return text + data, data + bss


def export_header(model: Path) -> Path:
    """``direct-export --model MODEL --samples 8 --no-ensemble-floor model.h`` beside MODEL (the documented
    path: the examples call the exact mode, which carries the floor); the .h."""
    out = model.with_name("model.h")
    args = ["--model", str(model), "--samples", "8", "--no-ensemble-floor", "-q", str(out)]
    done = run([cli("direct-export"), *args])
    assert done.returncode == 0, done.stderr
    return out


def make_rows(model_dir: Path, csv_text: str, path: str) -> list[str]:
    """``csv_text`` as MODEL_DIR/rows.csv through the documented `make_rows.py model.h rows.csv -o
    rows.h`; returns the row lines `make_rows.py --print PATH` (the numpy reference) says the example
    prints for them, PATH "fixed" or "float" as the device quantises."""
    (model_dir / "rows.csv").write_text(csv_text)
    script = str(EXAMPLES / "make_rows.py")
    header, rows = str(model_dir / "model.h"), str(model_dir / "rows.csv")
    made = run([sys.executable, script, header, rows, "-o", str(model_dir / "rows.h")])
    assert made.returncode == 0, made.stderr
    printed = run([sys.executable, script, header, rows, "--print", path])
    assert printed.returncode == 0, printed.stderr
    return printed.stdout.splitlines()


@pytest.fixture(scope="session")
def trained_header(tmp_path_factory) -> Path:
    """A directory with model.h from the documented path: direct-train (the bundled diabetes demo,
    b = 256 rff features), then direct-export model.h with S = 8."""
    work = tmp_path_factory.mktemp("trained")
    done = run(
        [cli("direct-train"), "-o", str(work / "model.direct"), "--n-features", "256", "--max-iter", "300"],
        timeout=600.0,
    )
    assert done.returncode == 0, done.stderr
    return export_header(work / "model.direct")


@pytest.fixture(scope="session")
def raw_header(tmp_path_factory) -> Path:
    """model.h of a model trained on a messy CSV (an ID and a date dropped, a text category, a numeric
    column with empty and NA cells) with --categorical and --missing mean-indicator, S = 8."""
    work = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(5)
    lines = ["id,date,colour,size,x,y"]
    for i in range(150):
        colour = ["red", "green", "blue"][i % 3]
        size, x = rng.uniform(1, 5), rng.normal()
        y = 2 * x + size + {"red": 1.0, "green": -1.0, "blue": 0.0}[colour] + 0.1 * rng.normal()
        cell = "" if i % 11 == 0 else "NA" if i % 13 == 0 else f"{size:.4f}"
        lines.append(f"{i},2024-01-{1 + i % 28:02d},{colour},{cell},{x:.4f},{y:.4f}")
    (work / "train.csv").write_text("\n".join(lines) + "\n")
    args = ["--drop", "id,date", "--categorical", "colour", "--missing", "mean-indicator", "-q"]
    fast = ["--n-features", "64", "--max-iter", "200"]
    done = run([cli("direct-train"), str(work / "train.csv"), "-o", str(work / "m.direct"), *args, *fast])
    assert done.returncode == 0, done.stderr
    return export_header(work / "m.direct")


def synthetic(kind: str, b: int, S: int, zeros: float, layout: str, seed: int = 0, d: int = 6) -> bytes:
    """A random blob from export/packed.py's synthetic_blob with no exact section: the examples fall back
    to the S-sample ensemble (direct_predict) on it."""
    from direct_edge.export.packed import synthetic_blob

    return synthetic_blob(
        kind, d if kind == "rff" else b - 1, b, S, zeros=zeros, seed=seed, layout=layout, exact=False
    )


def sample_inputs(n_inputs: int, rows: int, seed: int) -> np.ndarray:
    return vectors.test_inputs(n_inputs, rows, seed)
