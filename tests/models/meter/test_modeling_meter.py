"""METER model specifics the common harness does not cover: the released layout, the co-attention semantics and
input errors."""

import logging

import pytest
import torch

from vlzoo.models.meter import (
    MeterConfig,
    MeterForImageTextRetrieval,
    MeterForPreTraining,
    MeterForVisualReasoning,
    MeterModel,
)

from .tester import text_inputs, tiny_config


def _model(cls=MeterModel, **overrides):
    torch.manual_seed(0)
    config = tiny_config(**overrides)
    config._attn_implementation = "eager"
    return cls(config).eval(), config


def test_released_layout_of_the_default_config():
    config = MeterConfig()
    vision, text = config.vision_config, config.text_config
    assert (vision.num_hidden_layers, vision.patch_size, vision.hidden_act, vision.layer_norm_eps) == (
        11,
        16,
        "quick_gelu",
        1e-5,
    )
    assert (text.layer_norm_eps, text.pad_token_id, text.max_position_embeddings) == (1e-5, 1, 514)
    assert (config.layer_norm_eps, config.hidden_act, config.num_hidden_layers) == (1e-12, "gelu", 6)
    with torch.device("meta"):
        model = MeterForPreTraining(config)
    assert model.meter.text_layers[0].layer_norm1.eps == 1e-12
    assert model.mlm_score.transform.LayerNorm.eps == 1e-12
    assert model.meter.vision_model.post_layernorm.eps == 1e-5
    assert model.mlm_score.decoder.weight is not model.meter.text_model.embeddings.word_embeddings.weight


def test_streams_update_in_parallel():
    """Layer i of each stream reads the other stream's layer i-1 output (meter.md §2.4)."""
    model, config = _model()
    inputs = {**text_inputs(2), "pixel_values": torch.randn(2, 3, 32, 32)}
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        text, image = out.text_hidden_states[0], out.image_hidden_states[0]
        mask = inputs["attention_mask"]
        additive = torch.zeros(mask.shape).masked_fill(mask == 0, torch.finfo(torch.float32).min)[:, None, None]
        expected_image = model.image_layers[0](image, None, text, additive)
        expected_text = model.text_layers[0](text, additive, image, None)
    torch.testing.assert_close(out.image_hidden_states[1], expected_image)
    torch.testing.assert_close(out.text_hidden_states[1], expected_text)


def test_padding_does_not_change_real_token_outputs():
    model, _ = _model()
    pixels = torch.randn(1, 3, 32, 32)
    ids = torch.tensor([[0, 10, 11, 2]])
    padded = torch.tensor([[0, 10, 11, 2, 1, 1]])
    with torch.no_grad():
        short = model(input_ids=ids, pixel_values=pixels)
        long = model(input_ids=padded, attention_mask=(padded != 1).long(), pixel_values=pixels)
    torch.testing.assert_close(long.pooler_output, short.pooler_output, rtol=0, atol=1e-5)


def test_text_over_the_position_table_is_truncated_with_a_warning(caplog):
    model, config = _model()
    limit = config.max_text_length
    ids = torch.randint(4, 200, (1, limit + 5))
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32))
    assert out.text_last_hidden_state.shape[1] == limit
    assert "truncated" in caplog.text


@pytest.mark.parametrize(
    "pixels, message",
    [
        (torch.randn(2, 3, 48, 48), r"\[batch, 3, 32, 32\]"),
        (torch.randn(2, 4, 32, 32), r"\[batch, 3, 32, 32\]"),
        (torch.randn(3, 3, 32, 32), "3 images but input_ids 2 texts"),
    ],
)
def test_bad_pixel_values_raise(pixels, message):
    model, _ = _model()
    with pytest.raises(ValueError, match=message):
        model(**text_inputs(2), pixel_values=pixels)


def test_image_below_the_patch_size_is_refused():
    with pytest.raises(Exception, match="patch"):
        tiny_config(vision_config={"hidden_size": 64, "image_size": 8})


def test_visual_reasoning_needs_two_images_and_three_token_types():
    model, _ = _model(MeterForVisualReasoning)
    with pytest.raises(ValueError, match=r"two images per text"):
        model(**text_inputs(2), pixel_values=torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="type_vocab_size >= 3"):
        MeterForVisualReasoning(tiny_config(type_vocab_size=2))


def test_visual_reasoning_passes_use_token_types_one_and_two():
    model, _ = _model(MeterForVisualReasoning)
    inputs = text_inputs(2)
    pixels = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        out = model(**inputs, pixel_values=pixels)
        second = model.meter(**inputs, pixel_values=pixels[:, 1], image_token_type_idx=2)
    torch.testing.assert_close(out.model_outputs[1].pooler_output, second.pooler_output)


def test_retrieval_rank_output_starts_as_the_itm_match_row():
    model, _ = _model(MeterForImageTextRetrieval)
    assert torch.equal(model.rank_output.weight, model.itm_score.fc.weight[1:])
    inputs = {**text_inputs(2), "pixel_values": torch.randn(2, 3, 32, 32)}
    with torch.no_grad():
        out = model(**inputs)
    torch.testing.assert_close(out.logits[:, 0], out.itm_logits[:, 1])


def test_retrieval_from_a_pretraining_folder_ranks_with_the_loaded_itm_match_row(tmp_path):
    pretrain, _ = _model(MeterForPreTraining)
    pretrain.save_pretrained(tmp_path)
    retrieval = MeterForImageTextRetrieval.from_pretrained(tmp_path)
    assert torch.equal(retrieval.itm_score.fc.weight, pretrain.itm_score.fc.weight)
    assert torch.equal(retrieval.rank_output.weight, pretrain.itm_score.fc.weight[1:])
    assert torch.equal(retrieval.rank_output.bias, pretrain.itm_score.fc.bias[1:])
