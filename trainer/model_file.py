"""The ``model.direct`` file: a trained DirectRegressor, versioned and checksummed.

Spec: docs/model-file.md.  Layout (little-endian):

    §1  magic b"\\x89DIRECT\\n" (8 bytes) · u16 major · u16 minor · u32 header length H
    §2  header: H bytes of UTF-8 JSON (metadata and an array table), space-padded to 16 bytes
    §3  payload: raw arrays, each at a 16-byte aligned offset given in the array table
    §4  u32 CRC-32 (zlib) of every byte before it

The header is described once, declaratively: :data:`HEADER` (every key of the JSON, its type and
range) and :data:`ARRAYS` (every array's dtype, named dimensions and value rule), plus the rules
between them in :func:`check_content` (§5).  The reader checks a file against them before it uses a
value, and the writer's output is tested against the same tables.

:func:`encode` and :func:`decode` are pure functions over bytes; :func:`save_model` writes
atomically (temp file + rename) and :func:`load_model` either returns a model whose ``predict``
works or raises one :class:`ModelFileError` with a one-line reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from direct_edge.files import write_atomic
from direct_edge.formats import BLOB_MAGIC, MODEL_FILE_MAGIC
from direct_edge.trainer.errors import DataError, ModelFileError
from direct_edge.trainer.features import (
    CONSTANT_ULPS,
    FEATURE_KINDS,
    ORTHONORMAL_TOL,
    FeatureMap,
    is_orthonormal,
)
from direct_edge.trainer.grid import GAIN_FRAC_BITS, WeightGrid, quantise_gains
from direct_edge.trainer.posterior import GRID_ROUNDING_VARIANCE, Posterior

MAGIC = MODEL_FILE_MAGIC
FORMAT_MAJOR = 1
FORMAT_MINOR = 1
_PREFIX = struct.Struct("<8sHHI")
_ALIGN = 16
# Only plain numeric dtypes are ever written or read (no pickled objects).
_DTYPES = {"<f8": np.float64, "<i8": np.int64, "|i1": np.int8}

# §2 bounds, checked before the JSON is parsed or an array is read.
MAX_HEADER_BYTES = 64 * 2**20  # 64 MiB of JSON (a d = 100 000 model's names and lengthscales: ~5 MB)
MAX_JSON_DEPTH = 32  # nesting of [ and {; the writer uses 4 (plus what a summary nests)
MAX_ARRAYS = 1024
MAX_NDIM = 8
MAX_ELEMENTS = 2**40  # product of an array's dimensions, a dimension of 0 counted as 1
# §5: a probability vector sums to 1 within this (numpy's sampler accepts 1.5e-8).
SUM_TOLERANCE = 1e-8
_FLOAT_MAX = sys.float_info.max


def _pad(n: int) -> int:
    return (-n) % _ALIGN


# ---- the header schema (§2, §5): one definition for reader, writer and tests ---------------------

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 40
_SHOW.maxlist = _SHOW.maxdict = 4
_SHOW.maxlevel = 2


def _fail(where: str, text: str) -> ModelFileError:
    return ModelFileError(f"model file is malformed: {where} {text}")


class Rule:
    """A JSON value's rule.  ``check(value, where)`` raises :class:`ModelFileError` naming ``where``
    (a path such as ``meta.fitted.y_scale_``) and what was expected; ``text`` says it in words."""

    text = "a JSON value"

    def check(self, value, where: str) -> None:
        if not self.accepts(value):
            raise _fail(where, f"must be {self.text}, got {_SHOW.repr(value)}")

    def accepts(self, value) -> bool:
        return True


@dataclass(frozen=True)
class Number(Rule):
    """A JSON number (not a bool) in [low, high] (``open_low``: > low); ``integer``: an int;
    ``finite`` (default): no NaN or ±Infinity."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    integer: bool = False
    finite: bool = True
    multiple_of: int = 1

    @property
    def text(self) -> str:
        kind = "an integer" if self.integer else "a finite number" if self.finite else "a number"
        if self.low is not None and self.high is not None:
            kind += f" in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            kind += f" {'>' if self.open_low else '>='} {self.low:g}"
        return kind + (f", a multiple of {self.multiple_of}" if self.multiple_of != 1 else "")

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and math.isnan(value):
            return not self.finite
        if self.finite and not (
            math.isfinite(value) if isinstance(value, float) else abs(value) <= _FLOAT_MAX
        ):
            return False  # NaN, ±Infinity, or an integer beyond float64 (2**1024)
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        if self.high is not None and value > self.high:
            return False
        return not self.integer or value % self.multiple_of == 0


class Boolean(Rule):
    text = "true or false"

    def accepts(self, value) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class String(Rule):
    """A string, one of ``choices`` when given."""

    choices: tuple[str, ...] | None = None

    @property
    def text(self) -> str:
        return "a string" if self.choices is None else "one of " + ", ".join(map(repr, self.choices))

    def accepts(self, value) -> bool:
        return isinstance(value, str) and (self.choices is None or value in self.choices)


@dataclass(frozen=True)
class Nullable(Rule):
    """null or what ``rule`` accepts."""

    rule: Rule

    def check(self, value, where: str) -> None:
        if value is not None:
            try:
                self.rule.check(value, where)
            except ModelFileError:
                raise _fail(where, f"must be null or {self.rule.text}, got {_SHOW.repr(value)}") from None


@dataclass(frozen=True)
class ListOf(Rule):
    """A list of at most ``max_len`` items, each accepted by ``item``."""

    item: Rule
    max_len: int | None = None

    @property
    def text(self) -> str:
        return "a list" + (f" of at most {self.max_len} items" if self.max_len is not None else "")

    def check(self, value, where: str) -> None:
        super().check(value, where)
        for i, v in enumerate(value):
            self.item.check(v, f"{where}[{i}]")

    def accepts(self, value) -> bool:
        return isinstance(value, list) and (self.max_len is None or len(value) <= self.max_len)


@dataclass(frozen=True)
class Object(Rule):
    """A JSON object with the ``fields`` named (key -> rule), all required but the ``optional`` ones.
    Keys it does not name are ignored (§1: minor versions only add keys); ``free``: any keys and
    values (the writer's free-form facts)."""

    fields: dict
    optional: frozenset = frozenset()
    free: bool = False
    text = "an object"

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object, got {_SHOW.repr(value)}")
        for key, rule in self.fields.items():
            if key in value:
                rule.check(value[key], f"{where}.{key}")
            elif key not in self.optional:
                raise _fail(where, f"has no {key!r}")


class RegressorParams(Rule):
    """``DirectRegressor``'s constructor arguments, checked by the estimator's own declarative
    ``_parameter_constraints`` (one definition: docs/trainer.md §9).  Unknown keys are ignored;
    missing ones take their defaults."""

    text = "DirectRegressor's parameters"

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object, got {_SHOW.repr(value)}")
        regressor(value, where)

    @staticmethod
    def names() -> tuple[str, ...]:
        from direct_edge.trainer.regressor import DirectRegressor

        return tuple(DirectRegressor().get_params())


def _unfitted(cls, params: dict, where: str):
    """An unfitted ``cls`` from a file's ``params`` (the keys it takes only), its options checked by
    the estimator's constraints.  Raises ModelFileError."""
    model = cls(**{k: v for k, v in params.items() if k in cls().get_params()})
    try:
        model._validate_params()
    except (DataError, ValueError, TypeError) as exc:
        raise _fail(where, f"holds a bad option: {' '.join(str(exc).split())}") from None
    return model


def regressor(params: dict, where: str = "meta.params"):
    """An unfitted DirectRegressor from a file's ``params`` (known keys only), its options checked by
    the estimator's constraints.  Raises ModelFileError."""
    from direct_edge.trainer.regressor import DirectRegressor

    return _unfitted(DirectRegressor, params, where)


_POSITIVE = Number(0, open_low=True)
_FINITE = Number()
_COUNT = Number(0, integer=True)
_ANY_NUMBER = Nullable(Number(finite=False))

# The fitted attributes both estimators' files hold (§5, §8), each checked the same way.
_FITTED = {
    "elbo_": _FINITE,
    "n_iter_": _COUNT,
    "converged_": Boolean(),
    "grid_scale_": _POSITIVE,
    "prior_scale_": Nullable(_POSITIVE),
    "n_train_": Number(1, integer=True),
}

TABLE_ENTRY = Object(
    {
        "name": String(),
        "dtype": String(tuple(_DTYPES)),
        "shape": ListOf(Number(0, MAX_ELEMENTS, integer=True), MAX_NDIM),
        "offset": Number(0, 2**48, integer=True, multiple_of=_ALIGN),
        "nbytes": Number(0, 2**48, integer=True),
    }
)

META = Object(
    {
        "producer": String(),
        "producer_version": String(),
        "params": RegressorParams(),
        "fitted": Object(
            {
                **_FITTED,
                "fit_time_": Number(0),  # written by files before timings left them; ignored
                "train_rmse_": Number(0),
                # the float model's on the same statistics (docs/trainer.md §9); files written
                # before that check have none
                "float_train_rmse_": Number(0),
                "float_noise_sd_": Number(0),
                "y_offset_": _FINITE,
                "y_scale_": _POSITIVE,
                "n_features_in_": Number(1, integer=True),
                # the input names of data that named its columns (a DataFrame, a header); 1.1 files
                # written before it have none
                "feature_names_in_": ListOf(String()),
            },
            optional=frozenset({"fit_time_", "feature_names_in_", "float_train_rmse_", "float_noise_sd_"}),
        ),
        "feature_map": Object(
            {
                "kind": String(FEATURE_KINDS),
                "amplitude": _POSITIVE,
                "info": Object(
                    {"lengthscale": ListOf(_POSITIVE), "seed": _COUNT},
                    optional=frozenset({"lengthscale", "seed"}),
                ),
            }
        ),
        "grid": Object({"scale": _POSITIVE, "bits": Number(2, 8, integer=True), "symmetric": Boolean()}),
        "selection": ListOf(
            Object(
                {
                    "stage": String(),
                    "lengthscale": _ANY_NUMBER,
                    "grid_scale": _ANY_NUMBER,
                    "prior_scale": _ANY_NUMBER,
                    "elbo": _ANY_NUMBER,
                }
            )
        ),
        "summary": Object({}, free=True),
        # the input schema of a model trained with a preprocessing stage (--categorical, --missing;
        # docs/model-format.md §10, runtime/schema.py); files without it have plain numeric inputs
        "schema": Object(
            {
                "target": String(),
                "columns": ListOf(
                    Object(
                        {
                            "name": String(),
                            "kind": String(("numeric", "categorical")),
                            "missing": String(("refuse", "mean-indicator")),
                            "low": _FINITE,
                            "high": _FINITE,
                            "fill": _FINITE,
                            "levels": ListOf(String(), 65535),
                        },
                        optional=frozenset({"low", "high", "fill", "levels"}),
                    ),
                    65535,
                ),
            }
        ),
    },
    optional=frozenset({"schema"}),
)

#: The whole header (§2, §5): what :func:`decode` and :func:`model_from_arrays` check, in two steps.
HEADER = Object({"meta": META, "arrays": ListOf(TABLE_ENTRY, MAX_ARRAYS)})


@dataclass(frozen=True)
class ArraySpec:
    """One array of §5: ``dtype``; ``dims``, named dimensions shared across arrays (the same name is
    the same size everywhere); ``values``, the rule its values follow (:data:`VALUE_RULES`);
    ``kinds``, the feature maps whose files hold it; ``required``."""

    name: str
    dtype: str
    dims: tuple[str, ...]
    values: str
    kinds: tuple[str, ...] = FEATURE_KINDS
    required: bool = True


#: §5's arrays: d inputs, F rff frequencies, m grid levels, r mixture components, b features,
#: K noise levels, T trace entries, L lengthscales.
ARRAYS = (
    ArraySpec("feature_map.input_offset", "<f8", ("d",), "finite"),
    ArraySpec("feature_map.input_scale", "<f8", ("d",), "positive"),
    ArraySpec("feature_map.projection", "<f8", ("d", "F"), "finite", kinds=("rff",)),
    # the rff features' rotation into the training Gram matrix's eigenbasis (docs/trainer.md §3)
    ArraySpec("feature_map.rotation", "<f8", ("b", "b"), "orthonormal", kinds=("rff",), required=False),
    ArraySpec("grid.levels", "|i1", ("m",), "levels"),
    # per-feature grid gains (docs/trainer.md §2); files without them have one grid for every weight
    ArraySpec("grid.gains", "<f8", ("b",), "gains", required=False),
    ArraySpec("posterior.q_weights", "<f8", ("r", "b", "m"), "distribution"),
    ArraySpec("posterior.mixture_weights", "<f8", ("r",), "distribution"),
    ArraySpec("posterior.noise", "<f8", ("K",), "positive"),
    ArraySpec("posterior.q_noise", "<f8", ("K",), "distribution"),
    # the predictive variance floor (docs/trainer.md §7); files without it predict q's own moments
    ArraySpec("posterior.variance_floor", "<f8", ("b",), "nonnegative", required=False),
    ArraySpec("trace", "<f8", ("T",), "any"),
    ArraySpec("lengthscale", "<f8", ("L",), "positive", kinds=("rff",)),
    ArraySpec("data.input_min", "<f8", ("d",), "finite", required=False),
    ArraySpec("data.input_max", "<f8", ("d",), "finite", required=False),
)


def _distribution(a: np.ndarray) -> bool:
    return bool(np.all(a >= 0) and np.all(np.abs(a.sum(axis=-1) - 1.0) <= SUM_TOLERANCE))


#: Value rules: (test on a finite array, what it says when it fails).
VALUE_RULES = {
    "any": (lambda a: True, ""),
    "finite": (lambda a: True, "finite"),
    "positive": (lambda a: bool(np.all(a > 0)), "finite and > 0"),
    "nonnegative": (lambda a: bool(np.all(a >= 0)), "finite and >= 0"),
    "distribution": (_distribution, "probabilities (finite, >= 0, summing to 1 along the last axis)"),
    "gains": (
        lambda a: bool(np.all((a >= 2.0**-GAIN_FRAC_BITS) & (a <= 1.0)) and np.all(quantise_gains(a) == a)),
        f"gains in [2^-{GAIN_FRAC_BITS}, 1], each a multiple of 2^-{GAIN_FRAC_BITS}",
    ),
    "orthonormal": (is_orthonormal, f"orthonormal columns (|VᵀV − I| <= {ORTHONORMAL_TOL:g})"),
    "levels": (
        lambda a: bool(np.all(np.diff(a.astype(np.int64)) > 0) and np.any(a == 0)),
        "strictly increasing integer levels that include 0",
    ),
}


# ---- bytes <-> (meta, arrays): §1–§4 --------------------------------------------------------------


def encode(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise JSON-able ``meta`` and named numeric ``arrays`` into the file layout above.

    Deterministic: the same ``meta`` and arrays give the same bytes (sorted keys, Python's shortest
    float repr).  Raises TypeError for a dtype outside §2's three."""
    table, chunks, offset = [], [], 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in "|<" else arr.dtype
        if dtype.str not in _DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {arr.dtype}")
        data = arr.astype(dtype, copy=False).tobytes()
        table.append(
            {
                "name": name,
                "dtype": dtype.str,
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": len(data),
            }
        )
        chunks.append(data + b"\0" * _pad(len(data)))
        offset += len(data) + _pad(len(data))
    header = json.dumps({"meta": meta, "arrays": table}, sort_keys=True).encode("utf-8")
    header += b" " * _pad(_PREFIX.size + len(header))
    body = _PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(header)) + header + b"".join(chunks)
    return body + struct.pack("<I", zlib.crc32(body))


# Strings (skipped whole, so brackets inside them do not count) and the brackets that nest.
_JSON_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON ``text``, counted without recursion."""
    depth = deepest = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def decode(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and verify a model file's bytes (§1–§4) into (meta, arrays).

    Checks, in §4's order: magic, length, major version, header inside the file, CRC-32, header size
    and nesting (:data:`MAX_HEADER_BYTES`, :data:`MAX_JSON_DEPTH`), JSON, the array table
    (:data:`TABLE_ENTRY`), then for every array that its size matches its shape and that it lies
    inside the payload, before a byte of it is read.  ``meta`` is returned as a JSON object whose
    content :func:`model_from_arrays` checks.  Raises ModelFileError (one line)."""
    if len(blob) < _PREFIX.size or blob[:8] != MAGIC:
        raise ModelFileError("not a direct-edge model file (bad magic)")
    if len(blob) < _PREFIX.size + 4:
        raise ModelFileError("model file is truncated")
    _, major, minor, header_len = _PREFIX.unpack_from(blob, 0)
    if major != FORMAT_MAJOR:
        raise ModelFileError(
            f"model file format {major}.{minor} is not supported (this version reads "
            f"{FORMAT_MAJOR}.x); retrain or upgrade direct-edge"
        )
    body_len = len(blob) - 4
    if _PREFIX.size + header_len > body_len:
        raise ModelFileError("model file is truncated (header runs past the end)")
    (stored_crc,) = struct.unpack_from("<I", blob, body_len)
    if zlib.crc32(memoryview(blob)[:body_len]) != stored_crc:
        raise ModelFileError("model file is corrupted or truncated (CRC-32 mismatch)")
    header = _parse_header(bytes(blob[_PREFIX.size : _PREFIX.size + header_len]))
    payload_start = _PREFIX.size + header_len
    arrays = {}
    for i, entry in enumerate(header["arrays"]):
        name = entry["name"]
        if name in arrays:
            raise _fail(f"arrays[{i}]", f"repeats the name {name!r}")
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        shape = tuple(entry["shape"])
        if math.prod(max(s, 1) for s in shape) > MAX_ELEMENTS:
            raise _fail(f"array {name!r}", f"has too many elements (shape {list(shape)})")
        count = math.prod(shape)
        if entry["nbytes"] != count * dtype.itemsize:
            raise _fail(
                f"array {name!r}", f"has inconsistent size ({entry['nbytes']} bytes for shape {list(shape)})"
            )
        if payload_start + entry["offset"] + entry["nbytes"] > body_len:
            raise _fail(f"array {name!r}", "runs past the end of the file")
        arr = np.frombuffer(blob, dtype=dtype, count=count, offset=payload_start + entry["offset"])
        arrays[name] = arr.reshape(shape).copy()
    return header["meta"], arrays


def _parse_header(raw: bytes) -> dict:
    """The header's JSON object, its size and nesting bounded before parsing, its array table checked."""
    if len(raw) > MAX_HEADER_BYTES:
        raise ModelFileError(f"model file header is larger than {MAX_HEADER_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError("model file header is not UTF-8 text") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ModelFileError(f"model file header nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        header = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError, or an integer of more than 4300 digits
        raise ModelFileError(
            f"model file header is not valid JSON ({' '.join(str(exc).split())[:80]})"
        ) from None
    Object({"meta": Object({}), "arrays": HEADER.fields["arrays"]}).check(header, "header")
    return header


# ---- DirectRegressor <-> (meta, arrays): docs/model-file.md §5 ----------------------------------

# Fitted attributes stored under meta["fitted"].  The fit's duration (fit_time_) is not stored: a file
# depends only on the data, the options and the seed.
_FITTED_SCALARS = (
    "elbo_",
    "n_iter_",
    "converged_",
    "grid_scale_",
    "prior_scale_",
    "n_train_",
    "train_rmse_",
    "float_train_rmse_",
    "float_noise_sd_",
    "y_offset_",
    "y_scale_",
    "n_features_in_",
)


def _input_names(model) -> list | None:
    """``feature_names_in_`` of a model fitted on named columns, else None."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else list(names)


def model_to_arrays(model, summary: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a fitted DirectRegressor into JSON metadata and arrays (§5).  ``summary``: JSON-able
    facts stored under meta["summary"]; keep timings and machine paths out of it so that the same
    data and seed give the same bytes."""
    post: Posterior = model.posterior_
    fmap_meta, fmap_arrays = model.feature_map_.to_arrays()
    grid: WeightGrid = post.weight_grid
    meta = {
        "producer": "direct-edge",
        "producer_version": _version(),
        "params": _jsonable(model.get_params()),
        "fitted": {k: _jsonable(getattr(model, k)) for k in _FITTED_SCALARS if hasattr(model, k)}
        | (
            {"feature_names_in_": [str(n) for n in names]}
            if (names := _input_names(model)) is not None
            else {}
        ),
        "feature_map": _jsonable(fmap_meta),
        "grid": {"scale": float(grid.scale), "bits": int(model.bits), "symmetric": bool(model.symmetric)},
        "selection": _jsonable(model.selection_),
        "summary": _jsonable(summary or {}),
    }
    if getattr(model, "schema_", None) is not None:
        meta["schema"] = schema_to_json(model.schema_)
    arrays = {f"feature_map.{k}": v for k, v in fmap_arrays.items()}
    arrays.update(
        {
            "grid.levels": grid.levels.astype(np.int8),
            **({} if grid.gains is None else {"grid.gains": np.asarray(grid.gains, dtype=np.float64)}),
            "posterior.q_weights": post.q_weights,
            "posterior.mixture_weights": post.mixture_weights,
            "posterior.noise": post.noise,
            "posterior.q_noise": post.q_noise,
            "trace": np.asarray(model.trace_, dtype=np.float64),
        }
    )
    if post.variance_floor is not None:
        arrays["posterior.variance_floor"] = np.asarray(post.variance_floor, dtype=np.float64)
    if model.lengthscale_ is not None:
        arrays["lengthscale"] = np.atleast_1d(model.lengthscale_).astype(np.float64)
    if getattr(model, "input_min_", None) is not None:
        arrays["data.input_min"] = np.asarray(model.input_min_, dtype=np.float64)
        arrays["data.input_max"] = np.asarray(model.input_max_, dtype=np.float64)
    return meta, arrays


def schema_to_json(schema) -> dict:
    """``meta.schema`` (§5) of a runtime ``Schema``."""
    from direct_edge.runtime import schema as input_schema

    columns = []
    for c in schema.columns:
        entry = {
            "name": c.name,
            "kind": input_schema.KINDS[c.kind],
            "missing": input_schema.POLICIES[c.missing],
        }
        if c.kind == input_schema.CATEGORICAL:
            entry["levels"] = list(c.levels)
        else:
            entry.update(low=float(c.low), high=float(c.high), fill=float(c.fill))
        columns.append(entry)
    return {"target": schema.target, "columns": columns}


def schema_from_json(value: dict, d: int, names: list | None):
    """The runtime ``Schema`` of a checked ``meta.schema``: numeric columns with low, high and fill,
    categorical ones with levels, MF §10's rules, d inputs named as ``fitted.feature_names_in_``.
    Raises ModelFileError."""
    from direct_edge.runtime import schema as input_schema

    kinds = {v: k for k, v in input_schema.KINDS.items()}
    policies = {v: k for k, v in input_schema.POLICIES.items()}
    columns = []
    for j, c in enumerate(value["columns"]):
        where = f"meta.schema.columns[{j}]"
        if c["kind"] == "categorical":
            if "levels" not in c:
                raise _fail(where, "is categorical and has no 'levels'")
            columns.append(
                input_schema.Column(
                    c["name"], kinds[c["kind"]], policies[c["missing"]], levels=tuple(c["levels"])
                )
            )
        else:
            if not {"low", "high", "fill"} <= set(c):
                raise _fail(where, "is numeric and needs 'low', 'high' and 'fill'")
            columns.append(
                input_schema.Column(
                    c["name"],
                    kinds[c["kind"]],
                    policies[c["missing"]],
                    float(c["low"]),
                    float(c["high"]),
                    float(c["fill"]),
                )
            )
    schema = input_schema.Schema(tuple(columns), value["target"])
    try:
        schema.check()
    except input_schema.SchemaError as exc:
        raise _fail("meta.schema", str(exc)) from None
    if schema.n_inputs != d:
        raise _fail("meta.schema", f"makes {schema.n_inputs} inputs, the model has d = {d}")
    if names is not None and list(names) != schema.input_names:
        raise _fail("meta.schema", "names other inputs than fitted.feature_names_in_")
    return schema


def check_content(meta: dict, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """§5's checks on decoded ``meta`` and ``arrays``: :data:`META`, then every array of
    :data:`ARRAYS` (dtype, named dimensions, values), then the rules between them.  Returns the
    dimensions by name (d, b, m, ...).  Raises ModelFileError naming the first failure."""
    META.check(meta, "meta")
    with np.errstate(all="ignore"):  # sums of huge values overflow to inf, which the rules reject
        dims = _check_arrays(meta, arrays)
    if "schema" in meta:
        schema_from_json(meta["schema"], dims["d"], meta["fitted"].get("feature_names_in_"))
    return dims


def _check_specs(specs, kind: str, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """§5/§8 step 2 for one table of :class:`ArraySpec`: presence for the feature ``kind``, dtype, number
    of dimensions, each named dimension equal wherever it appears, and the values' rule.  Returns the
    named dimensions' sizes.  Raises ModelFileError naming the array."""
    dims: dict[str, int] = {}
    for spec in specs:
        arr = arrays.get(spec.name)
        where = f"array {spec.name!r}"
        if arr is None:
            if spec.required and kind in spec.kinds:
                raise _fail("the file", f"has no array {spec.name!r}")
            continue
        if kind not in spec.kinds:
            raise _fail(where, f"does not belong to a {kind} feature map")
        if arr.dtype.str != spec.dtype or arr.ndim != len(spec.dims):
            raise _fail(where, f"must be {spec.dtype} with {len(spec.dims)} dimension(s) {spec.dims}")
        for axis, (dim, size) in enumerate(zip(spec.dims, arr.shape, strict=True)):
            if dims.setdefault(dim, size) != size:
                raise _fail(where, f"has {dim} = {size} on axis {axis}, other arrays {dims[dim]}")
        test, says = VALUE_RULES[spec.values]
        finite = spec.values == "any" or bool(np.all(np.isfinite(arr)))
        if not (finite and test(arr)):
            raise _fail(where, f"must hold {says} values")
    return dims


def _check_arrays(meta: dict, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    kind = meta["feature_map"]["kind"]
    dims = _check_specs(ARRAYS, kind, arrays)
    _check_dimensions(meta, dims, kind)
    offset, scale = arrays["feature_map.input_offset"], arrays["feature_map.input_scale"]
    resolution = CONSTANT_ULPS * np.finfo(np.float64).eps * np.abs(offset)
    if not np.all((scale == 1.0) | (scale > resolution)):  # the trainer's constant-column rule
        raise _fail("array 'feature_map.input_scale'", "must exceed 8 ulps of the input offset (or be 1)")
    low, high = arrays.get("data.input_min"), arrays.get("data.input_max")
    if (low is None) != (high is None) or (low is not None and not np.all(low <= high)):
        raise _fail("the training input range", "needs data.input_min <= data.input_max for every input")
    levels = arrays["grid.levels"].astype(np.int64)
    half = 2 ** (meta["grid"]["bits"] - 1)
    if levels[0] < -half or levels[-1] >= half:
        raise _fail("array 'grid.levels'", f"must fit in grid.bits = {meta['grid']['bits']}")
    floor = arrays.get("posterior.variance_floor")
    if floor is not None:  # at most one grid cell's rounding variance (docs/trainer.md §7)
        gains = arrays.get("grid.gains")
        step = float(meta["grid"]["scale"]) * (1.0 if gains is None else gains)
        if not np.all(floor <= step**2 * GRID_ROUNDING_VARIANCE * (1.0 + 1e-12)):
            raise _fail("array 'posterior.variance_floor'", "must not exceed step²/12 of each weight's grid")
    return dims


def _check_dimensions(meta: dict, dims: dict[str, int], kind: str) -> None:
    """The rules between named dimensions and the metadata (§5)."""
    params, fitted = meta["params"], meta["fitted"]
    d, b, r = dims["d"], dims["b"], dims["r"]
    rules = [
        (d >= 1 and dims["m"] >= 1 and r >= 1 and dims["K"] >= 1, "needs d, m, r, K >= 1"),
        (fitted["n_features_in_"] == d, f"fitted.n_features_in_ must equal d = {d}"),
        (
            len(fitted.get("feature_names_in_", [None] * d)) == d,
            f"fitted.feature_names_in_ must hold d = {d} names",
        ),
        (fitted["grid_scale_"] == meta["grid"]["scale"], "fitted.grid_scale_ must equal grid.scale"),
        (params.get("features", kind) == kind, "params.features must equal feature_map.kind"),
        (
            params.get("bits", meta["grid"]["bits"]) == meta["grid"]["bits"],
            "params.bits must equal grid.bits",
        ),
        (
            params.get("symmetric", meta["grid"]["symmetric"]) == meta["grid"]["symmetric"],
            "params.symmetric must equal grid.symmetric",
        ),
        (params.get("family", "mean-field") != "mean-field" or r == 1, "a mean-field posterior has r = 1"),
    ]
    if kind == "linear":
        rules.append((b == d + 1, f"linear features need b = d + 1, got b = {b}, d = {d}"))
    else:
        F, L = dims["F"], dims["L"]
        rules += [
            (F >= 1 and b == 2 * F, f"rff features need b = 2F >= 2, got b = {b}, F = {F}"),
            (params.get("n_features", b) == b, f"params.n_features must equal b = {b}"),
            (L in (1, d), f"lengthscale must hold 1 or d = {d} values, got {L}"),
        ]
    for ok, text in rules:
        if not ok:
            raise _fail("its dimensions and metadata disagree:", text)


def model_from_arrays(meta: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted DirectRegressor from decoded ``meta`` and ``arrays``.

    :func:`check_content` first, then the model is built and must predict finite values at the
    centre (and, in 1.1 files, the ends) of its training range; so a model returned here predicts
    without an exception.  Raises ModelFileError."""
    dims = check_content(meta, arrays)
    model = regressor(meta["params"])
    try:
        model._check_lengthscale(dims["d"])
    except (DataError, ValueError, TypeError) as exc:
        raise _fail("meta.params", f"holds a bad option: {' '.join(str(exc).split())}") from None
    fm_arrays = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("feature_map.")}
    fmap = FeatureMap.from_arrays(meta["feature_map"], fm_arrays)
    levels = arrays["grid.levels"].astype(np.int64)
    gains = arrays.get("grid.gains")
    gains = None if gains is None else gains.astype(np.float64)
    grid = WeightGrid(levels, float(meta["grid"]["scale"]), gains)
    b = fmap.n_features
    model.feature_map_ = fmap
    model.posterior_ = Posterior(
        np.broadcast_to(grid.values, (b, levels.size)),
        arrays["posterior.q_weights"],
        arrays["posterior.mixture_weights"],
        arrays["posterior.noise"],
        arrays["posterior.q_noise"],
        grid,
        arrays.get("posterior.variance_floor"),
    )
    for key in _FITTED_SCALARS:
        if key in meta["fitted"]:  # float_train_rmse_ is optional (docs/model-file.md §5)
            setattr(model, key, meta["fitted"][key])
    if "feature_names_in_" in meta["fitted"]:
        model.feature_names_in_ = np.asarray(meta["fitted"]["feature_names_in_"], dtype=object)
    ls = arrays.get("lengthscale")
    model.lengthscale_ = None if ls is None else (ls if ls.size > 1 else float(ls[0]))
    model.trace_ = arrays["trace"].tolist()
    # Minor version 1 added the training range; files from 1.0 lack it (the export then uses μ ± 8σ).
    if "data.input_min" in arrays:
        model.input_min_, model.input_max_ = arrays["data.input_min"], arrays["data.input_max"]
    model.selection_ = meta["selection"]
    model.summary_ = meta["summary"]
    if "schema" in meta:
        names = meta["fitted"].get("feature_names_in_")
        model.schema_ = schema_from_json(meta["schema"], model.n_features_in_, names)
    _check_predictions(model)
    return model


def _check_predictions(model) -> None:
    """The model predicts at the centre, the centre ± 1 sd and (1.1 files) the ends of its training
    range without a floating-point overflow or invalid operation, and gives finite means and sds:
    parameters that are each finite can still overflow together."""
    fmap = model.feature_map_
    with np.errstate(
        over="ignore"
    ):  # offset ± scale beyond float64 (inputs near ±1.7e308): the largest float
        around = [fmap.input_offset - fmap.input_scale, fmap.input_offset + fmap.input_scale]
    top = np.finfo(np.float64).max
    rows = [fmap.input_offset, *(np.clip(r, -top, top) for r in around)]
    if getattr(model, "input_min_", None) is not None:
        rows += [model.input_min_, model.input_max_]
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            mean, sd = model.predict_rows(np.stack(rows))
        finite = bool(np.all(np.isfinite(mean)) and np.all(np.isfinite(sd)))
    except FloatingPointError:
        finite = False
    if not finite:
        raise _fail("the model", "overflows when it predicts in its training range (parameters out of scale)")


def save_model(path: str | os.PathLike, model, summary: dict | None = None) -> None:
    """Write a fitted DirectRegressor, or a DirectClassifier (§8), to ``path`` atomically.
    ``summary``: extra JSON-able facts (e.g. test RMSE) stored under meta["summary"].  Raises OSError
    if the file cannot be written."""
    if is_classifier(model):
        meta, arrays = classifier_to_arrays(model, summary)
    else:
        meta, arrays = model_to_arrays(model, summary)
    write_atomic(Path(path), encode(meta, arrays))


def load_model(path: str | os.PathLike):
    """Read a ``model.direct`` file into a fitted DirectRegressor whose ``predict`` works, or a
    DirectClassifier (§8, ``meta.task`` "classification") whose ``predict_proba`` works.

    Raises ModelFileError (one line) for a missing file, a directory, or any file that is not a
    valid model file of major version 1 (§4, §5)."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"model path is a directory: {path}") from None
    if blob[:4] == BLOB_MAGIC:
        raise ModelFileError(
            f"{path} is a packed blob (direct-export's .bin), not a model file: give the .direct file "
            "direct-train wrote"
        )
    try:
        meta, arrays = decode(blob)
        if meta.get("task") == TASK_CLASSIFICATION:  # §8; files without "task" hold a regressor
            return classifier_from_arrays(meta, arrays)
        return model_from_arrays(meta, arrays)
    except ModelFileError as exc:  # which file, when a command reads more than one
        raise ModelFileError(f"{path}: {exc}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("direct-edge")
    except PackageNotFoundError:
        return "unknown"


def _jsonable(value):
    """Plain JSON types for numpy scalars/arrays inside dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- DirectClassifier <-> (meta, arrays): docs/model-file.md §8 -----------------------------------

TASK_CLASSIFICATION = "classification"
#: The most classes a file holds (the packed blob's u8 class count, docs/model-format.md §11).
MAX_CLASSES = 255


@dataclass(frozen=True)
class Label(Rule):
    """A class label: a string, or a finite number that is not a bool."""

    text = "a string or a finite number"

    def accepts(self, value) -> bool:
        return isinstance(value, str) or Number().accepts(value)


class ClassifierParams(Rule):
    """``DirectClassifier``'s constructor arguments, checked by its ``_parameter_constraints``."""

    text = "DirectClassifier's parameters"

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise _fail(where, f"must be an object, got {_SHOW.repr(value)}")
        classifier(value, where)


def classifier(params: dict, where: str = "meta.params"):
    """An unfitted DirectClassifier from a file's ``params`` (known keys only), its options checked by
    the estimator's constraints.  Raises ModelFileError."""
    from direct_edge.trainer.classifier import DirectClassifier

    return _unfitted(DirectClassifier, params, where)


#: §8's header of a classifier file: the regressor's keys where they mean the same.
CLASSIFIER_META = Object(
    {
        "producer": String(),
        "producer_version": String(),
        "task": String((TASK_CLASSIFICATION,)),
        "params": ClassifierParams(),
        "classes": ListOf(Label(), MAX_CLASSES),
        "fitted": Object(
            {
                **_FITTED,
                "n_features_in_": Number(1, integer=True),
                "bound_": String(),
                "feature_names_in_": ListOf(String()),
            },
            optional=frozenset({"feature_names_in_"}),
        ),
        "feature_map": META.fields["feature_map"],
        "grid": META.fields["grid"],
        "summary": Object({}, free=True),
        # the input schema of --categorical / --missing, exactly as §5's (files before it have none)
        "schema": META.fields["schema"],
    },
    optional=frozenset({"schema"}),
)

#: §8's arrays: K weight vectors (1 for two classes), S posterior samples, the rest as §5.
CLASSIFIER_ARRAYS = (
    ArraySpec("feature_map.input_offset", "<f8", ("d",), "finite"),
    ArraySpec("feature_map.input_scale", "<f8", ("d",), "positive"),
    ArraySpec("feature_map.projection", "<f8", ("d", "F"), "finite", kinds=("rff",)),
    ArraySpec("grid.levels", "|i1", ("m",), "levels"),
    ArraySpec("grid.gains", "<f8", ("b",), "gains", required=False),
    ArraySpec("posterior.q_weights", "<f8", ("K", "b", "m"), "distribution"),
    ArraySpec("posterior.sample_levels", "|i1", ("S", "K", "b"), "any"),
    ArraySpec("lengthscale", "<f8", ("L",), "positive", kinds=("rff",)),
    ArraySpec("data.input_min", "<f8", ("d",), "finite", required=False),
    ArraySpec("data.input_max", "<f8", ("d",), "finite", required=False),
)


def classifier_to_arrays(model, summary: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a fitted DirectClassifier into JSON metadata and arrays (§8); labels (``classes_``)
    are stored as JSON strings or numbers."""
    fmap_meta, fmap_arrays = model.feature_map_.to_arrays()
    fitted = {
        k: _jsonable(getattr(model, k))
        for k in (
            "elbo_",
            "n_iter_",
            "converged_",
            "grid_scale_",
            "prior_scale_",
            "n_train_",
            "n_features_in_",
        )
    }
    fitted["bound_"] = str(model.bound_)
    if (names := _input_names(model)) is not None:
        fitted["feature_names_in_"] = [str(n) for n in names]
    labels = [c.item() if isinstance(c, np.generic) else c for c in model.classes_]
    meta = {
        "producer": "direct-edge",
        "producer_version": _version(),
        "task": TASK_CLASSIFICATION,
        "params": _jsonable(model.get_params()),
        "classes": [c if isinstance(c, str) else c for c in labels],
        "fitted": fitted,
        "feature_map": _jsonable(fmap_meta),
        "grid": {
            "scale": float(model.grid_scale_),
            "bits": int(model.bits),
            "symmetric": bool(model.symmetric),
        },
        "summary": _jsonable(summary or {}),
    }
    if getattr(model, "schema_", None) is not None:
        meta["schema"] = schema_to_json(model.schema_)
    arrays = {f"feature_map.{k}": v for k, v in fmap_arrays.items()}
    arrays["grid.levels"] = np.asarray(model.grid_levels_, dtype=np.int8)
    if np.any(model.grid_gains_ != 1.0):
        arrays["grid.gains"] = np.asarray(model.grid_gains_, dtype=np.float64)
    arrays["posterior.q_weights"] = np.asarray(model.q_weights_, dtype=np.float64)
    arrays["posterior.sample_levels"] = np.asarray(model.sample_levels_, dtype=np.int8)
    if model.lengthscale_ is not None:
        arrays["lengthscale"] = np.atleast_1d(model.lengthscale_).astype(np.float64)
    arrays["data.input_min"] = np.asarray(model.input_min_, dtype=np.float64)
    arrays["data.input_max"] = np.asarray(model.input_max_, dtype=np.float64)
    return meta, arrays


def classifier_from_arrays(meta: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted DirectClassifier from decoded ``meta`` and ``arrays`` (§8), every rule checked
    first; its ``predict_proba`` then works.  Raises ModelFileError."""
    CLASSIFIER_META.check(meta, "meta")
    kind = meta["feature_map"]["kind"]
    with np.errstate(all="ignore"):
        dims = _check_specs(CLASSIFIER_ARRAYS, kind, arrays)
    labels, fitted = meta["classes"], meta["fitted"]
    d, b, K, S = dims["d"], dims["b"], dims["K"], dims["S"]
    levels = arrays["grid.levels"].astype(np.int64)
    half = 2 ** (meta["grid"]["bits"] - 1)
    rules = [
        (len(labels) >= 2, "needs at least 2 classes"),
        (len({(type(c) is str, c) for c in labels}) == len(labels), "classes must be distinct"),
        (
            K == (1 if len(labels) == 2 else len(labels)),
            f"K = {K} weight vectors do not fit {len(labels)} classes",
        ),
        (S >= 1 and dims["m"] >= 1 and d >= 1, "needs S, m, d >= 1"),
        (fitted["n_features_in_"] == d, f"fitted.n_features_in_ must equal d = {d}"),
        (
            len(fitted.get("feature_names_in_", [None] * d)) == d,
            f"fitted.feature_names_in_ must hold {d} names",
        ),
        (fitted["grid_scale_"] == meta["grid"]["scale"], "fitted.grid_scale_ must equal grid.scale"),
        (meta["params"].get("features", kind) == kind, "params.features must equal feature_map.kind"),
        (levels[0] >= -half and levels[-1] < half, "grid.levels must fit grid.bits"),
        (
            bool(np.all(np.isin(arrays["posterior.sample_levels"], levels))),
            "sample levels must be grid levels",
        ),
        (b == d + 1 if kind == "linear" else b == 2 * dims.get("F", 0), "b does not match the feature map"),
    ]
    low, high = arrays.get("data.input_min"), arrays.get("data.input_max")
    rules.append(
        ((low is None) == (high is None) and (low is None or bool(np.all(low <= high))), "bad input range")
    )
    for ok, text in rules:
        if not ok:
            raise _fail("its dimensions and metadata disagree:", text)
    schema = (
        schema_from_json(meta["schema"], d, fitted.get("feature_names_in_")) if "schema" in meta else None
    )
    model = classifier(meta["params"])
    fm_arrays = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("feature_map.")}
    try:
        model._check_lengthscale(d)
        fmap = FeatureMap.from_arrays(meta["feature_map"], fm_arrays)
    except (DataError, ValueError, TypeError, KeyError) as exc:
        raise _fail("meta.feature_map", f"cannot be rebuilt: {' '.join(str(exc).split())}") from None
    if fmap.n_features != b:
        raise _fail("meta.feature_map", f"makes {fmap.n_features} features, the arrays hold b = {b}")
    model.feature_map_ = fmap
    model.classes_ = np.asarray(labels)
    model.grid_levels_ = levels
    model.grid_scale_ = float(meta["grid"]["scale"])
    gains = arrays.get("grid.gains")
    model.grid_gains_ = np.ones(b) if gains is None else gains.astype(np.float64)
    model.q_weights_ = arrays["posterior.q_weights"]
    model.sample_levels_ = arrays["posterior.sample_levels"]
    for key in ("elbo_", "n_iter_", "converged_", "prior_scale_", "n_train_", "n_features_in_", "bound_"):
        setattr(model, key, fitted[key])
    if "feature_names_in_" in fitted:
        model.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    ls = arrays.get("lengthscale")
    model.lengthscale_ = None if ls is None else (ls if ls.size > 1 else float(ls[0]))
    model.input_min_, model.input_max_ = low, high
    model.selection_, model.trace_ = [], []
    model.summary_ = meta["summary"]
    model.schema_ = schema
    rows = np.stack([fmap.input_offset] + ([] if low is None else [low, high]))
    if "feature_names_in_" in fitted:  # fitted on a DataFrame: scikit-learn warns on an array
        import pandas as pd

        rows = pd.DataFrame(rows, columns=fitted["feature_names_in_"])
    try:
        with np.errstate(over="raise", invalid="raise", divide="ignore", under="ignore"):
            finite = bool(np.all(np.isfinite(model.predict_proba(rows))))
    except FloatingPointError:
        finite = False
    if not finite:
        raise _fail("the model", "overflows when it predicts in its training range (parameters out of scale)")
    return model


def is_classifier(model) -> bool:
    """Whether ``model`` is a DirectClassifier (by its fitted attributes; no import of the class)."""
    return hasattr(model, "classes_") and hasattr(model, "sample_levels_")
