"""Instructions per prediction on Cortex-M0 and Cortex-M4 under ``qemu-system-arm -icount shift=0``.

    .venv/bin/python benchmarks/firmware_benchmark.py [--quick] [--json out.json]

For b in {64, 256, 1024}, S in {1, 8, 32} and 0 / 50 / 90 % zero levels, a synthetic rff model
(export/packed.py ``synthetic_blob``, d = 8 inputs, the exporter's smallest layout) is compiled into
firmware_examples/cortex-m/bench.c with the same flags as the example (gcc -O2; M0 soft-float on the
QEMU microbit, M4 with the FPU on mps2-an386) and run once. SysTick, calibrated on a loop of known length,
gives exact instruction counts (QEMU counts instructions, not cycles). Side by side in the same image:
the same model in float (cosf/sinf features, float weights) and a dense int8 fully connected loop of the
same size (S x b). Reported per stored nonzero weight per sample: (predict - features) / sum_s nnz_s.
Flash is the runtime's code (-O2) plus the blob; RAM is the scratch (2·b) plus the direct_model struct.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from direct_edge.export.c_header import render
from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime.blob import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "firmware_examples" / "cortex-m"
RUNTIME = ROOT / "runtime" / "c"
TARGETS = {
    "M0": ("microbit", "m0-microbit.ld", ["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"]),
    "M4": (
        "mps2-an386",
        "m4-mps2-an386.ld",
        ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    ),
}
D = 8


def _array(ctype: str, name: str, values, fmt=str) -> str:
    items = [fmt(v) for v in values]
    lines = ",\n    ".join(", ".join(items[i : i + 12]) for i in range(0, len(items), 12))
    return f"static const {ctype} {name}[] = {{\n    {lines}\n}};\n"


def _float(v: float) -> str:
    return f"{float(v)!r}f".replace("inf", "INFINITY")


def bench_header(blob_bytes: bytes, reps: int, float_reps: int, seed: int) -> str:
    blob = parse(blob_bytes)
    rng = np.random.default_rng(seed)
    x = rng.integers(-32768, 32768, blob.n_inputs)
    turn = 2 * math.pi / 2.0**32
    w_f = blob.phase_w.astype(np.float64).ravel() * turn
    c_f = blob.phase_c.astype(np.float64) * turn
    levels = blob.levels.astype(np.int64)
    return (
        render(blob_bytes, "model")
        + f"\n#define BENCH_B {blob.n_features}u\n#define BENCH_S {blob.n_samples}u\n"
        + f"#define BENCH_D {blob.n_inputs}u\n"
        + f"#define BENCH_REPS {reps}u\n#define BENCH_FLOAT_REPS {float_reps}u\n"
        + f"#define BENCH_AMP {_float((blob.n_features // 2) ** -0.5)}\n"
        + _array("int16_t", "bench_x", x)
        + _array("float", "bench_w_f", w_f, _float)
        + _array("float", "bench_c_f", c_f, _float)
        + _array("float", "bench_weights_f", (0.1 * levels).ravel(), _float)
        + _array("int8_t", "bench_weights_i8", levels.ravel())
    )


def build(work: Path, target: str) -> Path:
    machine, lds, cpu = TARGETS[target]
    elf = work / f"bench_{target}.elf"
    args = [
        "arm-none-eabi-gcc", "-std=c99", "-O2", *cpu, "-Wall", "-Wextra", "-Werror", "-ffunction-sections",
        "-fdata-sections", f"-I{RUNTIME}", f"-I{work}", str(EXAMPLE / "bench.c"), str(EXAMPLE / "startup.c"),
        str(RUNTIME / "direct.c"), str(RUNTIME / "direct_predict.c"), "--specs=nano.specs",
        "--specs=rdimon.specs",
        "-nostartfiles", "-Wl,--gc-sections", f"-L{EXAMPLE}", f"-T{lds}", "-lm", "-o", str(elf),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build failed:\n{done.stderr}")
    return elf


def run(elf: Path, target: str) -> dict[str, int]:
    machine = TARGETS[target][0]
    done = subprocess.run(
        ["qemu-system-arm", "-M", machine, "-icount", "shift=0", "-display", "none", "-monitor", "none",
         "-serial", "none", "-semihosting", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{elf} exited with {done.returncode}: {done.stdout} {done.stderr}")
    return {k: int(v) for k, v in re.findall(r"^(\w+) (-?\d+)$", done.stdout, re.M)}


def runtime_code_bytes(target: str, work: Path) -> int:
    cpu = TARGETS[target][2]
    total = 0
    for src in ("direct.c", "direct_predict.c"):
        obj = work / f"{target}_{src}.o"
        cmd = ["arm-none-eabi-gcc", "-std=c99", "-O2", *cpu, "-c", str(RUNTIME / src), "-o", str(obj)]
        subprocess.run(cmd, check=True)
        out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True)
        text, data = (int(v) for v in out.stdout.splitlines()[1].split()[:2])
        total += text + data
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="b = 256 and S = 8 only")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--layout", default="auto", help="sample layout (MF §6) [auto: the exporter's smallest]")
    args = ap.parse_args(argv)
    bs, Ss = ((256,), (8,)) if args.quick else ((64, 256, 1024), (1, 8, 32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        code = {t: runtime_code_bytes(t, work) for t in TARGETS}
        for target in TARGETS:
            for b in bs:
                for S in Ss:
                    for zeros in (0.0, 0.5, 0.9):
                        data = synthetic_blob(
                            "rff", D, b, S, zeros=zeros, seed=b + S, exact=False, layout=args.layout
                        )
                        blob = parse(data)
                        nnz = int(np.count_nonzero(blob.levels))
                        reps = int(np.clip(2_000_000 // (b * S), 2, 200))
                        float_reps = int(np.clip(reps // (16 if target == "M0" else 4), 1, 50))
                        (work / "bench_model.h").write_text(bench_header(data, reps, float_reps, b))
                        r = run(build(work, target), target)
                        weights = r["predict"] - r["features"]
                        row = {
                            "target": target, "b": b, "S": S, "zeros": zeros, "layout": blob.layout_name,
                            "nnz": nnz, "predict": r["predict"], "features": r["features"],
                            "per_nonzero": weights / max(nnz, 1), "int8_dot": r["int8_dot"],
                            "int8_per_weight": r["int8_dot"] / (b * S), "float": r["float"],
                            "float_dot": r["float_dot"], "float_per_weight": r["float_dot"] / (b * S),
                            "float_over_int": r["float"] / r["predict"], "blob_bytes": len(data),
                            "flash_bytes": code[target] + len(data),
                            "ram_bytes": 2 * (b + b % 2) + r["model_struct"],
                        }  # fmt: skip
                        rows.append(row)
                        print(
                            f"{target} b={b:5d} S={S:2d} zeros={zeros:.0%} {row['layout']:8s} "
                            f"predict {row['predict']:9d} features {row['features']:7d} "
                            f"per-nnz {row['per_nonzero']:5.2f} int8/w {row['int8_per_weight']:5.2f} "
                            f"float {row['float']:10d} float/w {row['float_per_weight']:6.1f} "
                            f"float/int {row['float_over_int']:6.1f} blob {len(data)} "
                            f"flash {row['flash_bytes']} ram {row['ram_bytes']}",
                            flush=True,
                        )
    if args.json:
        Path(args.json).write_text(json.dumps({"runtime_code_bytes": code, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
