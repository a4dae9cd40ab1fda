"""Statistics on a real Dask cluster equal the single-process statistics (docs/trainer.md §10).

A ``distributed.LocalCluster`` with 2 worker processes (one thread each) on loopback runs every test
here: the partials are computed in other processes and travel through the scheduler, as on a real
cluster.
"""

import numpy as np
import pytest

pytest.importorskip("dask.dataframe", reason="the Dask path needs: pip install 'direct-edge[dask]'")
pytest.importorskip("distributed", reason="the Dask path needs: pip install 'direct-edge[dask]'")

import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from direct_edge.trainer import DataError, FeatureMap, load_model  # noqa: E402
from direct_edge.trainer.cli import main  # noqa: E402
from direct_edge.trainer.data import ArraySource, open_table, source_moments  # noqa: E402
from direct_edge.trainer.distributed import DaskSource  # noqa: E402
from direct_edge.trainer.features import InputMoments  # noqa: E402
from direct_edge.trainer.regressor import DirectRegressor  # noqa: E402
from direct_edge.trainer.statistics import array_batches, compute_statistics  # noqa: E402

# float64 round-off: the sums are the same numbers added in another order.
REL = 1e-12
# Linear features: an rff mean-field fit can end in another local optimum when its statistics move
# by 1e-15 (measured here: -281.5 against -299.7 nats), which would test the optimiser, not Dask.
FAST = dict(features="linear", max_iter=3000, grid_scale=0.2, prior_scale=0.5)


@pytest.fixture(scope="module")
def client():
    """Two worker processes on 127.0.0.1, no dashboard."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def data(n=1000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal([1.0, -2.0, 5.0], [1.0, 3.0, 0.5], (n, d))
    y = 20.0 + np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return X, y


def rff_map(X):
    return FeatureMap.rff(X.mean(axis=0), X.std(axis=0), 48, lengthscale=1.2, seed=5)


def assert_same_statistics(a, b, rel=REL):
    """Statistics of the same rows, compared about one target shift (each pass picks its own)."""
    assert a.n == b.n
    a = a.in_units(b.y_shift, b.y_unit)
    for name in ("gram", "phi_y", "phi_sum"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_allclose(x, y, rtol=rel, atol=rel * np.max(np.abs(y)), err_msg=name)
    assert a.y_sq == pytest.approx(b.y_sq, rel=rel)
    assert a.y_sum == pytest.approx(b.y_sum, rel=rel)


def write_parts(folder, X, y, pieces=3, kind="csv"):
    """The rows split over ``pieces`` files named part-0.csv, part-1.csv, ... (columns a0.., y)."""
    folder.mkdir(exist_ok=True)
    frame = pd.DataFrame(X, columns=[f"a{j}" for j in range(X.shape[1])]).assign(y=y)
    for i, rows in enumerate(np.array_split(np.arange(len(y)), pieces)):
        part = frame.iloc[rows]
        if kind == "csv":
            part.to_csv(folder / f"part-{i}.csv", index=False, float_format="%.17g")
        else:
            part.to_parquet(folder / f"part-{i}.parquet", index=False)
    return str(folder / f"part-*.{kind}")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_statistics_of_a_file_glob_on_the_cluster_equal_single_process(client, tmp_path, kind):
    X, y = data()
    pattern = write_parts(tmp_path / kind, X, y, kind=kind)
    fmap = rff_map(X)
    source = DaskSource.from_files(pattern, target="y", blocksize=4000)  # several partitions per CSV file
    assert len(source.parts) >= 3
    local = compute_statistics(fmap, open_table(pattern, "y").batches(256), 256)
    with get_task_stream(client) as tasks:
        remote = source.statistics(fmap, 256)
    assert_same_statistics(remote, local)
    assert source.n_rows == len(y)
    # Both worker processes computed partials (the tasks ran there, not in this process).
    assert len({t["worker"] for t in tasks.data}) == 2


def test_statistics_of_dask_arrays_and_frames_equal_single_process(client):
    X, y = data(n=1203)
    fmap = rff_map(X)
    local = compute_statistics(fmap, array_batches(X, y), 4096)
    sources = [
        DaskSource.from_collection(da.from_array(X, chunks=(250, 2)), da.from_array(y, chunks=400)),
        DaskSource.from_collection(da.from_array(np.column_stack([y, X]), chunks=(300, 4)), target=0),
    ]
    frame = dd.from_pandas(pd.DataFrame(X, columns=["p", "q", "r"]).assign(t=y), npartitions=4)
    sources.append(DaskSource.from_collection(frame, target="t"))
    sources.append(DaskSource.from_collection(frame[["p", "q", "r"]], frame["t"]))
    for source in sources:
        assert len(source.parts) >= 4
        assert_same_statistics(source.statistics(fmap), local)
    assert sources[-1].target_name == "t" and sources[-1].input_names == ["p", "q", "r"]


def test_float32_statistics_on_the_cluster_equal_single_process_float32(client):
    X, y = data(n=5000)
    fmap = rff_map(X)
    # Same partition boundaries as chunk boundaries, so each float32 partial sums the same rows.
    local = compute_statistics(fmap, array_batches(X, y, 1000), 1000, precision="float32", threads=1)
    dask_stats = DaskSource.from_collection(da.from_array(X, chunks=(1000, 3)), da.from_array(y, chunks=1000))
    assert_same_statistics(dask_stats.statistics(fmap, 1000, "float32"), local, rel=1e-12)


def test_moments_on_the_cluster_equal_single_process(client):
    X, y = data(n=777)
    source = DaskSource.from_collection(da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100))
    (m, my), (lm, lmy) = source.moments(), source_moments(ArraySource(X, y), 64)
    assert m.n == lm.n == 777
    for a, b in ((m, lm), (my, lmy)):
        np.testing.assert_allclose(a.offset_and_scale()[0], b.offset_and_scale()[0], rtol=1e-13)
        np.testing.assert_allclose(a.offset_and_scale()[1], b.offset_and_scale()[1], rtol=1e-12)
    np.testing.assert_array_equal(m.low, X.min(axis=0))
    np.testing.assert_array_equal(m.high, X.max(axis=0))


def test_merged_moments_equal_moments_of_the_whole():
    X, _ = data(n=300)
    whole = InputMoments().update(X)
    merged = InputMoments().update(X[:70]) + InputMoments().update(X[70:])
    assert merged.n == 300
    for got, want in zip(merged.offset_and_scale(), whole.offset_and_scale(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (InputMoments() + whole) is whole


def test_regressor_fit_on_dask_collections_equals_fit_on_arrays(client):
    X, y = data(n=900)
    local = DirectRegressor(**FAST).fit(X, y)
    remote = DirectRegressor(**FAST).fit(da.from_array(X, chunks=(200, 3)), da.from_array(y, chunks=200))
    assert remote.n_train_ == local.n_train_ == 900
    assert remote.n_features_in_ == 3
    assert remote.elbo_ == pytest.approx(local.elbo_, rel=1e-10)
    np.testing.assert_allclose(remote.predict(X[:50]), local.predict(X[:50]), rtol=1e-8)
    np.testing.assert_array_equal(remote.input_min_, X.min(axis=0))


def test_direct_train_with_a_glob_and_scheduler_matches_the_local_run(client, tmp_path):
    from click.testing import CliRunner

    X, y = data(n=600)
    pattern = write_parts(tmp_path / "csv", X, y)
    common = [pattern, "--target", "y", "--features", "linear", "--grid-scale", "0.2", "--prior-scale", "0.5"]
    common += ["-q"]
    out_dask, out_local = tmp_path / "dask.direct", tmp_path / "local.direct"
    address = client.scheduler.address
    res = CliRunner().invoke(
        main, [*common, "-o", str(out_dask), "--scheduler", address], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    res_local = CliRunner().invoke(main, [*common, "-o", str(out_local)], catch_exceptions=False)
    assert res_local.exit_code == 0, res_local.output
    remote, local = load_model(out_dask), load_model(out_local)
    assert remote.summary_["n_train"] == local.summary_["n_train"] == 600
    assert remote.elbo_ == pytest.approx(local.elbo_, rel=1e-10)
    assert remote.summary_["train_rmse"] == pytest.approx(local.summary_["train_rmse"], rel=1e-8)


def test_bad_values_on_a_worker_are_reported_with_their_column(client, tmp_path):
    X, y = data(n=100)
    pattern = write_parts(tmp_path / "bad", X, y, pieces=2)
    path = tmp_path / "bad" / "part-1.csv"
    lines = path.read_text().splitlines()
    lines[5] = "1.0,oops,2.0,3.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="part-.*oops"):
        DaskSource.from_files(pattern, "y").statistics(rff_map(X))


def test_unusable_inputs_raise_data_error(client, tmp_path):
    with pytest.raises(DataError, match="no data files"):
        DaskSource.from_files(str(tmp_path / "none-*.csv"))
    X, y = data(n=100)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    with pytest.raises(DataError, match="CSV"):
        DaskSource.from_files(str(tmp_path / "*.npz"))
    frame = dd.from_pandas(pd.DataFrame(X, columns=["p", "q", "r"]), npartitions=2)
    with pytest.raises(DataError, match="no column"):
        DaskSource.from_collection(frame, target="t")


# ---- failures of the cluster: one DataError naming the cause ---------------------------------


def test_a_data_file_a_worker_cannot_read_is_one_line(client, tmp_path):
    from direct_edge.trainer.distributed import cluster_failures

    X, y = data(n=300)
    pattern = write_parts(tmp_path / "parts", X, y)
    source = DaskSource.from_files(pattern, "y")
    (tmp_path / "parts" / "part-1.csv").unlink()  # gone before the workers read it
    with pytest.raises(DataError, match=r"a Dask worker cannot read .*part-1\.csv.*shared file system"):
        with cluster_failures(client.scheduler.address):
            source.statistics(rff_map(X))


def test_a_worker_killed_repeatedly_is_one_line_naming_memory():
    """A task that kills its worker process each time: the scheduler gives up (KilledWorker)."""
    import os

    from direct_edge.trainer.distributed import cluster_failures

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        with pytest.raises(DataError, match="died while computing the same partition.*memory"):
            with cluster_failures(cluster.scheduler_address):
                c.submit(os._exit, 1, pure=False).result(timeout=120)


def test_a_lost_scheduler_is_one_line():
    from direct_edge.trainer.distributed import cluster_failures

    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    address = cluster.scheduler_address
    with Client(cluster) as c:
        X, y = data(n=200)
        source = DaskSource.from_collection(da.from_array(X, chunks=50), da.from_array(y, chunks=50))
        cluster.close()
        with pytest.raises(DataError, match="lost the Dask scheduler"):
            with cluster_failures(address):
                source.statistics(rff_map(X))
        del c
