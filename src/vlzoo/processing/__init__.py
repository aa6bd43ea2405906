"""Preprocessing shared by the families: image transforms faithful to the original code, tokenizer builders."""

from .clip_bpe import clean_clip_text, clip_bpe_vocab_and_merges
from .image_transforms import center_crop, resize_short_side, to_normalized_array, to_rgb_image

__all__ = [
    "center_crop",
    "clean_clip_text",
    "clip_bpe_vocab_and_merges",
    "resize_short_side",
    "to_normalized_array",
    "to_rgb_image",
]
