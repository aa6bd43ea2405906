"""Preprocessing shared by the families: the image processors they configure (centre crop or letterbox), image
transforms faithful to the original code with one input rule, tokenizer builders."""

from .bert_vocab import BERT_UNCASED_VOCAB_SIZE, bert_uncased_tokenizer, bert_uncased_vocab
from .clip_bpe import clean_clip_text, clip_bpe_vocab_and_merges
from .image_processor import VlzooImageProcessor
from .image_transforms import (
    LetterboxGeometry,
    center_crop,
    letterbox_geometry,
    load_image_source,
    pad_to_canvas,
    resize_short_side,
    resize_to,
    to_normalized_array,
    to_pixel_array,
    to_rgb_image,
)
from .letterbox import LetterboxImageProcessor

__all__ = [
    "BERT_UNCASED_VOCAB_SIZE",
    "bert_uncased_tokenizer",
    "bert_uncased_vocab",
    "LetterboxGeometry",
    "LetterboxImageProcessor",
    "VlzooImageProcessor",
    "center_crop",
    "clean_clip_text",
    "clip_bpe_vocab_and_merges",
    "letterbox_geometry",
    "load_image_source",
    "pad_to_canvas",
    "resize_short_side",
    "resize_to",
    "to_normalized_array",
    "to_pixel_array",
    "to_rgb_image",
]
