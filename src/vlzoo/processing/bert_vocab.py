"""The standard uncased BERT WordPiece vocabulary (bert-base-uncased, 30522 entries), shipped with vlzoo.

FLAVA and TransVG tokenise with it. The copy in `vocab/bert_uncased_vocab.txt.gz` is byte-identical to
bert-base-uncased's `vocab.txt` (md5 64800d5d8528ce344256daf115d4965e, the file all-MiniLM-L6-v2 also uses), so
the tokenizers work offline; a user's own `vocab.txt` can be given instead.
"""

import gzip
import hashlib
from functools import lru_cache
from pathlib import Path

from transformers import BertTokenizer

BERT_UNCASED_VOCAB_SIZE = 30522
BERT_UNCASED_VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"
# [PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103: a cut vocabulary must reach [MASK]
MIN_VOCAB_SIZE = 104
_BUNDLED = Path(__file__).resolve().parent / "vocab" / "bert_uncased_vocab.txt.gz"


@lru_cache(maxsize=1)
def _bundled_lines() -> tuple[str, ...]:
    data = gzip.decompress(_BUNDLED.read_bytes())
    if hashlib.md5(data).hexdigest() != BERT_UNCASED_VOCAB_MD5:  # noqa: S324 (a checksum, not security)
        raise OSError(f"{_BUNDLED} is damaged: its content is not the bert-base-uncased vocabulary")
    return tuple(data.decode("utf-8").splitlines())


def bert_uncased_vocab(vocab_size: int | None = None, vocab_file: str | Path | None = None) -> dict[str, int]:
    """Token -> id of the uncased vocabulary (or of `vocab_file`), cut to its first `vocab_size` entries.

    Cutting keeps the special tokens and ids unchanged (characters and frequent words come next), which is how tiny
    test models get a real tokenizer.
    """
    lines = _bundled_lines() if vocab_file is None else Path(vocab_file).read_text(encoding="utf-8").splitlines()
    if vocab_size is not None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        if not MIN_VOCAB_SIZE <= vocab_size <= len(lines):
            raise ValueError(
                f"vocab_size must be between {MIN_VOCAB_SIZE} (up to [MASK], the last special token) and "
                f"{len(lines)}, got {vocab_size}"
            )
        lines = lines[:vocab_size]
    return {token: index for index, token in enumerate(lines)}


def bert_uncased_tokenizer(
    max_length: int, vocab_size: int | None = None, vocab_file: str | Path | None = None, **kwargs
) -> BertTokenizer:
    """transformers' `BertTokenizer` (lower-casing WordPiece) on that vocabulary, with `model_max_length`."""
    return BertTokenizer(
        vocab=bert_uncased_vocab(vocab_size, vocab_file), do_lower_case=True, model_max_length=max_length, **kwargs
    )


__all__ = ["BERT_UNCASED_VOCAB_MD5", "BERT_UNCASED_VOCAB_SIZE", "bert_uncased_tokenizer", "bert_uncased_vocab"]
