"""Metrics for vision-language tasks: plain functions and evaluate modules that load without the Hub."""

from .functional import (
    grounding_accuracy,
    grounding_iou,
    image_text_matching_accuracy,
    normalize_vqa_answer,
    retrieval_recall_at_k,
    vqa_accuracy,
    vqa_answer_scores,
    zero_shot_accuracy,
    zero_shot_accuracy_from_logits,
)
from .loading import METRIC_NAMES, load_metric, metric_path

__all__ = [
    "METRIC_NAMES",
    "grounding_accuracy",
    "grounding_iou",
    "image_text_matching_accuracy",
    "load_metric",
    "metric_path",
    "normalize_vqa_answer",
    "retrieval_recall_at_k",
    "vqa_accuracy",
    "vqa_answer_scores",
    "zero_shot_accuracy",
    "zero_shot_accuracy_from_logits",
]
