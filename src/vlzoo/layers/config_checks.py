"""Value checks every family's configuration runs when it is built or loaded, naming the offending field.

strict dataclass configs check types only: ``num_attention_heads=0`` or ``layer_norm_eps=-1.0`` pass and fail much
later, deep inside a model's constructor or its forward. A config calls these from ``__post_init__`` (before
``super().__post_init__(**kwargs)``) so that impossible geometry raises a ``ValueError`` at construction, from
``from_dict`` and from ``from_pretrained`` alike.
"""

import math
from typing import Any

__all__ = [
    "require_divisible",
    "require_finite",
    "require_int_lists",
    "require_non_negative",
    "require_non_negative_floats",
    "require_one_of",
    "require_positive",
    "require_positive_floats",
    "require_probabilities",
]


def _value(config: Any, name: str) -> Any:
    return getattr(config, name)


def _fail(config: Any, name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{type(config).__name__}.{name} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_positive(config: Any, *names: str) -> None:
    """Each field is an integer >= 1 (a width, a depth, a head count, a vocabulary or image size)."""
    for name in names:
        value = _value(config, name)
        if not _is_int(value) or value < 1:
            raise _fail(config, name, "a positive integer", value)


def require_non_negative(config: Any, *names: str) -> None:
    """Each field is an integer >= 0 (a count that may be zero, e.g. shared layers)."""
    for name in names:
        value = _value(config, name)
        if not _is_int(value) or value < 0:
            raise _fail(config, name, "a non-negative integer", value)


def require_finite(config: Any, *names: str) -> None:
    """Each field is a finite number."""
    for name in names:
        value = _value(config, name)
        if not _is_number(value) or not math.isfinite(value):
            raise _fail(config, name, "a finite number", value)


def require_positive_floats(config: Any, *names: str) -> None:
    """Each field is a finite number > 0 (a normalisation epsilon, a scale)."""
    for name in names:
        value = _value(config, name)
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise _fail(config, name, "a finite number > 0", value)


def require_non_negative_floats(config: Any, *names: str) -> None:
    """Each field is a finite number >= 0 (an initialiser standard deviation)."""
    for name in names:
        value = _value(config, name)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise _fail(config, name, "a finite number >= 0", value)


def require_probabilities(config: Any, *names: str) -> None:
    """Each field is a number in [0, 1) (a dropout rate: 1 would drop everything)."""
    for name in names:
        value = _value(config, name)
        if not _is_number(value) or not 0 <= value < 1:
            raise _fail(config, name, "a number in [0, 1)", value)


def require_int_lists(config: Any, *names: str, minimum: int) -> None:
    """Each field is a list or tuple of integers, each at least ``minimum`` (strides, kernel sizes, layer indices)."""
    for name in names:
        value = _value(config, name)
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= minimum for v in value):
            raise _fail(config, name, f"a list of integers >= {minimum}", value)


def require_one_of(config: Any, name: str, choices: tuple[Any, ...]) -> None:
    """The field is one of ``choices``."""
    value = _value(config, name)
    if value not in choices:
        raise _fail(config, name, f"one of {', '.join(repr(c) for c in choices)}", value)


def require_divisible(config: Any, numerator: str, denominator: str) -> None:
    """``numerator`` is a multiple of ``denominator`` (e.g. the hidden size of the number of attention heads)."""
    a, b = _value(config, numerator), _value(config, denominator)
    if a % b:
        raise ValueError(
            f"{type(config).__name__}.{numerator} ({a}) must be a multiple of {type(config).__name__}.{denominator} "
            f"({b})"
        )
