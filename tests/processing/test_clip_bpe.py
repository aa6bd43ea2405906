"""Tests for the CLIP BPE vocabulary builder and the original CLIP text cleaning."""

import gzip

import pytest

from vlzoo.processing.clip_bpe import CLIP_BPE_PATH, clean_clip_text, clip_bpe_vocab_and_merges


@pytest.fixture(scope="module")
def full_vocab_and_merges():
    return clip_bpe_vocab_and_merges()


def test_full_vocabulary_layout(full_vocab_and_merges):
    vocab, merges = full_vocab_and_merges
    assert len(vocab) == 49408
    assert len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406
    assert vocab["<|endoftext|>"] == 49407
    # Printable bytes first in byte order ("!" = 0), 94 + 12 + 82 = 188 of them, then the remapped ones from U+0100.
    assert vocab["!"] == 0
    assert vocab["Ā"] == 188
    assert vocab["!</w>"] == 256
    assert sorted(vocab.values()) == list(range(49408))


def test_merges_follow_the_file_order(full_vocab_and_merges):
    vocab, merges = full_vocab_and_merges
    with gzip.open(CLIP_BPE_PATH, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # Line 0 is a version header; merges are the next 48894 lines.
    assert merges[0] == tuple(lines[1].split())
    assert merges[-1] == tuple(lines[48894].split())
    assert vocab["".join(merges[0])] == 512
    assert vocab["".join(merges[-1])] == 49405


def test_truncated_vocabulary_for_small_models():
    vocab, merges = clip_bpe_vocab_and_merges(num_merges=486)
    assert len(vocab) == 1000 and len(merges) == 486
    assert vocab["<|startoftext|>"] == 998 and vocab["<|endoftext|>"] == 999


@pytest.mark.parametrize("num_merges", [-1, 48895, 2.5, True])
def test_invalid_num_merges(num_merges):
    with pytest.raises(ValueError, match="num_merges"):
        clip_bpe_vocab_and_merges(num_merges=num_merges)


def test_not_a_merges_file(tmp_path):
    path = tmp_path / "short.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("#version\na b\n")
    with pytest.raises(ValueError, match="expected 48894"):
        clip_bpe_vocab_and_merges(path)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("  A PHOTO\tof\n\na  Dog  ", "a photo of a dog"),
        ("Tom &amp;amp; Jerry &lt;3", "tom & jerry <3"),
        ("cafÃ©", "café"),  # mojibake repaired by ftfy
        ("", ""),
    ],
)
def test_clean_clip_text(text, cleaned):
    assert clean_clip_text(text) == cleaned


def test_clean_clip_text_rejects_non_strings():
    with pytest.raises(TypeError, match="int"):
        clean_clip_text(3)
