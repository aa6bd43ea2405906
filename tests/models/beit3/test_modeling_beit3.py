"""BEiT-3 behaviour the harness does not cover: multiway routing, the captioning mask and cached decoding,
generation, LoRA on one modality's experts, and clear errors on bad input."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.models.beit3.tester import image_inputs, text_inputs, tiny_config
from vlzoo.models.beit3.modeling_beit3 import (
    Beit3ForCaptioning,
    Beit3ForImageTextRetrieval,
    Beit3ForVisualReasoning,
    Beit3Model,
)


def _model(model_class, **overrides):
    torch.manual_seed(0)
    config = tiny_config(**overrides)
    config._attn_implementation = "eager"
    return model_class(config).eval(), config


def test_joint_pass_routes_image_tokens_to_vision_experts_and_text_to_language():
    """Zeroing the language experts' output projections changes only text rows of a text-only pass and leaves an
    image-only pass untouched; in a joint pass image rows see text only through attention."""
    model, config = _model(Beit3Model)
    images = image_inputs(config, 2)["pixel_values"]
    text = text_inputs(config, 2)
    with torch.no_grad():
        vision = model(pixel_values=images).last_hidden_state
        words = model(**text).last_hidden_state
        for layer in model.encoder.layers:
            layer.self_attn.out_proj.language.weight.zero_()
        torch.testing.assert_close(model(pixel_values=images).last_hidden_state, vision, rtol=0, atol=0)
        assert not torch.allclose(model(**text).last_hidden_state, words)


def test_captioning_logits_are_causal_over_text_and_image_rows_ignore_text():
    model, config = _model(Beit3ForCaptioning)
    images = image_inputs(config, 2)["pixel_values"]
    ids = torch.tensor([[0, 11, 12, 13, 14, 2], [0, 21, 22, 23, 2, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        full = model(input_ids=ids, pixel_values=images, attention_mask=mask).logits
        changed = ids.clone()
        changed[:, 4] = 30
        later = model(input_ids=changed, pixel_values=images, attention_mask=mask).logits
    torch.testing.assert_close(later[:, :4], full[:, :4], rtol=0, atol=1e-6)  # positions before 4 never see it
    assert not torch.allclose(later[0, 4:], full[0, 4:])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cached_decoding_equals_full_recomputation(num_beams: int):
    model, config = _model(Beit3ForCaptioning, drop_path_rate=0.0)
    images = image_inputs(config, 3)["pixel_values"]
    with torch.no_grad():
        cached = model.generate(images, max_length=9, num_beams=num_beams, use_cache=True)
        recomputed = model.generate(images, max_length=9, num_beams=num_beams, use_cache=False)
    assert torch.equal(cached, recomputed)
    assert cached.shape == (3, 9) and (cached[:, 0] == config.bos_token_id).all()
    ends = (cached == config.eos_token_id).int().argmax(dim=1)
    assert (cached[torch.arange(3), ends - 1] == config.mask_token_id).all()  # the original's unfilled slot


def test_each_cached_step_equals_the_full_forward_logits():
    model, config = _model(Beit3ForCaptioning)
    images = image_inputs(config, 2)["pixel_values"]
    words = torch.tensor([[0, 14, 15, 16], [0, 25, 26, 27]])
    caches = None
    with torch.no_grad():
        for k in range(1, words.shape[1] + 1):
            step, caches = model._next_token_logits(images, words[:, :k], caches, True, False)
            mask_slot = torch.full((2, 1), config.mask_token_id)
            full = model(input_ids=torch.cat([words[:, :k], mask_slot], 1), pixel_values=images).logits[:, -1]
            torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


def test_generate_continues_a_prompt_and_checks_its_arguments():
    model, config = _model(Beit3ForCaptioning)
    images = image_inputs(config, 2)["pixel_values"]
    prompt = torch.tensor([[0, 14, 15, 2], [0, 25, 2, 1]])
    with torch.no_grad():
        out = model.generate(images, input_ids=prompt, attention_mask=(prompt != 1).long(), max_new_tokens=2)
    assert out[0, :3].tolist() == [0, 14, 15] and out[1, :2].tolist() == [0, 25]
    with pytest.raises(ValueError, match="do_sample"):
        model.generate(images, do_sample=True)
    with pytest.raises(ValueError, match="max_length"):
        model.generate(images, max_length=2)


def test_visual_reasoning_takes_two_images_per_text():
    model, config = _model(Beit3ForVisualReasoning)
    pairs = image_inputs(config, 2, pairs=True)["pixel_values"]
    text = text_inputs(config, 2)
    with torch.no_grad():
        logits = model(**text, pixel_values=pairs).logits
        swapped = model(**text, pixel_values=pairs.flip(1)).logits
    assert logits.shape == (2, config.num_labels) and not torch.allclose(logits, swapped)
    with pytest.raises(ValueError, match=r"\[batch, 2, 3, size, size\]"):
        model(**text, pixel_values=pairs[:, 0])


def test_lora_on_language_experts_leaves_image_features_unchanged():
    """The documented targets name each modality's experts: an adapter on `.language` only reaches text."""
    model, config = _model(Beit3ForImageTextRetrieval)
    images = image_inputs(config, 2)["pixel_values"]
    text = text_inputs(config, 2)
    with torch.no_grad():
        image_before = model.get_image_features(images).pooler_output
        text_before = model.get_text_features(**text).pooler_output
    lora = LoraConfig(r=4, target_modules=["q_proj.language", "v_proj.language"], init_lora_weights=False)
    adapted = get_peft_model(copy.deepcopy(model), lora).eval()
    assert all(".language." in name for name, p in adapted.named_parameters() if p.requires_grad)
    with torch.no_grad():
        torch.testing.assert_close(adapted.get_image_features(images).pooler_output, image_before, rtol=0, atol=0)
        assert not torch.allclose(adapted.get_text_features(**text).pooler_output, text_before)


def test_bad_inputs_raise_clear_errors():
    model, config = _model(Beit3Model)
    text = text_inputs(config, 2)
    with pytest.raises(ValueError, match="position table covers 32x32"):
        model(pixel_values=torch.randn(2, 3, 48, 48))
    longer = torch.zeros(1, config.max_text_length + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="text position table covers"):
        model(input_ids=longer)
    with pytest.raises(ValueError, match="vocabulary"):
        model(input_ids=torch.tensor([[0, config.vocab_size]]))
    with pytest.raises(ValueError, match="neither"):
        model()
    with pytest.raises(ValueError, match="2 images and 1 texts"):
        model(input_ids=text["input_ids"][:1], pixel_values=image_inputs(config, 2)["pixel_values"])


def test_interpolated_positions_accept_other_image_sizes():
    model, config = _model(Beit3Model)
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 48, 64), interpolate_pos_encoding=True)
    assert out.last_hidden_state.shape == (1, 1 + 3 * 4, config.hidden_size)
