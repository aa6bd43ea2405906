"""Box conversions, IoU and GIoU against boxes worked out by hand."""

import pytest
import torch

from vlzoo.layers.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    paired_box_iou,
    paired_generalized_box_iou,
)

# (box_a, box_b, intersection, union, hull) in xyxy, computed by hand.
CASES = [
    ((0.0, 0.0, 2.0, 2.0), (1.0, 1.0, 3.0, 3.0), 1.0, 7.0, 9.0),  # overlapping squares
    ((0.0, 0.0, 1.0, 1.0), (2.0, 0.0, 3.0, 1.0), 0.0, 2.0, 3.0),  # disjoint, side by side
    ((0.0, 0.0, 4.0, 4.0), (1.0, 1.0, 2.0, 2.0), 1.0, 16.0, 16.0),  # b inside a
    ((0.5, 0.5, 1.5, 2.5), (0.5, 0.5, 1.5, 2.5), 2.0, 2.0, 2.0),  # identical
    ((0.0, 0.0, 2.0, 1.0), (1.0, 3.0, 2.0, 4.0), 0.0, 3.0, 8.0),  # disjoint, diagonal
]


def _boxes(index):
    return torch.tensor([case[index] for case in CASES], dtype=torch.float64)


def test_conversions_by_hand_and_round_trip():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.0, 0.1]], dtype=torch.float64)
    expected = torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.3, 0.55, 0.3, 0.65]], dtype=torch.float64)
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), expected)
    torch.testing.assert_close(box_xyxy_to_cxcywh(expected), cxcywh)
    batched = torch.rand(2, 3, 4)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(batched)), batched)


def test_area():
    torch.testing.assert_close(box_area(_boxes(0)), torch.tensor([4.0, 1.0, 16.0, 2.0, 2.0], dtype=torch.float64))


def test_paired_iou_and_giou_by_hand():
    a, b = _boxes(0), _boxes(1)
    intersection, union, hull = (torch.tensor([case[i] for case in CASES], dtype=torch.float64) for i in (2, 3, 4))
    iou = intersection / union
    torch.testing.assert_close(paired_box_iou(a, b), iou)
    torch.testing.assert_close(paired_generalized_box_iou(a, b), iou - (hull - union) / hull)
    # Spot values: 1/7 - 2/9, -1/3, 1/16, 1, -5/8.
    expected = torch.tensor([1 / 7 - 2 / 9, -1 / 3, 1 / 16, 1.0, -5 / 8], dtype=torch.float64)
    torch.testing.assert_close(paired_generalized_box_iou(a, b), expected)


def test_pairwise_matrices_agree_with_paired_values():
    a, b = _boxes(0), _boxes(1)[:4]
    iou, union = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    assert iou.shape == union.shape == giou.shape == (5, 4)
    for i in range(5):
        for j in range(4):
            pair_a, pair_b = a[i : i + 1], b[j : j + 1]
            torch.testing.assert_close(iou[i, j], paired_box_iou(pair_a, pair_b)[0])
            torch.testing.assert_close(giou[i, j], paired_generalized_box_iou(pair_a, pair_b)[0])
    torch.testing.assert_close(union[0, 0], torch.tensor(7.0, dtype=torch.float64))
    assert (giou <= iou).all() and (giou >= -1).all()


def test_transvg_released_iou(fixture_io):
    io = fixture_io("transvg/transvg-tiny")
    # transvg.md §7: evaluation clamps the predicted corners to [0, 1].
    pred = box_cxcywh_to_xyxy(io["output.pred_boxes"]).clamp(0, 1)
    target = box_cxcywh_to_xyxy(io["input.target_boxes"])
    torch.testing.assert_close(paired_box_iou(pred, target), io["output.iou"], atol=1e-5, rtol=0)


def test_invalid_corners_raise():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    bad = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.4, 0.9]])
    with pytest.raises(ValueError, match=r"boxes_b must be xyxy boxes with x1 >= x0 and y1 >= y0; box 1 is"):
        generalized_box_iou(good, bad)
    with pytest.raises(ValueError, match="boxes_a must be xyxy boxes"):
        paired_generalized_box_iou(bad, good)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"boxes_a must have shape \[N, 4\]"):
        box_iou(torch.zeros(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="4 coordinates in the last dimension"):
        box_cxcywh_to_xyxy(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="as many boxes in boxes_a as in boxes_b; got 2 and 3"):
        paired_box_iou(torch.zeros(2, 4), torch.zeros(3, 4))
