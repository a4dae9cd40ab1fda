"""``direct-train --task classification``: fit a DirectClassifier on a data file (docs/trainer.md §11).

The data are read with the same readers, options and checks as regression (trainer/data.py), except
the target column: its cells are class labels, kept as the file has them (integers stay integers,
text stays text; a float column whose values are all integers becomes integers).  DirectClassifier's
statistics pass is not streaming like the regressor's, so the whole table is read into memory.  Rows
are held out as regression holds them out (``--test FILE``, or ``--test-fraction`` with the same
row hash, :func:`direct_edge.trainer.data.held_out_rows`), and the summary scores them: accuracy, log
loss, Brier score and the expected calibration error (:func:`expected_calibration_error`).  Every
problem a user can cause is a DataError (one line, exit code 2) raised before any file is written.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import click
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from direct_edge.files import write_atomic
from direct_edge.trainer.classifier import DirectClassifier
from direct_edge.trainer.data import MultiFileSource, TableSource, held_out_rows, open_table
from direct_edge.trainer.errors import DataError
from direct_edge.trainer.model_file import MAX_CLASSES, save_model
from direct_edge.trainer.preprocessing import PreparedSource, apply_schema, not_one_file, prepare_source
from direct_edge.trainer.tables import FrameSource

#: Equal-width bins of the top-class confidence for the expected calibration error.
ECE_BINS = 15
#: Options of ``direct-train`` that only regression has, with their defaults.
REGRESSION_ONLY = {
    "family": "mean-field",
    "components": 5,
    "entropy": "bound",
    "scheduler": None,
    "rotation": "none",
}
#: ``--grid-gains`` for a classifier: per-feature grids sized by its Gaussian approximation, or none.
GRID_GAINS = {"auto": "gaussian", "evidence": "gaussian", "none": "none"}
DEFAULT_SAMPLES = 512  # DirectClassifier's n_samples: the samples predict_proba averages over


# ---- labels ---------------------------------------------------------------------------------------


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("<NA>", "nan")


def _not_a_label(where: str, name: str, row: int, value) -> DataError:
    return DataError(
        f"{where}: the target {name!r}, row {row} holds {value!r}, not a class label; classification "
        "takes integer or text labels (for a numeric target leave out --task classification)"
    )


def _missing_label(where: str, name: str, row: int) -> DataError:
    return DataError(
        f"{where}: the target {name!r}, row {row} holds a missing label; remove the row or label it"
    )


def label_chunk(raw: np.ndarray, where: str, name: str, first_row: int) -> np.ndarray:
    """One chunk of a target column as class labels: (k,) int64, or (k,) object holding str.

    Integers stay integers, text stays text, booleans become the text "False"/"True"; floats must
    all be integers (then int64).  ``first_row``: 0-based index of the chunk's first row, for messages.
    Raises DataError naming the first missing label, non-integer number or unusable column type."""
    raw = np.asarray(raw)
    kind = raw.dtype.kind
    if kind == "b":
        return raw.astype(str).astype(object)
    if kind in "iu":
        return raw.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (np.abs(raw) > 2.0**53)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if np.isnan(raw[i]):
                raise _missing_label(where, name, first_row + i + 1)
            raise _not_a_label(where, name, first_row + i + 1, float(raw[i]))
        return raw.astype(np.int64)
    if kind not in "OUS":
        raise DataError(
            f"{where}: the target {name!r} has type {raw.dtype}, not class labels (integers or text)"
        )
    out = np.empty(raw.shape[0], dtype=object)
    for i, value in enumerate(raw.tolist()):
        if _missing(value):
            raise _missing_label(where, name, first_row + i + 1)
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, bool):
            value = str(value)
        elif isinstance(value, Integral):
            value = str(int(value))
        elif isinstance(value, Real):
            if not float(value).is_integer():
                raise _not_a_label(where, name, first_row + i + 1, float(value))
            value = str(int(value))
        out[i] = str(value)
    return out


def join_labels(chunks: list[np.ndarray]) -> np.ndarray:
    """The label chunks of one table as one (n,) array: int64 when every chunk holds integers, else
    object holding str (integers written as text: pandas may read a text column's chunk of digits
    as integers)."""
    if all(c.dtype == np.int64 for c in chunks):
        return np.concatenate(chunks)
    return np.concatenate([c if c.dtype == object else c.astype(str).astype(object) for c in chunks])


def _labelled_chunks(source: TableSource, chunk_rows: int):
    """(X (k, d) float64, raw target (k,), first row, where) per chunk of one pass over ``source``."""
    if isinstance(source, MultiFileSource):
        for part in source.sources:
            yield from _labelled_chunks(part, chunk_rows)
        return
    if not isinstance(source, FrameSource | PreparedSource):  # arrays (.npz, .npy): a numeric target
        seen = 0
        for X, y in source.batches(chunk_rows):
            yield X, y, seen, source.where
            seen += len(y)
        return
    # a PreparedSource (--categorical, --missing) reads its base file's frames through its schema
    base = source.base if isinstance(source, PreparedSource) else source
    t, seen = base._used[-1], 0
    for frame in source._pieces(chunk_rows):
        raw = None
        if frame.shape[1] == len(base.columns):  # else _values names the row with the wrong width
            raw = frame.iloc[:, t].to_numpy(copy=True)
            frame.isetitem(t, 0.0)  # the inputs are checked as regression checks them; labels are raw
        X, _ = source._values(frame, seen)
        yield X, raw, seen, source.where
        seen += len(frame)
    if seen == 0:
        raise DataError(f"{source.where}: no data rows")


def read_labelled(source: TableSource, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole table in memory: ``X`` (n, d) float64 inputs and ``labels`` (n,) (int64, or object
    holding str; :func:`label_chunk`).  Raises DataError for a bad input value (by column and row, as
    regression reads them) or a bad label."""
    Xs, labels = [], []
    for X, raw, first, where in _labelled_chunks(source, chunk_rows):
        Xs.append(X)
        labels.append(label_chunk(raw, where, source.target_name, first))
    if not Xs:
        raise DataError(f"{source.where}: no data rows")
    return np.concatenate(Xs), join_labels(labels)


def like_training(labels: np.ndarray, classes: np.ndarray, where: str) -> np.ndarray:
    """Test ``labels`` in the training labels' type (integers as text when the classes are text).
    Raises DataError for a label that is not one of ``classes``."""
    if classes.dtype == object and labels.dtype != object:
        labels = labels.astype(str).astype(object)
    unseen = ~np.isin(labels, classes)
    if unseen.any():
        i = int(np.flatnonzero(unseen)[0])
        shown = ", ".join(str(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise DataError(
            f"{where}: row {i + 1} holds the label {labels[i]!r}, a class not seen in training "
            f"(classes: {shown})"
        )
    return labels


def check_classes(labels: np.ndarray, name: str, where: str) -> np.ndarray:
    """The sorted classes of the training ``labels``; DataError for one class or more than the
    model file holds."""
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]  # 1, not np.int64(1)
        raise DataError(
            f"{where}: the target {name!r} holds one class only ({only!r}) in the training rows; "
            "classification needs at least 2"
        )
    if classes.dtype == object:  # text labels: "ok" and "ok " would silently be two classes
        seen: dict[str, str] = {}
        for label in classes.tolist():
            twin = seen.setdefault(str(label).strip(), label)
            if twin != label:
                raise DataError(
                    f"{where}: the target {name!r} holds labels that differ only in surrounding spaces, "
                    f"{twin!r} and {label!r}; clean the column so that each class is written one way"
                )
    if classes.size > MAX_CLASSES:
        raise DataError(
            f"{where}: the target {name!r} holds {classes.size} classes; a classifier takes at most "
            f"{MAX_CLASSES} (a numeric target? leave out --task classification)"
        )
    return classes


# ---- scores ---------------------------------------------------------------------------------------


@dataclass
class Reliability:
    """Per-bin statistics of the top-class confidence: ``edges`` (n_bins + 1,), and per bin
    ``count`` (n_bins,) rows, ``confidence`` mean confidence and ``accuracy`` share correct (NaN for
    an empty bin)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> Reliability:
    """Bin rows by their top-class ``confidence`` (n,) in [0, 1] into ``n_bins`` equal-width bins
    ((m−1)/M, m/M], the first also holding 0; ``correct`` (n,) bool: the predicted class is the label."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, correct, minlength=n_bins) / count
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), count, mean_conf, accuracy)


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of predicted probabilities, in [0, 1].

    ``proba``: (n, K) class probabilities (rows sum to 1); ``labels``: (n,) the true class as a
    column index of ``proba``.  Each row's confidence is its largest probability and it is correct
    when that column is its label.  The rows are binned by confidence into ``n_bins`` equal-width
    bins ((m−1)/M, m/M] (:func:`reliability_bins`), and

        ECE = Σ_m (n_m / n) · |accuracy_m − mean confidence_m|

    over the non-empty bins (Guo et al. 2017, "On calibration of modern neural networks").
    Raises ValueError for no rows."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        raise ValueError("no rows to score")
    top = np.argmax(proba, axis=1)
    bins = reliability_bins(proba[np.arange(len(top)), top], top == np.asarray(labels), n_bins)
    used = bins.count > 0
    gaps = np.abs(bins.accuracy[used] - bins.confidence[used])
    return float(np.sum(bins.count[used] * gaps) / proba.shape[0])


def classification_scores(model: DirectClassifier, X, labels: np.ndarray) -> dict:
    """Scores of ``model`` on rows ``X`` (n, d) with true ``labels`` (n,) (values of ``classes_``):
    ``n``; ``accuracy``; ``log_loss``, mean −log p(label) in nats; ``brier``, mean Σ_k (p_k − 1[k =
    label])² (summed over the classes: for two classes twice scikit-learn's ``brier_score_loss``);
    ``ece`` (:func:`expected_calibration_error`, 15 bins); ``mi_correct``, ``mi_wrong``: mean mutual
    information (nats, ``predict_uncertainty``) on the rows predicted right and wrong (None without
    such rows)."""
    index = np.searchsorted(model.classes_, labels)
    log_p = model.predict_log_proba(X)
    proba = np.exp(log_p)
    rows = np.arange(len(index))
    onehot = np.zeros_like(proba)
    onehot[rows, index] = 1.0
    correct = np.argmax(log_p, axis=1) == index
    _, mi = model.predict_uncertainty(X)
    return {
        "n": len(index),
        "accuracy": float(np.mean(correct)),
        "log_loss": float(-np.mean(log_p[rows, index])),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
        "ece": expected_calibration_error(proba, index),
        "mi_correct": float(np.mean(mi[correct])) if correct.any() else None,
        "mi_wrong": float(np.mean(mi[~correct])) if (~correct).any() else None,
    }


# ---- the command ----------------------------------------------------------------------------------


def refuse_regression_options(given: dict) -> None:
    """DataError naming the first regression-only option in ``given`` (name -> value) whose value
    differs from its default (:data:`REGRESSION_ONLY`)."""
    for name, default in REGRESSION_ONLY.items():
        if name in given and given[name] != default:
            raise DataError(f"--{name} applies to regression only, not to --task classification")


def demo_data() -> tuple[np.ndarray, np.ndarray, list[str], str, str]:
    """scikit-learn's bundled breast cancer data (569 rows, 30 inputs, labels "malignant"/"benign";
    no download): X, labels, input names, target name, label."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    labels = np.asarray(data.target_names[data.target], dtype=object)
    return data.data, labels, list(data.feature_names), "diagnosis", "breast cancer (scikit-learn)"


def _frame(X: np.ndarray, names: list[str] | None):
    """``X`` as the model takes it: a DataFrame with the training columns' names, or the array."""
    if names is None:
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def plot_reliability(path: Path, proba: np.ndarray, index: np.ndarray, label: str) -> None:
    """A reliability diagram of ``proba`` (n, K) against the true column ``index`` (n,): per
    confidence bin the share correct (bars, with the row count above) and the mean confidence
    (dots), the diagonal of perfect calibration, the ECE in the title.  Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    top = np.argmax(proba, axis=1)
    bins = reliability_bins(proba[np.arange(len(top)), top], top == index)
    ece = expected_calibration_error(proba, index)
    centres = 0.5 * (bins.edges[:-1] + bins.edges[1:])
    used = bins.count > 0
    width = bins.edges[1] - bins.edges[0]
    fig = Figure(figsize=(5.6, 5.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(centres[used], bins.accuracy[used], width=0.9 * width, alpha=0.7, label="share correct")
    ax.plot(bins.confidence[used], bins.accuracy[used], "o", ms=4, color="C1", label="at mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    for x, y, n in zip(centres[used], bins.accuracy[used], bins.count[used], strict=True):
        ax.text(x, min(y + 0.02, 1.02), str(n), ha="center", va="bottom", fontsize=7)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.08),
        xlabel="confidence (largest predicted probability)",
        ylabel="accuracy",
        title=f"Reliability, {label} ({len(index)} rows): ECE {ece:.4f}",
    )
    ax.legend(loc="upper left", fontsize=8)
    write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def format_summary(summary: dict, model_path: Path | None = None, plot_path: Path | None = None) -> str:
    """The classification summary (as stored in the model file, plus timings) as aligned lines."""
    from direct_edge.trainer.cli import LEVELS, converged_text

    s = summary
    ell = s["lengthscale"]
    if ell is None:
        ell_text = "none (linear features)"
    elif np.size(ell) == 1:
        ell_text = f"{_fmt(float(np.ravel(ell)[0]))} (standardised input units)"
    else:
        ell_text = f"ARD, mean {_fmt(float(np.mean(ell)))} over {len(ell)} inputs (standardised input units)"
    counts = ", ".join(f"{c} {n}" for c, n in zip(s["classes"], s["class_counts"], strict=True))
    prior = s["prior"] if s["prior_scale"] is None else f"{s['prior']}, scale {_fmt(s['prior_scale'])} logits"
    grids = " for the largest weight; per-feature grids" if s["per_feature_grids"] else ""
    rows = [("data", f"{s['data']}, target {s['target']!r}")]
    if len(s.get("files", ())) > 1:
        rows.append(("files read", ", ".join(s["files"])))
    rows += [
        ("rows n", f"{s['n_train']} train" + (f", {s['n_test']} test" if "n_test" in s else "")),
        ("inputs d", f"{s['n_inputs']}: {', '.join(s['input_names'])}"),
        ("classes", f"{len(s['classes'])}: {counts} (training rows)"),
        ("features b", f"{s['n_features']} ({s['features']})"),
        ("bits", f"{s['bits']} ({LEVELS[not s['symmetric']]} levels)"),
        ("ELBO", f"{s['elbo']:.4f} nats ({s['bound']} bound)"),
        ("converged", converged_text(s)),
        ("grid scale Δ", f"{_fmt(s['grid_scale'])} logits{grids}"),
        ("prior", prior),
        ("lengthscale", ell_text),
    ]
    if s["candidate_fits"]:
        rows.append(
            ("chosen by ELBO", f"{', '.join(s['chosen_by_elbo'])} ({s['candidate_fits']} candidate fits)")
        )
    for part in ("train", "test"):
        if f"{part}_accuracy" not in s:
            continue
        rows += [
            (f"{part} accuracy", f"{s[f'{part}_accuracy']:.4f}"),
            (f"{part} log loss", f"{s[f'{part}_log_loss']:.4f} nats"),
            (f"{part} Brier score", f"{s[f'{part}_brier']:.4f}"),
            (f"{part} ECE", f"{s[f'{part}_ece']:.4f} ({ECE_BINS} bins)"),
        ]
    if "n_test" not in s:
        rows.append(("test", "no held-out rows (give --test FILE or --test-fraction)"))
    else:
        right, wrong = s.get("test_mi_correct"), s.get("test_mi_wrong")
        mi = [f"{v:.4f} nats on {w} rows" for v, w in ((right, "correct"), (wrong, "wrong")) if v is not None]
        rows.append(("test mutual info", ", ".join(mi)))
    rows += [
        ("sparsity", f"{100 * s['sparsity']:.1f}% zero weights (expected under q)"),
        ("time", f"{s['wall_time_s']:.2f} s wall, {s['fit_time_s']:.2f} s fitting"),
    ]
    if model_path is not None:
        rows.append(("model", f"{model_path} ({model_path.stat().st_size:,} bytes)"))
    if plot_path is not None:
        rows.append(("plot", str(plot_path)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def train_classifier(
    data: str | None,
    target: str | None,
    out: Path,
    plot: Path | None,
    test_path: str | None,
    test_fraction: float | None,
    quiet: bool,
    reading: dict,
    started: float,
    *,
    features: str,
    n_features: int,
    lengthscale: float | None,
    bits: int,
    asymmetric: bool,
    grid_scale: float | None,
    grid_gains: str,
    prior: str,
    prior_scale: float | None,
    zero_mass: float,
    samples: int | None,
    seed: int,
    max_iter: int,
    chunk_rows: int,
    precision: str,
    categorical: list[str] | None = None,
    missing: str = "refuse",
) -> DirectClassifier:
    """``direct-train --task classification`` after the outputs are checked (``out``, ``plot``): read
    the table into memory, hold out test rows, fit, score, write the model and the plot, print the
    summary.  ``categorical`` and ``missing`` ask for regression's preprocessing stage
    (trainer/preprocessing.py): its schema is fitted on DATA, applied to DATA and ``test_path``, and
    stored as the classifier's ``schema_``.  Returns the fitted classifier (``summary_``: the summary
    stored in the model file).  User errors raise DataError before any file is written."""
    from direct_edge.trainer.cli import check_compatible, features_for, report_fit
    from direct_edge.trainer.statistics import check_memory_for

    preprocess = bool(categorical) or missing != "refuse"
    schema = None
    if data is None:
        if preprocess:
            raise not_one_file()
        X, labels, names, target_name, data_label = demo_data()
        named, files, where = True, [], data_label
        if test_path is None and test_fraction is None:
            from direct_edge.trainer.cli import DEMO_TEST_FRACTION

            test_fraction = DEMO_TEST_FRACTION
    else:
        source = open_table(data, target, **reading)
        if preprocess:  # labels are checked as labels below, not as numbers
            source = prepare_source(
                source, list(categorical or ()), missing, chunk_rows, numeric_target=False
            )
            schema = source.schema
        check_memory_for(features_for(features, n_features, source.n_inputs))
        X, labels = read_labelled(source, chunk_rows)
        names, target_name, data_label = list(source.input_names), source.target_name, data
        named, files, where = source.named_columns, list(source.files), source.where
    X_test = labels_test = None
    test_where = "held-out rows"
    if test_path is not None:
        test_source = open_table(test_path, target, **reading)
        if schema is not None:  # read through the training data's stage
            test_source = apply_schema(test_source, schema)
        if data is not None:
            check_compatible(source, test_source)
        X_test, labels_test = read_labelled(test_source, chunk_rows)
        test_where = test_source.where
        if X_test.shape[1] != X.shape[1]:
            raise DataError(
                f"test data {test_where} has {X_test.shape[1]} input columns, the training data {X.shape[1]}"
            )
    elif test_fraction is not None:
        held = held_out_rows(0, len(labels), float(test_fraction), seed)  # the split regression makes
        if not held.any():
            raise DataError(
                f"{where}: no rows were held out from {len(labels)} (test fraction {test_fraction}); "
                "use more data or a larger test fraction"
            )
        if held.all():
            raise DataError(f"{where}: every row was held out; use a smaller test fraction")
        X, X_test, labels, labels_test = X[~held], X[held], labels[~held], labels[held]
    if len(labels) < 2:
        raise DataError(f"{where}: need at least 2 training rows, got {len(labels)}")
    classes = check_classes(labels, target_name, where)
    if labels_test is not None:
        labels_test = like_training(labels_test, classes, test_where)

    model = DirectClassifier(
        features=features,
        n_features=n_features,
        lengthscale=lengthscale,
        bits=bits,
        symmetric=not asymmetric,
        grid_scale=grid_scale,
        grid_gains=GRID_GAINS[grid_gains],
        prior=prior,
        prior_scale=prior_scale,
        zero_mass=zero_mass,
        max_iter=max_iter,
        n_samples=DEFAULT_SAMPLES if samples is None else samples,
        chunk_rows=chunk_rows,
        precision=precision,
        random_state=seed,
    )
    echo = (lambda *a, **k: None) if quiet else click.echo
    echo(
        f"training a classifier on {data_label}: {len(labels)} rows, {X.shape[1]} inputs, "
        f"{classes.size} classes in target {target_name!r}"
    )
    column_names = names if named else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # said once below, in the CLI's words
        model.fit(_frame(X, column_names), labels)
    chosen = report_fit(model, echo, lengthscale, grid_scale, prior_scale)
    model.schema_ = schema  # the preprocessing stage, if any (docs/model-file.md §8)
    params = model.get_params()
    summary = {
        "task": "classification",
        "data": data_label,
        "target": target_name,
        "input_names": names,
        "files": files,
        "n_train": int(model.n_train_),
        "n_inputs": int(X.shape[1]),
        "classes": [c.item() if isinstance(c, np.generic) else c for c in model.classes_],
        "class_counts": [int(n) for n in np.unique(labels, return_counts=True)[1]],
        "n_features": int(model.feature_map_.n_features),
        "features": params["features"],
        "bits": params["bits"],
        "symmetric": params["symmetric"],
        "prior": params["prior"],
        "bound": str(model.bound_),
        "elbo": float(model.elbo_),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "max_iter": int(params["max_iter"]),
        "grid_scale": float(model.grid_scale_),
        "per_feature_grids": bool(np.any(model.grid_gains_ != 1.0)),
        "prior_scale": None if model.prior_scale_ is None else float(model.prior_scale_),
        "lengthscale": None if model.lengthscale_ is None else np.asarray(model.lengthscale_).tolist(),
        "chosen_by_elbo": chosen,
        "candidate_fits": len(model.selection_),
        "sparsity": float(model.sparsity_),
        "posterior_samples": int(params["n_samples"]),
    }
    train_scores = classification_scores(model, _frame(X, column_names), labels)
    summary.update(
        {f"train_{k}": v for k, v in train_scores.items() if k not in ("n", "mi_correct", "mi_wrong")}
    )
    if labels_test is not None:
        test_scores = classification_scores(model, _frame(X_test, column_names), labels_test)
        summary["n_test"] = test_scores.pop("n")
        summary.update({f"test_{k}": v for k, v in test_scores.items()})
    save_model(out, model, summary)
    if plot is not None:
        shown_X, shown_y, label = (
            (X_test, labels_test, "test rows") if labels_test is not None else (X, labels, "training rows")
        )
        proba = model.predict_proba(_frame(shown_X, column_names))
        plot_reliability(plot, proba, np.searchsorted(model.classes_, shown_y), label)
    timings = {"fit_time_s": float(model.fit_time_), "wall_time_s": time.perf_counter() - started}
    click.echo(format_summary({**summary, **timings}, out, plot))
    model.summary_ = summary
    return model
