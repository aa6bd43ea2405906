"""Bounding-box conversions, areas, IoU and generalized IoU for `[..., 4]` xyxy or (cx, cy, w, h) boxes."""

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """`(cx, cy, w, h)` -> `(x0, y0, x1, y1)`, for any leading shape."""
    _check_last_dim(boxes, "boxes")
    center, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([center - size / 2, center + size / 2], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """`(x0, y0, x1, y1)` -> `(cx, cy, w, h)`, for any leading shape."""
    _check_last_dim(boxes, "boxes")
    low, high = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(low + high) / 2, high - low], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of `[..., 4]` xyxy boxes, shape `[...]`."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU of every box in `boxes_a` `[N, 4]` with every box in `boxes_b` `[M, 4]` (xyxy).

    Returns `(iou, union)`, both `[N, M]`. Pairs whose union is 0 (two empty boxes) give NaN, as the ratio is
    undefined; no epsilon is added so that the values match the reference implementations exactly.
    """
    _check_xyxy(boxes_a, "boxes_a")
    _check_xyxy(boxes_b, "boxes_b")
    low = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    high = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    union = box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :] - intersection
    return intersection / union, union


def generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al. 2019) of every pair, `[N, M]`, for xyxy boxes `[N, 4]` and `[M, 4]`.

    `GIoU = IoU - (hull - union) / hull`, where hull is the area of the smallest box enclosing both; it lies in
    [-1, 1]. Raises `ValueError` when a box has x1 < x0 or y1 < y0 (e.g. cxcywh passed as xyxy).
    """
    iou, union = box_iou(boxes_a, boxes_b)
    low = torch.minimum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    high = torch.maximum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    hull = (high - low).prod(dim=-1)
    return iou - (hull - union) / hull


def paired_box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of `boxes_a[i]` with `boxes_b[i]`, `[N]`, for xyxy boxes `[N, 4]` (the diagonal of `box_iou`)."""
    return _paired_iou_and_union(boxes_a, boxes_b)[0]


def paired_generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """GIoU of `boxes_a[i]` with `boxes_b[i]`, `[N]` (the diagonal of `generalized_box_iou`, in O(N))."""
    iou, union = _paired_iou_and_union(boxes_a, boxes_b)
    low = torch.minimum(boxes_a[:, :2], boxes_b[:, :2])
    high = torch.maximum(boxes_a[:, 2:], boxes_b[:, 2:])
    hull = (high - low).prod(dim=-1)
    return iou - (hull - union) / hull


def _paired_iou_and_union(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    _check_xyxy(boxes_a, "boxes_a")
    _check_xyxy(boxes_b, "boxes_b")
    if boxes_a.shape[0] != boxes_b.shape[0]:
        raise ValueError(
            f"paired IoU needs as many boxes in boxes_a as in boxes_b; got {boxes_a.shape[0]} and {boxes_b.shape[0]}"
        )
    low = torch.maximum(boxes_a[:, :2], boxes_b[:, :2])
    high = torch.minimum(boxes_a[:, 2:], boxes_b[:, 2:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    union = box_area(boxes_a) + box_area(boxes_b) - intersection
    return intersection / union, union


def _check_last_dim(boxes: Tensor, name: str) -> None:
    if boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 coordinates in the last dimension; got shape {tuple(boxes.shape)}")


def _check_xyxy(boxes: Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x0, y0, x1, y1); got {tuple(boxes.shape)}")
    invalid = (boxes[:, 2:] < boxes[:, :2]).any(dim=-1)
    if invalid.any():
        index = int(invalid.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be xyxy boxes with x1 >= x0 and y1 >= y0; box {index} is {boxes[index].tolist()} "
            "(convert (cx, cy, w, h) boxes with box_cxcywh_to_xyxy first)"
        )


__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "generalized_box_iou",
    "paired_box_iou",
    "paired_generalized_box_iou",
]
