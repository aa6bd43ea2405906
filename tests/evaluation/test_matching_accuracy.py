"""Image-text matching accuracy against a count made by hand over random logits."""

import numpy as np
import pytest
import torch

from vlzoo.evaluation import image_text_matching_accuracy


def test_accuracy_counts_the_argmax_against_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 2))
    labels = rng.integers(0, 2, size=50)
    expected = sum(int((row[1] > row[0]) == bool(label)) for row, label in zip(logits, labels, strict=True)) / 50
    assert image_text_matching_accuracy(logits, labels) == pytest.approx(expected)
    assert image_text_matching_accuracy(torch.tensor(logits), torch.tensor(labels)) == pytest.approx(expected)
    assert image_text_matching_accuracy([[0.0, 1.0], [2.0, -1.0]], [1, 0]) == 1.0
    assert image_text_matching_accuracy([[0.0, 1.0], [2.0, -1.0]], [0, 1]) == 0.0


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        image_text_matching_accuracy([[0.0, 1.0, 2.0]], [1])
    with pytest.raises(ValueError, match="3 entries but `itm_logits` has 2 rows"):
        image_text_matching_accuracy([[0.0, 1.0], [1.0, 0.0]], [1, 0, 1])
    with pytest.raises(ValueError, match="0 \\(not matched\\) or 1"):
        image_text_matching_accuracy([[0.0, 1.0]], [2])
    with pytest.raises(ValueError, match="NaN"):
        image_text_matching_accuracy([[float("nan"), 1.0]], [1])
