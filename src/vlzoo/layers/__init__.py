"""Leaf blocks shared by every family: attention, MLP, masks, box operations."""

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

__all__ = [
    "BOX_FORMATS",
    "FeedForward",
    "MultiHeadSelfAttention",
    "additive_attention_mask",
    "box_area",
    "convert_boxes",
    "eager_attention_forward",
    "paired_box_iou",
    "paired_generalized_box_iou",
    "pairwise_box_iou",
    "pairwise_generalized_box_iou",
]
