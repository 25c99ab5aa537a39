"""Ctrl-C at the edges of an epoch: a second press while fit waits for its threads, and
a press after the last epoch, while the trained model is being stored."""

import signal
import threading
import time
import warnings

import numpy as np
import pytest

from mfsgd import MatrixFactorization, TrainingInterrupted, _training
from mfsgd.datasets import make_ratings


@pytest.fixture(scope="module")
def data():
    return make_ratings(600, 300, 30_000, random_state=0, as_frame=False)


@pytest.fixture()
def default_sigint():
    """Python's own SIGINT handler, as a terminal's Ctrl-C finds it (Python installs none
    when it starts with SIGINT ignored, as a shell's background job does)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_second_ctrl_c_waits_for_the_workers(data, monkeypatch):
    """The first Ctrl-C (here: raised in the calling thread's own share of epoch 2) stops
    the epoch, and fit waits for the worker thread before it restores epoch 1. A second
    Ctrl-C (here: the first wait raises) broke that wait: epoch 1's parameters were
    restored while the worker still wrote into them, and n_epochs_ = 1 held no epoch's
    model."""
    main = threading.main_thread()
    real_run, real_restore = _training.EpochRunner._run_list, _training.LocalExecutor.restore
    real_wait = _training.cf.wait
    state = {"epoch": 0, "worker_busy": False, "busy_at_restore": [], "waits": 0}

    def run_list(self, *a):
        if threading.current_thread() is main:
            if state["epoch"] == 2:
                raise KeyboardInterrupt  # the first Ctrl-C
            return real_run(self, *a)
        state["worker_busy"] = True
        time.sleep(0.3)  # still in its kernel call when the caller is interrupted
        try:
            return real_run(self, *a)
        finally:
            state["worker_busy"] = False

    def run_epoch(self, rng):
        state["epoch"] += 1
        return real_epoch(self, rng)

    def wait(futs, *a, **k):
        state["waits"] += 1
        if state["waits"] == 1:
            raise KeyboardInterrupt  # the second Ctrl-C, during the wait
        return real_wait(futs, *a, **k)

    def restore(self, snap):
        state["busy_at_restore"].append(state["worker_busy"])
        return real_restore(self, snap)

    real_epoch = _training.EpochRunner.run_epoch
    monkeypatch.setattr(_training.EpochRunner, "_run_list", run_list)
    monkeypatch.setattr(_training.EpochRunner, "run_epoch", run_epoch)
    monkeypatch.setattr(_training.LocalExecutor, "restore", restore)
    monkeypatch.setattr(_training.cf, "wait", wait)
    kw = dict(n_factors=8, n_threads=2, n_blocks=2, n_epochs=4, random_state=0)
    m = MatrixFactorization(**kw)
    with pytest.warns(TrainingInterrupted, match="keeps epoch 1"):
        with pytest.raises(KeyboardInterrupt):
            m.fit(data)
    assert state["waits"] >= 2  # it waited again after the second Ctrl-C
    assert state["busy_at_restore"] == [False]  # epoch 1 restored once the worker stopped
    monkeypatch.undo()
    ref = MatrixFactorization(**{**kw, "n_epochs": 1}).fit(data)
    assert m.n_epochs_ == 1
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
    np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)


def _ctrl_c_in(monkeypatch, name):
    """SIGINT delivered inside _training.<name>, which runs after the last epoch."""
    real = getattr(_training, name)
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        signal.raise_signal(signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(_training, name, interrupted)
    return calls


@pytest.mark.parametrize("loss", ["squared", "warp"])
@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_ctrl_c_after_the_last_epoch_keeps_the_trained_model(data, monkeypatch, default_sigint,
                                                             loss, call):
    """Ctrl-C while the seen-items record is built (after the last epoch, before the
    model is stored) raised KeyboardInterrupt out of fit with the old model left in
    place: every completed epoch was lost, silently. The press is now held until the
    model is stored, then raised with a TrainingInterrupted warning."""
    u, i, r = data
    X = (u, i, r) if loss == "squared" else (u, i)
    kw = dict(loss=loss, n_factors=8, n_epochs=3, random_state=0)
    m = MatrixFactorization(**kw)
    if call == "partial_fit":
        m.fit(X)
    calls = _ctrl_c_in(monkeypatch, "seen_csr" if call == "fit" else "merge_seen")
    last = 3 if call == "fit" else 6
    with pytest.warns(TrainingInterrupted, match=rf"after its last epoch \({last}\); the "
                                                 "trained model is kept"):
        with pytest.raises(KeyboardInterrupt):
            getattr(m, call)(X, **({} if call == "fit" else {"n_epochs": 3}))
    assert calls
    monkeypatch.undo()
    ref = MatrixFactorization(**kw).fit(X)
    if call == "partial_fit":
        ref.partial_fit(X, n_epochs=3)
    assert m.n_epochs_ == ref.n_epochs_ == last
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
    np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_ctrl_c_during_an_epoch_still_stops_at_once(data, monkeypatch, default_sigint):
    """The handler installed for the fit raises KeyboardInterrupt during the epochs, as
    Python's own does: the fit stops there and keeps the last completed epoch."""
    real = _training.EpochRunner.run_epoch
    n = {"epochs": 0}

    def run_epoch(self, rng):
        n["epochs"] += 1
        if n["epochs"] == 2:
            signal.raise_signal(signal.SIGINT)
        return real(self, rng)

    monkeypatch.setattr(_training.EpochRunner, "run_epoch", run_epoch)
    m = MatrixFactorization(n_factors=4, n_epochs=5, random_state=0)
    with pytest.warns(TrainingInterrupted, match="interrupted in epoch 2; the model keeps "
                                                 "epoch 1"):
        with pytest.raises(KeyboardInterrupt):
            m.fit(data)
    assert m.n_epochs_ == 1 and n["epochs"] == 2


def test_a_programs_own_sigint_handler_is_left_alone(data, monkeypatch):
    """A program that handles SIGINT itself keeps its handler during a fit: it is called
    (also after the last epoch), and the fit goes on as the handler decides."""
    seen = []

    def mine(signum, frame):
        seen.append(signum)

    old = signal.signal(signal.SIGINT, mine)
    try:
        calls = _ctrl_c_in(monkeypatch, "seen_csr")
        with warnings.catch_warnings():
            warnings.simplefilter("error", TrainingInterrupted)
            m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(data)
        assert calls and seen == [signal.SIGINT] and m.n_epochs_ == 2
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_fit_in_another_thread_installs_no_handler(data):
    """signal.signal works only in the main thread: a fit elsewhere must not try."""
    out = {}

    def go():
        try:
            out["m"] = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(data)
        except BaseException as e:  # pragma: no cover - the failure being tested
            out["error"] = e

    t = threading.Thread(target=go)
    t.start()
    t.join()
    assert "error" not in out and out["m"].n_epochs_ == 2


@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_ctrl_c_before_the_first_epoch_warns_too(data, monkeypatch, call):
    """Ctrl-C while the data are read and laid out was a bare KeyboardInterrupt, where
    every other Ctrl-C of a fit warns TrainingInterrupted (the fit's docstring promises
    it). It warns now, saying the model is unchanged; the warning points at the caller."""
    u, i, r = data
    m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0)
    if call == "partial_fit":
        m.fit(data)
    before = None if call == "fit" else m.user_factors_.copy()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_training.Layout, "build", interrupted)
    with pytest.warns(TrainingInterrupted, match=r"^Training interrupted before its first "
                                                 r"epoch; the model is unchanged\.$") as w:
        with pytest.raises(KeyboardInterrupt):
            getattr(m, call)((u, i, r))
    assert w[0].filename == __file__
    if call == "fit":
        assert not m.__sklearn_is_fitted__()
    else:
        np.testing.assert_array_equal(m.user_factors_, before)


def test_a_second_ctrl_c_during_the_restore_is_held(data, monkeypatch, default_sigint):
    """A second press while the last good epoch was being restored (after the first, in
    epoch 3) escaped the epoch loop: the model lost its 2 completed epochs, and the
    warning said "before its first epoch". The press is now held from the first."""
    real_epoch, real_restore = _training.EpochRunner.run_epoch, _training.LocalExecutor.restore
    n = {"epochs": 0, "restores": 0}

    def run_epoch(self, rng):
        n["epochs"] += 1
        if n["epochs"] == 3:
            raise KeyboardInterrupt  # the first press
        return real_epoch(self, rng)

    def restore(self, snap):
        n["restores"] += 1
        signal.raise_signal(signal.SIGINT)  # the second press
        return real_restore(self, snap)

    monkeypatch.setattr(_training.EpochRunner, "run_epoch", run_epoch)
    monkeypatch.setattr(_training.LocalExecutor, "restore", restore)
    kw = dict(n_factors=4, n_epochs=5, random_state=0)
    m = MatrixFactorization(**kw)
    with pytest.warns(TrainingInterrupted, match="in epoch 3; the model keeps epoch 2"):
        with pytest.raises(KeyboardInterrupt):
            m.fit(data)
    assert n["restores"] == 1
    monkeypatch.undo()
    ref = MatrixFactorization(**{**kw, "n_epochs": 2}).fit(data)
    assert m.n_epochs_ == 2
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)


def test_a_fit_inside_another_fits_callback_holds_its_own_ctrl_c(data, monkeypatch,
                                                                 default_sigint):
    """A fit called from another fit's callback found the outer fit's handler, not
    Python's, and installed none: Ctrl-C after its last epoch lost its model. It now
    installs its own and puts the outer one back."""
    calls = _ctrl_c_in(monkeypatch, "seen_csr")  # the inner fit's, after its last epoch
    inner = MatrixFactorization(n_factors=4, n_epochs=2, random_state=1)
    handlers = []

    def callback(row):
        handlers.append(signal.getsignal(signal.SIGINT))
        if row["epoch"] == 1:
            inner.fit(data)

    outer = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
    with pytest.warns(TrainingInterrupted) as w:
        with pytest.raises(KeyboardInterrupt):
            outer.fit(data, callback=callback)
    assert calls and inner.n_epochs_ == 2 and outer.n_epochs_ == 1
    assert [str(x.message) for x in w] == [
        "Training interrupted after its last epoch (2); the trained model is kept.",
        "Training interrupted in epoch 2; the model keeps epoch 1."]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("where", ["in an epoch", "after the last epoch"])
def test_partial_fit_warnings_point_at_the_caller(data, monkeypatch, default_sigint, where):
    """partial_fit's TrainingInterrupted pointed one frame above its caller."""
    m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(data)
    if where == "in an epoch":
        def run_epoch(self, rng):
            raise KeyboardInterrupt

        monkeypatch.setattr(_training.EpochRunner, "run_epoch", run_epoch)
    else:
        _ctrl_c_in(monkeypatch, "merge_seen")
    with pytest.warns(TrainingInterrupted) as w:
        with pytest.raises(KeyboardInterrupt):
            m.partial_fit(data, n_epochs=1)
    assert w[0].filename == __file__
