"""MS-CLIP processor: one call for texts (MsClipTokenizer) and images (MsClipImageProcessor)."""

from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from vlzoo.processing.clip_bpe import clip_bpe_vocab_and_merges

from .configuration_ms_clip import MsClipConfig
from .image_processing_ms_clip import MsClipImageProcessor
from .tokenization_ms_clip import MsClipTokenizer

__all__ = ["MsClipProcessor"]

FULL_VOCAB_SIZE = 49408
BYTE_TOKENS_AND_SPECIALS = 514  # 256 bytes, 256 bytes + "</w>", <|startoftext|>, <|endoftext|>


class MsClipProcessor(ProcessorMixin):
    """Pairs an `MsClipImageProcessor` and an `MsClipTokenizer`; either defaults to the released configuration
    (224 px, full CLIP vocabulary) when not given.

    Loading with `from_pretrained` finds both parts through `AutoImageProcessor`/`AutoTokenizer`, so the classes
    must be registered (importing `vlzoo` does this).
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        image_processor = MsClipImageProcessor() if image_processor is None else image_processor
        tokenizer = MsClipTokenizer() if tokenizer is None else tokenizer
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(cls, config: MsClipConfig) -> "MsClipProcessor":
        """The original eval transform at the model's resolution and the CLIP BPE tokenizer of its vocabulary size.

        Released models use the full 49408-token vocabulary; a smaller vocabulary (the tiny fixtures) gets the same
        BPE truncated to its first merges, exactly how those vocabularies were made.
        """
        size = config.vision_config.image_size
        vocab_size = config.text_config.vocab_size
        if vocab_size == FULL_VOCAB_SIZE:
            tokenizer = MsClipTokenizer()
        elif vocab_size < BYTE_TOKENS_AND_SPECIALS:
            raise ValueError(
                f"text_config.vocab_size is {vocab_size}; a CLIP BPE vocabulary has 512 byte tokens, merges and 2 "
                "special tokens"
            )
        else:
            tokenizer = MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=vocab_size - BYTE_TOKENS_AND_SPECIALS))
        return cls(image_processor=MsClipImageProcessor(size=size, crop_size=size), tokenizer=tokenizer)

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` and/or preprocess `images`.

        Returns a `BatchFeature` with `input_ids` and `attention_mask` when `text` is given (padded to the longest
        text by default; the tokenizer truncates to 77 tokens keeping the end token, see `MsClipTokenizer`) and
        `pixel_values` [N, 3, H, W] when `images` is given. Extra keyword arguments go to the tokenizer.
        """
        if text is None and images is None:
            raise ValueError("MsClipProcessor needs text, images or both; got neither.")
        if kwargs and text is None:
            raise TypeError(f"keyword arguments {sorted(kwargs)} are tokenizer arguments, but no text was given.")
        data = {}
        if text is not None:
            if isinstance(text, (list, tuple)) and len(text) == 0:
                raise ValueError("text must be a string or a non-empty list of strings, got an empty list.")
            data.update(self.tokenizer(text, padding=padding, return_tensors=return_tensors, **kwargs))
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors))
        return BatchFeature(data=data, tensor_type=return_tensors)
