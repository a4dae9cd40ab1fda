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

from pathlib import Path

import click
import numpy as np

from direct_edge.commands import command
from direct_edge.export.c_header import c_identifier, render
from direct_edge.export.packed import LAYOUTS, ExportError, pack, save_blob
from direct_edge.files import check_not_an_input
from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, parse

PROG = "direct-export"
FORMATS = {".bin": "packed blob", ".h": "C header", ".onnx": "ONNX", ".tflite": "TFLite"}
# The Python packages each graph format is written and checked with, and the extra that installs them.
FORMAT_PACKAGES = {".onnx": ("onnx", "onnxruntime"), ".tflite": ("ai_edge_litert",)}
DEFAULT_MODEL = "model.direct"
CHECK_ROWS = 1000


def check_batch(blob: Blob, rows: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """int16 inputs (rows, d) spread over the whole input range, the extremes included."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-32768, 32768, (rows, blob.n_inputs), dtype=np.int16)
    q[0], q[1] = -32768, 32767
    return q


def float64_samples(model, blob: Blob, q: np.ndarray) -> np.ndarray:
    """The float64 per-sample predictions (n, S) in target units of the blob's samples at the
    dequantised inputs (IS §2): what every export is compared with."""
    Phi = model.feature_map_.transform(reference.dequantize_inputs(blob, q))
    return Phi @ (blob.levels.astype(np.float64) * model.grid_scale_).T * model.y_scale_ + model.y_offset_


def max_difference(model, blob: Blob, q: np.ndarray) -> tuple[float, float]:
    """(largest |integer − float64| over mean and sd, the IS §8 bound), both in target units."""
    mean_q, var_q, _ = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    f = float64_samples(model, blob, q)
    diff = max(np.max(np.abs(mean - f.mean(axis=1))), np.max(np.abs(sd - f.std(axis=1))))
    return float(diff), float(blob.mean_scale * (reference.error_bound(blob) + 1))


def _moment_difference(f: np.ndarray, noise: float, mean: np.ndarray, variance: np.ndarray) -> float:
    """Largest |Δ mean| or |Δ predictive sd| between float64 samples ``f`` (n, S) and an export's outputs."""
    sd64 = np.sqrt(f.var(axis=1) + noise)
    sd = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    return float(max(np.max(np.abs(mean - f.mean(axis=1))), np.max(np.abs(sd - sd64))))


def render_onnx(model, blob: Blob, integer: bool) -> bytes:
    """The .onnx bytes: the integer graph (IS §3–§5) or the float graph of the trainer's feature map."""
    from direct_edge.export import onnx_export

    if integer:
        return onnx_export.to_bytes(onnx_export.integer_model(blob))
    return onnx_export.to_bytes(onnx_export.float_model(blob, onnx_export.features_from_model(model)))


def check_onnx(model, blob: Blob, data: bytes, integer: bool, q: np.ndarray) -> str:
    """Run the exported bytes in onnxruntime on the check batch and describe the largest difference."""
    from direct_edge.export import onnx_export

    sess = onnx_export.session(data)
    if integer:
        got = sess.run(None, {"q": q})
        want = reference.predict(blob, q)
        diff = max(
            int(np.max(np.abs(g.astype(object) - w.astype(object)))) for g, w in zip(got, want, strict=True)
        )
        verdict = "bit-exact" if diff == 0 else "NOT bit-exact"
        return f"max |onnxruntime - integer reference| = {diff} on {len(q)} inputs ({verdict})"
    x = reference.dequantize_inputs(blob, q).astype(np.float32)
    mean, variance = sess.run(None, {"x": x})[:2]
    diff = _moment_difference(
        float64_samples(model, blob, q), onnx_export.noise_variance(blob), mean, variance
    )
    return f"max |onnxruntime float32 - float64| = {diff:.3g} on {len(q)} inputs"


def check_tflite(model, blob: Blob, data: bytes, activations: int, q: np.ndarray) -> str:
    """Run the exported bytes in LiteRT (reference kernels) and compare with float64, with the bound."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from direct_edge.export import onnx_export, tflite_export

    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(q.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], q)
    it.invoke()
    mean, variance = (it.get_tensor(o["index"]) for o in it.get_output_details()[:2])
    diff = _moment_difference(
        float64_samples(model, blob, q), onnx_export.noise_variance(blob), mean, variance
    )
    feats = onnx_export.features_from_model(model)
    bound = tflite_export.error_bound(blob, feats, tflite_export.integer_parameters(blob, feats, activations))
    return f"max |LiteRT - float64| = {diff:.3g} on {len(q)} inputs (bound {bound:.3g})"


def render_tflite(model, blob: Blob, activations: int) -> bytes:
    from direct_edge.export import onnx_export, tflite_export

    data = tflite_export.build(blob, onnx_export.features_from_model(model), activations)
    tflite_export.check_int4_buffers(data)
    return data


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
    exact: bool,
    integer: bool = False,
    activations: int = 16,
) -> str:
    """Pack, write and describe; returns the summary text."""
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
    data = pack(model, n_samples=samples, seed=seed, layout=layout, exact=exact)
    blob = parse(data)
    q = check_batch(blob)
    if out.suffix == ".onnx":
        payload = render_onnx(model, blob, integer)
        check = check_onnx(model, blob, payload, integer, q)
        save_blob(out, payload)
        fmt = f"ONNX, {'integer graph (IS §3-§5)' if integer else 'float graph'} ({out})"
    elif out.suffix == ".tflite":
        payload = render_tflite(model, blob, activations)
        check = check_tflite(model, blob, payload, activations, q)
        save_blob(out, payload)
        fmt = f"TFLite, int{activations} features ({out})"
    else:
        diff, bound = max_difference(model, blob, q)
        check = f"max |integer - float64| = {diff:.3g} on {CHECK_ROWS} inputs (bound {bound:.3g})"
        write_output(out, data)
        fmt = f"{FORMATS[out.suffix]} ({out})"
    rows = [
        ("format", fmt),
        ("size", f"{out.stat().st_size:,} bytes on disk, {len(data):,} bytes of blob"),
        ("model", f"{blob.kind_name} features, {blob.n_inputs} inputs, {blob.n_features} weights"),
        ("samples", f"{blob.n_samples} (seed {seed}), {blob.bits}-bit levels, layout {blob.layout_name}"),
        ("sparsity", f"{100 * blob.sparsity:.1f}% zero levels"),
        ("exact moments", "yes" if blob.has_exact else "no"),
        ("check", check),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


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
    help="Sparse layout of the samples (auto: the smallest).",
)
@click.option("--exact-moments", is_flag=True, help="Also store the exact-moment vectors (4·b bytes).")
@click.option("--integer", is_flag=True, help="ONNX: export the integer spec (int16 in, integer outputs).")
@click.option(
    "--activations",
    type=click.Choice(["8", "16"]),
    default="16",
    show_default=True,
    help="TFLite: feature width (16: int8 weights; 8: packed INT4 weights, coarser).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def main(paths, model_option, samples, seed, layout, exact_moments, integer, activations, quiet) -> None:
    """Pack the trained MODEL (default model.direct) and write OUTPUT (.bin, .h, .onnx or .tflite)."""
    model_path, output = model_and_output(paths, model_option)
    summary = export(model_path, output, samples, seed, layout, exact_moments, integer, int(activations))
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
