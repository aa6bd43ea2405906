"""BEiT-3 processor: one call for texts (Beit3Tokenizer) and images (Beit3ImageProcessor)."""

import os

from transformers.processing_utils import ProcessorMixin

from .configuration_beit3 import Beit3Config
from .image_processing_beit3 import Beit3ImageProcessor
from .tokenization_beit3 import Beit3Tokenizer

__all__ = ["Beit3Processor"]


class Beit3Processor(ProcessorMixin):
    """Pairs a `Beit3ImageProcessor` and a `Beit3Tokenizer` (which needs the sentencepiece file, `beit3.spm`).

    `processor(images=..., text=...)` returns `pixel_values`, `input_ids` and `attention_mask` (1 = token). Texts are
    truncated to the tokenizer's `model_max_length` (64, the original `num_max_bpe_tokens`) keeping `</s>`, and
    padded to the longest (padded keys are masked, so the outputs equal the original's fixed-length padding).
    """

    text_kwargs = {"padding": True, "truncation": True, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        if tokenizer is None:
            raise ValueError(
                "Beit3Processor needs a tokenizer: Beit3Tokenizer('beit3.spm') (the released sentencepiece model)"
            )
        image_processor = Beit3ImageProcessor() if image_processor is None else image_processor
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(
        cls, config: Beit3Config, sentencepiece_model: str | os.PathLike | None = None, *, imagenet: bool = False
    ) -> "Beit3Processor":
        """The original evaluation transform at the model's resolution (the ImageNet one with `imagenet=True`) and
        the tokenizer of `sentencepiece_model`; the tokenizer's `<mask>` id must be the config's."""
        if sentencepiece_model is None:
            raise ValueError(
                "pass sentencepiece_model: the path of the .spm file the model was trained with (beit3.spm for the "
                "released models)"
            )
        tokenizer = Beit3Tokenizer(sentencepiece_model)
        if tokenizer.mask_token_id != config.mask_token_id or tokenizer.vocab_size > config.vocab_size:
            raise ValueError(
                f"{sentencepiece_model} gives {tokenizer.vocab_size} ids with <mask> = {tokenizer.mask_token_id}, but "
                f"the model has vocab_size {config.vocab_size} and mask_token_id {config.mask_token_id}"
            )
        size = config.image_size
        images = Beit3ImageProcessor.for_imagenet(size) if imagenet else Beit3ImageProcessor.for_vision_language(size)
        return cls(image_processor=images, tokenizer=tokenizer)
