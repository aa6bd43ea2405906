"""Tiny MS-CLIP configurations and inputs for the common harness (awkward sizes so a swapped axis fails)."""

import torch

from tests.common.family_tester import FamilyTester
from vlzoo.models.ms_clip.configuration_ms_clip import MsClipConfig
from vlzoo.models.ms_clip.modeling_ms_clip import (
    MsClipModel,
    MsClipTextModelWithProjection,
    MsClipVisionModelWithProjection,
)

VOCAB_SIZE = 99


def tiny_config(**overrides) -> MsClipConfig:
    """MS-CLIP-S at tiny size: conv stem (/16), 5-stage branch, 2 shared blocks, 4 vision heads vs 2 text heads."""
    values = dict(
        projection_dim=24,
        num_shared_layers=2,
        logit_scale_init_value=2.0,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=32,
            patch_size=16,
            stem_strides=[2, 2, 2, 1],
            lateral_adapter_layers=[0, 1, 2],
            branch_strides=[2, 2, 2],
            adapter_kernel_sizes=[8, 4, 2],
        ),
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=4,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=VOCAB_SIZE - 2,
            eos_token_id=VOCAB_SIZE - 1,
        ),
    )
    values.update(overrides)
    return MsClipConfig(**values)


def tiny_vanilla_config(**overrides) -> MsClipConfig:
    """The CLIP baseline at tiny size: patch stem, no branch, no sharing, text width != vision width."""
    values = dict(
        projection_dim=24,
        num_shared_layers=0,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            stem_type="patch",
            lateral_adapter_layers=[],
            branch_strides=[],
            adapter_kernel_sizes=[],
        ),
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=24,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=3,
            max_position_embeddings=16,
            bos_token_id=VOCAB_SIZE - 2,
            eos_token_id=VOCAB_SIZE - 1,
        ),
    )
    values.update(overrides)
    return MsClipConfig(**values)


CONFIGS = {"ms_clip": tiny_config, "ms_clip_vanilla": tiny_vanilla_config}


def text_inputs(config: MsClipConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids `[SOT, words..., EOT, pad...]` of different lengths, with the matching attention mask."""
    text = config.text_config
    generator = torch.Generator().manual_seed(seed)
    length = min(text.max_position_embeddings, 11)
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        n = 3 + row * 2 % (length - 3)
        ids[row, 0] = text.bos_token_id
        ids[row, 1 : n - 1] = torch.randint(1, text.bos_token_id, (n - 2,), generator=generator)
        ids[row, n - 1] = text.eos_token_id
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def image_inputs(config: MsClipConfig, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    size = config.vision_config.image_size
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(batch, 3, size, size, generator=generator)}


def inputs_for(model_class: type, config: MsClipConfig, batch: int = 3) -> dict[str, torch.Tensor]:
    """The inputs each public class takes."""
    if model_class is MsClipVisionModelWithProjection:
        return image_inputs(config, batch)
    if model_class is MsClipTextModelWithProjection:
        return text_inputs(config, batch)
    if model_class is MsClipModel:
        return {**text_inputs(config, batch), **image_inputs(config, batch)}
    raise ValueError(f"no inputs defined for {model_class.__name__}")


def main_output(model_class: type, outputs) -> torch.Tensor:
    """The tensor whose equality the harness checks for each class."""
    if model_class is MsClipModel:
        return torch.cat(
            [outputs.logits_per_image.flatten(), outputs.image_embeds.flatten(), outputs.text_embeds.flatten()]
        )
    return outputs.pooler_output


def num_layers(model_class: type, config: MsClipConfig) -> dict[str, int]:
    """Transformer depth of each tower the class runs (for hidden-state counts)."""
    depths = {"vision": config.vision_config.num_hidden_layers, "text": config.text_config.num_hidden_layers}
    if model_class is MsClipVisionModelWithProjection:
        return {"vision": depths["vision"]}
    if model_class is MsClipTextModelWithProjection:
        return {"text": depths["text"]}
    return depths


def tiny_processor():
    """The original transform at 32 px and the CLIP BPE truncated to 486 merges (the fixtures' vocabulary 1000)."""
    from vlzoo.models.ms_clip import MsClipImageProcessor, MsClipProcessor, MsClipTokenizer
    from vlzoo.processing.clip_bpe import clip_bpe_vocab_and_merges

    tokenizer = MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=486))
    return MsClipProcessor(image_processor=MsClipImageProcessor(size=32, crop_size=32), tokenizer=tokenizer)


def processor_sample() -> dict:
    from PIL import Image

    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (31, 45), 128)]
    return {"text": ["a red square", "Two DOGS & a cat!"], "images": images}


class MsClipTester(FamilyTester):
    family_key = "ms_clip"
    configs = CONFIGS

    def inputs(self, model_class, config, batch=3):
        return inputs_for(model_class, config, batch)

    def main_output(self, model_class, outputs):
        return main_output(model_class, outputs)

    def num_layers(self, model_class, config):
        return num_layers(model_class, config)

    def tiny_processor(self):
        return tiny_processor()

    def processor_sample(self):
        return processor_sample()


TESTER = MsClipTester()
