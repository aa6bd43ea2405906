"""METER pretraining as one training objective: the shared MLM and ITM objectives on `MeterForPreTraining`."""

from collections.abc import Mapping
from numbers import Real
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from vlzoo.training.objectives.common import (
    LABELS,
    EpochKeyed,
    check_processor,
    choose_caption,
    process,
    require_columns,
)
from vlzoo.training.objectives.itm_objective import ItmObjective
from vlzoo.training.objectives.mlm_objective import IGNORE_INDEX, MlmObjective

__all__ = ["SIMILARITY_PREFIX", "MeterItmObjective", "MeterPretrainingObjective"]

# Batch keys holding the dual encoder's own processor outputs (its tokenizer and resolution, not METER's).
SIMILARITY_PREFIX = "similarity."


class _DualEncoderSimilarity(nn.Module):
    """The dual encoder as `ItmObjective`'s `similarity_model`: called with METER's inputs (which it cannot read), it
    scores the same rows from its own processor's inputs, set by the objective just before."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.inputs: dict[str, torch.Tensor] = {}

    def forward(self, **meter_inputs: torch.Tensor) -> Any:
        device = meter_inputs["input_ids"].device
        return self.model(**{name: value.to(device) for name, value in self.inputs.items()})


class MeterPretrainingObjective(EpochKeyed):
    """METER's pretraining tasks (meter.md §3: `mlm` and `itm`, weight 1 each): `mlm_weight * MLM + itm_weight * ITM`.

    Each batch of rows (images with captions) is processed once. The MLM part is `MlmObjective` (BERT's 80/10/10
    masking of the caption, 15 %, cross-entropy on the masked tokens, the matched image); the ITM part is
    `ItmObjective` on the clean caption (B matched pairs, up to 2B mismatched ones), as the original runs the two
    tasks as separate passes. The model must return `mlm_logits` and `itm_logits` (`MeterForPreTraining`).

    ITM negatives: with a dual encoder (`similarity_model`), hard negatives drawn from its contrastive similarities
    (`softmax(logits_per_image)` over the batch's other rows); without one, uniform random ones. The dual encoder
    reads its own inputs: `similarity_processor` (default: the folder's processor when `similarity_model` is a
    folder) encodes the same images and captions, so e.g. an MS-CLIP model with its CLIP tokenizer can pick METER's
    negatives. It is kept frozen in eval mode.

    Args:
        processor: the METER processor (its tokenizer gives `<mask>`, the vocabulary and the special ids).
        similarity_model: a dual encoder returning `logits_per_image` (`MsClipModel`, ...), or a save_pretrained
            folder of one (loaded with `AutoModel` and `AutoProcessor`: the form `vlzoo train` passes from
            `model.objective.similarity_model`).
        similarity_processor: the dual encoder's processor; None with a module = it reads METER's own inputs.
        negatives: "random" or "hard"; default "hard" with a `similarity_model`, else "random".
        mlm_probability: share of caption tokens masked.
        mlm_weight, itm_weight: weights of the two losses.
        image_column, text_column, caption_index, max_length: as in `MlmObjective` and `ItmObjective`.
    """

    def __init__(
        self,
        processor: Any,
        *,
        similarity_model: nn.Module | str | None = None,
        similarity_processor: Any = None,
        negatives: str | None = None,
        mlm_probability: float = 0.15,
        mlm_weight: float = 1.0,
        itm_weight: float = 1.0,
        image_column: str = "image",
        text_column: str = "captions",
        caption_index: int | None = None,
        max_length: int | None = None,
    ):
        check_processor(processor)
        for name, value in (("mlm_weight", mlm_weight), ("itm_weight", itm_weight)):
            if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if mlm_weight == 0 and itm_weight == 0:
            raise ValueError("mlm_weight and itm_weight are both 0: there is nothing to train.")
        if negatives is None:
            negatives = "random" if similarity_model is None else "hard"
        if negatives == "hard" and similarity_model is None:
            raise ValueError(
                "negatives='hard' needs similarity_model: a dual encoder (e.g. a trained MsClipModel or its folder) "
                "whose contrastive similarities pick the negatives; METER itself has none."
            )
        if isinstance(similarity_model, str):
            from transformers import AutoModel, AutoProcessor

            if similarity_processor is None:
                similarity_processor = AutoProcessor.from_pretrained(similarity_model)
            similarity_model = AutoModel.from_pretrained(similarity_model)
        if similarity_processor is not None:
            if similarity_model is None:
                raise ValueError("similarity_processor is the dual encoder's: give similarity_model as well.")
            check_processor(similarity_processor)
        if similarity_model is not None and not isinstance(similarity_model, nn.Module):
            raise TypeError(
                f"similarity_model must be a dual encoder module or a folder, got {type(similarity_model).__name__}."
            )
        if similarity_model is not None:
            similarity_model.requires_grad_(False)
        self.processor = processor
        self.similarity_processor = similarity_processor
        self._similarity = None
        if similarity_processor is not None:
            self._similarity = similarity_model = _DualEncoderSimilarity(similarity_model)
        self.mlm_weight = float(mlm_weight)
        self.itm_weight = float(itm_weight)
        self.image_column, self.text_column = image_column, text_column
        columns = {"image_column": image_column, "text_column": text_column, "caption_index": caption_index}
        self.mlm = MlmObjective(processor, probability=mlm_probability, max_length=max_length, **columns)
        self.itm = ItmObjective(
            processor, negatives=negatives, similarity_model=similarity_model, max_length=max_length, **columns
        )
        self.caption_index = self.mlm.caption_index

    @property
    def negatives(self) -> str:
        return self.itm.negatives

    def set_epoch(self, epoch: int, seed: int) -> None:
        super().set_epoch(epoch, seed)
        self.mlm.set_epoch(epoch, seed)
        self.itm.set_epoch(epoch, seed)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The MLM batch (masked `input_ids`, `labels`, `attention_mask`, `pixel_values`), from which the clean
        captions are restored for ITM, plus the dual encoder's inputs under `similarity.*` when it has its own
        processor."""
        batch = self.mlm.collate(examples)
        if self.similarity_processor is not None:
            images, texts = [], []
            for example in examples:
                require_columns(example, (self.image_column, self.text_column), type(self).__name__)
                images.append(example[self.image_column])
                texts.append(
                    choose_caption(
                        example[self.text_column], self.text_column, self.caption_index, self.seed, self.epoch
                    )
                )
            for name, value in process(self.similarity_processor, images, texts, None).items():
                batch[SIMILARITY_PREFIX + name] = value
        return batch

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        meter_batch, similarity = _split(batch)
        loss = torch.zeros((), device=batch["input_ids"].device)
        if self.mlm_weight:
            loss = loss + self.mlm_weight * self.mlm.compute_loss(model, meter_batch)
        if self.itm_weight:
            if self._similarity is not None:
                self._similarity.inputs = similarity
            loss = loss + self.itm_weight * self.itm.compute_loss(model, _clean(meter_batch))
        return loss

    def evaluate(self, model: nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int) -> dict[str, float]:
        """The MLM metrics (`eval_mlm_loss`, `eval_mlm_accuracy`), the ITM metrics (`eval_itm_loss`,
        `eval_itm_accuracy`, per kind) and `eval_loss`, their weighted sum."""
        mlm = self.mlm.evaluate(model, dataset, accelerator, batch_size)
        itm = self.itm.evaluate(model, dataset, accelerator, batch_size)
        results = {"eval_loss": self.mlm_weight * mlm["eval_loss"] + self.itm_weight * itm["eval_loss"]}
        results["eval_mlm_loss"], results["eval_itm_loss"] = mlm.pop("eval_loss"), itm.pop("eval_loss")
        return {**results, **mlm, **itm}


class MeterItmObjective(ItmObjective):
    """`ItmObjective` for `MeterForImageTextRetrieval`, which also trains the rank score the pipelines read.

    The retrieval model has two heads on the same pooled features: `itm_logits` (the ITM head) and `logits`, the
    rank score `rank_output` that METER's retrieval fine-tuning trains and that the `image-text-matching` and
    `image-text-retrieval` pipelines score pairs by. The shared objective trains the ITM head only, which would leave
    the rank score as initialised; here the same pairs (matched, then mismatched) also train it with binary
    cross-entropy, `itm_loss + rank_weight * BCE(logits, matched)`, so a positive rank score means "matches". Models
    without a rank score (`MeterForPreTraining`) get the shared loss alone. Evaluation is the shared one (ITM head).

    Args:
        processor, **options: as `ItmObjective`.
        rank_weight: weight of the rank score's loss (0 = the shared objective).
    """

    def __init__(self, processor: Any, *, rank_weight: float = 1.0, **options: Any):
        super().__init__(processor, **options)
        if isinstance(rank_weight, bool) or not isinstance(rank_weight, Real) or rank_weight < 0:
            raise ValueError(f"rank_weight must be a number >= 0, got {rank_weight!r}.")
        self.rank_weight = float(rank_weight)
        self._rank_scores: list[torch.Tensor] = []

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self._rank_scores = []
        loss = super().compute_loss(model, batch)
        if not self.rank_weight or not self._rank_scores:
            return loss
        scores = self._rank_scores.pop()
        # ItmObjective puts the batch's matched pairs first, then the mismatched ones
        labels = torch.zeros_like(scores)
        labels[: batch["input_ids"].shape[0]] = 1
        return loss + self.rank_weight * nn.functional.binary_cross_entropy_with_logits(scores, labels)

    def _logits(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = model(**inputs)
        rank = outputs.get("logits") if isinstance(outputs, Mapping) else getattr(outputs, "logits", None)
        if rank is not None and rank.dim() == 2 and rank.shape[-1] == 1:
            self._rank_scores.append(rank[:, 0].float())
        itm_logits = (
            outputs.get("itm_logits") if isinstance(outputs, Mapping) else getattr(outputs, "itm_logits", None)
        )
        pairs = inputs["input_ids"].shape[0]
        if itm_logits is None or itm_logits.shape != (pairs, 2):
            raise ValueError(f"the model must return itm_logits of shape [{pairs}, 2] (not matched, matched).")
        return itm_logits


def _split(batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    meter = {name: value for name, value in batch.items() if not name.startswith(SIMILARITY_PREFIX)}
    similarity = {
        name[len(SIMILARITY_PREFIX) :]: value for name, value in batch.items() if name.startswith(SIMILARITY_PREFIX)
    }
    return meter, similarity


def _clean(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with the original caption ids (the MLM labels hold them at every masked position) and no labels."""
    labels = batch[LABELS]
    clean = {name: value for name, value in batch.items() if name != LABELS}
    clean["input_ids"] = torch.where(labels != IGNORE_INDEX, labels, batch["input_ids"])
    return clean
