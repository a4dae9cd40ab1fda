"""Runtime benchmark: bytes, exact instruction counts and batch-1 latency of the integer runtime.

    python benchmarks/runtime_benchmark.py [--quick] [--parts bytes,instructions,latency] [--out FILE.md]

Models are synthetic rff blobs (export.packed.synthetic_blob: d = 9 inputs, 4-bit levels) for b in
{64, 512, 2000}, S in {1, 8, 32} and 0 / 50 / 90 % zero levels.  Every number below comes from one run:

- bytes: the samples section in each layout against dense float32, int8 and int4 storage of the same
  levels and against the entropy of the stored levels (Σ over positions of −log2 p(level)).
- instructions: valgrind --tool=callgrind, exact and repeatable, per prediction, for direct_predict
  minus direct_features (the ensemble), per stored nonzero weight per sample, and for the same levels as
  a plain dense int8 loop (benchmarks/c/bench_predict.c, dense8_ensemble) compiled with the same flags.
- latency: batch-1 wall time per prediction (µs, best of 5 rounds) of the compiled C loop (host flags and
  portable flags), the C library through its Python binding, the numpy reference, and onnxruntime and
  LiteRT on the exports of the same blob (benchmarks/export_benchmark.py's engines).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime.blob import parse

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "runtime" / "c"
HARNESS = ROOT / "benchmarks" / "c" / "bench_predict.c"
D = 9


PORTABLE = ["-std=c99", "-O2"]  # what a microcontroller build does: no SIMD (instruction counts)
HOST = ["-std=c99", "-O3", "-march=native", "-DDIRECT_VECTORIZE"]  # what the Python binding builds


def build_harness(workdir: Path, flags: list[str] = PORTABLE, name: str = "bench_predict") -> Path:
    """Compile the harness and the runtime sources with the same flags."""
    exe = workdir / name
    sources = [str(HARNESS), *(str(p) for p in sorted(C_DIR.glob("*.c")))]
    subprocess.run(["gcc", *flags, f"-I{C_DIR}", "-o", str(exe), *sources], check=True)
    return exe


def callgrind(exe: Path, blob_path: Path, mode: str, function: str, calls: int) -> float:
    """Exact instructions per call of ``function`` (inclusive) over ``calls`` calls."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                f"--toggle-collect={function}",
                str(exe),
                str(blob_path),
                mode,
                str(calls),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    match = re.search(r"Collected : (\d+)", run.stderr)
    return int(match.group(1)) / calls


def entropy_bytes(levels: np.ndarray) -> float:
    """Information content of the stored levels under their empirical distribution, in bytes."""
    _, counts = np.unique(levels, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum() / 8)


def configs(quick: bool):
    bs = (64, 512) if quick else (64, 512, 2000)
    ss = (1, 8) if quick else (1, 8, 32)
    for b in bs:
        for S in ss:
            for zeros in (0.0, 0.5, 0.9):
                yield b, S, zeros


def bytes_table(quick: bool) -> list[str]:
    rows = [
        "| b | S | zeros | float32 | int8 | int4 | dense4 | bitmap4 | grouped | smallest (layout) "
        "| entropy | auto / entropy | auto / int4 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for b, S, zeros in configs(quick):
        sizes = {}
        for layout in ("dense4", "bitmap4", "grouped"):
            sizes[layout] = parse(
                synthetic_blob("rff", D, b, S, 4, zeros, seed=1, layout=layout)
            ).samples_nbytes
        auto = parse(synthetic_blob("rff", D, b, S, 4, zeros, seed=1, optimize="size"))  # the smallest
        ent = entropy_bytes(auto.levels)
        n = S * b
        rows.append(
            f"| {b} | {S} | {zeros:.0%} | {4 * n} | {n} | {(n + 1) // 2} | {sizes['dense4']} | "
            f"{sizes['bitmap4']} | {sizes['grouped']} | {auto.samples_nbytes} ({auto.layout_name}) | "
            f"{ent:.0f} | {auto.samples_nbytes / ent:.2f} | {auto.samples_nbytes / ((n + 1) // 2):.2f} |"
        )
    return rows


def instruction_table(quick: bool, workdir: Path) -> list[str]:
    exe = build_harness(workdir)
    rows = [
        "| b | S | zeros | layout | predict | features | ensemble | per nonzero·sample | dense int8 ensemble "
        "| dense8 / ours |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    calls = 20 if quick else 50
    for b, S, zeros in configs(quick):
        auto = synthetic_blob("rff", D, b, S, 4, zeros, seed=1)
        dense = synthetic_blob("rff", D, b, S, 4, zeros, seed=1, layout="dense4")
        path, dense_path = workdir / "auto.bin", workdir / "dense.bin"
        path.write_bytes(auto)
        dense_path.write_bytes(dense)
        blob = parse(auto)
        total = callgrind(exe, path, "predict", "direct_predict", calls)
        feats = callgrind(exe, path, "features", "direct_features", calls)
        dense8 = callgrind(exe, dense_path, "dense8", "dense8_ensemble", calls)
        nnz = int(np.count_nonzero(blob.levels))
        ensemble = total - feats
        rows.append(
            f"| {b} | {S} | {zeros:.0%} | {blob.layout_name} | {total:.0f} | {feats:.0f} | {ensemble:.0f} | "
            f"{ensemble / max(nnz, 1):.2f} | {dense8:.0f} | {dense8 / ensemble:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def latency_table(quick: bool, workdir: Path) -> list[str]:
    """Batch-1 µs per prediction, every engine measured in the same run on the same model: 0 % zeros
    (the auto layout is dense4) and 90 % zeros (gap4)."""
    from export_benchmark import engines, latency  # benchmarks/ is on sys.path when run as a script

    host, portable = build_harness(workdir, HOST, "bench_host"), build_harness(workdir, PORTABLE)
    names = None
    rows: list[str] = []
    for zeros in (0.0, 0.9):
        for b in (64, 512) if quick else (64, 512, 2000):
            for S in (1, 8) if quick else (1, 8, 32):
                data = synthetic_blob("rff", D, b, S, 4, zeros, seed=1)
                path = workdir / "lat.bin"
                path.write_bytes(data)
                loops = {}
                for label, exe in (("C loop -O3 native", host), ("C loop -O2", portable)):
                    run = subprocess.run(
                        [str(exe), str(path), "time", "20000"], capture_output=True, text=True, check=True
                    )
                    loops[label] = float(run.stdout) / 1000
                q = np.random.default_rng(0).integers(-32768, 32768, (64, D), dtype=np.int16)
                others = {k: v * 1e6 for k, v in latency(engines(data), q, 200 if quick else 1000, 5).items()}
                results = {**loops, **others}
                if names is None:
                    names = list(results)
                    rows += [
                        "| zeros | b | S | " + " | ".join(names) + " |",
                        "|---:|---:|---:|" + "---:|" * len(names),
                    ]
                cells = " | ".join(f"{results[n]:.2f}" for n in names)
                rows.append(f"| {zeros:.0%} | {b} | {S} | {cells} |")
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="b in {64, 512}, S in {1, 8}")
    parser.add_argument("--parts", default="bytes,instructions,latency")
    parser.add_argument("--out", help="also write the markdown tables here")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; instruction counts: gcc {' '.join(PORTABLE)}",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "bytes" in parts:
            lines += ["### Bytes of the samples section", "", *bytes_table(args.quick), ""]
            print("\n".join(lines), flush=True)
        if "instructions" in parts:
            if shutil.which("valgrind") is None or shutil.which("gcc") is None:
                print("instructions: skipped (needs gcc and valgrind)", file=sys.stderr)
            else:
                lines += [
                    "### Instructions per prediction (callgrind, x86-64)",
                    "",
                    *instruction_table(args.quick, workdir),
                    "",
                ]
        if "latency" in parts:
            lines += ["### Batch-1 latency", "", *latency_table(args.quick, workdir), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
