"""Feature rotation (IS §3.5, MF §5.3): the exporter's quantisation of V, the reader's checks, the
reference against the float64 model within IS §8's bound, and the unrotated blobs it leaves unchanged.

Rotated models are real fits with their feature map rotated afterwards (``FeatureMap.rotated``): V the
eigenvectors of the training Gram matrix (what the trainer will produce) or the Q of a random matrix.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from direct_edge.export.cli import float64_floor, float64_samples
from direct_edge.export.packed import pack, rotation_integers, synthetic_blob
from direct_edge.runtime import reference
from direct_edge.runtime.blob import FLAG_ROTATION, FORMAT_MINOR, SECTION_FEATURES, BlobError, parse
from direct_edge.trainer import DirectRegressor

from .conftest import patched, portable_library_without, recrc, section_entry


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


def gram_rotation(model: DirectRegressor, X: np.ndarray) -> np.ndarray:
    """(b, b) eigenvectors of the training Gram matrix ΦᵀΦ (orthonormal columns)."""
    Phi = model.feature_map_.transform(X)
    return np.linalg.eigh(Phi.T @ Phi)[1]


def random_rotation(b: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(b, b)))[0]


_FITS: dict = {}


def rotated_model(diabetes, b: int, how: str = "gram") -> DirectRegressor:
    """A DirectRegressor with b rff features fitted on diabetes, then rotated (cached per b and how)."""
    key = (b, how)
    if key not in _FITS:
        X, y = diabetes
        model = DirectRegressor(features="rff", n_features=b, lengthscale=2.0, max_iter=60).fit(X, y)
        V = gram_rotation(model, X) if how == "gram" else random_rotation(b, b)
        model.feature_map_ = model.feature_map_.rotated(V)
        _FITS[key] = model
    return _FITS[key]


# --- the exporter's integers (IS §3.5) ----------------------------------------------------------------


@pytest.mark.parametrize("b", [2, 8, 64, 256])
def test_rotation_integers_follow_the_spec(b):
    V = random_rotation(b, 1)
    A = (b // 2) ** -0.5
    R, s = rotation_integers(V, A)
    assert R.dtype == np.int16 and s.dtype == np.uint8 and R.shape == (b, b) and s.shape == (b,)
    for k in range(b):
        exact = V[:, k] * A * 2.0 ** (15 + int(s[k]))
        if s[k] > 0 or np.max(np.abs(np.rint(exact))) <= 32767:
            np.testing.assert_array_equal(R[k], np.rint(exact))
        assert np.max(np.abs(R[k].astype(int))) <= 32767
        # s_k is the largest that fits: one more bit would overflow i16 (or s_k is already 16)
        if s[k] < 16:
            assert np.max(np.abs(np.rint(V[:, k] * A * 2.0 ** (16 + int(s[k]))))) > 32767


def test_a_row_that_fits_no_shift_is_clipped_at_shift_zero():
    # F = 1 (A = 1) with V = I: A·V_00·2^15 = 32768 fits no s_k ≥ 0
    R, s = rotation_integers(np.eye(2), 1.0)
    np.testing.assert_array_equal(R, [[32767, 0], [0, 32767]])
    np.testing.assert_array_equal(s, [0, 0])


# --- the reader (MF §5.3, §9) -------------------------------------------------------------------------


def test_a_rotated_blob_reads_back_what_the_exporter_wrote():
    b = 64
    data = synthetic_blob("rff", 5, b, 8, seed=4, rotation=True, gains=True, floor=True)
    blob = parse(data)
    R, s = rotation_integers(random_rotation(b, 0), 1.0)  # shape check only: the seed differs
    assert blob.minor == FORMAT_MINOR == 5 and blob.flags & FLAG_ROTATION and blob.has_rotation
    assert blob.rotation.shape == R.shape and blob.rotation_shift.shape == s.shape
    off, size = blob.sections[SECTION_FEATURES]
    F, d = b // 2, 5
    assert size == 4 * F * (1 + d) + 2 * b * b + b + 2 * b + 2 * b
    start = off + 4 * F * (1 + d)
    assert data[start : start + 2 * b * b] == blob.rotation.astype("<i2").tobytes()
    assert data[start + 2 * b * b : start + 2 * b * b + b] == blob.rotation_shift.tobytes()
    # the gains and floor follow the rotation, as without it
    assert data[off + size - 4 * b : off + size - 2 * b] == blob.gains.astype("<u2").tobytes()
    assert data[off + size - 2 * b : off + size] == blob.floor.astype("<u2").tobytes()
    # A = 1 after the rotation: the same model without it has mean_scale A times smaller
    plain = parse(synthetic_blob("rff", 5, b, 8, seed=4, gains=True, floor=True))
    assert blob.mean_scale == pytest.approx(plain.mean_scale * (b // 2) ** 0.5, rel=1e-12)


def _shift_offset(blob) -> int:
    off = blob.sections[SECTION_FEATURES][0]
    b, d = blob.n_features, blob.n_inputs
    return off + 4 * (b // 2) * (1 + d) + 2 * b * b


def hostile_blobs() -> dict[str, tuple[bytes, str]]:
    """Corruptions of a rotated blob (and one linear blob) with the MF §9 code each must raise."""
    data = synthetic_blob("rff", 3, 16, 4, seed=7, layout="gap4", rotation=True, floor=True)
    blob = parse(data)
    out = {}
    at = _shift_offset(blob)
    for k, value in ((0, 17), (15, 17), (3, 255)):
        bad = bytearray(data)
        bad[at + k] = value
        out[f"shift{k}={value}"] = (recrc(bad), "CONTENT")
    bad = bytearray(data)
    bad[at : at + 16] = bytes([16] * 16)  # s_k = 16 everywhere is valid
    out["shift=16"] = (recrc(bad), "")
    bad = bytearray(data)
    bad[15] &= ~FLAG_ROTATION  # R and s still there: the feature section is 2·b² + b bytes too long
    out["flag cleared"] = (recrc(bad), "SECTION")
    size_at = section_entry(SECTION_FEATURES) + 4
    (size,) = struct.unpack_from("<I", data, size_at)
    out["section short"] = (patched(data, "sections", size - 2, 2 * SECTION_FEATURES + 1), "SECTION")
    linear = synthetic_blob("linear", 3, 4, 4, seed=7)
    bad = bytearray(linear)
    bad[15] |= FLAG_ROTATION
    out["linear flagged"] = (recrc(bad), "HEADER")
    bad = bytearray(data)
    bad[at - 7] ^= 0x10  # a bit of R, CRC not recomputed
    out["bit flip"] = (bytes(bad), "CRC")
    out["unknown flag 4"] = (patched(data, "flags", blob.flags | 16), "HEADER")
    return out


@pytest.mark.parametrize("case", sorted(hostile_blobs()))
def test_the_reader_rejects_corrupt_rotations_with_the_spec_code(case):
    data, code = hostile_blobs()[case]
    if not code:
        assert parse(data).rotation_shift.max() == 16
        return
    with pytest.raises(BlobError) as info:
        parse(data)
    assert info.value.name == code


def test_every_i16_rotation_is_accepted_and_cannot_overflow():
    """IS §3.5: |Σ_j R_kj·φ_j| < 2⁴⁶ for any R, so a rotation of ±32768 everywhere with s = 0 loads, and
    the reference clamps ψ to ±32767 (the int64 sum stays exact)."""
    data = synthetic_blob("rff", 2, 8, 3, seed=1, rotation=True)
    blob = parse(data)
    off = _shift_offset(blob) - 2 * 64
    bad = bytearray(data)
    bad[off : off + 128] = np.full(64, -32768, "<i2").tobytes()
    bad[off + 128 : off + 136] = bytes(8)
    worst = parse(recrc(bad))
    q = np.full((3, 2), 32767, np.int16)
    q[1] = -32768
    psi = reference.features(worst, q)
    assert np.all(np.abs(psi) <= 32767)
    phi = reference.features(parse(synthetic_blob("rff", 2, 8, 3, seed=1)), q)
    want = np.clip(((-32768 * phi.sum(axis=1)) + (1 << 14)) >> 15, -32767, 32767)
    np.testing.assert_array_equal(psi, np.repeat(want[:, None], 8, axis=1))


# --- the reference against float64 (IS §8) -----------------------------------------------------------


@pytest.mark.parametrize("b,how", [(8, "gram"), (64, "gram"), (256, "gram"), (64, "random")])
def test_rotated_predictions_are_within_the_spec_bound_of_float64(diabetes, b, how):
    model = rotated_model(diabetes, b, how)
    blob = parse(pack(model, n_samples=16, seed=3))
    assert blob.has_rotation
    X, _ = diabetes
    rng = np.random.default_rng(b)
    X = np.concatenate([X, rng.uniform(X.min(axis=0), X.max(axis=0), (5_000, X.shape[1]))])
    q = reference.quantize_inputs(blob, X)
    q = np.concatenate([q, np.full((1, 10), -32768, np.int16), np.full((1, 10), 32767, np.int16)])
    mean_q, var_q, _ = reference.predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_q)
    f = float64_samples(model, blob, q)
    floor = float64_floor(model, blob, q)
    bound = blob.mean_scale * reference.error_bound(blob)
    floor_bound = blob.mean_scale * np.sqrt(reference.floor_error_bound(blob))
    assert np.max(np.abs(mean - f.mean(axis=1))) <= bound
    assert np.max(np.abs(sd - np.sqrt(f.std(axis=1) ** 2 + floor))) <= bound + blob.mean_scale + floor_bound
    # and the features themselves: every ψ within ε_ψ of 2^15 times the float rotated feature
    psi = reference.features(blob, q).astype(np.float64)
    want = model.feature_map_.transform(reference.dequantize_inputs(blob, q)) * 2.0**15
    if blob.gains is not None:
        want *= blob.gains / 32768.0
    eps = reference.feature_error(blob) + (0.5 if blob.gains is not None else 0.0)
    assert np.max(np.abs(psi - want)) <= eps
    # the bound is not vacuous: a few units of 2^-15, and the prediction tracks the model
    assert eps < 32  # 0.1 % of the amplitude at b = 256
    assert np.max(np.abs(mean - f.mean(axis=1))) < 0.01 * np.std(f.mean(axis=1))


def test_the_rotation_error_bound_is_violated_by_a_wrong_rotation(diabetes):
    """The comparison above can fail: the same blob with two rows of R swapped is far outside it."""
    model = rotated_model(diabetes, 64)
    data = pack(model, n_samples=4, seed=3)
    blob = parse(data)
    off = _shift_offset(blob) - 2 * 64 * 64
    bad = bytearray(data)
    bad[off : off + 256] = data[off + 128 : off + 256] + data[off : off + 128]
    bad[off + 2 * 64 * 64 : off + 2 * 64 * 64 + 2] = bytes([data[off + 8193], data[off + 8192]])
    wrong = parse(recrc(bad))
    X, _ = diabetes
    q = reference.quantize_inputs(wrong, X)
    psi = reference.features(wrong, q).astype(np.float64)
    want = model.feature_map_.transform(reference.dequantize_inputs(wrong, q)) * 2.0**15
    assert np.max(np.abs(psi - want)) > 100 * reference.feature_error(wrong)


def test_exact_mode_and_gains_on_a_rotated_trained_model(diabetes):
    model = rotated_model(diabetes, 64)
    blob = parse(pack(model, n_samples=8, exact=True))
    assert blob.has_rotation and blob.has_exact
    X, _ = diabetes
    q = reference.quantize_inputs(blob, X)
    mean_q, _, _ = reference.predict_exact(blob, q)
    mean, _ = reference.to_target_units(blob, mean_q, np.zeros(len(q), np.uint64))
    f_mean, f_var = model.posterior_.predict_moments(
        model.feature_map_.transform(reference.dequantize_inputs(blob, q)), include_noise=False
    )
    f_mean = f_mean * model.y_scale_ + model.y_offset_
    assert np.max(np.abs(mean - f_mean)) <= 0.01 * np.sqrt(f_var.mean()) * model.y_scale_


# --- unrotated blobs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,b", [("rff", 32), ("linear", 6)])
def test_unrotated_blobs_carry_no_rotation_and_1_4_blobs_still_load(kind, b):
    data = synthetic_blob(kind, 5, b, 8, seed=2, floor=True, gains=True)
    blob = parse(data)
    assert not blob.has_rotation and blob.rotation is None and blob.rotation_shift is None
    old = parse(patched(data, "minor", 4))
    q = np.random.default_rng(0).integers(-32768, 32768, (300, 5)).astype(np.int16)
    for got, want in zip(reference.predict(old, q), reference.predict(blob, q), strict=True):
        np.testing.assert_array_equal(got, want)
    # and the features are the plain §3.2/§3.4 ones, not passed through any matrix
    if kind == "rff":
        t = (q.astype(np.int64) @ blob.phase_w.astype(np.int64).T + blob.phase_c) & 0xFFFFFFFF
        phi = np.concatenate(
            [reference.sin16(blob.table, (t + (1 << 30)) & 0xFFFFFFFF), reference.sin16(blob.table, t)], 1
        )
        np.testing.assert_array_equal(reference.features(blob, q), (phi * blob.gains + (1 << 14)) >> 15)


# --- the C library against the reference (bit-exact) ---------------------------------------------------


def extreme_and_random_inputs(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) int16: all −32768, all 32767, both alternations, zeros, then uniform over int16."""
    q = rng.integers(-32768, 32768, (n, d)).astype(np.int16)
    q[0], q[1], q[4] = -32768, 32767, 0
    q[2, 0::2], q[2, 1::2] = 32767, -32768
    q[3, 0::2], q[3, 1::2] = -32768, 32767
    return q


def assert_same(got: tuple, want: tuple) -> None:
    for name, a, b in zip(("mean", "var_f", "var_y"), got, want, strict=True):
        assert a.dtype == b.dtype, name
        bad = np.flatnonzero(a != b)
        assert bad.size == 0, f"{name}: {bad.size} rows differ, first {bad[:1]}: {a[bad[:1]]} != {b[bad[:1]]}"


# (d, b, S, layout, gains, floor, exact): b = 2 (F = 1), 8, 64, 256; every layout; each option on and off.
C_CASES = [
    (1, 2, 3, "dense4", False, False, True),
    (5, 8, 16, "dense4", True, True, True),
    (3, 8, 5, "bitmap4", False, False, False),
    (9, 64, 8, "dense4", False, True, True),
    (5, 64, 17, "bitmap4", True, False, True),
    (4, 64, 12, "grouped", True, True, False),
    (7, 64, 9, "gap4", False, False, True),
    (6, 256, 32, "dense4", True, True, True),
    (10, 256, 7, "grouped", False, True, True),
    (3, 256, 4, "gap4", True, False, False),
    (2, 256, 1, "bitmap4", False, False, True),
]


@pytest.mark.parametrize("d,b,S,layout,gains,floor,exact", C_CASES)
def test_c_is_bit_exact_with_the_reference_on_rotated_blobs(
    native_library, d, b, S, layout, gains, floor, exact
):
    from direct_edge.runtime.native import NativeModel

    seed = b * 1000 + d * 10 + S
    data = synthetic_blob(
        "rff", d, b, S, seed=seed, layout=layout, gains=gains, floor=floor, exact=exact, rotation=True
    )
    blob, model = parse(data), NativeModel(data, library=native_library)
    assert blob.has_rotation and blob.has_floor == floor and (blob.gains is not None) == gains
    assert model._scratch_size == 4 * b  # two b-feature buffers (direct.h)
    q = extreme_and_random_inputs(np.random.default_rng(seed), 2000, d)
    assert_same(model.predict(q), reference.predict(blob, q))
    if exact:
        assert_same(model.predict_exact(q), reference.predict_exact(blob, q))
    np.testing.assert_array_equal(model.features(q[:300]), reference.features(blob, q[:300]))


def test_c_is_bit_exact_on_rotated_trained_models(native_library, diabetes):
    from direct_edge.runtime.native import NativeModel

    X, _ = diabetes
    for b, how in ((8, "gram"), (64, "random"), (256, "gram")):
        model = rotated_model(diabetes, b, how)
        for layout in ("dense4", "gap4"):
            data = pack(model, n_samples=12, layout=layout, exact=True)
            blob, native = parse(data), NativeModel(data, library=native_library)
            assert blob.has_rotation
            q = np.concatenate(
                [
                    reference.quantize_inputs(blob, X),
                    extreme_and_random_inputs(np.random.default_rng(b), 500, 10),
                ]
            )
            assert_same(native.predict(q), reference.predict(blob, q))
            assert_same(native.predict_exact(q), reference.predict_exact(blob, q))


def test_c_classifies_rotated_blobs_bit_exactly(native_library):
    from direct_edge.export.packed import synthetic_classifier_blob
    from direct_edge.runtime import classify
    from direct_edge.runtime.native import NativeModel
    from direct_edge.runtime.native import classify as native_classify

    for classes, b in ((2, 64), (5, 32)):
        data = synthetic_classifier_blob("rff", 4, b, 6, classes=classes, seed=b, rotation=True)
        blob = parse(data)
        assert blob.has_rotation
        q = extreme_and_random_inputs(np.random.default_rng(classes), 500, 4)
        got, want = native_classify(NativeModel(data, library=native_library), q), classify.classify(blob, q)
        for key in ("label", "proba", "entropy", "expected_entropy", "mutual_info"):
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)
        # and the rotation matters: the same classifier without it gives other probabilities
        plain = parse(synthetic_classifier_blob("rff", 4, b, 6, classes=classes, seed=b))
        assert not np.array_equal(classify.classify(plain, q)["proba"], want["proba"])


@pytest.mark.parametrize("case", sorted(hostile_blobs()))
def test_c_rejects_corrupt_rotations_with_the_readers_code(native_library, case):
    from direct_edge.runtime.native import NativeModel

    data, code = hostile_blobs()[case]
    if not code:
        NativeModel(data, library=native_library)
        return
    with pytest.raises(BlobError) as info:
        NativeModel(data, library=native_library)
    assert info.value.name == code


def test_c_features_need_room_for_both_buffers(native_library):
    """direct_features on a rotated model refuses n_phi < 2·b (ARG) rather than write past phi."""
    import ctypes

    from direct_edge.runtime.native import NativeModel

    model = NativeModel(synthetic_blob("rff", 3, 16, 4, seed=5, rotation=True), library=native_library)
    q = np.zeros(3, np.int16)
    phi = np.zeros(32, np.int16)
    i16p = ctypes.POINTER(ctypes.c_int16)
    call = model._lib.direct_features
    args = (ctypes.byref(model._model), q.ctypes.data_as(i16p), phi.ctypes.data_as(i16p))
    assert call(*args, 31) == 1 and call(*args, 16) == 1
    assert call(*args, 32) == 0


def test_a_build_without_the_rotation_refuses_rotated_blobs_and_opens_the_rest(tmp_path):
    """-DDIRECT_ROTATION=0 (direct.h, the AVR default): HEADER for a rotated blob, as a 1.4 reader says,
    and the others open and predict bit-exactly."""
    from direct_edge.runtime.native import NativeModel

    path = portable_library_without(tmp_path, "DIRECT_ROTATION")
    with pytest.raises(BlobError, match="HEADER"):
        NativeModel(synthetic_blob("rff", 3, 16, 4, seed=3, rotation=True), library=path)
    plain = synthetic_blob("rff", 3, 16, 4, seed=3, layout="dense4", floor=True)
    model = NativeModel(plain, library=path)
    assert model._scratch_size == 2 * 16
    q = extreme_and_random_inputs(np.random.default_rng(0), 200, 3)
    assert_same(model.predict(q), reference.predict(parse(plain), q))


@pytest.mark.parametrize("kind,b", [("rff", 32), ("linear", 6)])
def test_c_still_reads_1_4_blobs_exactly_as_before(native_library, kind, b):
    from direct_edge.runtime.native import NativeModel

    data = patched(
        synthetic_blob(kind, 5, b, 8, seed=2, floor=True, gains=True, layout="bitmap4"), "minor", 4
    )
    model, blob = NativeModel(data, library=native_library), parse(data)
    assert model._scratch_size == 2 * (b + b % 2)
    q = extreme_and_random_inputs(np.random.default_rng(1), 500, 5)
    assert_same(model.predict(q), reference.predict(blob, q))
