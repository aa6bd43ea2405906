"""Safe checkpoint loading: containers, the restricted unpickler, hostile pickles and damaged files."""

import argparse
import builtins
import collections
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from vlzoo.conversion import InertObject, LoadedCheckpoint, load_checkpoint
from vlzoo.conversion.restricted_unpickler import read_torch_zip_as_data

SIDE_EFFECTS: list[str] = []


def _record_side_effect(tag: str) -> None:
    SIDE_EFFECTS.append(tag)


class Callback:
    """Stands for a training-framework callback: touching it in any way records a side effect."""

    def __init__(self) -> None:
        self.monitor = "val/loss"
        self.best_score = torch.tensor(0.5)

    def __setstate__(self, state: dict) -> None:
        _record_side_effect("setstate")
        self.__dict__.update(state)


class ReducingCallback:
    """A class whose unpickling calls a function of this module."""

    def __reduce__(self):
        return (_record_side_effect, ("reduce",))


class ShellCommand:
    """Unpickling it would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class PythonCode:
    """Unpickling it would run Python code."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


@pytest.fixture(autouse=True)
def _clear_side_effects():
    SIDE_EFFECTS.clear()
    yield
    SIDE_EFFECTS.clear()


def _state_dict() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "encoder.weight": torch.randn(5, 3, generator=generator),
        "encoder.bias": torch.randn(5, generator=generator),
        "steps": torch.tensor(7, dtype=torch.int64),
        "half": torch.randn(2, 2, generator=generator).half(),
        "view": torch.arange(12.0).reshape(3, 4)[:, 1:3],
    }


def _assert_same(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(loaded) == list(expected)
    for key, tensor in expected.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key


def test_flat_state_dict_zip(tmp_path: Path):
    path = tmp_path / "model.pth"
    torch.save(_state_dict(), path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, LoadedCheckpoint)
    assert loaded.container == "flat state dict"
    assert loaded.reader == "torch.load(weights_only=True)"
    assert loaded.neutralised == () and loaded.extra == {}
    _assert_same(loaded.state_dict, _state_dict())


@pytest.mark.parametrize(
    ("wrapper", "container"),
    [
        (lambda sd: {"model": sd, "epoch": 3, "args": argparse.Namespace(lr=0.1, layers=[1, 2])}, "'model' entry"),
        (
            lambda sd: {"module": sd, "buffer_names": ["x"], "dp_world_size": 1, "csr_tensor_module_names": set()},
            "'module' entry (DeepSpeed)",
        ),
        (lambda sd: {"state_dict": sd, "pytorch-lightning_version": "1.3.2"}, "'state_dict' entry (Lightning)"),
        (lambda sd: {"state_dict": sd, "epoch": 1}, "'state_dict' entry"),
    ],
)
def test_container_entries(tmp_path: Path, wrapper, container: str):
    path = tmp_path / "wrapped.pt"
    torch.save(wrapper(_state_dict()), path)
    loaded = load_checkpoint(path)
    assert loaded.container == container
    assert loaded.reader == "torch.load(weights_only=True)"
    _assert_same(loaded.state_dict, _state_dict())
    if "args" in loaded.extra:
        # A Namespace comes back as plain data.
        assert loaded.extra["args"] == {"lr": 0.1, "layers": [1, 2]}
        assert loaded.extra["epoch"] == 3


def test_legacy_format_with_namespace_uses_the_allow_list(tmp_path: Path):
    path = tmp_path / "legacy.pth"
    torch.save(
        {"model": _state_dict(), "args": argparse.Namespace(depth=2)}, path, _use_new_zipfile_serialization=False
    )
    loaded = load_checkpoint(path)
    assert loaded.container == "'model' entry"
    assert loaded.extra == {"args": {"depth": 2}}
    _assert_same(loaded.state_dict, _state_dict())


def test_lightning_checkpoint_with_callback_objects_is_read_inertly(tmp_path: Path, caplog):
    weights = {f"model.{key}": tensor for key, tensor in _state_dict().items()}
    path = tmp_path / "epoch=3.ckpt"
    torch.save(
        {
            "state_dict": weights,
            "pytorch-lightning_version": "1.3.2",
            "callbacks": {Callback: {"best_model_path": "x.ckpt"}},
            "hyper_parameters": {"config": {"lr": 1e-4}, "callback": Callback()},
            "loops": ReducingCallback(),
        },
        path,
    )
    loaded = load_checkpoint(path, strip_prefixes=("model.",))
    assert loaded.reader == "restricted unpickler"
    assert loaded.container == "'state_dict' entry (Lightning)"
    _assert_same(loaded.state_dict, _state_dict())
    assert SIDE_EFFECTS == []
    qualified = f"{Callback.__module__}.Callback"
    assert qualified in loaded.neutralised
    assert f"{__name__}._record_side_effect" in loaded.neutralised
    # The callback class used as a key becomes its name; the instance becomes a record of its pickled state.
    assert loaded.extra["callbacks"] == {qualified: {"best_model_path": "x.ckpt"}}
    callback = loaded.extra["hyper_parameters"]["callback"]
    assert callback["__class__"] == qualified
    assert callback["state"]["monitor"] == "val/loss"
    assert torch.equal(callback["state"]["best_score"], torch.tensor(0.5))
    assert loaded.extra["loops"] == {"__class__": f"{__name__}._record_side_effect", "args": ("reduce",)}


def test_restricted_unpickler_returns_inert_objects(tmp_path: Path):
    path = tmp_path / "objects.pt"
    torch.save({"callback": Callback(), "weights": _state_dict()}, path)
    raw, neutralised = read_torch_zip_as_data(str(path))
    assert isinstance(raw["callback"], InertObject)
    assert not isinstance(raw["callback"], Callback)
    assert raw["callback"].state["monitor"] == "val/loss"
    assert neutralised == (f"{__name__}.Callback",)
    _assert_same(raw["weights"], _state_dict())
    assert SIDE_EFFECTS == []


def test_restricted_unpickler_matches_torch_load_on_shared_and_strided_tensors(tmp_path: Path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    payload = {"base": base, "transposed": base.t(), "slice": base[1:, 2:5], "callback": Callback()}
    path = tmp_path / "views.pt"
    torch.save(payload, path)
    raw, _ = read_torch_zip_as_data(str(path))
    for key in ("base", "transposed", "slice"):
        assert raw[key].stride() == payload[key].stride()
        assert torch.equal(raw[key], payload[key])
    # Views of one storage stay views of one storage, as with torch.load.
    assert raw["transposed"].untyped_storage().data_ptr() == raw["base"].untyped_storage().data_ptr()


def test_pickled_module_is_read_as_data(tmp_path: Path):
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    module[1].register_buffer("scratch", torch.ones(2), persistent=False)
    path = tmp_path / "encoder.pkl"
    torch.save(module, path)
    loaded = load_checkpoint(path)
    assert loaded.container == "pickled module (read as data)"
    assert loaded.reader == "restricted unpickler"
    assert "torch.nn.modules.linear.Linear" in loaded.neutralised
    _assert_same(loaded.state_dict, module.state_dict())


@pytest.mark.parametrize(
    "make_payload",
    [
        lambda marker: ShellCommand(f"touch {marker}"),
        lambda marker: PythonCode(f"open({str(marker)!r}, 'w').close()"),
    ],
    ids=["os.system", "builtins.exec"],
)
def test_malicious_object_inside_torch_zip_never_runs(tmp_path: Path, make_payload):
    marker = tmp_path / "SOMEFILE"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _state_dict(), "payload": make_payload(marker)}, path)
    loaded = load_checkpoint(path)
    assert not marker.exists()
    assert loaded.reader == "restricted unpickler"
    target = loaded.extra["payload"]["__class__"]
    assert target in loaded.neutralised
    assert target in (f"{os.system.__module__}.system", "builtins.exec")
    assert str(marker) in loaded.extra["payload"]["args"][0]
    _assert_same(loaded.state_dict, _state_dict())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize(
    "make_payload",
    [
        lambda marker: ShellCommand(f"touch {marker}"),
        lambda marker: {"model": PythonCode(f"open({str(marker)!r}, 'w').close()")},
    ],
    ids=["os.system", "builtins.exec"],
)
def test_malicious_plain_pickle_is_refused(tmp_path: Path, make_payload, protocol: int):
    marker = tmp_path / "SOMEFILE"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(make_payload(marker), protocol=protocol))
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_checkpoint(path)
    assert not marker.exists()


def _rewrite_data_pkl(source: Path, target: Path, data_pkl: bytes) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as rewritten:
        for info in original.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else original.read(info)
            rewritten.writestr(info.filename, data)


def test_crafted_call_chain_in_zip_never_runs(tmp_path: Path):
    # getattr(os.system, "__call__")("touch SOMEFILE"), written opcode by opcode (protocol 0).
    marker = tmp_path / "SOMEFILE"
    source = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(2)}, source)
    crafted = (
        b"cbuiltins\ngetattr\n(c" + os.system.__module__.encode() + b"\nsystem\nS'__call__'\ntR"
        b"(S'touch " + str(marker).encode() + b"'\ntR."
    )
    path = tmp_path / "crafted.pth"
    _rewrite_data_pkl(source, path, crafted)
    with pytest.raises(ValueError, match="holds a neutralised"):
        load_checkpoint(path)
    assert not marker.exists()
    raw, neutralised = read_torch_zip_as_data(str(path))
    assert isinstance(raw, InertObject)
    assert set(neutralised) == {"builtins.getattr", f"{os.system.__module__}.system"}
    assert not marker.exists()


def test_tensor_outside_its_storage_is_refused(tmp_path: Path):
    # A pickle that asks for 1000 floats over a 4-float storage, next to a class weights_only refuses.
    class StorageRef:
        pass

    ref = StorageRef()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is ref else None

    class HugeView:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (ref, 0, (1000,), (1,), False, collections.OrderedDict()))

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"callback": ReducingCallback(), "a": HugeView()})
    path = tmp_path / "oob.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", sys.byteorder)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", torch.arange(4, dtype=torch.float32).numpy().tobytes())
    with pytest.raises(ValueError, match=r"oob.pt holds a tensor of size \[1000\].*needs 1000 elements"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_truncated_file_is_reported(tmp_path: Path, kind: str):
    path = tmp_path / ("model.safetensors" if kind == "safetensors" else "model.pth")
    if kind == "safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in _state_dict().items()}, str(path))
    else:
        torch.save(_state_dict(), path, _use_new_zipfile_serialization=kind == "zip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_empty_file_is_reported(tmp_path: Path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_file_and_directory(tmp_path: Path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(missing)
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_unknown_structure_lists_top_level_keys(tmp_path: Path):
    path = tmp_path / "odd.pt"
    torch.save({"weights": _state_dict(), "epoch": 2}, path)
    with pytest.raises(ValueError, match=r"unknown structure.*'weights', 'epoch'"):
        load_checkpoint(path)
    torch.save({"model": {"a": torch.zeros(1), "note": "text"}}, path)
    with pytest.raises(ValueError, match="'model' entry is not a name -> tensor mapping"):
        load_checkpoint(path)


def test_ambiguous_container_is_refused(tmp_path: Path):
    path = tmp_path / "two.pt"
    torch.save({"model": _state_dict(), "state_dict": _state_dict()}, path)
    with pytest.raises(ValueError, match="ambiguous"):
        load_checkpoint(path)


def test_safetensors_and_bin(tmp_path: Path):
    weights = {k: v.contiguous() for k, v in _state_dict().items()}
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(weights, str(path), metadata={"format": "pt"})
    loaded = load_checkpoint(path)
    assert loaded.reader == "safetensors"
    assert loaded.extra == {"format": "pt"}
    _assert_same(dict(sorted(loaded.state_dict.items())), dict(sorted(weights.items())))
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(weights, bin_path)
    _assert_same(load_checkpoint(bin_path).state_dict, weights)


def test_strip_prefixes(tmp_path: Path):
    path = tmp_path / "prefixed.pt"
    torch.save({"model.a": torch.ones(1), "model.b": torch.zeros(1), "head.c": torch.ones(2)}, path)
    loaded = load_checkpoint(path, strip_prefixes=("model.",))
    assert list(loaded.state_dict) == ["a", "b", "head.c"]
    torch.save({"model.a": torch.ones(1), "a": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="'model.a'.*'a'"):
        load_checkpoint(path, strip_prefixes=("model.",))
    with pytest.raises(TypeError, match="strip_prefixes"):
        load_checkpoint(path, strip_prefixes="model.")
