"""Visual grounding accuracy (Acc@0.5): the share of predicted boxes whose IoU with the target reaches a threshold."""

from numbers import Real
from typing import Any

import numpy as np
import torch

from vlzoo.layers.box_ops import box_cxcywh_to_xyxy
from vlzoo.layers.box_ops import paired_box_iou as shared_paired_box_iou

from ._arrays import to_numpy

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xyxy(boxes: np.ndarray, box_format: str) -> torch.Tensor:
    """`[N, 4]` boxes in `box_format` as corners (x1, y1, x2, y2); inverted boxes collapse to empty ones.

    A prediction may be degenerate: collapsing it (x2 = max(x1, x2)) keeps its IoU at 0 where the shared box ops,
    which reject inverted corners, would raise.
    """
    corners = torch.from_numpy(boxes)
    if box_format == "xywh":
        corners = torch.cat([corners[:, :2], corners[:, :2] + corners[:, 2:]], dim=1)
    elif box_format == "cxcywh":
        corners = box_cxcywh_to_xyxy(corners)
    return torch.cat([corners[:, :2], torch.maximum(corners[:, 2:], corners[:, :2])], dim=1)


def paired_box_iou(pred_boxes: Any, target_boxes: Any, box_format: str = "xyxy") -> np.ndarray:
    """IoU of each box in `pred_boxes` with the box at the same index in `target_boxes` (both `[N, 4]`), shape `[N]`.

    Boxes with a negative width or height count as empty; two empty boxes have IoU 0.
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"`box_format` must be one of {list(BOX_FORMATS)}; got {box_format!r}.")
    checked = []
    for name, value in (("pred_boxes", pred_boxes), ("target_boxes", target_boxes)):
        boxes = to_numpy(value, name, ndim=2, dtype=np.float64)
        if boxes.shape[1] != 4:
            raise ValueError(f"`{name}` must have shape [N, 4]; got {list(boxes.shape)}.")
        if not np.all(np.isfinite(boxes)):
            raise ValueError(f"`{name}` contains NaN or infinite coordinates.")
        checked.append(_to_xyxy(boxes, box_format))
    first, second = checked
    if first.shape != second.shape:
        raise ValueError(
            f"`pred_boxes` and `target_boxes` must hold one box per example; got {len(first)} and {len(second)}."
        )
    # two empty boxes have a zero union: their IoU is 0, not NaN
    return torch.nan_to_num(shared_paired_box_iou(first, second), nan=0.0).numpy()


def grounding_accuracy(pred_boxes: Any, target_boxes: Any, threshold: float = 0.5, box_format: str = "xyxy") -> float:
    """Fraction in [0, 1] of examples whose predicted box has IoU >= `threshold` with the target (Acc@0.5).

    Args:
        pred_boxes: `[N, 4]` predicted boxes, one per referring expression.
        target_boxes: `[N, 4]` ground-truth boxes in the same format and coordinate frame.
        threshold: IoU needed for a hit, in (0, 1].
        box_format: "xyxy" (corners), "xywh" (top-left corner and size) or "cxcywh" (centre and size).

    Example:
        >>> grounding_accuracy([[0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 10, 10], [5, 5, 15, 15]])
        0.5
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be a number in (0, 1]; got {threshold!r}.")
    return float(np.mean(paired_box_iou(pred_boxes, target_boxes, box_format) >= threshold))
