"""The one home of box formats, conversions, areas, IoU and generalized IoU (loss, evaluation and models use it)."""

import torch
from torch import Tensor

# (x0, y0, x1, y1) corners; (x0, y0, w, h) top-left corner and size (COCO, RefCOCO annotations);
# (cx, cy, w, h) centre and size (DETR / TransVG predictions).
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def convert_boxes(boxes: Tensor, in_format: str, out_format: str) -> Tensor:
    """Boxes `[..., 4]` from `in_format` to `out_format`, both one of `BOX_FORMATS`, for any leading shape.

    Example:
        >>> convert_boxes(torch.tensor([[0.5, 0.5, 0.2, 0.4]]), "cxcywh", "xyxy")
        tensor([[0.4000, 0.3000, 0.6000, 0.7000]])
    """
    _check_format(in_format, "in_format")
    _check_format(out_format, "out_format")
    _check_last_dim(boxes, "boxes")
    if in_format == out_format:
        return boxes
    first, second = boxes[..., :2], boxes[..., 2:]
    if in_format == "xywh":
        low, high = first, first + second
    elif in_format == "cxcywh":
        low, high = first - second / 2, first + second / 2
    else:
        low, high = first, second
    if out_format == "xyxy":
        return torch.cat([low, high], dim=-1)
    if out_format == "xywh":
        return torch.cat([low, high - low], dim=-1)
    return torch.cat([(low + high) / 2, high - low], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of `[..., 4]` xyxy boxes, shape `[...]`."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_box_iou(boxes_a: Tensor, boxes_b: Tensor, *, box_format: str = "xyxy") -> Tensor:
    """IoU of every box in `boxes_a` `[N, 4]` with every box in `boxes_b` `[M, 4]`: a matrix `[N, M]`.

    Two empty boxes (zero union) have IoU 0. Raises `ValueError` for boxes with x1 < x0 or y1 < y0, which usually
    means (cx, cy, w, h) boxes passed as xyxy: name the format with `box_format`.
    """
    boxes_a, boxes_b = _as_xyxy(boxes_a, "boxes_a", box_format), _as_xyxy(boxes_b, "boxes_b", box_format)
    return _iou_and_union(boxes_a[:, None], boxes_b[None, :])[0]


def paired_box_iou(boxes_a: Tensor, boxes_b: Tensor, *, box_format: str = "xyxy") -> Tensor:
    """IoU of `boxes_a[i]` with `boxes_b[i]`: a vector `[N]` for two `[N, 4]` inputs (the diagonal of the pairwise
    matrix, in O(N)). Same conventions as `pairwise_box_iou`."""
    boxes_a, boxes_b = _as_xyxy(boxes_a, "boxes_a", box_format), _as_xyxy(boxes_b, "boxes_b", box_format)
    _check_same_count(boxes_a, boxes_b)
    return _iou_and_union(boxes_a, boxes_b)[0]


def pairwise_generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor, *, box_format: str = "xyxy") -> Tensor:
    """Generalized IoU (Rezatofighi et al. 2019) of every pair, `[N, M]`, in [-1, 1].

    `GIoU = IoU - (hull - union) / hull`, hull being the area of the smallest box enclosing both. Two coinciding empty
    boxes (zero hull) give 0. Raises `ValueError` for inverted corners, as `pairwise_box_iou`.
    """
    boxes_a, boxes_b = _as_xyxy(boxes_a, "boxes_a", box_format), _as_xyxy(boxes_b, "boxes_b", box_format)
    return _generalized_iou(boxes_a[:, None], boxes_b[None, :])


def paired_generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor, *, box_format: str = "xyxy") -> Tensor:
    """GIoU of `boxes_a[i]` with `boxes_b[i]`, `[N]` (the diagonal of `pairwise_generalized_box_iou`, in O(N))."""
    boxes_a, boxes_b = _as_xyxy(boxes_a, "boxes_a", box_format), _as_xyxy(boxes_b, "boxes_b", box_format)
    _check_same_count(boxes_a, boxes_b)
    return _generalized_iou(boxes_a, boxes_b)


def _iou_and_union(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """IoU and union of broadcast xyxy boxes; a zero union (so a zero intersection) gives IoU 0, with finite grads."""
    low = torch.maximum(boxes_a[..., :2], boxes_b[..., :2])
    high = torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    union = box_area(boxes_a) + box_area(boxes_b) - intersection
    return intersection / torch.where(union > 0, union, torch.ones_like(union)), union


def _generalized_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    iou, union = _iou_and_union(boxes_a, boxes_b)
    low = torch.minimum(boxes_a[..., :2], boxes_b[..., :2])
    high = torch.maximum(boxes_a[..., 2:], boxes_b[..., 2:])
    hull = (high - low).prod(dim=-1)
    # union <= hull, so a zero hull also has a zero union and the enclosing term is 0
    return iou - (hull - union) / torch.where(hull > 0, hull, torch.ones_like(hull))


def _check_format(box_format: str, name: str) -> None:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}; got {box_format!r}")


def _check_last_dim(boxes: Tensor, name: str) -> None:
    if boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 coordinates in the last dimension; got shape {tuple(boxes.shape)}")


def _check_same_count(boxes_a: Tensor, boxes_b: Tensor) -> None:
    if boxes_a.shape[0] != boxes_b.shape[0]:
        raise ValueError(
            f"paired IoU needs as many boxes in boxes_a as in boxes_b; got {boxes_a.shape[0]} and {boxes_b.shape[0]}"
        )


def _as_xyxy(boxes: Tensor, name: str, box_format: str) -> Tensor:
    """`[N, 4]` boxes as checked xyxy corners; inverted corners raise, naming the first offending box."""
    _check_format(box_format, "box_format")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] ({box_format}); got {tuple(boxes.shape)}")
    corners = convert_boxes(boxes, box_format, "xyxy")
    invalid = (corners[:, 2:] < corners[:, :2]).any(dim=-1)
    if invalid.any():
        index = int(invalid.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be {box_format} boxes with a non-negative width and height; box {index} is "
            f"{boxes[index].tolist()} (if these are (cx, cy, w, h) boxes, pass box_format='cxcywh')"
        )
    return corners


__all__ = [
    "BOX_FORMATS",
    "box_area",
    "convert_boxes",
    "paired_box_iou",
    "paired_generalized_box_iou",
    "pairwise_box_iou",
    "pairwise_generalized_box_iou",
]
