"""Same data, options and seed give byte-identical artefacts (docs/model-file.md §7).

``direct-train`` then ``direct-export`` to every format run in two fresh interpreters, each in its
own working directory with a relative data path and a different hash seed: the model file, the
packed blob, the C header and the ONNX and TFLite files must be equal byte for byte, and none may
hold the absolute path of the directory it was made in.  The ONNX and TFLite files are compared
when their packages are installed (the ``export`` extra, as in CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

TRAIN = [
    "data.csv",
    "--target",
    "target",
    "-o",
    "model.direct",
    "--n-features",
    "16",
    "--max-iter",
    "50",
    "-q",
]
OUTPUTS = {
    "model.bin": [],
    "model.h": [],
    "float.onnx": ("onnx", "onnxruntime"),
    "integer.onnx": ("onnx", "onnxruntime"),
    "model.tflite": ("ai_edge_litert",),
}

# Run in a child: train, then export each output (in process, through the commands' click mains).
CHILD = """
import json, sys
from direct_edge.trainer.cli import main as train
from direct_edge.export.cli import main as export
outputs = json.loads(sys.argv[1])
train.main(sys.argv[2:], standalone_mode=False)
for name in outputs:
    extra = ["--integer"] if name == "integer.onnx" else []
    export.main(["model.direct", name, "-q", *extra], standalone_mode=False)
"""


def available(packages) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


def make_artefacts(folder, outputs: list[str], hash_seed: str) -> dict[str, bytes]:
    """Write the diabetes data to ``folder``/data.csv, train and export there; {name: bytes}."""
    folder.mkdir()
    X, y = load_diabetes(return_X_y=True)
    names = ",".join([f"x{i}" for i in range(X.shape[1])] + ["target"])
    np.savetxt(folder / "data.csv", np.column_stack([X, y]), delimiter=",", header=names, comments="")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(outputs), *TRAIN],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: (folder / name).read_bytes() for name in ["model.direct", *outputs]}


@pytest.mark.slow
def test_same_data_and_seed_give_byte_identical_model_and_exports(tmp_path):
    outputs = [name for name, packages in OUTPUTS.items() if available(packages)]
    first = make_artefacts(tmp_path / "first", outputs, "1")
    second = make_artefacts(tmp_path / "second", outputs, "2")
    assert sorted(first) == sorted(["model.direct", *outputs])
    for name in first:
        assert first[name] == second[name], f"{name} differs between two identical runs"
        for folder in (tmp_path / "first", tmp_path / "second"):
            assert str(folder).encode() not in first[name], f"{name} holds the absolute path {folder}"
    assert b"fit_time" not in first["model.direct"] and b"wall_time" not in first["model.direct"]
    assert b'"data": "data.csv"' in first["model.direct"]
