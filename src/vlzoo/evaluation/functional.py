"""Plain metric functions of vlzoo, one import away; the evaluate modules in `metrics/` call these."""

from .grounding import grounding_accuracy, grounding_iou
from .retrieval import retrieval_recall_at_k
from .vqa import normalize_vqa_answer, vqa_accuracy
from .zero_shot import zero_shot_accuracy, zero_shot_accuracy_from_logits

__all__ = [
    "grounding_accuracy",
    "grounding_iou",
    "normalize_vqa_answer",
    "retrieval_recall_at_k",
    "vqa_accuracy",
    "zero_shot_accuracy",
    "zero_shot_accuracy_from_logits",
]
