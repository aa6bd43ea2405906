"""Tiny TransVG configurations and inputs for the common harness (awkward widths so a swapped axis fails)."""

import torch

from tests.common.family_tester import FamilyTester
from vlzoo.models.transvg.configuration_transvg import TransvgConfig

IMAGE_SIZE = 64
VOCAB_SIZE = 200  # [CLS] 101, [SEP] 102 and a few word ids, as in the fixtures
MAX_QUERY_LENGTH = 12


NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
BERT_NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def tiny_config(**overrides) -> TransvgConfig:
    """ResNet [1, 1, 1, 1] (stride 32: a 2x2 map at 64 px), DETR width 24 / 3 heads, BERT width 20 / 2 heads with
    the first 200 entries of the uncased vocabulary (the fixtures' size), fusion width 32 / 4 heads; no dropout (the harness
    compares training-mode gradients)."""
    values = dict(
        backbone_config={"depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 8},
        visual_encoder_config={
            "d_model": 24,
            "encoder_layers": 2,
            "encoder_attention_heads": 3,
            "encoder_ffn_dim": 37,
            **NO_DROPOUT,
        },
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 20,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 40,
            **BERT_NO_DROPOUT,
        },
        fusion_encoder_config={
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 37,
            **NO_DROPOUT,
        },
        image_size=IMAGE_SIZE,
        max_query_length=MAX_QUERY_LENGTH,
    )
    values.update(overrides)
    return TransvgConfig(**values)


def tiny_no_encoder_config(**overrides) -> TransvgConfig:
    """Without the DETR encoder (the original's `detr_enc_num == 0`) and with BERT's first layer feeding the fusion."""
    return tiny_config(
        visual_encoder_config={"d_model": 24, "encoder_layers": 0, "encoder_attention_heads": 3, **NO_DROPOUT},
        text_feature_layer=1,
        **overrides,
    )


CONFIGS = {"transvg": tiny_config, "transvg_no_detr_encoder": tiny_no_encoder_config}


def grounding_inputs(config, batch: int = 3, seed: int = 0, length: int = 9) -> dict[str, torch.Tensor]:
    """Letterboxed-looking images (padding at the bottom or right), `[CLS] words [SEP] 0...` of different lengths."""
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    pixel_values = torch.randn(batch, 3, size, size, generator=generator)
    pixel_mask = torch.ones(batch, size, size, dtype=torch.long)
    for row in range(batch):
        if row % 3 == 1:
            pixel_mask[row, size * 5 // 8 :] = 0
        elif row % 3 == 2:
            pixel_mask[row, :, size * 3 // 4 :] = 0
    pixel_values = pixel_values * pixel_mask[:, None]
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        n = 3 + (row * 2) % (length - 3)
        ids[row, 0], ids[row, n - 1] = 101, 102
        ids[row, 1 : n - 1] = torch.randint(103, config.get_text_config().vocab_size, (n - 2,), generator=generator)
        mask[row, :n] = 1
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "input_ids": ids, "attention_mask": mask}


def grounding_labels(batch: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = 0.3 + 0.4 * torch.rand(batch, 2, generator=generator)
    sizes = 0.1 + 0.4 * torch.rand(batch, 2, generator=generator)
    return {"labels": torch.cat([centres, sizes], dim=1)}


def processor_sample() -> dict:
    from PIL import Image

    images = [Image.new("RGB", (80, 50), (200, 10, 10)), Image.new("L", (31, 45), 128)]
    return {"text": ["the red square on the left", "Two DOGS & a cat!"], "images": images}


class TransvgTester(FamilyTester):
    family_key = "transvg"
    configs = CONFIGS

    def inputs(self, model_class, config, batch=3):
        return grounding_inputs(config, batch)

    def labels(self, model_class, config, batch=3):
        return grounding_labels(batch)

    def main_output(self, model_class, outputs):
        return outputs.pred_boxes

    def num_layers(self, model_class, config):
        return {"fusion": config.fusion_encoder_config.encoder_layers}

    def unused_parameters(self, model_class, config):
        used = config.text_feature_layer
        depth = config.text_config.num_hidden_layers
        if used is None:
            return {}
        reason = "BERT layers after text_feature_layer (args.bert_enc_num) are kept so the checkpoint loads, not read"
        return {f"text_model.encoder.layer.{index}.": reason for index in range(used, depth)}

    def tiny_processor(self):
        from vlzoo.models.transvg import TransvgProcessor

        return TransvgProcessor.from_model_config(tiny_config())

    def processor_sample(self):
        return processor_sample()


TESTER = TransvgTester()
