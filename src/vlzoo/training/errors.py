"""The errors a training run reports instead of saving something wrong or loading something unsafe."""

__all__ = ["StateFolderError", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """The loss, the gradients or the parameters stopped being finite; ``step`` is the optimizer step it happened at.

    Raised instead of saving a model that holds NaN or infinite weights.
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class StateFolderError(ValueError):
    """A training-state folder cannot be resumed from: a file is missing, truncated, corrupt or unexpected."""
