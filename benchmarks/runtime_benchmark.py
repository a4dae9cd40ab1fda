"""Runtime benchmark: bytes, exact instruction counts and batch-1 latency of the integer runtime.

    python benchmarks/runtime_benchmark.py [--quick] [--parts bytes,...,peers,aarch64] [--out F.md]

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
- peers (only when asked for): batch-1 and batch-64 µs per row of the C library from the C harness
  (portable -O2 and the SIMD build, -O3 -march=native -DDIRECT_VECTORIZE) against LiteRT int8/int16 and
  onnxruntime through their Python APIs, dense4 blobs at 0 % and 50 % zeros, with each peer's call
  overhead (the same call on the smallest model) measured, stated and subtracted in the ratios.
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
import time
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


SIMD = ["-std=c99", "-O3", "-march=native", "-DDIRECT_VECTORIZE"]  # DIRECT_KERNEL_SIMD where AVX2/NEON exist


def best_seconds(fn, rounds: int = 7, min_time: float = 0.03) -> float:
    """Best-of-rounds seconds per call of ``fn()``; each round repeats the call for at least min_time."""
    fn()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        calls += 1
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def peer_calls(data: bytes, batch: int) -> dict[str, object]:
    """Zero-argument calls through each peer's Python API for one batch of ``batch`` rows, every input
    prepared beforehand (so only the runtime call is timed): LiteRT int8 and int16 activations (single
    thread, the interpreter's default XNNPACK delegate), onnxruntime's integer graph (int16 in) and float
    graph (one intra-op thread)."""
    from ai_edge_litert.interpreter import Interpreter

    from direct_edge.export import onnx_export, tflite_export
    from direct_edge.runtime import reference

    blob = parse(data)
    feats = onnx_export.features_from_blob(blob)
    q = np.random.default_rng(0).integers(-32768, 32768, (batch, blob.n_inputs), dtype=np.int16)
    xd = reference.dequantize_inputs(blob, q)
    xf = (xd - tflite_export.host_origin(blob)).astype(np.float32)
    calls: dict[str, object] = {}
    for act in (8, 16):
        it = Interpreter(model_content=tflite_export.build(blob, feats, act), num_threads=1)
        inp = it.get_input_details()[0]["index"]
        if batch != 1:
            it.resize_tensor_input(inp, [batch, blob.n_inputs])
        it.allocate_tensors()
        outs = [o["index"] for o in it.get_output_details()]

        def run(it=it, inp=inp, outs=outs):
            it.set_tensor(inp, xf)
            it.invoke()
            return [it.get_tensor(i) for i in outs]

        calls[f"LiteRT int{act}"] = run
    s_int = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob)))
    s_float = onnx_export.session(onnx_export.to_bytes(onnx_export.float_model(blob, feats)))
    calls["ORT integer"] = lambda: s_int.run(None, {"q": q})
    calls["ORT float"] = lambda: s_float.run(None, {"x": xd})
    return calls


PEER_BATCHES = (1, 64)
LITE, ORT = ("LiteRT int8", "LiteRT int16"), ("ORT integer", "ORT float")


def fmt(us: float) -> str:
    return f"{us:.3f}" if us < 1 else f"{us:.2f}"


def peers_table(quick: bool, workdir: Path) -> list[str]:
    """µs per row, batch 1 and batch 64: the C library from a C harness (portable -O2 build and the SIMD
    build) against LiteRT and onnxruntime through their Python APIs. The peers' call overhead is the time
    of the same call on the smallest model of the same graph (b = 2, S = 1): it bounds what the Python API
    and the per-operator dispatch add, and "−ovh" subtracts it (the peer's most favourable reading)."""
    simd, portable = build_harness(workdir, SIMD, "bench_simd"), build_harness(workdir, PORTABLE)
    overhead: dict[tuple[str, int], float] = {}
    tiny = synthetic_blob("rff", D, 2, 1, 4, 0.0, seed=1, layout="dense4")
    for batch in PEER_BATCHES:
        for name, fn in peer_calls(tiny, batch).items():
            overhead[name, batch] = best_seconds(fn, rounds=15) * 1e6
    peers = ["LiteRT int8", "LiteRT int16", "ORT integer", "ORT float"]
    note = ", ".join(f"{n} {overhead[n, 1]:.1f} / {overhead[n, 64]:.1f}" for n in peers)
    rows = [
        f"Peer call overhead (µs per call, batch 1 / batch 64, smallest model): {note}",
        "",
        "| zeros | b | S | batch | C -O2 | C SIMD | LiteRT int8 | LiteRT int16 | ORT integer | ORT float "
        "| LiteRT best −ovh | LiteRT / SIMD | LiteRT−ovh / SIMD | ORT best / SIMD | ORT−ovh / SIMD |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for zeros in (0.0, 0.5):
        for b in (64, 512) if quick else (64, 512, 2000):
            for S in (1, 8) if quick else (1, 8, 32):
                data = synthetic_blob("rff", D, b, S, 4, zeros, seed=1, layout="dense4")
                path = workdir / "peer.bin"
                path.write_bytes(data)
                for batch in PEER_BATCHES:
                    mode, n = ("time", 20000) if batch == 1 else ("time64", 300)
                    ours = {}
                    for label, exe in (("C -O2", portable), ("C SIMD", simd)):
                        run = subprocess.run(
                            [str(exe), str(path), mode, str(n)], capture_output=True, text=True, check=True
                        )
                        ours[label] = float(run.stdout) / 1000 / batch
                    t = {k: best_seconds(fn) * 1e6 for k, fn in peer_calls(data, batch).items()}
                    per_row = {k: v / batch for k, v in t.items()}
                    lite = min(per_row["LiteRT int8"], per_row["LiteRT int16"])
                    # Overhead removed, never below 0: where the difference is within the timing noise
                    # the peer's own work is not separable from its call ("~0", ratio "—").
                    lite_k = max(min(t[k] - overhead[k, batch] for k in LITE), 0.0) / batch
                    ort = min(per_row["ORT integer"], per_row["ORT float"])
                    ort_k = max(min(t[k] - overhead[k, batch] for k in ORT), 0.0) / batch
                    mine = ours["C SIMD"]
                    cells = [fmt(c) for c in (ours["C -O2"], mine, *(per_row[k] for k in peers))]
                    cells += [fmt(lite_k) if lite_k > 0 else "~0", f"{lite / mine:.2f}"]
                    cells += [f"{lite_k / mine:.2f}" if lite_k > 0 else "—", f"{ort / mine:.2f}"]
                    cells += [f"{ort_k / mine:.2f}" if ort_k > 0 else "—"]
                    rows.append(f"| {zeros:.0%} | {b} | {S} | {batch} | " + " | ".join(cells) + " |")
                    print(rows[-1], flush=True)
    return rows


X86_SIMD = ["-std=c99", "-O3", "-mavx2", "-DDIRECT_VECTORIZE"]  # AVX2 only: valgrind cannot run AVX-512
A64_CC = "aarch64-linux-gnu-gcc"
A64_PORTABLE = ["-std=c99", "-O2", "-static"]
A64_SIMD = ["-std=c99", "-O3", "-static", "-DDIRECT_VECTORIZE"]  # NEON is part of aarch64: the SIMD kernel


def qemu_instructions(exe: Path, blob_path: Path, calls: int) -> int:
    """Guest instructions executed by ``exe BLOB predict calls`` under qemu-aarch64: -singlestep makes every
    translated block one instruction and -d exec,nochain logs each executed block, so the count of "Trace"
    lines is the count of executed instructions (no TCG plugin needed; libinsn.so is not installed here)."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "log"
        os.mkfifo(fifo)
        cmd = ["qemu-aarch64", "-cpu", "cortex-a72", "-singlestep", "-d", "exec,nochain", "-D", str(fifo)]
        proc = subprocess.Popen(
            [*cmd, str(exe), str(blob_path), "predict", str(calls)], stderr=subprocess.DEVNULL
        )
        count = 0
        with open(fifo, "rb") as log:
            for line in log:
                count += line.startswith(b"Trace")
        proc.wait()
    return count


def aarch64_table(quick: bool, workdir: Path) -> list[str]:
    """Instructions per prediction (direct_predict, the whole call) of the portable and the SIMD builds on
    x86-64 (callgrind; the SIMD build with -mavx2) and on aarch64 (qemu-aarch64, NEON), and the ratios."""
    x86 = {
        "portable": build_harness(workdir, PORTABLE),
        "simd": build_harness(workdir, X86_SIMD, "bench_avx2"),
    }
    a64 = {}
    for label, flags in (("portable", A64_PORTABLE), ("simd", A64_SIMD)):
        exe = workdir / f"bench_a64_{label}"
        sources = [str(HARNESS), *(str(p) for p in sorted(C_DIR.glob("*.c")))]
        subprocess.run([A64_CC, *flags, f"-I{C_DIR}", "-o", str(exe), *sources], check=True)
        a64[label] = exe
    rows = [
        "| zeros | b | S | x86 -O2 | x86 AVX2 | x86 ratio | aarch64 -O2 | aarch64 NEON | aarch64 ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for zeros in (0.0, 0.5):
        for b in (64, 512) if quick else (64, 512, 2000):
            for S in (1, 8) if quick else (1, 8, 32):
                path = workdir / "count.bin"
                path.write_bytes(synthetic_blob("rff", D, b, S, 4, zeros, seed=1, layout="dense4"))
                x = {k: callgrind(exe, path, "predict", "direct_predict", 20) for k, exe in x86.items()}
                # two extra calls and the difference: start-up and exit cancel out
                a = {
                    k: (qemu_instructions(e, path, 3) - qemu_instructions(e, path, 1)) / 2
                    for k, e in a64.items()
                }
                rows.append(
                    f"| {zeros:.0%} | {b} | {S} | {x['portable']:.0f} | {x['simd']:.0f} | "
                    f"{x['portable'] / x['simd']:.2f} | {a['portable']:.0f} | {a['simd']:.0f} | "
                    f"{a['portable'] / a['simd']:.2f} |"
                )
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
        if "aarch64" in parts:
            if not all(shutil.which(t) for t in ("valgrind", "qemu-aarch64", A64_CC)):
                print(
                    "aarch64: skipped (needs valgrind, qemu-aarch64 and aarch64-linux-gnu-gcc)",
                    file=sys.stderr,
                )
            else:
                lines += [
                    "### Instructions per prediction, x86-64 and aarch64",
                    "",
                    *aarch64_table(args.quick, workdir),
                    "",
                ]
        if "peers" in parts:
            lines += [
                "### Batch-1 and batch-64 latency against LiteRT and onnxruntime (µs per row)",
                "",
                *peers_table(args.quick, workdir),
                "",
            ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
