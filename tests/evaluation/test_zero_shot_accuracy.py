"""Zero-shot accuracy from labels and top-k accuracy from class scores, on hand-computed cases."""

import numpy as np
import pytest
import torch

from vlzoo.evaluation import zero_shot_accuracy, zero_shot_accuracy_from_logits


def test_accuracy_from_labels():
    assert zero_shot_accuracy([0, 2, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.75)
    assert zero_shot_accuracy(torch.tensor([3, 3]), np.array([3, 3])) == 1.0
    assert zero_shot_accuracy(["cat", "dog"], ["dog", "dog"]) == pytest.approx(0.5)


def test_top_k_from_logits():
    logits = [
        [0.1, 0.7, 0.2],  # label 2 ranks second
        [0.5, 0.3, 0.2],  # label 0 ranks first
        [0.6, 0.3, 0.1],  # label 2 ranks third
    ]
    labels = [2, 0, 2]
    assert zero_shot_accuracy_from_logits(logits, labels, k=1) == pytest.approx(1 / 3)
    assert zero_shot_accuracy_from_logits(logits, labels, k=2) == pytest.approx(2 / 3)
    assert zero_shot_accuracy_from_logits(torch.tensor(logits, requires_grad=True), labels, k=3) == 1.0


def test_ties_count_for_the_example():
    # Both classes score equally: the true class is never beaten, whatever its index.
    assert zero_shot_accuracy_from_logits([[1.0, 1.0], [1.0, 1.0]], [0, 1], k=1) == 1.0


@pytest.mark.parametrize(
    ("logits", "labels", "k", "match"),
    [
        ([[0.1, 0.2]], [0, 1], 1, "labels"),
        ([[0.1, 0.2]], [2], 1, r"\[0, 2\)"),
        ([[0.1, 0.2]], [0], 3, "`k`"),
        ([[0.1, 0.2]], [0], 0, "`k`"),
        ([0.1, 0.2], [0], 1, "2-D"),
        ([[0.1, 0.2]], [0.5], 1, "integer"),
    ],
)
def test_invalid_logit_inputs(logits, labels, k, match):
    with pytest.raises(ValueError, match=match):
        zero_shot_accuracy_from_logits(logits, labels, k=k)


def test_invalid_label_inputs():
    with pytest.raises(ValueError, match="same length"):
        zero_shot_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        zero_shot_accuracy([], [])
