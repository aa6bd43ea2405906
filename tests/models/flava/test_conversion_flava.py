"""FLAVA conversion through the user's entry point: every fixture case by every layout it ships, the padding
conventions, the transformers cross-check, the export path and refusals."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from vlzoo.conversion import ConversionError, convert_checkpoint
from vlzoo.models.flava import FlavaConfig, FlavaForPreTraining, FlavaModel, VlzooFlavaProcessor
from vlzoo.models.flava.conversion_flava import FlavaConverter, to_transformers_config, to_transformers_state_dict

REPO = Path(__file__).resolve().parents[3]

# (case, checkpoint, original config or None): both layouts where the case ships both
ROUTES = [
    ("flava-model-tiny", "flava_model_tiny.pt", "original_config.json"),
    ("flava-model-tiny", "hf_flava.safetensors", "hf_config.json"),
    ("flava-pretraining-tiny", "flava_for_pretraining_tiny.pt", "original_config.json"),
    ("flava-pretraining-tiny", "hf_flava.safetensors", "hf_config.json"),
    ("flava-codebook-tiny", "encoder.pkl", None),
    ("flava-codebook-tiny", "hf_codebook.safetensors", "hf_codebook_config.json"),
    ("flava-classification-tiny", "flava_classification_tiny.pt", "original_config.json"),
]


def _convert_script():
    spec = importlib.util.spec_from_file_location("flava_convert", REPO / "conversion" / "flava" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("case", "checkpoint", "config"), ROUTES, ids=[f"{c}-{k}" for c, k, _ in ROUTES])
def test_fixture_parity_through_convert_script(case, checkpoint, config, fixtures_dir, tmp_path, capsys):
    folder = fixtures_dir / "flava" / case
    out = tmp_path / "out"
    argv = ["--checkpoint", str(folder / checkpoint), "--output-dir", str(out)]
    argv += ["--verify-against", str(folder / "io.safetensors")]
    if config is not None:
        argv += ["--original-config", str(folder / config)]
    status = _convert_script().main(argv)
    printed = capsys.readouterr()
    assert status == 0, printed.err
    parity = json.loads((out / "parity.json").read_text())
    expected = {k[len("output.") :] for k in load_file(folder / "io.safetensors") if k.startswith("output.")}
    assert parity["passed"] and expected <= set(parity["outputs"])
    worst = max(parity["outputs"][name]["max_abs_diff"] for name in expected)
    print(f"{case} via {checkpoint}: max |diff| {worst:.3e}")
    assert worst <= 1e-4


def test_converted_folder_loads_and_keeps_the_masked_default(fixtures_dir, tmp_path):
    """The default (`mask_multimodal_padding=True`) reproduces transformers' masked fusion encoder, False the
    original; the text encoder is masked either way (here from the pad id, no attention_mask passed)."""
    folder = fixtures_dir / "flava" / "flava-model-tiny"
    convert_checkpoint(
        FlavaConverter(),
        folder / "flava_model_tiny.pt",
        tmp_path / "m",
        original_config=folder / "original_config.json",
    )
    model = AutoModel.from_pretrained(tmp_path / "m", attn_implementation="eager").eval()
    assert isinstance(model, FlavaModel) and model.config.mask_multimodal_padding is True
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "m"), VlzooFlavaProcessor)
    io = load_file(folder / "io.safetensors")
    with torch.no_grad():
        masked = model(input_ids=io["input.input_ids"], pixel_values=io["input.pixel_values"])
        model.config.mask_multimodal_padding = False
        original = model(input_ids=io["input.input_ids"], pixel_values=io["input.pixel_values"])
    hf = io["output.hf_masked_mm.multimodal_output.last_hidden_state"]
    tmm = io["output.multimodal_output.last_hidden_state"]
    assert (masked.multimodal_output.last_hidden_state - hf).abs().max() <= 1e-4
    assert (original.multimodal_output.last_hidden_state - tmm).abs().max() <= 1e-4
    assert (hf - tmm).abs().max() > 0.1  # the fixture's padding makes the conventions differ
    assert (masked.text_output.last_hidden_state - io["output.text_output.last_hidden_state"]).abs().max() <= 1e-4


def _tiny_transformers_config():
    from transformers import FlavaConfig as HfConfig

    tower = {"num_hidden_layers": 2, "intermediate_size": 37, "hidden_act": "gelu"}
    return HfConfig(
        image_config={**tower, "hidden_size": 48, "num_attention_heads": 4, "image_size": 32, "patch_size": 16},
        text_config={
            **tower,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "vocab_size": 128,
            "max_position_embeddings": 16,
        },
        multimodal_config={**tower, "hidden_size": 40, "num_attention_heads": 5},
        projection_dim=24,
        hidden_size=40,
        init_codebook=False,
    )


def test_a_random_transformers_flava_model_is_reproduced(tmp_path):
    from transformers import FlavaModel as HfFlavaModel

    torch.manual_seed(0)
    reference = HfFlavaModel(_tiny_transformers_config()).eval()
    with torch.no_grad():  # non-trivial weights for the LayerNorms and tokens
        for name, parameter in reference.named_parameters():
            if "layernorm" in name.lower() or "token" in name or "position" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    reference.save_pretrained(tmp_path / "hf")
    convert_checkpoint(
        FlavaConverter(),
        tmp_path / "hf" / "model.safetensors",
        tmp_path / "vlzoo",
        original_config=tmp_path / "hf" / "config.json",
    )
    model = FlavaModel.from_pretrained(tmp_path / "vlzoo", attn_implementation="eager").eval()
    ids = torch.tensor([[2, 5, 9, 3, 0, 0], [2, 7, 8, 11, 12, 3]])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(input_ids=ids, pixel_values=pixels, attention_mask=(ids != 0).long())
        actual = model(input_ids=ids, pixel_values=pixels)  # the mask comes from the pad id
    pairs = [
        (actual.image_output.last_hidden_state, expected.image_output.last_hidden_state),
        (actual.text_output.last_hidden_state, expected.text_output.last_hidden_state),
        (actual.multimodal_output.last_hidden_state, expected.multimodal_output.last_hidden_state),
        (actual.multimodal_output.pooler_output, expected.multimodal_output.pooler_output),
    ]
    for mine, theirs in pairs:
        assert (mine - theirs).abs().max() <= 1e-5
    with torch.no_grad():
        features = reference.get_image_features(pixel_values=pixels)
    theirs = features.pooler_output if hasattr(features, "pooler_output") else features
    mine = model.get_image_features(pixel_values=pixels).pooler_output
    assert (mine - theirs[:, 0]).abs().max() <= 1e-5


def test_vlzoo_weights_load_strictly_into_transformers(tmp_path):
    from transformers import FlavaForPreTraining as HfPreTraining
    from transformers import FlavaModel as HfFlavaModel

    from tests.models.flava.tester import tiny_config

    torch.manual_seed(0)
    config = tiny_config(image_config={**tiny_config().image_config.to_dict(), "hidden_size": 40})
    model = FlavaModel(config).eval()
    hf = HfFlavaModel(to_transformers_config(config)).eval()
    hf.load_state_dict(to_transformers_state_dict(model), strict=True)
    ids = torch.tensor([[101, 1050, 1060, 102, 0], [101, 1070, 102, 0, 0]])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mine = model(input_ids=ids, pixel_values=pixels)
        theirs = hf(input_ids=ids, pixel_values=pixels, attention_mask=(ids != 0).long())
    diff = (mine.multimodal_output.last_hidden_state - theirs.multimodal_output.last_hidden_state).abs().max()
    assert diff <= 1e-5
    # transformers sizes its MMM heads with the tower widths, so its pretraining model needs equal widths
    equal = tiny_config(
        image_config={**config.image_config.to_dict(), "hidden_size": 40},
        text_config={**config.text_config.to_dict(), "hidden_size": 40},
    )
    pretraining = FlavaForPreTraining(equal)
    HfPreTraining(to_transformers_config(equal)).load_state_dict(to_transformers_state_dict(pretraining), strict=True)


def test_refusals(fixtures_dir, tmp_path):
    folder = fixtures_dir / "flava"
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"visual.conv1.weight": torch.zeros(4, 3, 2, 2)}, other)
    with pytest.raises(ConversionError, match="not a FLAVA checkpoint"):
        convert_checkpoint(FlavaConverter(), other, tmp_path / "a")
    with pytest.raises(ConversionError, match="config.json"):
        convert_checkpoint(FlavaConverter(), folder / "flava-model-tiny" / "hf_flava.safetensors", tmp_path / "b")
    with pytest.raises(ConversionError, match="head count"):  # width 48 is no multiple of 64: heads unknown
        convert_checkpoint(FlavaConverter(), folder / "flava-model-tiny" / "flava_model_tiny.pt", tmp_path / "c")
    for name in "abc":
        assert not (tmp_path / name).exists()


def test_bad_inputs_raise_clear_errors():
    from tests.models.flava.tester import pretraining_inputs, tiny_config

    config = tiny_config()
    model = FlavaForPreTraining(config).eval()
    inputs = pretraining_inputs(config)
    with pytest.raises(ValueError, match="token grid matches the patch grid"):
        model(**{**inputs, "codebook_pixel_values": torch.rand(3, 3, 32, 32)})
    no_codebook = FlavaForPreTraining(tiny_config(init_codebook=False)).eval()
    with pytest.raises(ValueError, match="no image codebook"):
        no_codebook(**inputs)
    with pytest.raises(ValueError, match="bool_masked_pos"):
        model(**{k: v for k, v in inputs.items() if k != "bool_masked_pos"})
    text_config = {**config.text_config.to_dict(), "pad_token_id": None}
    padless = FlavaModel(tiny_config(text_config=text_config)).eval()
    with pytest.raises(ValueError, match="pass attention_mask"):
        padless(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    assert FlavaConfig  # the public config class is importable from the package
