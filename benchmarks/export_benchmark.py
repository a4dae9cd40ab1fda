"""Export benchmark: bytes of each format for one model, and batch-1 latency per prediction.

    python benchmarks/export_benchmark.py [--quick] [--json results.json]

Models: synthetic rff blobs (export.packed.synthetic_blob: d = 9, 50 % zero levels, 4-bit) at
b = 512 and 2000 features, S = 8 and 32 samples; each is written as .bin (the packed blob), .h,
float .onnx, integer .onnx, and .tflite with int16 and with int8 features.  Latency: one prediction at a
time (batch 1) through onnxruntime (float and integer graphs, one thread), LiteRT (default XNNPACK
resolver; the same bytes as the tests), the C runtime through its ctypes binding
(runtime/native.py) and the numpy reference, all in one run, interleaved: each round times every
engine for ``calls`` calls, and the best round per engine is kept.  Ratios are against the C runtime.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import numpy as np

from direct_edge.export import onnx_export, tflite_export
from direct_edge.export.c_header import render
from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse


def sizes(data: bytes) -> dict[str, int]:
    """Bytes of every format for one blob."""
    blob = parse(data)
    feats = onnx_export.features_from_blob(blob)
    return {
        ".bin": len(data),
        ".h": len(render(data, "model").encode("utf-8")),
        ".onnx float": len(onnx_export.to_bytes(onnx_export.float_model(blob, feats))),
        ".onnx integer": len(onnx_export.to_bytes(onnx_export.integer_model(blob))),
        ".tflite int16": len(tflite_export.build(blob, feats, 16)),
        ".tflite int8/INT4": len(tflite_export.build(blob, feats, 8)),
    }


def engines(data: bytes) -> dict[str, Callable[[np.ndarray], object]]:
    """Batch-1 predict callables on int16 inputs (1, d) (float engines get the dequantised input, so
    their time includes that numpy step)."""
    from ai_edge_litert.interpreter import Interpreter

    blob = parse(data)
    feats = onnx_export.features_from_blob(blob)
    out: dict[str, Callable[[np.ndarray], object]] = {}
    try:
        from direct_edge.runtime.native import NativeModel, NativeUnavailable

        try:
            native = NativeModel(data)
            out["C runtime (ctypes)"] = native.predict
        except NativeUnavailable:
            pass
    except ImportError:
        pass
    out["numpy reference"] = lambda q: reference.predict(blob, q)
    s_int = onnx_export.session(onnx_export.to_bytes(onnx_export.integer_model(blob)))
    out["onnxruntime integer"] = lambda q: s_int.run(None, {"q": q})
    s_float = onnx_export.session(onnx_export.to_bytes(onnx_export.float_model(blob, feats)))
    # The float graphs take real inputs: float64 for ONNX, float32 minus the host origin for TFLite
    # (docs/export.md); the dequantised int16 rows are the same points.
    out["onnxruntime float"] = lambda q: s_float.run(None, {"x": reference.dequantize_inputs(blob, q)})
    origin = tflite_export.host_origin(blob)
    for act in (16, 8):
        it = Interpreter(model_content=tflite_export.build(blob, feats, act), num_threads=1)
        it.allocate_tensors()
        inp = it.get_input_details()[0]["index"]
        outs = [o["index"] for o in it.get_output_details()]

        def run(q, it=it, inp=inp, outs=outs):
            it.set_tensor(inp, (reference.dequantize_inputs(blob, q) - origin).astype(np.float32))
            it.invoke()
            return [it.get_tensor(i) for i in outs]

        out[f"LiteRT int{act}"] = run
    return out


def latency(fns: dict[str, Callable], q: np.ndarray, calls: int, rounds: int) -> dict[str, float]:
    """Best-of-rounds seconds per call for each engine, rounds interleaved across engines."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():  # warm-up
        for row in q[:20]:
            fn(row[None, :])
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for i in range(calls):
                fn(q[i % len(q)][None, :])
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few calls (numbers mean nothing)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    grid = [(64, 4)] if args.quick else [(512, 8), (512, 32), (2000, 8), (2000, 32)]
    calls, rounds = (50, 2) if args.quick else (400, 5)
    results = []
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for b, S in grid:
        data = synthetic_blob("rff", 9, b, S, zeros=0.5, seed=b + S)
        q = np.random.default_rng(0).integers(-32768, 32768, (256, 9), dtype=np.int16)
        size = sizes(data)
        times = latency(engines(data), q, calls, rounds)
        base = times.get("C runtime (ctypes)", times["numpy reference"])
        print(f"\n## b = {b}, S = {S}")
        print("bytes: " + ", ".join(f"{k} {v:,}" for k, v in size.items()))
        for name, t in times.items():
            print(f"  {name:<22} {t * 1e6:9.2f} µs   {t / base:6.2f}x")
        results.append({"b": b, "S": S, "bytes": size, "seconds_per_prediction": times})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
