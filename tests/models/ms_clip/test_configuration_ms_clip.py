"""MS-CLIP configs refuse impossible geometry at construction, from a dict and from a saved folder."""

import json
from pathlib import Path

import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

import vlzoo  # noqa: F401  (registers the MS-CLIP config with AutoConfig)
from vlzoo.models.ms_clip import MsClipConfig, MsClipTextConfig, MsClipVisionConfig
from vlzoo.models.ms_clip.configuration_ms_clip import PRESETS

INVALID_FIELDS = [
    (MsClipVisionConfig, "hidden_size", 0),
    (MsClipVisionConfig, "hidden_size", -768),
    (MsClipVisionConfig, "intermediate_size", 0),
    (MsClipVisionConfig, "num_hidden_layers", 0),
    (MsClipVisionConfig, "num_attention_heads", 0),
    (MsClipVisionConfig, "num_attention_heads", -12),
    (MsClipVisionConfig, "image_size", 0),
    (MsClipVisionConfig, "patch_size", 0),
    (MsClipVisionConfig, "num_channels", 0),
    (MsClipVisionConfig, "layer_norm_eps", 0.0),
    (MsClipVisionConfig, "batch_norm_eps", -1e-5),
    (MsClipVisionConfig, "branch_batch_norm_eps", float("nan")),
    (MsClipVisionConfig, "attention_dropout", 1.0),
    (MsClipVisionConfig, "initializer_range", -0.02),
    (MsClipVisionConfig, "stem_type", "resnet"),
    (MsClipVisionConfig, "stem_strides", [2, 2, 0, 2]),
    (MsClipVisionConfig, "adapter_kernel_sizes", [16, 8, 4, 2, -1]),
    (MsClipVisionConfig, "lateral_adapter_layers", [-1, 3, 5, 7, 9]),
    (MsClipTextConfig, "vocab_size", 0),
    (MsClipTextConfig, "hidden_size", 0),
    (MsClipTextConfig, "intermediate_size", -1),
    (MsClipTextConfig, "num_hidden_layers", 0),
    (MsClipTextConfig, "num_attention_heads", 0),
    (MsClipTextConfig, "max_position_embeddings", 0),
    (MsClipTextConfig, "layer_norm_eps", 0.0),
    (MsClipTextConfig, "attention_dropout", -0.1),
    (MsClipConfig, "projection_dim", 0),
    (MsClipConfig, "num_shared_layers", -1),
    (MsClipConfig, "logit_scale_init_value", float("inf")),
    (MsClipConfig, "initializer_range", -1.0),
]


@pytest.mark.parametrize(
    ("cls", "field", "value"), INVALID_FIELDS, ids=[f"{c.__name__}.{f}={v}" for c, f, v in INVALID_FIELDS]
)
def test_invalid_field_raises_naming_it(cls, field: str, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} must be"):
        cls(**{field: value})
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} must be"):
        cls.from_dict({field: value})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 100, "num_attention_heads": 3}, r"MsClipTextConfig\.hidden_size \(100\) must be a multiple"),
        ({"max_position_embeddings": -77}, r"MsClipTextConfig\.max_position_embeddings must be a positive integer"),
    ],
)
def test_invalid_sub_config_raises_through_the_model_config(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        MsClipConfig(text_config=kwargs)
    with pytest.raises(ValueError, match=match):
        MsClipConfig.from_dict({"text_config": kwargs})


def test_geometry_across_fields_is_checked():
    with pytest.raises(ValueError, match=r"image_size \(100\) must be a multiple of patch_size \(32\)"):
        MsClipVisionConfig(image_size=100)
    with pytest.raises(ValueError, match=r"MsClipVisionConfig\.hidden_size \(768\) must be a multiple"):
        MsClipVisionConfig(num_attention_heads=7)
    # Relations between the towers are checked by the strict-dataclass validator, which wraps the ValueError.
    with pytest.raises((ValueError, StrictDataclassError), match=r"num_shared_layers \(50\)"):
        MsClipConfig(num_shared_layers=50)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_valid_configs_still_build_save_and_load(preset: str, tmp_path: Path):
    config = MsClipConfig.from_preset(preset)
    config.save_pretrained(tmp_path)
    loaded = MsClipConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("text_config", "num_attention_heads", 0),
        ("vision_config", "layer_norm_eps", -1.0),
        (None, "projection_dim", 0),
    ],
)
def test_invalid_saved_config_is_refused_on_load(tmp_path: Path, section: str | None, field: str, value):
    MsClipConfig.from_preset("vanilla").save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    (data.setdefault(section, {}) if section else data)[field] = value
    (tmp_path / "config.json").write_text(json.dumps(data))
    for loader in (MsClipConfig.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(ValueError, match=rf"\.{field} must be"):
            loader(tmp_path)
