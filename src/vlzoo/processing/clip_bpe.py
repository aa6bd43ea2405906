"""OpenAI CLIP byte-level BPE: vocabulary and merges from the shipped merges file, and the original text cleaning."""

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import regex

__all__ = [
    "CLIP_BPE_PATH",
    "CLIP_NUM_MERGES",
    "END_OF_TEXT",
    "START_OF_TEXT",
    "bytes_to_unicode",
    "clean_clip_text",
    "clip_bpe_vocab_and_merges",
]

CLIP_BPE_PATH = Path(__file__).resolve().parent / "vocab" / "bpe_simple_vocab_16e6.txt.gz"
# The original reads lines 1 .. 49152 - 256 - 2 of the merges file (line 0 is a version header).
CLIP_NUM_MERGES = 49152 - 256 - 2
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"

_WHITESPACE = regex.compile(r"\s+")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable character, in the order that fixes the first 256 vocabulary ids.

    Printable Latin-1 bytes map to themselves (in byte order); the 68 others map to U+0100 onwards, appended after.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    mapping = {byte: chr(byte) for byte in printable}
    mapping.update({byte: chr(256 + index) for index, byte in enumerate(others)})
    return mapping


def _read_merges(path: Path, num_merges: int | None) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1 : CLIP_NUM_MERGES + 1]
    if len(lines) < CLIP_NUM_MERGES:
        raise ValueError(f"{path} holds {len(lines)} merges; expected {CLIP_NUM_MERGES} (a CLIP BPE merges file).")
    if num_merges is not None:
        if isinstance(num_merges, bool) or not isinstance(num_merges, int) or not 0 <= num_merges <= CLIP_NUM_MERGES:
            raise ValueError(f"num_merges must be an int in [0, {CLIP_NUM_MERGES}], got {num_merges!r}.")
        lines = lines[:num_merges]
    merges = []
    for line_number, line in enumerate(lines, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {line_number}: expected two symbols separated by a space, got {line!r}.")
        merges.append((parts[0], parts[1]))
    return merges


def clip_bpe_vocab_and_merges(
    path: str | Path | None = None, num_merges: int | None = None
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Build the CLIP vocabulary and merges exactly in the original order.

    Ids: 256 byte tokens, the same 256 with `</w>`, one token per merge, then `<|startoftext|>` and `<|endoftext|>`
    (49406 and 49407 for the full 48894 merges). `num_merges` keeps only the first merges, giving the truncated
    vocabularies of small test models (486 merges -> vocabulary 1000). `path` defaults to the shipped file.
    """
    path = CLIP_BPE_PATH if path is None else Path(path)
    merges = _read_merges(path, num_merges)
    byte_tokens = list(bytes_to_unicode().values())
    tokens = [*byte_tokens, *(token + "</w>" for token in byte_tokens)]
    tokens += ["".join(merge) for merge in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{path} produces duplicate vocabulary entries; it is not a CLIP BPE merges file.")
    return vocab, merges


def clean_clip_text(text: str) -> str:
    """Clean a text as the original CLIP tokenizer does before BPE.

    `ftfy.fix_text`, `html.unescape` twice (so `&amp;amp;` becomes `&`), strip, collapse whitespace runs to one
    space, lowercase.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}.")
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()
