"""The error raised when a checkpoint cannot be converted faithfully."""

__all__ = ["ConversionError", "ParityError"]


class ConversionError(ValueError):
    """A checkpoint does not fit the family it is converted to: wrong family, leftover, missing or misshaped keys.

    A ``ValueError`` subclass, so callers that validate input generically still catch it; the CLI prints its
    message without a traceback.
    """


class ParityError(ConversionError):
    """The converted model does not reproduce the reference outputs; ``report`` holds the per-output comparison."""

    def __init__(self, message: str, report) -> None:
        super().__init__(message)
        self.report = report
