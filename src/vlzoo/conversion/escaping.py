"""Show names that came from a file (keys, class names, metadata) without letting them control a terminal or a log."""

import reprlib
from typing import Any

__all__ = ["MAX_SHOWN_CHARACTERS", "printable", "printable_repr"]

MAX_SHOWN_CHARACTERS = 200

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_SHOWN_CHARACTERS
_REPR.maxlevel = 4


def printable(value: Any, *, limit: int = MAX_SHOWN_CHARACTERS) -> str:
    """``value`` as text whose every non-printable character is escaped, shortened to ``limit`` characters.

    A checkpoint's keys, class names and metadata are chosen by whoever wrote the file: a newline, a carriage return
    or an ANSI escape sequence in them could forge a line such as "parity PASSED" in a terminal, a log or a report.
    Characters that ``str.isprintable`` rejects are written as ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` (as ``repr``
    does) and backslashes are doubled, so an escape cannot be mistaken for literal text.
    """
    text = value if isinstance(value, str) else str(value)
    hidden = len(text) - limit
    if hidden > 0:
        text = text[:limit]
    if not text.isprintable() or "\\" in text:
        text = "".join(_escape(character) for character in text)
    return f"{text}...({hidden} more characters)" if hidden > 0 else text


def printable_repr(value: Any, *, limit: int = MAX_SHOWN_CHARACTERS) -> str:
    """A bounded ``repr`` of ``value`` (long strings, deep or long containers abbreviated), escaped by :func:`printable`."""
    return printable(_REPR.repr(value), limit=limit)


def _escape(character: str) -> str:
    if character == "\\":
        return "\\\\"
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
