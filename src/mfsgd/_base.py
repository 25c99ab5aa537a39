"""Estimator plumbing shared by mfsgd's estimators: scikit-learn's parameter protocol
(``get_params``, ``set_params``, ``clone``), the repr, pickling without the lock, and
the fitted attributes read from the immutable ``FittedState`` held in ``_state``."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._state import FittedState
from .exceptions import NotFittedError


class EstimatorBase:
    """Subclasses store their constructor arguments unchanged in ``__init__`` (checks
    happen in fit), create ``self._lock`` and set ``self._state`` by fitting or loading."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> EstimatorBase:
        """Set hyper-parameters by name; checked at the next ``fit``."""
        valid = set(self._get_param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}; valid "
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
        return f"{type(self).__name__}({', '.join(changed)})"

    @contextlib.contextmanager
    def _fitting_checked(self, what: str) -> Iterator[None]:
        """Mark this thread as inside the model's ``what`` (fit or partial_fit; hold
        ``_lock`` first), after refusing a call from inside its own fit: its callback
        then cannot read or change the model, which changes only when fit returns (see
        ``_refuse_in_fit``)."""
        self._refuse_in_fit(what)
        self.__dict__["_fit_thread"] = threading.get_ident()
        try:
            yield
        finally:
            self.__dict__["_fit_thread"] = None

    def _refuse_in_fit(self, what: str) -> None:
        """RuntimeError when called by this model's own fit (from its callback): a read
        would see the model as it was before this fit, and a fit, partial_fit or fold_in
        would be overwritten when the outer fit returns."""
        if self.__dict__.get("_fit_thread") == threading.get_ident():
            verb = "was read" if what.endswith("_") else "was called"  # a fitted attribute
            raise RuntimeError(
                f"{what} {verb} during this model's own fit (from its callback?); the "
                "model changes only when fit returns, so it would see or change the model "
                "as it was before this fit. Use the epoch record passed to the callback, or "
                "train epoch by epoch with partial_fit(n_epochs=1).")

    def _require_fitted(self, what: str = "this method") -> FittedState:
        self._refuse_in_fit(what)
        st = self.__dict__.get("_state")
        if st is None:
            if what.endswith("_"):  # a fitted attribute
                msg = f"not fitted yet, so it has no {what}; call fit first."
            else:
                msg = f"not fitted yet; call fit before {what}."
            raise NotFittedError(f"This {type(self).__name__} instance is {msg}")
        return st

    def __sklearn_is_fitted__(self) -> bool:
        return self.__dict__.get("_state") is not None

    @property
    def user_ids_(self) -> np.ndarray:
        """Raw user ids; row k of ``user_factors_`` belongs to ``user_ids_[k]``."""
        return _readonly(self._require_fitted("user_ids_").user_map.ids)

    @property
    def item_ids_(self) -> np.ndarray:
        """Raw item ids; row k of ``item_factors_`` belongs to ``item_ids_[k]``."""
        return _readonly(self._require_fitted("item_ids_").item_map.ids)

    @property
    def item_counts_(self) -> np.ndarray | None:
        """Training interactions (rows) per item, in ``item_ids_`` order: the popularity
        that unknown users are served by. With ``min_rating``, only the rows it kept
        count. None for a model without a seen-items record."""
        return _readonly(self._require_fitted("item_counts_").support("item"))

    @property
    def user_counts_(self) -> np.ndarray | None:
        """Training interactions (rows) per user, in ``user_ids_`` order. With
        ``min_rating``, only the rows it kept count: a user whose every row was rated below
        it is known (their items are never recommended back) but has a count of 0, zero
        factors, and is served the most popular items. None for a model without a
        seen-items record."""
        return _readonly(self._require_fitted("user_counts_").support("user"))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_fit_thread", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


_FITTED_ATTRS = {
    "global_mean_": ("global_mean", "Global mean mu of the training ratings."),
    "user_bias_": ("user_bias", "User biases b_i, shape (n_users,)."),
    "item_bias_": ("item_bias", "Item biases b'_j, shape (n_items,)."),
    "n_epochs_": ("n_epochs", "Number of epochs run in total."),
    "best_epoch_": ("best_epoch", "Epoch whose parameters were kept by early stopping."),
    "rating_range_": ("rating_range", "(min, max) of the training ratings (used by clip)."),
    "n_blocks_": ("n_blocks", "Blocks per side of the training grid actually used."),
}


def _readonly(a: Any) -> Any:
    """A read-only view of a fitted array (anything else as it is). The fitted state is
    replaced, never changed: arrays derived from it and kept with it (similar_items'
    float64 rows, fold_in's extremes, a ranking fold-in's start) would silently go stale
    under an edit in place, so the model's arrays are read-only; copy one to change it
    (np.array(model.item_factors_))."""
    if isinstance(a, np.ndarray):
        a = a.view()
        a.flags.writeable = False
    return a


def _factor_property(attr: str, which: str, doc: str) -> property:
    def get(self: EstimatorBase) -> Any:
        return _readonly(self._require_fitted(attr).factors(which))

    return property(get, doc=doc)


def _fitted_property(attr: str, field_name: str, doc: str) -> property:
    def get(self: EstimatorBase) -> Any:
        return _readonly(getattr(self._require_fitted(attr), field_name))

    return property(get, doc=doc)


def _history(self: EstimatorBase) -> list[dict[str, Any]]:
    # Copies: the records belong to the immutable fitted state, which save writes and
    # partial_fit continues; an edit of what the user holds must reach neither.
    return [dict(r) for r in self._require_fitted("history_").history]


EstimatorBase.history_ = property(_history, doc="Per-epoch records (copies): epoch, "
                                  "train_rmse, val_rmse, learning_rate, seconds.")
for _attr, (_field, _doc) in _FITTED_ATTRS.items():
    setattr(EstimatorBase, _attr, _fitted_property(_attr, _field, _doc))
EstimatorBase.user_factors_ = _factor_property(
    "user_factors_", "user_factors", "User factors u_i, shape (n_users, n_factors).")
EstimatorBase.item_factors_ = _factor_property(
    "item_factors_", "item_factors", "Item factors v_j, shape (n_items, n_factors).")
del _attr, _field, _doc
