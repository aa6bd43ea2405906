"""Bounds on what a file may make a reader build or walk, so that a small file can never hang it or exhaust memory.

Every reader of untrusted files goes through these checks: the opcodes of a pickle are validated before it is
unpickled (:func:`scan_pickle`), the unpickled object graph is measured before anything walks it
(:func:`walk_object_graph`), and every tensor must describe no more elements than its stored bytes hold
(:func:`check_view_bounds`, :func:`check_stored_tensor`).
"""

import math
import mmap
import pickletools
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import torch

from .escaping import printable_repr

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

_OPCODES: dict[int, pickletools.OpcodeInfo] = {ord(op.code): op for op in pickletools.opcodes}
_MEMO_WRITES = {"PUT", "BINPUT", "LONG_BINPUT"}
_SIZED_VALUES = {"BINPUT", "LONG_BINPUT", "FRAME"}
# Byte-counted arguments: pickletools' length code -> (width of the count, whether it is signed).
_COUNTED = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


class UnsafeFileError(ValueError):
    """A file would make a reader exceed a safety bound, or describes data that its stored bytes do not back.

    The message names the file and the bound; readers let it through unchanged instead of calling the file corrupt.
    """


def object_budget(pickle_bytes: int) -> int:
    """How many objects a walk over data unpickled from ``pickle_bytes`` bytes may visit, shared references expanded."""
    return _OBJECT_BUDGET_FLOOR + _OBJECTS_PER_BYTE * max(int(pickle_bytes), 0)


def scan_pickle(data: bytes | bytearray | memoryview | mmap.mmap, start: int = 0, *, source: str) -> int:
    """Validate every opcode of the pickle at ``data[start:]`` up to its STOP, before anything unpickles it.

    Each opcode must be known and each declared argument length must fit in the data, and memo indices are bounded
    by the opcode count so far: the C unpickler sizes its memo table from the largest index it sees and allocates
    counted byte arrays before reading them, so one opcode of a ten-byte pickle could otherwise make it allocate
    tens of gigabytes. Only lengths and memo indices are read (Python 2 byte strings, which pickletools cannot
    decode, pass).

    Returns:
        The offset just after the STOP opcode.

    Raises:
        UnsafeFileError: a memo index beyond anything the pickle could have stored.
        ValueError: an unknown opcode, an argument running past the data, or no STOP.
    """
    end = len(data)
    position, count = start, 0
    while position < end:
        opcode = _OPCODES.get(data[position])
        if opcode is None:
            raise ValueError(f"unknown pickle opcode {data[position]:#04x} at byte {position}")
        argument_start = position + 1
        length, value = _argument(data, argument_start, opcode, end)
        count += 1
        if opcode.name in _MEMO_WRITES and not 0 <= value <= count:
            raise UnsafeFileError(
                f"{source} writes pickle memo entry {value} at opcode {count} (byte {position}); a pickle numbers "
                f"its memo entries in order, so the index cannot exceed the opcode count"
            )
        position = argument_start + length
        if opcode.name == "STOP":
            return position
    raise ValueError(f"the pickle ends at byte {end} without its STOP opcode")


def _argument(data: Any, start: int, opcode: pickletools.OpcodeInfo, end: int) -> tuple[int, int]:
    """(length of ``opcode``'s argument at ``start``, its value when it is a memo index or frame size, else 0)."""
    descriptor = opcode.arg
    if descriptor is None:
        return 0, 0
    if descriptor.n >= 0:
        length = descriptor.n
        if start + length > end:
            raise ValueError(f"opcode {opcode.name} at byte {start - 1} runs past the end of the pickle")
        value = int.from_bytes(data[start : start + length], "little") if opcode.name in _SIZED_VALUES else 0
        if opcode.name == "FRAME" and start + length + value > end:
            raise ValueError(f"a frame at byte {start - 1} declares {value} bytes; fewer remain")
        return length, value
    if descriptor.n == pickletools.UP_TO_NEWLINE:
        lines = 2 if descriptor.name.endswith("_pair") else 1
        stop = start - 1
        for _ in range(lines):
            stop = data.find(b"\n", stop + 1, end)
            if stop < 0:
                raise ValueError(f"opcode {opcode.name} at byte {start - 1} is missing its newline")
        value = 0
        if opcode.name == "PUT":
            text = bytes(data[start:stop])
            if not text.isdigit() or len(text) > 19:
                raise ValueError(f"PUT at byte {start - 1} has the memo index {text[:40]!r}")
            value = int(text)
        return stop + 1 - start, value
    width, signed = _COUNTED[descriptor.n]
    if start + width > end:
        raise ValueError(f"opcode {opcode.name} at byte {start - 1} runs past the end of the pickle")
    counted = int.from_bytes(data[start : start + width], "little", signed=signed)
    if counted < 0 or start + width + counted > end:
        raise ValueError(
            f"opcode {opcode.name} at byte {start - 1} declares {counted} bytes; {end - start - width} remain"
        )
    return width + counted, 0


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

    The walk is iterative (depth never reaches Python's recursion limit) and counts what a recursive walk that cuts
    cycles would visit: shared references as many times as it meets them, a reference back to a container on the
    current path once. The size of a finished container is reused for later references to it unless a cycle passes
    through it (then it is walked again); either way the work stays within ``max_objects`` steps. A pickle that references one list twice,
    that list referencing the next twice, and so on, stays a few bytes per level but doubles the tree each time:
    this refuses it after about ``log2(max_objects)`` levels instead of walking it. ``visit`` is called on each
    container as it is walked and on every reference to a non-container.

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
    depth_on_path = {id(root): 0}
    no_cut = max_depth + 1
    counted = 1  # objects met so far, the walk's work; it never exceeds the final tree size
    # Each frame: [container, child iterator, tree size so far, shallowest depth on the path its walk cut back to].
    frames: list[list[Any]] = [[root, iter(first), 1, no_cut]]
    while True:
        frame = frames[-1]
        child = next(frame[1], _END)
        if child is _END:
            frames.pop()
            depth = len(frames)
            del depth_on_path[id(frame[0])]
            # A size is reused only if no cycle passes through the container or above it: then no container of
            # its subtree can be on the path when it is met again, and the size is the same from every path.
            if frame[3] > depth:
                finished[id(frame[0])] = frame[2]
            if not frames:
                return frame[2]
            frames[-1][2] += frame[2]
            frames[-1][3] = min(frames[-1][3], frame[3])
            continue
        if id(child) in finished:
            added = finished[id(child)]
        elif id(child) in depth_on_path:
            frame[3] = min(frame[3], depth_on_path[id(child)])
            added = 1
        else:
            if visit is not None:
                visit(child)
            grandchildren = children(child)
            added = 1
            if grandchildren is not None:
                if len(frames) >= max_depth:
                    raise UnsafeFileError(
                        f"{source} nests containers more than {max_depth} levels deep; no checkpoint or config needs "
                        f"that many, and walking it could exhaust the stack"
                    )
                depth_on_path[id(child)] = len(frames)
                frames.append([child, iter(grandchildren), 0, no_cut])
        frames[-1][2] += added
        counted += added
        if counted > max_objects:
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
            f"{source} holds a tensor with an invalid layout: offset {printable_repr(storage_offset)}, "
            f"size {printable_repr(size)}, stride {printable_repr(stride)}"
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
