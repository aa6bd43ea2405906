"""The bundled uncased BERT vocabulary: the real bert-base-uncased file, cut without moving the special tokens."""

import pytest

from vlzoo.processing.bert_vocab import (
    BERT_UNCASED_VOCAB_SIZE,
    bert_uncased_tokenizer,
    bert_uncased_vocab,
)


def test_the_bundled_vocabulary_is_bert_base_uncased():
    vocab = bert_uncased_vocab()
    assert len(vocab) == BERT_UNCASED_VOCAB_SIZE
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    assert vocab["the"] == 1996 and vocab["##s"] == 2015


def test_the_tokenizer_lowercases_and_splits_words_into_pieces():
    tokenizer = bert_uncased_tokenizer(16)
    ids = tokenizer("The RED circles", padding="max_length")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids[:6]) == ["[CLS]", "the", "red", "circles", "[SEP]", "[PAD]"]
    assert len(ids) == 16


def test_a_cut_vocabulary_keeps_the_special_ids_and_refuses_to_lose_them(tmp_path):
    small = bert_uncased_vocab(200)
    assert len(small) == 200 and small["[MASK]"] == 103
    with pytest.raises(ValueError, match="vocab_size must be between 104"):
        bert_uncased_vocab(50)
    own = tmp_path / "vocab.txt"
    own.write_text(
        "\n".join(["[PAD]", *[f"[unused{i}]" for i in range(99)], "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi"])
    )
    assert bert_uncased_vocab(vocab_file=own)["hi"] == 104
