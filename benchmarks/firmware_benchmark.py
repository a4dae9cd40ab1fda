"""Instructions per prediction on Cortex-M0 and Cortex-M4 under ``qemu-system-arm -icount shift=0``.

    .venv/bin/python benchmarks/firmware_benchmark.py [--quick] [--json out.json]
    .venv/bin/python benchmarks/firmware_benchmark.py --parts classification   # the classifiers alone
    .venv/bin/python benchmarks/firmware_benchmark.py --cores M0 M4 x86 --layout dense4 bitmap4 grouped gap4 \
        --cmsis-nn '' --parts regression --json layout_costs.json  # what export/layout_cost.py is fitted on

For b in {64, 256, 1024}, S in {1, 8, 32} and 0 / 50 / 90 % zero levels, a synthetic rff model
(export/packed.py ``synthetic_blob``, d = 8 inputs, each --layout; auto: the exporter's default choice,
the fastest on Cortex-M4 no larger than dense4) is compiled into
firmware_examples/cortex-m/bench.c with the same flags as the example (gcc -O2; M0 soft-float on the
QEMU microbit, M4 with the FPU on mps2-an386) and run once. SysTick, calibrated on a loop of known length,
gives exact instruction counts (QEMU counts instructions, not cycles). Side by side in the same image:
the same model in float (cosf/sinf features, float weights) and a dense int8 fully connected loop of the
same size (S x b). Reported per stored nonzero weight per sample: (predict - features) / sum_s nnz_s.
Flash is the runtime's code (-O2) plus the blob; RAM is the scratch (2·b) plus the direct_model struct.

CMSIS-NN as a measured peer: unless --cmsis-nn is given an empty string, CMSIS-NN is compiled from
--cmsis-nn (default ../shared/peers/cmsis-nn next to this checkout; read, never copied) into the same
image with the same flags, and the same S x b layer runs through arm_fully_connected_s8 (int8 weights,
int8 input) and arm_fully_connected_s4 (the same levels packed two per byte), batch 1. Its rows are per
multiply-accumulate (S·b); "ours/s8" is this product's per-nonzero cost over CMSIS-NN s8's per MAC.

Classification (--parts classification; both parts by default): synthetic classifiers
(export/packed.py ``synthetic_classifier_blob``, rff, d = 8, 50 % zero levels, dense4) of C = 2 classes
(R = 1 logit row per sample) and C = 10 (R = 10) at b in {64, 256} and S in {1, 8, 32}, compiled into
firmware_examples/classify/bench.c (gcc -O2) for M0 and M4 as above, and for an ATmega2560 under simavr
(--cores AVR; CPU cycles by Timer1, not instructions). Per prediction: direct_classify in all, the feature
map alone, the library's dense4 row loop over the S·R rows alone ("dots", also per multiply-accumulate,
S·R·b), and the rest (softmax, entropies, mutual information: classify - features - dots). Each device
output (label, probabilities, entropies, mutual information) of 4 input rows is checked bit for bit
against runtime/classify.py; a mismatch makes the script exit 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from direct_edge.export.c_header import render
from direct_edge.export.layout_cost import level_stats
from direct_edge.export.packed import synthetic_blob, synthetic_classifier_blob
from direct_edge.runtime import classify
from direct_edge.runtime.blob import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "firmware_examples" / "cortex-m"
CLASSIFY = ROOT / "firmware_examples" / "classify"
RUNTIME = ROOT / "runtime" / "c"
TARGETS = {
    "M0": ("microbit", "m0-microbit.ld", ["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"]),
    "M4": (
        "mps2-an386",
        "m4-mps2-an386.ld",
        ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    ),
}
AVR_MCU = "atmega2560"
D = 8
CLASSIFY_ROWS = 4  # input rows per classifier image, each checked against the reference
CMSIS_DEFAULT = ROOT.parent / "shared" / "peers" / "cmsis-nn"
CMSIS_SOURCES = [
    "Source/FullyConnectedFunctions/arm_fully_connected_s8.c",
    "Source/FullyConnectedFunctions/arm_fully_connected_s4.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s4.c",
]


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
    nibbles = (levels.ravel() & 15).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, 0)
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.int64)
    packed = np.where(packed >= 128, packed - 256, packed)  # int8 bytes, low nibble first (CMSIS-NN s4)
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
        + _array("int8_t", "bench_weights_i4", packed)
        + _array("int8_t", "bench_input_i8", rng.integers(-128, 128, blob.n_features))
        + _array("int32_t", "bench_bias", rng.integers(-1000, 1000, blob.n_samples))
    )


def build(work: Path, target: str, cmsis: Path | None = None) -> Path:
    machine, lds, cpu = TARGETS[target]
    elf = work / f"bench_{target}.elf"
    peer = (
        []
        if cmsis is None
        else ["-DBENCH_CMSIS", f"-I{cmsis / 'Include'}"] + [str(cmsis / f) for f in CMSIS_SOURCES]
    )
    args = [
        "arm-none-eabi-gcc", "-std=c99", "-O2", *cpu, "-Wall", "-Wextra", "-Werror", "-ffunction-sections",
        "-fdata-sections", f"-I{RUNTIME}", f"-I{work}", str(EXAMPLE / "bench.c"), str(EXAMPLE / "startup.c"),
        str(RUNTIME / "direct.c"), str(RUNTIME / "direct_predict.c"), *peer, "--specs=nano.specs",
        "--specs=rdimon.specs",
        "-nostartfiles", "-Wl,--gc-sections", f"-L{EXAMPLE}", f"-T{lds}", "-lm", "-o", str(elf),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build failed:\n{done.stderr}")
    return elf


def qemu(elf: Path, target: str) -> str:
    """What the image prints under qemu-system-arm -icount shift=0 (semihosting)."""
    machine = TARGETS[target][0]
    done = subprocess.run(
        ["qemu-system-arm", "-M", machine, "-icount", "shift=0", "-display", "none", "-monitor", "none",
         "-serial", "none", "-semihosting", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{elf} exited with {done.returncode}: {done.stdout} {done.stderr}")
    return done.stdout


def run(elf: Path, target: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(\w+) (-?\d+)$", qemu(elf, target), re.M)}


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


def host_row(work: Path, data: bytes, blob, zeros: float) -> dict:
    """Callgrind's exact instructions per direct_predict / direct_features call of the portable -O2 host
    build (benchmarks/runtime_benchmark.py's harness), 20 calls each."""
    from runtime_benchmark import build_harness, callgrind

    exe = work / "bench_predict"
    if not exe.exists():
        build_harness(work)
    path = work / "host.bin"
    path.write_bytes(data)
    predict = callgrind(exe, path, "predict", "direct_predict", 20)
    features = callgrind(exe, path, "features", "direct_features", 20)
    row = {
        "target": "x86", "b": blob.n_features, "S": blob.n_samples, "zeros": zeros,
        "layout": blob.layout_name, "predict": round(predict), "features": round(features),
        "blob_bytes": len(data), **level_stats(blob.levels),
    }  # fmt: skip
    print(
        f"x86 b={row['b']:5d} S={row['S']:2d} zeros={zeros:.0%} {row['layout']:8s} "
        f"predict {row['predict']:9d} features {row['features']:7d}",
        flush=True,
    )
    return row


def classify_header(blob_bytes: bytes, reps: int, seed: int) -> tuple[str, np.ndarray]:
    """bench_classify.h for firmware_examples/classify/bench.c and its CLASSIFY_ROWS int16 input rows."""
    blob = parse(blob_bytes)
    x = np.random.default_rng(seed).integers(-32768, 32768, (CLASSIFY_ROWS, blob.n_inputs)).astype(np.int16)
    header = (
        render(blob_bytes, "model")
        + f"\n#define BENCH_D {blob.n_inputs}u\n#define BENCH_ROWS {CLASSIFY_ROWS}u\n"
        + f"#define BENCH_REPS {reps}u\n"
        + _array("int16_t", "bench_x", x.ravel())
    )
    return header, x


def build_classify(work: Path, target: str) -> Path:
    """firmware_examples/classify/bench.c (which includes direct_classify.c) for M0, M4 or AVR, -O2."""
    elf = work / f"classify_{target}.elf"
    sources = [str(CLASSIFY / "bench.c"), str(RUNTIME / "direct.c"), str(RUNTIME / "direct_predict.c")]
    common = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffunction-sections",
              "-fdata-sections", f"-I{RUNTIME}", f"-I{work}"]  # fmt: skip
    if target == "AVR":
        args = ["avr-gcc", *common, f"-mmcu={AVR_MCU}", "-DF_CPU=16000000UL", *sources, "-Wl,--gc-sections"]
    else:
        _, lds, cpu = TARGETS[target]
        args = [
            "arm-none-eabi-gcc", *common, *cpu, *sources, str(EXAMPLE / "startup.c"), "--specs=nano.specs",
            "--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections", f"-L{EXAMPLE}", f"-T{lds}",
        ]  # fmt: skip
    done = subprocess.run([*args, "-o", str(elf)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"build failed:\n{done.stderr}")
    return elf


def run_classify(elf: Path, target: str) -> tuple[dict[str, int], list[list[int]]]:
    """The counts bench.c prints and its "out" rows (row index first)."""
    if target == "AVR":
        done = subprocess.run(
            ["simavr", "-m", AVR_MCU, "-f", "16000000", str(elf)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).replace("\r", "")
        # simavr's UART echo ends a line with ".." or "."
        text = "\n".join(line.strip().removesuffix("..").removesuffix(".") for line in text.splitlines())
        if "model_struct" not in text:
            raise RuntimeError(f"{elf} under simavr: {text[-2000:]}")
    else:
        text = qemu(elf, target)
    counts = {k: int(v) for k, v in re.findall(r"^(\w+) (-?\d+)$", text, re.M)}
    outs = [[int(v) for v in m.split()] for m in re.findall(r"^out ([\d ]+)$", text, re.M)]
    return counts, outs


def expected_outputs(blob, x: np.ndarray) -> list[list[int]]:
    """runtime/classify.py's outputs in bench.c's "out" order: row, label, p̄, H, E[H], MI."""
    ref = classify.classify(blob, x)
    return [
        [i, int(ref["label"][i]), *(int(v) for v in ref["proba"][i]), int(ref["entropy"][i]),
         int(ref["expected_entropy"][i]), int(ref["mutual_info"][i])]
        for i in range(len(x))
    ]  # fmt: skip


def classification_rows(
    work: Path, cores: list[str], bs: list[int], Ss: list[int], classes: list[int]
) -> tuple[list[dict], bool]:
    """The classification part: one image per (core, C, b, S); (rows, every device output bit-exact)."""
    rows, exact = [], True
    for target, C, b, S in itertools.product(cores, classes, bs, Ss):
        data = synthetic_classifier_blob("rff", D, b, S, classes=C, seed=b + S + C)
        blob = parse(data)
        R = blob.n_samples // S
        macs = S * R * b
        reps = int(np.clip(2_000_000 // (CLASSIFY_ROWS * (macs + 50 * b)), 1, 50))
        header, x = classify_header(data, reps, b + S)
        (work / "bench_classify.h").write_text(header)
        unit = "cycles" if target == "AVR" else "instructions"
        try:
            elf = build_classify(work, target)
        except RuntimeError as e:  # e.g. a blob above AVR's 32 KB object limit
            why = [line.split("error: ")[-1] for line in str(e).splitlines() if "error: " in line][:1] or [
                "?"
            ]
            print(f"{target} C={C:2d} R={R:2d} b={b:5d} S={S:2d}: not built ({why[0].strip()})", flush=True)
            continue
        r, outs = run_classify(elf, target)
        same = outs == expected_outputs(blob, x)
        exact &= same
        rest = r["classify"] - r["features"] - r["dots"]
        row = {
            "target": target, "unit": unit, "classes": C, "R": R, "b": b, "S": S,
            "classify": r["classify"], "features": r["features"], "dots": r["dots"], "rest": rest,
            "dots_per_mac": r["dots"] / macs, "rest_per_sample": rest / S, "blob_bytes": len(data),
            "scratch_bytes": (2 * (b + b % 2) + 7) // 8 * 8 + 16 * C, "exact": same,
        }  # fmt: skip
        rows.append(row)
        print(
            f"{target} C={C:2d} R={R:2d} b={b:5d} S={S:2d} {unit} per prediction: classify "
            f"{row['classify']:9d} features {row['features']:7d} dots {row['dots']:9d} "
            f"({row['dots_per_mac']:5.2f}/MAC) rest {rest:7d} ({row['rest_per_sample']:6.0f}/sample) "
            f"blob {len(data)} {'bit-exact' if same else 'MISMATCH with runtime/classify.py'}",
            flush=True,
        )
    return rows, exact


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="b = 256 and S = 8 only")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument(
        "--layout",
        nargs="+",
        default=["auto"],
        help="sample layouts (MF §6), each measured on every configuration [auto: the exporter's choice]",
    )
    ap.add_argument(
        "--parts",
        nargs="+",
        choices=["regression", "classification"],
        default=["regression", "classification"],
        help="what to measure [both]: direct_predict, or direct_classify (classification)",
    )
    ap.add_argument(
        "--cores",
        nargs="+",
        choices=[*TARGETS, "x86", "AVR"],
        help="cores [regression: M0 M4; classification: M0 M4 AVR]; x86: this host's portable -O2 build "
        "under callgrind (regression, instructions only); AVR: ATmega2560 under simavr (classification, "
        "cycles); each part runs the ones it has",
    )
    ap.add_argument(
        "--b",
        type=int,
        nargs="+",
        help="feature counts (default 64 256 1024, classification 64 256; --quick 256)",
    )
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 10], help="classifier class counts [2 10]")
    ap.add_argument("--S", type=int, nargs="+", help="sample counts (default 1 8 32; --quick 8)")
    ap.add_argument("--zeros", type=float, nargs="+", default=[0.0, 0.5, 0.9], help="shares of zero levels")
    ap.add_argument(
        "--cmsis-nn",
        default=str(CMSIS_DEFAULT),
        help="CMSIS-NN source tree built as the peer ('' to leave it out) [../shared/peers/cmsis-nn]",
    )
    args = ap.parse_args(argv)
    cmsis = Path(args.cmsis_nn) if args.cmsis_nn else None
    if cmsis is not None and not (cmsis / "Include" / "arm_nnfunctions.h").is_file():
        print(f"CMSIS-NN not found at {cmsis}: peer rows left out", file=sys.stderr)
        cmsis = None
    bs, Ss = ((256,), (8,)) if args.quick else ((64, 256, 1024), (1, 8, 32))
    bs, Ss = args.b or bs, args.S or Ss
    cores = [t for t in args.cores or TARGETS if t != "AVR"] if "regression" in args.parts else []
    rows, c_rows, code, exact = [], [], {}, True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "classification" in args.parts:
            c_cores = [t for t in args.cores or [*TARGETS, "AVR"] if t != "x86"]
            c_bs = args.b or ((256,) if args.quick else (64, 256))
            c_rows, exact = classification_rows(work, c_cores, c_bs, Ss, args.classes)
        code = {t: runtime_code_bytes(t, work) for t in cores if t in TARGETS}
        for target, b, S, zeros, layout in itertools.product(cores, bs, Ss, args.zeros, args.layout):
            data = synthetic_blob("rff", D, b, S, zeros=zeros, seed=b + S, exact=False, layout=layout)
            blob = parse(data)
            if target == "x86":
                rows.append(host_row(work, data, blob, zeros))
                continue
            nnz = int(np.count_nonzero(blob.levels))
            reps = int(np.clip(2_000_000 // (b * S), 2, 200))
            float_reps = int(np.clip(reps // (16 if target == "M0" else 4), 1, 50))
            (work / "bench_model.h").write_text(bench_header(data, reps, float_reps, b))
            try:
                elf = build(work, target, cmsis)
            except RuntimeError:  # the peer's extra code and int4 copy may not fit the M0's flash
                try:
                    elf = build(work, target, None)
                except RuntimeError as e:  # nor may a large layout next to the float and int8 copies
                    why = str(e).splitlines()[-2]
                    print(f"{target} b={b:5d} S={S:2d} zeros={zeros:.0%} {layout}: not built ({why})")
                    continue
            r = run(elf, target)
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
                **level_stats(blob.levels),
            }  # fmt: skip
            peer = ""
            if "cmsis_s8" in r:
                row["cmsis_s8"], row["cmsis_s4"] = r["cmsis_s8"], r["cmsis_s4"]
                row["cmsis_s8_per_mac"] = r["cmsis_s8"] / (b * S)
                row["cmsis_s4_per_mac"] = r["cmsis_s4"] / (b * S)
                row["ours_over_s8"] = row["per_nonzero"] / row["cmsis_s8_per_mac"]
                peer = (
                    f" | cmsis-nn s8/mac {row['cmsis_s8_per_mac']:5.2f} s4/mac "
                    f"{row['cmsis_s4_per_mac']:5.2f} ours/s8 {row['ours_over_s8']:5.2f}"
                )
            rows.append(row)
            print(
                f"{target} b={b:5d} S={S:2d} zeros={zeros:.0%} {row['layout']:8s} "
                f"predict {row['predict']:9d} features {row['features']:7d} "
                f"per-nnz {row['per_nonzero']:5.2f} int8/w {row['int8_per_weight']:5.2f} "
                f"feat/b {row['features'] / b:5.1f} "
                f"float {row['float']:10d} float/w {row['float_per_weight']:6.1f} "
                f"float/int {row['float_over_int']:6.1f} blob {len(data)} "
                f"flash {row['flash_bytes']} ram {row['ram_bytes']}{peer}",
                flush=True,
            )
    if args.json:
        result = {"runtime_code_bytes": code, "rows": rows, "classification": c_rows}
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
