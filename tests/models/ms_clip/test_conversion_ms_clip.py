"""MS-CLIP conversion through the user's entry point: fixture parity, other geometries, and refusals."""

import importlib.util
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from vlzoo.conversion import ConversionError, convert_checkpoint
from vlzoo.models.ms_clip import MsClipConfig, MsClipModel
from vlzoo.models.ms_clip.conversion_ms_clip import MsClipConverter

from .original_format import original_config, to_original_state_dict

REPO = Path(__file__).resolve().parents[3]
CASES = ("msclip-s-tiny", "vanilla-tiny")


def _convert_script():
    spec = importlib.util.spec_from_file_location("ms_clip_convert", REPO / "conversion" / "ms_clip" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES)
def test_fixture_parity_through_convert_script(case, fixtures_dir, tmp_path, capsys):
    folder = fixtures_dir / "msclip" / case
    out = tmp_path / case
    status = _convert_script().main(
        [
            "--checkpoint", str(folder / "model.pth"),
            "--original-config", str(folder / "original_config.json"),
            "--output-dir", str(out),
            "--verify-against", str(folder / "io.safetensors"),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"]
    expected_names = {k[len("output.") :] for k in load_file(folder / "io.safetensors") if k.startswith("output.")}
    compared = parity["outputs"]
    assert expected_names <= set(compared)
    for name in expected_names:
        assert compared[name]["max_abs_diff"] <= 1e-4, name

    # the folder is a normal transformers folder
    model = AutoModel.from_pretrained(out, attn_implementation="eager").eval()
    assert isinstance(model, MsClipModel)
    io = load_file(folder / "io.safetensors")
    with torch.no_grad():
        logits = model(input_ids=io["input.input_ids"], pixel_values=io["input.pixel_values"]).logits_per_image
    assert (logits - io["output.logits_per_image"]).abs().max() <= 1e-4
    processor = AutoProcessor.from_pretrained(out)
    ids = processor.tokenizer("a photo of a cat.")["input_ids"]
    assert (ids[0], ids[-1]) == (998, 999)  # the fixtures' truncated vocabulary: SOT = V-2, EOT = V-1
    if case == "msclip-s-tiny":
        ids = processor.tokenizer(["a photo of a cat."], padding="max_length", max_length=77)["input_ids"][0]
        assert ids == io["input.input_ids"][0].tolist()
        with safe_open(out / "model.safetensors", "pt") as f:
            assert not any(k.startswith("text_model.encoder.layers.1.self_attn") for k in f.keys())


def test_parity_failure_writes_nothing(fixtures_dir, tmp_path):
    # a wrong text head count (not stored in the weights) converts cleanly but cannot reproduce the outputs
    folder = fixtures_dir / "msclip" / "msclip-s-tiny"
    wrong = json.loads((folder / "original_config.json").read_text())
    wrong["MODEL"]["SPEC"]["TEXT"]["HEADS"] = 1
    with pytest.raises(ConversionError, match="text_embeds"):
        convert_checkpoint(
            MsClipConverter(),
            folder / "model.pth",
            tmp_path / "out",
            original_config=wrong,
            verify_against=folder / "io.safetensors",
        )
    assert list(tmp_path.iterdir()) == []


def _geometries():
    def ms_clip_b16_like():
        return MsClipConfig.from_preset(
            "b16-yfcc",
            projection_dim=16,
            num_shared_layers=3,
            vision_config={"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 1, "image_size": 32,
                           "num_hidden_layers": 3, "lateral_adapter_layers": [0, 1, 2],
                           "branch_strides": [2, 2, 2], "adapter_kernel_sizes": [8, 4, 2]},
            text_config={"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 4,
                         "vocab_size": 600, "max_position_embeddings": 20},
        )  # fmt: skip

    def conv_stem_no_branch():
        return MsClipConfig.from_preset(
            "b32-yfcc",
            projection_dim=8,
            num_shared_layers=1,
            vision_config={"hidden_size": 64, "intermediate_size": 80, "num_attention_heads": 1, "image_size": 64,
                           "num_hidden_layers": 2, "lateral_adapter_layers": [], "branch_strides": [],
                           "adapter_kernel_sizes": []},
            text_config={"hidden_size": 64, "intermediate_size": 80, "num_attention_heads": 2, "num_hidden_layers": 3,
                         "vocab_size": 600, "max_position_embeddings": 12},
        )  # fmt: skip

    def vanilla_wide_text():
        return MsClipConfig.from_preset(
            "vanilla",
            projection_dim=12,
            vision_config={"hidden_size": 64, "intermediate_size": 70, "num_attention_heads": 1, "image_size": 48,
                           "patch_size": 16, "num_hidden_layers": 3},
            text_config={"hidden_size": 48, "intermediate_size": 50, "num_attention_heads": 3, "num_hidden_layers": 2,
                         "vocab_size": 600, "max_position_embeddings": 10},
        )  # fmt: skip

    return {"b16-like": ms_clip_b16_like, "conv-stem-no-branch": conv_stem_no_branch, "vanilla": vanilla_wide_text}


@pytest.mark.parametrize("name", sorted(_geometries()))
def test_other_geometries_round_trip_through_the_original_format(name, tmp_path):
    torch.manual_seed(0)
    config = _geometries()[name]()
    config._attn_implementation = "eager"
    model = MsClipModel(config).eval()
    with torch.no_grad():  # random BatchNorm statistics, as a trained model would have
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    torch.save(to_original_state_dict(model), tmp_path / "model.pth")
    variant = None if name != "conv-stem-no-branch" else "b32-yfcc"
    result = convert_checkpoint(
        MsClipConverter(),
        tmp_path / "model.pth",
        tmp_path / "out",
        original_config=original_config(model),
        variant=variant,
    )
    for key in ("vision_config", "text_config"):
        assert _same_architecture(getattr(result.config, key), getattr(config, key)), key
    assert result.config.num_shared_layers == config.num_shared_layers
    converted = MsClipModel.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    text = config.text_config
    ids = torch.randint(1, text.vocab_size - 2, (2, text.max_position_embeddings))
    ids[:, 0], ids[0, 5], ids[1, -1] = text.vocab_size - 2, text.vocab_size - 1, text.vocab_size - 1
    pixels = torch.randn(2, 3, config.vision_config.image_size, config.vision_config.image_size)
    with torch.no_grad():
        a, b = model(input_ids=ids, pixel_values=pixels), converted(input_ids=ids, pixel_values=pixels)
    torch.testing.assert_close(b.logits_per_image, a.logits_per_image, rtol=0, atol=1e-5)


def _same_architecture(a, b) -> bool:
    ignored = {"_name_or_path", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id"}
    da = {k: v for k, v in a.to_dict().items() if k not in ignored}
    db = {k: v for k, v in b.to_dict().items() if k not in ignored}
    return da == db


def test_checkpoint_of_another_family_is_refused(fixtures_dir, tmp_path):
    beit3 = next((fixtures_dir / "beit3" / "beit3-backbone-tiny").glob("*.pth"))
    with pytest.raises(ConversionError, match="MS-CLIP"):
        convert_checkpoint(MsClipConverter(), beit3, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_is_refused(fixtures_dir, tmp_path):
    data = (fixtures_dir / "msclip" / "vanilla-tiny" / "model.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert_checkpoint(MsClipConverter(), tmp_path / "cut.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_never_executed(fixtures_dir, tmp_path):
    marker = tmp_path / "PWNED"
    state = torch.load(fixtures_dir / "msclip" / "vanilla-tiny" / "model.pth", weights_only=True)
    state["visual.extra"] = _Payload(str(marker))
    torch.save(state, tmp_path / "evil.pth")
    assert zipfile.is_zipfile(tmp_path / "evil.pth")
    with pytest.raises(ValueError):
        convert_checkpoint(MsClipConverter(), tmp_path / "evil.pth", tmp_path / "out")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}))
    with pytest.raises(ValueError):
        convert_checkpoint(MsClipConverter(), tmp_path / "evil.pkl", tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_unmapped_keys_are_listed(fixtures_dir, tmp_path):
    state = torch.load(fixtures_dir / "msclip" / "vanilla-tiny" / "model.pth", weights_only=True)
    state["visual.mystery.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    original = json.loads((fixtures_dir / "msclip" / "vanilla-tiny" / "original_config.json").read_text())
    with pytest.raises(ConversionError, match="mystery"):
        convert_checkpoint(MsClipConverter(), tmp_path / "extra.pth", tmp_path / "out", original_config=original)


def test_unequal_shared_tensors_are_refused(fixtures_dir, tmp_path):
    state = torch.load(fixtures_dir / "msclip" / "msclip-s-tiny" / "model.pth", weights_only=True)
    state = {k: v.clone() for k, v in state.items()}
    state["transformer.resblocks.3.mlp.c_fc.weight"] += 1.0
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ConversionError, match="shar"):
        convert_checkpoint(
            MsClipConverter(),
            tmp_path / "broken.pth",
            tmp_path / "out",
            original_config=json.loads(
                (fixtures_dir / "msclip" / "msclip-s-tiny" / "original_config.json").read_text()
            ),
        )


@pytest.mark.parametrize("preset", ["b32-yfcc", "b16-yfcc", "vanilla"])
def test_released_sizes_are_inferred_without_any_flag(preset):
    from vlzoo.models.ms_clip.conversion_ms_clip import infer_config

    torch.manual_seed(0)
    config = MsClipConfig.from_preset(preset)
    state = to_original_state_dict(MsClipModel(config))
    inferred = infer_config(state, original_config=None, variant=None)
    assert inferred.num_shared_layers == config.num_shared_layers
    for key in ("vision_config", "text_config"):
        assert _same_architecture(getattr(inferred, key), getattr(config, key)), key
