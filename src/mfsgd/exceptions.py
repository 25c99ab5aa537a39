"""Exceptions and warnings raised by mfsgd."""

__all__ = [
    "NotFittedError",
    "ModelFileError",
    "DivergenceError",
    "DistributedTrainingError",
    "StopTraining",
    "TrainingInterrupted",
    "UndefinedMetricWarning",
]


class NotFittedError(ValueError, AttributeError):
    """The model is used (predict, save, ...) before it was fitted or loaded."""


class ModelFileError(ValueError):
    """A model file is unreadable, corrupted, foreign, or from a newer format version."""


class DivergenceError(ValueError):
    """Training ran away: non-finite values, or parameters whose predictions could
    overflow (for a ranking loss, scores beyond float32's range). The model keeps the
    parameters of its last good epoch."""


class StopTraining(Exception):  # noqa: N818  (a signal, as StopIteration, not an error)
    """Raised by a ``callback`` of ``fit`` or ``partial_fit`` to end training after the
    epoch it was called for, and ``fit`` returns normally. The model keeps what an
    interrupted fit keeps: that epoch (the last completed one), or under
    ``early_stopping`` the best epoch so far. Any other exception a callback raises also
    stops training, but ``fit`` then re-raises it."""


class TrainingInterrupted(UserWarning):
    """Training was interrupted (Ctrl-C); the model keeps its last completed epoch.

    ``when`` says where the Ctrl-C came: "before" the first epoch (the model is
    unchanged), "during" an epoch (the last completed one is kept) or "after" the last
    epoch (the trained model is kept)."""

    def __init__(self, message: str = "", when: str = "during") -> None:
        super().__init__(message)
        self.when = when


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for one fold of a cross-validation (e.g. no held-out rating
    reaches the relevance threshold): that fold's value is NaN, the others stand."""


class DistributedTrainingError(RuntimeError):
    """Distributed training lost data it could not recompute (e.g. workers died beyond
    Dask's retry limit); the model keeps the last completed epoch, if any."""
