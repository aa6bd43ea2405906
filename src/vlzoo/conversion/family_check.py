"""Refuse early, and say why, when a checkpoint belongs to another family."""

import re
from collections.abc import Iterable, Mapping

from .errors import ConversionError
from .escaping import printable

__all__ = ["require_keys"]

_DEFAULT_HINT = "is it a checkpoint of another family?"


def require_keys(
    state_dict: Mapping[str, object],
    *,
    family: str,
    required: Iterable[str],
    hint: str = _DEFAULT_HINT,
) -> None:
    """Check that every pattern in ``required`` fully matches at least one key of ``state_dict``.

    Args:
        state_dict: the loaded checkpoint weights.
        family: display name used in the message (e.g. "MS-CLIP").
        required: regex patterns (``re.fullmatch``) the family's checkpoints always contain.
        hint: the closing advice of the error message.

    Raises:
        ConversionError: naming every pattern without a match and the prefixes the checkpoint's keys do have.
    """
    patterns = [required] if isinstance(required, str) else list(required)
    try:
        compiled = [re.compile(pattern) for pattern in patterns]
    except (re.error, TypeError) as error:
        raise ValueError(f"required must be regex patterns, got {patterns!r}: {error}") from None
    absent = [p.pattern for p in compiled if not any(p.fullmatch(key) for key in state_dict)]
    if not absent:
        return
    prefixes = list(dict.fromkeys(str(key).split(".")[0] + ("." if "." in str(key) else "") for key in state_dict))
    # Key names come from the file: escaped, so that they cannot forge lines in a terminal or a log.
    shown = ", ".join(printable(p, limit=60) for p in prefixes[:12]) + (", ..." if len(prefixes) > 12 else "")
    shown = shown or "(no keys)"
    missing = ", ".join(repr(pattern) for pattern in absent)
    raise ConversionError(
        f"this checkpoint does not look like a checkpoint of {family}: none of the keys matching {missing} were "
        f"found; its keys start with: {shown} — {hint}"
    )
