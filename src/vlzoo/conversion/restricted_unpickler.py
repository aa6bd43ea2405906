"""Read torch checkpoints as data: tensors and plain containers are rebuilt, every other class is inert.

The same unpickler vets a file before ``torch.load`` sees it (:func:`probe_torch_zip`, :func:`probe_legacy_file`):
in that mode no stored bytes are read, tensors are only checked against the sizes of their storage records, and
every global the file names is recorded. Nothing the file names is ever imported, and nothing it reaches can be
changed: the classes and functions it may use are sealed stand-ins, so a BUILD opcode cannot rewrite them for the
rest of the process.
"""

import _compat_pickle
import argparse
import collections
import io
import mmap
import pickle
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .escaping import printable, printable_repr
from .limits import (
    UnsafeFileError,
    check_stored_tensor,
    check_view_bounds,
    object_budget,
    plain_children,
    scan_pickle,
    walk_object_graph,
)

__all__ = [
    "InertObject",
    "NamespaceRecord",
    "Probe",
    "check_data_graph",
    "data_children",
    "is_inert_class",
    "probe_legacy_file",
    "probe_torch_zip",
    "read_torch_zip_as_data",
]


def _refuse_change(target: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f"the file tries to modify {target}; a checkpoint may only describe new data, never change existing objects"
    )


class _SealedType(type):
    """Metaclass of the stand-in classes: a file can create instances of them but never change a class."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise _refuse_change(f"the class {cls.__name__}")

    def __delattr__(cls, name: str) -> None:
        raise _refuse_change(f"the class {cls.__name__}")


class _InstanceMethod:
    """A method that pickle opcodes (BUILD, APPEND) may call on an instance; reached on the class, it refuses.

    Without it, BUILD on a stand-in class object would find the plain function and fail with an unrelated TypeError.
    """

    def __init__(self, function: Any) -> None:
        self.function = function

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return _Refusal(f"the class {owner.__name__}")
        return self.function.__get__(instance, owner)


class _Refusal:
    """What a class-level lookup of an instance method returns: calling it raises instead of changing the class."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse_change(self.target)


class InertObject(metaclass=_SealedType):
    """Stand-in for an object whose class the safe loader refuses to import or construct.

    Calling it, building it from a pickle state or filling it like a list/dict only records the data it was given;
    nothing of the original class (constructor, ``__setstate__``, ``__reduce__`` target) ever runs.
    """

    inert_class_name = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        # Fields are set here, not in __init__, because pickle's NEWOBJ creates objects without calling __init__.
        self = super().__new__(cls)
        self.args = args
        self.kwargs = kwargs
        self.state = None
        self.items = {}
        self.list_items = []
        return self

    @_InstanceMethod
    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    @_InstanceMethod
    def append(self, value: Any) -> None:
        self.list_items.append(value)

    @_InstanceMethod
    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> "InertObject":
        # A pickle may call the result of a neutralised call (e.g. getattr(module, "system")(...)): record it only.
        return _inert_class(f"{self.inert_class_name}(...)")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<inert {printable(self.inert_class_name)}>"


class NamespaceRecord(InertObject):
    """What an ``argparse.Namespace`` in a checkpoint becomes: a record of its attributes, read as a plain dict.

    Training scripts store their arguments this way (BEiT-3, DeepSpeed and TransVG checkpoints). The real class is
    never handed to the unpickler, so no opcode can reach ``argparse.Namespace`` itself.
    """

    inert_class_name = "argparse.Namespace"


_INERT_CLASSES: dict[str, type[InertObject]] = {}


def _inert_class(qualified_name: str) -> type[InertObject]:
    """One stand-in class per refused global, so that identical globals stay identical (e.g. as dict keys)."""
    if qualified_name not in _INERT_CLASSES:
        _INERT_CLASSES[qualified_name] = _SealedType(
            f"Inert[{qualified_name}]", (InertObject,), {"inert_class_name": qualified_name}
        )
    return _INERT_CLASSES[qualified_name]


def is_inert_class(obj: Any) -> bool:
    """Whether ``obj`` is a stand-in class produced by the restricted unpickler (not an instance)."""
    return isinstance(obj, type) and issubclass(obj, InertObject)


class _Sealed:
    """Base of the helper objects the unpickler hands to a file: no attribute can be set, BUILD is refused."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise _refuse_change(repr(self))

    def __delattr__(self, name: str) -> None:
        raise _refuse_change(repr(self))

    def __setstate__(self, state: Any) -> None:
        raise _refuse_change(repr(self))

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


class _SealedFunction(_Sealed):
    """A function the file may call (through REDUCE) but not modify, unlike a plain Python function object."""

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function: Any) -> None:
        self._init(_name=name, _function=function)

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __repr__(self) -> str:
        return f"<{self._name}>"


class _StorageType(_Sealed):
    """What the pickle's ``torch.<Dtype>Storage`` global stands for: only its element type matters here."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self._init(name=name, dtype=dtype)

    def __call__(self, *args: Any) -> Any:
        raise pickle.UnpicklingError(
            f"the file calls torch.{self.name}(...), which returns uninitialised memory; only storages read from the "
            f"file's own records are accepted"
        )

    def __repr__(self) -> str:
        return f"<torch.{self.name}>"


class _DirectTensor(metaclass=_SealedType):
    """Stands for ``torch.Tensor`` and ``torch.nn.Parameter``: usable as a type tag, refused as a constructor.

    ``torch.Tensor(5)``, ``Tensor.__new__(Tensor, 5)`` and friends return uninitialised memory; ``torch.save`` never
    writes such calls (tensors are rebuilt from storage records), so a file that does is refused.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(
            "the file constructs a tensor directly (torch.Tensor(...) or Parameter(...)), which returns uninitialised "
            "memory; only tensors rebuilt from the file's stored bytes are accepted"
        )


class _Storage(_Sealed):
    """A storage record of the file: its bytes in load mode, only its size in probe mode (``untyped`` is None)."""

    __slots__ = ("key", "dtype", "nbytes", "untyped", "source")

    def __init__(
        self, key: str, dtype: torch.dtype, nbytes: int, untyped: torch.UntypedStorage | None, source: str
    ) -> None:
        self._init(key=key, dtype=dtype, nbytes=nbytes, untyped=untyped, source=source)

    def __repr__(self) -> str:
        return f"<storage record {printable(self.key)}>"


class _TensorLayout(_Sealed):
    """A tensor as the probe sees it: checked against its storage record, never materialised."""

    __slots__ = ("storage", "size")

    def __init__(self, storage: _Storage, size: tuple[int, ...]) -> None:
        self._init(storage=storage, size=size)

    def __repr__(self) -> str:
        return f"<tensor of size {list(self.size)}>"


# Legacy typed-storage names as torch.save writes them in the storage record of each tensor.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64,
    "UntypedStorage": torch.uint8,
}

# Read from the module dict: ``getattr(torch, name)`` could import a lazily loaded submodule. torch.dtype objects
# have no attributes a pickle could set.
_TORCH_DTYPES: dict[str, torch.dtype] = {name: v for name, v in vars(torch).items() if isinstance(v, torch.dtype)}


def _checked_view(storage: Any, storage_offset: Any, size: Any, stride: Any, dtype: torch.dtype) -> Any:
    """A tensor over ``storage`` once its layout is checked to stay within it (``Tensor.set_`` checks less)."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor refers to {type(storage).__name__} instead of a stored buffer")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise pickle.UnpicklingError(
            f"a tensor's size and stride must be tuples, got {printable_repr(size)} and {printable_repr(stride)}"
        )
    size, stride = tuple(size), tuple(stride)
    check_view_bounds(size, stride, storage_offset, storage.nbytes // dtype.itemsize, source=storage.source)
    if storage.untyped is None:
        return _TensorLayout(storage, size)
    tensor = torch.empty((0,), dtype=dtype)
    return tensor.set_(storage.untyped, storage_offset, size, stride)


def _storage_dtype(storage: Any) -> torch.dtype:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor refers to {type(storage).__name__} instead of a stored buffer")
    return storage.dtype


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> Any:
    return _checked_view(storage, storage_offset, size, stride, _storage_dtype(storage))


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any, backward_hooks: Any, metadata=None
) -> Any:
    return _checked_view(storage, storage_offset, size, stride, _storage_dtype(storage))


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata=None,
) -> Any:
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError(f"a tensor names {printable_repr(dtype)} as its dtype")
    return _checked_view(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> Any:
    # Parameters are kept as plain tensors: a state dict needs values, not autograd leaves.
    return data


_TENSOR_REBUILDERS: dict[tuple[str, str], _SealedFunction] = {
    ("torch._utils", name): _SealedFunction(f"torch._utils.{name}", function)
    for name, function in (
        ("_rebuild_tensor", _rebuild_tensor),
        ("_rebuild_tensor_v2", _rebuild_tensor_v2),
        ("_rebuild_tensor_v3", _rebuild_tensor_v3),
        ("_rebuild_parameter", _rebuild_parameter),
        ("_rebuild_parameter_with_state", _rebuild_parameter),
    )
}


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # Tensors with Python attributes or of a subclass: rebuilt as the plain tensor their rebuild function gives.
    if func not in _TENSOR_REBUILDERS.values() or not isinstance(args, tuple):
        raise pickle.UnpicklingError(
            f"_rebuild_from_type_v2 is asked to call {printable_repr(func)}, not a tensor rebuild"
        )
    return func(*args)


def _plain_defaultdict(*args: Any) -> dict:
    # The default factory is never kept, so nothing can be called on a missing key.
    return {}


def _counter(*args: Any) -> collections.Counter:
    if len(args) > 1 or (args and not isinstance(args[0], dict)):
        raise pickle.UnpicklingError("collections.Counter is rebuilt from a dict of counts only")
    return collections.Counter(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Protocol 0/1 object creation, limited to stand-ins."""
    if is_inert_class(cls):
        return cls(state) if state is not None and cls is not NamespaceRecord else cls()
    return _inert_class("copyreg._reconstructor")(cls, base, state)


# Globals the restricted unpickler resolves to real objects; everything else becomes an inert stand-in. Each value is
# either an immutable built-in type or a sealed stand-in, so that no opcode can modify what it names.
_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): _SealedFunction("collections.Counter", _counter),
    ("collections", "defaultdict"): _SealedFunction("collections.defaultdict", _plain_defaultdict),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("copyreg", "_reconstructor"): _SealedFunction("copyreg._reconstructor", _reconstructor),
    ("argparse", "Namespace"): NamespaceRecord,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): _DirectTensor,
    ("torch.nn.parameter", "Parameter"): _DirectTensor,
    ("torch._tensor", "_rebuild_from_type_v2"): _SealedFunction(
        "torch._tensor._rebuild_from_type_v2", _rebuild_from_type
    ),
    **_TENSOR_REBUILDERS,
}


class _Records:
    """Where the storages of a file come from; ``persistent_load`` asks :meth:`storage` for each storage id."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def storage(self, pid: Any) -> _Storage:
        raise pickle.UnpicklingError(f"unexpected persistent id {printable_repr(pid)}")

    def _declared(self, storage_type: Any, key: Any, numel: Any) -> tuple[torch.dtype, int]:
        """Validate one storage declaration; a key declared again must name the same type and size."""
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or type(numel) is not int:
            raise pickle.UnpicklingError(f"invalid storage record {printable_repr((storage_type, key, numel))}")
        if numel < 0:
            raise pickle.UnpicklingError(f"storage record {printable(key)} declares {numel} elements")
        known = self.storages.get(key)
        nbytes = numel * storage_type.dtype.itemsize
        if known is not None and (known.dtype, known.nbytes) != (storage_type.dtype, nbytes):
            raise UnsafeFileError(
                f"{self.source} declares storage record {printable(key)} twice, as {known.nbytes} bytes of "
                f"{known.dtype} and as {nbytes} bytes of {storage_type.dtype}"
            )
        return storage_type.dtype, numel


class _ZipRecords(_Records):
    """The storage records of a torch zip checkpoint, read on first use (only sized when ``read_data`` is false)."""

    def __init__(self, zip_file: zipfile.ZipFile, prefix: str, source: str, *, read_data: bool) -> None:
        super().__init__(source)
        self.zip_file = zip_file
        self.prefix = prefix
        self.read_data = read_data
        self.byteorder = sys.byteorder
        names = zip_file.namelist()
        if f"{prefix}byteorder" in names:
            self.byteorder = zip_file.read(f"{prefix}byteorder").decode("ascii", errors="replace")
            if self.byteorder not in ("little", "big"):
                raise pickle.UnpicklingError(f"unknown byte order record '{printable(self.byteorder)}'")

    def storage(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {printable_repr(pid)}")
        _, storage_type, key, _location, numel = pid
        # The recorded device (e.g. "cuda:0") is ignored: everything is rebuilt on the CPU.
        dtype, numel = self._declared(storage_type, key, numel)
        if key in self.storages:
            return self.storages[key]
        name = f"{self.prefix}data/{key}"
        nbytes = numel * dtype.itemsize
        try:
            declared = self.zip_file.getinfo(name).file_size
        except KeyError:
            raise pickle.UnpicklingError(f"storage record data/{printable(key)} is missing") from None
        if declared < nbytes:
            raise UnsafeFileError(
                f"{self.source}: storage record data/{printable(key)} holds {declared} bytes; the pickle declares "
                f"{nbytes}"
            )
        untyped = None
        if self.read_data:
            untyped = torch.UntypedStorage(0)
            if nbytes:
                data = bytearray(self.zip_file.read(name)[:nbytes])
                untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage()
                if self.byteorder != sys.byteorder:
                    untyped.byteswap(dtype)
        self.storages[key] = _Storage(key, dtype, nbytes, untyped, self.source)
        return self.storages[key]


class _LegacyRecords(_Records):
    """Storage declarations of a legacy (pre-zip) torch file; their bytes follow the pickles and are checked later."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.roots: dict[str, int] = {}

    def storage(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {printable_repr(pid)}")
        _, storage_type, key, _location, numel, view = pid
        dtype, numel = self._declared(storage_type, key, numel)
        root = self.storages.setdefault(key, _Storage(key, dtype, numel * dtype.itemsize, None, self.source))
        self.roots[key] = numel
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3:
            raise pickle.UnpicklingError(f"invalid storage view {printable_repr(view)}")
        view_key, offset, view_size = view
        if not isinstance(view_key, str) or type(offset) is not int or type(view_size) is not int:
            raise pickle.UnpicklingError(f"invalid storage view {printable_repr(view)}")
        if offset < 0 or view_size < 0 or offset + view_size > numel:
            raise UnsafeFileError(
                f"{self.source} declares a view of {view_size} elements at {offset} into storage "
                f"{printable(key)} of {numel} elements"
            )
        return _Storage(view_key, dtype, view_size * dtype.itemsize, None, self.source)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the data globals above; any other global becomes an inert class that is never imported."""

    def __init__(self, file: BinaryIO, records: _Records) -> None:
        # UTF-8 for Python 2 byte strings, as torch.load does.
        super().__init__(file, encoding="utf-8")
        self.records = records
        self.neutralised: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 pickles name Python 2 modules (``__builtin__``); stdlib's own mapping is plain data.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _DATA_GLOBALS:
            return _DATA_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        qualified_name = f"{module}.{name}"
        self.neutralised.add(qualified_name)
        return _inert_class(qualified_name)

    def persistent_load(self, pid: Any) -> _Storage:
        return self.records.storage(pid)


def _unpickle(data: bytes, records: _Records) -> tuple[Any, tuple[str, ...]]:
    scan_pickle(data, source=records.source)
    unpickler = _RestrictedUnpickler(io.BytesIO(data), records)
    return unpickler.load(), tuple(sorted(unpickler.neutralised))


def data_children(value: Any) -> Iterable[Any] | None:
    """The elements of unpickled data, as :func:`~vlzoo.conversion.limits.walk_object_graph` walks them."""
    if isinstance(value, InertObject):
        return (value.args, value.kwargs, value.state, value.items, value.list_items)
    if isinstance(value, argparse.Namespace):
        return (vars(value),)
    return plain_children(value)


def check_data_graph(value: Any, *, source: str, pickle_bytes: int) -> list[Any]:
    """Bound the depth and expanded size of unpickled data; returns its tensors (and probe layouts), each once."""
    found: dict[int, Any] = {}

    def visit(obj: Any) -> None:
        if isinstance(obj, (torch.Tensor, _TensorLayout)):
            found.setdefault(id(obj), obj)

    walk_object_graph(
        value, source=source, max_objects=object_budget(pickle_bytes), children=data_children, visit=visit
    )
    return list(found.values())


@dataclass(frozen=True)
class Probe:
    """What vetting a torch file found: the globals it names outside the data vocabulary and its pickle size."""

    neutralised: tuple[str, ...]
    pickle_bytes: int


def _open_zip_records(zip_file: zipfile.ZipFile, source: str, *, read_data: bool) -> tuple[_ZipRecords, bytes]:
    names = zip_file.namelist()
    pickles = [name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise pickle.UnpicklingError(f"expected one '<folder>/data.pkl' record, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}constants.pkl" in names:
        raise pickle.UnpicklingError("this is a TorchScript archive, not a saved state dict")
    return _ZipRecords(zip_file, prefix, source, read_data=read_data), zip_file.read(pickles[0])


def probe_torch_zip(path: str | Path) -> Probe:
    """Vet a torch zip checkpoint without reading its stored bytes.

    Validates the pickle's opcodes, unpickles it with tensors reduced to layouts checked against the sizes of their
    storage records, refuses direct tensor construction and bounds the depth and expanded size of the result.

    Raises:
        UnsafeFileError: a bound is exceeded; ``pickle.UnpicklingError`` and friends: the file is malformed.
    """
    source = f"checkpoint file {path}"
    with zipfile.ZipFile(path) as zip_file:
        records, data = _open_zip_records(zip_file, source, read_data=False)
        value, neutralised = _unpickle(data, records)
    check_data_graph(value, source=source, pickle_bytes=len(data))
    return Probe(neutralised, len(data))


def read_torch_zip_as_data(path: str | Path) -> tuple[Any, tuple[str, ...]]:
    """Unpickle a torch zip checkpoint without importing or running anything it names.

    Returns the unpickled object and the sorted names of the classes/functions replaced by inert stand-ins. Every
    tensor in it is a view within the bytes of a storage record of the file (checked after loading, too, so that
    no opcode can have swapped one in from elsewhere).

    Raises:
        UnsafeFileError: a bound is exceeded; ``zipfile.BadZipFile``, ``pickle.UnpicklingError``, ``EOFError`` and
            friends for unreadable files (the caller turns them into one clear error).
    """
    source = f"checkpoint file {path}"
    with zipfile.ZipFile(path) as zip_file:
        records, data = _open_zip_records(zip_file, source, read_data=True)
        value, neutralised = _unpickle(data, records)
    stored = {storage.untyped.data_ptr() for storage in records.storages.values() if storage.nbytes}
    for tensor in check_data_graph(value, source=source, pickle_bytes=len(data)):
        check_stored_tensor(tensor, source=source)
        if tensor.numel() and tensor.untyped_storage().data_ptr() not in stored:
            raise UnsafeFileError(f"{source} holds a tensor that is not backed by one of its storage records")
        if tensor.requires_grad or tensor._backward_hooks:
            raise UnsafeFileError(f"{source} modifies a tensor after rebuilding it (BUILD on a tensor)")
    return value, neutralised


# torch.save's legacy format: three small pickles, the object pickle, the list of storage keys, then each storage as
# an 8-byte little-endian element count followed by its bytes.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


def probe_legacy_file(path: str | Path) -> Probe:
    """Vet a legacy (non-zip) torch file: every pickle, every storage declaration and where each storage's bytes lie.

    ``torch.load`` allocates each storage the pickle declares before reading it and leaves a storage that the key
    list omits uninitialised; this checks that every declared storage is listed once and that its bytes are in the
    file with the declared size, so that nothing is allocated beyond the file or left uninitialised.

    Raises:
        UnsafeFileError: a bound is exceeded or storages are inconsistent; ``pickle.UnpicklingError`` and friends
            when the file is malformed. A file that names globals outside the data vocabulary is not an error here:
            its :attr:`Probe.neutralised` lists them.
    """
    source = f"checkpoint file {path}"
    records = _LegacyRecords(source)
    named: set[str] = set()
    total = 0
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        position = 0

        def next_pickle(records_for_it: _Records) -> Any:
            nonlocal position, total
            end = scan_pickle(view, position, source=source)
            data = view[position:end]
            position, total = end, total + len(data)
            value, neutralised = _unpickle(data, records_for_it)
            check_data_graph(value, source=source, pickle_bytes=len(data))
            named.update(neutralised)
            return value

        magic = next_pickle(_Records(source))
        if named:
            return Probe(tuple(sorted(named)), total)
        if magic != _LEGACY_MAGIC_NUMBER:
            raise pickle.UnpicklingError("the file does not start with torch's magic number: it is a plain pickle")
        protocol = next_pickle(_Records(source))
        if protocol != _LEGACY_PROTOCOL_VERSION:
            raise pickle.UnpicklingError(f"unknown legacy protocol version {printable_repr(protocol)}")
        next_pickle(_Records(source))  # system information
        next_pickle(records)
        keys = next_pickle(_Records(source))
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise pickle.UnpicklingError("the storage key list is not a list of strings")
        if len(set(keys)) != len(keys) or set(keys) != set(records.roots):
            raise UnsafeFileError(
                f"{source} lists storages {printable(sorted(keys))} but its tensors use "
                f"{printable(sorted(records.roots))}; a storage missing from the list would stay uninitialised"
            )
        for key in keys:
            numel = records.roots[key]
            start = position + 8
            end = start + numel * records.storages[key].dtype.itemsize
            if end > len(view) or int.from_bytes(view[position:start], "little") != numel:
                raise UnsafeFileError(
                    f"{source}: the bytes of storage {printable(key)} ({numel} elements declared) are missing or of "
                    f"another size"
                )
            position = end
    return Probe(tuple(sorted(named)), total)
