"""MatrixFactorization: the estimator (fit, partial_fit, predict, save)."""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import _recommend as R
from . import _training as T
from ._config import FitConfig, continuation_rng, fit_rng, make_config
from ._dask import fit_dask
from ._data import columns_of, eval_indices, unpack
from ._idmap import IdMap
from ._state import FittedState, grown, init_rows
from ._validation import check_bool, check_int, check_ratings
from .exceptions import (
    NotFittedError,
)
from .persistence import read_model, write_model

__all__ = ["MatrixFactorization"]


_FITTED_ATTRS = {
    "global_mean_": ("global_mean", "Global mean mu of the training ratings."),
    "user_bias_": ("user_bias", "User biases b_i, shape (n_users,)."),
    "item_bias_": ("item_bias", "Item biases b'_j, shape (n_items,)."),
    "history_": ("history", "Per-epoch records: epoch, train_rmse, val_rmse, learning_rate, "
                            "seconds."),
    "n_epochs_": ("n_epochs", "Number of epochs run in total."),
    "best_epoch_": ("best_epoch", "Epoch whose parameters were kept by early stopping."),
    "rating_range_": ("rating_range", "(min, max) of the training ratings (used by clip)."),
    "n_blocks_": ("n_blocks", "Blocks per side of the training grid actually used."),
}


def _factor_property(attr: str, which: str, doc: str) -> property:
    def get(self: MatrixFactorization) -> Any:
        return self._require_fitted(attr).factors(which)

    return property(get, doc=doc)


def _fitted_property(attr: str, field_name: str, doc: str) -> property:
    def get(self: MatrixFactorization) -> Any:
        return getattr(self._require_fitted(attr), field_name)

    return property(get, doc=doc)


class MatrixFactorization:
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
        Number of latent factors k.
    n_epochs : int, default 20
        Passes over the training ratings.
    learning_rate : float, default 0.005
        SGD step alpha.
    reg_factors : float, default 0.02
        lambda1, L2 regularisation of the factors.
    reg_bias : float, default 0.02
        lambda2, L2 regularisation of the biases.
    init_std : float, default 0.1
        Factors start as N(0, init_std^2) (absolute values when ``nonnegative``);
        biases start at 0.
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
        of the ratings held out from training.
    validation_fraction : float, default 0.1
        Share of ratings held out for early stopping when no ``eval_set`` is given.
    n_iter_no_change : int, default 3
        Patience of early stopping, in epochs.
    tol : float, default 1e-4
        Minimum improvement of the validation RMSE that resets the patience.
    clip : bool, default True
        Clip predictions to the range of the training ratings.
    verbose : bool, default False
        Print one line per epoch.
    n_threads : int, default 1
        Threads running the kernel (stratified block SGD; see ``n_blocks``).
    n_blocks : int or None, default None
        Blocks per side of the user x item grid of parallel work (1 to 255). None means
        1 for one thread and 2 x ``n_threads`` otherwise; fix it to get the same model
        for any thread count. (Cache blocking happens inside blocks, in cells sized
        from the model, whatever ``n_blocks`` is.)
    lr_decay : float, default 0.0
        Per-epoch decay: epoch e (from 0) uses ``learning_rate / (1 + lr_decay * e)``.
    adagrad : bool, default False
        Adaptive rates, one AdaGrad accumulator per user and per item row (as LibMF):
        row u moves by ``learning_rate / sqrt(G_u)`` times its gradient, and ``G_u``
        (starting at 1) grows by the mean squared gradient of the row's values. The
        base rate wants to be larger than for plain SGD (try 0.05 to 0.1). The
        accumulators restart with every ``fit`` or ``partial_fit`` call.
    biased : bool, default True
        False fits the plain model ``r^ = u_i . v_j`` with no mu and no biases.
    nonnegative : bool, default False
        Projected SGD keeping every factor >= 0 (non-negative MF).
    user_col, item_col, rating_col : str, default "user", "item", "rating"
        Column names read from a DataFrame or dict input.

    Attributes
    ----------
    global_mean_, user_factors_, item_factors_, user_bias_, item_bias_ : fitted parameters
    user_ids_, item_ids_ : ndarray
        Raw ids; row k of the factor matrices belongs to ``user_ids_[k]``.
    history_ : list of dict
        One record per epoch: ``epoch``, ``train_rmse`` (as seen during the pass),
        ``val_rmse`` (with a validation set), ``learning_rate``, ``seconds``; with
        ``early_stopping``, ``best: True`` marks each epoch that improved the validation
        RMSE by more than ``tol`` (the last one marked is the epoch kept, ``best_epoch_``).
    n_epochs_ : int
        Epochs run (fewer than ``n_epochs`` after early stopping or an interruption).

    Notes
    -----
    Ctrl-C during ``fit`` stops within one kernel call (about 2^20 ratings: some 25 to
    50 ms at k = 64 on one core, longer for larger k), keeps the last
    completed epoch in the model (when at least one completed), warns
    ``TrainingInterrupted`` and re-raises ``KeyboardInterrupt``: a script stops, and in a
    notebook the model holds the epochs done. Divergence (non-finite loss) restores
    the last finite epoch and raises ``DivergenceError``.

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
        n_epochs: int = 20,
        learning_rate: float = 0.005,
        reg_factors: float = 0.02,
        reg_bias: float = 0.02,
        init_std: float = 0.1,
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
        lr_decay: float = 0.0,
        adagrad: bool = False,
        biased: bool = True,
        nonnegative: bool = False,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
    ) -> None:
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.reg_factors = reg_factors
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.clip = clip
        self.verbose = verbose
        self.n_threads = n_threads
        self.n_blocks = n_blocks
        self.lr_decay = lr_decay
        self.adagrad = adagrad
        self.biased = biased
        self.nonnegative = nonnegative
        self.user_col = user_col
        self.item_col = item_col
        self.rating_col = rating_col
        self._lock = threading.RLock()
        self._state: FittedState | None = None

    # ------------------------------------------------------------------ params
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> MatrixFactorization:
        """Set hyper-parameters by name; checked at the next ``fit``."""
        valid = set(self._get_param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for MatrixFactorization; valid "
                                 f"parameters are {sorted(valid)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for k, v in self.get_params().items():
            d = defaults.get(k)
            same = v is d or (type(v) is type(d) and v == d)
            if isinstance(v, np.ndarray) or not same:
                changed.append(f"{k}={v!r}")
        return f"MatrixFactorization({', '.join(changed)})"

    def _config(self) -> FitConfig:
        return make_config(self.get_params())

    # ------------------------------------------------------------------ state
    def _require_fitted(self, what: str = "this method") -> FittedState:
        st = self.__dict__.get("_state")
        if st is None:
            if what.endswith("_"):  # a fitted attribute
                msg = f"not fitted yet, so it has no {what}; call fit first."
            else:
                msg = f"not fitted yet; call fit before {what}."
            raise NotFittedError(f"This MatrixFactorization instance is {msg}")
        return st

    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn >= 1.6 (imported lazily: scikit-learn is optional)."""
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags(), non_deterministic=self.random_state is None)

    def __sklearn_is_fitted__(self) -> bool:
        return self.__dict__.get("_state") is not None

    @property
    def user_ids_(self) -> np.ndarray:
        """Raw user ids; row k of ``user_factors_`` belongs to ``user_ids_[k]``."""
        return self._require_fitted("user_ids_").user_map.ids

    @property
    def item_ids_(self) -> np.ndarray:
        """Raw item ids; row k of ``item_factors_`` belongs to ``item_ids_[k]``."""
        return self._require_fitted("item_ids_").item_map.ids

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ data
    def _unpack(self, X: Any, y: Any, *, need_ratings: bool, what: str = "X"):
        return unpack(X, y, columns=columns_of(self), what=what,
                      ratings="require" if need_ratings else "ignore")

    @staticmethod
    def _init_rows(rng: np.random.Generator, n: int, cfg: FitConfig) -> np.ndarray:
        return init_rows(rng, n, cfg.n_factors, cfg.dtype, cfg.init_std, cfg.nonnegative)

    def _eval_indices(self, eval_set: Any, umap: IdMap, imap: IdMap, dtype: np.dtype):
        return eval_indices(eval_set, columns=columns_of(self), user_map=umap, item_map=imap,
                            dtype=dtype)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, eval_set: Any = None,
            callback: Any = None, client: Any = None,
            checkpoint: str | None = None, resume: bool = False) -> MatrixFactorization:
        """Fit the model to ratings.

        Parameters
        ----------
        X : DataFrame, tuple, dict or array
            A DataFrame (or dict) with the user, item and rating columns; a tuple
            ``(users, items, ratings)`` of array-likes; or an ``(n, 2)`` array of
            (user, item) ids with the ratings in ``y``. Ids may be any integers or
            strings (labels, not indices).
        y : array-like, optional
            Ratings when ``X`` holds only ids.
        eval_set : same forms as X, optional
            Validation ratings: their RMSE is recorded per epoch in ``history_`` and,
            with ``early_stopping``, drives it.
        callback : callable, optional
            Called after every epoch with that epoch's ``history_`` record (a dict), e.g.
            to drive a progress bar. An exception it raises stops training like Ctrl-C
            does, keeping the last completed epoch. With a Dask collection it is called
            after every sub-epoch with ``{"epoch", "stratum", "n_strata"}``.
        client : distributed.Client, optional
            Required when ``X`` is a Dask DataFrame: trains by distributed stratified SGD
            on that cluster (see the README, "Beyond one machine").
        checkpoint : str, optional
            With a Dask collection: path or fsspec URL where the parameters are written
            after every epoch.
        resume : bool, default False
            With ``checkpoint``: start from the parameters, epoch and random-generator
            state stored there; the continued run gives the same model as one that was
            never interrupted.

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Invalid parameters or data (the message names which and why).
        DivergenceError
            The loss became non-finite; the model keeps the last finite epoch.
        KeyboardInterrupt
            Re-raised after Ctrl-C; the model keeps the last completed epoch.
        """
        with self._lock:
            cfg = self._config()
            if hasattr(X, "__dask_graph__"):
                return self._fit_dask(X, cfg, client, eval_set, callback, checkpoint, resume)
            if client is not None:
                raise ValueError("client= is only for Dask collections; X is not one.")
            return self._fit_local(X, y, cfg, eval_set, callback)

    def _fit_local(self, X: Any, y: Any, cfg: FitConfig, eval_set: Any,
                   callback: Any) -> MatrixFactorization:
        """fit on in-memory data, for cfg.n_epochs epochs (the caller holds the lock)."""
        users, items, ratings = self._unpack(X, y, need_ratings=True)
        ratings = check_ratings(ratings, cfg.dtype)
        if ratings.size == 0:
            raise ValueError("fit needs at least one rating; got an empty input.")
        umap, uidx = IdMap.fit("users", users)
        imap, iidx = IdMap.fit("items", items)
        rng = fit_rng(self.random_state)
        val, held = None, None
        if eval_set is not None:
            val = self._eval_indices(eval_set, umap, imap, cfg.dtype)
        elif cfg.early_stopping:
            tr, va = T.hold_out(ratings.size, cfg.validation_fraction, rng)
            val = (uidx[va], iidx[va], ratings[va])
            held = val[:2]  # held-out ratings still count as seen by their users
            uidx, iidx, ratings = uidx[tr], iidx[tr], ratings[tr]
        mean = float(np.mean(ratings, dtype=np.float64))

        def make_params() -> T.Params:
            return T.Params(
                self._init_rows(rng, len(umap), cfg), self._init_rows(rng, len(imap), cfg),
                np.zeros(len(umap), dtype=cfg.dtype), np.zeros(len(imap), dtype=cfg.dtype))

        rr = (float(ratings.min()), float(ratings.max()))
        base = FittedState(mean, None, None, None, None, umap, imap, rr,  # type: ignore[arg-type]
                           cfg.biased, cfg.n_factors)
        del users, items, X, y  # the caller's arrays are not ours to hold longer
        triples = [uidx, iidx, ratings]
        del uidx, iidx, ratings  # _train frees them once the layout has its copy
        return self._train(cfg, base, make_params, triples, rng, val, cfg.n_epochs,
                           epoch_offset=0, history=[], callback=callback, seen_extra=held)

    def partial_fit(self, X: Any, y: Any = None, n_epochs: int = 1, *,
                    callback: Any = None) -> MatrixFactorization:
        """Continue training on (new) ratings for ``n_epochs`` epochs.

        Ratings of users or items the model has not seen grow the model: their rows
        start as in ``fit``. The global mean mu stays that of the first fit. An unfitted
        model is fitted from scratch for ``n_epochs`` epochs.
        """
        with self._lock:
            n_epochs = check_int("n_epochs", n_epochs)
            st = self._state
            cfg = self._config()
            if st is None:
                return self._fit_local(X, y, cfg.replace(n_epochs=n_epochs), None, callback)
            # the fitted model's dtype wins; early stopping does not apply to continued fits
            cfg = cfg.replace(dtype=st.user_factors.dtype, early_stopping=False)
            if cfg.n_factors != st.n_factors:
                raise ValueError(f"n_factors is {cfg.n_factors} but the fitted model has "
                                 f"{st.n_factors}; call fit to start over.")
            users, items, ratings = self._unpack(X, y, need_ratings=True)
            ratings = check_ratings(ratings, cfg.dtype)
            if ratings.size == 0:
                raise ValueError("partial_fit needs at least one rating; got an empty input.")
            umap, uidx = st.user_map.extended("users", users)
            imap, iidx = st.item_map.extended("items", items)
            rng = continuation_rng(self.random_state, st.n_epochs)
            grow_u, grow_i = len(umap) - len(st.user_map), len(imap) - len(st.item_map)
            def make_params() -> T.Params:
                return T.Params(
                    grown(st.user_factors, self._init_rows(rng, grow_u, cfg)),
                    grown(st.item_factors, self._init_rows(rng, grow_i, cfg)),
                    grown(st.user_bias, grow_u), grown(st.item_bias, grow_i))

            rr = (min(st.rating_range[0], float(ratings.min())),
                  max(st.rating_range[1], float(ratings.max())))
            base = replace(st, user_map=umap, item_map=imap, rating_range=rr)
            triples = [uidx, iidx, ratings]
            del uidx, iidx, ratings
            return self._train(cfg, base, make_params, triples, rng, None, n_epochs,
                               epoch_offset=st.n_epochs, history=list(st.history),
                               callback=callback)

    def _fit_dask(self, X: Any, cfg: FitConfig, client: Any, eval_set: Any, callback: Any,
                  checkpoint: str | None, resume: bool) -> MatrixFactorization:
        if client is None:
            raise TypeError(
                "X is a Dask collection: pass client=distributed.Client(...) to train on the "
                "cluster, or call X.compute() to train locally.")
        state, res, before = fit_dask(X, client, cfg, random_state=self.random_state,
                                      params=self.get_params(), eval_set=eval_set,
                                      callback=callback, checkpoint=checkpoint, resume=resume)
        if state is not None and state.n_epochs > 0:
            self._state = state
        T.raise_for(res, epochs_before=before, learning_rate=self.learning_rate,
                    checkpoint=checkpoint, stacklevel=4)
        return self

    def _train(self, cfg: FitConfig, base: FittedState, make_params: Callable[[], T.Params],
               triples: list, rng, val, n_epochs: int, *, epoch_offset: int, history: list,
               callback: Any = None, seen_extra: tuple | None = None) -> MatrixFactorization:
        failure: list[BaseException] = []

        def report(row: dict[str, Any]) -> None:
            if cfg.verbose:
                extra = f"  val_rmse {row['val_rmse']:.4f}" if "val_rmse" in row else ""
                print(f"epoch {row['epoch']:>3}  train_rmse {row['train_rmse']:.4f}{extra}"
                      f"  {row['seconds']:.3f}s", flush=True)
            if callback is not None:
                try:
                    callback(row)
                except BaseException as e:  # stop like Ctrl-C, then re-raise it
                    failure.append(e)
                    raise KeyboardInterrupt from e

        state, res = T.train_local(cfg, base, make_params, triples, rng, val, n_epochs,
                                   epoch_offset=epoch_offset, history=history,
                                   on_epoch=report, seen_extra=seen_extra)
        if state is not None:
            self._state = state
        T.raise_for(res, epochs_before=epoch_offset, learning_rate=self.learning_rate,
                    callback_error=failure[0] if failure else None, stacklevel=5)
        if cfg.early_stopping and res.reason == "early_stopping" and cfg.verbose:
            print(f"early stopping: kept epoch {state.best_epoch}", flush=True)
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, X: Any) -> np.ndarray:
        """Predicted ratings for (user, item) pairs.

        Parameters
        ----------
        X : DataFrame, tuple, dict or array
            The same forms as ``fit`` (ratings, if present, are ignored).

        Returns
        -------
        ndarray of float64
            ``mu + b_i + b'_j + u_i . v_j``; for an unknown user or item, the terms of
            what is known (``mu + b'_j`` for a new user, ``mu`` when both are new).
            Clipped to the training rating range when ``clip``.
        """
        st = self._require_fitted("predict")
        users, items, _ = self._unpack(X, None, need_ratings=False)
        out = R.predict_rows(st, st.user_map.lookup("users", users),
                             st.item_map.lookup("items", items))
        if self.clip:
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
            if np.ndim(v) != 0:
                raise TypeError(f"predict_one takes one {name} id; got {type(v).__name__}. "
                                "Use predict for many pairs.")
        return float(self.predict(([user], [item]))[0])

    def score(self, X: Any, y: Any = None) -> float:
        """Coefficient of determination R^2 of the predictions.

        This is scikit-learn's convention for regressors (``GridSearchCV`` uses ``score``
        when no ``scoring`` is given): higher is better, 1 is perfect, and it is *not* an
        error measure. To select by RMSE, pass
        ``scoring="neg_root_mean_squared_error"`` to scikit-learn's search tools.

        Returns
        -------
        float
            ``1 - SS_res / SS_tot`` over the given ratings; NaN when they are constant.
        """
        users, items, ratings = self._unpack(X, y, need_ratings=True)
        r = check_ratings(ratings, np.dtype(np.float64))
        pred = self.predict((users, items))
        ss_res = float(np.sum((r - pred) ** 2))
        ss_tot = float(np.sum((r - r.mean()) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan

    # ------------------------------------------------------------------ recommend
    def recommend(self, user: Any, n: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for one user, best first.

        Parameters
        ----------
        user : id
            A user id. An unknown user gets the items ranked by ``mu + b'_j`` (popularity
            aware fallback; with ``biased=False`` every item scores the global mean).
        n : int, default 10
            How many items (fewer when fewer candidates remain).
        exclude_seen : bool, default True
            Leave out the items the user rated in training.
        items : array-like of ids, optional
            Candidate items to rank (a whitelist; default: all items of the model). Every
            candidate must be known to the model: an item never seen in training has no
            factors to rank it by, so unknown ids raise ``ValueError`` naming them.
        exclude_items : array-like of ids, optional
            Items never to recommend (a blacklist, applied on top of ``exclude_seen`` and
            ``items``), e.g. out-of-stock products. Ids the model does not know are
            ignored: they could not be recommended anyway.

        Returns
        -------
        item_ids : ndarray
        scores : ndarray of float64
            Predicted ratings, unclipped (clipping would create ties).

        Raises
        ------
        ValueError
            If ``items`` holds ids the model does not know.

        Examples
        --------
        >>> from mfsgd.datasets import make_ratings
        >>> m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
        >>> m = m.fit(make_ratings(50, 30, 600, random_state=0, as_frame=False))
        >>> ids, scores = m.recommend(0, n=5)
        >>> len(ids), bool(scores[0] >= scores[-1])
        (5, True)
        """
        ids, scores = self._recommend_many("recommend", [user], n, exclude_seen, items,
                                           exclude_items)
        keep = np.isfinite(scores[0])
        return ids[0][keep], scores[0][keep]

    def recommend_all(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True,
                      items: Any = None,
                      exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for many users at once: blocked matrix products and a compiled
        top-n scan, in memory bounded by about 64 MiB of scores (float32) whatever the
        number of users.

        Parameters
        ----------
        users : array-like of ids, optional
            Default: every user of the model, in ``user_ids_`` order.
        n, exclude_seen, items, exclude_items
            As in :meth:`recommend` (``exclude_items`` applies to every user).

        Returns
        -------
        item_ids, scores : ndarray of shape (len(users), min(n, n_candidates))
            Row k belongs to ``users[k]``. Where a user has fewer unseen candidates than
            n, the remaining slots have score ``-inf``.
        """
        return self._recommend_many("recommend_all", users, n, exclude_seen, items,
                                    exclude_items)

    def _recommend_many(self, what: str, users: Any, n: int, exclude_seen: bool,
                        items: Any, exclude_items: Any) -> tuple[np.ndarray, np.ndarray]:
        st = self._require_fitted(what)
        return R.recommend(st, users, check_int("n", n),
                           check_bool("exclude_seen", exclude_seen), items, exclude_items)

    def similar_items(self, item: Any, n: int = 10, *,
                      min_support: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The n items whose factor vectors are most cosine-similar to ``item``'s.

        Parameters
        ----------
        item : id
            A known item.
        n : int, default 10
            How many neighbours (fewer when fewer items qualify).
        min_support : int, default 5
            Only items with at least this many training ratings are returned. An item
            rated once or twice keeps factors close to their random start, and such
            near-random vectors crowd a cosine list on real data; 1 returns every item.

        Returns
        -------
        item_ids : ndarray
            Best first; ``item`` itself is never included.
        similarities : ndarray of float64
            Cosine similarities of the factor vectors.
        """
        return self._similar("item", item, n, min_support)

    def similar_users(self, user: Any, n: int = 10, *,
                      min_support: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The n users most cosine-similar to ``user`` by factor vectors (itself excluded);
        only users with at least ``min_support`` training ratings (see
        :meth:`similar_items`). Returns (user_ids, similarities)."""
        return self._similar("user", user, n, min_support)

    def _similar(self, side: str, raw: Any, n: int,
                 min_support: int) -> tuple[np.ndarray, np.ndarray]:
        st = self._require_fitted(f"similar_{side}s")
        return R.similar_ids(st, side, raw, check_int("n", n),
                             check_int("min_support", min_support, low=0))

    def fold_in(self, X: Any, y: Any = None, *, side: str = "user") -> MatrixFactorization:
        """Add (or recompute) users from a few ratings, holding the item side fixed.

        Each user of ``X`` gets the bias and factor vector minimising that user's part
        of the training loss, ``sum_j (r_uj - mu - b_u - b'_j - u . v_j)^2 + n_u (reg_factors
        |u|^2 + reg_bias b_u^2)``, by a closed-form ridge solve: milliseconds, no refit.
        New users are appended; an existing user's row is recomputed from the ratings
        given (pass all of them). Ratings of items unknown to the model are ignored; a
        user left with none raises ``ValueError``. With
        ``side="item"`` the same is done for items, holding the users fixed.

        Parameters
        ----------
        X, y
            Ratings in any form ``fit`` accepts.
        side : {"user", "item"}
            Which side to fold in.

        Returns
        -------
        self
        """
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item'; got {side!r}.")
        with self._lock:
            st = self._require_fitted("fold_in")
            users, items, ratings = self._unpack(X, y, need_ratings=True)
            r = check_ratings(ratings, np.dtype(np.float64))
            if r.size == 0:
                raise ValueError("fold_in needs at least one rating; got an empty input.")
            own, other = (users, items) if side == "user" else (items, users)
            self._state = R.fold_in(st, own, other, r, side=side, reg_factors=self.reg_factors,
                                    reg_bias=self.reg_bias)
            return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Save the fitted model to one self-describing file (see :func:`mfsgd.load`):
        written to a temporary file beside ``path`` and renamed over it, so a failed save
        leaves an existing file intact; a new file gets the mode ``open()`` would give it,
        a replaced one keeps its mode."""
        write_model(path, self._require_fitted("save"), self.get_params())

    @classmethod
    def load(cls, path: Any) -> MatrixFactorization:
        """Load a model saved by :meth:`save` (never unpickles; every array checksummed).

        Raises
        ------
        ModelFileError
            The file is not an mfsgd model, is damaged, or comes from a newer format.
        FileNotFoundError, IsADirectoryError, PermissionError
            The file cannot be opened.
        """
        model, state, _ = read_model(path, cls._from_stored_params)
        model.dtype = state.user_factors.dtype.type
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


for _attr, (_field, _doc) in _FITTED_ATTRS.items():
    setattr(MatrixFactorization, _attr, _fitted_property(_attr, _field, _doc))
MatrixFactorization.user_factors_ = _factor_property(
    "user_factors_", "user_factors", "User factors u_i, shape (n_users, n_factors).")
MatrixFactorization.item_factors_ = _factor_property(
    "item_factors_", "item_factors", "Item factors v_j, shape (n_items, n_factors).")
del _attr, _field, _doc
