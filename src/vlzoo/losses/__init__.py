"""Training losses shared by the families: contrastive, image-text matching, MLM, VQA and box regression."""

from .boxes import BoxRegressionLoss, box_regression_loss
from .contrastive import ContrastiveLoss, contrastive_loss
from .distributed import all_gather_with_grad, world_info
from .itm import ImageTextMatchingLoss, image_text_matching_loss, sample_hard_negatives
from .mlm import MaskedLanguageModelingLoss, mask_tokens, masked_language_modeling_loss
from .vqa import VqaSoftTargetLoss, vqa_soft_target_loss

__all__ = [
    "BoxRegressionLoss",
    "ContrastiveLoss",
    "ImageTextMatchingLoss",
    "MaskedLanguageModelingLoss",
    "VqaSoftTargetLoss",
    "all_gather_with_grad",
    "box_regression_loss",
    "contrastive_loss",
    "image_text_matching_loss",
    "mask_tokens",
    "masked_language_modeling_loss",
    "sample_hard_negatives",
    "vqa_soft_target_loss",
    "world_info",
]
