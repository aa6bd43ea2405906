"""Leaf blocks shared by every family: attention, transformer layers, multiway experts, MLP, masks, norms, positions,
patch embedding, poolers, heads, outputs, box operations, tracing checks."""

from .attention import MultiHeadAttention, eager_attention_forward
from .box_ops import (
    BOX_FORMATS,
    box_area,
    convert_boxes,
    paired_box_iou,
    paired_generalized_box_iou,
    pairwise_box_iou,
    pairwise_generalized_box_iou,
)
from .heads import BoxHead, ItmHead, MlmHead, MlmTransform, MlpClassifierHead, NormalizedProjection
from .masks import additive_attention_mask, key_padding_attention_mask
from .mlp import FeedForward
from .multiway import EXPERT_NAMES, TORCHSCALE_EXPERT_NAMES, Multiway, route
from .norms import FreezableBatchNorm2d
from .outputs import GroundingOutput, ImageTextMatchingOutput
from .patch_embedding import PatchEmbedding
from .poolers import FirstTokenPooler, MeanPooler
from .positions import LearnedPositionEmbedding, SinePositionEmbedding2D, resize_position_table_2d
from .tracing import is_tracing
from .transformer import TransformerFeedForward, TransformerLayer, drop_path

__all__ = [
    "BOX_FORMATS",
    "EXPERT_NAMES",
    "TORCHSCALE_EXPERT_NAMES",
    "BoxHead",
    "FeedForward",
    "FirstTokenPooler",
    "FreezableBatchNorm2d",
    "GroundingOutput",
    "ImageTextMatchingOutput",
    "ItmHead",
    "LearnedPositionEmbedding",
    "MeanPooler",
    "MlmHead",
    "MlmTransform",
    "MlpClassifierHead",
    "MultiHeadAttention",
    "Multiway",
    "NormalizedProjection",
    "PatchEmbedding",
    "SinePositionEmbedding2D",
    "TransformerFeedForward",
    "TransformerLayer",
    "additive_attention_mask",
    "box_area",
    "convert_boxes",
    "drop_path",
    "eager_attention_forward",
    "is_tracing",
    "key_padding_attention_mask",
    "paired_box_iou",
    "paired_generalized_box_iou",
    "pairwise_box_iou",
    "pairwise_generalized_box_iou",
    "resize_position_table_2d",
    "route",
]
