"""Tiny BEiT-3 configurations and inputs for the common harness (awkward sizes so a swapped axis fails)."""

import tempfile
from pathlib import Path

import torch
from PIL import Image

from tests.common.family_tester import FamilyTester
from vlzoo.models.beit3.configuration_beit3 import Beit3Config
from vlzoo.models.beit3.image_processing_beit3 import Beit3ImageProcessor
from vlzoo.models.beit3.modeling_beit3 import (
    Beit3ForCaptioning,
    Beit3ForImageClassification,
    Beit3ForImageTextRetrieval,
    Beit3ForQuestionAnswering,
    Beit3ForVisualReasoning,
    Beit3Model,
)
from vlzoo.models.beit3.processing_beit3 import Beit3Processor
from vlzoo.models.beit3.tokenization_beit3 import Beit3Tokenizer, write_sentencepiece_model

VOCAB_SIZE = 99
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj", "inner_attn_ln")
WORDS = "a an the red blue green circle square triangle what color shape is of left right above below".split()


def tiny_config(**overrides) -> Beit3Config:
    """Width 36 with 4 heads (head dim 9), FFN 37, 2 layers, 32 px images of 16 px patches, 5 answers."""
    values = dict(
        hidden_size=36,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=34,
        image_size=32,
        patch_size=16,
        mask_token_id=VOCAB_SIZE - 9,
        classifier_hidden_size=29,
        id2label={i: f"answer_{i}" for i in range(5)},
        label2id={f"answer_{i}": i for i in range(5)},
    )
    values.update(overrides)
    return Beit3Config(**values)


def tiny_config_no_final_norm(**overrides) -> Beit3Config:
    """As the released VQA and ImageNet heads: no final LayerNorm; 3 layers, 3 heads."""
    return tiny_config(**{"final_layer_norm": False, "num_hidden_layers": 3, "num_attention_heads": 3, **overrides})


CONFIGS = {"beit3": tiny_config, "beit3_no_final_norm": tiny_config_no_final_norm}


def text_inputs(config: Beit3Config, batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """`<s> words </s> <pad>...` of different lengths, with the matching attention mask."""
    generator = torch.Generator().manual_seed(seed)
    length = 7
    ids = torch.full((batch, length), config.pad_token_id, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        n = 3 + row * 2 % (length - 3)
        ids[row, 0] = config.bos_token_id
        ids[row, 1 : n - 1] = torch.randint(4, config.mask_token_id, (n - 2,), generator=generator)
        ids[row, n - 1] = config.eos_token_id
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def image_inputs(config: Beit3Config, batch: int = 3, seed: int = 0, pairs: bool = False) -> dict[str, torch.Tensor]:
    size = config.image_size
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 2, 3, size, size) if pairs else (batch, 3, size, size)
    return {"pixel_values": torch.randn(*shape, generator=generator)}


def write_tiny_spm(path: Path) -> Path:
    """A word-level sentencepiece model for the tiny configs: 3 + 86 pieces, so `<mask>` = 3 + 86 + 1 = 90 = VOCAB_SIZE - 9."""
    pieces = [("▁" + word, -2.0) for word in WORDS] + [("▁", -3.0)]
    pieces += [(chr(c), -6.0) for c in range(ord("a"), ord("z") + 1)] + [(c, -6.0) for c in "?.,!"]
    pieces += [(f"piece{i}", -9.0) for i in range(86 - len(pieces))]
    write_sentencepiece_model(path, pieces)
    return path


class Beit3Tester(FamilyTester):
    family_key = "beit3"
    configs = CONFIGS

    def inputs(self, model_class, config, batch: int = 3) -> dict:
        if model_class is Beit3ForImageClassification:
            return image_inputs(config, batch)
        if model_class is Beit3ForVisualReasoning:
            return {**text_inputs(config, batch), **image_inputs(config, batch, pairs=True)}
        return {**text_inputs(config, batch), **image_inputs(config, batch)}

    def labels(self, model_class, config, batch: int = 3) -> dict:
        generator = torch.Generator().manual_seed(1)
        if model_class is Beit3ForImageTextRetrieval:
            return {"return_loss": True}
        if model_class is Beit3ForQuestionAnswering:
            return {"labels": torch.rand(batch, config.num_labels, generator=generator)}
        if model_class in (Beit3ForVisualReasoning, Beit3ForImageClassification):
            return {"labels": torch.randint(0, config.num_labels, (batch,), generator=generator)}
        if model_class is Beit3ForCaptioning:
            ids = text_inputs(config, batch)["input_ids"]
            return {"labels": torch.where(ids == config.pad_token_id, -100, ids)}
        return {}

    def main_output(self, model_class, outputs) -> torch.Tensor:
        if model_class is Beit3Model:
            return outputs.last_hidden_state
        if model_class is Beit3ForImageTextRetrieval:
            return outputs.logits_per_image
        return outputs.logits

    def num_layers(self, model_class, config) -> dict[str, int]:
        if model_class is Beit3ForImageTextRetrieval:
            return {"vision": config.num_hidden_layers, "text": config.num_hidden_layers}
        return {"multiway": config.num_hidden_layers}

    def unused_parameters(self, model_class, config) -> dict[str, str]:
        unused = {"beit3.embeddings.mask_token": "the mask token is read only for masked image modeling"}
        if model_class is Beit3Model:
            return {"embeddings.mask_token": unused["beit3.embeddings.mask_token"]}
        if model_class is Beit3ForImageClassification:
            reason = "an image-only head runs the vision experts only"
            unused["beit3.embeddings.text_"] = "an image-only head embeds no text"
            if config.final_layer_norm:
                unused["beit3.encoder.layer_norm.language"] = reason
            for layer in range(config.num_hidden_layers):
                prefix = f"beit3.encoder.layers.{layer}."
                for name in ("layer_norm1", "layer_norm2", "mlp", *(f"self_attn.{p}" for p in PROJECTIONS)):
                    unused[f"{prefix}{name}.language"] = reason
        return unused

    def tiny_processor(self) -> Beit3Processor:
        folder = Path(tempfile.mkdtemp(prefix="beit3-spm-"))
        tokenizer = Beit3Tokenizer(write_tiny_spm(folder / "beit3.spm"))
        return Beit3Processor(Beit3ImageProcessor.for_vision_language(32), tokenizer)

    def processor_sample(self) -> dict:
        images = [Image.new("RGB", (45, 31), (200, 10, 10)), Image.new("RGBA", (20, 52), (0, 90, 200, 128))]
        return {"images": images, "text": ["a red circle", "what color is the square left of the triangle ?"]}


TESTER = Beit3Tester()
