"""``direct-export [--model model.direct] OUTPUT``: pack a trained model for a target.

The format follows OUTPUT's extension: ``.bin`` (the packed blob, docs/model-format.md) or ``.h`` (the
same bytes as a C header).  After writing, the command prints a summary and the largest difference
between the integer runtime's predictions and the float64 evaluation of the same posterior samples on
a check batch drawn from the model's input range.  Problems a user can cause end with one line on
stderr, ``direct-export: error: ...``, exit code 2, and no output file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from direct_edge.export.c_header import c_identifier, render
from direct_edge.export.packed import LAYOUTS, ExportError, pack, save_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import Blob, parse

PROG = "direct-export"
FORMATS = {".bin": "packed blob", ".h": "C header"}
CHECK_ROWS = 1000


def check_batch(blob: Blob, rows: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """int16 inputs (rows, d) spread over the whole input range, the extremes included."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-32768, 32768, (rows, blob.n_inputs), dtype=np.int16)
    q[0], q[1] = -32768, 32767
    return q


def max_difference(model, blob: Blob, q: np.ndarray) -> tuple[float, float]:
    """(largest |integer − float64| over mean and sd, the IS §8 bound), both in target units."""
    mean_q, var_q, _ = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    Phi = model.feature_map_.transform(reference.dequantize_inputs(blob, q))
    f = Phi @ (blob.levels.astype(np.float64) * model.grid_scale_).T * model.y_scale_ + model.y_offset_
    diff = max(np.max(np.abs(mean - f.mean(axis=1))), np.max(np.abs(sd - f.std(axis=1))))
    return float(diff), float(blob.mean_scale * (reference.error_bound(blob) + 1))


def write_output(path: Path, blob_bytes: bytes) -> None:
    if path.suffix == ".bin":
        save_blob(path, blob_bytes)
    else:
        save_blob(path, render(blob_bytes, c_identifier(path.stem)).encode("utf-8"))


def export(model_path: str, output: str, samples: int, seed: int, layout: str, exact: bool) -> str:
    """Pack, write and describe; returns the summary text."""
    out = Path(output)
    if out.suffix not in FORMATS:
        raise ExportError(
            f"cannot tell the format of {output}: use a {' or '.join(FORMATS)} file name "
            "(ONNX and TFLite export are not in this version yet)"
        )
    if not out.parent.is_dir():
        raise ExportError(f"output directory {out.parent} does not exist")
    from direct_edge.trainer.errors import ModelFileError
    from direct_edge.trainer.model_file import load_model

    try:
        model = load_model(model_path)
    except (ModelFileError, OSError) as exc:
        raise ExportError(str(exc)) from None
    data = pack(model, n_samples=samples, seed=seed, layout=layout, exact=exact)
    blob = parse(data)
    diff, bound = max_difference(model, blob, check_batch(blob))
    write_output(out, data)
    rows = [
        ("format", f"{FORMATS[out.suffix]} ({out})"),
        ("size", f"{out.stat().st_size:,} bytes on disk, {len(data):,} bytes of blob"),
        ("model", f"{blob.kind_name} features, {blob.n_inputs} inputs, {blob.n_features} weights"),
        ("samples", f"{blob.n_samples} (seed {seed}), {blob.bits}-bit levels, layout {blob.layout_name}"),
        ("sparsity", f"{100 * blob.sparsity:.1f}% zero levels"),
        ("exact moments", "yes" if blob.has_exact else "no"),
        ("check", f"max |integer - float64| = {diff:.3g} on {CHECK_ROWS} inputs (bound {bound:.3g})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


@click.command(name=PROG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("output")
@click.option("--model", "model_path", default="model.direct", show_default=True, help="Trained model file.")
@click.option(
    "--samples", type=click.IntRange(1, 65535), default=32, show_default=True, help="Posterior samples S."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing the samples.")
@click.option(
    "--layout",
    type=click.Choice(["auto", *LAYOUTS]),
    default="auto",
    show_default=True,
    help="Sparse layout of the samples (auto: the smallest).",
)
@click.option("--exact-moments", is_flag=True, help="Also store the exact-moment vectors (4·b bytes).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def main(output, model_path, samples, seed, layout, exact_moments, quiet) -> None:
    """Pack the trained model for the integer runtime and write OUTPUT (.bin or .h)."""
    try:
        summary = export(model_path, output, samples, seed, layout, exact_moments)
    except (ExportError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"{PROG}: error: {message}", err=True)
        sys.exit(2)
    if not quiet:
        click.echo(summary)
