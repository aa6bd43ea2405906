"""Visual grounding accuracy (Acc@0.5): the share of predicted boxes whose IoU with the target reaches a threshold."""

from numbers import Real
from typing import Any

import numpy as np
import torch

from vlzoo.layers.box_ops import BOX_FORMATS, convert_boxes, paired_box_iou

from ._arrays import to_numpy


def grounding_iou(pred_boxes: Any, target_boxes: Any, box_format: str = "xyxy") -> np.ndarray:
    """IoU of each box in `pred_boxes` with the box at the same index in `target_boxes` (both `[N, 4]`), shape `[N]`,
    as grounding accuracy counts it.

    Accepts lists, NumPy arrays or tensors. Unlike `vlzoo.layers.box_ops.paired_box_iou`, which rejects inverted
    corners, a degenerate prediction (negative width or height) is collapsed to an empty box and scores 0: a metric
    must score every prediction a model makes.
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
        corners = convert_boxes(torch.from_numpy(boxes), box_format, "xyxy")
        checked.append(torch.cat([corners[:, :2], torch.maximum(corners[:, 2:], corners[:, :2])], dim=1))
    first, second = checked
    if first.shape != second.shape:
        raise ValueError(
            f"`pred_boxes` and `target_boxes` must hold one box per example; got {len(first)} and {len(second)}."
        )
    return paired_box_iou(first, second).numpy()


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
    return float(np.mean(grounding_iou(pred_boxes, target_boxes, box_format) >= threshold))
