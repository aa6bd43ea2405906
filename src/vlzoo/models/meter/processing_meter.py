"""METER processor: RoBERTa byte-level BPE for the text, METER's exact CLIP transform for the images."""

from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.processing_utils import ProcessorMixin

from .configuration_meter import MeterConfig
from .image_processing_meter import MeterImageProcessor
from .tokenization_meter import byte_level_tokenizer

__all__ = ["MeterProcessor"]


class MeterProcessor(ProcessorMixin):
    """Pairs a `MeterImageProcessor` with a RoBERTa tokenizer (`RobertaTokenizer`, byte-level BPE).

    Called like transformers' processors: `processor(images=..., text=...)`. Texts are tokenized as the original
    does (`<s> tokens </s>`, no token_type_ids), padded to the longest (`padding=True`) and truncated to the
    tokenizer's `model_max_length`, which `from_model_config` sets to what the model's position table holds (the
    original pads every caption to `max_text_len`: pass `padding="max_length", max_length=50` to do the same; the
    outputs of real tokens do not depend on it). Image options go to the image processor.
    """

    text_kwargs = {"padding": True, "truncation": True, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        image_processor = MeterImageProcessor() if image_processor is None else image_processor
        tokenizer = byte_level_tokenizer() if tokenizer is None else tokenizer
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(
        cls, config: MeterConfig, tokenizer: PreTrainedTokenizerBase | str | None = None
    ) -> "MeterProcessor":
        """The original transform at the model's resolution and a tokenizer matching its vocabulary.

        `tokenizer` is a tokenizer or a folder / Hub id of one (roberta-base's files for the released models). Without
        it, a model whose vocabulary is the byte-level one of `byte_level_tokenizer()` (261 ids) gets that; any other
        vocabulary size raises, naming it. The tokenizer's special ids must equal the text config's.
        """
        text_config = config.text_config
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if tokenizer is None:
            tokenizer = byte_level_tokenizer()
            if len(tokenizer) != text_config.vocab_size:
                raise ValueError(
                    f"text_config.vocab_size is {text_config.vocab_size}; pass the model's tokenizer (for the "
                    "released models: MeterProcessor.from_model_config(config, tokenizer='roberta-base'), or a folder "
                    f"with roberta-base's vocab.json and merges.txt). Only the {len(tokenizer)}-id byte-level "
                    "vocabulary is built without files."
                )
        if len(tokenizer) > text_config.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} ids but text_config.vocab_size is {text_config.vocab_size}"
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            expected, actual = getattr(text_config, name), getattr(tokenizer, name)
            if expected is not None and expected != actual:
                raise ValueError(f"text_config.{name} is {expected}, but the tokenizer's is {actual}")
        tokenizer.model_max_length = config.max_text_length
        return cls(image_processor=cls.image_processor_for(config), tokenizer=tokenizer)

    @staticmethod
    def image_processor_for(config: MeterConfig) -> MeterImageProcessor:
        """The original transform at the model's resolution; needs no tokenizer files, so a converted folder gets it
        even when the roberta-base files are not at hand."""
        size = config.vision_config.image_size
        # the Swin variant's transform is the original `imagenet_transform`: the same resize and crop, ImageNet
        # mean/std, RGB input
        statistics = (
            {"image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD} if config.uses_swin else {}
        )
        return MeterImageProcessor(size=size, crop_size=size, **statistics)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs: Any) -> None:
        for name, value in (("videos", videos), ("audio", audio)):
            if value is not None:
                raise ValueError(f"{type(self).__name__} takes images and text; got {name}.")
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)
