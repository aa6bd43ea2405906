"""BEiT-3's captioning objective: the masked-token training of the original captioning fine-tuning (beit3.md §2.6)."""

from numbers import Integral, Real
from typing import Any

import torch
from accelerate import Accelerator

from vlzoo.training.objectives.common import (
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

from .modeling_beit3 import captioning_loss

__all__ = ["Beit3CaptioningObjective", "Beit3ImageClassificationObjective", "num_caption_masks"]

IGNORE_INDEX = -100
FIRST_RANDOM_ID = 3  # random replacements never draw <s>, <pad> or </s>


def num_caption_masks(num_tokens: int, mask_ratio: float) -> int:
    """How many positions of a caption of `num_tokens` real tokens (`<s>` and `</s>` included) are targets: the
    original `max(1, min(int(n * ratio + 0.5), n - 1))`."""
    return max(1, min(int(num_tokens * mask_ratio + 0.5), num_tokens - 1))


class Beit3CaptioningObjective(EpochKeyed):
    """Masked-token captioning, as the original fine-tunes `BEiT3ForCaptioning`.

    Per caption of n real tokens (`<s> w1 .. </s>`), `num_caption_masks(n, mask_ratio)` distinct positions are drawn
    uniformly from 1..n-1 (never `<s>` or padding; `</s>` may be drawn, which teaches the model to stop). Each becomes
    `<mask>` (80%), stays (10%) or becomes a random id in [3, vocab_size - 1] (10%), and is a target. The model reads
    the text under the captioning mask (token t sees the image and tokens up to t), so a target is predicted from
    the words before it, as in decoding, where the logits at the trailing `<mask>` choose the next word. The loss is
    the original label-smoothed KL divergence (`captioning_loss`), without its drop-worst-20% schedule (which starts
    after 12000 steps).

    Draws depend only on (seed, epoch, the caption) in training and on the caption alone in evaluation, so they are
    the same in any worker, process or batch and after a resume.

    Args:
        processor: a `Beit3Processor` (its tokenizer supplies `mask_token_id` and `vocab_size` by default).
        mask_token_id: id written at the 80% share.
        vocab_size: random replacements come from [3, vocab_size - 1] (the tokenizer's vocabulary size).
        mask_ratio: share of a caption's tokens drawn as targets (0.6 in the original).
        label_smoothing: of the KL target (0.1 in the original).
        image_column, text_column: row keys of the image and of its caption(s).
        caption_index: always use this caption; `None` draws one per row and epoch (the first in evaluation).
        max_length: truncate captions to this many tokens (`</s>` kept); `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        mask_token_id: int | None = None,
        vocab_size: int | None = None,
        mask_ratio: float = 0.6,
        label_smoothing: float = 0.1,
        image_column: str = "image",
        text_column: str = "captions",
        caption_index: int | None = None,
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column)
        tokenizer = getattr(processor, "tokenizer", None)
        if mask_token_id is None:
            mask_token_id = getattr(tokenizer, "mask_token_id", None)
        if vocab_size is None:
            vocab_size = getattr(tokenizer, "vocab_size", None)
        if isinstance(mask_token_id, bool) or not isinstance(mask_token_id, Integral):
            raise ValueError(
                f"mask_token_id must be an int (or a processor whose tokenizer has one), got {mask_token_id!r}."
            )
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, Integral) or vocab_size <= FIRST_RANDOM_ID:
            raise ValueError(
                f"vocab_size must be an int > {FIRST_RANDOM_ID} (or a processor whose tokenizer has one), got {vocab_size!r}."
            )
        for name, value, low_open in (("mask_ratio", mask_ratio, True), ("label_smoothing", label_smoothing, False)):
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not (0 < value <= 1 if low_open else 0 <= value < 1)
            ):
                interval = "(0, 1]" if low_open else "[0, 1)"
                raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
        self.processor = processor
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.mask_ratio = float(mask_ratio)
        self.label_smoothing = float(label_smoothing)
        self.image_column = image_column
        self.text_column = text_column
        self.caption_index = check_optional_int("caption_index", caption_index, 0)
        self.max_length = check_optional_int("max_length", max_length, 2)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Processor inputs with the masked `input_ids`, plus `labels` `[batch, length]` (the original ids at the
        target positions, -100 elsewhere)."""
        return self._collate(examples, self.caption_index, ("train", self.seed, self.epoch))

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return captioning_loss(self._logits(model, batch), batch[LABELS], self.label_smoothing)

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss` (per target token) and `eval_token_accuracy` (share of targets whose top-scoring id is the
        original), over the first caption of each row (or `caption_index`), with masks keyed on the caption alone."""
        caption_index = 0 if self.caption_index is None else self.caption_index

        def collate(examples: list[dict[str, Any]], indices: list[int]) -> dict[str, torch.Tensor]:
            return self._collate(examples, caption_index, ("eval",))

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            logits, labels = self._logits(model, batch), batch[LABELS]
            rows = []
            for row in range(len(labels)):
                chosen = labels[row] != IGNORE_INDEX
                count = chosen.sum()
                loss = captioning_loss(logits[row : row + 1], labels[row : row + 1], self.label_smoothing) * count
                correct = (logits[row].argmax(dim=-1)[chosen] == labels[row][chosen]).sum()
                rows.append(torch.stack([loss.double(), correct.double(), count.double()]))
            return torch.stack(rows)

        sums = evaluate_examples(dataset, collate, score, accelerator, batch_size).sum(dim=0)
        return {"eval_loss": float(sums[0] / sums[2]), "eval_token_accuracy": float(sums[1] / sums[2])}

    def _logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model_output(model(**model_inputs(batch)), ("logits",), type(self).__name__)
        labels = batch[LABELS]
        if logits.dim() != 3 or logits.shape[:2] != labels.shape:
            raise ValueError(
                f"the model's captioning logits have shape {tuple(logits.shape)}; expected [batch, length, vocab] "
                f"with [batch, length] = {tuple(labels.shape)} (a Beit3ForCaptioning model)."
            )
        if logits.shape[2] < self.vocab_size:
            raise ValueError(
                f"the model scores {logits.shape[2]} tokens but the tokenizer has {self.vocab_size}; the processor "
                "does not belong to this model."
            )
        return logits

    def _collate(
        self, examples: list[dict[str, Any]], caption_index: int | None, key: tuple
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
            num_tokens = int(attention_mask[row].sum())
            if num_tokens < 2:
                raise ValueError(f"caption {text!r} gave {num_tokens} token(s); captions are encoded as <s> .. </s>.")
            generator = keyed_generator(*key, text)
            count = num_caption_masks(num_tokens, self.mask_ratio)
            positions = 1 + torch.randperm(num_tokens - 1, generator=generator)[:count]
            choice = torch.rand(count, generator=generator)
            random_ids = torch.randint(FIRST_RANDOM_ID, self.vocab_size, (count,), generator=generator)
            labels[row, positions] = input_ids[row, positions]
            replaced = torch.where(choice < 0.8, self.mask_token_id, input_ids[row, positions])
            masked[row, positions] = torch.where(choice >= 0.9, random_ids, replaced)
        inputs["input_ids"] = masked
        inputs[LABELS] = labels
        return inputs


class Beit3ImageClassificationObjective:
    """Cross-entropy over image classes (the ImageNet head, `Beit3ForImageClassification`); accuracy in evaluation.

    Rows need an image and an int class id (the shapes scenes' `label`: the main object's "{color} {shape}").
    `vlzoo train` builds a new head with the classes of the training rows (`labels_from_data`).

    Args:
        processor: a `Beit3Processor` or image processor; only images are encoded.
        image_column, label_column: row keys of the image and its class id.
    """

    def __init__(self, processor: Any, *, image_column: str = "image", label_column: str = "label", **labels: Any):
        check_processor(processor)
        check_column_names(image_column=image_column, label_column=label_column)
        unknown = sorted(set(labels) - {"id2label", "label2id"})
        if unknown:
            raise TypeError(f"Beit3ImageClassificationObjective got unexpected options {unknown}")
        self.processor = getattr(processor, "image_processor", processor)
        self.image_column = image_column
        self.label_column = label_column

    @classmethod
    def labels_from_data(cls, train_rows: Any, *, label_column: str = "label", **options: Any) -> dict[str, dict]:
        """`id2label`/`label2id` from the class names of the rows' `label_column` feature (a `datasets.ClassLabel`),
        else from the distinct ids (named by their number)."""
        feature = getattr(train_rows, "features", {}).get(label_column) if hasattr(train_rows, "features") else None
        names = getattr(feature, "names", None)
        if not names:
            ids = sorted({int(row[label_column]) for row in train_rows})
            names = [str(i) for i in range(ids[-1] + 1)] if ids else []
        return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Nothing is drawn at random."""

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        for example in examples:
            require_columns(example, (self.image_column, self.label_column), type(self).__name__)
        images = [example[self.image_column] for example in examples]
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, LABELS: torch.tensor([int(e[self.label_column]) for e in examples])}

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self._logits(model, batch), batch[LABELS])

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss` and `eval_accuracy` (top-1), every example counted once."""

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            logits, labels = self._logits(model, batch), batch[LABELS]
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
            return torch.stack([loss.double(), (logits.argmax(dim=-1) == labels).double()], dim=1)

        values = evaluate_examples(dataset, lambda rows, indices: self.collate(rows), score, accelerator, batch_size)
        return {"eval_loss": float(values[:, 0].mean()), "eval_accuracy": float(values[:, 1].mean())}

    def _logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model_output(model(pixel_values=batch["pixel_values"]), ("logits",), type(self).__name__)
        if logits.dim() != 2 or int(batch[LABELS].max()) >= logits.shape[1]:
            raise ValueError(
                f"the model's class logits have shape {tuple(logits.shape)}, too few for class id "
                f"{int(batch[LABELS].max())}; build the head with the data's classes (config.id2label)."
            )
        return logits
