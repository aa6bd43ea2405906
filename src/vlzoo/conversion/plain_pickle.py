"""Loading pickles of plain data (e.g. RefCOCO's ``refs(unc).p``) without ever executing code from the file."""

import io
import pickle
from pathlib import Path

from .limits import UnsafeFileError, object_budget, scan_pickle, walk_object_graph

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


def _check_plain(value: object) -> None:
    if not isinstance(value, PLAIN_TYPES):
        raise pickle.UnpicklingError(f"the pickle holds a {type(value).__name__}, not plain data")


def load_plain_pickle(path: str | Path) -> object:
    """Load a pickle of plain data (Python 2 byte strings are decoded as UTF-8); raise `ValueError` otherwise.

    The opcodes are validated before unpickling and the result is checked with bounded work: a few kilobytes whose
    shared references expand to billions of objects, or lists nested 100k levels deep, are refused instead of
    hanging the caller that walks them.
    """
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path} is empty")
    source = f"pickle file {path}"
    try:
        scan_pickle(data, source=source)
        value = PlainDataUnpickler(io.BytesIO(data), encoding="utf-8").load()
        walk_object_graph(value, source=source, max_objects=object_budget(len(data)), visit=_check_plain)
    except UnsafeFileError:
        raise
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
