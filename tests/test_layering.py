"""The parts import one way (trainer -> model file <- export -> runtime) and the light commands stay
light: what each entry point loads, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sklearn", "scipy", "pandas", "matplotlib", "dask", "onnx", "onnxruntime", "direct_edge.trainer")


def modules_loaded(code: str) -> set[str]:
    """Top-level and ``direct_edge.*`` module names loaded by ``code`` in a new interpreter."""
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def help_of(module: str) -> str:
    """Run a command's ``--help`` in process, keeping the interpreter alive for the module list."""
    return f"from {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"


@pytest.mark.parametrize(
    "entry, forbidden",
    [
        ("import direct_edge", HEAVY + ("numpy", "click")),
        ("import direct_edge.runtime", HEAVY),
        ("import direct_edge.runtime.blob, direct_edge.runtime.reference", HEAVY),
        (help_of("direct_edge.runtime.cli"), HEAVY),
        (help_of("direct_edge.export.cli"), ("sklearn", "scipy", "pandas", "direct_edge.trainer", "onnx")),
        ("import direct_edge.export.packed", ("sklearn", "scipy", "pandas", "direct_edge.trainer")),
    ],
)
def test_light_entry_points_load_nothing_heavy(entry, forbidden):
    loaded = modules_loaded(entry)
    assert not [name for name in forbidden if name in loaded]


def test_runtime_and_export_never_import_the_trainer_at_module_level():
    """The export reads model files through the trainer's loader only inside the functions that
    need it; the runtime never does."""
    loaded = modules_loaded(
        "import direct_edge.runtime.cli, direct_edge.runtime.native, direct_edge.export.cli, "
        "direct_edge.export.c_header"
    )
    assert "direct_edge.trainer" not in loaded
