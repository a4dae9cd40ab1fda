"""Mutation fuzz of the model-file reader and of ``direct-export`` (docs/model-file.md §6).

Real files written by the trainer are damaged in seeded ways: bit flips and truncations, and, with
the CRC-32 recomputed so that the damage reaches the parser, header-JSON edits (a number replaced
by Infinity, NaN, 2**64, -1, a 0-d or nested list, a key removed, a type changed, deep nesting),
array-table edits and array values replaced by NaN, Infinity, 0, negative or huge numbers.  Every
mutant must either load, and then predict finite numbers on training rows without an exception, or
raise ModelFileError; through ``direct-export`` it must end with exit code 0, or 2 and one line.

The default run is bounded (a few seconds); ``DIRECT_EDGE_FUZZ_SECONDS`` sets the time budget of
each test and ``DIRECT_EDGE_FUZZ_SEED`` the seed, for a longer run (docs/model-file.md §6).
"""

from __future__ import annotations

import copy
import json
import os
import struct
import time
import traceback
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_diabetes

from direct_edge.trainer import DirectRegressor, ModelFileError
from direct_edge.trainer.model_file import _PREFIX, decode, encode, model_from_arrays, model_to_arrays

SECONDS = float(os.environ.get("DIRECT_EDGE_FUZZ_SECONDS", "3"))
SEED = int(os.environ.get("DIRECT_EDGE_FUZZ_SEED", "0"))
MIN_MUTANTS = 200  # per test, whatever the time budget

FAST = {"max_iter": 30, "grid_scale": 0.2, "prior_scale": 0.5}
CONFIGURATIONS = {
    "rff": {"n_features": 16, "lengthscale": 3.0, **FAST},
    "linear": {"features": "linear", **FAST},
    "mixture-ard": {
        "n_features": 8,
        "lengthscale": [2.0] * 10,
        "family": "mixture",
        "n_components": 2,
        "bits": 3,
        "symmetric": False,
        **FAST,
    },
}

# What a header value is replaced with: non-finite, huge, negative, zero, wrong types, nesting.
REPLACEMENTS = [
    float("inf"),
    float("-inf"),
    float("nan"),
    2**64,
    -(2**63),
    10**400,
    -1,
    0,
    1,
    0.5,
    1e308,
    -1e308,
    5e-324,
    True,
    None,
    "x",
    "",
    [],
    [[]],
    [1, 2],
    [[1.0, 2.0], [3.0]],
    {},
    {"a": 1},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]
ARRAY_VALUES = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e308, -1e308, 1e-310, 1e10, 2.0]


def frame(header: bytes | str, payload: bytes) -> bytes:
    """A file around ``header`` (JSON text, padded here) and ``payload`` with a valid CRC-32."""
    raw = header.encode("utf-8", "surrogatepass") if isinstance(header, str) else header
    raw += b" " * ((-(_PREFIX.size + len(raw))) % 16)
    body = _PREFIX.pack(b"\x89DIRECT\n", 1, 1, len(raw)) + raw + payload
    return body + struct.pack("<I", zlib.crc32(body))


def split(blob: bytes) -> tuple[dict, bytes]:
    """(header JSON, payload bytes) of a valid file."""
    (hlen,) = struct.unpack_from("<I", blob, 12)
    return json.loads(blob[16 : 16 + hlen]), blob[16 + hlen : -4]


def with_crc(body: bytes) -> bytes:
    """``body`` (a file without its last 4 bytes) with its CRC-32 appended."""
    return body + struct.pack("<I", zlib.crc32(body))


def paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value, the root excluded."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def at(value, path):
    for key in path:
        value = value[key]
    return value


@dataclass
class Mutator:
    """Seeded mutants of one valid file; ``kinds`` counts what was made."""

    blob: bytes
    rng: np.random.Generator
    kinds: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.header, self.payload = split(self.blob)
        self.paths = list(paths(self.header))
        self.table = self.header["arrays"]

    def __call__(self) -> tuple[str, bytes]:
        kind = str(self.rng.choice(self.KINDS))
        self.kinds[kind] += 1
        return kind, getattr(self, kind)()

    KINDS = (
        "bit_flip",
        "bit_flip_crc",
        "truncate",
        "truncate_crc",
        "replace_value",
        "replace_value",
        "replace_value",
        "remove_key",
        "table_edit",
        "array_values",
        "array_values",
        "header_text",
    )

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def bit_flip(self) -> bytes:
        data = bytearray(self.blob)
        for _ in range(int(self.rng.integers(1, 4))):
            data[int(self.rng.integers(len(data)))] ^= 1 << int(self.rng.integers(8))
        return bytes(data)

    def bit_flip_crc(self) -> bytes:
        return with_crc(self.bit_flip()[:-4])

    def truncate(self) -> bytes:
        return self.blob[: int(self.rng.integers(len(self.blob)))]

    def truncate_crc(self) -> bytes:
        return with_crc(self.blob[: int(self.rng.integers(16, len(self.blob) - 4))])

    def replace_value(self) -> bytes:
        header = copy.deepcopy(self.header)
        path = self._pick(self.paths)
        value = self._pick(REPLACEMENTS)
        if isinstance(value, float) and self.rng.random() < 0.3:  # near a valid number instead
            old = at(header, path)
            if isinstance(old, int | float) and not isinstance(old, bool):
                value = old * float(self._pick([-1.0, 0.0, 1e300, 1e-300, 2.0]))
        at(header, path[:-1])[path[-1]] = value
        return frame(json.dumps(header), self.payload)

    def remove_key(self) -> bytes:
        header = copy.deepcopy(self.header)
        path = self._pick(self.paths)
        parent = at(header, path[:-1])
        del parent[path[-1]]
        return frame(json.dumps(header), self.payload)

    def table_edit(self) -> bytes:
        """One array-table field set to a nearby or absurd integer, or two entries swapped."""
        header = copy.deepcopy(self.header)
        table = header["arrays"]
        entry = self._pick(table)
        key = self._pick(["shape", "offset", "nbytes", "dtype", "name", "swap"])
        if key == "swap":
            i, j = self.rng.integers(len(table), size=2)
            table[i]["name"], table[j]["name"] = table[j]["name"], table[i]["name"]
        elif key == "shape":
            entry["shape"] = self._pick([[], [0], [2**63], [1] * 9, entry["shape"][::-1], [-1, 2]])
        elif key == "dtype":
            entry["dtype"] = self._pick(["<f8", "<i8", "|i1", "|O", "<f4", ">f8"])
        elif key == "name":
            entry["name"] = self._pick([t["name"] for t in table] + ["unknown"])
        else:
            entry[key] = int(entry[key]) + int(self._pick([-16, -1, 1, 16, 2**32, 2**62]))
        return frame(json.dumps(header), self.payload)

    def array_values(self) -> bytes:
        """Some values of one array replaced (finite or not), the header untouched."""
        entry = self._pick([t for t in self.table if t["nbytes"]])
        dtype = np.dtype(entry["dtype"])
        payload = bytearray(self.payload)
        arr = np.frombuffer(
            payload, dtype=dtype, count=entry["nbytes"] // dtype.itemsize, offset=entry["offset"]
        )
        arr = arr.copy()
        n = int(self.rng.integers(1, min(arr.size, 4) + 1))
        idx = self.rng.integers(arr.size, size=n)
        if dtype.kind == "f":
            arr[idx] = self._pick(ARRAY_VALUES)
        else:
            arr[idx] = self.rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=n, dtype=dtype)
        payload[entry["offset"] : entry["offset"] + entry["nbytes"]] = arr.tobytes()
        return frame(json.dumps(self.header), bytes(payload))

    def header_text(self) -> bytes:
        """The header's text cut, spliced with brackets, or made deeply nested."""
        text = json.dumps(self.header)
        pos = int(self.rng.integers(len(text)))
        choice = int(self.rng.integers(4))
        if choice == 0:
            text = text[:pos]
        elif choice == 1:
            text = text[:pos] + self._pick(["[", "{", "]", '"', "\\", "\ud800", "1e999"]) + text[pos:]
        elif choice == 2:
            depth = self._pick([40, 1000, 100_000])
            text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
        else:
            text = text[:pos] + text[pos + int(self.rng.integers(1, 20)) :]
        return frame(text, self.payload)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def files(diabetes) -> dict[str, bytes]:
    """One real model file per configuration, written by the trainer."""
    X, y = diabetes
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: these fits are short on purpose
        for name, params in CONFIGURATIONS.items():
            out[name] = encode(*model_to_arrays(DirectRegressor(**params).fit(X, y)))
    return out


def outcome(blob: bytes, rows: np.ndarray) -> str:
    """'loaded' or 'rejected'; anything else raises (an escape)."""
    try:
        model = model_from_arrays(*decode(blob))
    except ModelFileError:
        return "rejected"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a loaded model predicts without numpy warnings
        mean, sd = model.predict(rows, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(sd)), "a loaded model predicts non-finite values"
    return "loaded"


def run_fuzz(files: dict[str, bytes], check, seconds: float, seed: int) -> tuple[Counter, list]:
    """Mutants of every file in turn until ``seconds`` have passed (and at least MIN_MUTANTS);
    ``check(blob)`` returns an outcome name or raises.  Returns (outcome counts, escapes)."""
    rng = np.random.default_rng(seed)
    mutators = [Mutator(blob, rng) for blob in files.values()]
    counts, escapes = Counter(), []
    deadline = time.perf_counter() + seconds
    n = 0
    while n < MIN_MUTANTS or time.perf_counter() < deadline:
        kind, blob = mutators[n % len(mutators)]()
        n += 1
        try:
            counts[check(blob)] += 1
        except Exception as exc:  # noqa: BLE001 - an escape is what the fuzz looks for
            counts["escaped"] += 1
            frame_ = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{os.path.basename(frame_.filename)}:{frame_.lineno}"
            escapes.append((kind, f"{type(exc).__name__} at {where}: {exc}"[:200]))
    return counts, escapes


@pytest.mark.slow
def test_mutants_load_and_predict_or_raise_model_file_error(files, diabetes):
    rows = diabetes[0][:5]
    counts, escapes = run_fuzz(files, lambda blob: outcome(blob, rows), SECONDS, SEED)
    print(f"\nmodel-file fuzz: {sum(counts.values())} mutants, {dict(counts)}")
    assert not escapes, f"{len(escapes)} mutants escaped ModelFileError: {sorted(set(escapes))[:8]}"
    assert counts["rejected"] > 0 and counts["loaded"] > 0


@pytest.mark.slow
def test_direct_export_ends_every_mutant_with_exit_0_or_one_error_line(files, tmp_path):
    """Through the CLI (in process): a mutant the reader rejects ends with exit code 2 and the
    reader's message on one line; a mutant it loads is exported (exit 0) or refused the same way.
    A traceback raised inside the exporter for a model the reader accepted is the exporter's
    defect: the test then reports those mutants as an expected failure, with their tracebacks'
    last frames, instead of hiding them."""
    from direct_edge.export.cli import main

    runner = CliRunner()
    model, out = tmp_path / "mutant.direct", tmp_path / "out.bin"
    exporter_defects = []

    def check(blob: bytes) -> str:
        try:
            model_from_arrays(*decode(blob))
            reader = None
        except ModelFileError as exc:
            reader = str(exc)
        model.write_bytes(blob)
        out.unlink(missing_ok=True)
        result = runner.invoke(main, [str(model), str(out), "-q"])
        lines = result.stderr.splitlines()
        if reader is not None:  # the reader's contract, strictly
            assert (result.exit_code, lines) == (2, [f"direct-export: error: {model}: {reader}"])
            assert not out.exists()
            return "refused by the reader"
        if result.exit_code == 0:
            assert out.exists() and not [x for x in lines if "error" in x]
            return "exported with numpy warnings" if lines else "exported"
        if result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("direct-export: error: "):
            assert not out.exists()
            return "refused by the exporter"
        last = traceback.extract_tb(result.exc_info[2])[-1] if result.exc_info else None
        where = f"{last.filename.rsplit('/', 2)[-2:]}:{last.lineno}" if last else "?"
        exporter_defects.append(f"exit {result.exit_code}, {result.exception!r} at {where}")
        return "exporter crashed"

    counts, escapes = run_fuzz(files, check, SECONDS, SEED + 1)
    print(f"\ndirect-export fuzz: {sum(counts.values())} mutants, {dict(counts)}")
    assert not escapes, f"{len(escapes)} mutants broke the CLI contract: {sorted(set(escapes))[:8]}"
    assert counts["refused by the reader"] > 0 and counts["exported"] > 0
    assert not exporter_defects, f"the exporter crashed on loaded models: {sorted(set(exporter_defects))}"
