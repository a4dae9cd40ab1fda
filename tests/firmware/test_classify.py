"""firmware_examples/classify: a DIRECT classifier on a Cortex-M0 (QEMU microbit) and an ATmega2560
(simavr) that abstains where the mutual information is above a threshold chosen on validation rows;
every printed output equal to runtime/classify.py's (IS §10), bit for bit."""

from __future__ import annotations

import importlib.util
import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from direct_edge.runtime import classify, reference
from direct_edge.runtime.blob import parse
from direct_edge.trainer.classifier import DirectClassifier
from direct_edge.trainer.model_file import save_model

from .conftest import EXAMPLES, cli, make, require_newlib, require_tool, run

pytestmark = pytest.mark.firmware
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DATA = {
    "breast_cancer": (load_breast_cancer, dict(features="linear", grid_scale=0.4, prior_scale=1.0)),
    "iris": (
        load_iris,
        dict(features="rff", n_features=32, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0),
    ),
}


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_classify_vectors", EXAMPLES / "classify" / "make_classify_vectors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=sorted(DATA))
def model_dir(request, tmp_path_factory):
    """model.h (direct-export) and classify_vectors.h (the example's script) for a model trained on
    half of a data set, the threshold chosen on a quarter, the rest the test rows; with the expected
    printed lines."""
    data, params = DATA[request.param]
    X, y = data(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    train, val, test = np.array_split(perm, [len(y) // 2, 3 * len(y) // 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DirectClassifier(n_samples=16, max_iter=150, **params).fit(X[train], y[train])
    folder = tmp_path_factory.mktemp(request.param)
    save_model(folder / "m.direct", model)
    done = run(
        [cli("direct-export"), str(folder / "m.direct"), str(folder / "model.h"), "--samples", "16", "-q"]
    )
    assert done.returncode == 0, done.stderr
    for name, rows in (("val", val), ("test", test)):
        fmt = ["%.9g"] * X.shape[1] + ["%d"]
        np.savetxt(folder / f"{name}.csv", np.column_stack([X[rows], y[rows]]), delimiter=",", fmt=fmt)
    script = _script()
    args = [
        str(folder / "model.h"),
        "--validation",
        str(folder / "val.csv"),
        "--test",
        str(folder / "test.csv"),
    ]
    assert script.main([*args, "-o", str(folder / "classify_vectors.h")]) == 0
    blob = parse(script._read_blob_bytes(folder / "model.h"))
    Xv, tv = script.read_rows(folder / "val.csv", blob.meta["classes"], blob.n_inputs)
    v = classify.classify(blob, reference.quantize_inputs(blob, Xv))
    threshold = script.choose_threshold(v["mutual_info"], v["label"], tv, 0.9)
    assert np.mean(v["mutual_info"] <= threshold) >= 0.9
    Xt, tt = script.read_rows(folder / "test.csv", blob.meta["classes"], blob.n_inputs)
    out = classify.classify(blob, reference.quantize_inputs(blob, Xt))
    lines = []
    for i in range(len(Xt)):
        decision = -1 if out["mutual_info"][i] > threshold else out["label"][i]
        cells = [i, decision, out["label"][i], *out["proba"][i], out["entropy"][i], out["mutual_info"][i]]
        lines.append(" ".join(str(int(c)) for c in cells))
    answered = out["mutual_info"] <= threshold
    summary = (
        f"abstained {int((~answered).sum())} of {len(Xt)}; "
        f"correct {int((out['label'][answered] == tt[answered]).sum())} of {int(answered.sum())} answered"
    )
    return folder, lines, summary, len(Xt)


def _printed(stdout: str) -> list[str]:
    text = ANSI.sub("", stdout)
    return [line.strip().removesuffix("..").removesuffix(".") for line in text.splitlines()]


@pytest.mark.parametrize("target", ["m0", "avr"])
def test_classifier_firmware_is_bit_exact_and_abstains_on_disagreement(model_dir, target, tmp_path):
    if target == "m0":
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
        require_newlib()
    else:
        require_tool("avr-gcc", "simavr")
    folder, want, summary, n = model_dir
    build = tmp_path / target
    make("classify", "all", TARGET=target, MODEL_DIR=str(folder), BUILD=str(build))
    if target == "m0":
        args = [
            "qemu-system-arm",
            "-M",
            "microbit",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
        ]
        done = run([*args, "-semihosting", "-kernel", str(build / "app.elf")], timeout=300.0)
    else:
        done = run(["simavr", "-m", "atmega2560", "-f", "16000000", str(build / "app.elf")], timeout=300.0)
    lines = _printed(done.stdout + done.stderr)
    assert [line for line in lines if line[:1].isdigit()] == want
    assert f"PASS: {n} of {n} rows match the reference" in lines
    assert summary in lines
    if target == "m0":
        assert done.returncode == 0, done.stdout[-2000:]
