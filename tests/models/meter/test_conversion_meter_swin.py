"""The Swin-B variant of METER (`meter_swinbase_384_roberta_pretrain.ckpt`): no fixture exists, so a synthetic
checkpoint in the original layout (an independent timm-style Swin as `vit_model`, the rest written by
`original_format`) is converted through the real path and checked against the independent computation."""

import pytest
import torch
from transformers import SwinConfig
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from vlzoo.conversion import ConversionError, convert_checkpoint
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.models.meter import MeterConfig, MeterForPreTraining, MeterProcessor
from vlzoo.models.meter.conversion_meter import MeterConverter

from .original_format import save_lightning_checkpoint, to_original_state_dict
from .original_swin import OriginalSwin
from .tester import text_inputs, tiny_config

# 32 px, patches of 2 (16 x 16), window 4: stage 0 has shifted windows, stage 1 (8 x 8) too; final width 24 * 2 = 48,
# the tiny CLIP width, so the rest of the tiny METER keeps its shapes
SWIN = {
    "image_size": 32,
    "patch": 2,
    "embed_dim": 24,
    "depths": [2, 2],
    "heads": [2, 4],
    "window": 4,
    "mlp_ratio": 3.0,
}


def _checkpoint(tmp_path, *, image_size=None):
    torch.manual_seed(0)
    source = MeterForPreTraining(tiny_config()).eval()
    swin = OriginalSwin(**SWIN).eval()
    with torch.no_grad():
        for name, parameter in swin.named_parameters():  # LayerNorms near 1, everything else non-trivial
            is_norm_weight = "norm" in name and name.endswith("weight")
            parameter.copy_(torch.randn_like(parameter) * 0.1 + (1.0 if is_norm_weight else 0.0))
    state = {k: v for k, v in to_original_state_dict(source).items() if not k.startswith("vit_model.")}
    state.update({f"vit_model.{k}": v for k, v in swin.state_dict().items()})
    path = tmp_path / "meter_swin.ckpt"
    save_lightning_checkpoint(path, state, num_heads=source.config.num_attention_heads, image_size=image_size)
    return path, source, swin, state


def _roberta(config):
    return {
        "tiny_roberta_config_used_for_from_pretrained": {"num_attention_heads": config.text_config.num_attention_heads}
    }


def test_swin_checkpoint_converts_to_transformers_swin_and_computes_as_the_original(tmp_path):
    path, source, swin, state = _checkpoint(tmp_path)
    assert any(key.endswith("attn_mask") for key in state) and "vit_model.head.weight" in state
    result = convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=_roberta(source.config))
    vision = result.config.vision_config
    assert isinstance(vision, SwinConfig) and result.config.uses_swin
    assert (vision.image_size, vision.patch_size, vision.embed_dim, vision.window_size) == (32, 2, 24, 4)
    assert (list(vision.depths), list(vision.num_heads), vision.mlp_ratio) == ([2, 2], [2, 4], 3.0)

    converted = MeterForPreTraining.from_pretrained(tmp_path / "out").eval()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32, generator=generator)
    inputs = {**text_inputs(2), "pixel_values": pixels}
    with torch.no_grad():
        out = converted(**inputs)
        image = swin(pixels)
        # METER's forward on the independent Swin's tokens, with the source model's own (fixture-checked) parts
        meter = source.meter
        text = meter.text_projection(meter.text_model(**text_inputs(2)).last_hidden_state)
        text = text + meter.token_type_embeddings.weight[0]
        fused_image = meter.image_projection(image) + meter.token_type_embeddings.weight[1]
        mask = key_padding_attention_mask(text_inputs(2)["attention_mask"], dtype=torch.float32)
        for text_layer, image_layer in zip(meter.text_layers, meter.image_layers, strict=True):
            text, fused_image = text_layer(text, mask, fused_image, None), image_layer(fused_image, None, text, mask)
        pooled = torch.cat([meter.text_pooler(text), meter.image_pooler(fused_image.mean(1, keepdim=True))], -1)
    torch.testing.assert_close(out.model_output.image_encoder_last_hidden_state, image, rtol=0, atol=2e-5)
    torch.testing.assert_close(out.model_output.pooler_output, pooled, rtol=0, atol=2e-5)
    torch.testing.assert_close(out.itm_logits, source.itm_score(pooled), rtol=0, atol=2e-5)

    processor = MeterProcessor.from_model_config(converted.config)  # the original `imagenet_transform`
    assert list(processor.image_processor.image_mean) == pytest.approx(IMAGENET_DEFAULT_MEAN)
    assert list(processor.image_processor.image_std) == pytest.approx(IMAGENET_DEFAULT_STD)


def test_swin_resolution_comes_from_the_config_without_masks_and_must_agree_with_them(tmp_path):
    path, source, _, state = _checkpoint(tmp_path, image_size=64)
    with pytest.raises(ConversionError, match="converting the Swin tower to another resolution is not supported"):
        convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=_roberta(source.config))
    assert not (tmp_path / "out").exists()
    without_masks = {k: v for k, v in state.items() if not k.endswith("attn_mask")}
    save_lightning_checkpoint(path, without_masks, num_heads=source.config.num_attention_heads)
    with pytest.raises(ConversionError, match="pass --original-config with sacred_config.image_size"):
        convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=_roberta(source.config))
    save_lightning_checkpoint(path, without_masks, num_heads=source.config.num_attention_heads, image_size=32)
    result = convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=_roberta(source.config))
    assert result.config.vision_config.image_size == 32


def test_swin_preset_is_the_released_swin_b():
    config = MeterConfig.from_preset("swin-384-pretrain")
    vision = config.vision_config
    assert isinstance(vision, SwinConfig) and vision.hidden_size == 1024
    assert (vision.image_size, vision.patch_size, vision.embed_dim, vision.window_size) == (384, 4, 128, 12)
    assert list(vision.depths) == [2, 2, 18, 2] and list(vision.num_heads) == [4, 8, 16, 32]
    assert MeterConfig.from_dict(config.to_dict()).vision_config.to_dict() == vision.to_dict()
