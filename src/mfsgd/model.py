"""MatrixFactorization: the estimator (fit, partial_fit, predict, save)."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from . import _recommend as R
from . import _training as T
from ._base import EstimatorBase
from ._config import (
    MAX_THREADS,
    FitConfig,
    check_eval_metric,
    continuation_rng,
    fit_rng,
    make_config,
)
from ._dask import fit_dask
from ._data import Handoff, broadcast_pair, columns_of, read_training, refuse_constant, unpack
from ._recommender import RecommenderMixin
from ._state import FittedState
from ._validation import check_bool, check_int, check_ratings, loose_iterable
from .persistence import read_model, stored_params, write_model

__all__ = ["MatrixFactorization"]


def _warn_widened(old: tuple[float, float], new: tuple[float, float],
                  stacklevel: int) -> None:
    """Warn that a kept partial_fit widened the model's rating range: it never narrows
    (and is saved), and predictions are clipped to it, so one rating on another scale
    (50 on a 1-5 scale) would silently end the clipping."""
    warnings.warn(
        f"partial_fit widened the model's rating range from ({old[0]:g}, {old[1]:g}) to "
        f"({new[0]:g}, {new[1]:g}) to take its ratings; predictions are clipped to it, and "
        "it is saved with the model and never narrows. If some of those ratings are "
        "mistakes, such as another rating scale, drop them and refit or reload the model.",
        UserWarning, stacklevel=stacklevel)


class MatrixFactorization(RecommenderMixin, EstimatorBase):
    r"""Biased matrix factorization ("Funk SVD") trained by stochastic gradient descent.

    Prediction for user i and item j::

        r^_ij = mu + b_i + b'_j + u_i . v_j

    Training minimises, over the observed ratings K::

        sum_(i,j) in K (r_ij - r^_ij)^2 + reg_factors (|u_i|^2 + |v_j|^2)
                                        + reg_bias (b_i^2 + b'_j^2)

    one rating at a time, with ``e = r_ij - r^_ij`` and ``alpha = learning_rate``::

        b_i  <- b_i  + alpha (e - reg_bias b_i)      u_i <- u_i + alpha (e v_j - reg_factors u_i)
        b'_j <- b'_j + alpha (e - reg_bias b'_j)     v_j <- v_j + alpha (e u_i - reg_factors v_j)

    (the factor 2 of the gradient is folded into alpha; u_i and v_j are both updated
    from their values before the step). mu is the mean of the training ratings.

    Parameters
    ----------
    n_factors : int, default 100
        Number of latent factors k (1 to 65536).
    n_epochs : int or None, default None
        Passes over the training ratings. None: the loss's default (table below).
    learning_rate : float or None, default None
        SGD step alpha, > 0 (also in ``dtype``: 1e-320 is 0 in float32 and refused).
        None: the loss's default.
    reg_factors : float or None, default None
        lambda1, L2 regularisation of the factors. None: the loss's default.
    reg_bias : float or None, default None
        lambda2, L2 regularisation of the biases. None: the loss's default.
    init_std : float or None, default None
        Factors start as N(0, init_std^2) (absolute values when ``nonnegative``);
        biases start at 0. None: the loss's default.
    shuffle : bool, default True
        Visit the ratings in a fresh random order each epoch. With False (and one
        block) the given order is kept exactly.
    random_state : None, int or numpy.random.Generator, default None
        Seed of every random choice (initialisation, hold-out, shuffling). The same
        seed, data and ``n_blocks`` give a bit-identical model for any ``n_threads``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        Precision of the parameters and of the kernel's arithmetic.
    early_stopping : bool, default False
        Stop when the validation RMSE has not improved by more than ``tol`` for
        ``n_iter_no_change`` epochs, and keep the parameters of the best epoch. The
        validation set is ``eval_set`` when given, else a random ``validation_fraction``
        of the ratings held out from training. With a ranking loss the metric ranks the
        whole catalogue for every validation user after every epoch, which on large
        data costs more than the epoch itself: pass an ``eval_set`` of a sample of users
        there (the hold-out reaches nearly every user).
    validation_fraction : float, default 0.1
        Share of ratings held out for early stopping when no ``eval_set`` is given
        (ranking: of distinct user-item pairs), less the first of each user's and each
        item's that would otherwise leave it no training row. A hold-out of fewer than
        100, or one larger than what it leaves for training, warns (see :meth:`fit`).
    n_iter_no_change : int, default 3
        Patience of early stopping, in epochs.
    tol : float, default 1e-4
        Minimum improvement of the validation RMSE that resets the patience.
    clip : bool, default True
        Clip predictions to the range of the training ratings.
    verbose : bool, default False
        Print one line per epoch.
    n_threads : int, default 1
        Threads running the kernel (stratified block SGD; see ``n_blocks``). -1: one per
        CPU this process may use, counted when a fit starts (with ``n_blocks=None`` the
        model then depends on the machine: fix ``n_blocks`` to get the same one
        everywhere).
    n_blocks : int or None, default None
        Blocks per side of the user x item grid of parallel work (1 to 255). None means
        1 for one thread and 2 x ``n_threads`` otherwise, but no more than leaves about
        2,048 ratings per block (at most sqrt(ratings / 2048) per side: smaller blocks
        cost more in thread hand-offs than they train); fix it to get the same model
        for any thread count. (Cache blocking happens inside blocks, in cells sized
        from the model, whatever ``n_blocks`` is.) A ranking loss draws negatives from
        the positive's block column, which must hold at least 16 items: None then
        lowers the count until every column does, and a value that leaves fewer raises
        ValueError.
    lr_decay : float or None, default None
        Per-epoch decay: epoch e (from 0) uses ``learning_rate / (1 + lr_decay * e)``.
        None: the loss's default.
    adagrad : bool, default False
        Adaptive rates, one AdaGrad accumulator per user and per item row (as LibMF):
        row u moves by ``learning_rate / sqrt(G_u)`` times its gradient, and ``G_u``
        (starting at 1) grows by the mean squared gradient of the row's values. For
        the squared loss the base rate wants to be larger than for plain SGD (try 0.05
        to 0.1). The ranking losses take their own AdaGrad defaults (table below): the
        most accurate top-N lists, at several times the epochs. ``fit`` starts the
        accumulators afresh; ``partial_fit`` continues them (they are saved with the
        model), and the rows it adds, or ``fold_in`` adds or solves, start at 1.
    biased : bool, default True
        False fits the plain model ``r^ = u_i . v_j`` with no mu and no biases.
    nonnegative : bool, default False
        Projected SGD keeping every factor >= 0 (non-negative MF).
    user_col, item_col, rating_col : str or int, default "user", "item", "rating"
        Column labels read from a DataFrame or dict input (an int for a DataFrame with
        integer column labels): three different labels.
    loss : {"squared", "bpr", "warp", "softmax"}, default "squared"
        "squared" fits ratings (the model above). The ranking losses fit interactions
        (implicit feedback: clicks, plays, purchases) and learn to rank a user's items
        above the others: "bpr" (Bayesian personalised ranking, ``n_negatives`` pairwise
        steps per positive), "warp" (weighted approximate-rank pairwise: negatives are
        drawn until one violates ``margin``, at most ``max_sampled``; the step grows with
        the estimated rank) and "softmax" (sampled softmax over the positive and
        ``n_negatives`` negatives). A ranking model has no mu and no user bias (they
        cancel in every comparison of one user's items); the item bias is kept when
        ``biased``. Its ``predict`` returns scores, not ratings. Negatives are drawn
        from the items of the positive's grid block (all items with ``n_blocks=1``),
        never one of the user's training items.
    n_negatives : int or None, default None
        Negatives per positive for "bpr" and "softmax" (1 to 256). None: 2 for bpr,
        5 for softmax.
    max_sampled : int, default 10
        "warp": draws per positive before giving up on finding a violating negative
        (up to 2**31 - 1). At most N - 1 are drawn, N the items negatives come from
        (all items, or the block column's): a violation found later has weight 0, its
        rank estimate floor((N - 1) / draws) being 0, and no step is taken, as when no
        negative violates. (Earlier builds applied the L2 shrinkage alone in such a
        step: fits with ``max_sampled >= N`` differ from theirs.)
    margin : float, default 1.0
        "warp": a negative violates when its score exceeds the positive's minus this.
    negative_exponent : float, default 0.0
        beta, 0 to 10: negatives are drawn in proportion to (training interactions of
        the item) ** beta; 0 draws uniformly (the fastest, and the best on MovieLens
        100K).
    eval_metric : str or None, default None
        What ``eval_set`` (or the early-stopping hold-out) is scored by after every
        epoch: "rmse" for squared (the only choice); "ndcg@K", "recall@K" or
        "hit_rate@K" (alias "hr@K") for the ranking losses (default "ndcg@10": each
        validation user's items are ranked among all items except the user's training
        items). Recorded as ``val_rmse`` or
        ``val_ndcg@10`` (etc.) in ``history_``; early stopping maximises a ranking metric.
    min_rating : float or None, default None
        Ranking losses only: keep only the input rows whose rating is >= this (e.g. 4 on
        a 1-5 scale: only liked items are interactions); the rating column is otherwise
        not a target and is ignored. Applies to ``eval_set`` too. None keeps every row.
        The rows below it are still the user's training items (never recommended back)
        but no interactions: ``item_counts_`` and ``user_counts_`` count the rows kept,
        and a user whose every row is below it is known with no interaction (zero
        factors; served the most popular items, like an unknown user). A
        ``partial_fit`` batch of only such rows records them and trains no epoch.

    Per-loss defaults (used where the parameter is None)::

        parameter       squared   bpr    warp   softmax
        n_epochs        20        10     20     20
        learning_rate   0.005     0.1    0.005  0.1
        reg_factors     0.02      0.01   0.01   0.02
        reg_bias        0.02      0.01   0.01   0.01
        init_std        0.1       0.1    0.01   0.01
        lr_decay        0.0       0.3    0.3    0.3
        n_negatives     -         2      -      5

    With ``adagrad=True`` the ranking losses use instead (squared keeps the above)::

        parameter       bpr    warp   softmax
        n_epochs        60     100    40
        learning_rate   0.05   0.025  0.1
        reg_factors     0.03   0.4    0.03
        lr_decay        0.0    0.0    0.0

    The ranking defaults were tuned on MovieLens 100K (``bench/RANKING.md``) and checked on
    other splits of its ratings (``bench/ranking_splits.py``); ``bench/RESULTS.md``
    section 10 has the NDCG@10 they reach beside implicit and LightFM.

    Attributes
    ----------
    global_mean_, user_factors_, item_factors_, user_bias_, item_bias_ : fitted parameters
    user_ids_, item_ids_ : ndarray
        Raw ids; row k of the factor matrices belongs to ``user_ids_[k]``.
    user_counts_, item_counts_ : ndarray of int64
        Training interactions (rows) per user and item, in id order; with ``min_rating``
        only the rows it kept. ``item_counts_`` is the popularity unknown users get.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_rmse`` (as seen during the pass),
        ``val_rmse`` (with a validation set), ``learning_rate``, ``seconds``; a ranking
        loss records ``train_loss`` (its mean loss per interaction) instead of
        ``train_rmse``, and ``val_<eval_metric>`` (e.g. ``val_ndcg@10``) instead of
        ``val_rmse``. With ``early_stopping``, ``best: True`` marks each epoch that
        improved the validation score by more than ``tol`` (the last one marked is the
        epoch kept, ``best_epoch_``).
        A copy: editing it does not change the model.
    n_epochs_ : int
        Epochs run (fewer than ``n_epochs`` after early stopping or an interruption).

    Notes
    -----
    Ctrl-C during ``fit`` stops within one kernel call (about 2^20 ratings: some 25 to
    50 ms at k = 64 on one core, longer for larger k; with more than 64 negatives per
    positive, whose calls have no such bound, within milliseconds), keeps the last
    completed epoch in the model (when at least one completed), warns
    ``TrainingInterrupted`` and re-raises ``KeyboardInterrupt``: a script stops, and in a
    notebook the model holds the epochs done. Divergence (a non-finite loss, or
    parameters whose predictions could overflow) restores the last good epoch and raises
    ``DivergenceError``.

    Examples
    --------
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(300, 200, 6000, random_state=0, as_frame=False)
    >>> model = MatrixFactorization(n_factors=8, n_epochs=5, random_state=0).fit(data)
    >>> model.predict((data[0][:2], data[1][:2])).shape
    (2,)
    """

    _estimator_type = "regressor"

    def __init__(
        self,
        n_factors: int = 100,
        n_epochs: int | None = None,
        learning_rate: float | None = None,
        reg_factors: float | None = None,
        reg_bias: float | None = None,
        init_std: float | None = None,
        shuffle: bool = True,
        random_state: Any = None,
        dtype: Any = np.float32,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 3,
        tol: float = 1e-4,
        clip: bool = True,
        verbose: bool = False,
        n_threads: int = 1,
        n_blocks: int | None = None,
        lr_decay: float | None = None,
        adagrad: bool = False,
        biased: bool = True,
        nonnegative: bool = False,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        loss: str = "squared",
        n_negatives: int | None = None,
        max_sampled: int = 10,
        margin: float = 1.0,
        negative_exponent: float = 0.0,
        eval_metric: str | None = None,
        min_rating: float | None = None,
    ) -> None:
        # Every argument is stored unchanged under its own name (scikit-learn's contract:
        # get_params, set_params and clone read them back; checks happen in fit).
        for name, value in list(locals().items()):
            if name != "self":
                setattr(self, name, value)
        self._lock = threading.RLock()
        self._state: FittedState | None = None

    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn >= 1.6 (imported lazily: scikit-learn is optional)."""
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags(), non_deterministic=self.random_state is None)

    def _config(self) -> FitConfig:
        return make_config(self.get_params())

    # ------------------------------------------------------------------ data
    def _unpack(self, X: Any, y: Any, *, need_ratings: bool, what: str = "X"):
        return unpack(X, y, columns=columns_of(self), what=what,
                      ratings="require" if need_ratings else "ignore")

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, sample_weight: Any = None, eval_set: Any = None,
            callback: Any = None, client: Any = None,
            checkpoint: str | None = None, resume: bool = False,
            threads_per_worker: int | None = None) -> MatrixFactorization:
        """Fit the model to ratings (``loss="squared"``) or interactions (ranking losses).

        Parameters
        ----------
        X : DataFrame, tuple, dict, array or scipy.sparse matrix
            A DataFrame (or dict) with the user, item and rating columns; a tuple
            ``(users, items, ratings)`` of array-likes; a list of ``(user, item,
            rating)`` row tuples (rows, however few); or an ``(n, 2)`` array of
            (user, item) ids with the ratings in ``y``. Ids may be any integers or
            strings (labels, not indices). A scipy.sparse user x item matrix (CSR, COO,
            ...) gives one row per nonzero value, read as ``X.toarray()`` holds it
            (duplicate entries summed, stored zeros dropped): row index = user id,
            column index = item id, value = rating. With a ranking loss the ratings may be absent (a
            DataFrame without the rating column, a ``(users, items)`` tuple, an
            ``(n, 2)`` array without y): every row is an interaction. Ratings, if
            present, are not a target: they only select rows when ``min_rating`` is set.
            With ``loss="squared"``, ratings that are all equal (20 or more of them,
            e.g. all 1 for clicks) raise ``ValueError``: such data needs a ranking loss.
        y : array-like, optional
            Ratings when ``X`` holds only ids.
        sample_weight : array-like of float >= 0, str or sparse matrix, optional
            One weight per row of ``X`` (for a sparse ``X``, per stored entry in the
            order of ``X.data``; see the data guide), the name of a column of a
            DataFrame or Arrow ``X`` (``"plays"``), or for a sparse ``X`` a sparse matrix
            of its shape (LightFM's form: entry for entry when stored at X's
            coordinates in X's order; otherwise each cell's entries summed give that
            cell's weight; a cell of ``X`` without one raises): it multiplies that row's
            loss term
            (and gradient; the regularisation is not weighted). None weighs every row 1 (for
            squared, the unweighted kernel runs: the same model as before weights existed).
            Weights that are all 0 raise ``ValueError``. With weights, ``global_mean_``
            is the weighted mean of the ratings.
        eval_set : same forms as X, optional
            Validation ratings (squared: their RMSE is recorded per epoch in
            ``history_`` as ``val_rmse``) or interactions (ranking: ``eval_metric``,
            recorded as e.g. ``val_ndcg@10``); with ``early_stopping``, it drives it.
            Ranking: pairs whose user or item is not in the training data are left out
            (no epoch changes how they rank); each user's training items are excluded
            from the ranking, as ``mfsgd.metrics`` does with ``train=``.
        callback : callable, optional
            Called after every epoch with a copy of that epoch's ``history_`` record (a
            dict), e.g. to drive a progress bar. Raising
            :class:`~mfsgd.exceptions.StopTraining` ends training after that epoch, which
            the model keeps (under ``early_stopping``: the best epoch so far), and fit
            returns normally; any other exception it raises
            stops training like Ctrl-C does, keeping the last completed epoch, and is
            re-raised. The model changes only
            when fit returns, so the callback cannot use it: reading or changing it
            there (predict, save, a fitted attribute, fit) raises ``RuntimeError``.
            With a Dask collection it is called after every sub-epoch with
            ``{"epoch", "stratum", "n_strata"}``.
        client : distributed.Client, optional
            Required when ``X`` is a Dask DataFrame: trains by distributed stratified SGD
            on that cluster (see the guide's page on Dask).
        checkpoint : str or PathLike, optional
            With a Dask collection (only): path or fsspec URL where the model is written
            after every epoch, in the model file format, with the resume point in its
            header. A local path is checked before training: a directory, a missing
            folder or an unwritable one raises ``OSError`` naming it.
        resume : bool, default False
            With ``checkpoint`` (only): start from the parameters, epoch and
            random-generator state stored there (from scratch while it does not exist
            yet); the continued run gives the same model as one that was never
            interrupted.
        threads_per_worker : int, optional
            With a Dask collection: kernel threads per worker, each running some of the
            worker's blocks of a sub-epoch (the model does not depend on it). None (the
            default) uses each worker's ``nthreads``. ``n_blocks=None`` then means twice
            the cluster's kernel threads in all (fewer on small data, as in a local fit).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Invalid parameters or data (the message names which and why).
        DivergenceError
            The loss became non-finite, or the parameters so large that a prediction
            could overflow (for a ranking loss: a score beyond float32's range); the
            model keeps the last good epoch. The message advises a smaller
            learning_rate, and names what else is unusually large for the fit, if
            anything: init_std, reg_factors or reg_bias, sample_weight, the ratings'
            scale.
        KeyboardInterrupt
            Re-raised after Ctrl-C; the model keeps the last completed epoch.

        Warns
        -----
        UserWarning
            ``early_stopping`` without ``eval_set``, when ``validation_fraction`` holds
            out fewer than 100 ratings (ranking: user-item pairs), too few for their
            metric to tell the epochs apart, or leaves fewer for training than it holds
            out. The fit goes on; raise or lower the fraction, or pass ``eval_set``.
        """
        with self._lock, self._fitting_checked("fit"):
            T.check_callback(callback)
            cfg = self._config()
            if threads_per_worker is not None:
                threads_per_worker = check_int("threads_per_worker", threads_per_worker)
                if threads_per_worker > MAX_THREADS:
                    raise ValueError(f"threads_per_worker must be None or an int from 1 to "
                                     f"{MAX_THREADS}; got {threads_per_worker}.")
            resume = check_bool("resume", resume)
            if hasattr(X, "__dask_graph__"):
                if sample_weight is not None:
                    raise ValueError("sample_weight is not supported with a Dask collection; "
                                     "compute the data and fit locally.")
                return self._fit_dask(X, cfg, client, eval_set, callback, checkpoint, resume,
                                      threads_per_worker)
            if client is not None:
                raise ValueError("client= is only for Dask collections; X is not one.")
            if threads_per_worker is not None:
                raise ValueError("threads_per_worker= is only for Dask collections; X is not "
                                 "one (set n_threads for a local fit).")
            # A local fit writes no checkpoint: accepting them would let the user believe
            # the progress is saved, and resume=True would start over.
            if checkpoint is not None or resume:
                raise ValueError("checkpoint= and resume= are only for Dask collections; X is "
                                 "not one (to save a local fit as it goes, call "
                                 "partial_fit(X, n_epochs=1) and save in a loop).")
            return self._fit_local(X, y, cfg, eval_set, callback, sample_weight)

    def _fit_local(self, X: Any, y: Any, cfg: FitConfig, eval_set: Any,
                   callback: Any, sample_weight: Any = None) -> MatrixFactorization:
        """fit on in-memory data, for cfg.n_epochs epochs (the caller holds the lock).
        Ctrl-C is handled by T.HeldInterrupt from the first read of X to the stored model."""
        with T.HeldInterrupt(stacklevel=4) as held:  # __exit__, _fit_local, fit, the caller
            users, items, ratings, extra = read_training(X, y, cfg, sample_weight, "fit",
                                                         held.stacklevel)
            refuse_constant(cfg, ratings)
            if isinstance(X, Handoff):  # its holder gave up the arrays: drop them with it
                X.clear()
            del X, y, sample_weight  # the caller's arrays are not ours to hold longer
            report = T.EpochReporter(cfg.verbose, callback)
            rank_eval = None
            if cfg.ranking:
                rank_eval = partial(R.rank_metric, name=cfg.eval_metric[0],
                                    k=cfg.eval_metric[1])
            cols = [users, items, ratings]  # fit_new empties it: our only references
            del users, items, ratings
            state, res = T.fit_new(cfg, cols, rng=fit_rng(self.random_state),
                                   eval_set=eval_set, on_epoch=report, rank_eval=rank_eval,
                                   interrupts=held, **_weights_or_dropped(cfg, extra))
            self._keep(state)
        return self._finish(cfg, res, 0, report, held)

    def partial_fit(self, X: Any, y: Any = None, n_epochs: int = 1, *,
                    sample_weight: Any = None, callback: Any = None) -> MatrixFactorization:
        """Continue training on (new) ratings or interactions for ``n_epochs`` epochs.

        Ratings of users or items the model has not seen grow the model: their rows
        start as in ``fit``. The global mean mu stays that of the first fit. An unfitted
        model is fitted from scratch for ``n_epochs`` epochs. ``X`` and
        ``sample_weight`` take the forms of :meth:`fit`. A ranking model never draws
        an item a user interacted with (in any earlier fit) as that user's negative.
        ``loss``, ``n_factors`` and ``biased`` must be those of the fitted model
        (``ValueError`` otherwise; call ``fit`` to start over).

        The schedule continues too: ``lr_decay`` counts these epochs after the model's
        ``n_epochs_`` (after 20 epochs at 0.3, the ranking losses' default, the rate is
        1/7 of ``learning_rate``, and new rows barely move), and AdaGrad's accumulators
        go on from where the last training left them (new rows start at 1). For
        regular updates with new users, prefer ``adagrad=True``, or
        ``set_params(lr_decay=0)`` first, and ``fold_in`` the new users afterwards
        (the guide's "Continuing training").
        """
        with self._lock, self._fitting_checked("partial_fit"):
            n_epochs = check_int("n_epochs", n_epochs)
            T.check_callback(callback)
            st = self._state
            cfg = self._config()
            if st is None:
                return self._fit_local(X, y, cfg.replace(n_epochs=n_epochs), None, callback,
                                       sample_weight)
            check_fitted_params(cfg, st, lambda name, fitted: "call fit to start over.")
            # the fitted model's dtype wins; early stopping does not apply to continued fits
            cfg = cfg.replace(dtype=st.user_factors.dtype, early_stopping=False)
            with T.HeldInterrupt(stacklevel=3) as held:  # __exit__, partial_fit, the caller
                users, items, ratings, extra = read_training(X, y, cfg, sample_weight,
                                                               "partial_fit", held.stacklevel,
                                                               only_dropped=True)
                del X, y, sample_weight
                report = T.EpochReporter(cfg.verbose, callback)
                state, res = T.fit_more(cfg, st, users, items, ratings,
                                        rng=continuation_rng(self.random_state, st.n_epochs),
                                        n_epochs=n_epochs, on_epoch=report,
                                        interrupts=held, **_weights_or_dropped(cfg, extra))
                self._keep(state)
                if state is not None and state.rating_range != st.rating_range:
                    _warn_widened(st.rating_range, state.rating_range, held.stacklevel)
            return self._finish(cfg, res, st.n_epochs, report, held)

    def _fit_dask(self, X: Any, cfg: FitConfig, client: Any, eval_set: Any, callback: Any,
                  checkpoint: str | None, resume: bool,
                  threads_per_worker: int | None = None) -> MatrixFactorization:
        if client is None:
            raise TypeError(
                "X is a Dask collection: pass client=distributed.Client(...) to train on the "
                "cluster, or call X.compute() to train locally.")
        # the callback's errors stop training as in a local fit (keeping the last epoch),
        # rather than passing as the cluster's failure or losing the completed epochs
        report = T.EpochReporter(False, callback)
        state, res, before = fit_dask(X, client, cfg, random_state=self.random_state,
                                      params=self.get_params(), eval_set=eval_set,
                                      callback=None if callback is None else report,
                                      checkpoint=checkpoint, resume=resume,
                                      threads_per_worker=threads_per_worker)
        if state is not None and state.n_epochs > 0:
            self._state = state
        T.raise_for(res, epochs_before=before, learning_rate=cfg.learning_rate,
                    checkpoint=checkpoint, callback_error=report.error, stacklevel=4)
        return self

    def _keep(self, state: FittedState | None) -> None:
        """Store what training produced (None: nothing changed)."""
        if state is not None:
            self._state = state

    def _finish(self, cfg: FitConfig, res: T.TrainResult, before: int,
                report: T.EpochReporter, held: T.HeldInterrupt) -> MatrixFactorization:
        """Raise as training ended (if it must), once its model is stored (_keep), from
        the method that left ``held``'s block: raise_for's warnings point one frame
        further than that block's, as raise_for is called from here."""
        T.raise_for(res, epochs_before=before, learning_rate=cfg.learning_rate,
                    callback_error=report.error, stacklevel=held.stacklevel + 1,
                    late_interrupt=held.pressed)
        if cfg.early_stopping and res.reason == "early_stopping" and cfg.verbose:
            print(f"early stopping: kept epoch {self._state.best_epoch}", flush=True)
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, X: Any) -> np.ndarray:
        """Predicted ratings (squared) or scores (ranking losses) for (user, item) pairs.

        Parameters
        ----------
        X : DataFrame, tuple, dict or array
            The same forms as ``fit`` (ratings, if present, are ignored), and ``(user,
            items)`` or ``(users, item)``: one id with a sequence of ids, for that user's
            (item's) scores of each (``predict((u, model.item_ids_))``: every item, in
            the order of ``item_ids_``, as LightFM's ``predict(user_id, item_ids)``).

        Returns
        -------
        ndarray of float64
            ``mu + b_i + b'_j + u_i . v_j``; for an unknown user or item, the terms of
            what is known (``mu + b'_j`` for a new user, ``mu`` when both are new).
            Clipped to the training rating range when ``clip``. A ranking model returns
            scores ``b'_j + u_i . v_j``: they order one user's items and are not ratings
            (no scale, never clipped).
        """
        st = self._require_fitted("predict")
        # dictionary-encoded ids (a Categorical, an Arrow column) stay encoded: looked up
        # once per distinct id
        users, items, _ = unpack(broadcast_pair(X), None, columns=columns_of(self), what="X",
                                 ratings="ignore", encoded=True)
        out = R.predict_rows(st, st.user_map.lookup("users", users),
                             st.item_map.lookup("items", items))
        if self.clip and st.loss == "squared":
            np.clip(out, st.rating_range[0], st.rating_range[1], out=out)
        return out

    def predict_one(self, user: Any, item: Any) -> float:
        """The prediction for one (user, item) pair, as a Python float.

        A convenience for a single pair (Surprise's ``predict(uid, iid)``); for many
        pairs, :meth:`predict` is vectorised and far faster. Unknown ids are served as
        in :meth:`predict`; check ``user in model.user_ids_`` first to tell them apart.

        Examples
        --------
        >>> from mfsgd.datasets import make_ratings
        >>> m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
        >>> m = m.fit(make_ratings(50, 30, 600, random_state=0, as_frame=False))
        >>> isinstance(m.predict_one(0, 1), float)
        True
        """
        for name, v in (("user", user), ("item", item)):
            if np.ndim(v) != 0 or loose_iterable(v) is not None:  # a set: 0-d to NumPy
                raise TypeError(f"predict_one takes one {name} id; got {type(v).__name__}. "
                                "Use predict for many pairs.")
        return float(self.predict(([user], [item]))[0])

    def score(self, X: Any, y: Any = None) -> float:
        """Coefficient of determination R^2 of the predictions; for a ranking loss, its
        ``eval_metric`` (default NDCG@10) of the given held-out interactions.

        This is scikit-learn's convention for regressors (``GridSearchCV`` uses ``score``
        when no ``scoring`` is given): higher is better, 1 is perfect, and it is *not* an
        error measure. To select by RMSE, pass
        ``scoring="neg_root_mean_squared_error"`` to scikit-learn's search tools. A
        ranking model's scores are not ratings, so R^2 would mean nothing: it is scored
        as :func:`mfsgd.metrics.ranking_scorer` does (each user's training items left
        out; with ``min_rating``, the held-out rows rated at least that are relevant).

        Returns
        -------
        float
            ``1 - SS_res / SS_tot`` over the given ratings; NaN when they are constant.
            For a ranking loss, the mean of ``eval_metric`` over the held-out users.

        Raises
        ------
        ValueError
            ``X`` holds no ratings (or, ranking, no relevant interaction).
        """
        st = self._require_fitted("score")
        if st.loss != "squared":
            from .metrics import ranking_scorer

            name, k = check_eval_metric(self.eval_metric, st.loss)
            return ranking_scorer(f"{name}@{k}", threshold=self.min_rating)(self, X, y)
        users, items, ratings = self._unpack(X, y, need_ratings=True)
        r = check_ratings(ratings, np.dtype(np.float64))
        if r.size == 0:  # R^2 of nothing is no number (as metrics.rmse refuses it)
            raise ValueError("X is empty; score needs at least one rating.")
        pred = self.predict((users, items))
        ss_res = float(np.sum((r - pred) ** 2))
        ss_tot = float(np.sum((r - r.mean()) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Save the fitted model to one self-describing file (see :func:`mfsgd.load`):
        written to a temporary file beside ``path`` and renamed over it, so a failed save
        leaves an existing file intact; a new file gets the mode ``open()`` would give it,
        a replaced one keeps its mode.

        The parameters are stored as they are now, so one changed by ``set_params``
        since the fit is checked first, as :func:`mfsgd.load` and ``fit`` would check it.

        Raises
        ------
        NotFittedError
            The model is not fitted.
        TypeError, ValueError
            A parameter is invalid (``load`` would refuse the file), or contradicts the
            fitted model: ``loss``, ``n_factors`` or ``biased`` other than the fit's
            (``partial_fit`` of the loaded model would refuse it). Raised before the file
            is touched: an existing file is kept as it was.
        """
        st = self._require_fitted("save")
        params = self.get_params()
        try:  # what load will run on the stored parameters
            cfg = self._from_stored_params(stored_params(params))._config()
        except (TypeError, ValueError, OverflowError) as e:
            kind = TypeError if isinstance(e, TypeError) else ValueError
            raise kind(f"save: {e} Nothing was written: mfsgd.load would refuse a file with "
                       "this value; fix it with set_params first.") from None
        check_fitted_params(cfg, st, lambda name, fitted: (
            f"set_params({name}={fitted!r}) to save this model (a changed {name} needs a "
            "new fit); nothing was written."), prefix="save: ")
        write_model(path, st, params)

    @classmethod
    def load(cls, path: Any, *, mmap: bool = False) -> MatrixFactorization:
        """Load a model saved by :meth:`save` (never unpickles; every array checksummed).

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`.
        mmap : bool, default False
            Map the file into memory instead of reading it: the model's arrays are then
            read-only views of the file's pages, which every process loading the same file
            shares through the operating system's page cache. For a pre-fork server (one
            model, many worker processes) the factors then take memory once, not once per
            worker. The model behaves exactly as a read one: ``fit``, ``partial_fit`` and
            ``fold_in`` make new arrays and never write the file. Every array is still
            checksummed, so the load reads the whole file once.

            Mapped are the arrays stored in this machine's byte order, which includes the
            factor matrices when ``n_factors`` is a multiple of 16 (float32) or 8
            (float64); other factor matrices are copied into the kernel's padded rows.
            Until its arrays are freed, a mapped model holds the mapping (and, before
            Python 3.13, an open file descriptor). Replace a mapped file only as
            :meth:`save` does, by renaming a new file over
            it (the mapping keeps the old one); a file truncated or rewritten in place
            under a mapping can crash the process (SIGBUS). Where the file cannot be
            mapped, it is read as with ``mmap=False``.

        Raises
        ------
        ModelFileError
            The file is not an mfsgd model, is damaged, or comes from a newer format.
        FileNotFoundError, IsADirectoryError, PermissionError
            The file cannot be opened.
        """
        if not isinstance(mmap, bool | np.bool_):
            raise TypeError(f"mmap must be True or False; got {type(mmap).__name__}.")
        model, state, _ = read_model(path, cls._from_stored_params, mmap_arrays=bool(mmap))
        # The arrays (checksummed) decide, not the stored parameters, which may lack them
        # or disagree: partial_fit would refuse a model whose n_factors is not its own.
        model.dtype = state.user_factors.dtype.type
        model.n_factors = state.n_factors
        model._state = state
        return model

    @classmethod
    def _from_stored_params(cls, params: dict[str, Any]) -> MatrixFactorization:
        """A new estimator with the stored parameters (unknown names, from other versions,
        are skipped), checked as fit would check them."""
        model = cls()
        known = set(model.get_params())
        model.set_params(**{k: v for k, v in params.items() if k in known})
        make_config(model.get_params())
        fit_rng(model.random_state)  # partial_fit seeds from it: it must be valid
        return model


def check_fitted_params(cfg: FitConfig, st: FittedState, then: Callable[[str, Any], str],
                        prefix: str = "") -> None:
    """Refuse parameters that contradict the fitted model, in partial_fit and save
    (``then(name, fitted value)`` ends the message, ``prefix`` starts it). loss,
    n_factors and biased are part of it: they make its arrays and what predict computes
    (mu + b_i + b'_j only when biased). nonnegative, adagrad and the rest only steer
    training, so a change applies in full to the epochs that follow; a different dtype
    gives way to the fitted one."""
    for name, now, fitted in (("loss", cfg.loss, st.loss),
                              ("n_factors", cfg.n_factors, st.n_factors),
                              ("biased", cfg.biased, st.biased)):
        if now != fitted:
            raise ValueError(f"{prefix}{name} is {now!r} but the fitted model was trained "
                             f"with {name}={fitted!r}; {then(name, fitted)}")


def _weights_or_dropped(cfg: FitConfig, extra: Any) -> dict[str, Any]:
    """read_training's fourth value, as fit_new / fit_more take it: the squared loss's
    weights, or a ranking loss's rows that min_rating dropped (its weights are the
    ratings column)."""
    return {"dropped": extra} if cfg.ranking else {"weights": extra}
