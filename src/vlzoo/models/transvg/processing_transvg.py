"""TransVG processor: the letterbox image transform and BERT uncased WordPiece padded to the query length."""

from typing import Any

from transformers import BertTokenizer, PreTrainedConfig
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from vlzoo.processing.bert_vocab import BERT_UNCASED_VOCAB_SIZE
from vlzoo.processing.bert_vocab import bert_uncased_tokenizer as shared_bert_uncased_tokenizer

from .image_processing_transvg import TransvgImageProcessor

__all__ = ["BERT_UNCASED_VOCAB_SIZE", "TransvgProcessor", "bert_uncased_tokenizer"]

logger = logging.get_logger(__name__)


def bert_uncased_tokenizer(max_length: int, vocab_size: int | None = None) -> BertTokenizer:
    """transformers' BERT uncased WordPiece tokenizer on the standard vocabulary, truncating/padding to `max_length`.

    `vocab_size` below 30522 keeps only the first entries (for tiny test models: the special tokens are there, most
    words become [UNK]). Token types are all 0 and never fed by the original: the tokenizer leaves them out.
    """
    return shared_bert_uncased_tokenizer(max_length, vocab_size, model_input_names=["input_ids", "attention_mask"])


class TransvgProcessor(ProcessorMixin):
    """Pairs a `TransvgImageProcessor` and transformers' `BertTokenizer` (uncased WordPiece).

    Texts become `[CLS] tokens [SEP]` padded with 0 to the tokenizer's `model_max_length` (the model's
    `max_query_length`), exactly the original feature routine (transvg.md §6): its ids equal the original's for
    every fixture string. Differences from the original, on purpose: an expression longer than the query length is
    truncated as the original does but with a warning; an empty expression gives `[CLS] [SEP]` as in the original; the
    `"a ||| b"` pair form, on which the original crashes (`_truncate_seq_pair` is undefined), is one expression here
    (`|` is punctuation to BERT). `transform_boxes` and `post_process_grounding` come from the image processor.
    """

    text_kwargs = {"padding": "max_length", "truncation": True, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        image_processor = TransvgImageProcessor() if image_processor is None else image_processor
        tokenizer = bert_uncased_tokenizer(20) if tokenizer is None else tokenizer
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(cls, config: PreTrainedConfig) -> "TransvgProcessor":
        """The test transform at `config.image_size` and the uncased vocabulary padded to `max_query_length`.

        A smaller vocabulary (tiny test models) gets the first `vocab_size` entries, with a warning: most words are
        then [UNK]. A larger one is refused (its extra ids have no word pieces).
        """
        vocab_size = config.get_text_config().vocab_size
        if vocab_size > BERT_UNCASED_VOCAB_SIZE:
            raise ValueError(
                f"text_config.vocab_size is {vocab_size}; the uncased BERT vocabulary has {BERT_UNCASED_VOCAB_SIZE} ids"
            )
        if vocab_size < BERT_UNCASED_VOCAB_SIZE:
            logger.warning(
                f"text_config.vocab_size is {vocab_size}: the tokenizer keeps the first {vocab_size} entries of the "
                f"{BERT_UNCASED_VOCAB_SIZE}-entry uncased vocabulary, so most words become [UNK]"
            )
        image_processor = TransvgImageProcessor(size={"longest_edge": config.image_size})
        tokenizer = bert_uncased_tokenizer(config.max_query_length, vocab_size=vocab_size)
        return cls(image_processor=image_processor, tokenizer=tokenizer)

    @property
    def max_query_length(self) -> int:
        return self.tokenizer.model_max_length

    def __call__(self, images: Any = None, text: Any = None, *args: Any, **kwargs: Any):
        if text is not None:
            self._warn_if_truncated(text, kwargs)
        return super().__call__(images, text, *args, **kwargs)

    def _warn_if_truncated(self, text: Any, kwargs: dict[str, Any]) -> None:
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            return
        limit = (
            kwargs.get("max_length") or (kwargs.get("text_kwargs") or {}).get("max_length") or self.max_query_length
        )
        lengths = [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
        long = [i for i, n in enumerate(lengths) if n > limit]
        if long:
            logger.warning(
                f"expressions {long} have {max(lengths[i] for i in long)} tokens with [CLS]/[SEP], more than the "
                f"query length {limit}: they are truncated to its first {limit - 2} word pieces, as the original does"
            )
