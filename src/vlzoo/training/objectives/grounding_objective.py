"""Visual grounding as box regression: one box per referring expression, L1 + GIoU loss, Acc@0.5 in evaluation."""

from collections.abc import Callable
from numbers import Real
from typing import Any

import torch
from accelerate import Accelerator
from PIL import Image

from vlzoo.evaluation.grounding import grounding_iou
from vlzoo.layers.box_ops import convert_boxes
from vlzoo.losses.boxes import box_regression_loss

from .common import (
    LABELS,
    check_column_names,
    check_optional_int,
    check_processor,
    evaluate_examples,
    model_inputs,
    model_output,
    process,
    require_columns,
)

BoxTransform = Callable[[torch.Tensor, list[tuple[int, int]]], torch.Tensor]
_CANVAS_SLACK = 1e-4


def _resolve_box_transform(processor: Any, box_transform: BoxTransform | None) -> BoxTransform:
    if box_transform is not None:
        if not callable(box_transform):
            raise TypeError(f"box_transform must be callable, got {type(box_transform).__name__}.")
        return box_transform
    for owner in (processor, getattr(processor, "image_processor", None)):
        method = getattr(owner, "transform_boxes", None)
        if callable(method):
            return method
    raise TypeError(
        f"{type(processor).__name__} has no transform_boxes method (nor has its image_processor): pass "
        "box_transform=<callable(boxes_xyxy_pixels, image_sizes) -> normalised cxcywh on the processed canvas>."
    )


class GroundingObjective:
    """Regresses the box of each referring expression with `vlzoo.losses.box_regression_loss` (L1 + GIoU).

    Rows hold an image, an expression and its box as `[x0, y0, x1, y1]` pixel corners of the original image
    (`vlzoo.data.referring_rows`). Targets are the boxes on the processed canvas as normalised `(cx, cy, w, h)`,
    the frame of the model's `pred_boxes` (TransVG: a sigmoid output over the padded square). Only the processor
    knows how it resized and padded each image, so it maps the boxes; the contract is

        `transform_boxes(boxes, image_sizes) -> targets`: `boxes` `[N, 4]` float xyxy pixels of the original images,
        `image_sizes[i] = (height, width)` of original image i, `targets` `[N, 4]` normalised cxcywh (fractions of
        the processed canvas' width and height),

    a method of the processor or of its `image_processor`, or the `box_transform` option. The processor should also
    return `pixel_mask` (1 = real pixel) when it pads; every input it returns goes to the model, which must return
    `pred_boxes` `[batch, 4]`. The objective computes the loss itself, so no `labels` reach the model.

    Args:
        processor: Called as `processor(images=..., text=..., return_tensors="pt", padding=True)`.
        box_transform: Overrides the processor's `transform_boxes` (same contract).
        image_column, text_column, box_column: Row keys of the image (a PIL image), the expression and its box.
        l1_weight, giou_weight: Loss weights; the defaults are DETR's, TransVG's released code uses 1 and 1.
        threshold: IoU that counts as a hit in evaluation (Acc@0.5).
        max_length: Truncate expressions to this many tokens; `None` lets the processor decide.
    """

    def __init__(
        self,
        processor: Any,
        *,
        box_transform: BoxTransform | None = None,
        image_column: str = "image",
        text_column: str = "expression",
        box_column: str = "bbox",
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        threshold: float = 0.5,
        max_length: int | None = None,
    ):
        check_processor(processor)
        check_column_names(image_column=image_column, text_column=text_column, box_column=box_column)
        for name, value in (("l1_weight", l1_weight), ("giou_weight", giou_weight)):
            if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if l1_weight == 0 and giou_weight == 0:
            raise ValueError("l1_weight and giou_weight are both 0: the loss would be constant.")
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}.")
        self.processor = processor
        self.box_transform = _resolve_box_transform(processor, box_transform)
        self.image_column = image_column
        self.text_column = text_column
        self.box_column = box_column
        self.l1_weight = float(l1_weight)
        self.giou_weight = float(giou_weight)
        self.threshold = float(threshold)
        self.max_length = check_optional_int("max_length", max_length, 1)

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Nothing is drawn at random: every expression is used each epoch."""

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Processor inputs plus `labels`: `[batch, 4]` float32 normalised cxcywh target boxes."""
        if not examples:
            raise ValueError("collate got an empty list of examples.")
        images, texts, boxes, sizes = [], [], [], []
        for example in examples:
            require_columns(example, (self.image_column, self.text_column, self.box_column), type(self).__name__)
            image, text = example[self.image_column], example[self.text_column]
            if not isinstance(image, Image.Image):
                raise TypeError(
                    f"column {self.image_column!r} must hold PIL images (their size places the box), got "
                    f"{type(image).__name__}."
                )
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"column {self.text_column!r} must hold a non-empty expression, got {text!r}.")
            images.append(image)
            texts.append(text)
            boxes.append(_pixel_box(example[self.box_column], self.box_column, text))
            sizes.append((image.height, image.width))
        inputs = process(self.processor, images, texts, self.max_length)
        inputs[LABELS] = _check_targets(self.box_transform(torch.tensor(boxes, dtype=torch.float32), sizes), boxes)
        return inputs

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._losses(self._pred_boxes(model, batch), batch[LABELS])["loss"]

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]:
        """`eval_loss` (with `eval_loss_l1`, `eval_loss_giou`), `eval_grounding_accuracy` (share of expressions whose
        box has IoU >= `threshold`, Acc@0.5 by default) and `eval_mean_iou`, each expression counted once.

        As in TransVG's evaluation, predicted corners are clamped to the canvas before the IoU
        (`vlzoo.evaluation.grounding_iou` on the normalised canvas).
        """

        def collate(examples: list[dict[str, Any]], indices: list[int]) -> dict[str, torch.Tensor]:
            return self.collate(examples)

        def score(batch: dict[str, torch.Tensor], indices: list[int]) -> torch.Tensor:
            predictions, targets = self._pred_boxes(model, batch), batch[LABELS]
            losses = [self._losses(predictions[i : i + 1], targets[i : i + 1]) for i in range(len(targets))]
            corners = convert_boxes(predictions.detach().float(), "cxcywh", "xyxy").clamp(0, 1)
            iou = torch.from_numpy(
                grounding_iou(corners.cpu(), convert_boxes(targets.float(), "cxcywh", "xyxy").cpu())
            )
            columns = [
                torch.stack([loss[name] for loss in losses]).double() for name in ("loss", "loss_l1", "loss_giou")
            ]
            return torch.stack([*columns, iou.to(device=targets.device, dtype=torch.float64)], dim=1)

        values = evaluate_examples(dataset, collate, score, accelerator, batch_size)
        iou = values[:, 3]
        return {
            "eval_loss": float(values[:, 0].mean()),
            "eval_loss_l1": float(values[:, 1].mean()),
            "eval_loss_giou": float(values[:, 2].mean()),
            "eval_grounding_accuracy": float((iou >= self.threshold).double().mean()),
            "eval_mean_iou": float(iou.mean()),
        }

    def _pred_boxes(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        boxes = model_output(model(**model_inputs(batch)), ("pred_boxes",), type(self).__name__)
        expected = tuple(batch[LABELS].shape)
        if tuple(boxes.shape) != expected:
            raise ValueError(f"the model's pred_boxes have shape {tuple(boxes.shape)}; expected {list(expected)}.")
        return boxes

    def _losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return box_regression_loss(
            predictions.float(),
            targets.float(),
            l1_weight=self.l1_weight,
            giou_weight=self.giou_weight,
            box_format="cxcywh",
        )


def _pixel_box(value: Any, column: str, text: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"column {column!r} must hold [x0, y0, x1, y1] pixel corners, got {value!r} for {text!r}.")
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} must hold 4 numbers, got {value!r} for {text!r}.") from None
    x0, y0, x1, y1 = box
    if not all(map(torch.isfinite, torch.tensor(box))) or x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"the box {value!r} of {text!r} is not [x0, y0, x1, y1] with x0 < x1 and y0 < y1 (pixel corners; "
            "convert [x, y, w, h] boxes first)."
        )
    return box


def _check_targets(targets: Any, boxes: list[list[float]]) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != (len(boxes), 4):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"the box transform must return a [{len(boxes)}, 4] tensor, got {shape}.")
    targets = targets.float()
    # Corners on the canvas, with a little slack for the rounding of boxes that touch the image border.
    corners = convert_boxes(targets, "cxcywh", "xyxy")
    outside = ~torch.isfinite(targets).all(dim=1) | (targets[:, 2:] <= 0).any(dim=1)
    outside |= (corners < -_CANVAS_SLACK).any(dim=1) | (corners > 1 + _CANVAS_SLACK).any(dim=1)
    if outside.any():
        row = int(outside.nonzero()[0])
        raise ValueError(
            f"the box transform mapped the box {boxes[row]} to {targets[row].tolist()}, which is not a normalised "
            "(cx, cy, w, h) box with positive size inside the canvas [0, 1]."
        )
    return convert_boxes(corners.clamp(0, 1), "xyxy", "cxcywh")


__all__ = ["BoxTransform", "GroundingObjective"]
