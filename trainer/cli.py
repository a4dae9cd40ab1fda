"""``direct-train``: fit a DirectRegressor (or, with ``--task classification``, a DirectClassifier:
trainer/classification_cli.py) on a data file and write ``model.direct``.

A thin layer over the library: :func:`direct_edge.trainer.data.open_table` reads the data,
:meth:`DirectRegressor.fit_source` fits, :func:`evaluate` scores a source in one streaming pass and
:func:`direct_edge.trainer.model_file.save_model` writes the model atomically.  Every problem a user
can cause (a missing file, a bad value, an unwritable output) ends the program with one line on
stderr, ``direct-train: error: ...``, and exit code 2, before any output file is touched; an output
is never written over the data it was trained or tested on.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from direct_edge.commands import command
from direct_edge.files import check_distinct, check_not_an_input, check_writable, write_atomic
from direct_edge.trainer.data import ArraySource, TableSource, data_files, open_table, split_source
from direct_edge.trainer.errors import DataError, FloatGapWarning
from direct_edge.trainer.model_file import save_model
from direct_edge.trainer.regressor import FLOAT_GAP_FLOOR, DirectRegressor, float_gap_causes
from direct_edge.trainer.statistics import check_memory_for

PROG = "direct-train"
DEMO_TEST_FRACTION = 0.2
PLOT_ROWS = 1000
# A regression target with at most this many distinct values, all integers, gets a note pointing to
# --task classification (class labels coded as numbers are a common mistake, not an error).
FEW_VALUES = 10
ELBO_EVERY = 50
LEVELS = {False: "symmetric", True: "two's-complement"}
POSITIVE = click.FloatRange(min=0, min_open=True)


@dataclass
class Scores:
    """Predictive scores over ``n`` rows: RMSE of the mean and mean Gaussian NLPD (nats)."""

    n: int
    rmse: float
    nlpd: float


class DistinctTargets:
    """The distinct values of a regression target seen so far, while they are few integers: whether
    the target looks like class labels coded as numbers (``values`` None once it does not)."""

    def __init__(self, limit: int = FEW_VALUES) -> None:
        self.limit = limit
        self.values: set[float] | None = set()

    def update(self, y: np.ndarray) -> None:
        """Add the (k,) target values of a chunk."""
        if self.values is None:
            return
        if not np.all(y == np.round(y)):
            self.values = None
            return
        self.values.update(np.unique(y).tolist())
        if len(self.values) > self.limit:
            self.values = None

    def note(self, target: str) -> str | None:
        """The one-line note for stderr, or None when the target does not look like classes."""
        if not self.values:
            return None
        shown = ", ".join(f"{v:g}" for v in sorted(self.values))
        return (
            f"{PROG}: note: the target {target!r} holds only {len(self.values)} distinct values, all "
            f"integers ({shown}); if they are classes, train a classifier with --task classification"
        )


def evaluate(
    model, source: TableSource, chunk_rows: int = 4096, distinct: DistinctTargets | None = None
) -> Scores:
    """Score a fitted regressor on every row of ``source`` in one streaming pass.

    NLPD per row: ½ log(2π var) + (y − mean)² / (2 var) with the exact predictive moments.
    ``distinct``, if given, sees every target value of the pass (not with a Dask source).
    """
    own = getattr(source, "scores", None)
    if callable(own):  # a Dask source scores its partitions on the workers (docs/trainer.md §10)
        n, sq, nlpd = own(model)
    else:
        n, sq, nlpd = 0, 0.0, 0.0
        for X, y in source.batches(chunk_rows):
            mean, sd = model.predict_rows(X)
            var = sd * sd
            resid2 = (y - mean) ** 2
            if distinct is not None:
                distinct.update(y)
            n += len(y)
            sq += float(resid2.sum())
            nlpd += float(np.sum(0.5 * np.log(2.0 * np.pi * var) + resid2 / (2.0 * var)))
    if n == 0:
        raise DataError(f"{source.where}: no rows to score")
    return Scores(n, math.sqrt(sq / n), nlpd / n)


def demo_data() -> tuple[TableSource, str]:
    """scikit-learn's bundled diabetes data (442 rows, 10 inputs; no download)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    source = ArraySource(
        data.data, data.target, list(data.feature_names), "progression", where="diabetes (scikit-learn)"
    )
    return source, source.where


def features_for(features: str, n_features: int, n_inputs: int) -> int:
    """b, the number of features the fit will use (checked before any pass over the data)."""
    if features == "linear":
        return n_inputs + 1
    if n_features < 2 or n_features % 2:
        raise DataError(f"--n-features must be even and at least 2 for rff features, got {n_features}")
    return n_features


def check_compatible(train: TableSource, test: TableSource) -> None:
    if test.n_inputs != train.n_inputs:
        raise DataError(
            f"test data {test.where} has {test.n_inputs} input columns, the training data {train.n_inputs}"
        )
    if train.named_columns and test.named_columns and test.input_names != train.input_names:
        raise DataError(
            f"test data {test.where} has input columns {', '.join(test.input_names)}; "
            f"the training data has {', '.join(train.input_names)}"
        )


class ElboPrinter:
    """Regressor callback: a line when a stage starts, then the ELBO every ``every`` iterations of
    the final fit, and every 5 × ``every`` evaluations while candidates are compared.  A stage may
    run the optimiser several times (several starts, several candidates); ``run`` counts them."""

    def __init__(self, every: int = ELBO_EVERY, echo=click.echo) -> None:
        self.every, self.echo = every, echo
        self.stage: str | None = None
        self.run = self.count = self.last = 0

    def __call__(self, stage: str, iteration: int, elbo: float) -> None:
        if stage != self.stage:
            self.stage, self.run, self.count, self.last = stage, 0, 0, 0
            self.echo(f"{stage} ...")
        if iteration <= self.last:
            self.run += 1
        self.last = iteration
        self.count += 1
        if stage.startswith("fit"):
            if iteration % self.every == 0:
                self.echo(f"  {stage}  run {self.run + 1}  iteration {iteration:5d}  ELBO {elbo:.4f}")
        elif self.count % (5 * self.every) == 0:
            self.echo(f"  {stage}  run {self.run + 1}  evaluation {self.count:5d}  ELBO {elbo:.4f}")


def _head_rows(source: TableSource, n_rows: int, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    Xs, ys, n = [], [], 0
    for X, y in source.batches(chunk_rows):
        Xs.append(X[: n_rows - n])
        ys.append(y[: n_rows - n])
        n += len(ys[-1])
        if n >= n_rows:
            break
    return np.concatenate(Xs), np.concatenate(ys)


def check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DataError("--plot needs matplotlib; install it with: pip install direct-edge[plot]") from None


def plot_fit(path: Path, model, X: np.ndarray, y: np.ndarray, label: str) -> None:
    """Two panels: the ELBO trace, and predicted vs true with ±2 sd bars on ``X``, ``y``.
    Written atomically (direct_edge.files.write_atomic)."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    mean, sd = model.predict_rows(X)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_trace, ax_pred = fig.subplots(1, 2)
    trace = np.asarray(model.trace_, dtype=np.float64)
    ax_trace.plot(np.arange(1, trace.size + 1), trace, lw=1)
    ax_trace.set(
        xlabel="iteration (chosen run, then the final fit)", ylabel="ELBO (nats)", title="ELBO trace"
    )
    finite = trace[np.isfinite(trace)]
    if finite.size > 10:  # the prior starts far below; show where the fits end up
        lo = np.quantile(finite, 0.05)
        ax_trace.set_ylim(lo - 0.05 * (finite.max() - lo), finite.max() + 0.05 * (finite.max() - lo))
    ax_pred.errorbar(y, mean, yerr=2 * sd, fmt="o", ms=3, lw=0.6, alpha=0.6, capsize=0)
    lims = [min(y.min(), mean.min()), max(y.max(), mean.max())]
    ax_pred.plot(lims, lims, "k--", lw=0.8)
    ax_pred.set(xlabel="true", ylabel="predicted (mean ± 2 sd)", title=f"{label} ({len(y)} rows)")
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def column_list(text: str | None) -> list[str] | None:
    """``--inputs``/``--drop`` as a list of column names (None when not given); "" is the name of an
    unnamed column, so ``--drop ''`` leaves out pandas' index column."""
    if text is None:
        return None
    return [c.strip() for c in text.split(",")]


def converged_text(summary: dict) -> str:
    """The convergence row: yes, or a warning that the fit stopped at --max-iter."""
    if summary.get("converged", True):
        return "yes" + (f" ({summary['n_iter']} optimiser steps)" if "n_iter" in summary else "")
    return (
        f"NO: the final fit stopped at --max-iter {summary['max_iter']} before the ELBO converged; "
        "the model may be poor: train again with a larger --max-iter"
    )


def float_check(model: DirectRegressor) -> dict:
    """The check against the float model (docs/trainer.md §9) for the printed summary.  Not part of the
    stored summary, which every export carries in its blob's meta section (MF §5): the model file holds
    ``float_train_rmse_`` itself, and 100 more bytes of meta would not fit the Arduino Uno example."""
    return {
        "float_train_rmse": float(model.float_train_rmse_),
        "float_gap": model.float_gap_,
        # below this (1e-3 sd(y)) the statistics' RMSE is round-off
        "float_train_rmse_floor": FLOAT_GAP_FLOOR * float(model.y_scale_),
    }


def float_gap_text(gap: float, params: dict) -> str:
    """The flag of a fit that falls behind the float model on its training rows (docs/trainer.md §9,
    "Against the float model"), for a fit with ``params``."""
    causes = float_gap_causes(params, lambda name: "--" + name.replace("_", "-"))
    return (
        f"the training RMSE is {gap:.3g}x the float model's on the same features, so the test RMSE is "
        f"likely above the float model's too (measured causes: {causes})"
    )


def format_summary(summary: dict, model_path: Path | None = None, plot_path: Path | None = None) -> str:
    """The summary (as stored in the model file) as aligned lines of text."""
    s = summary
    ell = s["lengthscale"]
    if ell is None:
        ell_text = "none (linear features)"
    elif np.ndim(ell) == 0 or np.size(ell) == 1:
        ell_text = f"{_fmt(float(np.ravel(ell)[0]))} (standardised input units)"
    else:
        ell_text = f"ARD, mean {_fmt(float(np.mean(ell)))} over {len(ell)} inputs (standardised input units)"
    family = s["family"]
    if family == "mixture":
        family += f", {s['n_components']} components, entropy {s['entropy']}"
    prior = s["prior"] if s["prior_scale"] is None else f"{s['prior']}, scale {_fmt(s['prior_scale'])} sd(y)"
    rows = [("data", f"{s['data']}, target {s['target']!r}")]
    if len(s.get("files", ())) > 1:
        rows.append(("files read", ", ".join(s["files"])))
    rows += [
        ("rows n", f"{s['n_train']} train" + (f", {s['n_test']} test" if "n_test" in s else "")),
        ("inputs d", f"{s['n_inputs']}: {', '.join(s['input_names'])}"),
        ("features b", f"{s['n_features']} ({s['features']})"),
        ("family", family),
        ("bits", f"{s['bits']} ({LEVELS[not s['symmetric']]} levels)"),
        ("ELBO", f"{s['elbo']:.4f} nats"),
        ("converged", converged_text(s)),
        ("grid scale Δ", f"{_fmt(s['grid_scale'])} sd(y)" + grids_text(s)),
        ("prior", prior),
        ("lengthscale", ell_text),
    ]
    if s["candidate_fits"]:
        rows.append(
            ("chosen by ELBO", f"{', '.join(s['chosen_by_elbo'])} ({s['candidate_fits']} candidate fits)")
        )
    rows += [
        ("E[σ²]", f"{_fmt(s['noise_variance'])} (noise sd {_fmt(math.sqrt(s['noise_variance']))})"),
        ("train RMSE / NLPD", f"{_fmt(s['train_rmse'])} / {s['train_nlpd']:.4f}"),
    ]
    if "float_train_rmse" in s:  # float_check() adds it when printing; a stored summary has none
        gap = s.get("float_gap")
        flag = (
            ""
            if gap is None
            else f"; FLAGGED: this fit's is {gap:.3g}x, so its test RMSE is likely above the float model's"
        )
        floor = s.get("float_train_rmse_floor", 0.0)
        value = _fmt(s["float_train_rmse"]) if s["float_train_rmse"] >= floor else f"below {_fmt(floor)}"
        rows.append(("float train RMSE", f"{value} (float model, same features){flag}"))
    if "n_test" in s:
        rows.append(("test RMSE / NLPD", f"{_fmt(s['test_rmse'])} / {s['test_nlpd']:.4f}"))
    rows += [
        ("sparsity", f"{100 * s['sparsity']:.1f}% zero weights ({s['posterior_samples']} posterior samples)"),
        ("time", f"{s['wall_time_s']:.2f} s wall, {s['fit_time_s']:.2f} s fitting"),
    ]
    if model_path is not None:
        rows.append(("model", f"{model_path} ({model_path.stat().st_size:,} bytes)"))
    if plot_path is not None:
        rows.append(("plot", str(plot_path)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


@command(PROG)
@click.argument("data", required=False)
@click.option(
    "--task",
    type=click.Choice(["regression", "classification"]),
    default="regression",
    show_default=True,
    help="classification: the target holds class labels (integers or text, kept as the file has them); "
    "fits a DirectClassifier with the table read into memory, and scores held-out rows by accuracy, log "
    "loss, Brier score and ECE.  --family, --components, --entropy and --scheduler are regression only.  "
    "Scales (--grid-scale, --prior-scale) are then in logit units.",
)
@click.option(
    "--target",
    metavar="COL",
    multiple=True,
    help="Target column: a name, or a 0-based index for files without column names.",
)
@click.option(
    "--sep",
    metavar="CHAR",
    help="Text files: the field separator (default: ',' for .csv, a tab for .tsv, sniffed for .txt; "
    "'\\s+' for whitespace).",
)
@click.option(
    "--decimal", metavar="CHAR", default=".", show_default=True, help="Text files: the decimal mark."
)
@click.option(
    "--header/--no-header",
    default=None,
    help="Text files: whether the first row names the columns [default: decided from the first row].",
)
@click.option(
    "--inputs",
    metavar="COLS",
    help="The input columns, comma-separated, in the order the model takes them "
    "(0-based indices for files without column names) [default: every column but the target].",
)
@click.option(
    "--drop",
    metavar="COLS",
    multiple=True,
    help="Columns to leave out (an ID, a date), comma-separated; may be repeated.",
)
@click.option(
    "--categorical",
    metavar="COLS",
    multiple=True,
    help="Categorical input columns, comma-separated: one-hot encoded over the levels seen in training "
    "(an unseen level is refused when predicting); may be repeated.",
)
@click.option(
    "--missing",
    type=click.Choice(["refuse", "mean-indicator"]),
    default="refuse",
    show_default=True,
    help="Missing values in numeric inputs: refuse (name the column and row), or mean-indicator (the "
    "training mean in their place plus a 0/1 input NAME_missing per column that had any).",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    default="model.direct",
    show_default=True,
    help="Where to write the model file.",
)
@click.option("--features", type=click.Choice(["rff", "linear"]), default="rff", show_default=True)
@click.option(
    "--n-features",
    metavar="B",
    type=int,
    default=256,
    show_default=True,
    help="b, the number of rff features (even).",
)
@click.option(
    "--lengthscale", type=POSITIVE, help="rff lengthscale (standardised inputs); default: chosen by the ELBO."
)
@click.option("--bits", type=click.IntRange(2, 8), default=4, show_default=True, help="Bits per weight.")
@click.option("--asymmetric", is_flag=True, help="Two's-complement levels −2^(k−1)..2^(k−1)−1.")
@click.option(
    "--grid-scale", type=POSITIVE, help="Grid step Δ in units of sd(y); default: chosen by the ELBO."
)
@click.option(
    "--grid-gains",
    type=click.Choice(["auto", "evidence", "none"]),
    default="auto",
    show_default=True,
    help="Per-feature grids (evidence), one grid for all weights (none), or both, keeping the higher ELBO "
    "(classification: auto and evidence are per-feature grids sized as docs/trainer.md §11 says).",
)
@click.option(
    "--rotation",
    type=click.Choice(["none", "eigen"]),
    default="none",
    show_default=True,
    help="eigen: rotate the rff features into their Gram matrix's eigenbasis, so the 4-bit posterior keeps "
    "up with the float model at large --features; the device then does b² more multiply-adds per "
    "prediction and holds 2b² more bytes (docs/trainer.md §3).",
)
@click.option(
    "--prior", type=click.Choice(["uniform", "gaussian", "sparse"]), default="gaussian", show_default=True
)
@click.option("--prior-scale", type=POSITIVE, help="Prior sd in units of sd(y); default: chosen by the ELBO.")
@click.option(
    "--zero-mass",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="Extra prior mass on 0 (sparse prior).",
)
@click.option(
    "--family", type=click.Choice(["mean-field", "mixture"]), default="mean-field", show_default=True
)
@click.option(
    "--components", type=click.IntRange(min=1), default=5, show_default=True, help="Mixture components."
)
@click.option("--entropy", type=click.Choice(["bound", "reinforce"]), default="bound", show_default=True)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    help="Regression: posterior samples drawn to report the sparsity [default: 100].  Classification: "
    "posterior samples the predicted probabilities average over [default: 512].",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed for features, split and samples.",
)
@click.option("--max-iter", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--test", "test_path", metavar="FILE", help="Score the model on this data file (same columns).")
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help=f"Hold out this share of the rows for testing [default: {DEMO_TEST_FRACTION} for the demo].",
)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Statistics pass precision; float32 is about 2x faster at large b (docs/trainer.md §4).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Compute the statistics on this Dask scheduler (e.g. tcp://host:8786); DATA (a file or a "
    "glob) must be readable by every worker.  Needs: pip install direct-edge[dask].",
)
@click.option(
    "--plot",
    "plot_path",
    metavar="FILE.png",
    help="Write a PNG with the ELBO trace and predicted vs true (classification: a reliability diagram of "
    "the held-out rows, 15 confidence bins, the ECE in the title).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or ELBO lines; only the summary.")
def main(data, target, output, test_path, test_fraction, plot_path, quiet, **options) -> None:
    """Train a DIRECT model on DATA (CSV, TSV, TXT, Parquet, NPZ or NPY) and write OUTPUT.

    DATA may be a quoted glob ("data/*.csv"): the files are read as one table.  Without DATA,
    trains on scikit-learn's diabetes data (with --task classification: its breast cancer data)
    with 20% held out for testing.  The target is the last column unless --target names another.

    With --task classification the target holds class labels and the summary scores the held-out rows
    (--test or --test-fraction): accuracy, log loss, Brier score (summed over the classes) and the
    expected calibration error over 15 equal-width confidence bins (docs/trainer.md §11).
    """
    if options["task"] == "classification":  # an option given at all, even at its default, is refused
        from click.core import ParameterSource

        from direct_edge.trainer.classification_cli import REGRESSION_ONLY

        ctx = click.get_current_context()
        for name in REGRESSION_ONLY:
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                raise DataError(f"--{name} applies to regression only, not to --task classification")
    if len(target) > 1:
        raise DataError(
            f"--target given {len(target)} times ({', '.join(target)}); a model predicts one target"
        )
    options["inputs"] = column_list(options["inputs"])
    options["drop"] = column_list(",".join(options["drop"])) if options["drop"] else None
    options["categorical"] = column_list(",".join(options["categorical"])) if options["categorical"] else None
    train(data, target[0] if target else None, output, test_path, test_fraction, plot_path, quiet, **options)


def grids_text(s: dict) -> str:
    """The summary's note on per-feature grids (docs/trainer.md §2), empty for one shared grid."""
    if not s.get("per_feature_grids"):
        return ""
    return " for the largest weight; per-feature grids, each weight's step in proportion to its size"


def train(
    data: str | None = None,
    target: str | None = None,
    output: str = "model.direct",
    test_path: str | None = None,
    test_fraction: float | None = None,
    plot_path: str | None = None,
    quiet: bool = False,
    *,
    features: str = "rff",
    n_features: int = 256,
    lengthscale: float | None = None,
    bits: int = 4,
    asymmetric: bool = False,
    grid_scale: float | None = None,
    grid_gains: str = "auto",
    rotation: str = "none",
    prior: str = "gaussian",
    prior_scale: float | None = None,
    zero_mass: float = 0.5,
    family: str = "mean-field",
    components: int = 5,
    entropy: str = "bound",
    samples: int | None = None,
    seed: int = 0,
    max_iter: int = 2000,
    chunk_rows: int = 4096,
    precision: str = "float64",
    scheduler: str | None = None,
    sep: str | None = None,
    decimal: str = ".",
    header: bool | None = None,
    inputs: list[str] | None = None,
    drop: list[str] | None = None,
    categorical: list[str] | None = None,
    missing: str = "refuse",
    task: str = "regression",
):
    """``direct-train`` as one call (arguments as the options, same defaults): check the outputs,
    open the data, hold out test rows, fit, summarise, write ``output`` (and ``plot_path``), print
    the summary.  Returns the fitted DirectRegressor (``task="classification"``: DirectClassifier,
    trainer/classification_cli.py), whose ``summary_`` is the summary stored in the model file.
    User errors raise DataError before any file is written.  With ``scheduler`` the statistics,
    moments and scores are computed on that Dask cluster (docs/trainer.md §10)."""
    started = time.perf_counter()
    if task not in ("regression", "classification"):
        raise DataError(f"--task must be regression or classification, got {task!r}")
    if task == "classification":
        from direct_edge.trainer.classification_cli import refuse_regression_options

        refuse_regression_options(
            dict(
                family=family,
                components=components,
                entropy=entropy,
                scheduler=scheduler,
                rotation=rotation,
            )
        )
    if test_path is not None and test_fraction is not None:
        raise DataError("give either --test or --test-fraction, not both")
    if data is None and (inputs is not None or drop is not None):
        raise DataError("--inputs and --drop choose columns of DATA; give a data file")
    if scheduler is not None and data is None:
        raise DataError("--scheduler needs DATA: a file or a glob that every Dask worker can read")
    if scheduler is not None and test_fraction is not None:
        raise DataError("--test-fraction is not available with --scheduler; hold out a file with --test")
    out, plot = check_outputs(output, plot_path, [p for p in (data, test_path) if p is not None])
    if task == "classification":
        from direct_edge.trainer.classification_cli import train_classifier

        reading = {"sep": sep, "decimal": decimal, "header": header, "inputs": inputs, "drop": drop}
        return train_classifier(
            data,
            target,
            out,
            plot,
            test_path,
            test_fraction,
            quiet,
            reading,
            started,
            features=features,
            n_features=n_features,
            lengthscale=lengthscale,
            bits=bits,
            asymmetric=asymmetric,
            grid_scale=grid_scale,
            grid_gains=grid_gains,
            prior=prior,
            prior_scale=prior_scale,
            zero_mass=zero_mass,
            samples=samples,
            seed=seed,
            max_iter=max_iter,
            chunk_rows=chunk_rows,
            precision=precision,
            categorical=categorical,
            missing=missing,
        )
    samples = 100 if samples is None else samples

    # Dask is imported only here, with --scheduler; the client closes on the way out.
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            stack.enter_context(connect_to_cluster(scheduler))
        reading = {"sep": sep, "decimal": decimal, "header": header, "inputs": inputs, "drop": drop}
        source, data_label = open_training_data(data, target, scheduler, reading)
        if categorical or missing != "refuse":  # the preprocessing stage (trainer/preprocessing.py)
            from direct_edge.trainer.preprocessing import prepare_source

            source = prepare_source(source, list(categorical or ()), missing, chunk_rows)
        if data is None and test_path is None and test_fraction is None:
            test_fraction = DEMO_TEST_FRACTION
        check_memory_for(features_for(features, n_features, source.n_inputs))
        train_source, test_source = hold_out(
            source, test_path, test_fraction, target, seed, chunk_rows, reading
        )

        model = DirectRegressor(
            features=features,
            n_features=n_features,
            lengthscale=lengthscale,
            bits=bits,
            symmetric=not asymmetric,
            grid_scale=grid_scale,
            grid_gains=grid_gains,
            rotation=rotation,
            prior=prior,
            prior_scale=prior_scale,
            zero_mass=zero_mass,
            family=family,
            n_components=components,
            entropy=entropy,
            max_iter=max_iter,
            chunk_rows=chunk_rows,
            precision=precision,
            random_state=seed,
        )
        echo = (lambda *a, **k: None) if quiet else click.echo
        echo(f"training on {data_label}: {source.n_inputs} inputs, target {source.target_name!r}")
        progress = not quiet and sys.stderr.isatty()
        with warnings.catch_warnings(), on_the_cluster(scheduler):
            # both said once below, in the CLI's words
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FloatGapWarning)
            model.fit_source(
                train_source, progress=progress, callback=None if quiet else ElboPrinter(echo=echo)
            )
        chosen = report_fit(model, echo, lengthscale, grid_scale, prior_scale)
        if (gap := model.float_gap_) is not None:
            click.echo(f"{PROG}: warning: {float_gap_text(gap, model.get_params())}", err=True)
        if (ratio := model.noise_gap_) is not None:
            click.echo(
                f"{PROG}: warning: the noise sd is {ratio:.3g}x the float model's on the same features, so "
                "the intervals are likely too narrow: with this few rows per feature use fewer --n-features "
                "or more rows",
                err=True,
            )
        distinct = DistinctTargets()
        with on_the_cluster(scheduler):
            summary = summarise(
                model, source, train_source, test_source, data_label, chosen, samples, chunk_rows, distinct
            )
        if (note := distinct.note(source.target_name)) is not None:
            click.echo(note, err=True)
        model.schema_ = getattr(source, "schema", None)  # the preprocessing stage, if any
        save_model(out, model, summary)  # no timings in the file: same data and seed, same bytes
        if plot is not None:
            shown, label = (
                (test_source, "test rows") if test_source is not None else (train_source, "training rows")
            )
            plot_fit(plot, model, *_head_rows(shown, PLOT_ROWS, chunk_rows), label)
        timings = {"fit_time_s": float(model.fit_time_), "wall_time_s": time.perf_counter() - started}
        click.echo(format_summary({**summary, **timings, **float_check(model)}, out, plot))
        model.summary_ = summary
        return model


def report_fit(model, echo, lengthscale, grid_scale, prior_scale) -> list[str]:
    """After a fit of either task: a one-line warning on stderr when the final fit stopped at
    ``max_iter`` (said in the CLI's words, not scikit-learn's), the final ELBO through ``echo``, and the
    names of the hyperparameters the ELBO chose (those not given on the command line that apply to the
    fitted model's features and prior), for the summary."""
    params = model.get_params()
    if not model.converged_:
        click.echo(
            f"{PROG}: warning: the final fit stopped at --max-iter {params['max_iter']} before the ELBO "
            "converged",
            err=True,
        )
    echo(f"final ELBO {model.elbo_:.4f} after {model.n_iter_} iterations")
    return [
        name
        for name, given, applies in (
            ("lengthscale", lengthscale, params["features"] == "rff"),
            ("grid scale", grid_scale, True),
            ("prior scale", prior_scale, params["prior"] != "uniform"),
        )
        if given is None and applies
    ]


def check_outputs(output: str, plot_path: str | None, inputs: list[str]) -> tuple[Path, Path | None]:
    """(model path, plot path or None), each checked writable, not one of the ``inputs`` (every file a
    glob among them matches) and not each other, before any work is done, so that a failure leaves
    nothing behind and overwrites nothing."""
    files: list[str] = []
    for given in inputs:
        try:
            files += data_files(given)
        except DataError:
            files.append(given)  # a pattern that matches nothing: opening it says so
    out = Path(output)
    check_writable(out, "output")
    check_not_an_input(out, files)
    plot = Path(plot_path) if plot_path else None
    if plot is not None:
        check_plotting()
        check_writable(plot, "plot")
        check_distinct(out, plot, "-o and --plot")
        check_not_an_input(plot, files)
        if plot.suffix.lower() != ".png":  # the figure is always written as PNG (plot_fit, plot_reliability)
            raise DataError(f"--plot {plot}: the plot is a PNG image; give a path ending in .png")
    return out, plot


def connect_to_cluster(scheduler: str):
    """The Dask client context for ``--scheduler`` (docs/trainer.md §10), or a DataError naming the
    extra to install when Dask is missing."""
    try:
        from direct_edge.trainer.distributed import connect
    except ImportError:
        raise DataError("--scheduler needs Dask; install it with: pip install 'direct-edge[dask]'") from None
    return connect(scheduler)


def on_the_cluster(scheduler: str | None):
    """Around work the Dask cluster does: its failures become one DataError naming the cause
    (:func:`direct_edge.trainer.distributed.cluster_failures`); nothing without ``scheduler``."""
    if scheduler is None:
        return contextlib.nullcontext()
    from direct_edge.trainer.distributed import cluster_failures

    return cluster_failures(scheduler)


def open_training_data(
    data: str | None, target: str | None, scheduler: str | None, reading: dict
) -> tuple[TableSource, str]:
    """(source, label): DATA on the cluster with ``scheduler``, DATA read here, or the demo data.
    ``reading``: the text-file options (sep, decimal, header) of :func:`open_table`."""
    if scheduler is not None:
        from direct_edge.trainer.distributed import DaskSource

        return DaskSource.from_files(data, target, **reading), data
    if data is None:
        return demo_data()
    return open_table(data, target, **reading), data


def hold_out(
    source: TableSource,
    test_path: str | None,
    test_fraction: float | None,
    target: str | None,
    seed: int,
    chunk_rows: int,
    reading: dict,
) -> tuple[TableSource, TableSource | None]:
    """(training rows, test rows or None): ``test_path`` read in full now (a bad test file fails
    before the fit), or a seeded ``test_fraction`` of ``source`` held out."""
    if test_path is not None:
        test_source = open_table(test_path, target, **reading)
        if getattr(source, "schema", None) is not None:  # read through the training data's stage
            from direct_edge.trainer.preprocessing import apply_schema

            test_source = apply_schema(test_source, source.schema)
        check_compatible(source, test_source)
        for _ in test_source.batches(chunk_rows):
            pass
        return source, test_source
    if test_fraction is not None:
        train_source, X_test, y_test = split_source(source, test_fraction, seed)
        held = ArraySource(X_test, y_test, source.input_names, source.target_name, "held-out rows")
        return train_source, held
    return source, None


def summarise(
    model: DirectRegressor,
    source: TableSource,
    train_source: TableSource,
    test_source: TableSource | None,
    data_label: str,
    chosen_by_elbo: list[str],
    samples: int,
    chunk_rows: int,
    distinct: DistinctTargets | None = None,
) -> dict:
    """The fit summary stored in the model file and printed: settings, fitted hyperparameters
    (``chosen_by_elbo`` names those the ELBO chose), training (and test) scores and the sparsity
    of ``samples`` posterior samples.  ``distinct`` sees the training targets (:func:`evaluate`)."""
    params = model.get_params()
    train_scores = evaluate(model, train_source, chunk_rows, distinct)
    summary = {
        "data": data_label,
        "target": source.target_name,
        "input_names": source.input_names,
        "files": list(getattr(source, "files", ()) or ()),
        "n_train": int(model.n_train_),
        "n_inputs": int(source.n_inputs),
        "n_features": int(model.feature_map_.n_features),
        "features": params["features"],
        "family": params["family"],
        "n_components": params["n_components"] if params["family"] == "mixture" else 1,
        "entropy": params["entropy"],
        "bits": params["bits"],
        "symmetric": params["symmetric"],
        "prior": params["prior"],
        "elbo": float(model.elbo_),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "max_iter": int(params["max_iter"]),
        "grid_scale": float(model.grid_scale_),
        "per_feature_grids": model.posterior_.weight_grid.gains is not None,
        "prior_scale": None if model.prior_scale_ is None else float(model.prior_scale_),
        "lengthscale": None if model.lengthscale_ is None else np.asarray(model.lengthscale_).tolist(),
        "chosen_by_elbo": chosen_by_elbo,
        "candidate_fits": len(model.selection_),
        "noise_variance": float(model.noise_variance_),
        "train_rmse": train_scores.rmse,
        "train_nlpd": train_scores.nlpd,
        "sparsity": float(model.sample(samples, params["random_state"]).sparsity),
        "posterior_samples": samples,
    }
    if test_source is not None:
        test_scores = evaluate(model, test_source, chunk_rows)
        summary.update(n_test=test_scores.n, test_rmse=test_scores.rmse, test_nlpd=test_scores.nlpd)
    return summary


if __name__ == "__main__":  # pragma: no cover
    main()
