"""Load an original checkpoint without executing it, and find where in the file its weights are."""

import argparse
import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from transformers.utils import logging

from .escaping import printable, printable_repr
from .limits import UnsafeFileError, check_stored_tensor
from .restricted_unpickler import (
    InertObject,
    NamespaceRecord,
    Probe,
    check_data_graph,
    is_inert_class,
    probe_legacy_file,
    probe_torch_zip,
    read_torch_zip_as_data,
)

logger = logging.get_logger(__name__)

__all__ = ["WEIGHTS_ONLY_ALLOWED_GLOBALS", "LoadedCheckpoint", "load_checkpoint"]

# Globals `torch.load(weights_only=True)` may build besides tensors and plain containers (`collections.OrderedDict`
# is allowed by torch already), as (stand-in, name in the file) pairs: torch resolves the name to the stand-in, so the
# real class is never reachable from the file. Keep each entry plain data and say which released checkpoints need it.
WEIGHTS_ONLY_ALLOWED_GLOBALS: tuple[tuple[type, str], ...] = (
    # Fine-tuned BEiT-3 files, the DeepSpeed `mp_rank_00_model_states.pt` and TransVG/TransVG++ training
    # checkpoints store the training arguments under "args"; they become an inert record, read as a dict.
    (NamespaceRecord, "argparse.Namespace"),
)

# Where a wrapped state dict lives, checked in this order; the first word is the key, the rest the description.
_CONTAINER_ENTRIES = ("state_dict", "model", "module")
_LIGHTNING_MARKERS = ("pytorch-lightning_version", "callbacks", "optimizer_states", "loops")
_DEEPSPEED_MARKERS = ("buffer_names", "ds_config", "ds_version", "dp_world_size")

_ZIP_MAGIC = b"PK\x03\x04"

# torch.save writes uncompressed records; a re-packed archive may deflate them, but never to more than this many
# times the file's size in total (a zip bomb declares gigabytes in a few kilobytes).
_MAX_ZIP_INFLATION = 4
_ZIP_INFLATION_SLACK = 1 << 20
_CRC_CHUNK = 1 << 20

# What reading a damaged or hostile file can raise; all of them become one "truncated or corrupt" error.
_UNREADABLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    RuntimeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    UnicodeDecodeError,
    RecursionError,
    OSError,
    NotImplementedError,
)


@dataclass
class LoadedCheckpoint:
    """Weights and metadata read from an original checkpoint file.

    Attributes:
        state_dict: parameter/buffer name -> tensor, after any requested prefix stripping.
        container: where the weights were found, e.g. "flat state dict", "'model' entry",
            "'state_dict' entry (Lightning)", "'module' entry (DeepSpeed)", "pickled module (read as data)".
        extra: the other top-level entries as plain data (dicts, lists, numbers, strings, tensors); an
            ``argparse.Namespace`` becomes a dict, a neutralised object a dict with a ``"__class__"`` entry.
            For a safetensors file, its string metadata. Names and strings are as the file wrote them: escape them
            with :func:`~vlzoo.conversion.escaping.printable` before showing them.
        reader: "safetensors", "torch.load(weights_only=True)" or "restricted unpickler".
        neutralised: classes/functions named by the file that were replaced by inert stand-ins.
    """

    state_dict: dict[str, torch.Tensor]
    container: str
    extra: dict[str, Any] = field(default_factory=dict)
    reader: str = ""
    neutralised: tuple[str, ...] = ()


def load_checkpoint(path: str | Path, *, strip_prefixes: tuple[str, ...] = ()) -> LoadedCheckpoint:
    """Read ``path`` (.safetensors, or a torch .pth/.pt/.bin/.ckpt file) without executing any code it contains.

    A torch file is vetted first, with bounded memory: a zip archive's records must pass their CRC checks and not
    inflate beyond a few times the file's size; the pickle's opcodes are validated, then it is unpickled with sealed
    stand-ins and no stored bytes read, which refuses direct tensor construction (uninitialised memory), bounds the
    nesting depth and the expanded size of shared references, and checks every tensor against the size of its
    storage record. A file that names only tensors, plain containers and :data:`WEIGHTS_ONLY_ALLOWED_GLOBALS` is
    then read by ``torch.load(weights_only=True)``; a zip checkpoint naming other classes (Lightning callbacks,
    pickled modules) is read by the restricted unpickler, which replaces them with inert stand-ins. Legacy (non-zip)
    files naming other classes are rejected. Every tensor returned is a dense CPU view within its stored bytes.

    Args:
        path: the checkpoint file.
        strip_prefixes: prefixes removed, in order, from every key that starts with them (e.g. ``("model.",)`` for
            a Lightning module that wraps the network); a key that would then collide with another is an error.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a directory, the file is truncated/corrupt or cannot be read safely (a
            :class:`~vlzoo.conversion.limits.UnsafeFileError` names the bound it exceeds), or it holds no
            recognisable state dict (the message lists its top-level keys).
    """
    path = Path(path)
    if isinstance(strip_prefixes, str) or not all(isinstance(p, str) and p for p in strip_prefixes):
        raise TypeError(f"strip_prefixes must be a tuple of non-empty strings, got {strip_prefixes!r}")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.is_dir():
        raise ValueError(
            f"checkpoint {path} is a directory; expected a checkpoint file (.pth, .pt, .bin, .ckpt or .safetensors)"
        )
    with open(path, "rb") as handle:
        head = handle.read(9)
    if not head:
        raise _corrupt(path, "the file is empty")
    if path.suffix == ".safetensors" or (not head.startswith(_ZIP_MAGIC) and _looks_like_safetensors(head, path)):
        state_dict, extra = _read_safetensors(path)
        container, reader, neutralised = "flat state dict", "safetensors", ()
    else:
        raw, reader, neutralised = _read_torch_zip(path) if head.startswith(_ZIP_MAGIC) else _read_torch_legacy(path)
        state_dict, container, extra = _find_state_dict(raw, path)
    state_dict = _strip_prefixes(state_dict, strip_prefixes, path)
    logger.info(f"Loaded {len(state_dict)} tensors from {path} ({container}, read with {reader})")
    return LoadedCheckpoint(state_dict, container, extra, reader, neutralised)


def _corrupt(path: Path, reason: str) -> ValueError:
    """``reason`` is already escaped (it is built with :func:`printable` or :func:`_first_line`)."""
    return ValueError(f"checkpoint file {path} is truncated or corrupt ({reason})")


def _looks_like_safetensors(head: bytes, path: Path) -> bool:
    # A safetensors file starts with the little-endian length of its JSON header, then "{".
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    # The safetensors format itself bounds every tensor by its byte range and checks the ranges do not overlap.
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, *_UNREADABLE_ERRORS) as error:
        raise _corrupt(path, f"safetensors: {_first_line(error)}") from None
    if not tensors:
        raise ValueError(f"checkpoint file {path} is a safetensors file without tensors")
    return tensors, metadata


def _torch_load(path: Path) -> Any:
    with torch.serialization.safe_globals(list(WEIGHTS_ONLY_ALLOWED_GLOBALS)):
        return torch.load(path, map_location="cpu", weights_only=True)


def _check_zip_records(path: Path) -> None:
    """Refuse duplicate, encrypted or inflating records, and verify every record's CRC (torch.load checks none)."""
    file_size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            duplicates = [name for name, count in Counter(info.filename for info in infos).items() if count > 1]
            if duplicates:
                raise UnsafeFileError(
                    f"checkpoint file {path} holds several records named '{printable(duplicates[0])}'; which one a "
                    f"reader takes is ambiguous"
                )
            declared = 0
            for info in infos:
                if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise _corrupt(
                        path,
                        f"record '{printable(info.filename)}' is encrypted or uses compression method {info.compress_type}; "
                        f"torch.save writes plain records",
                    )
                if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                    raise _corrupt(path, f"stored record '{printable(info.filename)}' declares two different sizes")
                declared += info.file_size
            if declared > _MAX_ZIP_INFLATION * file_size + _ZIP_INFLATION_SLACK:
                raise UnsafeFileError(
                    f"checkpoint file {path} is {file_size:,} bytes but its records declare {declared:,} bytes once "
                    f"decompressed (more than {_MAX_ZIP_INFLATION}x); refusing to inflate them"
                )
            for info in infos:
                with archive.open(info) as record:
                    while record.read(_CRC_CHUNK):
                        pass
    except UnsafeFileError:
        raise
    except zipfile.BadZipFile as error:
        raise _corrupt(path, f"{_first_line(error)}; a byte of the file was changed or lost") from None
    except _UNREADABLE_ERRORS as error:
        raise _corrupt(path, f"not a readable zip archive: {_first_line(error)}") from None


def _vet(path: Path, probe: Any) -> Probe:
    try:
        return probe(path)
    except UnsafeFileError:
        raise
    except _UNREADABLE_ERRORS as error:
        raise _corrupt(path, _first_line(error)) from None


def _check_loaded(raw: Any, path: Path, pickle_bytes: int) -> None:
    """Re-check what torch.load built: bounded, and every tensor a dense CPU view within its stored bytes."""
    for tensor in check_data_graph(raw, source=f"checkpoint file {path}", pickle_bytes=pickle_bytes):
        check_stored_tensor(tensor, source=f"checkpoint file {path}")


def _read_torch_zip(path: Path) -> tuple[Any, str, tuple[str, ...]]:
    _check_zip_records(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/constants.pkl") for name in names):
        raise ValueError(f"checkpoint file {path} is a TorchScript archive; expected a saved state dict")
    probe = _vet(path, probe_torch_zip)
    if probe.neutralised:
        refusal = f"it names objects outside the allow-list: {', '.join(map(printable, probe.neutralised))}"
    else:
        try:
            raw = _torch_load(path)
        except pickle.UnpicklingError as error:
            refusal = f"torch.load(weights_only=True) refused it: {_refusal_reason(str(error))}"
        except _UNREADABLE_ERRORS as error:
            raise _corrupt(path, _first_line(error)) from None
        else:
            _check_loaded(raw, path, probe.pickle_bytes)
            return raw, "torch.load(weights_only=True)", ()
    try:
        raw, neutralised = read_torch_zip_as_data(path)
    except UnsafeFileError:
        raise
    except _UNREADABLE_ERRORS as error:
        raise _corrupt(path, f"restricted unpickler: {_first_line(error)}") from None
    logger.warning(
        f"{path}: read with the restricted unpickler ({refusal}), which replaced these classes/functions with inert "
        f"stand-ins (nothing was imported or run): {', '.join(map(printable, neutralised)) or 'none'}"
    )
    return raw, "restricted unpickler", neutralised


def _read_torch_legacy(path: Path) -> tuple[Any, str, tuple[str, ...]]:
    probe = _vet(path, probe_legacy_file)
    reason = ""
    if probe.neutralised:
        reason = f"it names objects outside the allow-list: {', '.join(map(printable, probe.neutralised))}"
    else:
        try:
            raw = _torch_load(path)
        except pickle.UnpicklingError as error:
            reason = f"torch.load(weights_only=True) refused it: {_refusal_reason(str(error))}"
        except _UNREADABLE_ERRORS as error:
            raise _corrupt(path, _first_line(error)) from None
        else:
            _check_loaded(raw, path, probe.pickle_bytes)
            return raw, "torch.load(weights_only=True)", ()
    raise ValueError(
        f"checkpoint file {path} cannot be read safely: it is not a torch zip archive (legacy torch format or "
        f"a plain pickle), and {reason}. If the file is truncated or corrupt, fetch it again; if it comes from a "
        f"trusted source, re-save it with a current torch (zip format) or as safetensors."
    )


def _refusal_reason(message: str) -> str:
    """The useful part of torch's long weights_only message: which globals or opcodes it refused."""
    names = re.findall(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)", message)
    if names:
        return "objects outside the allow-list: " + ", ".join(printable(name) for name in dict.fromkeys(names))
    boilerplate = ("Weights only load failed", "(1)", "(2)", "Check the documentation", "Please file an issue")
    for line in message.splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(boilerplate):
            return printable(line)
    return "no reason given"


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return printable(text.splitlines()[0] if text else type(error).__name__)


def _find_state_dict(raw: Any, path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Recognise the container once, from named keys, and split the weights from the rest."""
    state_dict = _as_state_dict(raw)
    if state_dict is not None:
        container = "pickled module (read as data)" if isinstance(raw, InertObject) else "flat state dict"
        return state_dict, container, {}
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"checkpoint file {path} holds a {_describe(raw)}, not a state dict: expected a mapping of names to "
            f"tensors, or a dict with a {', '.join(repr(k) for k in _CONTAINER_ENTRIES)} entry holding one"
        )
    found = [(key, sd) for key in _CONTAINER_ENTRIES if key in raw and (sd := _as_state_dict(raw[key])) is not None]
    if len(found) > 1:
        raise ValueError(
            f"checkpoint file {path} is ambiguous: entries {', '.join(repr(k) for k, _ in found)} all hold a state "
            f"dict; convert one of them explicitly"
        )
    if not found:
        keys = ", ".join(printable_repr(k, limit=80) for k in list(raw)[:20]) + (", ..." if len(raw) > 20 else "")
        present = [repr(k) for k in _CONTAINER_ENTRIES if k in raw]
        detail = f"; the {', '.join(present)} entry is not a name -> tensor mapping" if present else ""
        raise ValueError(
            f"checkpoint file {path} has an unknown structure: expected a flat state dict (name -> tensor) or a dict "
            f"with a 'model', 'module' or 'state_dict' entry holding one; its top-level keys are: {keys}{detail}"
        )
    key, state_dict = found[0]
    container = f"'{key}' entry"
    if key == "state_dict" and any(marker in raw for marker in _LIGHTNING_MARKERS):
        container += " (Lightning)"
    if key == "module" and any(marker in raw for marker in _DEEPSPEED_MARKERS):
        container += " (DeepSpeed)"
    extra = {str(name): _to_plain_data(value) for name, value in raw.items() if name != key}
    return state_dict, container, extra


def _as_state_dict(value: Any) -> dict[str, torch.Tensor] | None:
    """``value`` as a name -> tensor dict, or None if it is not one (empty counts as not one)."""
    if isinstance(value, InertObject):
        tensors: dict[str, torch.Tensor] = {}
        _collect_module_tensors(value, "", tensors, set())
        return tensors or None
    if not isinstance(value, Mapping) or not value:
        return None
    if all(isinstance(k, str) for k in value) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return dict(value)
    return None


def _collect_module_tensors(module: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    """Walk a neutralised ``nn.Module`` pickle through its recorded ``_parameters``/``_buffers``/``_modules``."""
    # Recursion is safe: the probe bounded the nesting depth of the data before anything walked it.
    state = module.state if isinstance(module, InertObject) else None
    if id(module) in seen or not isinstance(state, Mapping) or "_modules" not in state:
        return
    seen.add(id(module))
    non_persistent = state.get("_non_persistent_buffers_set")
    non_persistent = non_persistent if isinstance(non_persistent, (set, frozenset, list, tuple)) else ()
    for name, tensor in _entries(state, "_parameters"):
        if isinstance(tensor, torch.Tensor):
            out[f"{prefix}{name}"] = tensor
    for name, tensor in _entries(state, "_buffers"):
        if isinstance(tensor, torch.Tensor) and name not in non_persistent:
            out[f"{prefix}{name}"] = tensor
    for name, child in _entries(state, "_modules"):
        _collect_module_tensors(child, f"{prefix}{name}.", out, seen)


def _entries(state: Mapping, name: str) -> list[tuple[str, Any]]:
    """The string-keyed entries of ``state[name]`` when it is a mapping (a malformed module record has none)."""
    value = state.get(name)
    return [(k, v) for k, v in value.items() if isinstance(k, str)] if isinstance(value, Mapping) else []


def _strip_prefixes(
    state_dict: dict[str, torch.Tensor], prefixes: tuple[str, ...], path: Path
) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        stripped: dict[str, torch.Tensor] = {}
        origin: dict[str, str] = {}
        for key, tensor in state_dict.items():
            new_key = key[len(prefix) :] if key.startswith(prefix) else key
            if new_key in stripped:
                raise ValueError(
                    f"checkpoint file {path}: stripping prefix {prefix!r} maps both "
                    f"{printable_repr(origin[new_key])} and {printable_repr(key)} to {printable_repr(new_key)}; "
                    f"choose strip_prefixes that keep names unique"
                )
            stripped[new_key], origin[new_key] = tensor, key
        count = sum(key.startswith(prefix) for key in state_dict)
        logger.info(f"Stripped prefix {prefix!r} from {count} of {len(state_dict)} keys")
        state_dict = stripped
    return state_dict


def _describe(value: Any) -> str:
    if isinstance(value, InertObject):
        return f"neutralised {printable(value.inert_class_name)} object"
    return type(value).__name__


def _to_plain_data(value: Any, _active: frozenset[int] = frozenset()) -> Any:
    """Turn unpickled metadata into plain data: dicts, lists, tuples, sets, strings, numbers, tensors.

    Recursion is safe and the copy small: the data was checked for nesting depth and for the size it expands to
    (shared references walked as a tree) before anything walked it.
    """
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, torch.Tensor)):
        return value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if is_inert_class(value):
        return value.inert_class_name
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if id(value) in _active:
        return "<recursive reference>"
    active = _active | {id(value)}
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, NamespaceRecord) and isinstance(value.state, dict) and not (value.args or value.kwargs):
        value = value.state
    if isinstance(value, InertObject):
        plain: dict[str, Any] = {"__class__": value.inert_class_name}
        for name in ("args", "kwargs", "state", "items", "list_items"):
            if getattr(value, name):
                plain[name] = _to_plain_data(getattr(value, name), active)
        return plain
    if isinstance(value, Mapping):
        return {_plain_key(k, active): _to_plain_data(v, active) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain_data(v, active) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain_data(v, active) for v in value)
    if isinstance(value, (set, frozenset)):
        items = [_to_plain_data(v, active) for v in value]
        try:
            return set(items)
        except TypeError:
            return items
    return repr(value)


def _plain_key(key: Any, active: frozenset[int]) -> Any:
    plain = _to_plain_data(key, active)
    try:
        hash(plain)
    except TypeError:
        return repr(plain)
    return plain
