"""Image-text matching loss and hard-negative sampling."""

import math

import pytest
import torch

from vlzoo.losses import ImageTextMatchingLoss, image_text_matching_loss, sample_hard_negatives


def test_loss_matches_manual_cross_entropy():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.9]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 1])
    expected = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        expected += math.log(sum(math.exp(value) for value in row)) - row[label]
    expected /= len(labels)
    assert image_text_matching_loss(logits, labels).item() == pytest.approx(expected, abs=1e-12)
    assert ImageTextMatchingLoss()(logits, labels).item() == pytest.approx(expected, abs=1e-12)


def test_flava_released_itm_loss(fixture_io):
    io = fixture_io("flava/flava-pretraining-tiny")
    loss = image_text_matching_loss(io["output.mm.itm_logits"], io["input.itm_labels"])
    torch.testing.assert_close(loss, io["output.mm.losses.itm_loss"], atol=1e-5, rtol=0)


def test_loss_input_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \[N, 2\]; got \(3, 3\)"):
        image_text_matching_loss(torch.randn(3, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        image_text_matching_loss(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        image_text_matching_loss(torch.randn(3, 2), torch.zeros(3))


def _expected_probabilities(similarity: torch.Tensor) -> list[list[float]]:
    """Softmax of each row renormalised over the non-positive entries, in Python floats."""
    rows = similarity.tolist()
    probabilities = []
    for i, row in enumerate(rows):
        weights = [math.exp(value) if j != i else 0.0 for j, value in enumerate(row)]
        probabilities.append([weight / sum(weights) for weight in weights])
    return probabilities


def test_sampling_follows_softmax_without_positive():
    similarity = torch.tensor(
        [[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.5, 0.0], [2.0, -0.5, 1.0, 0.8], [0.0, 0.0, 1.0, 4.0]]
    )
    draws = 3000
    generator = torch.Generator().manual_seed(0)
    text_counts = torch.zeros(4, 4)
    image_counts = torch.zeros(4, 4)
    for _ in range(draws):
        negative_text, negative_image = sample_hard_negatives(similarity, generator=generator)
        text_counts[torch.arange(4), negative_text] += 1
        image_counts[torch.arange(4), negative_image] += 1
    assert text_counts.diagonal().sum() == 0 and image_counts.diagonal().sum() == 0
    expected_text = torch.tensor(_expected_probabilities(similarity))
    expected_image = torch.tensor(_expected_probabilities(similarity.T))
    # Binomial standard deviation is at most 0.5 / sqrt(3000) ~ 0.009; allow 4 of them.
    torch.testing.assert_close(text_counts / draws, expected_text, atol=0.04, rtol=0)
    torch.testing.assert_close(image_counts / draws, expected_image, atol=0.04, rtol=0)


def test_confident_diagonal_still_samples_negatives():
    similarity = torch.full((5, 5), -30.0)
    similarity.fill_diagonal_(1e4)
    negative_text, negative_image = sample_hard_negatives(similarity)
    assert negative_text.dtype == torch.int64 and negative_text.shape == (5,)
    assert (negative_text != torch.arange(5)).all() and (negative_image != torch.arange(5)).all()


def test_sampling_is_reproducible_and_detached():
    similarity = torch.randn(6, 6, requires_grad=True)
    first = sample_hard_negatives(similarity, generator=torch.Generator().manual_seed(7))
    second = sample_hard_negatives(similarity, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not first[0].requires_grad


def test_sampling_input_errors():
    with pytest.raises(ValueError, match=r"square \[B, B\] matrix; got shape \(3, 4\)"):
        sample_hard_negatives(torch.randn(3, 4))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        sample_hard_negatives(torch.randn(1, 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        sample_hard_negatives(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))
