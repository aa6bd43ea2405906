"""Grounding accuracy (IoU >= threshold) on boxes whose overlaps are worked out by hand."""

import numpy as np
import pytest
import torch

from vlzoo.evaluation import grounding_accuracy, grounding_iou

TARGET = [0.0, 0.0, 10.0, 10.0]


def test_iou_of_known_pairs():
    predictions = [
        [0, 0, 10, 10],  # identical -> 1
        [0, 0, 10, 5],  # half of the target -> 50 / 100
        [5, 0, 15, 10],  # shifted by half -> 50 / 150
        [20, 20, 30, 30],  # disjoint -> 0
        [10, 10, 0, 0],  # inverted corners count as empty -> 0
    ]
    iou = grounding_iou(predictions, [TARGET] * 5)
    np.testing.assert_allclose(iou, [1.0, 0.5, 1 / 3, 0.0, 0.0])


def test_accuracy_uses_inclusive_threshold():
    predictions = [[0, 0, 10, 10], [0, 0, 10, 5], [5, 0, 15, 10], [20, 20, 30, 30]]
    targets = [TARGET] * 4
    assert grounding_accuracy(predictions, targets) == pytest.approx(0.5)  # IoU 1 and exactly 0.5 count
    assert grounding_accuracy(predictions, targets, threshold=0.3) == pytest.approx(0.75)
    assert grounding_accuracy(torch.tensor(predictions, dtype=torch.float32), torch.tensor(targets), 1.0) == 0.25


@pytest.mark.parametrize(
    ("box_format", "prediction", "target"),
    [
        ("xywh", [0, 0, 10, 5], [0, 0, 10, 10]),
        ("cxcywh", [5, 2.5, 10, 5], [5, 5, 10, 10]),
    ],
)
def test_box_formats(box_format, prediction, target):
    assert grounding_iou([prediction], [target], box_format=box_format)[0] == pytest.approx(0.5)


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        grounding_accuracy([[0, 0, 1]], [[0, 0, 1]])
    with pytest.raises(ValueError, match=r"`target_boxes` must have shape \[N, 4\]"):
        grounding_accuracy([TARGET], [[0, 0, 1]], box_format="xywh")
    with pytest.raises(ValueError, match="one box per example"):
        grounding_accuracy([TARGET, TARGET], [TARGET])
    with pytest.raises(ValueError, match="box_format"):
        grounding_accuracy([TARGET], [TARGET], box_format="yxyx")
    with pytest.raises(ValueError, match="threshold"):
        grounding_accuracy([TARGET], [TARGET], threshold=0)
    with pytest.raises(ValueError, match="NaN"):
        grounding_accuracy([[0, 0, float("nan"), 1]], [TARGET])
