"""Image-text contrastive objective for CLIP-like dual encoders (MS-CLIP and any model with `return_loss=True`)."""

from typing import Any

import torch
from accelerate import Accelerator

from ..evaluation import evaluation_batches, mean_loss
from .common import EpochKeyed, check_column_names, check_optional_int, check_processor, choose_caption


class ContrastiveObjective(EpochKeyed):
    """Pairs each image with one of its captions and lets the model compute its own contrastive loss.

    The model's `return_loss=True` path computes the symmetric InfoNCE loss (with negatives gathered across
    processes), so this objective only prepares inputs.

    Args:
        processor: A processor called as `processor(text=..., images=..., return_tensors="pt", padding=True)`,
            e.g. the family's `*Processor` or `CLIPProcessor`.
        image_column: Row key holding the image (a PIL image or anything the processor accepts).
        text_column: Row key holding one caption (`str`) or several (a list of `str`).
        caption_index: Always use this caption of each row. `None` picks one at random per row and epoch during
            training; the draw depends only on (seed, epoch, the row's captions), so a run gives the same batches
            with any number of workers or processes and after a resume. Evaluation always uses the first caption.
        max_length: Truncate captions to this many tokens; `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        image_column: str = "image",
        text_column: str = "captions",
        caption_index: int | None = None,
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column)
        self.processor = processor
        self.image_column = image_column
        self.text_column = text_column
        self.caption_index = check_optional_int("caption_index", caption_index, 0)
        self.max_length = check_optional_int("max_length", max_length, 1)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Rows to `input_ids`, `attention_mask` and `pixel_values` (plus whatever else the processor returns)."""
        return self._collate(examples, caption_index=self.caption_index)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch, return_loss=True).loss

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """Mean contrastive loss over `dataset` (first caption of each row), the same on every process.

        The loss of a batch depends on its other members (they are the negatives), so it is comparable only between
        evaluations with the same batch size and number of processes.
        """
        caption_index = 0 if self.caption_index is None else self.caption_index

        def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            return self._collate(examples, caption_index=caption_index)

        batches = evaluation_batches(dataset, collate, accelerator, batch_size)
        return {"eval_loss": mean_loss(self.compute_loss, model, batches, accelerator)}

    def _collate(self, examples: list[dict[str, Any]], *, caption_index: int | None) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, texts = [], []
        for example in examples:
            for column in (self.image_column, self.text_column):
                if column not in example:
                    raise ValueError(
                        f"example has no column {column!r}; its columns are {sorted(example)}. "
                        "Set image_column / text_column to match the dataset."
                    )
            images.append(example[self.image_column])
            value = example[self.text_column]
            texts.append(choose_caption(value, self.text_column, caption_index, self.seed, self.epoch))
        kwargs = {"return_tensors": "pt", "padding": True}
        if self.max_length is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        return dict(self.processor(text=texts, images=images, **kwargs))


__all__ = ["ContrastiveObjective"]
