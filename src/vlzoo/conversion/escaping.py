"""Show names that came from a file (keys, class names, metadata) without letting them control a terminal or a log."""

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["MAX_SHOWN_CHARACTERS", "printable", "printable_repr"]

MAX_SHOWN_CHARACTERS = 200
_SHOWN_ITEMS = 6
_SHOWN_LEVELS = 3


def printable(value: Any, *, limit: int = MAX_SHOWN_CHARACTERS, escape_backslash: bool = True) -> str:
    """``value`` as text whose every non-printable character is escaped, shortened to ``limit`` characters.

    A checkpoint's keys, class names and metadata are chosen by whoever wrote the file: a newline, a carriage return
    or an ANSI escape sequence in them could forge a line such as "parity PASSED" in a terminal, a log or a report.
    Characters that ``str.isprintable`` rejects are written as ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` (as ``repr``
    does) and backslashes are doubled, so an escape cannot be mistaken for literal text (``escape_backslash=False``
    keeps them, for text that ``repr`` has escaped already).
    """
    text = value if isinstance(value, str) else str(value)
    hidden = len(text) - limit
    if hidden > 0:
        text = text[:limit]
    if not text.isprintable() or (escape_backslash and "\\" in text):
        text = "".join(_escape(character, escape_backslash) for character in text)
    return f"{text}...({hidden} more characters)" if hidden > 0 else text


def printable_repr(value: Any, *, limit: int = MAX_SHOWN_CHARACTERS) -> str:
    """A ``repr`` of ``value`` with bounded cost, escaped by :func:`printable`.

    Containers show their first few items down to a few levels, long strings are cut before ``repr`` sees them and
    unknown objects show their class only: a plain ``repr`` of data from a file could walk an exponential number of
    shared references, or run out of stack on deeply nested lists, before it is ever shortened.
    """
    return printable(_bounded_repr(value, _SHOWN_LEVELS, limit), limit=limit, escape_backslash=False)


def _bounded_repr(value: Any, levels: int, limit: int) -> str:
    if value is None or isinstance(value, (bool, float, complex)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, (str, bytes, bytearray)):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if isinstance(value, torch.Tensor):
        return f"<tensor of size {list(value.shape)}>"
    if isinstance(value, Mapping):
        brackets, items = "{}", [item for item, _ in zip(value.items(), range(_SHOWN_ITEMS), strict=False)]
    elif isinstance(value, list):
        brackets, items = "[]", value[:_SHOWN_ITEMS]
    elif isinstance(value, tuple):
        brackets, items = "()", value[:_SHOWN_ITEMS]
    elif isinstance(value, (set, frozenset)):
        brackets, items = "{}", [item for item, _ in zip(value, range(_SHOWN_ITEMS), strict=False)]
    else:
        return f"<{type(value).__name__}>"
    if levels == 0:
        return f"{brackets[0]}...{brackets[1]}"
    if isinstance(value, Mapping):
        shown = [f"{_bounded_repr(k, levels - 1, limit)}: {_bounded_repr(v, levels - 1, limit)}" for k, v in items]
    else:
        shown = [_bounded_repr(item, levels - 1, limit) for item in items]
    if len(value) > len(items):
        shown.append("...")
    return brackets[0] + ", ".join(shown) + brackets[1]


def _escape(character: str, escape_backslash: bool) -> str:
    if character == "\\" and escape_backslash:
        return "\\\\"
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
