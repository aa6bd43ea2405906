"""Visual grounding accuracy (Acc@0.5): the share of predicted boxes whose IoU with the target reaches a threshold."""

from numbers import Real
from typing import Any

import numpy as np

from ._arrays import to_numpy

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Convert `[N, 4]` boxes from `box_format` to corners (x1, y1, x2, y2)."""
    if box_format == "xyxy":
        return boxes
    if box_format == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    half_size = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half_size, boxes[:, :2] + half_size], axis=1)


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
    top_left = np.maximum(first[:, :2], second[:, :2])
    bottom_right = np.minimum(first[:, 2:], second[:, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    area1 = np.clip(first[:, 2:] - first[:, :2], 0, None).prod(axis=1)
    area2 = np.clip(second[:, 2:] - second[:, :2], 0, None).prod(axis=1)
    union = area1 + area2 - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


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
