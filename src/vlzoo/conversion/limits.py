"""Bounds on what a file may make a reader build or walk, so that a small file can never hang it or exhaust memory.

Every reader of untrusted files goes through these checks: the opcodes of a pickle are validated before it is
unpickled (:func:`scan_pickle`), the unpickled object graph is measured before anything walks it
(:func:`walk_object_graph`), and every tensor must describe no more elements than its stored bytes hold
(:func:`check_view_bounds`, :func:`check_stored_tensor`).
"""

import io
import math
import pickletools
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any, BinaryIO

import torch

__all__ = [
    "MAX_NESTING_DEPTH",
    "UnsafeFileError",
    "check_stored_tensor",
    "check_view_bounds",
    "object_budget",
    "plain_children",
    "scan_pickle",
    "walk_object_graph",
]

# Deeper than any real checkpoint or config (a pickled nn.Module uses three levels per submodule) and shallow enough
# for recursive walks to stay far from Python's recursion limit.
MAX_NESTING_DEPTH = 100

# A pickle without shared containers unpickles into at most about one object per byte; the factor and the floor leave
# room for legitimate sharing (the same dict referenced twice) and refuse exponential "billion laughs" expansion.
_OBJECTS_PER_BYTE = 2
_OBJECT_BUDGET_FLOOR = 1_000_000

_MAX_TENSOR_DIMENSIONS = 64  # torch's own limit
_MEMO_WRITES = {"PUT", "BINPUT", "LONG_BINPUT"}


class UnsafeFileError(ValueError):
    """A file would make a reader exceed a safety bound, or describes data that its stored bytes do not back.

    The message names the file and the bound; readers let it through unchanged instead of calling the file corrupt.
    """


def object_budget(pickle_bytes: int) -> int:
    """How many objects a walk over data unpickled from ``pickle_bytes`` bytes may visit, shared references expanded."""
    return _OBJECT_BUDGET_FLOOR + _OBJECTS_PER_BYTE * max(int(pickle_bytes), 0)


def scan_pickle(stream: BinaryIO | bytes, *, source: str) -> int:
    """Validate every opcode of one pickle, up to its STOP, before anything unpickles it; returns the opcode count.

    ``pickletools`` checks each declared length against the data actually present instead of allocating it first,
    and memo indices are bounded by the opcode count so far: the C unpickler sizes its memo table from the largest
    index it sees, so a single PUT of index 2**32 in a ten-byte pickle would otherwise allocate tens of gigabytes.
    A stream is left just after the STOP opcode.

    Raises:
        UnsafeFileError: a memo index beyond anything the pickle could have stored.
        ValueError: the opcodes are malformed or end before STOP (pickletools' own message).
    """
    stream = io.BytesIO(stream) if isinstance(stream, (bytes, bytearray)) else stream
    count = 0
    for count, (opcode, argument, position) in enumerate(pickletools.genops(stream), start=1):
        if opcode.name in _MEMO_WRITES and (not isinstance(argument, int) or not 0 <= argument <= count):
            raise UnsafeFileError(
                f"{source} writes pickle memo entry {argument!r} at opcode {count} (byte {position}); a pickle numbers "
                f"its memo entries in order, so the index cannot exceed the opcode count"
            )
    return count


def plain_children(value: Any) -> Iterable[Any] | None:
    """The elements of a plain container (dict keys and values, list/tuple/set items), or None for anything else."""
    if isinstance(value, dict):
        return chain.from_iterable(value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return None


_END = object()


def walk_object_graph(
    root: Any,
    *,
    source: str,
    max_objects: int,
    children: Callable[[Any], Iterable[Any] | None] = plain_children,
    visit: Callable[[Any], None] | None = None,
    max_depth: int = MAX_NESTING_DEPTH,
) -> int:
    """Check that walking ``root`` as a tree stays within ``max_depth`` levels and ``max_objects`` objects.

    Each container is visited once (iteratively, so depth never reaches Python's recursion limit) while the size of
    the tree it stands for is summed, shared references counted as many times as a recursive walk would meet them;
    a reference back to a container being walked (a cycle) counts once. A pickle that references one list twice,
    that list referencing the next twice, and so on, stays a few bytes per level but doubles the tree each time:
    this refuses it after about ``log2(max_objects)`` levels instead of walking it. ``visit`` is called on every
    new container and on every reference to a non-container.

    Returns:
        The number of objects a recursive walk of ``root`` would visit.

    Raises:
        UnsafeFileError: naming ``source`` and the bound that was exceeded.
    """
    if visit is not None:
        visit(root)
    first = children(root)
    if first is None:
        return 1
    finished: dict[int, int] = {}
    on_path = {id(root)}
    frames: list[list[Any]] = [[root, iter(first), 1]]
    while True:
        frame = frames[-1]
        child = next(frame[1], _END)
        if child is _END:
            frames.pop()
            on_path.discard(id(frame[0]))
            finished[id(frame[0])] = frame[2]
            if not frames:
                return frame[2]
            added = frame[2]
        elif id(child) in finished:
            added = finished[id(child)]
        elif id(child) in on_path:
            added = 1
        else:
            if visit is not None:
                visit(child)
            grandchildren = children(child)
            if grandchildren is None:
                added = 1
            elif len(frames) >= max_depth:
                raise UnsafeFileError(
                    f"{source} nests containers more than {max_depth} levels deep; no checkpoint or config needs "
                    f"that many, and walking it could exhaust the stack"
                )
            else:
                on_path.add(id(child))
                frames.append([child, iter(grandchildren), 1])
                continue
        frames[-1][2] += added
        if frames[-1][2] > max_objects:
            raise UnsafeFileError(
                f"{source} holds shared references that expand to more than {max_objects:,} objects when walked "
                f"(a few bytes can describe an exponential number of objects this way); refusing to read it"
            )


def check_view_bounds(
    size: Sequence[int], stride: Sequence[int], storage_offset: int, available: int, *, source: str
) -> None:
    """Refuse a tensor layout that reaches beyond ``available`` stored elements or repeats them.

    A tensor must describe no more elements than its storage holds from its offset on: a view of size
    ``(10**6, 10**6)`` with strides ``(0, 0)`` over one stored float is in bounds, yet copying it would take 4 TB.
    Every real checkpoint tensor satisfies this (a broadcast ``expand`` saved as such is the one exception).

    Raises:
        UnsafeFileError: naming ``source``, the layout and the storage size.
    """
    size, stride = tuple(size), tuple(stride)
    numbers = (storage_offset, *size, *stride)
    if (
        len(size) != len(stride)
        or len(size) > _MAX_TENSOR_DIMENSIONS
        or not all(type(n) is int and n >= 0 for n in numbers)
    ):
        raise UnsafeFileError(
            f"{source} holds a tensor with an invalid layout: offset {storage_offset!r:.40}, size {size!r:.200}, "
            f"stride {stride!r:.200}"
        )
    numel = math.prod(size)
    if numel == 0:
        return
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= available:
        raise UnsafeFileError(
            f"{source} holds a tensor of size {list(size)} (stride {list(stride)}, offset {storage_offset}) that needs "
            f"{last + 1} elements; its storage holds {available}"
        )
    if numel > available - storage_offset:
        raise UnsafeFileError(
            f"{source} holds a tensor of size {list(size)} (stride {list(stride)}) that describes {numel:,} elements "
            f"over a storage of {available - storage_offset:,} elements from its offset: views that repeat stored "
            f"elements (zero or overlapping strides) are refused, since copying them could exhaust memory"
        )


def check_stored_tensor(tensor: torch.Tensor, *, source: str) -> None:
    """Refuse a tensor that is not a plain dense CPU tensor within the bytes of its own storage.

    Sparse, quantized, nested, meta and subclass tensors are refused: none of them is a weight a converter can copy
    as it is, and some (a meta tensor, a sparse tensor of huge size) turn into huge allocations once materialised.
    """
    kind = type(tensor)
    if kind not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafeFileError(f"{source} holds a tensor of class {kind.__module__}.{kind.__qualname__}")
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested or tensor.device.type != "cpu":
        raise UnsafeFileError(
            f"{source} holds a {tensor.layout} {tensor.dtype} tensor on {tensor.device}; only dense CPU tensors "
            f"rebuilt from stored bytes are accepted"
        )
    available = tensor.untyped_storage().nbytes() // tensor.element_size()
    check_view_bounds(tensor.shape, tensor.stride(), tensor.storage_offset(), available, source=source)
