"""Visual question answering as multi-label classification over an answer vocabulary, with VQAv2 soft targets."""

import re
from collections.abc import Mapping
from numbers import Integral
from typing import Any

import torch
from accelerate import Accelerator

from vlzoo.evaluation.vqa import normalize_vqa_answer, vqa_answer_scores
from vlzoo.losses.vqa import vqa_soft_target_loss

from .common import (
    LABELS,
    check_column_names,
    check_optional_int,
    check_processor,
    column_values,
    evaluate_examples,
    model_inputs,
    model_output,
    process,
    require_columns,
)

UNKNOWN_ANSWER_CHOICES = ("error", "ignore")
LOGIT_NAMES = ("logits", "vqa_logits")


def _id2label(id2label: Any) -> dict[int, str]:
    """`id2label` with int ids 0..A-1 (config files store the keys as strings)."""
    if not isinstance(id2label, Mapping) or not id2label:
        raise ValueError(
            "id2label must be a non-empty mapping of class id to answer, e.g. build_answer_vocabulary(rows)"
            f"['id2label'] or model.config.id2label; got {id2label!r}."
        )
    labels = {}
    for key, label in id2label.items():
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key)
        if isinstance(key, bool) or not isinstance(key, Integral):
            raise ValueError(f"id2label keys must be class ids (ints, or digit strings from JSON), got {key!r}.")
        if not isinstance(label, str):
            raise ValueError(f"id2label[{key}] must be an answer string, got {label!r}.")
        labels[int(key)] = label
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(f"id2label ids must be 0..{len(labels) - 1} without gaps, got {sorted(labels)[:20]}.")
    return labels


class VqaObjective:
    """Soft-target BCE over `id2label` answers; VQA accuracy (overall and per question type) in evaluation.

    The target of answer `a` for a question is the VQA accuracy predicting `a` would score
    (`vlzoo.evaluation.vqa_answer_scores`: 0.3/0.6/0.9/1 for 1/2/3/4+ of ten human answers, 1 for a single answer),
    so the loss pushes exactly towards the metric. The model gets `input_ids`, `attention_mask`, `pixel_values`
    (whatever the processor returns) and must return `logits` `[batch, len(id2label)]` (`vqa_logits` is accepted
    too); the objective computes `vlzoo.losses.vqa_soft_target_loss` itself, so no `labels` reach the model.

    Args:
        processor: Called as `processor(images=..., text=..., return_tensors="pt", padding=True)`.
        id2label: Answer classes, e.g. `build_answer_vocabulary(train_rows)["id2label"]` or `model.config.id2label`
            (string keys from a config file are accepted). Labels are matched after `normalize_vqa_answer`.
        label2id: Optional; when given it must be the inverse of `id2label` (a stale copy is an error).
        image_column, question_column, answers_column: Row keys of the image, the question and its list of human
            answers (`vlzoo.data.vqa_rows` rows have them).
        type_column: Row key of the question type; evaluation reports accuracy per type when rows have it.
        unknown_answers: "error" (default) raises when a training answer is not in the vocabulary; "ignore" gives
            it no target (ViLT/METER's handling of answers below the vocabulary's count threshold). Evaluation
            always ignores them in the loss, and scores accuracy against all human answers.
        max_length: Truncate questions to this many tokens; `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        id2label: Mapping[Any, str],
        label2id: Mapping[str, Any] | None = None,
        image_column: str = "image",
        question_column: str = "question",
        answers_column: str = "answers",
        type_column: str = "question_type",
        unknown_answers: str = "error",
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(
            image_column=image_column,
            question_column=question_column,
            answers_column=answers_column,
            type_column=type_column,
        )
        if unknown_answers not in UNKNOWN_ANSWER_CHOICES:
            raise ValueError(f"unknown_answers must be one of {UNKNOWN_ANSWER_CHOICES}, got {unknown_answers!r}.")
        self.id2label = _id2label(id2label)
        if label2id is not None:
            expected = {label: index for index, label in self.id2label.items()}
            given = {label: int(index) for label, index in dict(label2id).items()}
            if given != expected:
                raise ValueError(
                    "label2id is not the inverse of id2label (a stale label2id?); pass both from "
                    "build_answer_vocabulary or leave label2id out."
                )
        self.answer_to_id: dict[str, int] = {}
        for index, label in self.id2label.items():
            normalized = normalize_vqa_answer(label)
            if normalized in self.answer_to_id:
                other = self.id2label[self.answer_to_id[normalized]]
                raise ValueError(
                    f"id2label has {other!r} and {label!r}, which normalise to the same answer {normalized!r}."
                )
            self.answer_to_id[normalized] = index
        self.processor = processor
        self.image_column = image_column
        self.question_column = question_column
        self.answers_column = answers_column
        self.type_column = type_column
        self.unknown_answers = unknown_answers
        self.max_length = check_optional_int("max_length", max_length, 1)

    @classmethod
    def labels_from_data(cls, train_rows: Any, *, min_answer_count: int = 1, **options: Any) -> dict[str, dict]:
        """The label fields (`id2label`, `label2id`) a new VQA head is built with: the training rows' answers.

        `vlzoo train` calls this before building a model from a preset, so `model.task=vqa` needs no hand-written
        vocabulary; `min_answer_count` (an objective option) keeps answers that win at least that many questions.
        """
        from ...data.tasks import build_answer_vocabulary

        column = options.get("answers_column", "answers")
        return build_answer_vocabulary(train_rows, min_count=min_answer_count, answers_column=column)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Nothing is drawn at random: every question and all its answers are used each epoch."""

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Processor inputs plus `labels`: `[batch, num_labels]` float32 soft scores."""
        return self._collate(examples, unknown_answers=self.unknown_answers)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return vqa_soft_target_loss(self._logits(model, batch), batch[LABELS])

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss`, `eval_vqa_accuracy` and, when rows have `type_column`, `eval_vqa_accuracy_<type>` (the type
        with runs of other characters than letters and digits written "_": VQAv2's "yes/no" gives `..._yes_no`).

        Each question's accuracy is that of its top-scoring answer under `vqa_accuracy`; every question counts once
        on any number of processes.
        """
        answers = column_values(dataset, self.answers_column)
        if answers is None:
            raise ValueError(f"the evaluation dataset has no column {self.answers_column!r} (the human answers).")
        scores = [vqa_answer_scores(_answer_list(value, self.answers_column)) for value in answers]

        def collate(examples: list[dict[str, Any]], indices: list[int]) -> dict[str, torch.Tensor]:
            return self._collate(examples, unknown_answers="ignore")

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            logits = self._logits(model, batch)
            losses = [vqa_soft_target_loss(logits[i : i + 1], batch[LABELS][i : i + 1]) for i in range(len(logits))]
            predictions = [self.id2label[int(label)] for label in logits.argmax(dim=-1).tolist()]
            hits = [scores[i].get(normalize_vqa_answer(p), 0.0) for i, p in zip(indices, predictions, strict=True)]
            return torch.stack(
                [torch.stack(losses).double(), torch.tensor(hits, dtype=torch.float64, device=logits.device)], dim=1
            )

        values = evaluate_examples(dataset, collate, score, accelerator, batch_size)
        accuracy = values[:, 1]
        metrics = {"eval_loss": float(values[:, 0].mean()), "eval_vqa_accuracy": float(accuracy.mean())}
        types = column_values(dataset, self.type_column)
        if types is not None:
            for question_type in sorted(set(types)):
                if question_type:
                    chosen = torch.tensor([t == question_type for t in types])
                    name = re.sub(r"\W+", "_", question_type).strip("_")
                    metrics[f"eval_vqa_accuracy_{name}"] = float(accuracy[chosen].mean())
        return metrics

    def _logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model_output(model(**model_inputs(batch)), LOGIT_NAMES, type(self).__name__)
        if logits.dim() != 2 or logits.shape[1] != self.num_labels:
            raise ValueError(
                f"the model's VQA logits have shape {tuple(logits.shape)}; expected [batch, {self.num_labels}] for "
                "the answer vocabulary. Set the config's id2label/label2id from the same vocabulary."
            )
        return logits

    def _collate(self, examples: list[dict[str, Any]], *, unknown_answers: str) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, questions = [], []
        labels = torch.zeros(len(examples), self.num_labels, dtype=torch.float32)
        for row, example in enumerate(examples):
            require_columns(example, (self.image_column, self.question_column, self.answers_column), "VqaObjective")
            question = example[self.question_column]
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"column {self.question_column!r} must hold a non-empty question, got {question!r}.")
            images.append(example[self.image_column])
            questions.append(question)
            for answer, target in vqa_answer_scores(
                _answer_list(example[self.answers_column], self.answers_column)
            ).items():
                index = self.answer_to_id.get(answer)
                if index is not None:
                    labels[row, index] = target
                elif unknown_answers == "error":
                    raise ValueError(
                        f"answer {answer!r} of the question {question!r} is not in id2label ({self.num_labels} "
                        "answers). Build the vocabulary from these rows (build_answer_vocabulary) or pass "
                        "unknown_answers='ignore'."
                    )
        inputs = process(self.processor, images, questions, self.max_length)
        inputs[LABELS] = labels
        return inputs


def _answer_list(value: Any, column: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"column {column!r} must hold a non-empty list of answer strings (one per annotator), got {value!r}."
        )
    return list(value)


__all__ = ["UNKNOWN_ANSWER_CHOICES", "VqaObjective"]
