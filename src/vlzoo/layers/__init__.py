"""Leaf blocks shared by every family: attention, MLP, masks, norms, box operations, tracing checks."""

from .attention import MultiHeadSelfAttention, eager_attention_forward
from .box_ops import (
    BOX_FORMATS,
    box_area,
    convert_boxes,
    paired_box_iou,
    paired_generalized_box_iou,
    pairwise_box_iou,
    pairwise_generalized_box_iou,
)
from .masks import additive_attention_mask
from .mlp import FeedForward
from .norms import FreezableBatchNorm2d
from .tracing import is_tracing

__all__ = [
    "BOX_FORMATS",
    "FeedForward",
    "FreezableBatchNorm2d",
    "MultiHeadSelfAttention",
    "additive_attention_mask",
    "box_area",
    "convert_boxes",
    "eager_attention_forward",
    "is_tracing",
    "paired_box_iou",
    "paired_generalized_box_iou",
    "pairwise_box_iou",
    "pairwise_generalized_box_iou",
]
