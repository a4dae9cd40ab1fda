"""``direct-export [MODEL] OUTPUT``: pack a trained model (default ``model.direct``) for a target.

The format follows OUTPUT's extension: ``.bin`` (the packed blob, docs/model-format.md), ``.h`` (the
same bytes as a C header), ``.onnx`` (a float graph, or with ``--integer`` the integer spec as integer
ONNX ops) or ``.tflite`` (docs/export.md).  After writing, the command prints a summary and the largest
difference on a check batch drawn from the model's input range: the integer runtime (or the exported
file, run in onnxruntime / LiteRT) against the float64 evaluation of the same posterior samples, and
for ``--integer`` ONNX against the numpy integer reference, which it must equal bit for bit.
Problems a user can cause end with one line on stderr, ``direct-export: error: ...``, exit code 2,
and no output file; the output is never written over the model.  ``--model MODEL`` is the older
spelling of the first argument and still works.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from direct_edge.commands import command
from direct_edge.export.c_header import c_identifier, render
from direct_edge.export.layout_cost import DEFAULT_TARGET
from direct_edge.export.packed import LAYOUTS, ExportError, blob_input_range, pack, pack_classifier, save_blob
from direct_edge.files import check_not_an_input
from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, parse

PROG = "direct-export"
FORMATS = {".bin": "packed blob", ".h": "C header", ".onnx": "ONNX", ".tflite": "TFLite"}
# The Python packages each graph format is written and checked with, and the extra that installs them.
FORMAT_PACKAGES = {".onnx": ("onnx", "onnxruntime"), ".tflite": ("ai_edge_litert",)}
DEFAULT_MODEL = "model.direct"
CHECK_ROWS = 1000
# The largest C array each target's compiler accepts, in bytes (avr-gcc: "size of array is too large"
# above 32,767, its ptrdiff_t being 16 bits).  "any" makes no promise.
TARGET_ARRAY_LIMITS = {"any": None, "avr": 32767, "cortex-m0": None, "cortex-m4": None, "host": None}
# The cost table (export/layout_cost.py) --layout auto --optimize speed uses per target: "any" takes the
# default (Cortex-M4); AVR is not measured and takes Cortex-M0's (no DSP, no dual MAC; the nearest).
TARGET_COSTS = {
    "any": DEFAULT_TARGET,
    "avr": "cortex-m0",
    "cortex-m0": "cortex-m0",
    "cortex-m4": "cortex-m4",
    "host": "host",
}


def check_batch(blob: Blob, rows: int = CHECK_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, beyond): check inputs X (rows, d) float64 in input units, spread over the training range
    (IS §2's [lo, hi]) and beyond it, and the (rows,) bool mask of the rows with an input outside.

    Rows 0–3 are the range's corners (all lo, all hi, alternating both ways); then uniform rows inside;
    the last fifth have one or more inputs up to a quarter of the width beyond an end.
    """
    rng = np.random.default_rng(seed)
    lo, hi = blob_input_range(blob)
    quarter = hi / 4.0 - lo / 4.0  # a quarter of the width: hi − lo overflows for a range near ±1.7e308
    d = blob.n_inputs
    u = rng.uniform(0.0, 1.0, (rows, d))
    X = lo * (1.0 - u) + hi * u
    alternate = np.arange(d) % 2 == 1
    X[0], X[1] = lo, hi
    X[2], X[3] = np.where(alternate, hi, lo), np.where(alternate, lo, hi)
    outside = np.arange(rows) >= rows - rows // 5
    biggest = np.finfo(np.float64).max
    for i in np.flatnonzero(outside):
        k = rng.integers(0, d, rng.integers(1, d + 1))
        beyond = quarter[k] * rng.uniform(0.0, 1.0, len(k))
        with np.errstate(over="ignore"):  # beyond float64's range: the largest float stands in
            X[i, k] = np.clip(
                np.where(rng.random(len(k)) < 0.5, lo[k] - beyond, hi[k] + beyond), -biggest, biggest
            )
    return X, np.any((X < lo) | (X > hi), axis=1)


def _float64_features(model, blob: Blob, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trainer's float64 features Φ (n, b) at inputs ``X`` (n, d) (float inputs in input units; int16
    inputs are IS §2's q, dequantised first) and each weight's level step Δ·g_i (b,) in standardised
    target units (IS §3.4: g_i = G_i·2^-15 exactly, the trainer's gains)."""
    X = np.asarray(X)
    if X.dtype == np.int16:
        X = reference.dequantize_inputs(blob, X)
    Phi = model.feature_map_.transform(np.asarray(X, dtype=np.float64))
    step = model.grid_scale_ * (np.ones(Phi.shape[1]) if blob.gains is None else blob.gains / 32768.0)
    return Phi, step


def float64_samples(model, blob: Blob, X: np.ndarray) -> np.ndarray:
    """The float64 per-sample predictions (n, S) in target units of the blob's samples at inputs ``X``
    (n, d): float inputs are in input units; int16 inputs are IS §2's q, dequantised first.  What the
    exports are compared with."""
    Phi, step = _float64_features(model, blob, X)
    return Phi @ (blob.levels.astype(np.float64) * step).T * model.y_scale_ + model.y_offset_


def float64_floor(model, blob: Blob, X: np.ndarray) -> np.ndarray:
    """IS §5's rounding floor in float64 (n,), target units², at inputs ``X`` as in :func:`float64_samples`:
    Σ_i φ_i²·(eq_i·2^-10)·(Δ·g_i·y_scale)², the blob's own floors (zeros for a blob without them)."""
    if blob.floor is None:
        return np.zeros(len(X))
    Phi, step = _float64_features(model, blob, X)
    return (Phi * Phi) @ (blob.floor / 1024.0 * (step * model.y_scale_) ** 2)


def float64_class_probabilities(model, blob: Blob, X: np.ndarray) -> np.ndarray:
    """IS §10.5's comparison: the float64 model average mean_s softmax(z_s) (n, C) of a classifier
    blob's own samples (the N = S·R weight rows, MF §11) at inputs ``X`` (n, d), through the trainer's
    float64 feature map; int16 inputs are IS §2's q, dequantised first.  ``model``: the
    DirectClassifier the blob was packed from."""
    Phi, step = _float64_features(model, blob, X)
    weights = blob.levels.astype(np.float64) * step
    R = 1 if blob.classes == 2 else blob.classes
    z = (Phi @ weights.T).reshape(Phi.shape[0], -1, R)
    if R == 1:  # the logistic model: σ(z) = softmax(0, z)
        z = np.concatenate([np.zeros_like(z), z], axis=2)
    e = np.exp(z - z.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True)).mean(axis=1)


def max_difference(model, blob: Blob, q: np.ndarray) -> tuple[float, float]:
    """(largest |integer − float64| over mean and sd, the IS §8 bound), both in target units, on int16
    inputs ``q`` (n, d): the integer pipeline against the same samples at the dequantised inputs."""
    mean_q, var_q, _ = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    f = float64_samples(model, blob, q)
    sd64 = np.sqrt(f.var(axis=1) + float64_floor(model, blob, q))
    diff = max(np.max(np.abs(mean - f.mean(axis=1))), np.max(np.abs(sd - sd64)))
    floor = np.sqrt(reference.floor_error_bound(blob))  # √ is ½-Hölder: the floor's variance error as sd
    return float(diff), float(blob.mean_scale * (reference.error_bound(blob) + 1 + floor))


def _moment_difference(
    f: np.ndarray, noise: float, mean: np.ndarray, variance: np.ndarray, floor: np.ndarray | float = 0.0
) -> float:
    """Largest |Δ mean| or |Δ predictive sd| between float64 samples ``f`` (n, S) (plus IS §5's rounding
    ``floor`` (n,), :func:`float64_floor`) and an export's outputs."""
    sd64 = np.sqrt(f.var(axis=1) + floor + noise)
    sd = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    return float(max(np.max(np.abs(mean - f.mean(axis=1))), np.max(np.abs(sd - sd64))))


def prepares_inputs(blob: Blob) -> bool:
    """Whether the blob's schema prepares its inputs from raw columns (categorical levels, missing
    values; MF §10): then the float graphs take the raw columns (``onnx_export.raw_front_end``)."""
    return blob.schema is not None and not blob.schema.plain


def schema_line(blob: Blob) -> str:
    """The summary's line on the input schema (MF §10): the columns, what each becomes, and what the
    float graphs take."""
    from direct_edge.runtime import schema as input_schema

    parts = []
    for c in blob.schema.columns:
        if c.kind == input_schema.CATEGORICAL:
            parts.append(f"{c.name} ({len(c.levels)} levels)")
        else:
            parts.append(c.name + (" (mean-indicator)" if c.missing == input_schema.MEAN_INDICATOR else ""))
    text = f"{len(parts)} columns -> {blob.n_inputs} inputs: {', '.join(parts)}"
    if prepares_inputs(blob):
        text += "; the float graphs and the .h raw helpers take the raw columns"
    return text


def raw_rows(blob: Blob, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw (n, c), prepared X (n, d)) for model-input rows ``X`` (``runtime.schema.raw_from_inputs``)."""
    from direct_edge.runtime.schema import raw_from_inputs

    return raw_from_inputs(blob.schema, X)


@dataclass
class TrainedCheck:
    """The trained model's exact predictive moments on the check batch, and the comparison with them.

    ``X``: (n, d) float64 inputs; ``beyond``: (n,) bool; ``mean``, ``sd``: (n,) float64 from
    ``DirectRegressor.predict(X, return_std=True)``; ``sd_y``: the target's sd (the trainer's y_scale).
    """

    X: np.ndarray
    beyond: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    sd_y: float

    @classmethod
    def of(cls, model, blob: Blob) -> TrainedCheck:
        X, beyond = check_batch(blob)
        if prepares_inputs(blob):  # rows a raw row can give: one-hot, 0/1 indicators (MF §10)
            X = raw_rows(blob, X)[1]
        mean, sd = model.predict_rows(X)
        return cls(X, beyond, mean, sd, float(model.y_scale_))

    def difference(self, mean, sd) -> tuple[float, float]:
        """Largest |Δ mean| or |Δ sd| against the trained model, in sd(y): (in range, beyond it)."""
        gap = np.maximum(np.abs(np.asarray(mean) - self.mean), np.abs(np.asarray(sd) - self.sd)) / self.sd_y
        inside = float(np.max(gap[~self.beyond]))
        return inside, float(np.max(gap[self.beyond])) if self.beyond.any() else 0.0

    def describe(self, what: str, mean, sd) -> str:
        inside, beyond = self.difference(mean, sd)
        return f"{what}: {inside:.3g} sd(y) in the training range, {beyond:.3g} beyond it"


def integer_outputs(blob: Blob, X: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) in target units from the integer runtime (IS §2 quantisation, then §4–§5 or §6, §7)."""
    q = reference.quantize_inputs(blob, X)
    mean_q, _, var_y_q = (reference.predict_exact if exact else reference.predict)(blob, q)
    return reference.to_target_units(blob, mean_q, var_y_q)


def exact_graph(model, blob: Blob, ensemble: bool) -> bool:
    """Whether a float graph (.onnx float, .tflite) carries the exact predictive moments: by default
    when the blob has the exact-moment section and the posterior is mean-field (for a mixture the exact
    mode leaves out the weights' covariance, IS §6); ``ensemble`` asks for the S-sample graph."""
    return not ensemble and blob.has_exact and getattr(model, "family", "mean-field") == "mean-field"


def render_onnx(model, blob: Blob, integer: bool, exact: bool = False) -> bytes:
    """The .onnx bytes: the integer graph (IS §3–§5), or the float graph of the trainer's feature map
    with the exact moments (``exact``) or the S samples."""
    from direct_edge.export import onnx_export

    if integer:
        return onnx_export.to_bytes(onnx_export.integer_model(blob))
    feats = onnx_export.features_from_model(model, blob)
    if exact:
        graph = onnx_export.exact_model(blob, feats, onnx_export.moments_from_model(model))
    else:
        graph = onnx_export.float_model(blob, feats)
    if prepares_inputs(blob):  # the device feeds raw columns (MF §10)
        graph = onnx_export.raw_front_end(graph, blob.schema)
    return onnx_export.to_bytes(graph)


def render_tflite(model, blob: Blob, activations: int, exact: bool = False) -> bytes:
    """The .tflite bytes: exact moments in float32 (``exact``), or the S samples' integer ensemble."""
    from direct_edge.export import onnx_export, tflite_export

    feats = onnx_export.features_from_model(model, blob)
    if exact:
        return tflite_export.build_exact(blob, feats, onnx_export.moments_from_model(model))
    data = tflite_export.build(blob, feats, activations)
    tflite_export.check_int4_buffers(data)
    return data


def check_onnx(
    model, blob: Blob, data: bytes, integer: bool, exact: bool, trained: TrainedCheck
) -> list[str]:
    """Run the exported bytes in onnxruntime (a default session, as users create it) on the check batch:
    the difference from the trained model, and from the float64 samples or the integer reference."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    if integer:
        q = reference.quantize_inputs(blob, trained.X)
        got = sess.run(["mean_q", "var_q", "var_y_q"], {"q": q})
        want = reference.predict(blob, q)
        diff = max(
            int(np.max(np.abs(g.astype(object) - w.astype(object)))) for g, w in zip(got, want, strict=True)
        )
        verdict = "bit-exact" if diff == 0 else "NOT bit-exact"
        mean, sd = reference.to_target_units(blob, got[0], got[2])
        return [
            trained.describe(f"onnxruntime ({blob.n_samples} samples) - trained", mean, sd),
            f"max |onnxruntime - integer reference| = {diff} on {len(q)} inputs ({verdict})",
        ]
    from direct_edge.export import onnx_export

    feed = {"raw": raw_rows(blob, trained.X)[0]} if prepares_inputs(blob) else {"x": trained.X}
    mean, variance = sess.run(["mean", "variance"], feed)
    if exact:
        return [trained.describe("onnxruntime exact moments - trained", mean, np.sqrt(variance))]
    diff = _moment_difference(
        float64_samples(model, blob, trained.X),
        onnx_export.noise_variance(blob),
        mean,
        variance,
        float64_floor(model, blob, trained.X),
    )
    return [
        trained.describe(f"onnxruntime ({blob.n_samples} samples) - trained", mean, np.sqrt(variance)),
        f"max |onnxruntime float - float64| = {diff:.3g} on {len(mean)} inputs (same samples)",
    ]


# LiteRT's C++ logger announces its default delegate on the process's stderr at the first invoke. That
# line is LiteRT's, not an outcome of the export, so the check keeps it out of the user's terminal.
LITERT_DELEGATE_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def run_litert(payload: bytes, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``payload`` (.tflite bytes) on ``feed`` with LiteRT's signature runner and its default
    resolver, as LiteRT's documentation teaches.  Returns the runner's outputs by name.

    File descriptor 2 is captured while the interpreter runs: the delegate notice is dropped and any
    other line LiteRT writes there is passed on to stderr unchanged.  With no stderr at all (fd 2
    closed, ``sys.stderr`` None) there is nothing to keep clean, and the runner runs as it is."""
    from ai_edge_litert.interpreter import Interpreter

    def run() -> dict[str, np.ndarray]:
        return Interpreter(model_content=payload).get_signature_runner()(**feed)

    if sys.stderr is None:
        return run()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # fd 2 closed
        return run()
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            return run()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            for line in log.read().decode(errors="replace").splitlines():
                if line.strip() and line.strip() != LITERT_DELEGATE_NOTICE:
                    print(line, file=sys.stderr)


def check_tflite(
    model, blob: Blob, data: bytes, activations: int, exact: bool, trained: TrainedCheck
) -> list[str]:
    """Run the exported bytes through LiteRT's signature runner (default resolver) on the check batch."""
    from direct_edge.export import onnx_export, tflite_export

    if prepares_inputs(blob):  # the raw columns (MF §10)
        out = run_litert(data, {"raw": raw_rows(blob, trained.X)[0].astype(np.float32)})
    else:
        x = (trained.X - tflite_export.host_origin(blob)).astype(np.float32)
        out = run_litert(data, {tflite_export.input_name(blob): x})
    mean, variance = out["mean"], out["variance"]
    feats = onnx_export.features_from_model(model, blob)
    if exact:
        bound = tflite_export.exact_error_bound(blob, feats, onnx_export.moments_from_model(model))
        return [
            trained.describe("LiteRT exact moments - trained", mean, np.sqrt(variance))
            + f" (float32 bound {bound / trained.sd_y:.3g} sd(y))"
        ]
    diff = _moment_difference(
        float64_samples(model, blob, trained.X),
        onnx_export.noise_variance(blob),
        mean,
        variance,
        float64_floor(model, blob, trained.X),
    )
    bound = tflite_export.error_bound(blob, feats, tflite_export.integer_parameters(blob, feats, activations))
    return [
        trained.describe(f"LiteRT ({blob.n_samples} samples) - trained", mean, np.sqrt(variance)),
        f"max |LiteRT - float64| = {diff:.3g} on {len(mean)} inputs (same samples; bound {bound:.3g})",
    ]


def check_blob(model, blob: Blob, trained: TrainedCheck) -> list[str]:
    """The integer runtime (bit-exact with the C library) on the check batch: exact-moment mode when
    the blob has it, the ensemble, and the ensemble against the float64 samples (IS §8)."""
    lines = []
    if blob.has_exact:
        lines.append(trained.describe("exact mode - trained", *integer_outputs(blob, trained.X, True)))
    ensemble = integer_outputs(blob, trained.X, False)
    lines.append(trained.describe(f"ensemble ({blob.n_samples} samples) - trained", *ensemble))
    diff, bound = max_difference(model, blob, reference.quantize_inputs(blob, trained.X))
    lines.append(
        f"max |integer - float64| = {diff:.3g} on {len(trained.X)} inputs (same samples; bound {bound:.3g})"
    )
    return lines


# Largest difference from the trained model's moments (sd(y) units, in the training range) that the
# defaults aim at; above it the summary says what would bring it down.
TOLERANCE = 0.05


def notes(
    blob: Blob,
    trained: TrainedCheck,
    exact_requested: bool,
    ensemble_output: bool,
    integer_inputs: bool,
    exact_advice: str = "exact moments are closer",
) -> list[str]:
    """One line per choice that leaves the output far from the trained model, and what to change.

    ``ensemble_output``: the file's main output is the S-sample ensemble; ``integer_inputs``: the
    inputs are quantised by IS §2 (saturating at the training range); ``exact_advice``: how this
    format gets the exact moments instead."""
    out = []
    if exact_requested and not blob.has_exact:
        out.append(
            "exact moments do not fit this model (IS §9: b·2^(18-r) must stay below 2^31); none stored"
        )
    # (in the training range, beyond it) for each mode, each computed at most once
    exact = trained.difference(*integer_outputs(blob, trained.X, True)) if blob.has_exact else None
    ensemble_cache: list = []

    def ensemble() -> tuple[float, float]:
        if not ensemble_cache:
            ensemble_cache.append(trained.difference(*integer_outputs(blob, trained.X, False)))
        return ensemble_cache[0]

    exact_gap = np.inf if exact is None else exact[0]
    if ensemble_output:
        gap = ensemble()[0]
        if not np.isfinite(gap):
            out.append("the difference from the trained model is not a finite number: its outputs overflow")
        elif gap > TOLERANCE:
            ratio = gap / (0.8 * TOLERANCE)  # the sd of a mean over S samples falls as S^-½
            wanted = 65535 if ratio >= 256 else min(65535, int(np.ceil(blob.n_samples * ratio**2)))
            advice = f"about --samples {wanted} for {TOLERANCE}"
            if exact_gap < gap:
                advice = f"{exact_advice}; or {advice}"
            out.append(f"{blob.n_samples} samples are {gap:.3g} sd(y) from the trained model: {advice}")
    if exact is not None and (not np.isfinite(exact_gap) or exact_gap > TOLERANCE):
        # Each gained feature is an i16 in 2^-15 units of the largest weight's grid (IS §3.4): where the
        # grids' steps span orders of magnitude (rotated features), the small ones keep few bits.
        out.append(
            f"exact moments are {exact_gap:.3g} sd(y) from the trained model (the integer features keep few "
            f"bits where the grids' steps span orders of magnitude); the {blob.n_samples} samples are "
            f"{ensemble()[0]:.3g} (direct-run --ensemble, direct_predict in C)"
        )
    if integer_inputs and trained.beyond.any():
        beyond = (exact if exact is not None else ensemble())[1]
        if beyond > TOLERANCE:
            out.append(
                f"inputs beyond the training range saturate (IS §2): {beyond:.3g} sd(y) from the trained "
                "model up to a quarter of the range beyond its ends"
            )
    return out


def check_target(suffix: str, size: int, target: str) -> list[str]:
    """The C array limits of ``target`` for a .h of a ``size``-byte blob: ExportError when the target's
    compiler would refuse the array, else a note when some supported compiler would (avr-gcc)."""
    if suffix != ".h":
        return []
    limit = TARGET_ARRAY_LIMITS[target]
    if limit is not None and size > limit:
        # The runtime reads the blob as one array, so the largest array is the largest model on every
        # AVR, the ATmega2560 included (its flash beyond that holds code, not a bigger model).
        raise ExportError(
            f"the blob is {size:,} bytes and an AVR runs a blob of at most {limit:,} (avr-gcc's largest "
            "array, on an ATmega2560 too): use fewer --samples or features, or --no-exact-moments"
        )
    avr = TARGET_ARRAY_LIMITS["avr"]
    if size > avr:
        return [
            f"avr-gcc refuses arrays over {avr:,} bytes: this header builds for 32-bit targets, "
            "not for any AVR (ATmega2560 included)"
        ]
    return []


def write_output(path: Path, blob_bytes: bytes) -> None:
    if path.suffix == ".bin":
        save_blob(path, blob_bytes)
    else:
        save_blob(path, render(blob_bytes, c_identifier(path.stem)).encode("utf-8"))


def check_format_packages(suffix: str) -> None:
    """ExportError with the install command when a package that writes or checks ``suffix`` is missing."""
    import importlib.util

    missing = [name for name in FORMAT_PACKAGES.get(suffix, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"writing {suffix} files needs {', '.join(missing)}; "
            "install it with: pip install 'direct-edge[export]'"
        )


def export(
    model_path: str,
    output: str,
    samples: int,
    seed: int,
    layout: str,
    exact: bool = True,
    integer: bool = False,
    activations: int = 16,
    ensemble: bool = False,
    target: str = "any",
    optimize: str = "speed",
    max_bytes: int | None = None,
    schema: bool = True,
    floor: bool = True,
) -> str:
    """Pack, write and describe; returns the summary text.

    ``layout`` "auto" picks with ``optimize`` ("speed": the fastest on ``target`` by the cost model and
    never larger than dense4; "size": the smallest) among the layouts whose blob fits ``max_bytes``.

    The summary's check lines compare, on :func:`check_batch` (1,000 inputs over and beyond the training
    range), what the written file outputs with the trained model's exact predictive mean and sd
    (``DirectRegressor.predict(X, return_std=True)``, in sd(y) units), then with the float64 evaluation
    of the same samples (or the integer reference).  Raises ExportError for anything the user can fix.
    """
    out = Path(output)
    if out.suffix not in FORMATS:
        raise ExportError(f"cannot tell the format of {output}: use a {', '.join(FORMATS)} file name")
    if integer and out.suffix != ".onnx":
        raise ExportError(
            f"--integer applies to .onnx output only ({out.suffix} is integer or float already)"
        )
    if not out.parent.is_dir():
        raise ExportError(f"output directory {out.parent} does not exist")
    check_not_an_input(out, [model_path])
    check_format_packages(out.suffix)
    from direct_edge.trainer.errors import ModelFileError
    from direct_edge.trainer.model_file import load_model

    try:
        model = load_model(model_path)
    except (ModelFileError, OSError) as exc:
        raise ExportError(str(exc)) from None
    from direct_edge.trainer.model_file import is_classifier

    if is_classifier(model):
        return export_classifier(model, out, samples, layout, schema, integer, activations)
    data = pack(
        model,
        n_samples=samples,
        seed=seed,
        layout=layout,
        exact=exact,
        optimize=optimize,
        target=TARGET_COSTS[target],
        max_bytes=max_bytes,
        schema=schema,
        floor=floor,
    )
    target_notes = check_target(out.suffix, len(data), target)
    blob = parse(data)
    if blob.has_rotation and target == "avr":  # MF §5.3: the AVR build leaves the rotation out
        raise ExportError(
            "a model with rotated features does not run on the AVR: its C library is built without the "
            "rotation (DIRECT_ROTATION 0, docs/model-format.md §5.3); for --target avr, train without "
            "--rotation"
        )
    trained = TrainedCheck.of(model, blob)
    exact_graph_ = exact_graph(model, blob, ensemble) and not integer
    if out.suffix == ".onnx":
        payload = render_onnx(model, blob, integer, exact_graph_)
        checks = check_onnx(model, blob, payload, integer, exact_graph_, trained)
        save_blob(out, payload)
        kind = (
            "integer graph (IS §3-§5)"
            if integer
            else "float graph, " + ("exact moments" if exact_graph_ else f"{blob.n_samples} samples")
        )
        fmt = f"ONNX, {kind} ({out})"
    elif out.suffix == ".tflite":
        payload = render_tflite(model, blob, activations, exact_graph_)
        checks = check_tflite(model, blob, payload, activations, exact_graph_, trained)
        save_blob(out, payload)
        kind = (
            "exact moments in float32"
            if exact_graph_
            else f"{blob.n_samples} samples, int{activations} features"
        )
        fmt = f"TFLite, {kind} ({out})"
    else:
        checks = check_blob(model, blob, trained)
        write_output(out, data)
        fmt = f"{FORMATS[out.suffix]} ({out})"
    integer_inputs = out.suffix in (".bin", ".h") or integer
    ensemble_output = not exact_graph_ or out.suffix in (".bin", ".h")
    exact_advice = (
        "the exact moments are closer, and they are direct-run's default answer (direct_predict_exact in C)"
        if out.suffix in (".bin", ".h")
        else "without --ensemble the graph carries the exact moments"
        if not integer
        else "the .bin/.h exact mode or the float graph carry the exact moments"
    )
    why = ""
    if layout == "auto":
        why = (
            f" (auto: the fastest on {TARGET_COSTS[target]} no larger than dense4"
            if optimize == "speed"
            else " (auto: the smallest"
        ) + (f", blob within {max_bytes:,} bytes)" if max_bytes is not None else ")")
    rows = [
        ("format", fmt),
        ("size", f"{out.stat().st_size:,} bytes on disk, {len(data):,} bytes of blob"),
        ("model", f"{blob.kind_name} features, {blob.n_inputs} inputs, {blob.n_features} weights"),
        (
            "samples",
            f"{blob.n_samples} (seed {seed}), {blob.bits}-bit levels, layout {blob.layout_name}{why}",
        ),
        ("sparsity", f"{100 * blob.sparsity:.1f}% zero levels"),
        ("exact moments", "yes" if blob.has_exact else "no"),
        ("floor", f"yes, for the ensemble ({2 * blob.n_features:,} bytes)" if blob.has_floor else "no"),
        *(
            (("rotation", f"yes ({2 * blob.n_features**2 + blob.n_features:,} bytes, 4·b bytes of scratch)"),)
            if blob.has_rotation
            else ()
        ),
        *((("schema", schema_line(blob)),) if blob.schema is not None else ()),
        *(("check", line) for line in checks),
        *(
            ("note", line)
            for line in notes(blob, trained, exact, ensemble_output, integer_inputs, exact_advice)
        ),
        *(("note", line) for line in target_notes),
        *(("note", line) for line in float_gap_note(model)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def float_gap_note(model) -> list[str]:
    """The training-time flag against the float model (docs/trainer.md §9), carried to the export so a
    flagged model does not reach a device unremarked; none for a model without it (or from a file
    written before the check)."""
    gap = model.float_gap_
    if gap is None:
        return []
    return [
        f"flagged at training: its training RMSE is {gap:.3g}x the float model's on the same features, so "
        "its test RMSE is likely above the float model's (docs/trainer.md §9, 'Against the float model')"
    ]


def export_classifier(
    model, out: Path, samples: int, layout: str, schema: bool, integer: bool = False, activations: int = 16
) -> str:
    """A DirectClassifier to .bin, .h, .onnx (integer with ``integer``, else float) or .tflite (int16
    activations only) (MF §11, IS §10): the first ``samples`` fit-time posterior samples in dense4; the
    summary checks the integer probabilities against the float64 softmax of the same samples on
    :func:`check_batch`, and the written graph against the integer reference (integer ONNX) or float64.
    ExportError for int8 TFLite activations or a layout other than dense4."""
    from direct_edge.runtime import classify

    if out.suffix == ".tflite" and activations != 16:
        raise ExportError(
            "a classifier's .tflite keeps int16 per-sample logits: int8 ones are too coarse for its "
            "probabilities (measured errors up to 0.45); drop --activations 8"
        )
    if layout not in ("auto", "dense4"):
        raise ExportError(
            f"a classifier is packed in dense4 (the layout direct_classify decodes), not {layout}"
        )
    data = pack_classifier(model, n_samples=samples, schema=schema)
    blob = parse(data)
    X, beyond = check_batch(blob)
    raw = None
    if prepares_inputs(blob):  # rows a raw row can give (one-hot, 0/1 indicators), and those raw rows
        raw, X = raw_rows(blob, X)
    q = reference.quantize_inputs(blob, X)
    got = classify.classify(blob, q)
    diff = float(np.max(np.abs(got["proba"] / 65536.0 - float64_class_probabilities(model, blob, q))))
    bound = classify.probability_error_bound(blob) / 65536.0
    names = getattr(model, "feature_names_in_", None)
    if names is not None:  # fitted on a DataFrame (direct-train does so): scikit-learn warns on an array
        import pandas as pd

        X_named = pd.DataFrame(X, columns=[str(n) for n in names])
    trained = model.predict(X if names is None else X_named)
    agree = float(np.mean(np.asarray(model.classes_)[got["label"]] == trained))
    onnx_check = []
    if out.suffix == ".onnx" and not integer:
        from direct_edge.export import onnx_export

        graph = onnx_export.float_classifier_model(blob, onnx_export.features_from_model(model, blob))
        if raw is not None:  # the device feeds raw columns (MF §10), as the regression graphs do
            graph = onnx_export.raw_front_end(graph, blob.schema)
        payload = onnx_export.to_bytes(graph)
        proba = onnx_export.session(payload).run(["proba"], {"x": X} if raw is None else {"raw": raw})[0]
        gap = float(np.max(np.abs(proba - float64_class_probabilities(model, blob, X))))
        onnx_check = [
            (
                "check",
                f"max |onnxruntime float - float64| probability = {gap:.3g} on {len(X)} "
                + ("inputs" if raw is None else "raw rows"),
            )
        ]
        save_blob(out, payload)
    if out.suffix == ".onnx" and integer:
        from direct_edge.export import onnx_export

        payload = onnx_export.to_bytes(onnx_export.integer_classifier_model(blob))
        ran = dict(
            zip(
                ["label", "proba", "entropy", "expected_entropy", "mutual_info"],
                onnx_export.session(payload).run(
                    ["label", "proba", "entropy", "expected_entropy", "mutual_info"], {"q": q}
                ),
                strict=True,
            )
        )
        same = all(np.array_equal(ran[k].astype(np.int64), got[k]) for k in ran)
        onnx_check = [
            (
                "check",
                f"onnxruntime - integer reference on {len(q)} inputs: "
                + ("bit-exact" if same else "NOT bit-exact"),
            )
        ]
        save_blob(out, payload)
    if out.suffix == ".tflite":
        from direct_edge.export import onnx_export, tflite_export

        payload = tflite_export.build_classifier(
            blob, onnx_export.features_from_model(model, blob), activations
        )
        if raw is None:
            fed = {tflite_export.input_name(blob): (X - tflite_export.host_origin(blob)).astype(np.float32)}
        else:  # the raw columns (MF §10)
            fed = {"raw": raw.astype(np.float32)}
        proba = run_litert(payload, fed)["proba"]
        gap = float(np.max(np.abs(proba - float64_class_probabilities(model, blob, X))))
        onnx_check = [
            (
                "check",
                f"max |LiteRT - float64| probability = {gap:.3g} on {len(X)} "
                + ("inputs" if raw is None else "raw rows"),
            )
        ]
        save_blob(out, payload)
    if out.suffix in (".bin", ".h"):
        write_output(out, data)
    labels = ", ".join(str(c) for c in model.classes_)
    rows = [
        (
            "format",
            f"{FORMATS[out.suffix]}"
            + (" (integer graph, IS §10)" if integer else " (float graph)" if out.suffix == ".onnx" else "")
            + (", int16 features and per-sample logits" if out.suffix == ".tflite" else "")
            + f", classifier ({out})",
        ),
        ("size", f"{out.stat().st_size:,} bytes on disk, {len(data):,} bytes of blob"),
        ("model", f"{blob.kind_name} features, {blob.n_inputs} inputs, {blob.n_features} weights per logit"),
        ("classes", f"{blob.classes}: {labels}"),
        (
            "samples",
            f"{blob.n_samples // _rows(blob)} of the fit's"
            f" posterior samples, {blob.bits}-bit levels, layout dense4",
        ),
        ("sparsity", f"{100 * blob.sparsity:.1f}% zero levels"),
        *((("schema", schema_line(blob)),) if blob.schema is not None else ()),
        (
            "check",
            f"max |integer - float64| probability = {diff:.3g} on {len(X)} inputs "
            f"(same samples; bound {bound:.3g}; target 1/256 = {1 / 256:.3g})",
        ),
        ("check", f"integer class = trained model's predict on {100 * agree:.1f}% of them"),
        *onnx_check,
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _rows(blob: Blob) -> int:
    """R, the logit rows per posterior sample of a classifier blob (MF §11)."""
    return 1 if blob.classes == 2 else blob.classes


@command(PROG)
@click.argument("paths", nargs=-1, required=True, metavar="[MODEL] OUTPUT")
@click.option("--model", "model_option", metavar="MODEL", hidden=True, help="Older spelling of MODEL.")
@click.option(
    "--samples", type=click.IntRange(1, 65535), default=32, show_default=True, help="Posterior samples S."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for drawing the samples."
)
@click.option(
    "--layout",
    type=click.Choice(["auto", *LAYOUTS]),
    default="auto",
    show_default=True,
    help="Sparse layout of the samples (auto: chosen by --optimize for --target).",
)
@click.option(
    "--optimize",
    type=click.Choice(["speed", "size"]),
    default="speed",
    show_default=True,
    help="--layout auto: the fewest instructions per prediction on --target by the cost model, never "
    "larger than dense4 (speed), or the fewest bytes (size).",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="--layout auto: the blob's byte budget (the fastest or smallest layout that fits; error if none).",
)
@click.option(
    "--exact-moments/--no-exact-moments",
    default=True,
    show_default=True,
    help="Store the exact-moment vectors (IS §6, 4·b bytes) where they fit.",
)
@click.option(
    "--ensemble-floor/--no-ensemble-floor",
    default=True,
    show_default=True,
    help="Store the grid's rounding floor for the ensemble mode (docs/model-format.md §5.2, 2·b bytes; "
    "the exact moments carry it anyway: leave it out where only they are used and flash is short).",
)
@click.option(
    "--schema/--no-schema",
    default=True,
    show_default=True,
    help="Store the input schema (MF §10: column names, ranges, preprocessing; host only, the C library "
    "skips it) in the blob.",
)
@click.option("--integer", is_flag=True, help="ONNX: export the integer spec (int16 in, integer outputs).")
@click.option(
    "--activations",
    type=click.Choice(["8", "16"]),
    default="16",
    show_default=True,
    help="TFLite: feature width (16: int8 weights; 8: packed INT4 weights, coarser).",
)
@click.option(
    "--ensemble",
    is_flag=True,
    help="Float .onnx and .tflite: the S-sample ensemble graph instead of the exact moments.",
)
@click.option(
    "--target",
    type=click.Choice(list(TARGET_ARRAY_LIMITS)),
    default="any",
    show_default=True,
    help="The device: --layout auto's cost model (any: cortex-m4; avr: cortex-m0's table) and, for .h, "
    "the compiler's array limit (avr: 32,767 bytes).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def main(
    paths,
    model_option,
    samples,
    seed,
    layout,
    optimize,
    max_bytes,
    exact_moments,
    ensemble_floor,
    schema,
    integer,
    activations,
    ensemble,
    target,
    quiet,
) -> None:
    """Pack the trained MODEL (default model.direct) and write OUTPUT (.bin, .h, .onnx or .tflite)."""
    model_path, output = model_and_output(paths, model_option)
    summary = export(
        model_path,
        output,
        samples,
        seed,
        layout,
        exact_moments,
        integer,
        int(activations),
        ensemble,
        target,
        optimize,
        max_bytes,
        schema,
        ensemble_floor,
    )
    if not quiet:
        click.echo(summary)


def model_and_output(paths: tuple[str, ...], model_option: str | None) -> tuple[str, str]:
    """(MODEL, OUTPUT) from the positional arguments and the older ``--model`` option."""
    if len(paths) > 2:
        raise ExportError(f"expected [MODEL] OUTPUT, got {len(paths)} paths")
    if len(paths) == 2:
        if model_option is not None:
            raise ExportError("give the model once: as the first argument or with --model, not both")
        return paths[0], paths[1]
    return model_option or DEFAULT_MODEL, paths[0]


if __name__ == "__main__":  # pragma: no cover
    main()
