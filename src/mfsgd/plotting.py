"""Learning curves (matplotlib, optional: pip install 'mfsgd[plot]')."""

from __future__ import annotations

import os
from typing import Any


def plot_history(model: Any, ax: Any = None, path: Any = None) -> Any:
    """Draw training (and validation) RMSE per epoch of a fitted model; for a ranking
    loss, the training loss and the validation metric (``eval_metric``, right axis).

    Parameters
    ----------
    model : MatrixFactorization
        A fitted model (its ``history_`` is drawn).
    ax : matplotlib Axes, str or PathLike, optional
        Where to draw; a new figure when omitted. A path here is taken as ``path``, so
        ``plot_history(model, "curve.png")`` saves the curve.
    path : str, PathLike or binary file object, optional
        Save the figure there (PNG, SVG, PDF by extension; a binary file object gets a
        PNG). With no ``ax``, the figure is made without pyplot: nothing is shown, the
        backend is left alone, and no figure stays open.

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    TypeError
        ``model`` is not a MatrixFactorization, ``ax`` is neither an Axes nor a path,
        ``path`` is not a path (or a file object), or a path is given both as ``ax`` and
        ``path``.
    ValueError
        ``path`` is empty.
    IsADirectoryError
        ``path`` is a folder (or ends with a separator, or is ``.`` or ``..``).
    ImportError
        matplotlib is not installed.
    """
    # Checked first, so also without matplotlib: otherwise a wrong argument fails deep inside, as
    # an AttributeError on history_ or in matplotlib's savefig, naming neither. Known by its
    # class's partial_fit: the estimator trained in epochs (it is imported by the entry
    # points only; Popularity has a history_ that explains it has none). An unfitted
    # model raises NotFittedError below.
    if not callable(getattr(type(model), "partial_fit", None)):
        raise TypeError(f"model must be a fitted MatrixFactorization (its history_ is drawn); "
                        f"got {type(model).__name__}.")
    if isinstance(ax, (str, os.PathLike)):
        if path is not None:
            raise TypeError(f"plot_history got two paths, ax={ax!r} and path={path!r}; pass "
                            "one (ax is for a matplotlib Axes).")
        ax, path = None, ax
    # bytes paths and binary file objects are what matplotlib's savefig also takes
    if path is not None and not (isinstance(path, (str, bytes, os.PathLike))
                                 or callable(getattr(path, "write", None))):
        raise TypeError(f"path must be a str or PathLike (or a binary file object) to save "
                        f"the figure to; got {type(path).__name__}.")
    if isinstance(path, (str, bytes, os.PathLike)):
        path = figure_file(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'mfsgd[plot]'") from None
    from matplotlib.axes import Axes

    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or a path (str or PathLike) to save "
                        f"the figure to; got {type(ax).__name__}.")
    hist = model.history_
    if ax is None:
        if path is not None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(6, 4)).subplots()
        else:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in hist]
    val_keys = sorted({k for h in hist for k in h if k.startswith("val_")})
    lines = []
    if hist and "train_loss" in hist[0]:  # a ranking loss: its loss and a ranking metric
        lines += ax.plot(epochs, [h["train_loss"] for h in hist], marker="o",
                         label=f"training loss ({model.loss})")
        ax.set_ylabel("training loss")
        if val_keys:  # another scale (higher is better): its own axis on the right
            twin = ax.twinx()
            name = val_keys[0][4:]
            lines += twin.plot(epochs, [h.get(val_keys[0], float("nan")) for h in hist],
                               marker="s", color="tab:orange", label=f"validation {name}")
            twin.set_ylabel(f"validation {name}")
    else:
        lines += ax.plot(epochs, [h["train_rmse"] for h in hist], marker="o",
                         label="training RMSE")
        if "val_rmse" in val_keys:
            lines += ax.plot(epochs, [h.get("val_rmse", float("nan")) for h in hist],
                             marker="s", label="validation RMSE")
        ax.set_ylabel("RMSE")
    best = getattr(model, "best_epoch_", None)
    if best:
        lines.append(ax.axvline(best, color="grey", linestyle="--", label=f"kept epoch {best}"))
    ax.set_xlabel("epoch")
    ax.legend(handles=lines)
    ax.grid(True, alpha=0.3)
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax


def figure_file(path: str | bytes | os.PathLike) -> str:
    """The file a figure saved at ``path`` is written to, as ``plot_history`` and the
    command line's ``--plot`` name it: a path without an extension gets ".png", as
    matplotlib's savefig gives it (after dropping trailing dots; "curve" and "curve."
    are "curve.png"). A folder is refused (IsADirectoryError): matplotlib took "." for
    a name without extension and wrote "..png" (the command line, which adds ".png"
    itself, reported "..png" and wrote "..png.png"). A leading dot makes a hidden file
    with no extension: ".png" is ".png.png", again as savefig writes it."""
    import errno

    p = os.fsdecode(os.fspath(path))
    if not p:
        raise ValueError("the figure's path is empty; give a file name such as curve.png.")
    base = os.path.basename(p)
    if base in ("", ".", "..") or os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, "is a directory: the figure needs a file name "
                                "such as curve.png", p)
    if not os.path.splitext(p)[1][1:]:
        p = p.rstrip(".") + ".png"
    return p
