"""Tiny TransVG++ configurations for the common harness (the inputs are TransVG's: same processor)."""

from tests.common.family_tester import FamilyTester
from tests.models.transvg.tester import (
    BERT_NO_DROPOUT,
    VOCAB_SIZE,
    grounding_inputs,
    grounding_labels,
    processor_sample,
)
from vlzoo.models.transvg_pp.configuration_transvg_pp import TransvgPlusPlusConfig


def tiny_config(**overrides) -> TransvgPlusPlusConfig:
    """ViT width 32 / 4 heads, 4 blocks with language blocks 1 and 3, box MLP 24 wide; BERT width 20 / 2 heads."""
    values = dict(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 20,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 40,
            **BERT_NO_DROPOUT,
        },
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        language_layers=[1, 3],
        image_size=64,
        box_head_hidden_size=24,
        max_query_length=12,
    )
    values.update(overrides)
    return TransvgPlusPlusConfig(**values)


def tiny_masked_config(**overrides) -> TransvgPlusPlusConfig:
    """With the visual padding mask in the language blocks (the original without `--without_visual_mask`)."""
    return tiny_config(use_visual_mask=True, language_layers=[0, 2], **overrides)


CONFIGS = {"transvg_pp": tiny_config, "transvg_pp_visual_mask": tiny_masked_config}


class TransvgPlusPlusTester(FamilyTester):
    family_key = "transvg_pp"
    configs = CONFIGS

    def inputs(self, model_class, config, batch=3):
        return grounding_inputs(config, batch)

    def labels(self, model_class, config, batch=3):
        return grounding_labels(batch)

    def main_output(self, model_class, outputs):
        return outputs.pred_boxes

    def num_layers(self, model_class, config):
        return {"vision": config.num_hidden_layers}

    def tiny_processor(self):
        from vlzoo.models.transvg import TransvgProcessor

        return TransvgProcessor.from_model_config(tiny_config())

    def processor_sample(self):
        return processor_sample()


TESTER = TransvgPlusPlusTester()
