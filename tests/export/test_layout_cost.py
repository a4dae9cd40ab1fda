"""export/layout_cost.py and ``auto``'s choice: checked against the instruction counts measured on
Cortex-M0 and Cortex-M4 (QEMU -icount) and the x86-64 host (callgrind) in benchmarks/layout_costs.json."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from direct_edge.export import layout_cost, packed
from direct_edge.export.packed import LAYOUTS, ExportError
from direct_edge.runtime import reference
from direct_edge.runtime.blob import LAYOUT_NAMES, parse

MEASURED = Path(__file__).resolve().parents[2] / "benchmarks" / "layout_costs.json"
# The model's stated accuracy: every measured ensemble count (direct_predict − direct_features) within
# this relative error of the prediction (docs/benchmarks.md, Firmware, "Layout by cost").
MODEL_TOLERANCE = 0.10
# auto (speed) against the fastest layout's measured count, on every measured configuration.
CHOICE_TOLERANCE = 1.2
D = 8  # benchmarks/firmware_benchmark.py's synthetic models


def measured() -> dict:
    return json.loads(MEASURED.read_text())


def by_config(core: str) -> dict[tuple[int, int, float], dict[str, dict]]:
    """{(b, S, zeros): {layout: row}} of one core's measured rows."""
    out: dict = defaultdict(dict)
    for row in measured()["rows"]:
        if row["target"] == core:
            out[(row["b"], row["S"], row["zeros"])][row["layout"]] = row
    return out


def ensemble(row: dict) -> int:
    return row["predict"] - row["features"]


def benchmark_levels(b: int, S: int, zeros: float) -> np.ndarray:
    """The levels the benchmark measured (synthetic_blob with its seed b + S)."""
    data = packed.synthetic_blob("rff", D, b, S, zeros=zeros, seed=b + S, exact=False, layout="dense4")
    return parse(data).levels


def auto_choice(levels: np.ndarray, optimize: str, target: str) -> str:
    code, _ = packed.encode_samples(levels, "auto", optimize=optimize, target=target)
    return LAYOUT_NAMES[code]


def test_the_measurements_cover_the_grid_every_layout_and_name_their_command():
    data = measured()
    assert "firmware_benchmark.py" in data["command"]
    for core in ("M0", "M4", "x86"):
        configs = by_config(core)
        assert set(configs) == {
            (b, S, z) for b in (64, 256, 1024) for S in (1, 8, 32) for z in (0.0, 0.5, 0.9)
        }
        for key, rows in configs.items():
            # grouped and gap4 at b = 1024, S = 32, 0 % zeros do not fit the M0 image next to its float copy
            missing = {("M0", (1024, 32, 0.0))}
            assert set(rows) == set(LAYOUTS) - ({"grouped", "gap4"} if (core, key) in missing else set())


@pytest.mark.parametrize("target", layout_cost.TARGETS)
def test_the_cost_model_reproduces_every_measured_count(target):
    core = layout_cost.CORE_OF_TARGET[target]
    worst = 0.0
    for rows in by_config(core).values():
        for layout, row in rows.items():
            predicted = layout_cost.ensemble_cost(layout, row, target)
            worst = max(worst, abs(predicted / ensemble(row) - 1))
    assert worst <= MODEL_TOLERANCE, f"{target}: worst relative error {worst:.3f}"


def test_the_measured_levels_are_the_ones_the_tests_regenerate():
    for (b, S, zeros), rows in by_config("M4").items():
        stats = layout_cost.level_stats(benchmark_levels(b, S, zeros))
        row = rows["dense4"]
        assert stats == {k: row[k] for k in stats}


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0", "host"])
def test_auto_is_within_1_2x_of_the_fastest_measured_layout_everywhere(target):
    """Against the fastest layout auto may write (blob no larger than dense4's), on the ensemble's
    instructions (the part the layout changes); against the fastest of all four, on whole predictions."""
    core = layout_cost.CORE_OF_TARGET[target]
    worst, worst_total = (0.0, None), (0.0, None)
    for (b, S, zeros), rows in by_config(core).items():
        chosen = auto_choice(benchmark_levels(b, S, zeros), "speed", target)
        assert rows[chosen]["blob_bytes"] <= rows["dense4"]["blob_bytes"]
        allowed = [r for r in rows.values() if r["blob_bytes"] <= rows["dense4"]["blob_bytes"]]
        ratio = ensemble(rows[chosen]) / min(ensemble(r) for r in allowed)
        total = rows[chosen]["predict"] / min(r["predict"] for r in rows.values())
        worst = max(worst, (ratio, (b, S, zeros, chosen)))
        worst_total = max(worst_total, (total, (b, S, zeros, chosen)))
    assert worst[0] <= CHOICE_TOLERANCE, f"{target}: ensemble {worst[0]:.2f}x the fastest at {worst[1]}"
    assert worst_total[0] <= CHOICE_TOLERANCE, f"{target}: {worst_total[0]:.2f}x at {worst_total[1]}"


def test_a_budget_above_dense4_lets_auto_take_a_slightly_larger_faster_layout():
    """b = 1024, S = 1, 50 % zeros: gap4 is 8 bytes over dense4 and the fastest on Cortex-M0 (its
    Armv6-M loop; on the M4 the single-sample dense4 loop is the fastest there, and auto keeps it under
    either budget)."""
    rows = by_config("M0")[(1024, 1, 0.5)]
    levels = benchmark_levels(1024, 1, 0.5)
    assert rows["gap4"]["blob_bytes"] > rows["dense4"]["blob_bytes"]
    assert auto_choice(levels, "speed", "cortex-m0") == "dense4"
    code, data = packed.encode_samples(levels, "auto", "speed", "cortex-m0", max_bytes=600)
    assert LAYOUT_NAMES[code] == "gap4" == min(rows, key=lambda n: ensemble(rows[n]))
    m4 = by_config("M4")[(1024, 1, 0.5)]
    code, data = packed.encode_samples(levels, "auto", "speed", "cortex-m4", max_bytes=600)
    assert LAYOUT_NAMES[code] == "dense4" == min(m4, key=lambda n: ensemble(m4[n]))


def test_the_choice_test_fails_a_bad_pick():
    """The smallest layout (today's size rule) is more than 1.2x slower somewhere: the check above has
    teeth."""
    rows = by_config("M4")[(256, 8, 0.5)]
    chosen = auto_choice(benchmark_levels(256, 8, 0.5), "size", "cortex-m4")
    assert chosen == "bitmap4"
    assert ensemble(rows[chosen]) > CHOICE_TOLERANCE * min(ensemble(r) for r in rows.values())


def test_optimize_size_keeps_the_smallest_and_the_old_tie_order():
    rng = np.random.default_rng(1)
    for zeros in (0.0, 0.3, 0.5, 0.8, 0.95):
        levels = rng.integers(-8, 8, (8, 300)).astype(np.int8)
        levels[rng.random(levels.shape) < zeros] = 0
        sizes = {name: len(packed.encode_samples(levels, name)[1]) for name in LAYOUTS}
        for target in layout_cost.TARGETS:
            code, data = packed.encode_samples(levels, "auto", optimize="size", target=target)
            assert len(data) == min(sizes.values())
            order = ("grouped", "dense4", "gap4", "bitmap4")
            assert LAYOUT_NAMES[code] == min(sizes, key=lambda n: (sizes[n], order.index(n)))


def test_pack_api_defaults_to_speed_on_cortex_m4_and_size_keeps_todays_blob():
    fast = parse(packed.synthetic_blob("rff", 4, 256, 8, zeros=0.5, seed=3))
    small = parse(packed.synthetic_blob("rff", 4, 256, 8, zeros=0.5, seed=3, optimize="size"))
    assert small.layout_name == "bitmap4"
    assert fast.layout_name != "bitmap4"
    assert fast.layout_name == auto_choice(fast.levels, "speed", "cortex-m4")
    assert np.array_equal(fast.levels, small.levels)


def test_max_bytes_takes_the_fastest_layout_that_fits_and_refuses_what_cannot():
    kwargs = dict(kind="rff", d=4, b=256, S=8, zeros=0.5, seed=3, exact=False)
    model = _integer_model(**kwargs)
    sizes = {name: len(packed.assemble(model, layout=name)) for name in LAYOUTS}
    assert len(packed.assemble(model)) <= sizes["dense4"]
    smallest = min(sizes.values())
    tight = packed.assemble(model, max_bytes=smallest)
    assert len(tight) == smallest and sizes[parse(tight).layout_name] == smallest
    # a budget between: the fastest by the model among the layouts that fit
    budget = sorted(sizes.values())[1]
    fits = [n for n in LAYOUTS if sizes[n] <= budget]
    want = min(fits, key=lambda n: layout_cost.costs(model.levels, "cortex-m4")[n])
    assert parse(packed.assemble(model, max_bytes=budget)).layout_name == want
    with pytest.raises(ExportError, match="budget"):
        packed.assemble(model, max_bytes=smallest - 1)
    with pytest.raises(ExportError, match="budget"):
        packed.assemble(model, layout="dense4", max_bytes=sizes["dense4"] - 1)
    with pytest.raises(ExportError, match="target"):
        packed.assemble(model, target="cortex-m7")
    with pytest.raises(ExportError, match="optimize"):
        packed.assemble(model, optimize="latency")


def _integer_model(kind, d, b, S, zeros, seed, exact) -> packed.IntegerModel:
    """The IntegerModel synthetic_blob packs (read back from its dense4 blob)."""
    blob = parse(packed.synthetic_blob(kind, d, b, S, zeros=zeros, seed=seed, exact=exact, layout="dense4"))
    return packed.IntegerModel(
        kind=blob.kind,
        bits=blob.bits,
        input_scale=blob.input_scale,
        input_zero=blob.input_zero,
        feature_frac=blob.feature_frac,
        amplitude=(b // 2) ** -0.5,
        feature_params=(blob.phase_w, blob.phase_c),
        levels=blob.levels,
        noise_variance=np.full(S, 0.1),
        noise_expected=0.1,
        grid_scale=0.1,
        y_offset=0.0,
        y_scale=1.0,
    )


@pytest.mark.parametrize("target", layout_cost.TARGETS)
@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9])
def test_auto_blobs_stay_bit_exact_through_the_c_runtime(target, zeros):
    from direct_edge.runtime.native import NativeModel

    data = packed.synthetic_blob("rff", 3, 96, 6, zeros=zeros, seed=11, target=target)
    blob = parse(data)
    q = np.random.default_rng(0).integers(-32768, 32768, (64, 3)).astype(np.int16)
    want = reference.predict(blob, q)
    got = NativeModel(data).predict(q)
    for g, w in zip(got, want, strict=False):
        assert np.array_equal(np.asarray(g), np.asarray(w))


def test_cli_passes_optimize_target_and_max_bytes(tmp_path):
    from direct_edge.export.cli import main
    from direct_edge.trainer import DirectRegressor
    from direct_edge.trainer.model_file import save_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    model = DirectRegressor(features="rff", n_features=128, max_iter=50, random_state=0).fit(X, y)
    save_model(tmp_path / "model.direct", model)
    runner = CliRunner()

    def export(*args) -> tuple[str, bytes]:
        out = tmp_path / "m.bin"
        res = runner.invoke(main, [str(tmp_path / "model.direct"), str(out), "--samples", "8", *args])
        assert res.exit_code == 0, res.output
        return res.output, out.read_bytes()

    text, data = export("--optimize", "size")
    assert "auto: the smallest" in text
    sizes = {n: len(export("--layout", n)[1]) for n in LAYOUTS}
    assert len(data) == min(sizes.values())
    for target in ("cortex-m0", "cortex-m4", "host", "avr", "any"):
        text, data = export("--target", target)
        assert "auto: the fastest on" in text and len(data) <= sizes["dense4"]
    text, data = export("--max-bytes", str(min(sizes.values())))
    assert len(data) == min(sizes.values()) and "within" in text
    res = runner.invoke(main, [str(tmp_path / "model.direct"), str(tmp_path / "x.bin"), "--max-bytes", "100"])
    assert res.exit_code == 2 and "budget" in res.output
