"""MS-CLIP specifics: sharing stored once, presets, causal text, CLIP conventions and input errors."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open

from vlzoo.models.ms_clip.configuration_ms_clip import MsClipConfig
from vlzoo.models.ms_clip.modeling_ms_clip import (
    MsClipModel,
    MsClipTextModelWithProjection,
    MsClipVisionModelWithProjection,
)

from .tester import image_inputs, inputs_for, text_inputs, tiny_config


def _model(**overrides) -> MsClipModel:
    torch.manual_seed(0)
    config = tiny_config(**overrides)
    config._attn_implementation = "eager"
    return MsClipModel(config).eval()


@pytest.mark.parametrize(
    ("preset", "millions"), [("b32-yfcc", 132.41), ("b32-laion", 132.41), ("b16-yfcc", 132.50), ("vanilla", 151.28)]
)
def test_presets_match_released_parameter_counts(preset, millions):
    # msclip.md §3: unique parameters of the released models
    with torch.device("meta"):
        model = MsClipModel(MsClipConfig.from_preset(preset))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="b16-yfcc"):
        MsClipConfig.from_preset("b64")


def test_shared_blocks_are_stored_once_and_stay_shared(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    n = model.config.num_shared_layers
    assert sum(k.startswith("shared_layers.") and k.endswith("q_proj.weight") for k in keys) == n
    text_depth = model.config.text_config.num_hidden_layers
    for i in range(text_depth - n, text_depth):
        assert not any(k.startswith(f"text_model.encoder.layers.{i}.self_attn") for k in keys)
    loaded = MsClipModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    inputs = inputs_for(MsClipModel, loaded.config)
    with torch.no_grad():
        before = loaded(**inputs)
        loaded.shared_layers[-1].mlp.fc1.weight.add_(torch.randn_like(loaded.shared_layers[-1].mlp.fc1.weight))
        after = loaded(**inputs)
    assert not torch.allclose(before.image_embeds, after.image_embeds)
    assert not torch.allclose(before.text_embeds, after.text_embeds)


def test_lora_on_shared_projection_changes_both_modalities_and_merges_once(tmp_path):
    model = _model()
    inputs = inputs_for(MsClipModel, model.config)
    with torch.no_grad():
        base = model(**inputs)
    config = LoraConfig(
        r=2, lora_alpha=4, target_modules=r"shared_layers\.0\.self_attn\.v_proj", init_lora_weights=False
    )
    peft_model = get_peft_model(model, config).eval()
    with torch.no_grad():
        adapted = peft_model(**inputs)
    assert not torch.allclose(base.image_embeds, adapted.image_embeds)
    assert not torch.allclose(base.text_embeds, adapted.text_embeds)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert sum(k.endswith("v_proj.weight") and k.startswith("shared_layers.0.") for k in f.keys()) == 1
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits_per_image, adapted.logits_per_image)


def test_text_attention_is_causal_under_sdpa_and_eager():
    for attn in ("eager", "sdpa"):
        model = _model()
        model.set_attn_implementation(attn)
        ids = text_inputs(model.config)["input_ids"]
        changed = ids.clone()
        changed[:, -1] = 5
        with torch.no_grad():
            a = model.get_text_features(ids).last_hidden_state
            b = model.get_text_features(changed).last_hidden_state
        torch.testing.assert_close(a[:, :-1], b[:, :-1])
        assert not torch.allclose(a[:, -1], b[:, -1])


def test_outputs_follow_clip_conventions():
    model = _model()
    inputs = inputs_for(MsClipModel, model.config)
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        image = model.get_image_features(inputs["pixel_values"]).pooler_output
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
    torch.testing.assert_close(out.image_embeds, image / image.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out.text_embeds, text / text.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
    scale = model.logit_scale.exp()
    torch.testing.assert_close(out.logits_per_image, scale * out.image_embeds @ out.text_embeds.t())
    assert out.loss.ndim == 0 and out.loss > 0


def test_logit_scale_is_not_clamped():
    model = _model(logit_scale_init_value=5.0)  # exp = 148 > CLIP's clamp at 100
    inputs = inputs_for(MsClipModel, model.config)
    with torch.no_grad():
        out = model(**inputs)
    ratio = out.logits_per_image / (out.image_embeds @ out.text_embeds.t())
    torch.testing.assert_close(ratio, torch.full_like(ratio, torch.tensor(5.0).exp().item()), rtol=1e-4, atol=1e-3)


def test_pixel_values_alone_give_image_features_for_feature_extraction():
    model = _model()
    pixels = image_inputs(model.config)["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values=pixels)
        expected = model.get_image_features(pixels)
    torch.testing.assert_close(out.pooler_output, expected.pooler_output)
    assert out[0].shape[:2] == (3, model.config.vision_config.grid_size**2 + 1)


def test_tower_classes_load_the_dual_checkpoint(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    inputs = inputs_for(MsClipModel, model.config)
    vision = MsClipVisionModelWithProjection.from_pretrained(tmp_path, attn_implementation="eager").eval()
    text = MsClipTextModelWithProjection.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            vision(inputs["pixel_values"]).pooler_output,
            model.get_image_features(inputs["pixel_values"]).pooler_output,
        )
        torch.testing.assert_close(
            text(inputs["input_ids"], inputs["attention_mask"]).pooler_output,
            model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output,
        )


def test_padding_mask_does_not_change_embeddings():
    model = _model()
    inputs = text_inputs(model.config)
    with torch.no_grad():
        with_mask = model.get_text_features(**inputs).pooler_output
        without = model.get_text_features(inputs["input_ids"]).pooler_output
    torch.testing.assert_close(with_mask, without)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "neither"),
        ({"pixel_values": torch.zeros(2, 4, 32, 32)}, ValueError, "expects"),
        ({"pixel_values": torch.zeros(2, 3, 40, 40)}, ValueError, "32, 32"),
        ({"pixel_values": [[0.0]]}, TypeError, "torch.Tensor"),
        (
            {"input_ids": torch.zeros(2, 40, dtype=torch.long), "pixel_values": torch.zeros(2, 3, 32, 32)},
            ValueError,
            "context",
        ),
        ({"input_ids": torch.zeros(2, 5), "pixel_values": torch.zeros(2, 3, 32, 32)}, TypeError, "integer"),
        ({"input_ids": torch.zeros(2, 5, dtype=torch.long)}, ValueError, "pixel_values is missing"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    model = _model()
    with pytest.raises(error, match=match):
        model(**kwargs)


def test_mismatched_batches_with_loss_raise():
    model = _model()
    inputs = {**text_inputs(model.config, batch=2), **image_inputs(model.config, batch=3)}
    with pytest.raises(ValueError, match="3 images and 2 texts"):
        model(**inputs, return_loss=True)
    with torch.no_grad():
        assert model(**inputs).logits_per_image.shape == (3, 2)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_shared_layers": 9}, "num_shared_layers"),
        ({"vision_config": {"hidden_size": 32, "patch_size": 16, "stem_strides": [2, 2, 2, 2]}}, "stem_strides"),
        ({"vision_config": {"num_attention_heads": 5}}, "num_attention_heads"),
    ],
)
def test_inconsistent_configs_raise(overrides, match):
    base = tiny_config().to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key].update(value)
        else:
            base[key] = value
    with pytest.raises(Exception, match=match):
        MsClipConfig(**{k: v for k, v in base.items() if k not in ("model_type", "transformers_version")})


def test_ids_outside_the_vocabulary_raise():
    model = _model()
    inputs = inputs_for(MsClipModel, model.config)
    inputs["input_ids"][0, 1] = model.config.text_config.vocab_size
    with pytest.raises(ValueError, match="vocabulary"):
        model(**inputs)
