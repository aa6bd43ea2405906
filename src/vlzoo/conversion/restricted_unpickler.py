"""Read a torch zip checkpoint as data: tensors and plain containers are rebuilt, every other class is inert."""

import _compat_pickle
import argparse
import collections
import io
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["InertObject", "is_inert_class", "read_torch_zip_as_data"]


class InertObject:
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

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> "InertObject":
        # A pickle may call the result of a neutralised call (e.g. getattr(module, "system")(...)): record it only.
        return _inert_class(f"{self.inert_class_name}(...)")(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<inert {self.inert_class_name}>"


_INERT_CLASSES: dict[str, type[InertObject]] = {}


def _inert_class(qualified_name: str) -> type[InertObject]:
    """One stand-in class per refused global, so that identical globals stay identical (e.g. as dict keys)."""
    if qualified_name not in _INERT_CLASSES:
        _INERT_CLASSES[qualified_name] = type(
            f"Inert[{qualified_name}]", (InertObject,), {"inert_class_name": qualified_name}
        )
    return _INERT_CLASSES[qualified_name]


def is_inert_class(obj: Any) -> bool:
    """Whether ``obj`` is a stand-in class produced by the restricted unpickler (not an instance)."""
    return isinstance(obj, type) and issubclass(obj, InertObject)


@dataclass(frozen=True)
class _StorageType:
    """What the pickle's ``torch.<Dtype>Storage`` global stands for: only its element type matters here."""

    dtype: torch.dtype


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


# Read from the module dict: ``getattr(torch, name)`` could import a lazily loaded submodule.
_TORCH_DTYPES: dict[str, torch.dtype] = {name: v for name, v in vars(torch).items() if isinstance(v, torch.dtype)}


@dataclass
class _LoadedStorage:
    untyped: torch.UntypedStorage
    dtype: torch.dtype


def _checked_view(storage: Any, storage_offset: Any, size: Any, stride: Any, dtype: torch.dtype) -> torch.Tensor:
    """Build a tensor over ``storage`` after checking that it stays inside it (``Tensor.set_`` does not check)."""
    if not isinstance(storage, _LoadedStorage):
        raise pickle.UnpicklingError(f"a tensor refers to {type(storage).__name__} instead of a stored buffer")
    size, stride = tuple(size), tuple(stride)
    numbers = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
        raise pickle.UnpicklingError(f"invalid tensor layout: offset {storage_offset}, size {size}, stride {stride}")
    element_size = torch.empty((), dtype=dtype).element_size()
    available = storage.untyped.nbytes() // element_size
    needed = 0 if 0 in size else storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if needed > available:
        raise pickle.UnpicklingError(f"a tensor of size {size} needs {needed} elements; its storage holds {available}")
    tensor = torch.empty((0,), dtype=dtype)
    return tensor.set_(storage.untyped, storage_offset, size, stride)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _checked_view(storage, storage_offset, size, stride, _storage_dtype(storage))


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any, backward_hooks: Any, metadata=None
) -> torch.Tensor:
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
) -> torch.Tensor:
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError(f"a tensor names {dtype!r} as its dtype")
    return _checked_view(storage, storage_offset, size, stride, dtype)


def _storage_dtype(storage: Any) -> torch.dtype:
    if not isinstance(storage, _LoadedStorage):
        raise pickle.UnpicklingError(f"a tensor refers to {type(storage).__name__} instead of a stored buffer")
    return storage.dtype


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> Any:
    # Parameters are kept as plain tensors: a state dict needs values, not autograd leaves.
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    # ``func`` can only be one of the rebuild functions above or a stand-in: both are harmless to call.
    return func(*args)


def _plain_defaultdict(*args: Any) -> dict:
    # The default factory is never kept, so nothing can be called on a missing key.
    return {}


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Protocol 0/1 object creation, limited to stand-ins and the plain data classes allowed below."""
    if is_inert_class(cls):
        return cls(state) if state is not None else cls()
    if cls is argparse.Namespace and base is object:
        return object.__new__(cls)
    return _inert_class("copyreg._reconstructor")(cls, base, state)


# Globals the restricted unpickler resolves to real objects; everything else becomes an inert stand-in.
_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("collections", "defaultdict"): _plain_defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
}


@dataclass
class _ZipArchive:
    """The records of one torch zip checkpoint, all under a single top-level folder."""

    zip_file: zipfile.ZipFile
    prefix: str
    byteorder: str = sys.byteorder
    storages: dict[str, _LoadedStorage] = field(default_factory=dict)

    @classmethod
    def open(cls, zip_file: zipfile.ZipFile) -> "_ZipArchive":
        names = zip_file.namelist()
        pickles = [name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise pickle.UnpicklingError(f"expected one '<folder>/data.pkl' record, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}constants.pkl" in names:
            raise pickle.UnpicklingError("this is a TorchScript archive, not a saved state dict")
        archive = cls(zip_file, prefix)
        if f"{prefix}byteorder" in names:
            archive.byteorder = zip_file.read(f"{prefix}byteorder").decode("ascii", errors="replace")
            if archive.byteorder not in ("little", "big"):
                raise pickle.UnpicklingError(f"unknown byte order record {archive.byteorder!r}")
        return archive

    def storage(self, storage_type: Any, key: Any, numel: Any) -> _LoadedStorage:
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"invalid storage record ({storage_type!r}, {key!r}, {numel!r})")
        if key in self.storages:
            return self.storages[key]
        dtype = storage_type.dtype
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        try:
            data = self.zip_file.read(f"{self.prefix}data/{key}")
        except KeyError:
            raise pickle.UnpicklingError(f"storage record data/{key} is missing") from None
        if len(data) < nbytes:
            raise pickle.UnpicklingError(f"storage record data/{key} holds {len(data)} bytes, expected {nbytes}")
        if nbytes == 0:
            untyped = torch.UntypedStorage(0)
        else:
            untyped = torch.frombuffer(bytearray(data[:nbytes]), dtype=torch.uint8).untyped_storage()
            if self.byteorder != sys.byteorder:
                untyped.byteswap(dtype)
        self.storages[key] = _LoadedStorage(untyped, dtype)
        return self.storages[key]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the data globals above; any other global becomes an inert class that is never imported."""

    def __init__(self, file: io.BytesIO, archive: _ZipArchive) -> None:
        super().__init__(file)
        self.archive = archive
        self.neutralised: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 pickles name Python 2 modules (``__builtin__``); stdlib's own mapping is plain data.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _DATA_GLOBALS:
            return _DATA_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        qualified_name = f"{module}.{name}"
        self.neutralised.add(qualified_name)
        return _inert_class(qualified_name)

    def persistent_load(self, pid: Any) -> _LoadedStorage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        # The recorded device (e.g. "cuda:0") is ignored: everything is rebuilt on the CPU.
        return self.archive.storage(storage_type, key, numel)


def read_torch_zip_as_data(path: str) -> tuple[Any, tuple[str, ...]]:
    """Unpickle a torch zip checkpoint without importing or running anything it names.

    Returns the unpickled object and the sorted names of the classes/functions replaced by inert stand-ins.
    Raises ``zipfile.BadZipFile``, ``pickle.UnpicklingError``, ``EOFError`` and friends for unreadable files;
    the caller turns them into one clear error.
    """
    with zipfile.ZipFile(path) as zip_file:
        archive = _ZipArchive.open(zip_file)
        data = zip_file.read(f"{archive.prefix}data.pkl")
        unpickler = _RestrictedUnpickler(io.BytesIO(data), archive)
        result = unpickler.load()
    return result, tuple(sorted(unpickler.neutralised))
