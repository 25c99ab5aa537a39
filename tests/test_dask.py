"""Distributed stratified SGD on a LocalCluster (skipped without the dask extra)."""

import os
import signal
import threading
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

import mfsgd  # noqa: E402
from mfsgd import DistributedTrainingError, MatrixFactorization  # noqa: E402
from mfsgd.datasets import make_ratings  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as c:
        yield c


@pytest.fixture()
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def frame():
    pytest.importorskip("pandas")
    return make_ratings(2000, 800, 40_000, rank=4, noise=0.3, random_state=0)


KW = dict(n_factors=8, n_epochs=4, n_blocks=3, random_state=1, learning_rate=0.01)


def assert_same_model(a, b):
    """Bit for bit: factors, biases and the training loss of every epoch."""
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert [h["train_rmse"] for h in a.history_] == [h["train_rmse"] for h in b.history_]


def test_matches_local_stratified_fit(client, frame):
    ddf = dd.from_pandas(frame, npartitions=5)
    dist = MatrixFactorization(**KW).fit(ddf, client=client)
    local = MatrixFactorization(**KW).fit(frame)
    assert_same_model(dist, local)  # 2 workers x 1 thread: bit-identical to the local fit
    assert dist.n_blocks_ == 3
    # the result is an ordinary model
    np.testing.assert_allclose(dist.predict(frame), local.predict(frame), rtol=1e-5)
    assert set(dist.recommend(frame.user.iloc[0], n=5)[0]) == set(
        local.recommend(frame.user.iloc[0], n=5)[0])


def test_the_usual_column_names_are_recognised_as_locally(client, frame):
    """A Dask frame of MovieLens' names (userId, movieId, rating) fits as the local frame
    does (the default column names give way to the usual ones)."""
    named = frame.rename(columns={"user": "userId", "item": "movieId"})
    dist = MatrixFactorization(**KW).fit(dd.from_pandas(named, npartitions=5), client=client)
    assert_same_model(dist, MatrixFactorization(**KW).fit(named))
    assert_same_model(dist, MatrixFactorization(**KW).fit(frame))


def test_string_ids_and_eval_set(client, frame, tmp_path):
    f = frame.assign(user=frame.user.map(lambda x: f"u{x:05d}"))
    train, test = f.iloc[:35_000], f.iloc[35_000:]
    m = MatrixFactorization(**KW).fit(dd.from_pandas(train, npartitions=3), client=client,
                                      eval_set=test)
    assert m.user_ids_.dtype.kind == "U" and "val_rmse" in m.history_[-1]
    m.save(tmp_path / "m.mfsgd")
    assert mfsgd.load(tmp_path / "m.mfsgd").n_epochs_ == 4


def test_val_rmse_of_unknown_ids_without_biases(client, frame):
    """A model without biases predicts the global mean where a side is unknown; the
    validation RMSE of a Dask fit does too (review 22: it predicted 0), as the local
    fit's."""
    train, test = frame.iloc[:35_000], frame.iloc[35_000:].copy()
    test.loc[test.index[:1000], "user"] += 10**6
    kw = dict(KW, biased=False)
    dist = MatrixFactorization(**kw).fit(dd.from_pandas(train, npartitions=3), client=client,
                                         eval_set=test)
    local = MatrixFactorization(**kw).fit(train, eval_set=test)
    want = float(np.sqrt(np.mean((dist.predict(test) - test.rating.to_numpy()) ** 2)))
    assert dist.history_[-1]["val_rmse"] == pytest.approx(want, rel=1e-9)
    assert [h["val_rmse"] for h in dist.history_] == [h["val_rmse"] for h in local.history_]


def test_dask_collection_needs_a_client(frame):
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(TypeError, match="pass client=distributed.Client"):
        MatrixFactorization(**KW).fit(ddf)
    with pytest.raises(ValueError, match="client= is only for Dask collections"):
        MatrixFactorization(**KW).fit(frame, client=object())


@pytest.mark.parametrize("method", ["partial_fit", "fold_in", "predict", "partial_fit unfitted"])
def test_other_methods_refuse_a_dask_collection(frame, method):
    """Only fit trains on the cluster; partial_fit took a Dask collection without client=
    and computed it whole into this process (fit refuses that), as did fold_in and
    predict. Each now names the collection and what to do."""
    ddf = dd.from_pandas(frame, npartitions=2)
    m = MatrixFactorization(**KW)
    if method != "partial_fit unfitted":
        m.fit(frame)
    call = getattr(m, method.split()[0])
    with pytest.raises(TypeError, match=r"^X is a Dask collection; only fit\(X, client=\.\.\.\) "
                                        r"takes one .* X\.compute\(\)"):
        call(ddf)
    if method != "predict":  # predict takes no y
        with pytest.raises(TypeError, match=r"^y is a Dask collection"):
            call(frame[["user", "item"]], ddf["rating"])
    # columns of a collection, in a tuple or a dict, were computed as well
    cols = (ddf.user, ddf.item) if method == "predict" else (ddf.user, ddf.item, ddf.rating)
    for X in (cols, dict(zip(["user", "item", "rating"], cols, strict=False))):
        with pytest.raises(TypeError, match=r"^the users column of X is a Dask collection; "
                                            r"only fit\(X, client=\.\.\.\) takes one"):
            call(X)


def test_a_dask_eval_set_is_refused_saying_it_must_be_in_memory(frame):
    ddf = dd.from_pandas(frame, npartitions=2)
    for ev, name in ((ddf, "eval_set"), ((ddf.user, ddf.item, ddf.rating),
                                         "the users column of eval_set")):
        with pytest.raises(TypeError, match=rf"^{name} is a Dask collection; eval_set must be "
                                            r"in-memory data, also when X is one"):
            MatrixFactorization(**KW).fit(frame, eval_set=ev)


def test_partition_errors_name_the_partition(client, frame):
    """A bad value is reported with its partition (its position counts within that
    partition: "position 1990" of partition 1 pointed at a healthy row of the whole), and
    a partition without a column the meta promised is refused as such (a bare
    KeyError: 'rating', before)."""
    dask = pytest.importorskip("dask")
    nan = frame.copy()
    nan.loc[nan.index[25_000], "rating"] = np.nan
    m = MatrixFactorization(**KW)
    with pytest.raises(ValueError, match=r"^partition 1 \(of 2\) of the Dask DataFrame, "
                                         r"positions counted from its first row: .*NaN.* "
                                         r"position 5000\b"):
        m.fit(dd.from_pandas(nan, npartitions=2, sort=False), client=client)
    parts = dd.from_delayed([dask.delayed(frame.iloc[:100]),
                             dask.delayed(frame.iloc[100:][["user", "item"]])],
                            meta=frame, verify_meta=False)
    with pytest.raises(ValueError, match=r"^partition 1 \(of 2\) of the Dask DataFrame has no "
                                         r"column 'rating'"):
        m.fit(parts, client=client)
    for blank, what in (("", "an empty id ''"), ("  ", "a blank id '  '")):
        named = frame.assign(item="i" + frame.item.astype(str))
        named.loc[named.index[[25_001, 30_000]], "item"] = blank  # missing ids, as locally
        with pytest.raises(ValueError, match=r"^partition 1 \(of 2\) of the Dask DataFrame, "
                                             r"positions counted from its first row: items "
                                             rf"has {what} \(first at position 5001\)"):
            m.fit(dd.from_pandas(named, npartitions=2, sort=False), client=client)
    assert not m.__sklearn_is_fitted__()


def test_epochs_lost_with_the_workers_are_named(client, frame, monkeypatch):
    """Workers lost after epochs completed (here: gathering the parameters fails) take
    those epochs' parameters with them. The error said "no epoch completed"; it now says
    how many did and that they were lost, and points to checkpoint=."""
    from mfsgd import _dask

    def lost(self):
        raise mfsgd._training.ExecutorFailure(RuntimeError("all workers left"))

    monkeypatch.setattr(_dask.DaskExecutor, "params", lost)
    m = MatrixFactorization(**KW)
    with pytest.raises(DistributedTrainingError,
                       match=r"all workers left\); 4 epoch\(s\) had completed, but their "
                             r"parameters were lost with the workers, so the model is "
                             r"unchanged; pass checkpoint= to be able to resume"):
        m.fit(dd.from_pandas(frame, npartitions=2), client=client)
    assert not m.__sklearn_is_fitted__()


def test_progress_per_sub_epoch(client, frame):
    seen = []
    MatrixFactorization(**{**KW, "n_epochs": 2}).fit(
        dd.from_pandas(frame, npartitions=2), client=client, callback=seen.append)
    assert [(s["epoch"], s["stratum"]) for s in seen] == [(e, t) for e in (1, 2)
                                                          for t in (1, 2, 3)]


@pytest.mark.parametrize("error", [ValueError, ZeroDivisionError])
def test_a_callback_error_keeps_the_completed_epochs(client, frame, error):
    """As in a local fit: the callback's own exception, the last completed epoch kept
    (a ValueError lost them, others were blamed on the cluster)."""
    def stop(info):
        if info["epoch"] == 3:
            raise error("stop")

    m = MatrixFactorization(**KW)
    with pytest.raises(error, match="stop"):
        m.fit(dd.from_pandas(frame, npartitions=2), client=client, callback=stop)
    assert m.n_epochs_ == 2
    two = MatrixFactorization(**{**KW, "n_epochs": 2}).fit(dd.from_pandas(frame, npartitions=2),
                                                           client=client)
    assert_same_model(m, two)


def test_ids_and_ratings_checked_across_partitions(client, frame):
    """Partitions are normalised one by one: int64 beside uint64 ids became float64
    (two users merged), ints beside strings became strings; constant ratings passed."""
    pd = pytest.importorskip("pandas")
    dask = pytest.importorskip("dask")

    def parts(*frames):  # partitions as they are, whatever the meta says
        return dd.from_delayed([dask.delayed(f) for f in frames], meta=frames[-1],
                               verify_meta=False)

    big = pd.DataFrame({"user": np.array([2**63 + 5, 2**63 + 6], np.uint64),
                        "item": [1, 2], "rating": [1.0, 2.0]})
    for small_users, match in (([3, 4], None), ([-3, 4], "beyond the int64 range")):
        small = pd.DataFrame({"user": small_users, "item": [1, 2], "rating": [3.0, 4.0]})
        ddf = parts(big, small)
        m = MatrixFactorization(n_factors=2, n_epochs=1, n_blocks=1, random_state=0)
        if match is None:
            m.fit(ddf, client=client)
            assert m.user_ids_.dtype == np.uint64
            assert m.user_ids_.tolist() == [3, 4, 2**63 + 5, 2**63 + 6]
        else:
            with pytest.raises(ValueError, match=match):
                m.fit(ddf, client=client)
    names = pd.DataFrame({"user": ["a", "b"], "item": [1, 2], "rating": [1.0, 2.0]})
    ints = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [3.0, 4.0]})
    with pytest.raises(TypeError, match="users mixes id types"):
        MatrixFactorization(n_factors=2, n_epochs=1).fit(parts(names, ints), client=client)
    ones = frame.assign(rating=1.0)
    with pytest.raises(ValueError, match="every rating is 1.0"):
        MatrixFactorization(n_factors=2, n_epochs=1).fit(dd.from_pandas(ones, npartitions=2),
                                                         client=client)


def test_many_blocks_on_little_data_warn(client, frame):
    """Every epoch schedules n_blocks^2 tasks: a large n_blocks on little data spends its
    time scheduling (255 blocks on 3,000 ratings did not finish an epoch in minutes)."""
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.warns(UserWarning, match=r"n_blocks=8 cuts 40000 ratings into 64 blocks of "
                                         r"about 625 ratings") as rec:
        MatrixFactorization(**{**KW, "n_epochs": 1, "n_blocks": 8}).fit(ddf, client=client)
    assert rec[0].filename == __file__  # it points at the user's call
    # one block cannot be fewer: no "use fewer blocks" on little data (it warned)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MatrixFactorization(**{**KW, "n_epochs": 1, "n_blocks": 1}).fit(
            dd.from_pandas(frame.iloc[:50], npartitions=2), client=client)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tests' own n_blocks=3 gives blocks of 4,444
        MatrixFactorization(**{**KW, "n_epochs": 1}).fit(ddf, client=client)


def test_checkpoint_and_resume(client, frame, tmp_path):
    ck = str(tmp_path / "ck.npz")
    ddf = dd.from_pandas(frame, npartitions=2)
    MatrixFactorization(**{**KW, "n_epochs": 2}).fit(ddf, client=client, checkpoint=ck)
    assert os.path.exists(ck)
    assert mfsgd.load(ck).n_epochs_ == 2  # a checkpoint is a model file
    m = MatrixFactorization(**KW).fit(ddf, client=client, checkpoint=ck, resume=True)
    assert m.n_epochs_ == 4 and [h["epoch"] for h in m.history_] == [1, 2, 3, 4]
    # The checkpoint holds the generator's state and the kernel never reorders the stored
    # ratings, so the resumed run is the uninterrupted one.
    whole = MatrixFactorization(**KW).fit(ddf, client=client)
    np.testing.assert_array_equal(m.user_factors_, whole.user_factors_)
    np.testing.assert_array_equal(m.item_bias_, whole.item_bias_)
    other = MatrixFactorization(**{**KW, "n_factors": 4})
    with pytest.raises(mfsgd.ModelFileError, match="checkpoint of another model"):
        other.fit(ddf, client=client, checkpoint=ck, resume=True)
    # Review 19: only the shapes were compared, so a checkpoint of other users (as many),
    # another seed, grid or rate was resumed, its rows given to other users.
    before = open(ck, "rb").read()
    shifted = dd.from_pandas(frame.assign(user=frame.user + 10_000), npartitions=2)
    # review 20: the same ids, range and mean, other ratings (shuffled among the rows)
    shuffled = dd.from_pandas(frame.assign(rating=np.random.default_rng(0).permutation(
        frame.rating.to_numpy())), npartitions=2)
    for data, kw, why in [
            (shifted, {}, r"other user ids"),
            (shuffled, {}, r"other ratings"),
            (ddf, {"random_state": 2}, r"random_state=1, this fit 2"),
            (ddf, {"n_blocks": 2}, r"n_blocks=3, this fit 2"),
            (ddf, {"learning_rate": 0.02}, r"learning_rate=0.01, this fit 0.02")]:
        fresh = MatrixFactorization(**{**KW, **kw})
        with pytest.raises(mfsgd.ModelFileError, match=rf"checkpoint of another fit \({why}\)"):
            fresh.fit(data, client=client, checkpoint=ck, resume=True)
        assert not fresh.__sklearn_is_fitted__()
    assert open(ck, "rb").read() == before
    # what does not change the epochs' arithmetic may differ: more epochs, other threads,
    # other partitions of the same rows
    more = MatrixFactorization(**{**KW, "n_epochs": 5, "n_threads": 2})
    three = dd.from_pandas(frame, npartitions=3)
    assert more.fit(three, client=client, checkpoint=ck, resume=True).n_epochs_ == 5
    # a default and its value are the same parameter (review 20: refused)
    ck2 = str(tmp_path / "ck2.mfsgd")
    kw = {k: v for k, v in KW.items() if k != "learning_rate"}
    MatrixFactorization(**{**kw, "n_epochs": 1}).fit(ddf, client=client, checkpoint=ck2)
    spelled = MatrixFactorization(**{**kw, "n_epochs": 2, "learning_rate": 0.005})
    assert spelled.fit(ddf, client=client, checkpoint=ck2, resume=True).n_epochs_ == 2


def test_killed_worker_recovers_or_fails_clearly(cluster, frame):
    """Kill a worker process in the middle of training: Dask recomputes the lost blocks
    (tasks are pure), so the model equals the undisturbed one; if it cannot, fit raises
    DistributedTrainingError. Never a silently different model."""
    local = MatrixFactorization(**{**KW, "n_epochs": 3}).fit(frame)
    with distributed.Client(cluster) as client:
        victim = list(client.scheduler_info()["workers"])[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        killed = threading.Event()

        def kill(info):
            if info["epoch"] == 2 and info["stratum"] == 1 and not killed.is_set():
                killed.set()
                os.kill(pid, signal.SIGKILL)

        m = MatrixFactorization(**{**KW, "n_epochs": 3})
        try:
            m.fit(dd.from_pandas(frame, npartitions=3), client=client, callback=kill)
        except DistributedTrainingError as e:
            assert "Distributed training failed" in str(e)
            return
        assert killed.is_set()
        np.testing.assert_allclose(m.user_factors_, local.user_factors_, rtol=1e-5, atol=1e-6)
    # the cluster's nanny restarts the killed worker for the next tests
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)


def test_threads_per_worker_knob(client, frame):
    """More kernel threads than the workers have: a worker runs its blocks of a stratum
    (2 of the 3 here) on 2 threads; same model. Bad values name the knob."""
    ddf = dd.from_pandas(frame, npartitions=2)
    kw = {**KW, "n_epochs": 2}
    m = MatrixFactorization(**kw).fit(ddf, client=client, threads_per_worker=2)
    assert_same_model(m, MatrixFactorization(**kw).fit(frame))
    for bad in (0, -1, 10**6):
        with pytest.raises(ValueError, match="threads_per_worker"):
            MatrixFactorization(**kw).fit(ddf, client=client, threads_per_worker=bad)
    for bad in (1.5, "2", True):
        with pytest.raises(TypeError, match="threads_per_worker"):
            MatrixFactorization(**kw).fit(ddf, client=client, threads_per_worker=bad)
    with pytest.raises(ValueError, match="threads_per_worker= is only for Dask"):
        MatrixFactorization(**kw).fit(frame, threads_per_worker=2)


def test_one_worker_two_threads_equals_local_two_threads(frame):
    """A worker process with 2 threads runs its blocks of a stratum on both: the default
    grid is the local one for 2 threads (n_blocks=None -> 4), and the model is the local
    n_threads=2 model bit for bit."""
    kw = {k: v for k, v in KW.items() if k != "n_blocks"} | {"n_epochs": 2}
    local = MatrixFactorization(**kw, n_threads=2).fit(frame)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        ddf = dd.from_pandas(frame, npartitions=2)
        two = MatrixFactorization(**kw).fit(ddf, client=client)
        assert two.n_blocks_ == local.n_blocks_ == 4
        assert_same_model(two, local)


def test_a_worker_task_runs_its_blocks_on_its_threads(monkeypatch):
    """_blocks_run gives its blocks to n_threads threads (largest first) and returns the
    results in block order: with 2 threads, two blocks are in the kernel at once (the
    barrier would time out if they ran one after the other)."""
    from mfsgd import _dask

    both_in = threading.Barrier(2, timeout=30)
    seen = []

    def fake_block_run(block, *args):
        seen.append((block, threading.get_ident()))
        if block in ("a", "b"):
            both_in.wait()
        return block

    monkeypatch.setattr(_dask, "_block_run", fake_block_run)
    n = 4
    out = _dask._blocks_run(["a", "b", "c", "d"], *[[None] * n] * 6, np.array([9, 8, 1, 2]),
                            None, n_threads=2)
    assert out == ("a", "b", "c", "d")
    assert len({tid for _, tid in seen}) == 2
    # one thread: in order on the calling thread, no pool
    seen.clear()
    monkeypatch.setattr(_dask, "_block_run", lambda block, *a: seen.append(block) or block)
    assert _dask._blocks_run(["a", "b"], *[[None] * 2] * 6, np.array([1, 2]), None,
                             n_threads=1) == ("a", "b")
    assert seen == ["b", "a"]  # largest first (LPT), results still in block order


@pytest.mark.parametrize("where,exc,msg", [
    ("directory", IsADirectoryError, r"the checkpoint cannot be written there \(Is a directory\)"),
    ("missing folder", FileNotFoundError, r"cannot be written there \(No such file"),
    (5, TypeError, r"checkpoint must be a path \(str or os.PathLike\) or an fsspec URL; got 5 "
                   r"\(int\)"),
    ("", ValueError, r"checkpoint must be a non-empty path"),
    (None, ValueError, r"resume=True needs checkpoint="),
], ids=["directory", "missing folder", "int", "empty", "resume without checkpoint"])
def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(client, frame, tmp_path,
                                                                        where, exc, msg):
    """It was found when first written, after epoch 1: the fit stopped there and the
    fitted model was replaced by that one epoch (and an int gave fsspec's own TypeError)."""
    ck = {"directory": tmp_path, "missing folder": tmp_path / "no" / "ck.mfsgd"}.get(where, where)
    m = MatrixFactorization(**{**KW, "n_epochs": 2}).fit(frame)
    before = m.user_factors_.copy()
    with pytest.raises(exc, match=msg) as info:
        m.fit(dd.from_pandas(frame, npartitions=2), client=client, checkpoint=ck,
              resume=ck is None)
    if isinstance(info.value, OSError):
        assert info.value.filename == str(ck)
    assert m.n_epochs_ == 2 and not list(tmp_path.iterdir())
    np.testing.assert_array_equal(m.user_factors_, before)


def test_checkpoint_check_leaves_urls_and_writes_nothing(tmp_path):
    """Only the type of a URL is checked (reaching it may need the network); a local
    path, also a PathLike or a file:// URL, is checked without writing anything."""
    from mfsgd._dask import check_checkpoint

    assert check_checkpoint("s3://bucket/ck.mfsgd", True) == "s3://bucket/ck.mfsgd"
    assert check_checkpoint(tmp_path / "ck.mfsgd", False) == str(tmp_path / "ck.mfsgd")
    assert check_checkpoint(f"file://{tmp_path}/ck.mfsgd", True) == f"file://{tmp_path}/ck.mfsgd"
    assert check_checkpoint(None, False) is None
    assert not list(tmp_path.iterdir())
    with pytest.raises(IsADirectoryError, match=r"cannot be written there"):
        check_checkpoint(f"file://{tmp_path}", False)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match=r"is not a regular file"):
            check_checkpoint(tmp_path / "fifo", False)  # opening it to write would block


def test_a_cluster_without_workers_is_refused(frame):
    """A fit on a cluster with no workers ended in a ZeroDivisionError (the blocks'
    owners cycled over an empty list); it is refused, saying so."""
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        m = MatrixFactorization(**KW)
        with pytest.raises(ValueError, match="the Dask cluster has no workers"):
            m.fit(dd.from_pandas(frame, npartitions=2), client=client)
        assert not m.__sklearn_is_fitted__()
