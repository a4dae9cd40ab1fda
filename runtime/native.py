"""ctypes binding of the C runtime (``runtime/c``): the fast integer path for host Python.

The library is compiled on first use with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) into a per-user cache folder (``$DIRECT_EDGE_CACHE``, else ``~/.cache/direct-edge``, else,
without a writable home, ``direct-edge-<uid>`` in the temp directory), keyed by a hash of the sources and
the compiler command, and reused afterwards.  Folders are created 0755 and libraries 0644, so a shared or
prebuilt cache is readable by every user.  ``DIRECT_EDGE_CFLAGS`` replaces the optimisation flags
(default: ``-O3 -march=native -DDIRECT_VECTORIZE``, the SIMD-friendly kernels tuned for the machine that
compiles them, falling back to ``-O3 -DDIRECT_VECTORIZE`` where ``-march=native`` is not accepted);
``DIRECT_EDGE_NATIVE_LIB`` names a prebuilt library instead.
Outputs are bit-exact with :mod:`direct_edge.runtime.reference` (both follow docs/integer-spec.md).

    model = NativeModel(blob_bytes)          # validates like blob.parse (MF §9), raises BlobError
    mean_q, var_q, var_y_q = model.predict(q)  # q: (n, d) int16
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(__file__).resolve().parent / "c"
SOURCES = ("direct.c", "direct_predict.c", "direct_classify.c")
HEADERS = ("direct.h", "direct_internal.h")
# Host builds: vectorising optimisation for this machine (the integer results are identical either way).
DEFAULT_CFLAGS = ("-std=c99", "-O3", "-march=native", "-DDIRECT_VECTORIZE", "-fPIC", "-shared")
# What a microcontroller build uses: no SIMD, table-based nibble decoding (tests build both).
PORTABLE_CFLAGS = ("-std=c99", "-O2", "-fPIC", "-shared")
STATUS_OK, STATUS_NO_EXACT, STATUS_TASK = 0, 12, 13
SMALL_BATCH = 16


def _default_cflags() -> tuple[str, ...]:
    extra = os.environ.get("DIRECT_EDGE_CFLAGS")
    return ("-std=c99", *extra.split(), "-fPIC", "-shared") if extra else DEFAULT_CFLAGS


class NativeUnavailable(RuntimeError):
    """The C library cannot be built or loaded here (no C compiler, or the build failed)."""


class _Model(ctypes.Structure):
    """Mirror of ``direct_model`` (runtime/c/direct.h); only the C library writes it."""

    _fields_ = [
        ("blob", ctypes.c_void_p),
        ("size", ctypes.c_uint32),
        ("kind", ctypes.c_uint8),
        ("layout", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("n_inputs", ctypes.c_uint16),
        ("n_features", ctypes.c_uint16),
        ("n_samples", ctypes.c_uint16),
        ("feature_frac", ctypes.c_uint8),
        ("pre_shift", ctypes.c_uint8),
        ("m1", ctypes.c_int32),
        ("m2", ctypes.c_uint32),
        ("s1", ctypes.c_uint8),
        ("s2", ctypes.c_uint8),
        ("minor", ctypes.c_uint16),
        ("noise_q", ctypes.c_uint64),
        ("noise_exact_q", ctypes.c_uint64),
        ("linear", ctypes.c_void_p),
        ("phase_c", ctypes.c_void_p),
        ("phase_w", ctypes.c_void_p),
        ("table", ctypes.c_void_p),
        ("samples", ctypes.c_void_p),
        ("samples_size", ctypes.c_uint32),
        ("exact_mean", ctypes.c_void_p),
        ("exact_var", ctypes.c_void_p),
        ("weight_bound", ctypes.c_uint32),
        ("gains", ctypes.c_void_p),
        ("var_floor", ctypes.c_void_p),
        # DIRECT_ROTATION builds only (every host build); a build without them writes less of this struct.
        ("rotation", ctypes.c_void_p),
        ("rotation_shift", ctypes.c_void_p),
    ]


class _Prediction(ctypes.Structure):
    """Mirror of ``direct_prediction``."""

    _fields_ = [
        ("mean", ctypes.c_int32),
        ("out_of_range", ctypes.c_uint32),
        ("var_f", ctypes.c_uint64),
        ("var_y", ctypes.c_uint64),
    ]


PREDICTION_DTYPE = np.dtype(_Prediction)


def _compiler() -> list[str]:
    """The C compiler command: ``$CC`` (may hold arguments), else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"].split()
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise NativeUnavailable("no C compiler found (install gcc or clang, or set CC) to build the C runtime")


CACHE_VARIABLE = "DIRECT_EDGE_CACHE"
DIR_MODE, LIBRARY_MODE = 0o755, 0o644  # the cache may be shared: readable by every user, written by its owner


def _user_cache_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home()))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "direct-edge"


def _make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each mode 0755 whatever the umask; OSError if impossible."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(folder)) from None
            continue
        os.chmod(folder, DIR_MODE)


def _temp_cache_dir() -> Path:
    """A per-user folder in the temp directory; refused unless it is ours and writable by us alone (the
    library in it is loaded into this process)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    path = Path(tempfile.gettempdir()) / f"direct-edge-{user}"
    _make_dirs(path)
    if hasattr(os, "getuid"):
        info = path.lstat()
        if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise PermissionError(f"{path} is not a folder owned and writable only by this user")
    return path


def _cache_dir() -> Path:
    """Where built libraries are kept: ``$DIRECT_EDGE_CACHE``, else the user's cache folder, else (no
    writable home) a per-user folder in the temp directory.  Folders are created 0755.

    Raises :class:`NativeUnavailable` with a one-line message naming DIRECT_EDGE_CACHE when none works.
    """
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        candidates = [lambda: _made(Path(explicit))]
    else:
        candidates = [lambda: _made(_user_cache_dir()), _temp_cache_dir]
    problems = []
    for candidate in candidates:
        try:
            return candidate()
        except (OSError, RuntimeError) as exc:  # RuntimeError: Path.home() without a home
            if isinstance(exc, OSError) and exc.strerror:
                problems.append(f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror)
            else:
                problems.append(str(exc))
    raise NativeUnavailable(
        f"no writable cache folder for the C runtime ({'; '.join(problems)}); "
        f"set {CACHE_VARIABLE} to a writable folder"
    )


def _made(path: Path) -> Path:
    """``path``, created if missing; PermissionError when this user cannot write into it."""
    _make_dirs(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", str(path))
    return path


def _library_suffix() -> str:
    return {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")


def build_library(output: str | os.PathLike | None = None, cflags: tuple[str, ...] | None = None) -> Path:
    """Compile runtime/c into a shared library and return its path.

    Without ``output`` the library goes to the cache folder under a name that hashes the sources and the
    command, and an existing one is reused.  The file appears atomically (written aside, then renamed).
    """
    cc = _compiler()
    cflags = _default_cflags() if cflags is None else cflags
    sources = [SOURCE_DIR / name for name in SOURCES]
    digest = hashlib.sha256(" ".join(cc + list(cflags) + [sys.platform]).encode())
    for path in sources + [SOURCE_DIR / name for name in HEADERS]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    name = f"libdirect-{digest.hexdigest()[:16]}{_library_suffix()}"
    target = Path(output) if output else _cache_dir() / name
    if output is None and target.exists():
        return target
    _make_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=".libdirect-", suffix=_library_suffix(), dir=target.parent)
    os.close(fd)
    try:
        cmd = cc + list(cflags) + [str(s) for s in sources] + ["-o", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0 and "-march=native" in cmd:  # e.g. a compiler that lacks it
                cmd.remove("-march=native")
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise NativeUnavailable(f"cannot run the C compiler {cc[0]!r}: {exc}") from exc
        if done.returncode != 0:
            command = " ".join(cmd)
            raise NativeUnavailable(f"building the C runtime failed ({command}):\n{done.stderr.strip()}")
        os.chmod(tmp, LIBRARY_MODE)  # mkstemp made it 0600: other users of a shared cache could not load it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def load_library(path: str | None = None) -> ctypes.CDLL:
    """The C runtime via ctypes: ``path``, else ``$DIRECT_EDGE_NATIVE_LIB``, else built and cached."""
    path = path or os.environ.get("DIRECT_EDGE_NATIVE_LIB") or str(build_library())
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise NativeUnavailable(f"cannot load the C runtime {path}: {exc}") from exc
    u32, i16p, vp = ctypes.c_uint32, ctypes.POINTER(ctypes.c_int16), ctypes.c_void_p
    model_p, pred_p = ctypes.POINTER(_Model), ctypes.POINTER(_Prediction)
    signatures = {
        "direct_model_open": (ctypes.c_int, [model_p, vp, u32]),
        "direct_scratch_size": (u32, [model_p]),
        "direct_features": (ctypes.c_int, [model_p, i16p, i16p, u32]),
        "direct_out_of_range": (u32, [model_p, vp]),
        "direct_predict": (ctypes.c_int, [model_p, i16p, vp, u32, pred_p]),
        "direct_predict_exact": (ctypes.c_int, [model_p, i16p, vp, u32, pred_p]),
        # Batch calls take plain addresses: the per-call cost of ctypes pointer objects is microseconds.
        "direct_predict_batch": (ctypes.c_int, [vp, vp, u32, vp, u32, vp]),
        "direct_predict_exact_batch": (ctypes.c_int, [vp, vp, u32, vp, u32, vp]),
        "direct_classify_scratch_size": (u32, [model_p]),
        "direct_n_classes": (u32, [model_p]),
        "direct_classify_batch": (ctypes.c_int, [vp, vp, u32, vp, u32, vp]),
        "direct_crc32": (u32, [vp, u32]),
        "direct_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _blob_error(lib: ctypes.CDLL, code: int, what: str) -> Exception:
    from direct_edge.runtime.blob import BlobError

    name = lib.direct_status_name(code).decode()
    return BlobError(name, f"the C runtime rejected {what} (status {code})")


class NativeModel:
    """A blob opened by the C library; keeps an aligned copy of the bytes alive for its lifetime.

    ``library``: a path to a prebuilt library (default: build or reuse the cached one).
    Raises :class:`~direct_edge.runtime.blob.BlobError` (same code as ``blob.parse``) for a bad blob and
    :class:`NativeUnavailable` when the library cannot be built.
    """

    def __init__(self, blob: bytes, library: str | None = None) -> None:
        self._lib = load_library(library)
        data = bytes(blob)
        # MF §1: the C library needs a 4-byte aligned blob; an array of u64 is 8-aligned.
        self._buffer = (ctypes.c_uint64 * max(1, (len(data) + 7) // 8))()
        ctypes.memmove(self._buffer, data, len(data))
        self._model = _Model()
        code = self._lib.direct_model_open(ctypes.byref(self._model), self._buffer, len(data))
        if code != STATUS_OK:
            raise _blob_error(self._lib, code, "the blob")
        self._scratch_size = int(self._lib.direct_scratch_size(ctypes.byref(self._model)))
        # One scratch buffer per model: calls on one NativeModel must not run concurrently (use one
        # NativeModel per thread; the C model itself is read-only and could be shared).
        self._scratch_buf = np.zeros(max(1, (self._scratch_size + 7) // 8), dtype=np.uint64)
        self._addresses = (ctypes.addressof(self._model), self._scratch_buf.ctypes.data)
        # Small batches go through preallocated input/output buffers whose addresses are known: getting an
        # array's address from numpy costs about a microsecond per array, more than a small prediction.
        self._small_q = np.zeros((SMALL_BATCH, self.n_inputs), dtype=np.int16)
        self._small_out = np.zeros(SMALL_BATCH, dtype=PREDICTION_DTYPE)
        self._small_addresses = (self._small_q.ctypes.data, self._small_out.ctypes.data)
        self._batch = {
            name: getattr(self._lib, name) for name in ("direct_predict_batch", "direct_predict_exact_batch")
        }

    @property
    def n_inputs(self) -> int:
        return int(self._model.n_inputs)

    @property
    def n_features(self) -> int:
        return int(self._model.n_features)

    @property
    def n_samples(self) -> int:
        return int(self._model.n_samples)

    @property
    def has_exact(self) -> bool:
        return bool(self._model.exact_mean)

    @property
    def weight_bound(self) -> int:
        """L = max_s Σ_i |w_si| as the C loader computed it (IS §9)."""
        return int(self._model.weight_bound)

    def _inputs(self, q: np.ndarray) -> np.ndarray:
        from direct_edge.runtime.reference import check_inputs

        return check_inputs(q, self.n_inputs)

    @property
    def n_classes(self) -> int:
        """C for a classifier blob (MF §11), 0 for a regression model."""
        return int(self._lib.direct_n_classes(ctypes.byref(self._model)))

    def _run(self, fn_name: str, q: np.ndarray, return_mask: bool = False) -> tuple[np.ndarray, ...]:
        if self.n_classes:  # the C regression calls would return moments of the S·R weight rows
            raise _blob_error(self._lib, STATUS_TASK, "a regression call on a classifier blob (use classify)")
        q = self._inputs(q)
        n = q.shape[0]
        model, scratch = self._addresses
        if 0 < n <= SMALL_BATCH:
            self._small_q[:n] = q
            q_address, out_address = self._small_addresses
            out = self._small_out[:n]
        else:
            out = np.empty(n, dtype=PREDICTION_DTYPE)
            q_address, out_address = q.ctypes.data, out.ctypes.data
        if n:
            code = self._batch[fn_name](model, q_address, n, scratch, self._scratch_size, out_address)
            if code != STATUS_OK:
                raise _blob_error(self._lib, code, "the prediction call")
        elif fn_name == "direct_predict_exact_batch" and not self.has_exact:
            raise _blob_error(self._lib, STATUS_NO_EXACT, "the prediction call")
        result = out["mean"].copy(), out["var_f"].copy(), out["var_y"].copy()
        return (*result, out["out_of_range"].copy()) if return_mask else result

    def predict(self, q: np.ndarray, return_mask: bool = False) -> tuple[np.ndarray, ...]:
        """IS §3–§5 for int16 inputs (n, d): (mean_q int32, var_q uint64, var_y_q uint64), each (n,);
        ``return_mask`` adds ``direct_prediction.out_of_range``, the IS §2.1 at-the-edge mask (uint32)."""
        return self._run("direct_predict_batch", q, return_mask)

    def predict_exact(self, q: np.ndarray, return_mask: bool = False) -> tuple[np.ndarray, ...]:
        """IS §6 for int16 inputs (n, d): (mean_q int32, var_q uint64, var_y_q uint64) [+ the mask as in
        :meth:`predict`]; BlobError NO_EXACT on a blob without the exact section."""
        return self._run("direct_predict_exact_batch", q, return_mask)

    def out_of_range(self, q: np.ndarray) -> np.ndarray:
        """IS §2.1 masks of int16 inputs (n, d) from ``direct_out_of_range``: uint32 (n,), a call per row."""
        q = self._inputs(q)
        fn, model = self._lib.direct_out_of_range, ctypes.byref(self._model)
        return np.array([fn(model, q[i].ctypes.data) for i in range(q.shape[0])], np.uint32)

    def features(self, q: np.ndarray) -> np.ndarray:
        """IS §3 features of int16 inputs (n, d): int16 (n, b), one C call per row (for tests)."""
        q = self._inputs(q)
        # the scratch's int16 count: a rotated model's features need room for the unrotated ones too
        width = max(self.n_features, self._scratch_size // 2)
        phi = np.zeros((q.shape[0], width), dtype=np.int16)
        for i in range(q.shape[0]):
            code = self._lib.direct_features(
                ctypes.byref(self._model),
                q[i].ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                phi[i].ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                width,
            )
            if code != STATUS_OK:
                raise _blob_error(self._lib, code, "the feature call")
        return np.ascontiguousarray(phi[:, : self.n_features])


#: ``direct_classification`` (runtime/c/direct.h) with the default DIRECT_MAX_CLASSES = 16.
MAX_CLASSES = 16
CLASSIFICATION_DTYPE = np.dtype(
    [
        ("label", "<u4"),
        ("n_classes", "<u4"),
        ("out_of_range", "<u4"),
        ("entropy", "<u4"),
        ("expected_entropy", "<u4"),
        ("mutual_info", "<u4"),
        ("proba", "<u4", (MAX_CLASSES,)),
    ]
)


def classify(model: NativeModel, q: np.ndarray) -> dict[str, np.ndarray]:
    """IS §10 through the C library's ``direct_classify_batch`` for int16 inputs (n, d): a dict of
    ``label`` (n,), ``proba`` (n, C) (units of 2^-16), ``entropy``, ``expected_entropy``,
    ``mutual_info`` (n,) (units of 2^-16 bits) and ``out_of_range`` (n,), all int64 (the reference's
    ``runtime.classify.classify`` keys).  BlobError TASK for a regression blob or a layout other
    than dense4, ARG for more than 16 classes."""
    lib = model._lib
    q = model._inputs(q)
    n = q.shape[0]
    size = int(lib.direct_classify_scratch_size(ctypes.byref(model._model)))
    scratch = np.zeros(max(1, (size + 7) // 8), dtype=np.uint64)  # 8-byte aligned (direct.h)
    out = np.zeros(max(n, 1), dtype=CLASSIFICATION_DTYPE)
    code = lib.direct_classify_batch(
        ctypes.addressof(model._model), q.ctypes.data, n, scratch.ctypes.data, size, out.ctypes.data
    )
    if code != STATUS_OK:
        raise _blob_error(lib, code, "the classification call")
    out = out[:n]
    C = int(out["n_classes"][0]) if n else 0
    result = {
        key: out[key].astype(np.int64) for key in ("label", "entropy", "expected_entropy", "mutual_info")
    }
    result["proba"] = out["proba"][:, :C].astype(np.int64)
    result["out_of_range"] = out["out_of_range"].astype(np.int64)
    return result


def crc32(data: bytes, library: str | None = None) -> int:
    """MF §8 CRC-32 computed by the C library (equals zlib.crc32)."""
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    return int(load_library(library).direct_crc32(buf, len(data)))
