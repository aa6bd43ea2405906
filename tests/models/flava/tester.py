"""Tiny FLAVA configurations and inputs for the common harness (tower widths 48/32/40 so a swapped axis fails)."""

import torch

from tests.common.family_tester import FamilyTester
from vlzoo.models.flava.configuration_flava import FlavaConfig
from vlzoo.models.flava.modeling_flava import (
    FlavaForImageTextMatching,
    FlavaForPreTraining,
    FlavaForSequenceClassification,
    FlavaModel,
)

VOCAB_SIZE = 1200  # the uncased WordPiece vocabulary truncated to its first 1200 entries


def tiny_config(**overrides) -> FlavaConfig:
    """Unequal tower widths and head counts, 32 px images (2x2 patches), a 4-wide codebook that trains (so every
    class has gradients), no dropout (so train-mode runs are deterministic)."""
    values = dict(
        image_config=dict(
            hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32,
            patch_size=16, vocab_size=64,
        ),
        text_config=dict(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37, vocab_size=VOCAB_SIZE,
            max_position_embeddings=16,
        ),
        multimodal_config=dict(hidden_size=40, num_hidden_layers=2, num_attention_heads=5, intermediate_size=37),
        image_codebook_config=dict(hidden_size=4, vocab_size=64, freeze=False),
        projection_dim=24,
        classifier_hidden_size=20,
        classifier_dropout=0.0,
        id2label={0: "no", 1: "yes", 2: "two"},
        label2id={"no": 0, "yes": 1, "two": 2},
    )  # fmt: skip
    values.update(overrides)
    return FlavaConfig(**values)


CONFIGS = {"flava": tiny_config}


def text_inputs(config: FlavaConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """`[CLS] words [SEP] [PAD]...` of different lengths with their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    length = 9
    ids = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        n = 3 + (2 * row) % (length - 3)
        ids[row, 0], ids[row, n - 1] = 101, 102
        ids[row, 1 : n - 1] = torch.randint(999, VOCAB_SIZE, (n - 2,), generator=generator)
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def image_inputs(config: FlavaConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    size = config.image_config.image_size
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(batch, 3, size, size, generator=generator)}


def pretraining_inputs(config: FlavaConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Text with [MASK] (103) at positions 1..2, MLM labels there, a block of masked patches, one negative pair."""
    inputs = {**text_inputs(config, batch, seed), **image_inputs(config, batch, seed)}
    ids = inputs["input_ids"]
    masked, labels = ids.clone(), torch.full_like(ids, -100)
    masked[:, 1], labels[:, 1] = 103, ids[:, 1]
    image = config.image_config
    grid = image.image_size // image.patch_size
    side = grid * config.image_codebook_config.downsampling
    generator = torch.Generator().manual_seed(seed + 1)
    patches = torch.zeros(batch, grid * grid, dtype=torch.bool)
    patches[:, :2] = True
    itm = torch.ones(batch, dtype=torch.long)
    itm[1 % batch] = 0 if batch > 1 else 1
    return {
        **inputs,
        "input_ids_masked": masked,
        "mlm_labels": labels,
        "codebook_pixel_values": torch.rand(batch, 3, side, side, generator=generator) * 0.8 + 0.1,
        "bool_masked_pos": patches,
        "itm_labels": itm,
    }


def inputs_for(model_class: type, config: FlavaConfig, batch: int = 3) -> dict[str, torch.Tensor]:
    if model_class is FlavaForPreTraining:
        return pretraining_inputs(config, batch)
    if model_class in (FlavaModel, FlavaForImageTextMatching, FlavaForSequenceClassification):
        return {**text_inputs(config, batch), **image_inputs(config, batch)}
    raise ValueError(f"no inputs defined for {model_class.__name__}")


def main_output(model_class: type, outputs) -> torch.Tensor:
    if model_class is FlavaModel:
        parts = [outputs.logits_per_image, outputs.image_embeds, outputs.text_embeds]
        parts.append(outputs.multimodal_output.pooler_output)
    elif model_class is FlavaForPreTraining:
        parts = [outputs.logits_per_image, outputs.itm_logits, outputs.mmm_text_logits, outputs.mmm_image_logits]
    elif model_class is FlavaForImageTextMatching:
        parts = [outputs.itm_logits]
    else:
        parts = [outputs.logits]
    return torch.cat([p.flatten() for p in parts])


def num_layers(model_class: type, config: FlavaConfig) -> dict[str, int]:
    if model_class in (FlavaModel, FlavaForPreTraining):
        return {"vision": config.image_config.num_hidden_layers, "text": config.text_config.num_hidden_layers}
    return {"multimodal": config.multimodal_config.num_hidden_layers}


def tiny_processor():
    from vlzoo.models.flava.processing_flava import VlzooFlavaProcessor

    return VlzooFlavaProcessor.from_model_config(tiny_config())


def processor_sample() -> dict:
    from PIL import Image

    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (31, 45), 128)]
    return {"text": ["a red square", "Two DOGS & a cat!"], "images": images}


class FlavaTester(FamilyTester):
    family_key = "flava"
    configs = CONFIGS

    def inputs(self, model_class, config, batch=3):
        return inputs_for(model_class, config, batch)

    def labels(self, model_class, config, batch=3):
        if model_class is FlavaModel:
            return {"return_loss": True}
        if model_class is FlavaForImageTextMatching:
            return {"labels": torch.ones(batch, dtype=torch.long)}
        if model_class is FlavaForSequenceClassification:
            return {"labels": torch.arange(batch) % config.num_labels}
        return {}  # FlavaForPreTraining: the labels are among its inputs

    def main_output(self, model_class, outputs):
        return main_output(model_class, outputs)

    def num_layers(self, model_class, config):
        return num_layers(model_class, config)

    def tower_outputs(self, model_class, config, outputs):
        if model_class in (FlavaModel, FlavaForPreTraining):
            return {"vision": outputs.image_output, "text": outputs.text_output}
        return {"multimodal": outputs}

    def unused_parameters(self, model_class, config):
        unused = {}
        if model_class is FlavaModel:
            unused["text_model.embeddings.token_type_embeddings"] = "only row 0 is read when no token types are given"
            unused["image_model.pooler."] = "the contrastive embeddings read token 0, not the tanh pooler"
            unused["image_model.embeddings.mask_token"] = "only patches masked with bool_masked_pos read it"
            for name in ("multimodal_model.", "image_to_mm_projection.", "text_to_mm_projection."):
                unused[name] = "the contrastive loss reads the unimodal towers only"
            unused["text_model.pooler."] = "the contrastive embeddings read token 0, not the tanh pooler"
        if model_class is FlavaForPreTraining:
            unused.update(
                {
                    "image_codebook.": "the codebook labels patches through an argmax (no gradient)",
                    "mim_head.": "unimodal MIM runs only without a multimodal pass",
                    "mlm_head.": "unimodal MLM runs only without a multimodal pass",
                    "flava.multimodal_model.pooler.": "the ITM head has its own pooler",
                    "flava.image_model.pooler.": "the contrastive embeddings read token 0, not the tanh pooler",
                    "flava.text_model.pooler.": "the contrastive embeddings read token 0, not the tanh pooler",
                }
            )
        if model_class in (FlavaForImageTextMatching, FlavaForSequenceClassification):
            unused.update(
                {
                    "flava.image_model.pooler.": "the head reads the multimodal encoder",
                    "flava.text_model.pooler.": "the head reads the multimodal encoder",
                    "flava.image_projection.": "contrastive projections are not used by the head",
                    "flava.text_projection.": "contrastive projections are not used by the head",
                    "flava.logit_scale": "contrastive only",
                    "flava.multimodal_model.pooler.": "the head pools on its own",
                    "flava.image_model.layernorm.": "the multimodal encoder reads the states before the final LN",
                    "flava.text_model.layernorm.": "the multimodal encoder reads the states before the final LN",
                    "flava.image_model.embeddings.mask_token": "only patches masked with bool_masked_pos read it",
                }
            )
        return unused

    def tiny_processor(self):
        return tiny_processor()

    def processor_sample(self):
        return processor_sample()


TESTER = FlavaTester()
