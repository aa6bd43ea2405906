"""Masked language modelling: BERT token masking and the loss over masked positions."""

import math

import pytest
import torch

from vlzoo.losses import MaskedLanguageModelingLoss, mask_tokens, masked_language_modeling_loss

CLS, SEP, PAD, MASK, VOCAB = 0, 2, 1, 3, 1000


def test_loss_is_mean_over_labelled_positions():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    labels = torch.tensor([[-100, 4, -100], [0, -100, 2]])
    terms = []
    for b in range(2):
        for position in range(3):
            label = labels[b, position].item()
            if label != -100:
                row = logits[b, position].tolist()
                terms.append(math.log(sum(math.exp(value) for value in row)) - row[label])
    expected = sum(terms) / len(terms)
    assert masked_language_modeling_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)
    assert MaskedLanguageModelingLoss()(logits, labels).item() == pytest.approx(expected, abs=1e-12)
    custom = labels.masked_fill(labels == -100, -1)
    assert MaskedLanguageModelingLoss(ignore_index=-1)(logits, custom).item() == pytest.approx(expected, abs=1e-12)


def test_loss_without_masked_positions_is_zero_with_gradient():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = masked_language_modeling_loss(logits, torch.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_meter_released_mlm_loss(fixture_io):
    io = fixture_io("meter/meter-pretrain-tiny")
    loss = masked_language_modeling_loss(io["output.mlm_logits"], io["input.mlm_labels"])
    torch.testing.assert_close(loss, io["output.mlm_loss"], atol=1e-5, rtol=0)


def test_loss_input_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \[batch, length, vocab\]"):
        masked_language_modeling_loss(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        masked_language_modeling_loss(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        masked_language_modeling_loss(torch.randn(2, 3, 5), torch.zeros(2, 3))


def _batch(batch=64, length=512, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, VOCAB, (batch, length), generator=generator)
    input_ids[:, 0] = CLS
    lengths = torch.randint(length // 2, length, (batch,), generator=generator)
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    input_ids[torch.arange(batch), lengths - 1] = SEP
    input_ids[attention_mask == 0] = PAD
    return input_ids, attention_mask


def _mask(input_ids, **kwargs):
    kwargs = {"mask_token_id": MASK, "vocab_size": VOCAB, "special_token_ids": [CLS, SEP, PAD], **kwargs}
    return mask_tokens(input_ids, **kwargs)


def test_bert_80_10_10_rule():
    input_ids, _ = _batch()
    original = input_ids.clone()
    masked_ids, labels = _mask(input_ids, generator=torch.Generator().manual_seed(1))
    assert torch.equal(input_ids, original), "input_ids was modified in place"
    special = (input_ids == CLS) | (input_ids == SEP) | (input_ids == PAD)
    selected = labels != -100
    assert not (selected & special).any()
    assert torch.equal(labels[selected], input_ids[selected])
    assert torch.equal(masked_ids[~selected], input_ids[~selected])
    rate = selected.sum() / (~special).sum()
    assert abs(rate.item() - 0.15) < 0.01
    chosen_ids, chosen_original = masked_ids[selected], input_ids[selected]
    as_mask = (chosen_ids == MASK).float().mean().item()
    kept = (chosen_ids == chosen_original).float().mean().item()
    random = 1 - as_mask - kept
    # About 3,700 selected tokens: 3 binomial standard deviations per share (vocab 1000 -> rare collisions).
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(random - 0.1) < 0.015


def test_attention_mask_and_probability_bounds():
    input_ids, attention_mask = _batch(batch=4, length=40)
    # Padding not listed as special: only the attention mask keeps it out.
    masked_ids, labels = mask_tokens(
        input_ids,
        mask_token_id=MASK,
        vocab_size=VOCAB,
        special_token_ids=[CLS, SEP],
        probability=1.0,
        attention_mask=attention_mask,
    )
    eligible = (attention_mask == 1) & (input_ids != CLS) & (input_ids != SEP)
    assert torch.equal(labels != -100, eligible)
    _, labels = _mask(input_ids, probability=0.0)
    assert (labels == -100).all()


def test_masking_is_reproducible_with_generator():
    input_ids, _ = _batch(batch=4, length=40)
    first = _mask(input_ids, generator=torch.Generator().manual_seed(3))
    second = _mask(input_ids, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"probability": 1.5}, ValueError, r"probability must be in \[0, 1\]; got 1.5"),
        ({"vocab_size": 0}, ValueError, "vocab_size must be positive"),
        ({"mask_token_id": VOCAB}, ValueError, r"mask_token_id must be in \[0, vocab_size=1000\); got 1000"),
        ({"attention_mask": torch.ones(2, 3)}, ValueError, "attention_mask must have the shape of input_ids"),
    ],
)
def test_mask_tokens_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _mask(torch.full((2, 4), 5), **kwargs)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        _mask(torch.ones(2, 4))
