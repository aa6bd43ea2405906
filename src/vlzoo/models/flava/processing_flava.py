"""FLAVA processor: BERT uncased WordPiece for texts and FLAVA's image transform (with codebook pixels and masks)."""

from pathlib import Path
from typing import Any

from transformers import BertTokenizer
from transformers.processing_utils import ProcessorMixin

from vlzoo.processing.bert_vocab import bert_uncased_vocab

from .configuration_flava import FlavaConfig
from .image_processing_flava import VlzooFlavaImageProcessor

__all__ = ["VlzooFlavaProcessor"]


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
