"""Plain metric functions of vlzoo, one import away; the evaluate modules in `metrics/` call these."""

from .grounding import grounding_accuracy, grounding_iou
from .matching import image_text_matching_accuracy
from .retrieval import retrieval_recall_at_k
from .vqa import normalize_vqa_answer, vqa_accuracy, vqa_answer_scores
from .zero_shot import zero_shot_accuracy, zero_shot_accuracy_from_logits

__all__ = [
    "grounding_accuracy",
    "grounding_iou",
    "image_text_matching_accuracy",
    "normalize_vqa_answer",
    "retrieval_recall_at_k",
    "vqa_accuracy",
    "vqa_answer_scores",
    "zero_shot_accuracy",
    "zero_shot_accuracy_from_logits",
]
