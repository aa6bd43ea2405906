"""Masked language modelling conditioned on the image: BERT's 80/10/10 masking of a caption, cross-entropy on the
masked tokens."""

from numbers import Integral, Real
from typing import Any

import torch
from accelerate import Accelerator

from vlzoo.losses.mlm import mask_tokens, masked_language_modeling_loss

from .common import (
    LABELS,
    EpochKeyed,
    check_column_names,
    check_optional_int,
    check_processor,
    choose_caption,
    evaluate_examples,
    keyed_generator,
    model_inputs,
    model_output,
    process,
    require_columns,
)

IGNORE_INDEX = -100
LOGIT_NAMES = ("mlm_logits", "logits")


def _tokenizer_value(processor: Any, name: str, option: str) -> Any:
    tokenizer = getattr(processor, "tokenizer", None)
    value = getattr(tokenizer, name, None) if tokenizer is not None else None
    if value is None:
        hint = (
            " The tokenizer has no mask token: add one with tokenizer.add_special_tokens({'mask_token': '[MASK]'}) "
            "and resize the model's token embeddings."
            if name == "mask_token_id"
            else ""
        )
        raise ValueError(f"pass {option}=..., or a processor whose `tokenizer` has `{name}`.{hint}")
    return value


class MlmObjective(EpochKeyed):
    """Masks the tokens of one caption per image and trains the model to restore them.

    Masking follows `vlzoo.losses.mask_tokens` (BERT: each non-special, non-padding token is chosen with
    `probability`; 80% become the mask token, 10% a random token, 10% stay). The mask of a row depends only on
    (seed, epoch, the caption), so runs are reproducible with any number of workers or processes and after a resume;
    evaluation masks depend on the caption alone, so they are the same at every evaluation. The model gets the
    masked `input_ids` with `attention_mask` and `pixel_values`, and must return `mlm_logits` (or `logits`)
    `[batch, length, vocab]`; the objective computes `masked_language_modeling_loss` itself.

    Args:
        processor: Called as `processor(images=..., text=..., return_tensors="pt", padding=True)`; its `tokenizer`
            supplies the defaults of the next three options.
        mask_token_id: Id written at the 80% share; defaults to `processor.tokenizer.mask_token_id`.
        vocab_size: Random replacements are drawn from `[0, vocab_size)`; defaults to `len(processor.tokenizer)`.
        special_token_ids: Ids never masked; defaults to the tokenizer's `all_special_ids` (padding included).
        probability: Share of eligible tokens chosen as targets.
        image_column, text_column: Row keys of the image and of its caption(s).
        caption_index: Always use this caption; `None` draws one per row and epoch (the first in evaluation).
        max_length: Truncate captions to this many tokens; `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        mask_token_id: int | None = None,
        vocab_size: int | None = None,
        special_token_ids: list[int] | None = None,
        probability: float = 0.15,
        image_column: str = "image",
        text_column: str = "captions",
        caption_index: int | None = None,
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column)
        if mask_token_id is None:
            mask_token_id = _tokenizer_value(processor, "mask_token_id", "mask_token_id")
        if vocab_size is None:
            tokenizer = getattr(processor, "tokenizer", None)
            if tokenizer is None:
                raise ValueError("pass vocab_size=..., or a processor with a `tokenizer`.")
            vocab_size = len(tokenizer)
        if special_token_ids is None:
            special_token_ids = _tokenizer_value(processor, "all_special_ids", "special_token_ids")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, Integral) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}.")
        if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, Integral):
            raise ValueError(f"mask_token_id must be an int, got {mask_token_id!r}.")
        if not 0 <= mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id must be in [0, vocab_size={vocab_size}), got {mask_token_id}.")
        if isinstance(special_token_ids, (str, bytes)) or not all(
            isinstance(i, Integral) and not isinstance(i, bool) for i in special_token_ids
        ):
            raise ValueError(f"special_token_ids must be a list of token ids, got {special_token_ids!r}.")
        if isinstance(probability, bool) or not isinstance(probability, Real) or not 0 < probability <= 1:
            raise ValueError(f"probability must be a number in (0, 1], got {probability!r}.")
        self.processor = processor
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.special_token_ids = sorted({int(i) for i in special_token_ids})
        self.probability = float(probability)
        self.image_column = image_column
        self.text_column = text_column
        self.caption_index = check_optional_int("caption_index", caption_index, 0)
        self.max_length = check_optional_int("max_length", max_length, 1)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Processor inputs with masked `input_ids`, plus `labels` `[batch, length]` (original ids at the chosen
        positions, -100 elsewhere)."""
        return self._collate(examples, self.caption_index, ("train", self.seed, self.epoch))

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_language_modeling_loss(self._logits(model, batch), batch[LABELS], ignore_index=IGNORE_INDEX)

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss` (cross-entropy per masked token) and `eval_mlm_accuracy` (share of masked tokens whose
        top-scoring id is the original), over all masked tokens of `dataset`, the same on every process."""
        caption_index = 0 if self.caption_index is None else self.caption_index

        def collate(examples: list[dict[str, Any]], indices: list[int]) -> dict[str, torch.Tensor]:
            return self._collate(examples, caption_index, ("eval",))

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            logits = self._logits(model, batch)
            labels = batch[LABELS]
            rows = []
            for row in range(len(labels)):
                chosen = labels[row] != IGNORE_INDEX
                count = chosen.sum()
                loss = masked_language_modeling_loss(logits[row : row + 1], labels[row : row + 1]) * count
                correct = (logits[row].argmax(dim=-1)[chosen] == labels[row][chosen]).sum()
                rows.append(torch.stack([loss.double(), correct.double(), count.double()]))
            return torch.stack(rows)

        sums = evaluate_examples(dataset, collate, score, accelerator, batch_size).sum(dim=0)
        if sums[2] == 0:
            raise ValueError(
                "no token of the evaluation captions was masked, so there is nothing to score; use more rows or a "
                "higher probability."
            )
        return {"eval_loss": float(sums[0] / sums[2]), "eval_mlm_accuracy": float(sums[1] / sums[2])}

    def _logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model_output(model(**model_inputs(batch)), LOGIT_NAMES, type(self).__name__)
        labels = batch[LABELS]
        if logits.dim() != 3 or logits.shape[:2] != labels.shape:
            raise ValueError(
                f"the model's MLM logits have shape {tuple(logits.shape)}; expected [batch, length, vocab] with "
                f"[batch, length] = {tuple(labels.shape)}."
            )
        if logits.shape[2] < self.vocab_size:
            raise ValueError(
                f"the model scores {logits.shape[2]} tokens but the objective's vocab_size is {self.vocab_size}; "
                "resize the model's token embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer)))."
            )
        return logits

    def _collate(
        self, examples: list[dict[str, Any]], caption_index: int | None, mask_key: tuple
    ) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, texts = [], []
        for example in examples:
            require_columns(example, (self.image_column, self.text_column), type(self).__name__)
            images.append(example[self.image_column])
            texts.append(
                choose_caption(example[self.text_column], self.text_column, caption_index, self.seed, self.epoch)
            )
        inputs = process(self.processor, images, texts, self.max_length)
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask", torch.ones_like(input_ids))
        masked, labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
        for row, text in enumerate(texts):
            # Mask each caption on its own real tokens, so its mask does not depend on the batch's padded length.
            real = attention_mask[row].bool()
            row_ids, row_labels = mask_tokens(
                input_ids[row, real].unsqueeze(0),
                mask_token_id=self.mask_token_id,
                vocab_size=self.vocab_size,
                special_token_ids=self.special_token_ids,
                probability=self.probability,
                ignore_index=IGNORE_INDEX,
                generator=keyed_generator(*mask_key, text),
            )
            masked[row, real] = row_ids[0]
            labels[row, real] = row_labels[0]
        inputs["input_ids"] = masked
        inputs[LABELS] = labels
        return inputs


__all__ = ["MlmObjective"]
