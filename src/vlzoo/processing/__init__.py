"""Preprocessing shared by the families: the image processor they configure, image transforms faithful to the
original code with one input rule, tokenizer builders."""

from .clip_bpe import clean_clip_text, clip_bpe_vocab_and_merges
from .image_processor import VlzooImageProcessor
from .image_transforms import (
    center_crop,
    load_image_source,
    resize_short_side,
    resize_to,
    to_normalized_array,
    to_pixel_array,
    to_rgb_image,
)

__all__ = [
    "VlzooImageProcessor",
    "center_crop",
    "clean_clip_text",
    "clip_bpe_vocab_and_merges",
    "load_image_source",
    "resize_short_side",
    "resize_to",
    "to_normalized_array",
    "to_pixel_array",
    "to_rgb_image",
]
