"""Corrupted blobs against the C loader under AddressSanitizer and UndefinedBehaviorSanitizer.

Every truncation and thousands of bit flips and byte overwrites of valid blobs go through one
sanitized harness process (runtime/c/test/direct_check.c). For each, the C status must equal the
Python reader's MF §9 code, and where a mutated blob is still accepted, the C outputs on extreme and
random inputs must equal the numpy reference's (checked through a digest both sides compute).
A libFuzzer target (runtime/c/fuzz) runs for a bounded time.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from direct_edge.export.packed import synthetic_blob
from direct_edge.runtime import classify, reference
from direct_edge.runtime.blob import HEADER_SIZE, MIN_SIZE, SECTION_SAMPLES, BlobError, parse
from direct_edge.runtime.header import BY_NAME

from .conftest import C_DIR, patched, recrc, require_tool, section_entry

MASK64 = (1 << 64) - 1
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
LCG_MUL, LCG_ADD = 6364136223846793005, 1442695040888963407


def classifier_blobs() -> dict[str, bytes]:
    """Two small classifier blobs (MF §11): two classes on linear features, three on rff features."""
    import warnings

    from direct_edge.export.packed import pack_classifier
    from direct_edge.trainer.classifier import DirectClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y2, y3 = (X[:, 0] > 0).astype(int), np.digitize(X[:, 1], [-0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linear = DirectClassifier(
            features="linear", grid_scale=0.4, prior_scale=1.0, n_samples=4, max_iter=30
        )
        rff = DirectClassifier(n_features=8, lengthscale=1.0, grid_scale=0.8, prior_scale=2.0, n_samples=3)
        rff.set_params(max_iter=30)
        return {
            "classifier-linear": pack_classifier(linear.fit(X, y2), n_samples=4),
            "classifier-rff": pack_classifier(rff.fit(X, y3), n_samples=3),
        }


CLASSIFIERS = classifier_blobs()


def valid_blobs() -> dict[str, bytes]:
    """Small blobs covering both feature kinds, the four layouts, the exact section, gap escapes and skips,
    the schema section, feature gains and classifiers."""
    return {
        "linear-dense4": synthetic_blob("linear", 5, 6, 3, bits=4, zeros=0.2, seed=1, layout="dense4"),
        "linear-grouped": synthetic_blob("linear", 8, 9, 5, bits=3, zeros=0.5, seed=2, layout="grouped"),
        "rff-bitmap4": synthetic_blob(
            "rff", 3, 18, 4, bits=4, zeros=0.5, seed=3, layout="bitmap4", exact=False
        ),
        "rff-grouped": synthetic_blob("rff", 2, 600, 2, bits=2, zeros=0.99, seed=4, layout="grouped"),
        "rff-gap4": synthetic_blob("rff", 2, 400, 3, bits=3, zeros=0.95, seed=5, layout="gap4"),
        # MF §10: a schema section the C library places and checksums but never reads
        "linear-schema": synthetic_blob(
            "linear", 3, 4, 3, bits=4, zeros=0.3, seed=6, layout="gap4", schema=True
        ),
        # MF §5.1: feature gains at the end of the feature section
        "linear-gains": synthetic_blob(
            "linear", 4, 5, 3, bits=4, zeros=0.3, seed=7, layout="dense4", gains=True
        ),
        "rff-gains": synthetic_blob("rff", 3, 16, 4, bits=4, zeros=0.5, seed=8, layout="bitmap4", gains=True),
        # MF §11: classifiers, evaluated by direct_classify
        **CLASSIFIERS,
    }


def harness_inputs(d: int) -> np.ndarray:
    """The 8 rows direct_check.c predicts on: all minimum, all maximum, alternating, 5 LCG rows."""
    q = np.zeros((8, d), dtype=np.int16)
    state = 0x9E3779B97F4A7C15
    for row in range(8):
        for k in range(d):
            state = (state * LCG_MUL + LCG_ADD) & MASK64
            if row == 0:
                q[row, k] = -32768
            elif row == 1:
                q[row, k] = 32767
            elif row == 2:
                q[row, k] = 32767 if k & 1 else -32768
            else:
                v = state >> 48
                q[row, k] = v - 65536 if v >= 32768 else v
    return q


def reference_digest(data: bytes) -> tuple[int, int]:
    """(MF §9 code, digest of the reference outputs) as direct_check.c prints them for a blob."""
    try:
        blob = parse(data)
    except BlobError as exc:
        return exc.code, 0
    q = harness_inputs(blob.n_inputs)
    if blob.classes:  # MF §11: direct_check.c classifies (dense4, at most 16 classes), else nothing
        h = FNV_OFFSET
        if blob.layout != 0 or blob.classes > 16:
            return 0, h
        out = classify.classify(blob, q)
        for row in range(8):
            values = [out["label"][row], *out["proba"][row]]
            values += [out["entropy"][row], out["expected_entropy"][row], out["mutual_info"][row]]
            for v in values:
                h = ((h ^ int(v)) * FNV_PRIME) & MASK64
        return 0, h
    runs = [reference.predict(blob, q)]
    if blob.has_exact:
        runs.append(reference.predict_exact(blob, q))
    h = FNV_OFFSET
    for row in range(8):
        for mean, var_f, var_y in runs:
            for v in (int(mean[row]) & 0xFFFFFFFF, int(var_f[row]), int(var_y[row])):
                h = ((h ^ v) * FNV_PRIME) & MASK64
    return 0, h


def run_harness(harness: Path, blobs: list[bytes], folder: Path) -> list[tuple[int, int]]:
    """Write ``blobs`` to files and return (status, digest) for each from one harness process."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(blobs):
        path = folder / f"{i:06d}.bin"
        path.write_bytes(data)
        paths.append(str(path))
    done = subprocess.run(
        [str(harness), "-"], input="\n".join(paths) + "\n", capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"harness crashed or a sanitizer fired:\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    assert len(lines) == len(blobs)
    return [(int(code), int(digest, 16)) for code, digest in (line.split() for line in lines)]


def assert_c_agrees(harness: Path, blobs: list[bytes], folder: Path) -> dict[int, int]:
    """C and Python agree on every blob (code, and outputs where accepted); returns a count per code."""
    got = run_harness(harness, blobs, folder)
    counts: dict[int, int] = {}
    for i, (data, c_result) in enumerate(zip(blobs, got, strict=True)):
        want = reference_digest(data)
        assert c_result == want, f"blob {i} ({len(data)} bytes): C {c_result} != Python {want}"
        counts[want[0]] = counts.get(want[0], 0) + 1
    return counts


def test_valid_blobs_give_reference_outputs(sanitized_harness, tmp_path):
    counts = assert_c_agrees(sanitized_harness, list(valid_blobs().values()), tmp_path)
    assert counts == {0: len(valid_blobs())}


def test_every_truncation_is_rejected(sanitized_harness, tmp_path):
    blobs = []
    for data in valid_blobs().values():
        for n in range(len(data)):
            blobs.append(data[:n])
            if n >= MIN_SIZE:  # also with the size field and CRC rewritten: the section checks fire
                fixed = bytearray(data[:n])
                at = BY_NAME["total_size"].offset
                fixed[at : at + 4] = n.to_bytes(4, "little")
                blobs.append(recrc(fixed))
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    assert 0 not in counts and {1, 5, 8} <= set(counts), counts


def test_every_truncation_of_the_samples_section_is_rejected(sanitized_harness, tmp_path):
    """The samples section's size shortened by 1 … all its bytes (CRC recomputed): the decoder must stop
    at the section's end, never read the bytes after it."""
    blobs = []
    for data in valid_blobs().values():
        entry = section_entry(SECTION_SAMPLES) + 4
        size = int.from_bytes(data[entry : entry + 4], "little")
        for n in range(size):
            out = bytearray(data)
            out[entry : entry + 4] = n.to_bytes(4, "little")
            if n == 0:
                out[entry - 4 : entry] = bytes(4)  # an empty section has offset 0 (MF §3)
            blobs.append(recrc(out))
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    assert 0 not in counts and 9 in counts, counts


def _flip(rng: np.random.Generator, data: bytes, n_bits: int) -> bytearray:
    out = bytearray(data)
    for pos in rng.integers(0, 8 * len(data), n_bits):
        out[pos // 8] ^= 1 << (pos % 8)
    return out


def test_random_bit_flips_with_the_crc_left_as_is_are_rejected(sanitized_harness, tmp_path):
    rng = np.random.default_rng(11)
    blobs = [
        bytes(_flip(rng, data, int(rng.integers(1, 4))))
        for data in valid_blobs().values()
        for _ in range(300)
    ]
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    assert 0 not in counts and counts.get(6, 0) > 0.8 * len(blobs), counts


def test_random_bit_flips_with_a_recomputed_crc_are_rejected_or_valid(sanitized_harness, tmp_path):
    rng = np.random.default_rng(12)
    blobs = []
    for data in valid_blobs().values():
        for _ in range(300):  # anywhere in the blob
            blobs.append(recrc(_flip(rng, data, int(rng.integers(1, 3)))))
        for _ in range(300):  # in the header, where every field rule lives
            out = bytearray(data)
            pos = int(rng.integers(4 * 8, 8 * HEADER_SIZE))
            out[pos // 8] ^= 1 << (pos % 8)
            blobs.append(recrc(out))
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    assert {0, 7, 8, 9} <= set(counts), counts


def test_random_byte_overwrites_in_the_sections_are_rejected_or_valid(sanitized_harness, tmp_path):
    rng = np.random.default_rng(13)
    blobs = []
    for data in valid_blobs().values():
        for _ in range(300):
            out = bytearray(data)
            for pos in rng.integers(HEADER_SIZE, len(data) - 4, int(rng.integers(1, 4))):
                out[pos] = int(rng.integers(0, 256))
            blobs.append(recrc(out))
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    assert {0, 9} <= set(counts), counts


def test_the_schema_section_is_never_read_by_the_c_library_and_checked_by_the_host(
    sanitized_harness, tmp_path
):
    """MF §10: bytes overwritten inside the schema section (CRC recomputed) leave a blob both readers
    accept with the same outputs; the host's schema reader decodes each or rejects it with CONTENT."""
    from direct_edge.runtime.blob import SECTION_SCHEMA

    data = valid_blobs()["linear-schema"]
    off, size = parse(data).sections[SECTION_SCHEMA]
    rng = np.random.default_rng(17)
    blobs = []
    for _ in range(300):
        out = bytearray(data)
        for pos in rng.integers(off, off + size, int(rng.integers(1, 4))):
            out[pos] = int(rng.integers(0, 256))
        blobs.append(recrc(out))
    assert assert_c_agrees(sanitized_harness, blobs, tmp_path) == {0: len(blobs)}
    rejected = 0
    for mutant in blobs:
        try:
            _ = parse(mutant).schema
        except BlobError as exc:
            assert exc.name == "CONTENT" and "input schema section: " in str(exc)
            rejected += 1
    assert 0 < rejected < len(blobs)


def host_float_blobs() -> list[bytes]:
    """CRC-valid blobs with a NaN, an infinity, 0, −0, a negative or a subnormal value in each host-only
    float (MF §2 mean_scale and y_offset, MF §4 input scales and zero points)."""
    values = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -2.0, 5e-324, 1.0]
    out = []
    for data in valid_blobs().values():
        inputs = parse(data).sections[0][0]
        for value in values:
            out.append(patched(data, "mean_scale", value))
            out.append(patched(data, "y_offset", value))
            for at in (inputs, inputs + 8, inputs + 16, inputs + 24):  # scale 0, zero point 0, scale 1, …
                fixed = bytearray(data)
                struct.pack_into("<d", fixed, at, value)
                out.append(recrc(fixed))
    return out


def test_non_finite_or_non_positive_host_floats_get_the_same_code_from_both_readers(
    sanitized_harness, tmp_path
):
    blobs = host_float_blobs()
    counts = assert_c_agrees(sanitized_harness, blobs, tmp_path)
    # per blob, of the 8 values: mean_scale fails for 6 (NaN, ±inf, ±0, −2) and y_offset for 3 (NaN, ±inf)
    # with HEADER; each of the two input scales for 6 and zero points for 3 with CONTENT; 48 blobs in all
    per_blob = {7: 6 + 3, 9: 2 * 6 + 2 * 3, 0: 48 - 27}
    assert counts == {code: n * len(valid_blobs()) for code, n in per_blob.items()}


@pytest.mark.slow
def test_libfuzzer_runs_clean_for_a_bounded_time(tmp_path):
    clang = require_tool("clang")
    require_tool("make")
    build = tmp_path / "build"
    done = subprocess.run(
        ["make", "-C", str(C_DIR), "fuzz", f"BUILD={build}", f"CLANG={clang}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("libFuzzer unavailable (clang with libclang-rt, e.g. Debian libclang-rt-14-dev)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in valid_blobs().items():
        (corpus / f"{name}.bin").write_bytes(data)
    (corpus / "linear-exact.bin").write_bytes(synthetic_blob("linear", 2, 3, 1, seed=5, layout="bitmap4"))
    (corpus / "classifier.bin").write_bytes(CLASSIFIERS["classifier-rff"])  # MF §11
    seeds = tmp_path / "seeds"
    shutil.copytree(corpus, seeds)
    done = subprocess.run(
        # No RSS limit (ASan's shadow and quarantine made one CI run exceed 2 GB within its first second
        # while the heap held 24 MB); any single allocation above 256 MB still fails the run.
        [str(build / "fuzz_open_predict"), "-max_total_time=20", "-rss_limit_mb=0", "-malloc_limit_mb=256"]
        + ["-print_final_stats=1", str(corpus), str(seeds)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "stat::number_of_executed_units" in done.stderr
