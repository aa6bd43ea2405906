"""RoBERTa byte-level BPE tokenizers for METER when the roberta-base files are not at hand (tests, demos)."""

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import RobertaTokenizer

__all__ = ["SPECIAL_TOKENS", "byte_level_tokenizer"]

# roberta-base's layout: <s> 0, <pad> 1, </s> 2, <unk> 3, ..., <mask> last.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"


def byte_level_tokenizer(texts: Iterable[str] = (), *, vocab_size: int | None = None) -> RobertaTokenizer:
    """A `RobertaTokenizer` with roberta-base's special-token ids, the 256 byte symbols and BPE merges learnt from
    `texts` (none when `texts` is empty), `<mask>` as the last id.

    METER's released models use roberta-base's own files (`RobertaTokenizer.from_pretrained("roberta-base")`); this
    builds the same kind of tokenizer for small models trained from scratch. `vocab_size` (at least 261) caps the
    vocabulary, `<mask>` included.
    """
    texts = list(texts)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be strings")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(SPECIAL_TOKENS) + len(alphabet) + 1
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int)):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size is not None and vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least {minimum} (special tokens, 256 bytes, <mask>); got {vocab_size}"
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=(vocab_size or 1 << 20) - 1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=sorted(alphabet),
        show_progress=False,
    )
    backend.train_from_iterator(texts or [""], trainer=trainer)
    model = backend.model
    vocab = dict(sorted(backend.get_vocab().items(), key=lambda item: item[1]))
    vocab[MASK_TOKEN] = len(vocab)
    merges = [tuple(pair) for pair in _merges(model)]
    return RobertaTokenizer(vocab=vocab, merges=merges)


def _merges(model: models.BPE) -> list[tuple[str, str]]:
    import json

    state = json.loads(Tokenizer(model).to_str())["model"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
