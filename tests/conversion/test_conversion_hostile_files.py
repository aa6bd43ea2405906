"""Hostile and broken checkpoints: refused quickly, with bounded memory and a clear message, and nothing modified.

Each attack file is written here, a few bytes to a few hundred kilobytes. Loads run under an address-space limit of
about 1 GiB above the process's current size, so a loader that expanded shared references, allocated a declared
size or built a huge tensor would fail with MemoryError instead of the expected ValueError.
"""

import argparse
import collections
import io
import os
import pickle
import random
import resource
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from vlzoo.conversion import InertObject, load_checkpoint, load_plain_pickle
from vlzoo.conversion.limits import UnsafeFileError, scan_pickle, walk_object_graph
from vlzoo.conversion.restricted_unpickler import (
    _DATA_GLOBALS,
    NamespaceRecord,
    _inert_class,
    read_torch_zip_as_data,
)
from vlzoo.conversion.safe_load import _torch_load

MAX_SECONDS = 5.0  # every refusal below takes well under a second; the margin is for a loaded machine
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextmanager
def _bounded_memory(extra: int = 1 << 30) -> Iterator[None]:
    """Limit this process's address space to its current size plus ``extra`` while the block runs, and time it."""
    if not Path("/proc/self/status").exists():
        pytest.skip(reason="the address-space limit needs Linux's /proc/self/status")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + extra
    if hard != resource.RLIM_INFINITY and limit > hard:
        pytest.skip(reason="the hard address-space limit is below what the check needs")
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    start = time.perf_counter()
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert time.perf_counter() - start < MAX_SECONDS


def _refused(path: Path, match: str, error: type[Exception] = ValueError) -> pytest.ExceptionInfo:
    with _bounded_memory(), pytest.raises(error, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    return info


def _zip_checkpoint(path: Path, data_pkl: bytes, records: dict[str, bytes] | None = None, **kwargs) -> Path:
    """A torch zip checkpoint written record by record, as torch.save lays it out."""
    with zipfile.ZipFile(path, "w", **kwargs) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", sys.byteorder)
        archive.writestr("archive/version", "3\n")
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


class _StorageRef:
    """Stands for storage record ``key`` of ``numel`` floats when pickled by :class:`_Pickler`."""

    def __init__(self, key: str, numel: int, legacy: bool = False) -> None:
        self.key, self.numel, self.legacy = key, numel, legacy


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            pid = ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
            return (*pid, None) if obj.legacy else pid
        return None


class _View:
    """Pickles as torch's rebuild of a tensor with the given layout over a storage record."""

    def __init__(self, storage: _StorageRef, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Callback:
    """A class torch.load(weights_only=True) refuses, so that a file goes to the restricted unpickler."""


def _pickled(value, protocol: int = 2) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(value)
    return buffer.getvalue()


def _floats(n: int) -> bytes:
    return torch.arange(float(n)).numpy().tobytes()


def _legacy_checkpoint(path: Path, value, keys: list[str], records: dict[str, bytes]) -> Path:
    """A legacy (pre-zip) torch file: magic, protocol, system info, the object, the storage keys, the storages."""
    with open(path, "wb") as handle:
        pickle.dump(LEGACY_MAGIC, handle, protocol=2)
        pickle.dump(1001, handle, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}, handle, protocol=2)
        _Pickler(handle, protocol=2).dump(value)
        pickle.dump(keys, handle, protocol=2)
        for key in keys:
            handle.write((len(records[key]) // 4).to_bytes(8, "little"))
            handle.write(records[key])
    return path


def test_handwritten_files_load_when_sound(tmp_path: Path):
    # The writers above produce files torch.load and the loader accept, so the refusals below are about the attack.
    view = _View(_StorageRef("0", 6), (2, 3), (3, 1))
    for path in (
        _zip_checkpoint(tmp_path / "ok.pt", _pickled({"w": view}), {"0": _floats(6)}),
        _legacy_checkpoint(tmp_path / "ok_legacy.pt", {"w": _View(_StorageRef("0", 6, True), (2, 3), (3, 1))},
                           ["0"], {"0": _floats(6)}),
    ):  # fmt: skip
        loaded = load_checkpoint(path)
        assert loaded.reader == "torch.load(weights_only=True)"
        assert torch.equal(loaded.state_dict["w"], torch.arange(6.0).reshape(2, 3))
    path = _zip_checkpoint(
        tmp_path / "ok_inert.pt", _pickled({"state_dict": {"w": view}, "cb": Callback()}), {"0": _floats(6)}
    )
    assert load_checkpoint(path).reader == "restricted unpickler"


# --- shared references that explode when walked ("billion laughs") ------------------------------------------------


def _laughs(kind: str, levels: int = 64):
    value = []
    for _ in range(levels):
        value = {"list": [value, value], "dict": {"a": value, "b": value}, "tuple": (value, value)}[kind]
    return value


@pytest.mark.parametrize("kind", ["list", "dict", "tuple"])
@pytest.mark.parametrize("reader", ["torch.load", "restricted"])
def test_shared_reference_bomb_is_refused(tmp_path: Path, kind: str, reader: str):
    payload = {"state_dict": {"w": torch.ones(2)}, "meta": _laughs(kind)}
    if reader == "restricted":
        payload["callback"] = Callback()
    path = tmp_path / "laughs.pt"
    torch.save(payload, path)
    assert path.stat().st_size < 10_000  # 2**64 objects once expanded
    _refused(path, "expand to more than")
    if reader == "restricted":
        with _bounded_memory(), pytest.raises(UnsafeFileError, match="expand to more than"):
            read_torch_zip_as_data(path)


def test_shared_module_bomb_is_refused(tmp_path: Path):
    module = nn.Linear(1, 1)
    for _ in range(24):
        module = nn.Sequential(module, module)
    path = tmp_path / "modules.pt"
    torch.save(module, path)
    _refused(path, "expand to more than|levels deep")


def test_shared_reference_bomb_in_plain_pickle_is_refused(tmp_path: Path):
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps(_laughs("list")))
    with _bounded_memory(), pytest.raises(UnsafeFileError, match="expand to more than"):
        load_plain_pickle(path)


def _tree_size(value, active: frozenset = frozenset()) -> int:
    """What a recursive walk that cuts cycles (like the loader's conversion to plain data) visits."""
    if not isinstance(value, list):
        return 1
    if id(value) in active:
        return 1
    return 1 + sum(_tree_size(item, active | {id(value)}) for item in value)


def test_walk_matches_a_recursive_walk_on_shared_and_cyclic_graphs():
    generator = random.Random(0)
    for _ in range(200):
        nodes: list[list] = [[] for _ in range(6)]
        for node in nodes:
            node.extend(generator.choice([*nodes, 0]) for _ in range(generator.randint(0, 3)))
        assert walk_object_graph(nodes[0], source="x", max_objects=10**9) == _tree_size(nodes[0])


def test_cycles_cannot_hide_an_expansion():
    # n -> x -> n is cut while x is on the path, so n alone looks small; every other reference to n expands x.
    x: list = [list(range(10_000))]
    n = [x]
    x.append(n)
    with pytest.raises(UnsafeFileError, match="expand to more than 1,000,000"):
        walk_object_graph([x, *[n] * 1000], source="x", max_objects=1_000_000)


def test_walk_counts_sharing_and_cuts_cycles():
    shared = [1, 2]
    assert walk_object_graph([shared, shared], source="x", max_objects=100) == 7
    cycle: list = [1]
    cycle.append(cycle)
    assert walk_object_graph(cycle, source="x", max_objects=100) == 3
    with pytest.raises(UnsafeFileError, match="x holds shared references"):
        walk_object_graph([shared] * 40, source="x", max_objects=100)


# --- nesting, memo indices and counted lengths --------------------------------------------------------------------

DEPTH = 50_000
DEEP_PICKLES = {
    "lists": b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b".",
    "dicts": b"\x80\x02}" + b"K\x00}" * (DEPTH - 1) + b"s" * (DEPTH - 1) + b".",
    "tuples": b"\x80\x02N" + b"\x85" * DEPTH + b".",
}


@pytest.mark.parametrize("kind", sorted(DEEP_PICKLES))
def test_deep_nesting_is_refused(tmp_path: Path, kind: str):
    data = DEEP_PICKLES[kind]
    _refused(_zip_checkpoint(tmp_path / "deep.pt", data), "more than 100 levels deep", UnsafeFileError)
    legacy = tmp_path / "deep_legacy.pt"
    legacy.write_bytes(data)
    _refused(legacy, "more than 100 levels deep", UnsafeFileError)
    with _bounded_memory(), pytest.raises(UnsafeFileError, match="more than 100 levels deep"):
        load_plain_pickle(legacy)


MEMO_BOMBS = {
    "LONG_BINPUT": b"\x80\x02Nr\xff\xff\xff\xff.",
    "PUT": b"Np4294967295\n.",
}


@pytest.mark.parametrize("opcode", sorted(MEMO_BOMBS))
def test_memo_index_bomb_is_refused(tmp_path: Path, opcode: str):
    # The C unpickler sizes its memo table from the index: 2**32 entries, 32 GiB, from a ten-byte pickle.
    data = MEMO_BOMBS[opcode]
    _refused(_zip_checkpoint(tmp_path / "memo.pt", data), "memo entry 4294967295", UnsafeFileError)
    legacy = tmp_path / "memo_legacy.pt"
    legacy.write_bytes(data)
    _refused(legacy, "memo entry 4294967295", UnsafeFileError)
    with _bounded_memory(), pytest.raises(UnsafeFileError, match="memo entry 4294967295"):
        load_plain_pickle(legacy)


def test_counted_length_beyond_the_data_is_refused(tmp_path: Path):
    # BYTEARRAY8 declaring a terabyte: the C unpickler would allocate it before reading.
    data = b"\x80\x05\x96" + (10**12).to_bytes(8, "little") + b"."
    _refused(_zip_checkpoint(tmp_path / "counted.pt", data), "truncated or corrupt.*declares 1000000000000 bytes")
    with pytest.raises(ValueError, match="declares"):
        scan_pickle(data, source="x")
    assert scan_pickle(pickle.dumps({"a": [1, b"x" * 300, "é"]}, protocol=5), source="x") > 0


# --- tensors that describe more than is stored --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "stride", "numel", "match"),
    [
        ((10**6, 10**6), (0, 0), 1, "describes 1,000,000,000,000 elements"),
        ((1000,), (1,), 4, "needs 1000 elements; its storage holds 4"),
        ((5,), (1,), 0, "needs 5 elements; its storage holds 0"),
        ((3, 3), (1, 1), 5, "describes 9 elements"),
    ],
    ids=["zero-strides", "beyond", "empty-storage", "overlapping"],
)
@pytest.mark.parametrize("fmt", ["zip", "zip-restricted", "legacy"])
def test_tensor_views_beyond_their_storage_are_refused(tmp_path: Path, size, stride, numel: int, match: str, fmt: str):
    legacy = fmt == "legacy"
    value = {"w": _View(_StorageRef("0", numel, legacy), size, stride)}
    if fmt == "zip-restricted":
        value["callback"] = Callback()
    if legacy:
        path = _legacy_checkpoint(tmp_path / "views.pt", value, ["0"], {"0": _floats(numel)})
    else:
        path = _zip_checkpoint(tmp_path / "views.pt", _pickled(value), {"0": _floats(numel)})
    _refused(path, match, UnsafeFileError)


def test_storage_record_smaller_than_declared_is_refused(tmp_path: Path):
    value = {"w": _View(_StorageRef("0", 10**9), (4,), (1,))}
    _refused(
        _zip_checkpoint(tmp_path / "short.pt", _pickled(value), {"0": _floats(4)}), "holds 16 bytes", UnsafeFileError
    )


def test_legacy_storage_left_out_of_the_key_list_is_refused(tmp_path: Path):
    # torch.load allocates the storage from the pickle and fills only the listed ones: this one would be garbage.
    value = {"w": _View(_StorageRef("0", 6, True), (6,), (1,))}
    path = _legacy_checkpoint(tmp_path / "unlisted.pt", value, [], {})
    _refused(path, "would stay uninitialised", UnsafeFileError)
    path = _legacy_checkpoint(tmp_path / "cut.pt", value, ["0"], {"0": _floats(6)})
    path.write_bytes(path.read_bytes()[:-8])
    _refused(path, "missing or of another size", UnsafeFileError)


# --- zip records: compression bombs and corrupted bytes -----------------------------------------------------------


def test_inflating_record_is_refused_before_it_is_read(tmp_path: Path):
    path = _zip_checkpoint(
        tmp_path / "bomb.pt",
        _pickled({"w": _View(_StorageRef("0", 2), (2,), (1,))}),
        {"0": bytes(16 << 20)},
        compression=zipfile.ZIP_DEFLATED,
    )
    assert path.stat().st_size < 200_000
    _refused(path, r"declare 16,[\d,]+ bytes once decompressed", UnsafeFileError)


def test_deflated_records_within_bounds_load(tmp_path: Path):
    source = tmp_path / "plain.pt"
    torch.save({"w": torch.arange(6.0)}, source)
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as rewritten:
        for info in original.infolist():
            rewritten.writestr(info.filename, original.read(info))
    assert torch.equal(load_checkpoint(path).state_dict["w"], torch.arange(6.0))


def _flip_byte_in_record(path: Path, suffix: str) -> None:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    data = bytearray(path.read_bytes())
    header = info.header_offset
    start = header + 30 + int.from_bytes(data[header + 26 : header + 28], "little")
    start += int.from_bytes(data[header + 28 : header + 30], "little")
    data[start + 3] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("reader", ["torch.load", "restricted"])
@pytest.mark.parametrize("record", ["data/0", "data.pkl"])
def test_corrupted_byte_in_a_record_is_detected(tmp_path: Path, reader: str, record: str):
    payload = {"state_dict": {"w": torch.arange(64.0)}, "epoch": 3}
    if reader == "restricted":
        payload["callback"] = Callback()
    path = tmp_path / "flipped.pt"
    torch.save(payload, path)
    _flip_byte_in_record(path, record)
    _refused(path, "truncated or corrupt.*CRC")


def test_duplicate_record_names_are_refused(tmp_path: Path):
    path = _zip_checkpoint(tmp_path / "twice.pt", _pickled({"w": _View(_StorageRef("0", 2), (2,), (1,))}),
                           {"0": _floats(2)})  # fmt: skip
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/0", _floats(2))
    _refused(path, "several records named 'archive/data/0'", UnsafeFileError)


# --- the file cannot change allow-listed classes or the stand-ins -------------------------------------------------

MARKER = "vlzoo_marker"
BUILD_TARGETS = [
    ("argparse", "Namespace", argparse.Namespace),
    ("collections", "OrderedDict", collections.OrderedDict),
    ("collections", "Counter", collections.Counter),
    ("builtins", "set", set),
    ("torch", "Size", torch.Size),
    ("torch", "Tensor", torch.Tensor),
    ("torch.nn.parameter", "Parameter", nn.Parameter),
    ("torch._utils", "_rebuild_tensor_v2", torch._utils._rebuild_tensor_v2),
    ("torch", "FloatStorage", torch.FloatStorage),
    ("copyreg", "_reconstructor", __import__("copyreg")._reconstructor),
    ("os", "system", os.system),
]


def _build_on_global(module: str, name: str, slots: bool) -> bytes:
    """GLOBAL module.name, then BUILD with {MARKER: 1} as the instance dict or (None, {...}) as slot state."""
    state = b"}X" + len(MARKER).to_bytes(4, "little") + MARKER.encode() + b"K\x01s"
    state = b"N" + state + b"\x86" if slots else state
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + state + b"b."


def _stand_ins() -> list:
    return [NamespaceRecord, _inert_class("os.system"), *_DATA_GLOBALS.values()]


@pytest.mark.parametrize("slots", [False, True], ids=["dict-state", "slot-state"])
@pytest.mark.parametrize(("module", "name", "real"), BUILD_TARGETS, ids=[f"{m}.{n}" for m, n, _ in BUILD_TARGETS])
def test_build_cannot_modify_allowed_classes(tmp_path: Path, module: str, name: str, real, slots: bool):
    path = _zip_checkpoint(tmp_path / "build.pt", _build_on_global(module, name, slots))
    with pytest.raises(ValueError):
        load_checkpoint(path)
    with pytest.raises((pickle.UnpicklingError, TypeError, AttributeError)):
        read_torch_zip_as_data(path)
    assert not hasattr(real, MARKER)
    assert not any(hasattr(obj, MARKER) for obj in _stand_ins())


def test_build_on_the_namespace_class_is_refused_by_torch_load_too(tmp_path: Path):
    path = _zip_checkpoint(tmp_path / "namespace.pt", _build_on_global("argparse", "Namespace", slots=True))
    with pytest.raises(pickle.UnpicklingError):
        _torch_load(path)
    assert not hasattr(argparse.Namespace, MARKER) and not hasattr(NamespaceRecord, MARKER)


def test_namespace_becomes_an_inert_record(tmp_path: Path):
    path = tmp_path / "args.pt"
    torch.save({"model": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=0.5)}, path)
    raw = _torch_load(path)
    assert type(raw["args"]) is NamespaceRecord and raw["args"].state == {"lr": 0.5}
    assert load_checkpoint(path).extra == {"args": {"lr": 0.5}}


# --- constructors that return uninitialised memory ----------------------------------------------------------------

UNINITIALISED = {
    "Tensor(n)": b"\x80\x02}X\x01\x00\x00\x00wctorch\nTensor\nJ\x00\xe1\xf5\x05\x85Rs.",
    "Tensor.__new__": b"\x80\x02}X\x01\x00\x00\x00wctorch\nTensor\nJ\x00\xe1\xf5\x05\x85\x81s.",
    "Parameter()": b"\x80\x02}X\x01\x00\x00\x00wctorch.nn.parameter\nParameter\n)Rs.",
    "UntypedStorage(n)": b"\x80\x02}X\x01\x00\x00\x00wctorch.storage\nUntypedStorage\nJ\x00\xe1\xf5\x05\x85Rs.",
    "FloatStorage(n)": b"\x80\x02}X\x01\x00\x00\x00wctorch\nFloatStorage\nJ\x00\xe1\xf5\x05\x85Rs.",
}


@pytest.mark.parametrize("name", sorted(UNINITIALISED))
def test_direct_tensor_construction_is_refused(tmp_path: Path, name: str):
    # torch.load(weights_only=True) itself accepts these and returns 100M floats of leftover memory.
    _refused(_zip_checkpoint(tmp_path / "empty.pt", UNINITIALISED[name]), "uninitialised memory")


@pytest.mark.parametrize(
    "call", [b"ctorch\nFloatTensor\nJ\x00\xe1\xf5\x05\x85R", b"cbuiltins\nbytearray\nJ\x00\xca\x9a;\x85R"]
)
def test_other_allocating_constructors_stay_inert(tmp_path: Path, call: bytes):
    data = b"\x80\x02}X\x01\x00\x00\x00w" + call + b"s."
    path = _zip_checkpoint(tmp_path / "inert.pt", data)
    with _bounded_memory():
        raw, neutralised = read_torch_zip_as_data(path)
    assert isinstance(raw["w"], InertObject) and neutralised
    with pytest.raises(ValueError, match="unknown structure|not a state dict"):
        load_checkpoint(path)


def test_build_on_a_rebuilt_tensor_is_refused(tmp_path: Path):
    # Tensor.__setstate__ would set requires_grad and backward hooks chosen by the file.
    tensor = _pickled({"w": _View(_StorageRef("0", 2), (2,), (1,))})
    data = tensor[:-2] + b"\x88NN\x87b" + tensor[-2:]
    _refused(_zip_checkpoint(tmp_path / "built.pt", data, {"0": _floats(2)}), "truncated or corrupt.*modify")


def test_every_loaded_tensor_is_backed_by_a_record(tmp_path: Path):
    path = tmp_path / "mixed.pt"
    base = torch.arange(12.0)
    torch.save({"a": base, "b": base[2:5], "c": torch.zeros(0), "cb": Callback()}, path)
    raw, _ = read_torch_zip_as_data(path)
    assert raw["a"].untyped_storage().data_ptr() == raw["b"].untyped_storage().data_ptr()
    assert torch.equal(raw["b"], base[2:5]) and raw["c"].numel() == 0
