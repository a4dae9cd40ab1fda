"""Export fidelity: how far each exported file's answer is from the trained model's, on real data.

    python benchmarks/export_fidelity.py --data-dir PATH/TO/uci [--sets autompg,yacht] [--json out.json]

Per UCI set (split 0 of the folder's fixed splits, benchmarks/datasets.py): DirectRegressor with its
default options and n_features = 256 is trained on the training rows and saved; ``direct-export`` with
its default options writes model.bin, model.h, model.onnx, ``model.onnx --integer`` and model.tflite;
each file then predicts the test rows the way its runtime is used:

- .bin: ``direct-run model.bin rows.csv`` with ``--engine reference`` (numpy) and ``--engine c``;
- .h: compiled on the host with gcc and runtime/c into a program that quantises each row with the
  header's ``model_quantize_f64``, calls ``direct_predict_exact`` (the header's default answer) and
  prints the mean and sd with the header's ``MODEL_Y_OFFSET`` and ``MODEL_MEAN_SCALE``;
- .onnx (float): ``onnxruntime.InferenceSession(path)`` with default options, x float64;
- .onnx --integer: the same session, q int16 quantised with the metadata's input_scale and input_zero
  (IS §2), outputs in target units with its mean_scale and y_offset (the S-sample ensemble);
- .tflite: ai-edge-litert's signature runner, x float32 (minus the metadata's input_origin when the
  input is named x_minus_origin).

Printed per set and file: the largest and the RMS |device mean − predict mean| and |device sd − predict
sd| over the test rows inside the training range, in units of sd(y) (the training targets' standard
deviation), where predict is ``DirectRegressor.predict(X, return_std=True)``; and the largest |device
mean − predict mean| over the test rows with an input outside the training range (counted per set),
where the integer formats saturate the input (IS §2) and the float graphs extrapolate.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import load_uci  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime" / "c"
SETS = ("autompg", "autos", "concrete", "energy", "gas", "protein", "yacht")
FILES = (
    ".bin numpy (direct-run)",
    ".bin C (direct-run --engine c)",
    ".h (gcc, host)",
    ".onnx float",
    ".onnx --integer",
    ".tflite (LiteRT)",
)

# The host program for model.h: rows of real inputs on stdin, "mean sd" per row on stdout.
HOST_C = r"""#include <stdio.h>
#include <math.h>
#include "direct.h"
#include "model.h"

static int16_t scratch[MODEL_SCRATCH_BYTES / 2u];

int main(void) {
    direct_model m;
    double x[MODEL_N_INPUTS];
    int16_t q[MODEL_N_INPUTS];
    if (direct_model_open(&m, model_blob.bytes, MODEL_SIZE) != DIRECT_OK) {
        return 2;
    }
    for (;;) {
        direct_prediction p;
        unsigned k;
        for (k = 0u; k < MODEL_N_INPUTS; ++k) {
            if (scanf("%lf", &x[k]) != 1) {
                return k == 0u ? 0 : 2;
            }
        }
        model_quantize_f64(x, q);
        if (direct_predict_exact(&m, q, scratch, sizeof scratch, &p) != DIRECT_OK) {
            return 2;
        }
        printf("%.17g %.17g\n", MODEL_Y_OFFSET + MODEL_MEAN_SCALE * (double)p.mean,
               MODEL_MEAN_SCALE * sqrt((double)p.var_y));
    }
}
"""


def tool(name: str) -> str:
    """The project's console script next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"export_fidelity: {name} not found (pip install -e '.[export]')")
    return found


def check(args: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kw)
    if done.returncode != 0:
        raise SystemExit(f"export_fidelity: {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


def direct_run(work: Path, engine: str) -> tuple[np.ndarray, np.ndarray]:
    done = check([tool("direct-run"), "model.bin", "rows.csv", "--engine", engine], cwd=work)
    table = np.loadtxt(done.stdout.splitlines()[1:], delimiter=",", ndmin=2)
    return table[:, 0], table[:, 1]


def host_header(work: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (work / "host.c").write_text(HOST_C)
    check(
        ["gcc", "-std=c99", "-O2", "-I", str(RUNTIME), "-I", str(work), "host.c", str(RUNTIME / "direct.c")]
        + [str(RUNTIME / "direct_predict.c"), "-lm", "-o", "host"],
        cwd=work,
    )
    rows = "\n".join(" ".join(repr(float(v)) for v in row) for row in X) + "\n"
    done = check([str(work / "host")], input=rows, cwd=work)
    table = np.loadtxt(done.stdout.splitlines(), ndmin=2)
    return table[:, 0], table[:, 1]


def onnx_float(path: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(path))
    mean, variance = sess.run(None, {"x": X.astype(np.float64)})[:2]
    return np.asarray(mean, np.float64), np.sqrt(np.asarray(variance, np.float64))


def onnx_integer(path: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(path))
    meta = sess.get_modelmeta().custom_metadata_map
    scale, zero = np.array(json.loads(meta["input_scale"])), np.array(json.loads(meta["input_zero"]))
    q = np.clip(np.floor(X / scale + zero + 0.5), -32768, 32767).astype(np.int16)  # IS §2
    out = dict(zip((o.name for o in sess.get_outputs()), sess.run(None, {"q": q}), strict=True))
    mean_scale, y_offset = float(meta["mean_scale"]), float(meta["y_offset"])
    mean = y_offset + mean_scale * out["mean_q"].astype(np.float64)
    return mean, mean_scale * np.sqrt(out["var_y_q"].astype(np.float64))


def tflite_metadata(data: bytes) -> dict[str, str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    return {
        (m.name.decode() if isinstance(m.name, bytes) else m.name): bytes(
            model.buffers[m.buffer].data
        ).decode()
        for m in model.metadata or []
    }


def litert(path: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    name = next(iter(runner.get_input_details()))
    if name == "x_minus_origin":
        origin = np.array(json.loads(tflite_metadata(path.read_bytes())["input_origin"]))
        X = X - origin  # in float64, before the float32 input (docs/export.md)
    out = runner(**{name: X.astype(np.float32)})
    return out["mean"].astype(np.float64), np.sqrt(out["variance"].astype(np.float64))


def differences(got, want, sd_y: float, inside: np.ndarray) -> dict[str, float]:
    """Max and RMS of |Δ mean| and |Δ sd| / sd(y) over the test rows inside the training range, and the
    largest |Δ mean| / sd(y) over the rows with an input outside it (0 when there are none)."""
    dm = np.abs(np.asarray(got[0]) - want[0]) / sd_y
    ds = np.abs(np.asarray(got[1]) - want[1]) / sd_y
    return {
        "mean_max": float(dm[inside].max()),
        "mean_rms": float(np.sqrt(np.mean(dm[inside] ** 2))),
        "sd_max": float(ds[inside].max()),
        "sd_rms": float(np.sqrt(np.mean(ds[inside] ** 2))),
        "outside_mean_max": float(dm[~inside].max(initial=0.0)),
    }


def one_set(name: str, data_dir: Path, n_features: int) -> dict:
    from direct_edge.trainer import DirectRegressor, save_model

    X, y, masks = load_uci(name, data_dir)
    train, test = ~masks[:, 0], masks[:, 0]
    started = time.perf_counter()
    model = DirectRegressor(n_features=n_features).fit(X[train], y[train])
    fit_s = time.perf_counter() - started
    Xt = X[test]
    want = model.predict(Xt, return_std=True)
    sd_y = float(np.std(y[train]))
    lo, hi = X[train].min(axis=0), X[train].max(axis=0)
    inside = ~np.any((Xt < lo) | (Xt > hi), axis=1)
    outside = int(np.sum(~inside))
    result = {"n_train": int(train.sum()), "n_test": int(test.sum()), "d": X.shape[1], "outside": outside}
    result["fit_s"] = fit_s
    with tempfile.TemporaryDirectory(prefix=f"fidelity-{name}-") as tmp:
        work = Path(tmp)
        save_model(work / "model.direct", model)
        for out, extra in (
            ("model.bin", []),
            ("model.h", []),
            ("model.onnx", []),
            ("int.onnx", ["--integer"]),
            ("model.tflite", []),
        ):
            check([tool("direct-export"), "model.direct", out, *extra], cwd=work)
        np.savetxt(work / "rows.csv", Xt, delimiter=",", fmt="%.17g")
        got = {
            FILES[0]: direct_run(work, "reference"),
            FILES[1]: direct_run(work, "c"),
            FILES[2]: host_header(work, Xt),
            FILES[3]: onnx_float(work / "model.onnx", Xt),
            FILES[4]: onnx_integer(work / "int.onnx", Xt),
            FILES[5]: litert(work / "model.tflite", Xt),
        }
        result["bytes"] = {
            f: (work / f).stat().st_size for f in ("model.bin", "model.onnx", "int.onnx", "model.tflite")
        }
    result["files"] = {f: differences(g, want, sd_y, inside) for f, g in got.items()}
    return result


def fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}" if v < 0.01 else f"{v:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True, help="the UCI folder (data.csv.gz, test_mask.csv.gz per set)"
    )
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--n-features", type=int, default=256)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if not Path(args.data_dir).is_dir():
        print(f"export_fidelity: error: --data-dir {args.data_dir} is not a folder", file=sys.stderr)
        raise SystemExit(2)
    results = {}
    print(
        "| set | n train / test (outside range) | file | mean: max | mean: RMS | sd: max | sd: RMS "
        "| mean: max outside |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.sets.split(","):
        try:
            res = one_set(name, Path(args.data_dir), args.n_features)
        except (FileNotFoundError, ValueError) as exc:
            print(f"export_fidelity: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        results[name] = res
        for i, (file, d) in enumerate(res["files"].items()):
            label = f"{res['n_train']:,} / {res['n_test']:,} ({res['outside']})" if i == 0 else ""
            cells = [fmt(d[k]) for k in ("mean_max", "mean_rms", "sd_max", "sd_rms")]
            cells.append(fmt(d["outside_mean_max"]) if res["outside"] else "—")
            print(f"| {name if i == 0 else ''} | {label} | {file} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    worst = max(d["mean_max"] for r in results.values() for d in r["files"].values())
    print(f"largest |mean difference| inside the training range, every set and file: {worst:.3g} sd(y)")
    if not math.isfinite(worst):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
