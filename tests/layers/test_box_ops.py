"""Box conversions, IoU and GIoU against boxes worked out by hand and the released TransVG evaluation."""

import itertools

import pytest
import torch

from vlzoo.layers.box_ops import (
    BOX_FORMATS,
    box_area,
    convert_boxes,
    paired_box_iou,
    paired_generalized_box_iou,
    pairwise_box_iou,
    pairwise_generalized_box_iou,
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


def test_conversions_by_hand():
    # One box written by hand in every format: corners (0.4, 0.3)-(0.6, 0.7).
    written = {
        "xyxy": [0.4, 0.3, 0.6, 0.7],
        "xywh": [0.4, 0.3, 0.2, 0.4],
        "cxcywh": [0.5, 0.5, 0.2, 0.4],
    }
    for source, target in itertools.product(BOX_FORMATS, BOX_FORMATS):
        converted = convert_boxes(torch.tensor([written[source]], dtype=torch.float64), source, target)
        torch.testing.assert_close(converted, torch.tensor([written[target]], dtype=torch.float64))


def test_conversions_round_trip_any_leading_shape():
    boxes = torch.rand(2, 3, 4, dtype=torch.float64)
    for source, target in itertools.permutations(BOX_FORMATS, 2):
        back = convert_boxes(convert_boxes(boxes, source, target), target, source)
        torch.testing.assert_close(back, boxes)


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


def test_box_format_argument_converts_before_iou():
    a, b = _boxes(0), _boxes(1)
    for box_format in BOX_FORMATS:
        a_in, b_in = convert_boxes(a, "xyxy", box_format), convert_boxes(b, "xyxy", box_format)
        torch.testing.assert_close(paired_box_iou(a_in, b_in, box_format=box_format), paired_box_iou(a, b))
        torch.testing.assert_close(
            pairwise_generalized_box_iou(a_in, b_in, box_format=box_format), pairwise_generalized_box_iou(a, b)
        )


def test_pairwise_matrices_agree_with_paired_values():
    a, b = _boxes(0), _boxes(1)[:4]
    iou = pairwise_box_iou(a, b)
    giou = pairwise_generalized_box_iou(a, b)
    assert iou.shape == giou.shape == (5, 4)
    for i in range(5):
        for j in range(4):
            pair_a, pair_b = a[i : i + 1], b[j : j + 1]
            torch.testing.assert_close(iou[i, j], paired_box_iou(pair_a, pair_b)[0])
            torch.testing.assert_close(giou[i, j], paired_generalized_box_iou(pair_a, pair_b)[0])
    assert (giou <= iou).all() and (giou >= -1).all()


def test_empty_boxes_give_zero_with_finite_gradients():
    point = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    iou = paired_box_iou(point, point.detach().clone())
    giou = paired_generalized_box_iou(point, point.detach().clone())
    assert iou.item() == 0.0 and giou.item() == 0.0
    (iou + giou).sum().backward()
    assert torch.isfinite(point.grad).all()


def test_transvg_released_iou(fixture_io):
    io = fixture_io("transvg/transvg-tiny")
    # transvg.md §7: evaluation clamps the predicted corners to [0, 1].
    pred = convert_boxes(io["output.pred_boxes"], "cxcywh", "xyxy").clamp(0, 1)
    target = convert_boxes(io["input.target_boxes"], "cxcywh", "xyxy")
    torch.testing.assert_close(paired_box_iou(pred, target), io["output.iou"], atol=1e-5, rtol=0)


def test_invalid_corners_raise():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    bad = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.4, 0.9]])
    with pytest.raises(ValueError, match=r"boxes_b must be xyxy boxes with a non-negative width and height; box 1"):
        pairwise_generalized_box_iou(good, bad)
    with pytest.raises(ValueError, match="pass box_format='cxcywh'"):
        paired_generalized_box_iou(bad, good)
    with pytest.raises(ValueError, match="boxes_a must be cxcywh boxes"):
        paired_box_iou(torch.tensor([[0.5, 0.5, -0.1, 0.1]]), good[:1], box_format="cxcywh")


def test_shape_and_format_errors():
    with pytest.raises(ValueError, match=r"boxes_a must have shape \[N, 4\]"):
        pairwise_box_iou(torch.zeros(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="4 coordinates in the last dimension"):
        convert_boxes(torch.zeros(2, 5), "cxcywh", "xyxy")
    with pytest.raises(ValueError, match="as many boxes in boxes_a as in boxes_b; got 2 and 3"):
        paired_box_iou(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"in_format must be one of \('xyxy', 'xywh', 'cxcywh'\); got 'yxyx'"):
        convert_boxes(torch.zeros(2, 4), "yxyx", "xyxy")
    with pytest.raises(ValueError, match="box_format must be one of"):
        pairwise_box_iou(torch.zeros(2, 4), torch.zeros(2, 4), box_format="corners")
