"""Instructions per prediction of each sample layout (MF §6), per target: the cost model ``auto`` uses.

A prediction costs the feature map (IS §3, the same for every layout) plus the ensemble (IS §4–§5), whose
cost depends on the layout and on the levels.  Per layout the ensemble cost is linear in a few counts of
the levels (:func:`level_stats`):

- dense4:  c0 + c_b·b + c_s·S + c_pair·⌊S/2⌋·b + c_odd·(S mod 2)·b
  (the DSP and Armv6-M kernels run two samples per pass and an odd last one alone; the portable C loop
  one sample at a time, which the same terms express);
- bitmap4: c0 + c_s·S + c_map·S·⌈b/8⌉ + c_nnz·nnz;
- grouped: c0 + c_s·S + c_group·groups + c_nnz·nnz   (groups = Σ_s distinct nonzero levels of sample s);
- gap4:    c0 + c_s·S + c_byte·bytes                 (bytes = Σ_s stored bytes: nonzeros plus skips).

The coefficients (:data:`COEFFICIENTS`) are fitted once per target by :func:`fit` from the exact
instruction counts in benchmarks/layout_costs.json (QEMU ``-icount`` for Cortex-M0 and Cortex-M4,
callgrind for the x86-64 host's portable -O2 build) and written here; ``python -m
direct_edge.export.layout_cost benchmarks/layout_costs.json`` refits them and prints the fit error.
"""

from __future__ import annotations

import json
import sys

import numpy as np

LAYOUT_ORDER = ("dense4", "bitmap4", "grouped", "gap4")
TARGETS = ("cortex-m4", "cortex-m0", "host")
# The measured cores' names in benchmarks/layout_costs.json.
CORE_OF_TARGET = {"cortex-m4": "M4", "cortex-m0": "M0", "host": "x86"}
DEFAULT_TARGET = "cortex-m4"


def level_stats(levels: np.ndarray) -> dict[str, int]:
    """The counts the cost model reads from (S, b) levels: S, b, nnz (stored nonzeros), groups (Σ over
    samples of the distinct nonzero levels) and gap4_bytes (Σ over samples of MF §6.4's bytes after the
    count: one per nonzero plus one per skip)."""
    levels = np.asarray(levels)
    S, b = levels.shape
    nnz = groups = gap_bytes = 0
    for row in levels:
        idx = np.flatnonzero(row)
        nnz += len(idx)
        groups += len(np.unique(row[idx]))
        gaps = np.diff(idx, prepend=-1)
        # a gap g > 16 takes ⌈(g − 16) / 256⌉ skip bytes (each ≤ 256 positions, leaving 1 … 16 for the weight)
        gap_bytes += len(idx) + int(np.sum(np.maximum(0, (gaps - 16 + 255) // 256)))
    return {"S": int(S), "b": int(b), "nnz": int(nnz), "groups": int(groups), "gap4_bytes": int(gap_bytes)}


def terms(layout: str, stats: dict[str, int]) -> np.ndarray:
    """The model's terms for ``layout`` (the order of its coefficients), float64."""
    S, b = stats["S"], stats["b"]
    if layout == "dense4":
        return np.array([1.0, b, S, (S // 2) * b, (S % 2) * b])
    if layout == "bitmap4":
        return np.array([1.0, S, S * ((b + 7) // 8), stats["nnz"]])
    if layout == "grouped":
        return np.array([1.0, S, stats["groups"], stats["nnz"]])
    if layout == "gap4":
        return np.array([1.0, S, stats["gap4_bytes"]])
    raise ValueError(f"unknown layout {layout!r}")


TERM_NAMES = {
    "dense4": ("c0", "b", "S", "pairs·b", "odd·b"),
    "bitmap4": ("c0", "S", "S·⌈b/8⌉", "nnz"),
    "grouped": ("c0", "S", "groups", "nnz"),
    "gap4": ("c0", "S", "bytes"),
}

# Ensemble instructions (direct_predict − direct_features), fitted by fit() on benchmarks/layout_costs.json.
COEFFICIENTS: dict[str, dict[str, tuple[float, ...]]] = {
    "cortex-m4": {
        "dense4": (185.708, 1.909, 28.756, 3.258, 0.211),
        "bitmap4": (174.411, 28.66, 3.874, 7.51),
        "grouped": (181.513, 10.32, 20.39, 6.555),
        "gap4": (176.701, 32.59, 6.757),
    },
    "cortex-m0": {
        "dense4": (218.951, 1.624, 107.25, 9.763, 4.112),
        "bitmap4": (273.463, 100.442, 7.509, 9.918),
        "grouped": (278.807, 90.747, 31.349, 9.582),
        "gap4": (269.663, 119.252, 8.772),
    },
    "host": {
        "dense4": (166.698, 0.122, 18.479, 11.984, 5.877),
        "bitmap4": (161.542, 27.729, 7.492, 19.093),
        "grouped": (177.768, 4.268, 25.848, 9.624),
        "gap4": (157.796, 22.32, 11.014),
    },
}


def ensemble_cost(layout: str, stats: dict[str, int], target: str = DEFAULT_TARGET) -> float:
    """Predicted instructions of the ensemble part of one prediction in ``layout`` on ``target``."""
    if target not in COEFFICIENTS:
        raise ValueError(f"unknown target {target!r}; choose {', '.join(TARGETS)}")
    return float(terms(layout, stats) @ np.asarray(COEFFICIENTS[target][layout]))


def costs(levels: np.ndarray, target: str = DEFAULT_TARGET) -> dict[str, float]:
    """Predicted ensemble instructions per layout for (S, b) ``levels`` on ``target``."""
    stats = level_stats(levels)
    return {layout: ensemble_cost(layout, stats, target) for layout in LAYOUT_ORDER}


def fit(rows: list[dict], core: str) -> dict[str, tuple[float, ...]]:
    """Least-squares coefficients per layout from measured ``rows`` of ``core`` (relative error: each
    row weighted by 1 / its measured ensemble count)."""
    out = {}
    for layout in LAYOUT_ORDER:
        sel = [r for r in rows if r["target"] == core and r["layout"] == layout]
        A = np.array([terms(layout, r) for r in sel])
        y = np.array([r["predict"] - r["features"] for r in sel], dtype=np.float64)
        w = 1.0 / y
        coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
        out[layout] = tuple(round(float(c), 3) for c in coef)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = json.loads(open(argv[0]).read())["rows"]
    fitted = {
        t: fit(rows, CORE_OF_TARGET[t])
        for t in TARGETS
        if any(r["target"] == CORE_OF_TARGET[t] for r in rows)
    }
    for target, table in fitted.items():
        print(f"    {target!r}: {{")
        for layout, coef in table.items():
            print(f"        {layout!r}: {coef},")
        print("    },")
    for target, table in fitted.items():
        core = CORE_OF_TARGET[target]
        errs = []
        for r in rows:
            if r["target"] == core:
                got = float(terms(r["layout"], r) @ np.asarray(table[r["layout"]]))
                errs.append(got / (r["predict"] - r["features"]) - 1)
        print(f"{target}: worst relative error {max(abs(e) for e in errs):.3f} over {len(errs)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
