"""classify_vectors.h for firmware_examples/classify: test rows, the reference's outputs, the threshold.

    python make_classify_vectors.py model.h --validation val.csv --test test.csv -o classify_vectors.h

model.h (or a .bin) is a classifier from ``direct-export``; each CSV row holds the model's real inputs
and, last, the true label (as the model names it, docs/model-format.md §11).  The test rows are
quantised (docs/integer-spec.md §2) and classified by the numpy reference (runtime/classify.py, IS §10),
which the device must match bit for bit.  The abstention threshold on the mutual information is chosen
on the validation rows: among the thresholds that keep at least ``--coverage`` of them answered, the one
whose answered rows are most often right (ties: the larger threshold, which answers more).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np

from direct_edge.runtime import classify, reference
from direct_edge.runtime.blob import parse


def _read_blob_bytes(path: Path) -> bytes:
    spec = importlib.util.spec_from_file_location(
        "make_test_vectors", Path(__file__).parents[1] / "make_test_vectors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_blob_bytes(path)


def read_rows(path: Path, labels: list[str], d: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float64, true class index (n,)) from a CSV of d inputs and a label per row."""
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r]
    X = np.array([[float(v) for v in r[:d]] for r in rows])
    index = {str(v): k for k, v in enumerate(labels)}
    return X, np.array([index[r[d].strip()] for r in rows])


def choose_threshold(mi: np.ndarray, label: np.ndarray, truth: np.ndarray, coverage: float) -> int:
    """The mutual-information threshold (2^-16 bits; abstain above it) chosen on validation rows."""
    best, best_acc = int(mi.max()), -1.0
    for t in np.unique(mi):
        answered = mi <= t
        if answered.mean() < coverage:
            continue
        acc = float(np.mean(label[answered] == truth[answered]))
        if acc >= best_acc:
            best, best_acc = int(t), acc
    return best


def render(blob, q, out, truth, threshold) -> str:
    C, d, n = blob.classes, blob.n_inputs, len(q)

    def array(ctype, name, values):
        body = ", ".join(str(int(v)) + ("u" if ctype != "int16_t" else "") for v in np.ravel(values))
        return f"static const {ctype} {name}[{max(1, np.size(values))}] CV_STORAGE = {{{body}}};\n"

    return (
        "/* classify_vectors.h - made by make_classify_vectors.py: test rows, the numpy reference's outputs\n"
        " * (IS §10) and the mutual-information threshold chosen on validation rows. */\n"
        f"#define CV_N_INPUTS {d}u\n#define CV_ROWS {n}u\n#define CV_CLASSES {C}u\n"
        f"#define CV_MI_THRESHOLD {threshold}u /* units of 2^-16 bits */\n"
        + array("int16_t", "cv_inputs", q)
        + array("uint8_t", "cv_label", out["label"])
        + array("uint8_t", "cv_truth", truth)
        + array("uint32_t", "cv_proba", out["proba"])
        + array("uint32_t", "cv_entropy", out["entropy"])
        + array("uint32_t", "cv_mutual_info", out["mutual_info"])
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--validation", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("-o", "--output", default="classify_vectors.h")
    args = ap.parse_args(argv)
    blob = parse(_read_blob_bytes(Path(args.model)))
    if not blob.classes:
        print(f"{args.model}: not a classifier", file=sys.stderr)
        return 2
    labels = blob.meta.get("classes") or list(range(blob.classes))
    Xv, tv = read_rows(Path(args.validation), labels, blob.n_inputs)
    val = classify.classify(blob, reference.quantize_inputs(blob, Xv))
    threshold = choose_threshold(val["mutual_info"], val["label"], tv, args.coverage)
    Xt, tt = read_rows(Path(args.test), labels, blob.n_inputs)
    q = reference.quantize_inputs(blob, Xt)
    Path(args.output).write_text(render(blob, q, classify.classify(blob, q), tt, threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
