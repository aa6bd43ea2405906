"""Tiny METER configurations and inputs for the common harness (awkward sizes so a swapped axis fails)."""

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from tests.common.family_tester import FamilyTester
from vlzoo.models.meter.configuration_meter import MeterConfig
from vlzoo.models.meter.modeling_meter import (
    MeterForImageTextRetrieval,
    MeterForPreTraining,
    MeterForQuestionAnswering,
    MeterForVisualEntailment,
    MeterForVisualReasoning,
    MeterModel,
)
from vlzoo.models.meter.processing_meter import MeterProcessor

VOCAB_SIZE = 261  # the byte-level vocabulary `byte_level_tokenizer()` builds without files
TEXT_LENGTH = 7
NUM_LABELS = 5


def tiny_config(**overrides) -> MeterConfig:
    """CLIP 48 wide with 3 heads (2 blocks), RoBERTa 40 wide with 4 heads, fusion 32 wide with 4 heads, 2 pairs."""
    labels = [f"answer {i}" for i in range(NUM_LABELS)]
    values = dict(
        vision_config=dict(
            hidden_size=48, intermediate_size=37, num_hidden_layers=2, num_attention_heads=3, image_size=32
        ),
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=20,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        hidden_dropout_prob=0.0,  # the harness compares two training-mode runs
        attention_probs_dropout_prob=0.0,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=3,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    values.update(overrides)
    return MeterConfig(**values)


def text_inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`<s> tokens </s> <pad>...` rows of different lengths (row 0 full)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB_SIZE - 1, (batch, TEXT_LENGTH), generator=generator)
    mask = torch.ones(batch, TEXT_LENGTH, dtype=torch.long)
    for row in range(batch):
        length = TEXT_LENGTH - (row % 3)
        ids[row, 0], ids[row, length - 1] = 0, 2
        ids[row, length:], mask[row, length:] = 1, 0
    return {"input_ids": ids, "attention_mask": mask}


class MeterTester(FamilyTester):
    family_key = "meter"
    configs = {"tiny": tiny_config}

    def inputs(self, model_class, config, batch: int = 3) -> dict:
        generator = torch.Generator().manual_seed(1)
        size = config.vision_config.image_size
        shape = (batch, 2, 3, size, size) if model_class is MeterForVisualReasoning else (batch, 3, size, size)
        return {**text_inputs(batch), "pixel_values": torch.randn(shape, generator=generator)}

    def labels(self, model_class, config, batch: int = 3) -> dict:
        generator = torch.Generator().manual_seed(2)
        if model_class is MeterForPreTraining:
            labels = torch.full((batch, TEXT_LENGTH), -100)
            labels[:, 1] = torch.randint(4, VOCAB_SIZE - 1, (batch,), generator=generator)
            return {"labels": labels, "itm_labels": torch.arange(batch) % 2}
        if model_class is MeterForQuestionAnswering:
            return {"labels": torch.rand(batch, config.num_labels, generator=generator)}
        if model_class is MeterForVisualEntailment:
            return {"labels": torch.arange(batch) % config.num_labels}
        if model_class is MeterForVisualReasoning:
            return {"labels": torch.arange(batch) % 2}
        return {}  # MeterModel and the retrieval head (its rank score has no loss of its own)

    def main_output(self, model_class, outputs) -> torch.Tensor:
        if model_class is MeterModel:
            return torch.cat([outputs.pooler_output.flatten(), outputs.text_last_hidden_state.flatten()])
        if model_class is MeterForPreTraining:
            return torch.cat([outputs.mlm_logits.flatten(), outputs.itm_logits.flatten()])
        if model_class is MeterForImageTextRetrieval:
            return torch.cat([outputs.logits.flatten(), outputs.itm_logits.flatten()])
        return outputs.logits

    def num_layers(self, model_class, config) -> dict[str, int]:
        return {
            "vision": config.vision_config.num_hidden_layers,
            "text": config.text_config.num_hidden_layers,
            "fusion_text": config.num_hidden_layers,
            "fusion_image": config.num_hidden_layers,
        }

    def tower_outputs(self, model_class, config, outputs) -> dict:
        if model_class is MeterModel:
            fused = outputs
        elif model_class is MeterForVisualReasoning:
            fused = outputs.model_outputs[0]
        else:
            fused = outputs.model_output
        return {
            "vision": fused.vision_model_output,
            "text": fused.text_model_output,
            "fusion_text": SimpleNamespace(hidden_states=fused.text_hidden_states, attentions=fused.text_attentions),
            "fusion_image": SimpleNamespace(
                hidden_states=fused.image_hidden_states, attentions=fused.image_attentions
            ),
        }

    def tiny_processor(self) -> MeterProcessor:
        return MeterProcessor.from_model_config(tiny_config())

    def processor_sample(self) -> dict:
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 256, (49, 33, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (35, 87, 4), dtype=np.uint8), mode="RGBA"),
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), mode="L"),
        ]
        return {"images": images, "text": ["a red circle left of a square", "Is it blue?", "ünïcode ✓ text"]}


TESTER = MeterTester()
