"""box_regression_loss: L1 summed over coordinates and averaged over boxes, plus the GIoU loss."""

import pytest
import torch

from vlzoo.losses import BoxRegressionLoss, box_regression_loss


def _giou_by_hand(a, b) -> float:
    """GIoU of two xyxy boxes given as Python tuples."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return intersection / union - (hull - union) / hull


def _corners(cx, cy, w, h):
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


PRED = [(0.5, 0.5, 0.4, 0.2), (0.3, 0.7, 0.2, 0.2), (0.6, 0.4, 0.5, 0.6)]
TARGET = [(0.45, 0.55, 0.3, 0.3), (0.8, 0.2, 0.1, 0.2), (0.6, 0.4, 0.5, 0.6)]


def test_cxcywh_by_hand():
    l1 = sum(abs(p - t) for pred, target in zip(PRED, TARGET, strict=True) for p, t in zip(pred, target, strict=True))
    l1 /= len(PRED)
    giou = sum(1 - _giou_by_hand(_corners(*p), _corners(*t)) for p, t in zip(PRED, TARGET, strict=True)) / len(PRED)
    pred = torch.tensor(PRED, dtype=torch.float64)
    target = torch.tensor(TARGET, dtype=torch.float64)
    losses = box_regression_loss(pred, target)
    assert losses["loss_l1"].item() == pytest.approx(l1, abs=1e-12)
    assert losses["loss_giou"].item() == pytest.approx(giou, abs=1e-12)
    assert losses["loss"].item() == pytest.approx(5.0 * l1 + 2.0 * giou, abs=1e-12)
    weighted = BoxRegressionLoss(l1_weight=1.5, giou_weight=0.5)(pred, target)
    assert weighted["loss"].item() == pytest.approx(1.5 * l1 + 0.5 * giou, abs=1e-12)


def test_xyxy_format_uses_corners_directly():
    pred = torch.tensor([_corners(*box) for box in PRED], dtype=torch.float64)
    target = torch.tensor([_corners(*box) for box in TARGET], dtype=torch.float64)
    l1 = (pred - target).abs().sum(dim=1).mean().item()
    giou = sum(1 - _giou_by_hand(p, t) for p, t in zip(pred.tolist(), target.tolist(), strict=True)) / len(PRED)
    losses = box_regression_loss(pred, target, box_format="xyxy")
    assert losses["loss_l1"].item() == pytest.approx(l1, abs=1e-12)
    assert losses["loss_giou"].item() == pytest.approx(giou, abs=1e-12)


def test_xywh_format_takes_l1_on_xywh_and_giou_on_corners():
    def xywh(cx, cy, w, h):
        return (cx - w / 2, cy - h / 2, w, h)

    pred = torch.tensor([xywh(*box) for box in PRED], dtype=torch.float64)
    target = torch.tensor([xywh(*box) for box in TARGET], dtype=torch.float64)
    l1 = (pred - target).abs().sum(dim=1).mean().item()
    giou = sum(1 - _giou_by_hand(_corners(*p), _corners(*t)) for p, t in zip(PRED, TARGET, strict=True)) / len(PRED)
    losses = box_regression_loss(pred, target, box_format="xywh")
    assert losses["loss_l1"].item() == pytest.approx(l1, abs=1e-12)
    assert losses["loss_giou"].item() == pytest.approx(giou, abs=1e-12)


def test_gradients_reach_predictions():
    pred = torch.tensor(PRED, requires_grad=True)
    box_regression_loss(pred, torch.tensor(TARGET))["loss"].backward()
    assert pred.grad is not None and pred.grad[:2].abs().sum() > 0


def test_transvg_released_loss(fixture_io):
    io = fixture_io("transvg/transvg-tiny")
    losses = box_regression_loss(io["output.pred_boxes"], io["input.target_boxes"], l1_weight=1.0, giou_weight=1.0)
    torch.testing.assert_close(losses["loss_l1"], io["output.loss_bbox"], atol=1e-5, rtol=0)
    torch.testing.assert_close(losses["loss_giou"], io["output.loss_giou"], atol=1e-5, rtol=0)
    torch.testing.assert_close(losses["loss"], io["output.loss_bbox"] + io["output.loss_giou"], atol=1e-5, rtol=0)


def test_input_errors():
    boxes = torch.tensor(PRED)
    with pytest.raises(ValueError, match=r"box_format must be one of \('xyxy', 'xywh', 'cxcywh'\); got 'yxyx'"):
        box_regression_loss(boxes, boxes, box_format="yxyx")
    with pytest.raises(ValueError, match="box_format must be one of"):
        BoxRegressionLoss(box_format="corners")
    with pytest.raises(ValueError, match="pred_boxes has 3 boxes but target_boxes has 2"):
        box_regression_loss(boxes, boxes[:2])
    with pytest.raises(ValueError, match=r"target_boxes must have shape \[N, 4\]"):
        box_regression_loss(boxes, boxes[:, :3])
    with pytest.raises(ValueError, match="empty"):
        box_regression_loss(boxes[:0], boxes[:0])
    with pytest.raises(ValueError, match="boxes_a must be xyxy boxes with a non-negative width and height"):
        box_regression_loss(
            torch.tensor([[0.5, 0.5, 0.1, 0.1]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), box_format="xyxy"
        )
