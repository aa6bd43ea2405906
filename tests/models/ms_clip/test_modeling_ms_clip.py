"""MS-CLIP specifics: sharing stored once, presets, causal text, CLIP conventions and input errors."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.models.ms_clip.configuration_ms_clip import MsClipConfig
from vlzoo.models.ms_clip.modeling_ms_clip import (
    MsClipModel,
    MsClipTextModelWithProjection,
    MsClipVisionModelWithProjection,
)

from .tester import image_inputs, inputs_for, text_inputs, tiny_config, tiny_vanilla_config


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
    for tower, config in (("text_model", model.config.text_config), ("vision_model", model.config.vision_config)):
        for i in range(config.num_hidden_layers - n, config.num_hidden_layers):
            assert not any(k.startswith(f"{tower}.encoder.layers.{i}.") and "layer_norm" not in k for k in keys)
    loaded = MsClipModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    for k in range(n):  # one module in three places: the towers call their own submodules
        vision_layer = loaded.vision_model.encoder.layers[loaded.vision_model.encoder.first_shared + k]
        text_layer = loaded.text_model.encoder.layers[loaded.text_model.encoder.first_shared + k]
        shared = loaded.shared_layers[k]
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            projection = getattr(shared.self_attn, name)
            assert getattr(vision_layer.self_attn, name) is getattr(text_layer.self_attn, name) is projection
        # each tower splits the shared projections into its own number of heads (4 and 2 in the tiny config)
        assert vision_layer.self_attn.num_heads == loaded.config.vision_config.num_attention_heads
        assert text_layer.self_attn.num_heads == loaded.config.text_config.num_attention_heads
        assert vision_layer.self_attn.num_heads != text_layer.self_attn.num_heads
        assert vision_layer.self_attn.config is loaded.config.vision_config
        assert text_layer.self_attn.config is loaded.config.text_config
        assert vision_layer.mlp is text_layer.mlp is shared.mlp
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


def test_set_attn_implementation_reaches_every_attention():
    model = _model()
    attentions = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, MultiHeadAttention)]
    towers = model.config.vision_config.num_hidden_layers + model.config.text_config.num_hidden_layers
    assert len(attentions) == towers + model.config.num_shared_layers
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        assert {m.config._attn_implementation for m in attentions} == {implementation}


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


def _pooled_state(model: MsClipModel, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The projected embedding of the text tower's state at `positions` (one per row)."""
    hidden = model.get_text_features(input_ids).last_hidden_state
    rows = torch.arange(len(input_ids))
    return model.text_projection(model.text_model.final_layer_norm(hidden[rows, positions]))


def test_text_is_pooled_at_the_end_token_also_after_adding_tokens():
    model = _model()
    eos = model.config.text_config.eos_token_id
    model.resize_token_embeddings(model.config.text_config.vocab_size + 2)  # as after tokenizer.add_tokens
    ids = text_inputs(model.config)["input_ids"]
    end = (ids == eos).int().argmax(dim=-1)
    ids[:, 1] = eos + 2  # an added token: larger than the end token's id
    with torch.no_grad():
        pooled = model.get_text_features(ids).pooler_output
        torch.testing.assert_close(pooled, _pooled_state(model, ids, end))
        assert not torch.allclose(pooled, _pooled_state(model, ids, torch.ones_like(end)))


def test_rows_without_end_token_are_pooled_at_the_largest_id_like_the_original():
    model = _model()
    ids = text_inputs(model.config)["input_ids"]
    ids[0, ids[0] == model.config.text_config.eos_token_id] = 7  # row 0 was truncated: no end token
    assert not (ids[0] == model.config.text_config.eos_token_id).any()
    positions = (ids == model.config.text_config.eos_token_id).int().argmax(dim=-1)
    positions[0] = ids[0].argmax()  # the start token at 0, as in the released code (msclip.md §7)
    assert positions[0] == 0
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_features(ids).pooler_output, _pooled_state(model, ids, positions))


def test_without_an_end_token_id_every_row_uses_the_largest_id():
    ids = text_inputs(tiny_config())["input_ids"]
    model = _model(text_config={**tiny_config().text_config.to_dict(), "eos_token_id": None})
    ids[:, 1] = model.config.text_config.vocab_size - 1
    with torch.no_grad():
        torch.testing.assert_close(
            model.get_text_features(ids).pooler_output, _pooled_state(model, ids, ids.argmax(dim=-1))
        )


def test_position_ids_are_used():
    model = _model()
    inputs = text_inputs(model.config)
    length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        default = model.get_text_features(**inputs).pooler_output
        explicit = model.get_text_features(**inputs, position_ids=torch.arange(length)[None]).pooler_output
        shifted = model(
            **inputs, **image_inputs(model.config), position_ids=torch.arange(1, length + 1).expand(3, -1)
        ).text_model_output.pooler_output
    torch.testing.assert_close(explicit, default)
    assert not torch.allclose(shifted, default)


@pytest.mark.parametrize(
    ("position_ids", "error", "match"),
    [
        (torch.arange(16, 27)[None], ValueError, r"position_ids holds positions in \[16, 26\]"),
        (torch.arange(-1, 10)[None], ValueError, "position_ids holds positions"),
        (torch.arange(5)[None], ValueError, "position_ids has shape"),
        (torch.arange(11.0)[None], TypeError, "position_ids must be an integer"),
    ],
)
def test_bad_position_ids_raise(position_ids, error, match):
    model = _model()
    with pytest.raises(error, match=match):
        model.get_text_features(**text_inputs(model.config), position_ids=position_ids)


@pytest.mark.parametrize("make_config", [tiny_config, tiny_vanilla_config], ids=["conv-stem-branch", "patch-stem"])
def test_interpolate_pos_encoding_resizes_the_position_table(make_config):
    torch.manual_seed(0)
    config = make_config()
    config._attn_implementation = "eager"
    model = MsClipModel(config).eval()
    vision = config.vision_config
    pixels = image_inputs(config)["pixel_values"]
    with torch.no_grad():
        native = model.get_image_features(pixels).pooler_output
        flagged = model.get_image_features(pixels, interpolate_pos_encoding=True).pooler_output
        larger = torch.nn.functional.interpolate(pixels, scale_factor=2.0, mode="bilinear")
        out = model.get_image_features(larger, interpolate_pos_encoding=True, output_hidden_states=True)
    torch.testing.assert_close(flagged, native)
    grid = 2 * vision.grid_size
    assert out.last_hidden_state.shape[1] == grid * grid + 1
    table = model.vision_model.embeddings.position_embedding
    square = table[1:].reshape(1, vision.grid_size, vision.grid_size, -1).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False)
    expected = torch.cat([table[:1], resized.permute(0, 2, 3, 1).reshape(grid * grid, -1)])
    torch.testing.assert_close(model.vision_model.embeddings.position_table(grid, grid, True), expected)
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model.get_image_features(larger)
    odd = torch.zeros(1, 3, vision.image_size + vision.patch_size // 2, vision.image_size)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        model.get_image_features(odd, interpolate_pos_encoding=True)


def test_interpolate_pos_encoding_with_a_non_square_image():
    model = _model()
    size, patch = model.config.vision_config.image_size, model.config.vision_config.patch_size
    with torch.no_grad():
        out = model.get_image_features(torch.randn(2, 3, size, size + 2 * patch), interpolate_pos_encoding=True)
    grid = model.config.vision_config.grid_size
    assert out.last_hidden_state.shape[1] == grid * (grid + 2) + 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inputs_embeds": torch.zeros(3, 11, 32)}, ValueError, "inputs_embeds"),
        ({"foo": 1}, TypeError, "foo"),
    ],
)
def test_unsupported_arguments_are_rejected(kwargs, error, match):
    model = _model()
    inputs = inputs_for(MsClipModel, model.config)
    with pytest.raises(error, match=match):
        model(**inputs, **kwargs)
    with pytest.raises(error, match=match):
        MsClipTextModelWithProjection(model.config)(**text_inputs(model.config), **kwargs)


def test_text_arguments_without_input_ids_raise():
    model = _model()
    pixels = image_inputs(model.config)["pixel_values"]
    with pytest.raises(ValueError, match="attention_mask and position_ids given without input_ids"):
        model(pixel_values=pixels, attention_mask=torch.ones(3, 4), position_ids=torch.arange(4)[None])


def test_integer_pixel_values_raise():
    model = _model()
    with pytest.raises(TypeError, match="floating-point"):
        model(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_peft_feature_extraction_task_runs_the_dual_model():
    # PeftModelForFeatureExtraction passes input_ids/attention_mask/inputs_embeds=None explicitly
    model = _model()
    inputs = inputs_for(MsClipModel, model.config)
    peft_model = get_peft_model(model, LoraConfig(task_type="FEATURE_EXTRACTION", target_modules=["q_proj"])).eval()
    with torch.no_grad():
        images = peft_model(pixel_values=inputs["pixel_values"])
        both = peft_model(**inputs)
    torch.testing.assert_close(images.pooler_output, both.vision_model_output.pooler_output)
