"""MS-CLIP conversion of damaged, hostile or inconsistent inputs: one clear error naming the file, nothing written."""

import json
import random
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from vlzoo.conversion import ConversionError, convert_checkpoint, run_cli
from vlzoo.models.ms_clip import MsClipConfig
from vlzoo.models.ms_clip.conversion_ms_clip import MsClipConverter

FORGED = "x\nparity PASSED at atol=0.0001 (13/13 ok)\x1b[2K\x1b[32m"


@pytest.fixture
def tiny(fixtures_dir) -> Path:
    return fixtures_dir / "msclip" / "msclip-s-tiny"


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pth", weights_only=True)


def _original(folder: Path) -> dict:
    return json.loads((folder / "original_config.json").read_text())


def _assert_safe(text: str, verdicts: int = 0) -> None:
    """Only printable characters, and exactly ``verdicts`` parity verdict lines (the real ones)."""
    assert all(character.isprintable() for line in text.splitlines() for character in line), repr(text)
    assert sum(line.lstrip().startswith("parity PASSED") for line in text.splitlines()) == verdicts, text


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    status = run_cli(MsClipConverter(), [str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _damaged(tmp_path: Path, tiny: Path, kind: str) -> tuple[Path, Path | None]:
    checkpoint, config = tiny / "model.pth", tiny / "original_config.json"
    if kind == "random bytes":
        checkpoint = tmp_path / "random.pth"
        checkpoint.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "garbage pickle":
        checkpoint = tmp_path / "garbage.pth"
        with zipfile.ZipFile(checkpoint, "w") as archive:
            archive.writestr("archive/data.pkl", b"\x80\x02garbage")
    elif kind == "empty file":
        checkpoint = tmp_path / "empty.pth"
        checkpoint.write_bytes(b"")
    elif kind == "deep config":
        config = tmp_path / "deep.json"
        config.write_text('{"MODEL": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif kind == "config not an object":
        config = tmp_path / "list.json"
        config.write_text("[1, 2]")
    elif kind == "config with bad heads":
        original = _original(tiny)
        original["MODEL"]["SPEC"]["TEXT"]["HEADS"] = "twelve"
        config = tmp_path / "heads.json"
        config.write_text(json.dumps(original))
    return checkpoint, config


@pytest.mark.parametrize(
    "kind",
    ["random bytes", "garbage pickle", "empty file", "deep config", "config not an object", "config with bad heads"],
)
def test_cli_reports_a_broken_input_in_one_line(tiny, tmp_path: Path, capsys, kind: str):
    checkpoint, config = _damaged(tmp_path, tiny, kind)
    out = tmp_path / "out"
    status, _, err = _cli(["--checkpoint", checkpoint, "--original-config", config, "--output-dir", out], capsys)
    assert status == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert str(config if "config" in kind else checkpoint) in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("MODEL", "SPEC", "TEXT", "HEADS"), -1, r"MODEL\.SPEC\.TEXT\.HEADS must be an integer >= 1, got -1"),
        (("MODEL", "SPEC", "TEXT", "HEADS"), 0, r"HEADS must be an integer >= 1, got 0"),
        (("MODEL", "SPEC", "TEXT", "HEADS"), 1.5, r"HEADS must be an integer >= 1, got 1\.5"),
        (("MODEL", "SPEC", "TEXT", "HEADS"), True, r"HEADS must be an integer >= 1, got True"),
        (("MODEL", "SPEC", "TEXT", "HEADS"), 3, r"3 text heads .* do not divide the text width 64"),
        (("MODEL", "SPEC", "VISION", "PATCH_SIZE"), [], r"VISION\.PATCH_SIZE must be an integer >= 1, got \[\]"),
        (("TRAIN", "IMAGE_SIZE"), [], r"TRAIN\.IMAGE_SIZE must be a non-empty list of integers >= 1"),
        (("TRAIN", "IMAGE_SIZE"), [-96, 96], r"TRAIN\.IMAGE_SIZE must be a non-empty list"),
        (("CUSTOM", "EARLY_CONV_RES_STRIDES"), "x", r"EARLY_CONV_RES_STRIDES must be a non-empty list"),
        (("CUSTOM", "EARLY_CONV_RES_STRIDES"), [2, 2, 0, 2], r"EARLY_CONV_RES_STRIDES must be a non-empty list"),
        (("CUSTOM", "PARALLEL_LATERAL_LAYER"), [-5, 3, 4, 5, 6], r"PARALLEL_LATERAL_LAYER .* integers >= 1"),
        (("MODEL",), "a string", r"original_config MODEL must be an object"),
    ],
)
def test_invalid_original_config_values_are_refused(tiny, tmp_path: Path, path: tuple, value, match: str):
    original = _original(tiny)
    node = original
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConversionError, match=match) as error:
        convert_checkpoint(MsClipConverter(), tiny / "model.pth", tmp_path / "out", original_config=original)
    assert str(tiny / "model.pth") in str(error.value)
    assert not (tmp_path / "out").exists()


def test_too_deep_original_config_is_refused(tiny, tmp_path: Path):
    nested: dict = {}
    for _ in range(40):
        nested = {"a": nested}
    path = tmp_path / "nested.json"
    path.write_text(json.dumps({"MODEL": nested}))
    with pytest.raises(ValueError, match=f"original_config file {path} nests containers more than 32 levels"):
        convert_checkpoint(MsClipConverter(), tiny / "model.pth", tmp_path / "out", original_config=path)
    with pytest.raises(ValueError, match="original_config nests containers"):
        convert_checkpoint(MsClipConverter(), tiny / "model.pth", tmp_path / "out", original_config={"M": nested})


def _edit_token_embedding(state):
    state["token_embedding.weight"] = state["token_embedding.weight"][None]


def _edit_projection(state):
    state["visual.proj"] = torch.zeros(0, 2**21)


def _edit_text_depth(state):
    for i in range(7, 300):
        state[f"transformer.resblocks.{i}.attn.in_proj_weight"] = torch.zeros(0)


def _edit_text_gap(state):
    del state["transformer.resblocks.3.attn.in_proj_weight"]


def _edit_positions(state):
    state["positional_embedding"] = torch.zeros(77, 32)


def _edit_shared(state):
    del state["transformer.resblocks.6.mlp.c_fc.bias"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_edit_token_embedding, r"token_embedding\.weight has shape \[1, 1000, 64\]; expected 2 dimension"),
        (_edit_projection, r"projection size is 2097152 \(from visual\.proj\); expected 1 to 1048576"),
        (_edit_text_depth, r"text depth is 300 .* expected 1 to 256"),
        (_edit_text_gap, r"text blocks are not contiguous"),
        (_edit_positions, r"positional_embedding width is 32 but the token_embedding width is 64"),
        (_edit_shared, r"no tensor 'transformer\.resblocks\.6\.mlp\.c_fc\.bias'"),
    ],
    ids=["rank", "huge-projection", "depth", "gap", "inconsistent-width", "missing-shared"],
)
def test_impossible_shapes_are_refused_before_building_a_model(tiny, tmp_path: Path, edit, match: str):
    state = _state(tiny)
    edit(state)
    torch.save(state, tmp_path / "edited.pth")
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(
            MsClipConverter(), tmp_path / "edited.pth", tmp_path / "out", original_config=_original(tiny)
        )
    assert not (tmp_path / "out").exists()


class _OversizedConverter(MsClipConverter):
    """Infers the full-size architecture whatever the checkpoint holds, and records where models are built."""

    def __init__(self) -> None:
        self.devices: list[str] = []

    def infer_config(self, state_dict, *, original_config, variant, extra) -> MsClipConfig:
        return MsClipConfig.from_preset("b32-yfcc")

    def build_model(self, config):
        self.devices.append(torch.empty(()).device.type)
        return super().build_model(config)


def test_inferred_model_far_larger_than_the_checkpoint_is_never_allocated(tiny, tmp_path: Path):
    converter = _OversizedConverter()
    with pytest.raises(ConversionError, match=r"needs 1[\d,]{10} parameter and buffer elements but the checkpoint"):
        convert_checkpoint(converter, tiny / "model.pth", tmp_path / "out")
    assert converter.devices == ["meta"]


def test_keys_from_the_checkpoint_cannot_forge_lines(fixtures_dir, tmp_path: Path, capsys):
    folder = fixtures_dir / "msclip" / "vanilla-tiny"
    state = _state(folder)
    state[f"visual.{FORGED}"] = torch.zeros(1)
    torch.save(state, tmp_path / "forged.pth")
    argv = ["--checkpoint", tmp_path / "forged.pth", "--original-config", folder / "original_config.json"]
    status, _, err = _cli([*argv, "--output-dir", tmp_path / "out"], capsys)
    assert status == 1 and "visual.x\\x0aparity PASSED" in err
    _assert_safe(err)


def test_neutralised_class_names_cannot_forge_lines(tiny, tmp_path: Path, capsys, caplog):
    module = types.ModuleType(f"evil{FORGED}".replace(".", ""))  # a dot would make it a package path
    callback = type("Callback", (), {"__module__": module.__name__})
    module.Callback = callback
    sys.modules[module.__name__] = module
    try:
        torch.save(
            {"state_dict": _state(tiny), "callback": callback()}, tmp_path / "lightning.ckpt", pickle_protocol=4
        )
    finally:
        del sys.modules[module.__name__]
    out = tmp_path / "out"
    argv = ["--checkpoint", tmp_path / "lightning.ckpt", "--original-config", tiny / "original_config.json"]
    status, stdout, err = _cli([*argv, "--output-dir", out, "--verify-against", tiny / "io.safetensors"], capsys)
    assert status == 0, err
    assert "evilx\\x0aparity PASSED" in stdout
    _assert_safe(stdout, verdicts=1)
    _assert_safe((out / "conversion_report.txt").read_text(), verdicts=1)
    _assert_safe(caplog.text)
    assert all(byte >= 0x20 or byte == 0x0A for byte in (out / "parity.json").read_bytes())
