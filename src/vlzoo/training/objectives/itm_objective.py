"""Image-text matching: a 2-way head tells an image's own caption from another one, with random or hard negatives."""

from typing import Any

import torch
from accelerate import Accelerator

from vlzoo.losses.itm import image_text_matching_loss, sample_hard_negatives

from .common import (
    LABELS,
    EpochKeyed,
    check_column_names,
    check_optional_int,
    check_processor,
    choose_caption,
    column_values,
    evaluate_examples,
    keyed_generator,
    model_inputs,
    model_output,
    process,
    require_columns,
)

NEGATIVE_CHOICES = ("random", "hard")
# Inputs that belong to the text of a pair; every other batched input (pixel_values, pixel_mask, ...) follows the image.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
# Similarity given to a pair of identical texts, so the sampler does not pick an image's own caption as a negative.
_SAME_TEXT_SIMILARITY = -1e4


class ItmObjective(EpochKeyed):
    """Cross-entropy of the model's `itm_logits` (`[pairs, 2]`, index 1 = matched) on positives and negatives.

    Rows are images with captions (`vlzoo.data.caption_rows`). Each batch of B rows gives B matched pairs and, as in
    ALBEF and METER, up to 2B mismatched ones: every image with another row's caption and every caption with another
    row's image. The other row is drawn by `vlzoo.losses.sample_hard_negatives` from a similarity matrix:

    - `negatives="random"`: uniform over the other rows;
    - `negatives="hard"`: `softmax(logits_per_image)` over the other rows, from a dual encoder run on the batch under
      `torch.no_grad()`: `similarity_model` (e.g. a trained `MsClipModel`, kept frozen in eval mode and moved to the
      batch's device) or, when it is `None`, the trained model itself, which must then return `logits_per_image`
      for the matched pairs (models with contrastive and matching heads).

    A caption identical to the row's own (common in synthetic data) is never used as its negative; a row whose batch
    has no different caption gets no negative. Draws depend only on (seed, epoch, the batch's tokens), so runs are
    reproducible. The model is called on all pairs at once with the processor's inputs (text inputs follow the
    caption, all others the image) and must return `itm_logits`.

    Evaluation pairs every row with its own caption and with the caption of the next row (cyclically) whose caption
    differs, so it is deterministic and independent of the batch size.

    Args:
        processor: Called as `processor(images=..., text=..., return_tensors="pt", padding=True)`.
        negatives: "random" or "hard".
        similarity_model: The dual encoder for hard negatives (see above); only with `negatives="hard"`.
        image_column, text_column: Row keys of the image and of its caption(s).
        caption_index: Always use this caption; `None` draws one per row and epoch (the first in evaluation).
        max_length: Truncate captions to this many tokens; `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        negatives: str = "random",
        similarity_model: torch.nn.Module | None = None,
        image_column: str = "image",
        text_column: str = "captions",
        caption_index: int | None = None,
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column)
        if negatives not in NEGATIVE_CHOICES:
            raise ValueError(f"negatives must be one of {NEGATIVE_CHOICES}, got {negatives!r}.")
        if similarity_model is not None:
            if negatives != "hard":
                raise ValueError("similarity_model is used only for hard negatives: pass negatives='hard'.")
            if not callable(similarity_model):
                raise TypeError(
                    f"similarity_model must be a dual encoder module returning logits_per_image, got "
                    f"{type(similarity_model).__name__}."
                )
        self.processor = processor
        self.negatives = negatives
        self.similarity_model = similarity_model
        self.image_column = image_column
        self.text_column = text_column
        self.caption_index = check_optional_int("caption_index", caption_index, 0)
        self.max_length = check_optional_int("max_length", max_length, 1)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The matched pairs only (`input_ids`, `attention_mask`, `pixel_values`, ...); negatives are drawn in
        `compute_loss`, where hard ones can use the model."""
        images, texts = self._rows(examples, self.caption_index)
        return process(self.processor, images, texts, self.max_length)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = model_inputs(batch)
        image_index, text_index, labels = self._pairs(model, inputs)
        pairs = {
            name: value.index_select(0, text_index if name in TEXT_INPUTS else image_index)
            for name, value in inputs.items()
        }
        return image_text_matching_loss(self._logits(model, pairs), labels)

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss` and `eval_itm_accuracy` over every matched and mismatched pair, and the accuracy on each kind
        (`eval_itm_accuracy_matched`, `eval_itm_accuracy_mismatched`)."""
        caption_index = 0 if self.caption_index is None else self.caption_index
        values = column_values(dataset, self.text_column)
        if values is None:
            raise ValueError(f"the evaluation dataset has no column {self.text_column!r} (the captions).")
        texts = [choose_caption(value, self.text_column, caption_index, 0, 0) for value in values]
        negative_texts = _next_different(texts)

        def collate(examples: list[dict[str, Any]], indices: list[int]) -> dict[str, torch.Tensor]:
            images, own = self._rows(examples, caption_index)
            inputs = process(
                self.processor, images + images, own + [negative_texts[i] for i in indices], self.max_length
            )
            inputs[LABELS] = torch.tensor([1] * len(own) + [0] * len(own), dtype=torch.long)
            return inputs

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            logits = self._logits(model, model_inputs(batch))
            labels = batch[LABELS]
            losses = torch.stack(
                [image_text_matching_loss(logits[i : i + 1], labels[i : i + 1]) for i in range(len(labels))]
            )
            correct = (logits.argmax(dim=-1) == labels).double()
            rows = len(indices)
            return torch.stack([correct[:rows], correct[rows:], losses[:rows].double(), losses[rows:].double()], dim=1)

        results = evaluate_examples(dataset, collate, score, accelerator, batch_size)
        return {
            "eval_loss": float(results[:, 2:].mean()),
            "eval_itm_accuracy": float(results[:, :2].mean()),
            "eval_itm_accuracy_matched": float(results[:, 0].mean()),
            "eval_itm_accuracy_mismatched": float(results[:, 1].mean()),
        }

    def _rows(self, examples: list[dict[str, Any]], caption_index: int | None) -> tuple[list, list[str]]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, texts = [], []
        for example in examples:
            require_columns(example, (self.image_column, self.text_column), type(self).__name__)
            images.append(example[self.image_column])
            texts.append(
                choose_caption(example[self.text_column], self.text_column, caption_index, self.seed, self.epoch)
            )
        return images, texts

    def _logits(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model_output(model(**inputs), ("itm_logits",), type(self).__name__)
        pairs = inputs["input_ids"].shape[0]
        if logits.shape != (pairs, 2):
            raise ValueError(
                f"the model's itm_logits have shape {tuple(logits.shape)}; expected [{pairs}, 2] (not matched, matched)."
            )
        return logits

    def _pairs(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image and text row of every pair (matched ones first) and the pairs' labels."""
        input_ids = inputs["input_ids"]
        device, size = input_ids.device, input_ids.shape[0]
        rows = torch.arange(size, device=device)
        if size < 2:
            return rows, rows, torch.ones(size, dtype=torch.long, device=device)
        text = input_ids.masked_fill(~inputs["attention_mask"].bool(), -1) if "attention_mask" in inputs else input_ids
        same_text = (text[:, None, :] == text[None, :, :]).all(dim=-1).cpu()
        similarity = self._similarity(model, inputs) if self.negatives == "hard" else torch.zeros(size, size)
        similarity = similarity.masked_fill(same_text, _SAME_TEXT_SIMILARITY)
        generator = keyed_generator("itm", self.seed, self.epoch, input_ids.tolist())
        negative_text, negative_image = sample_hard_negatives(similarity, generator=generator)
        # Rows whose whole batch shares their caption drew one of those identical captions: drop those pairs.
        keep_text = ~same_text[torch.arange(size), negative_text]
        keep_image = ~same_text[negative_image, torch.arange(size)]
        cpu_rows = torch.arange(size)
        image_index = torch.cat([cpu_rows, cpu_rows[keep_text], negative_image[keep_image]])
        text_index = torch.cat([cpu_rows, negative_text[keep_text], cpu_rows[keep_image]])
        labels = torch.zeros(len(image_index), dtype=torch.long)
        labels[:size] = 1
        return image_index.to(device), text_index.to(device), labels.to(device)

    @torch.no_grad()
    def _similarity(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`[B, B]` image-to-text similarity of the batch from the dual encoder, on the CPU, in float32."""
        encoder = model if self.similarity_model is None else self.similarity_model
        if self.similarity_model is not None:
            self.similarity_model.eval().to(inputs["input_ids"].device)
        try:
            logits = model_output(encoder(**inputs), ("logits_per_image",), type(self).__name__)
        except ValueError as error:
            raise ValueError(
                "negatives='hard' needs image-text similarities: pass similarity_model=<a dual encoder such as "
                "MsClipModel>, or train a model that returns logits_per_image."
            ) from error
        size = inputs["input_ids"].shape[0]
        if logits.shape != (size, size):
            raise ValueError(f"logits_per_image has shape {tuple(logits.shape)}; expected [{size}, {size}].")
        return logits.float().cpu()


def _next_different(texts: list[str]) -> list[str]:
    """For each text, the next one in cyclic order that differs from it."""
    if len(set(texts)) < 2:
        raise ValueError(
            "every evaluation row has the same caption, so there is no mismatched caption to pair an image with."
        )
    negatives = []
    for index, text in enumerate(texts):
        offset = 1
        while texts[(index + offset) % len(texts)] == text:
            offset += 1
        negatives.append(texts[(index + offset) % len(texts)])
    return negatives


__all__ = ["NEGATIVE_CHOICES", "TEXT_INPUTS", "ItmObjective"]
