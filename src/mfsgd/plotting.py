"""Learning curves (matplotlib, optional: pip install 'mfsgd[plot]')."""

from __future__ import annotations

from typing import Any


def plot_history(model: Any, ax: Any = None, path: Any = None) -> Any:
    """Draw training (and validation) RMSE per epoch of a fitted model.

    Parameters
    ----------
    model : MatrixFactorization
        A fitted model (its ``history_`` is drawn).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when omitted.
    path : str or PathLike, optional
        Save the figure there (PNG, SVG, PDF by extension).

    Returns
    -------
    matplotlib Axes
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'mfsgd[plot]'") from None
    hist = model.history_
    if ax is None:
        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in hist]
    ax.plot(epochs, [h["train_rmse"] for h in hist], marker="o", label="training RMSE")
    if any("val_rmse" in h for h in hist):
        ax.plot(epochs, [h.get("val_rmse", float("nan")) for h in hist], marker="s",
                label="validation RMSE")
    best = getattr(model, "best_epoch_", None)
    if best:
        ax.axvline(best, color="grey", linestyle="--", label=f"kept epoch {best}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.legend()
    ax.grid(True, alpha=0.3)
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax
