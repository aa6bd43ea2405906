"""FLAVA pretraining as a training objective: contrastive + ITM + MMM (MLM/MIM) batches for `FlavaForPreTraining`."""

from typing import Any

import numpy as np
import torch

from vlzoo.losses.mlm import mask_tokens
from vlzoo.training.objectives.common import (
    EpochKeyed,
    check_column_names,
    check_processor,
    choose_caption,
    keyed_draw,
    keyed_generator,
    keyed_seed,
    require_columns,
)

__all__ = ["FlavaPretrainingObjective"]

IGNORE_INDEX = -100


class FlavaPretrainingObjective(EpochKeyed):
    """Builds FLAVA's multimodal pretraining batches; the model computes every loss (`outputs.loss`).

    Per row: one caption (drawn per epoch), replaced by the next row's caption with probability `negative_rate`
    (`itm_labels` 0, excluded from MMM and contrastive as in the original); the caption masked with BERT's 80/10/10
    rule (`input_ids_masked`, `mlm_labels`); a block mask over the patches (`bool_masked_pos`, the processor's BEiT
    generator) and, with `codebook=True`, the codebook pixels whose ids become the MIM labels. Every draw is keyed on
    (seed, epoch, row content), so runs are reproducible in any worker or process and after a resume.

    Args:
        processor: a [`VlzooFlavaProcessor`] (its tokenizer gives the mask token, vocabulary and special ids).
        codebook: return `codebook_pixel_values` for MIM/MMM-image (the model needs its image codebook).
        probability: MLM masking rate of eligible text tokens.
        negative_rate: share of mismatched pairs for ITM.
        image_column, text_column: row keys of the image and its caption(s).
        max_length: truncate captions to this many tokens.
    """

    def __init__(
        self,
        processor: Any,
        *,
        codebook: bool = True,
        probability: float = 0.15,
        negative_rate: float = 0.5,
        image_column: str = "image",
        text_column: str = "captions",
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column)
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or tokenizer.mask_token_id is None:
            raise ValueError("FlavaPretrainingObjective needs a processor whose tokenizer has a [MASK] token")
        for name, value in (("probability", probability), ("negative_rate", negative_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        self.processor = processor
        self.codebook = bool(codebook)
        self.probability = float(probability)
        self.negative_rate = float(negative_rate)
        self.image_column = image_column
        self.text_column = text_column
        self.max_length = max_length
        self.mask_token_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)
        self.special_token_ids = sorted(set(tokenizer.all_special_ids))

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, texts = [], []
        for example in examples:
            require_columns(example, (self.image_column, self.text_column), type(self).__name__)
            images.append(example[self.image_column])
            texts.append(choose_caption(example[self.text_column], self.text_column, None, self.seed, self.epoch))
        itm_labels = []
        paired_texts = []
        for row, text in enumerate(texts):
            other = texts[(row + 1) % len(texts)]
            draw = keyed_draw("itm", self.seed, self.epoch, text, row) % 1_000_000 / 1_000_000
            negative = len(texts) > 1 and other != text and draw < self.negative_rate
            paired_texts.append(other if negative else text)
            itm_labels.append(0 if negative else 1)
        options: dict[str, Any] = {"return_tensors": "pt", "padding": True, "truncation": True}
        if self.max_length is not None:
            options["max_length"] = self.max_length
        inputs = dict(
            self.processor(images=images, text=paired_texts, return_codebook_pixels=self.codebook, **options)
        )
        input_ids = inputs["input_ids"]
        attention_mask = inputs["attention_mask"]
        masked, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
        for row, text in enumerate(paired_texts):
            real = attention_mask[row].bool()
            row_ids, row_labels = mask_tokens(
                input_ids[row, real].unsqueeze(0),
                mask_token_id=self.mask_token_id,
                vocab_size=self.vocab_size,
                special_token_ids=self.special_token_ids,
                probability=self.probability,
                ignore_index=IGNORE_INDEX,
                generator=keyed_generator("mlm", self.seed, self.epoch, text, row),
            )
            masked[row, real], labels[row, real] = row_ids[0], row_labels[0]
        image_processor = self.processor.image_processor
        patch_masks = [
            image_processor.mask_patches(1, seed=keyed_seed("mim", self.seed, self.epoch, row, text))[0]
            for row, text in enumerate(texts)
        ]
        inputs["input_ids_masked"] = masked
        inputs["mlm_labels"] = labels
        inputs["itm_labels"] = torch.tensor(itm_labels)
        inputs["bool_masked_pos"] = torch.from_numpy(np.stack(patch_masks)).bool()
        return inputs

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = model(**batch, return_loss=True)
        if outputs.loss is None:
            raise ValueError("the model computed no pretraining loss: are all objective weights 0?")
        return outputs.loss
