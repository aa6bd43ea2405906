"""MS-CLIP processor: one call for texts (MsClipTokenizer) and images (MsClipImageProcessor)."""

from typing import Any

from transformers.processing_utils import ImagesKwargs, ProcessorMixin, TextKwargs
from transformers.utils import logging

from vlzoo.processing.clip_bpe import clip_bpe_vocab_and_merges

from .configuration_ms_clip import MsClipConfig
from .image_processing_ms_clip import MsClipImageProcessor
from .tokenization_ms_clip import MsClipTokenizer

__all__ = ["MsClipProcessor"]

logger = logging.get_logger(__name__)

FULL_VOCAB_SIZE = 49408
BYTE_TOKENS_AND_SPECIALS = 514  # 256 bytes, 256 bytes + "</w>", <|startoftext|>, <|endoftext|>


def _text_only_options(kwargs: dict[str, Any]) -> list[str]:
    """The keyword arguments (flat or in `text_kwargs=`) that only the tokenizer reads."""
    text_only = set(TextKwargs.__annotations__) - set(ImagesKwargs.__annotations__)
    names = [name for name in kwargs if name in text_only]
    names += [name for name in kwargs.get("text_kwargs") or {} if name in text_only]
    return sorted(set(names))


class MsClipProcessor(ProcessorMixin):
    """Pairs an `MsClipImageProcessor` and an `MsClipTokenizer`; either defaults to the released configuration
    (224 px, full CLIP vocabulary) when not given.

    Called like transformers' `CLIPProcessor` (the same `ProcessorMixin.__call__`): `processor(images, text)` or by
    keyword; image paths and URLs are loaded; image options (`size`, `do_normalize`, ...) go to the image processor
    and text options (`padding`, `max_length`, ...) to the tokenizer, also grouped as `images_kwargs=`/`text_kwargs=`;
    an unknown option is logged by transformers and ignored. Two defaults differ from `CLIPProcessor`: texts are padded
    to the longest (`padding=True`) and `return_tensors="pt"`; pass `padding=False` / `return_tensors=None` to change
    them. `decode`/`batch_decode` with `skip_special_tokens=True` drop the padding too (see `MsClipTokenizer`).

    Loading with `from_pretrained` finds both parts through `AutoImageProcessor`/`AutoTokenizer`, so the classes
    must be registered (importing `vlzoo` does this).
    """

    text_kwargs = {"padding": True, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        image_processor = MsClipImageProcessor() if image_processor is None else image_processor
        tokenizer = MsClipTokenizer() if tokenizer is None else tokenizer
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(cls, config: MsClipConfig) -> "MsClipProcessor":
        """The original eval transform at the model's resolution and the CLIP BPE tokenizer of its vocabulary size.

        Released models use the full 49408-token vocabulary; a smaller vocabulary (the tiny fixtures) gets the same
        BPE truncated to its first merges, exactly how those vocabularies were made. The tokenizer's start, end and
        pad ids must equal the text config's (the text tower pools at the end token), otherwise this raises.
        """
        size = config.vision_config.image_size
        text_config = config.text_config
        vocab_size = text_config.vocab_size
        if vocab_size == FULL_VOCAB_SIZE:
            tokenizer = MsClipTokenizer()
        elif vocab_size < BYTE_TOKENS_AND_SPECIALS:
            raise ValueError(
                f"text_config.vocab_size is {vocab_size}; a CLIP BPE vocabulary has 512 byte tokens, merges and 2 "
                "special tokens"
            )
        else:
            tokenizer = MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=vocab_size - BYTE_TOKENS_AND_SPECIALS))
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            expected, actual = getattr(text_config, name), getattr(tokenizer, name)
            if expected is not None and expected != actual:
                raise ValueError(
                    f"text_config.{name} is {expected}, but the CLIP BPE tokenizer of vocabulary size {vocab_size} "
                    f"gives {actual}; set text_config.{name}={actual}."
                )
        return cls(image_processor=MsClipImageProcessor(size=size, crop_size=size), tokenizer=tokenizer)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs) -> None:
        """transformers' checks, plus: no video or audio, and a warning for tokenizer options given without text."""
        for name, value in (("videos", videos), ("audio", audio)):
            if value is not None:
                raise ValueError(f"{type(self).__name__} takes images and text; got {name}.")
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)
        text_only = _text_only_options(kwargs) if text is None else []
        if text_only:
            logger.warning(f"{text_only} are tokenizer options, but no text was given: they are not used.")
