"""Conversion of metric inputs (lists, NumPy arrays, torch tensors) to validated NumPy arrays."""

from typing import Any

import numpy as np


def to_numpy(value: Any, name: str, ndim: int, dtype: type | None = None) -> np.ndarray:
    """Return `value` as a NumPy array with `ndim` dimensions, raising a ValueError that names `name` otherwise.

    Tensors are detached and moved to the CPU first, so model outputs can be passed as they are.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` could not be read as a {ndim}-D array ({error}).") from error
    if array.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D; got shape {tuple(array.shape)}.")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; at least one example is needed.")
    return array


def to_int_array(value: Any, name: str) -> np.ndarray:
    """Return a 1-D integer array, rejecting floats that are not whole numbers and booleans."""
    array = to_numpy(value, name, ndim=1)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"`{name}` must hold integer indices; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"`{name}` must hold integer indices; got non-integer values.")
    return array.astype(np.int64)
