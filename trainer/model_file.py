"""The ``model.direct`` file: a trained DirectRegressor, versioned and checksummed.

Spec: docs/model-file.md.  Layout (little-endian):

    §1  magic b"\\x89DIRECT\\n" (8 bytes) · u16 major · u16 minor · u32 header length H
    §2  header: H bytes of UTF-8 JSON (metadata and an array table), zero-padded to 16 bytes
    §3  payload: raw arrays, each at a 16-byte aligned offset given in the array table
    §4  u32 CRC-32 (zlib) of every byte before it

:func:`encode` and :func:`decode` are pure functions over bytes; :func:`save_model` writes
atomically (temp file + rename) and :func:`load_model` rejects anything that is not a valid file
with one :class:`ModelFileError`.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from direct_edge.files import write_atomic
from direct_edge.formats import MODEL_FILE_MAGIC
from direct_edge.trainer.errors import ModelFileError
from direct_edge.trainer.features import FeatureMap
from direct_edge.trainer.grid import WeightGrid
from direct_edge.trainer.posterior import Posterior

MAGIC = MODEL_FILE_MAGIC
FORMAT_MAJOR = 1
FORMAT_MINOR = 1
_PREFIX = struct.Struct("<8sHHI")
_ALIGN = 16
# Only plain numeric dtypes are ever written or read (no pickled objects).
_DTYPES = {"<f8": np.float64, "<i8": np.int64, "|i1": np.int8}


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def encode(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise JSON-able ``meta`` and named numeric ``arrays`` into the file layout above."""
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


def decode(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and verify a model file's bytes; every size and offset is checked before use."""
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
    try:
        header = json.loads(blob[_PREFIX.size : _PREFIX.size + header_len].decode("utf-8"))
        meta, table = header["meta"], header["arrays"]
        payload_start = _PREFIX.size + header_len
        arrays = {}
        for entry in table:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            start, nbytes = int(entry["offset"]), int(entry["nbytes"])
            count = int(np.prod(shape, dtype=np.int64))
            if min(shape, default=0) < 0 or start < 0 or nbytes != count * np.dtype(dtype).itemsize:
                raise ModelFileError(f"array {entry['name']!r} has inconsistent size")
            if payload_start + start + nbytes > body_len:
                raise ModelFileError(f"array {entry['name']!r} runs past the end of the file")
            arr = np.frombuffer(blob, dtype=dtype, count=count, offset=payload_start + start)
            arrays[str(entry["name"])] = arr.reshape(shape).copy()
    except ModelFileError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"model file header is malformed ({type(exc).__name__})") from None
    return meta, arrays


# ---- DirectRegressor <-> (meta, arrays): docs/model-file.md §5 ----------------------------------

_FITTED_SCALARS = (
    "elbo_",
    "n_iter_",
    "converged_",
    "grid_scale_",
    "prior_scale_",
    "n_train_",
    "fit_time_",
    "train_rmse_",
    "y_offset_",
    "y_scale_",
    "n_features_in_",
)


def model_to_arrays(model, summary: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a fitted DirectRegressor into JSON metadata and arrays."""
    post: Posterior = model.posterior_
    fmap_meta, fmap_arrays = model.feature_map_.to_arrays()
    grid: WeightGrid = post.weight_grid
    meta = {
        "producer": "direct-edge",
        "producer_version": _version(),
        "params": _jsonable(model.get_params()),
        "fitted": {k: _jsonable(getattr(model, k)) for k in _FITTED_SCALARS},
        "feature_map": fmap_meta,
        "grid": {"scale": grid.scale, "bits": int(model.bits), "symmetric": bool(model.symmetric)},
        "selection": _jsonable(model.selection_),
        "summary": _jsonable(summary or {}),
    }
    arrays = {f"feature_map.{k}": v for k, v in fmap_arrays.items()}
    arrays.update(
        {
            "grid.levels": grid.levels.astype(np.int8),
            "posterior.q_weights": post.q_weights,
            "posterior.mixture_weights": post.mixture_weights,
            "posterior.noise": post.noise,
            "posterior.q_noise": post.q_noise,
            "trace": np.asarray(model.trace_, dtype=np.float64),
        }
    )
    if model.lengthscale_ is not None:
        arrays["lengthscale"] = np.atleast_1d(model.lengthscale_).astype(np.float64)
    if getattr(model, "input_min_", None) is not None:
        arrays["data.input_min"] = np.asarray(model.input_min_, dtype=np.float64)
        arrays["data.input_max"] = np.asarray(model.input_max_, dtype=np.float64)
    return meta, arrays


def model_from_arrays(meta: dict, arrays: dict[str, np.ndarray]):
    """Rebuild a fitted DirectRegressor; checks shapes and probabilities (ModelFileError)."""
    from direct_edge.trainer.regressor import DirectRegressor

    try:
        model = DirectRegressor(**meta["params"])
        fm_arrays = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("feature_map.")}
        fmap = FeatureMap.from_arrays(meta["feature_map"], fm_arrays)
        levels = arrays["grid.levels"].astype(np.int64)
        grid = WeightGrid(levels, float(meta["grid"]["scale"]))
        Q = arrays["posterior.q_weights"]
        alpha = arrays["posterior.mixture_weights"]
        noise, rho = arrays["posterior.noise"], arrays["posterior.q_noise"]
        b = fmap.n_features
        if Q.ndim != 3 or Q.shape[1:] != (b, levels.size) or alpha.shape != (Q.shape[0],):
            raise ModelFileError("posterior arrays do not match the feature map and grid")
        if noise.shape != rho.shape or noise.ndim != 1 or not np.all(noise > 0):
            raise ModelFileError("noise posterior is malformed")
        for name, p, axis in (("q_weights", Q, -1), ("mixture_weights", alpha, -1), ("q_noise", rho, -1)):
            if not (np.all(np.isfinite(p)) and np.all(p >= 0) and np.allclose(p.sum(axis=axis), 1.0)):
                raise ModelFileError(f"{name} are not probability distributions")
        if not (np.all(np.isfinite(fmap.input_offset)) and np.all(fmap.input_scale > 0)):
            raise ModelFileError("input standardisation is malformed")
        model.feature_map_ = fmap
        model.posterior_ = Posterior(
            np.broadcast_to(grid.values, (b, levels.size)), Q, alpha, noise, rho, grid
        )
        for key in _FITTED_SCALARS:
            setattr(model, key, meta["fitted"][key])
        ls = arrays.get("lengthscale")
        model.lengthscale_ = None if ls is None else (ls if ls.size > 1 else float(ls[0]))
        model.trace_ = arrays["trace"].tolist()
        # Minor version 1 added the training range; files from 1.0 lack it (the export then uses μ ± 8σ).
        low, high = arrays.get("data.input_min"), arrays.get("data.input_max")
        if low is not None and high is not None:
            d = fmap.n_inputs
            if low.shape != (d,) or high.shape != (d,) or not np.all(low <= high):
                raise ModelFileError("training input range is malformed")
            model.input_min_, model.input_max_ = low, high
        model.selection_ = meta["selection"]
        model.summary_ = meta["summary"]
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"model file content is malformed ({type(exc).__name__}: {exc})") from None
    return model


def save_model(path: str | os.PathLike, model, summary: dict | None = None) -> None:
    """Write a fitted DirectRegressor to ``path`` atomically.  ``summary``: extra JSON-able facts
    (e.g. test RMSE) stored under meta["summary"]."""
    meta, arrays = model_to_arrays(model, summary)
    write_atomic(Path(path), encode(meta, arrays))


def load_model(path: str | os.PathLike):
    """Read a ``model.direct`` file into a fitted DirectRegressor (ModelFileError if invalid)."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"model path is a directory: {path}") from None
    meta, arrays = decode(blob)
    return model_from_arrays(meta, arrays)


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
