"""Loading pickles of plain data (e.g. RefCOCO's ``refs(unc).p``) without ever executing code from the file."""

import io
import pickle
from pathlib import Path

PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None))


class PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so no class can be built and no callable can be reached.

    Plain containers, strings and numbers need no global; anything else (`__reduce__` payloads, objects,
    extension codes, persistent ids) fails with `pickle.UnpicklingError` before it can run.
    """

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain lists, dicts, strings and numbers are allowed"
        )

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing to load a persistent id: only plain data is allowed")


def _check_plain(value: object, path: str) -> None:
    if not isinstance(value, PLAIN_TYPES):
        raise pickle.UnpicklingError(f"{path} holds a {type(value).__name__}, not plain data")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, path)
            _check_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{path}[{index}]")


def load_plain_pickle(path: str | Path) -> object:
    """Load a pickle of plain data (Python 2 byte strings are decoded as UTF-8); raise `ValueError` otherwise."""
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path} is empty")
    try:
        value = PlainDataUnpickler(io.BytesIO(data), encoding="utf-8").load()
        _check_plain(value, "pickle")
    except (
        pickle.UnpicklingError,
        EOFError,
        UnicodeDecodeError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
    ) as error:
        raise ValueError(f"{path} is not a pickle of plain data (lists, dicts, strings, numbers): {error}") from error
    return value


__all__ = ["PlainDataUnpickler", "load_plain_pickle"]
