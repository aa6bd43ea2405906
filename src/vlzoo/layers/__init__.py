"""Leaf blocks shared by every family: attention, MLP, masks, box operations."""

from .attention import MultiHeadSelfAttention, eager_attention_forward
from .box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    paired_box_iou,
    paired_generalized_box_iou,
)
from .masks import additive_attention_mask
from .mlp import FeedForward

__all__ = [
    "FeedForward",
    "MultiHeadSelfAttention",
    "additive_attention_mask",
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "eager_attention_forward",
    "generalized_box_iou",
    "paired_box_iou",
    "paired_generalized_box_iou",
]
