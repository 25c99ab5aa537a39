"""The recommending half of the estimator's API: top-n lists, neighbours and fold-in.

``RecommenderMixin`` turns ids into rows, validates arguments and swaps the fitted state;
the work itself (scoring, exclusions, top-n, similarity, the ridge solves of fold-in) is
in ``_recommend``. The estimator class provides ``_require_fitted``, ``_unpack``,
``_config``, ``_lock`` and the ``reg_factors`` / ``reg_bias`` parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _recommend as R
from ._data import columns_of, split_low, unpack
from ._idmap import id_list
from ._training import record_low
from ._validation import check_bool, check_int, check_ratings, check_real_or_none, loose_iterable


def _one_id(what: str, raw: Any, hint: str) -> Any:
    """``raw`` when it is one id; ValueError when it is a sequence, an array, a set or a
    generator (the look-up of ``[raw]`` would say "got shape (1, 1)" or "got set
    objects") or a missing value."""
    if isinstance(raw, (list, tuple)) or (not isinstance(raw, (str, bytes))
                                          and np.ndim(raw) > 0):
        raise ValueError(f"{what} must be one id, not a sequence; got {type(raw).__name__} "
                         f"of length {len(raw)}.{hint}")
    kind = loose_iterable(raw)
    if kind is not None:
        raise ValueError(f"{what} must be one id; got {kind}.{hint}")
    if raw is None or (isinstance(raw, (float, np.floating)) and raw != raw):
        raise ValueError(f"{what} must be an id; got {raw!r}.")
    return raw


def _many_ids(raw: Any) -> bool:
    """Is ``raw`` several ids (a list, tuple, range, Series or array of one dimension or
    more; a set, dict or generator, which ``id_list`` refuses with a message), not one
    id? A str or bytes is one id."""
    if isinstance(raw, (str, bytes)):
        return False
    return isinstance(raw, (list, tuple, range)) or np.ndim(raw) > 0 or \
        loose_iterable(raw) is not None


class RecommenderMixin:
    """recommend, recommend_all, similar_items, similar_users and fold_in."""

    def recommend(self, user: Any, n: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for one user, best first.

        Parameters
        ----------
        user : id
            A user id. An unknown user gets the most popular items: those with the most
            training interactions (``item_counts_``), the counts as scores. So does a
            user known only from rows rated below ``min_rating`` (``user_counts_`` 0),
            without the items they rated.
        n : int, default 10
            How many items (fewer when fewer candidates remain).
        exclude_seen : bool, default True
            Leave out the items the user rated in training.
        items : list, set or array-like of ids, optional
            Candidate items to rank (a whitelist; default: all items of the model). Any
            iterable of ids is taken (a set, dict keys, a generator; a str is one id,
            not a list): a repeated id counts once, and equal scores keep the
            candidates' order (a set's ids are sorted first). Every candidate must be
            known to the model: an item never seen in training has no factors to rank
            it by, so unknown ids raise ``ValueError`` naming them.
        exclude_items : list, set or array-like of ids, optional
            Items never to recommend (a blacklist, applied on top of ``exclude_seen`` and
            ``items``), e.g. out-of-stock products; any iterable of ids, as ``items``.
            Ids the model does not know are ignored: they could not be recommended
            anyway (ids of the other type too, e.g. strings on an integer-id model).

        Returns
        -------
        item_ids : ndarray
        scores : ndarray of float64
            Predicted ratings, unclipped (clipping would create ties); scores for a
            ranking model.

        Raises
        ------
        ValueError
            If ``items`` holds ids the model does not know, or ``items`` or
            ``exclude_items`` is not a collection of ids (one id, a dict, a 2-D array).

        Examples
        --------
        >>> from mfsgd.datasets import make_ratings
        >>> from mfsgd import MatrixFactorization
        >>> m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
        >>> m = m.fit(make_ratings(50, 30, 600, random_state=0, as_frame=False))
        >>> ids, scores = m.recommend(0, n=5)
        >>> len(ids), bool(scores[0] >= scores[-1])
        (5, True)
        """
        user = _one_id("user", user, " For several users use recommend_all.")
        ids, scores = self._recommend_many("recommend", [user], n, exclude_seen, items,
                                           exclude_items)
        keep = np.isfinite(scores[0])
        return ids[0][keep], scores[0][keep]

    def known_users(self, users: Any) -> Any:
        """Whether :meth:`recommend` personalises each user's list.

        True where the model has factors for the user; False for an id never seen in
        training and for one known only from rows rated below ``min_rating``
        (``user_counts_`` 0): :meth:`recommend`, :meth:`recommend_all` and the metrics
        serve both the most popular items (``item_counts_``). A service can log or route
        them (e.g. to its own cold-start list) without scanning ``user_ids_``.

        Parameters
        ----------
        users : id, or list or 1-D array of ids

        Returns
        -------
        bool for one id; ndarray of bool, one per id given, for a list.

        Raises
        ------
        TypeError
            Ids of the other type than the model's (strings on an integer-id model), as
            :meth:`recommend` raises for them.

        Examples
        --------
        >>> from mfsgd.datasets import make_ratings
        >>> from mfsgd import MatrixFactorization
        >>> m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
        >>> m = m.fit(make_ratings(50, 30, 600, random_state=0, as_frame=False))
        >>> m.known_users(0), m.known_users([0, 10**9]).tolist()
        (True, [True, False])
        """
        return self._known("user", users)

    def known_items(self, items: Any) -> Any:
        """Whether the model knows each item (has factors for it): the ids that
        ``items=`` of :meth:`recommend` accepts, and that :meth:`recommend` can return.
        As :meth:`known_users`: bool for one id, ndarray of bool for a list."""
        return self._known("item", items)

    def _known(self, side: str, raw: Any) -> Any:
        st = self._require_fitted(f"known_{side}s")
        many = _many_ids(raw)
        ids = id_list(f"{side}s", raw if many else [_one_id(side, raw, "")], ordered=True)
        rows = (st.user_map if side == "user" else st.item_map).lookup(f"{side}s", ids)
        known = ~st.idle(rows) if side == "user" else rows >= 0
        return known if many else bool(known[0])

    def recommend_all(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True,
                      items: Any = None,
                      exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for many users at once: blocked matrix products and a compiled
        top-n scan, in memory bounded by about 64 MiB of scores (float32) whatever the
        number of users.

        Parameters
        ----------
        users : list or 1-D array of ids, optional
            One row of the result each (repeats allowed). A set or a generator raises
            ``ValueError``: it has no order to give the rows (pass ``sorted(users)``).
            Default: every user of the model, in ``user_ids_`` order.
        n, exclude_seen, items, exclude_items
            As in :meth:`recommend` (``exclude_items`` applies to every user; ``items``
            and ``exclude_items`` may be sets).

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

    def similar_items(self, item: Any, n: int = 10, *, min_support: int = 5,
                      items: Any = None,
                      exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The n items whose factor vectors are most cosine-similar to ``item``'s, for one
        item or for many at once.

        Parameters
        ----------
        item : id, or list or 1-D array of ids
            A known item, or several (a list, tuple, range, Series or 1-D array: one row
            of the result each, repeats allowed). A set or a generator raises
            ``ValueError``, as it has no order to give the rows (pass ``sorted(...)``).
            Unknown ids raise ``ValueError`` naming them.
        n : int, default 10
            How many neighbours (fewer when fewer items qualify).
        min_support : int, default 5
            Only items with at least this many training ratings are returned. An item
            rated once or twice keeps factors close to their random start, and such
            near-random vectors crowd a cosine list on real data; 1 returns every item.
            Applies within ``items`` too.
        items : list, set or array-like of ids, optional
            Candidate neighbours (a whitelist; default: all items), as in
            :meth:`recommend`: any iterable of ids, a repeated id counts once, equal
            similarities keep the candidates' order (a set's ids are sorted first), and
            ids the model does not know raise ``ValueError`` naming them.
        exclude_items : list, set or array-like of ids, optional
            Items never to return (a blacklist, applied on top of ``items`` and
            ``min_support``), as in :meth:`recommend`: unknown ids (and ids of the other
            type) are ignored.

        Returns
        -------
        item_ids : ndarray
            Best first; an item is never its own neighbour. For one ``item``, 1-D: the
            qualifying neighbours, at most n. For a list, shape ``(len(item),
            min(n, n_candidates))`` (n_candidates: the model's items but one, or
            ``len(items)``), row k for ``item[k]``; as in :meth:`recommend_all`, the
            slots of a row with fewer qualifying neighbours have similarity ``-inf``
            and an id that means nothing (``np.isfinite(similarities)`` masks them). An
            empty list gives arrays of shape ``(0, min(n, n_candidates))``.
        similarities : ndarray of float64
            Cosine similarities of the factor vectors, same shape.

        Notes
        -----
        The first call on a fitted model keeps a float64 copy of the item factors and
        their norms (``n_items x (n_factors + 1) x 8`` bytes: 26 MB at 50,000 items and
        k = 64) and the items' interaction counts, reused until the model changes (fit,
        partial_fit, fold_in, load); pickling and ``save`` leave them out. A single
        call then costs one matrix-vector product over the items: 0.5 ms at that size
        with 2 M ratings, where the first call (and every call before this cache)
        takes 14 ms. A list of ids is scored in blocks of query rows, each one matrix
        product against all items, in at most 64 MiB of scores at a time: 0.22 ms per
        item, all 50,000 items in 11 s (2 vCPUs, ``bench/recommend.py --only
        similar``). Its rows are the lists of the single calls to rounding: a matrix
        product sums each dot product in another order than a matrix-vector product,
        so a similarity may differ in its last bits (about 1e-16), and two neighbours
        that close may swap.

        Examples
        --------
        >>> from mfsgd.datasets import make_ratings
        >>> from mfsgd import MatrixFactorization
        >>> m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
        >>> m = m.fit(make_ratings(50, 30, 600, random_state=0, as_frame=False))
        >>> ids, sims = m.similar_items([0, 1, 2], n=5)
        >>> ids.shape, bool((ids[:, 0] != [0, 1, 2]).all())
        ((3, 5), True)
        """
        return self._similar("item", item, n, min_support, items, exclude_items)

    def similar_users(self, user: Any, n: int = 10, *, min_support: int = 5,
                      users: Any = None,
                      exclude_users: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The n users most cosine-similar to ``user`` by factor vectors (itself excluded),
        for one user or a list of them; only users with at least ``min_support`` training
        ratings. ``users`` (a whitelist of candidate neighbours) and ``exclude_users`` (a
        blacklist) work as ``items`` and ``exclude_items`` of :meth:`similar_items`, and
        so do lists of users, the shapes and the cache (of the user factors: ``n_users x
        (n_factors + 1) x 8`` bytes). Returns (user_ids, similarities).

        A user known only from rows rated below ``min_rating`` (a ranking model) has no
        training interaction and zero factors: never returned, and asking for theirs
        (alone or in a list) raises ``ValueError``."""
        return self._similar("user", user, n, min_support, users, exclude_users)

    def _similar(self, side: str, raw: Any, n: int, min_support: int, candidates: Any,
                 exclude: Any) -> tuple[np.ndarray, np.ndarray]:
        st = self._require_fitted(f"similar_{side}s")
        many = _many_ids(raw)
        if not many:
            raw = _one_id(side, raw, f" Pass a list for several {side}s.")
        return R.similar_ids(st, side, raw, check_int("n", n),
                             check_int("min_support", min_support, low=0), many=many,
                             candidates=candidates, exclude=exclude)

    def fold_in(self, X: Any, y: Any = None, *, side: str = "user",
                reg: float | None = None) -> RecommenderMixin:
        """Add (or recompute) users from a few ratings, holding the item side fixed.

        Each user of ``X`` gets the bias and factor vector minimising that user's part
        of the training loss, ``sum_j (r_uj - mu - b_u - b'_j - u . v_j)^2 + n_u (reg_factors
        |u|^2 + reg_bias b_u^2)``, by a closed-form ridge solve (squared loss:
        milliseconds, no refit; a ranking model solves another problem, below).
        New users are appended; an existing user's row is recomputed from the ratings
        given (pass all of them). The rows the model has recorded already (its seen
        items, ``user_counts_`` and ``item_counts_``) are not recorded again, so
        refolding a user from their own rows leaves the counts, and the popularity list
        unknown users get, as they were; rows beyond them join the record, once each.
        (With ``min_rating`` the record also holds the rows below it, kept apart: a
        pair recorded from a row below it and given again at or above it is a new
        interaction, and a row below it already recorded is not recorded again. An
        item fold-in solves no user: a user without interactions stays without, their
        row zero, served the most popular items, and their rows given are recorded as
        seen but no interaction, of the item either; a later user fold-in counts them.
        A model loaded from a file of format 4 cannot tell its recorded low rows from
        interactions: there a re-rated pair counts only as far as the refolded id's
        count shows it was no interaction before.)
        Ratings of items unknown to the model are ignored; a
        user left with none raises ``ValueError``. With
        ``side="item"`` the same is done for items, holding the users fixed. Ratings too
        large for the model's dtype (e.g. beyond float32), or a solution that is not
        finite in it, raise ``ValueError`` and leave the model unchanged.

        With ``nonnegative=True`` the factors are solved under the constraint factors >=
        0, as training keeps them (a non-negative least squares per user; the bias stays
        free).

        Each row is solved exactly, in whichever of two equivalent forms is smaller: the
        (k + 1) x (k + 1) normal equations, or, for a row with fewer ratings n than that,
        its n x n dual (a ranking model: in the span of the m item vectors when m < k).
        So a few ratings cost little memory and time at any ``n_factors``. New users
        grow the model's arrays in place, into room kept beyond the rows it shows (up to
        an eighth more; saved files and pickles hold only the rows), so folding in one new
        user per call, as a streaming job does, does not copy the model each time
        (squared loss, 100,000 users x 64: 0.8 ms per user, 5.6 ms when each call
        copied it; ``python bench/fold_in.py --latency``). A refolded user and an item
        still copy their side's arrays, and a new user with rows below ``min_rating`` the
        seen-items record (4 bytes per rating), to insert those rows. Models that shared a state
        (``copy.copy``) and then grew apart never see each other's rows. What
        ``similar_users`` / ``similar_items`` and unknown users' lists keep is carried to
        the new model and updated (new rows appended, counts counted on), so the next
        such query does not rebuild it (the Serving section of the guide).

        A ranking model (``loss`` other than "squared") takes interactions, read as
        draws from a softmax over all items (the full objective that ``loss="softmax"``
        samples; for bpr and warp too, it puts the user's items above the others):
        ``u = argmin -mean_{j in I_u} s_j + log sum_j exp(s_j) + lambda |u|^2`` with
        ``s_j = u . v_j + b'_j`` over every item j, and ``lambda`` = 0.03 times the items'
        mean squared norm ``|v_j|^2`` (so rescaling the item vectors changes no ranking).
        The objective is convex; it is minimised from u = 0 (the items' popularity order
        by their biases) by L-BFGS started from the exact Hessian there, the same for
        every user: one O(n_items k^2) sum per model, then about 10 steps of O(n_items k)
        each, the users of one call stepping together as matrix products (a user still
        unsolved after 40 steps, with a tiny ``reg``, is finished by Newton's method).
        Wall time per new user (10 interactions, one thread, a float32 model on a 2.6 GHz
        EPYC; ``python bench/fold_in.py --latency``), one per call / 100 in one call:
        1.6 / 0.21 ms at 1,682 items and k = 64, 7.7 / 2.3 ms at 20,000 items, 30 / 9.2 ms
        at 50,000 items, 2.9 / 0.56 ms at 1,682 items and k = 256. The first user
        fold-in keeps the items' float64 factors (and a float32 copy for a float32 model:
        ``n_items x n_factors x 12`` bytes, 38 MB at 50,000 items and k = 64) and that
        Hessian with the model, for the next user fold-ins, until the items change
        (``fit``, ``partial_fit``, an item fold-in, ``load``); pickles and saved files do
        not hold them. An item (``side="item"``) gets the factors and bias that make the training
        interactions most likely when each user's softmax over items also holds it (one
        pass over every user x item score, then a few Newton steps per item, each
        O(n_users k^2)). That pass, every user's log partition over the items
        (``n_users`` floats), is kept with the model and updated by fold-ins of new items
        (O(n_users k) each) and of users (O(n_items k) each), so a stream of new items
        pays it once, not per call; refolding a known item, ``fit``, ``partial_fit`` and
        ``load`` drop it. On MovieLens 100K a user refolded from their own training items
        ranks as well as the fitted row (``bench/fold_in.py``); the default ``reg`` was
        chosen there, and sparser data may need more (on a synthetic set with few
        interactions per user, 0.3 did better than 0.03). Ratings,
        if given, are ignored, except that with ``min_rating`` set only the rows rated at
        or above it are interactions (as in ``fit`` and ``partial_fit``): ratings are
        then required, and the rows below it are recorded as seen (never recommended
        back) but not solved on. A user whose rows given are all below it is recorded
        like that with ``side="user"``: a new one joins with zero factors and no
        interaction (served the most popular items), a known one keeps their row.

        Parameters
        ----------
        X, y
            Ratings in any form ``fit`` accepts.
        side : {"user", "item"}
            Which side to fold in.
        reg : float >= 0, optional
            A ranking model's penalty, ``lambda`` above, per unit of the other side's
            mean squared row norm (default 0.03). For a squared-loss model, the penalty
            on the factors per rating, in place of ``reg_factors`` (the bias keeps
            ``reg_bias``): the fitted rows were shrunk by SGD stopping after
            ``n_epochs`` as well, so the exact solve at ``reg_factors`` can give rows of
            larger norm than theirs (new items then crowd the top of every list); a
            larger ``reg`` brings them back in line.

        Returns
        -------
        self
        """
        if side not in ("user", "item"):
            raise ValueError(f"side must be 'user' or 'item'; got {side!r}.")
        reg = check_real_or_none(reg, "reg must be a finite number >= 0 or None")
        if reg is not None and reg < 0:
            raise ValueError(f"reg must be a finite number >= 0 or None; got {reg!r}.")
        with self._lock:
            st = self._require_fitted("fold_in")
            ranking = st.loss != "squared"
            cfg = self._config()
            low = None
            if ranking and cfg.min_rating is not None:
                # Only the rows rated at or above min_rating are interactions, as in fit,
                # partial_fit and eval_set: a 1-star row is no positive, but it is the
                # user's item all the same (recorded as seen, never recommended back).
                # Dictionary-encoded ids stay encoded (R.fold_in's look-ups decode them)
                # until the low rows are split off: a low row without an id is ignored
                # there, as fit ignores it.
                users, items, ratings = unpack(X, y, columns=columns_of(self), what="X",
                                               ratings="optional", encoded=True)
                _, users, items, low = split_low(users, items, ratings, cfg.min_rating, "X")
                ratings = None
            else:
                users, items, ratings = self._unpack(X, y, need_ratings=not ranking)
            if ratings is None:  # interactions of a ranking model
                ratings = np.ones(len(users))
            r = check_ratings(ratings, np.dtype(np.float64))
            if r.size == 0 and low is None:
                raise ValueError("fold_in needs at least one rating; got an empty input.")
            state = st
            if r.size:
                own, other = (users, items) if side == "user" else (items, users)
                reg_f = reg if reg is not None and not ranking else cfg.reg_factors
                state = R.fold_in(st, own, other, r, side=side, reg_factors=reg_f,
                                  reg_bias=cfg.reg_bias, nonnegative=cfg.nonnegative,
                                  ranking_reg=reg)
            if low is not None:
                # side="item" holds the users fixed: a low row of an unknown user is
                # ignored, as the kept rows of one are
                recorded = record_low(state, low, new_users=side == "user", refold=True)
                if recorded is None and r.size == 0:
                    raise ValueError("fold_in needs at least one interaction; got none at "
                                     "or above min_rating, and no row of an item the model "
                                     "knows to record.")
                state = state if recorded is None else recorded
            self._state = state
            return self
