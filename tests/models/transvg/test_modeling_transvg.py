"""TransVG / TransVG++ model behaviour the harness does not cover: padding equivalence, the loss, bad input."""

import pytest
import torch

from tests.models.transvg.tester import grounding_inputs, grounding_labels, tiny_config
from tests.models.transvg_pp.tester import tiny_config as tiny_pp_config
from vlzoo.layers.box_ops import convert_boxes, paired_generalized_box_iou
from vlzoo.models.transvg import TransvgForVisualGrounding
from vlzoo.models.transvg_pp import TransvgPlusPlusForVisualGrounding

MODELS = [(TransvgForVisualGrounding, tiny_config), (TransvgPlusPlusForVisualGrounding, tiny_pp_config)]


def _model(model_class, build, **overrides):
    torch.manual_seed(0)
    config = build(**overrides)
    config._attn_implementation = "eager"
    return model_class(config).eval()


@pytest.mark.parametrize(("model_class", "build"), MODELS)
def test_padding_the_text_to_the_query_length_changes_nothing(model_class, build):
    model = _model(model_class, build)
    inputs = grounding_inputs(model.config, length=6)
    padded = dict(inputs)
    extra = model.config.max_query_length - 6
    padded["input_ids"] = torch.nn.functional.pad(inputs["input_ids"], (0, extra))
    padded["attention_mask"] = torch.nn.functional.pad(inputs["attention_mask"], (0, extra))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).pred_boxes, model(**padded).pred_boxes, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("model_class", "build"), MODELS)
def test_loss_is_the_released_l1_plus_giou(model_class, build):
    model = _model(model_class, build)
    inputs, labels = grounding_inputs(model.config), grounding_labels()["labels"]
    out = model(**inputs, labels=labels)
    pred = out.pred_boxes
    l1 = (pred - labels).abs().sum() / len(labels)
    giou = (
        1 - paired_generalized_box_iou(convert_boxes(pred, "cxcywh", "xyxy"), convert_boxes(labels, "cxcywh", "xyxy"))
    ).sum()
    torch.testing.assert_close(out.loss, l1 + giou / len(labels))


@pytest.mark.parametrize(("model_class", "build"), MODELS)
def test_bad_inputs_raise_clear_errors(model_class, build):
    model = _model(model_class, build)
    inputs = grounding_inputs(model.config)
    with pytest.raises(ValueError, match="positive width and height"):
        model(**inputs, labels=torch.tensor([[0.5, 0.5, 0.0, 0.2]] * 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        model(**inputs, labels=torch.rand(3, 2))
    with pytest.raises(TypeError, match="foo"):
        model(**inputs, foo=1)


def test_transvg_refuses_other_canvas_sizes_and_long_texts():
    model = _model(TransvgForVisualGrounding, tiny_config)
    inputs = grounding_inputs(model.config)
    with pytest.raises(ValueError, match="image_size"):
        model(**{**inputs, "pixel_values": torch.randn(3, 3, 96, 96), "pixel_mask": None})
    long = {**inputs, "input_ids": torch.full((3, 13), 150), "attention_mask": torch.ones(3, 13, dtype=torch.long)}
    with pytest.raises(ValueError, match="max_query_length=12"):
        model(**long)


def test_transvg_pixel_mask_changes_the_positions_and_the_box():
    model = _model(TransvgForVisualGrounding, tiny_config)
    inputs = grounding_inputs(model.config)
    inputs["pixel_mask"][1:, 24:] = 0  # the 2x2 feature map samples rows/columns 0 and 32: its second row is padding
    with torch.no_grad():
        masked = model(**inputs).pred_boxes
        unmasked = model(**{**inputs, "pixel_mask": None}).pred_boxes
    assert torch.allclose(masked[0], unmasked[0])  # row 0 has no padding
    assert not torch.allclose(masked[1:], unmasked[1:])


def test_transvg_pp_visual_mask_reaches_only_the_language_blocks():
    """transvg.md §3: with use_visual_mask the padded patches are masked in the language blocks' self-attention only,
    so the plain blocks still read them: changing the padding's pixels changes the box either way."""
    inputs = grounding_inputs(tiny_pp_config(), batch=2)
    for use_visual_mask in (False, True):
        model = _model(TransvgPlusPlusForVisualGrounding, tiny_pp_config, use_visual_mask=use_visual_mask)
        changed = inputs["pixel_values"].clone()
        changed[1][:, inputs["pixel_mask"][1] == 0] = 3.0
        with torch.no_grad():
            base = model(**inputs).pred_boxes
            other = model(**{**inputs, "pixel_values": changed}).pred_boxes
        assert torch.equal(base[0], other[0]) and not torch.equal(base[1], other[1])
    plain = _model(TransvgPlusPlusForVisualGrounding, tiny_pp_config)
    masked = _model(TransvgPlusPlusForVisualGrounding, tiny_pp_config, use_visual_mask=True)
    with torch.no_grad():
        a, b = plain(**inputs).pred_boxes, masked(**inputs).pred_boxes
    assert torch.allclose(a[0], b[0], atol=1e-6) and (a[1] - b[1]).abs().max() > 0  # row 1 is padded


def test_transvg_pp_sine_position_init(tmp_path):
    from vlzoo.layers.positions import SinePositionEmbedding2D

    config = tiny_pp_config(position_embedding_init="sine")
    model = TransvgPlusPlusForVisualGrounding(config)
    grid = config.grid_size
    table = SinePositionEmbedding2D(config.hidden_size // 2)(torch.ones(1, grid, grid)).flatten(2).transpose(1, 2)
    assert torch.equal(model.position_embeddings.data, table)
    # only the start differs: a saved model reloads its learned table, not the sine one
    with torch.no_grad():
        model.position_embeddings.add_(1.0)
    model.save_pretrained(tmp_path)
    reloaded = TransvgPlusPlusForVisualGrounding.from_pretrained(tmp_path)
    assert torch.equal(reloaded.position_embeddings.data, table + 1.0)
    with pytest.raises(ValueError, match="position_embedding_init"):
        tiny_pp_config(position_embedding_init="fixed")
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny_pp_config(position_embedding_init="sine", hidden_size=34, num_attention_heads=2)
