"""firmware_examples/raspberry-pi cross-compiled static for aarch64 and armhf and run under qemu-user
(Cortex-A53: Pi 3 / Zero 2, Cortex-A72: Pi 4, Cortex-A7: 32-bit): CSV rows of raw values in, outputs
equal to runtime/reference.py (integers bit for bit, the float display to the last bit)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from direct_edge.runtime import reference
from direct_edge.runtime.blob import parse

from .conftest import make, require_tool, run, synthetic, vectors, write_model_dir

pytestmark = pytest.mark.firmware

# (build target, cross compiler, emulator, -cpu)
CONFIGS = {
    "aarch64-a53": ("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a53"),
    "aarch64-a72": ("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a72"),
    "armhf-a7": ("armhf", "arm-linux-gnueabihf-gcc", "qemu-arm", "cortex-a7"),
}
ROWS = 400


def raw_rows(blob, rows: int, seed: int) -> np.ndarray:
    """Real input values (rows, d): uniform over each input's clipping range widened by 10 % on both
    sides (so some saturate, IS §2), plus one row exactly at the range ends."""
    rng = np.random.default_rng(seed)
    lo = reference.dequantize_inputs(blob, np.full((1, blob.n_inputs), -32768, dtype=np.int16))[0]
    hi = reference.dequantize_inputs(blob, np.full((1, blob.n_inputs), 32767, dtype=np.int16))[0]
    u = rng.uniform(-0.1, 1.1, (rows, blob.n_inputs))
    X = lo + u * (hi - lo)
    X[0], X[1] = lo, hi
    return X


def csv_text(X: np.ndarray, names: list[str] | None = None) -> str:
    """CSV of X with a header: the model's column names where its blob has a schema (``names``), else
    x0, x1, ... (skipped by position)."""
    header = ",".join(names or [f"x{k}" for k in range(X.shape[1])])
    return header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"


def expected(blob, X: np.ndarray, ensemble: bool = False) -> list[tuple[float, float, int, int, int]]:
    """What predict prints: the exact moments when the blob carries them (unless -e), else the ensemble."""
    q = reference.quantize_inputs(blob, X)
    predict = reference.predict_exact if blob.has_exact and not ensemble else reference.predict
    mean_q, var_f, var_y = predict(blob, q)
    mean, sd = reference.to_target_units(blob, mean_q, var_y)
    return list(zip(mean.tolist(), sd.tolist(), mean_q.tolist(), var_f.tolist(), var_y.tolist(), strict=True))


def parsed(stdout: str) -> list[tuple[float, float, int, int, int]]:
    """The CSV that predict -i prints (the same header convention as direct-run)."""
    lines = stdout.splitlines()
    assert lines[0] == "mean,std,mean_q,var_f_q,var_y_q"
    out = []
    for line in lines[1:]:
        a, b, c, d, e = line.split(",")
        out.append((float(a), float(b), int(c), int(d), int(e)))
    return out


@pytest.fixture(scope="module")
def builds(trained_header, tmp_path_factory):
    """The example built once per target with the trained model compiled in."""
    work = tmp_path_factory.mktemp("pi")
    model_dir = work / "model"
    model_dir.mkdir()
    shutil.copy(trained_header, model_dir / "model.h")
    out = {}
    for target, cc in (("aarch64", "aarch64-linux-gnu-gcc"), ("armhf", "arm-linux-gnueabihf-gcc")):
        if shutil.which(cc) is not None:
            make("raspberry-pi", "all", TARGET=target, MODEL_DIR=str(model_dir), BUILD=str(work / target))
            out[target] = work / target / "predict"
    return out


def _run(config: str, builds, args: list[str], stdin: str) -> str:
    target, cc, qemu, cpu = CONFIGS[config]
    require_tool(cc, qemu)
    done = run([qemu, "-cpu", cpu, str(builds[target]), "-i", *args], input=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pi_compiled_in_model_matches_reference_bit_for_bit(config, builds, trained_header):
    blob = parse(vectors.read_blob_bytes(trained_header))
    X = raw_rows(blob, ROWS, seed=3)
    assert blob.has_exact  # direct-export's default: the example answers with the exact moments
    assert parsed(_run(config, builds, [], csv_text(X, blob.column_names))) == expected(blob, X)


def test_pi_ensemble_on_request_and_exact_by_default_differ(builds, trained_header):
    """-e gives the S-sample ensemble of the same blob, bit for bit, and it is not the default's answer."""
    blob = parse(vectors.read_blob_bytes(trained_header))
    X = raw_rows(blob, 50, seed=8)
    exact = parsed(_run("aarch64-a53", builds, [], csv_text(X, blob.column_names)))
    ensemble = parsed(_run("aarch64-a53", builds, ["-e"], csv_text(X, blob.column_names)))
    assert exact == expected(blob, X)
    assert ensemble == expected(blob, X, ensemble=True)
    assert [r[2] for r in exact] != [r[2] for r in ensemble]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pi_blob_file_matches_reference_bit_for_bit(config, builds, tmp_path):
    """A packed model.bin given on the command line (another layout, S = 32, nonzero variances)."""
    data = synthetic("rff", 128, 32, 0.5, "bitmap4", seed=5, d=4)
    (tmp_path / "model.bin").write_bytes(data)
    blob = parse(data)
    X = raw_rows(blob, ROWS, seed=4)
    got = parsed(_run(config, builds, [str(tmp_path / "model.bin")], csv_text(X)))
    assert got == expected(blob, X)
    assert any(row[3] > 0 for row in got)


def test_pi_rejects_a_malformed_row(builds, tmp_path):
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    done = run(["qemu-aarch64", str(builds["aarch64"])], input="1,2\n3,4,5\n")
    assert done.returncode == 2 and "expected" in done.stderr
    # a blob without a schema knows its columns by position only: the line says which
    (tmp_path / "plain.bin").write_bytes(synthetic("rff", 16, 4, 0.5, "dense4", seed=1, d=3))
    done = run(["qemu-aarch64", str(builds["aarch64"]), str(tmp_path / "plain.bin")], input="1,x,3\n")
    assert done.returncode == 2 and done.stderr == "predict: line 1: 'x' in column 2 is not a finite number\n"


def test_pi_linear_model_from_another_model_dir_matches_reference(tmp_path):
    """model.h with another model builds too (the Makefile takes MODEL_DIR)."""
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    write_model_dir(tmp_path / "m", synthetic("linear", 9, 4, 0.2, "dense4", seed=9), 4)
    make("raspberry-pi", "all", TARGET="aarch64", MODEL_DIR=str(tmp_path / "m"), BUILD=str(tmp_path / "b"))
    X = raw_rows(parse(vectors.read_blob_bytes(tmp_path / "m" / "model.h")), 50, seed=1)
    done = run(["qemu-aarch64", str(tmp_path / "b" / "predict"), "-i"], input=csv_text(X))
    blob = parse(vectors.read_blob_bytes(tmp_path / "m" / "model.h"))
    assert parsed(done.stdout) == expected(blob, X)


def _schema_rows(names: list[str]) -> tuple[str, list[list]]:
    """Raw rows of the mixed schema (age, colour, size with mean-indicator, sex) as CSV text with the
    columns in the order ``names``, and the same rows as columns for the host's preparation."""
    rows = [
        {"age": "0.5", "colour": "red", "size": "2.5", "sex": "m"},
        {"age": "-0.25", "colour": " blue ", "size": "", "sex": "f"},  # spaces; empty cell: missing
        {"age": "1.75", "colour": "green", "size": "NA", "sex": "f"},  # NA: missing
        {"age": "9", "colour": "red", "size": "4.75", "sex": "m"},  # beyond the training range
        {"age": "0", "colour": "blue", "size": "1e0", "sex": "m"},
    ]
    text = ",".join(names) + "\n" + "".join(",".join(r[n] for n in names) + "\n" for r in rows)
    columns = [[r[n] for r in rows] for n in ("age", "colour", "size", "sex")]
    return text, columns


def _schema_blob(tmp_path):
    from tests.export.conftest import mixed_blob

    blob = mixed_blob()
    (tmp_path / "model.bin").write_bytes(bytes(blob.data))
    return blob


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pi_reads_raw_columns_by_name_with_the_blobs_schema(config, builds, tmp_path):
    """A blob whose schema has a categorical column, a numeric one with the mean-indicator policy and
    plain ones: the header names the columns in another order, levels come as text, missing cells as
    empty or NA; the outputs equal the host's preparation then the integer reference bit for bit;
    without a header the columns are in the training order, and a byte-order mark changes nothing."""
    from direct_edge.runtime import schema as input_schema

    blob = _schema_blob(tmp_path)
    text, columns = _schema_rows(["sex", "size", "age", "colour"])
    want = expected(blob, input_schema.prepare_columns(blob.schema, columns))
    model = [str(tmp_path / "model.bin")]
    assert parsed(_run(config, builds, model, text)) == want
    plain, _ = _schema_rows(["age", "colour", "size", "sex"])
    assert parsed(_run(config, builds, model, plain.split("\n", 1)[1])) == want  # headerless
    assert parsed(_run(config, builds, model, "\ufeff" + text)) == want  # Excel's CSV UTF-8


@pytest.mark.parametrize(
    "text, message",
    [
        ("age,colour,size\n0.5,red,2\n", "missing sex"),
        (
            "id,age,colour,size,sex\n7,0.5,red,2,m\n",
            "unknown id; keep only the model's columns, e.g. cut -d, -f2,3,4,5",
        ),
        (
            "age,colour,size,sex,sex\n0.5,red,2,m,f\n",
            "does not name the model's columns (age, colour, size, sex)",
        ),
        ("age,colour,size,sex\n0.5,purple,2,m\n", "line 2: a level not seen in training in column colour"),
        ("age,colour,size,sex\nNA,red,2,m\n", "line 2: a missing value in column age"),
        ("age,colour,size,sex\n0.5,,2,m\n", "line 2: a missing value in column colour"),
        ("age,colour,size,sex\n0.5,red,big,m\n", "line 2: 'big' in column size is not a finite number"),
        ("age,colour,size,sex\n0.5,red,inf,m\n", "is not a finite number"),
        ("0.5,red,2\n", "line 1: 3 comma-separated fields, expected 4"),
    ],
)
def test_pi_refuses_what_the_host_refuses_in_one_line(builds, tmp_path, text, message):
    """Names that are not the model's, an unseen level, a missing value where the column takes none, text
    in a numeric column, a short row: one line on stderr, exit 2, and no prediction printed."""
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    _schema_blob(tmp_path)
    done = run(["qemu-aarch64", str(builds["aarch64"]), str(tmp_path / "model.bin")], input=text)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stdout.strip() == "mean,std"


def test_pi_matches_numeric_levels_as_the_host_writes_them(builds, tmp_path):
    """Category codes given as numbers: 2.0, 07 and 2.50 are the levels 2, 7 and 2.5, as the host's
    level_text reads them (pandas may have written the column either way)."""
    from direct_edge.export.packed import synthetic_blob
    from direct_edge.runtime import schema as input_schema

    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    Column = input_schema.Column
    schema = input_schema.Schema(
        (
            Column("code", input_schema.CATEGORICAL, levels=("1", "2", "7", "2.5")),
            Column("x", low=-1.0, high=1.0),
        ),
        "y",
    )
    data = synthetic_blob("rff", 5, 32, 4, seed=3, exact=True, schema=schema)
    (tmp_path / "codes.bin").write_bytes(data)
    blob = parse(data)
    cells = ["2.0", " 07", "2.50", "1"]
    text = "code,x\n" + "".join(f"{c},0.1\n" for c in cells)
    X = input_schema.prepare_columns(blob.schema, [cells, ["0.1"] * 4])
    done = run(["qemu-aarch64", str(builds["aarch64"]), "-i", str(tmp_path / "codes.bin")], input=text)
    assert done.returncode == 0, done.stderr
    assert parsed(done.stdout) == expected(blob, X)
    assert len({row[2] for row in parsed(done.stdout)}) == 4  # four different levels, four answers


def test_pi_survives_a_corrupted_schema_section(builds, tmp_path):
    """The C library never reads the schema section, so the example checks what it relies on itself:
    random bytes in the section (the CRC made valid again) give predictions or one line and exit 2,
    never a crash or a read past the section."""
    import random
    import struct
    import zlib

    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    data = bytearray(_schema_blob(tmp_path).data)
    off, size = struct.unpack_from("<II", data, 120)
    rng = random.Random(7)
    seen = set()
    for _ in range(150):
        broken = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            broken[off + rng.randrange(size)] = rng.randrange(256)
        struct.pack_into("<I", broken, len(broken) - 4, zlib.crc32(bytes(broken[:-4])))
        (tmp_path / "broken.bin").write_bytes(broken)
        done = subprocess.run(
            ["qemu-aarch64", str(builds["aarch64"]), str(tmp_path / "broken.bin")],
            input=b"age,colour,size,sex\n0.5,red,2,m\n1,blue,,f\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode in (0, 2) and done.stderr.count(b"\n") == done.returncode // 2, done.stderr
        seen.add(done.returncode)
    assert seen == {0, 2}


def test_pi_builds_with_a_model_h_exported_elsewhere(trained_header, tmp_path):
    """The example folder as a user has it after copying in a model.h exported elsewhere (no
    model.direct next to it): make builds with that header instead of asking for the model file."""
    from .conftest import EXAMPLES, ROOT

    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    work = tmp_path / "raspberry-pi"
    shutil.copytree(EXAMPLES / "raspberry-pi", work, ignore=shutil.ignore_patterns("build", "model.*"))
    shutil.copy(trained_header, work / "model.h")
    done = run(["make", "-s", "-C", str(work), "TARGET=aarch64", f"RUNTIME={ROOT / 'runtime' / 'c'}"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / "build" / "aarch64" / "predict").is_file()
