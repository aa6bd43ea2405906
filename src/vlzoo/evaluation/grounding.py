"""Visual grounding accuracy (Acc@0.5): the share of predicted boxes whose IoU with the target reaches a threshold."""

from collections.abc import Mapping
from dataclasses import dataclass, field
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


def canvas_grounding_iou(pred_boxes: Any, target_boxes: Any) -> np.ndarray:
    """IoU exactly as TransVG's evaluation computes it (`utils/eval_utils.trans_vg_eval_val`), shape `[N]`.

    Both inputs are `[N, 4]` normalised (cx, cy, w, h) on the padded square canvas, the frame of a model's
    `pred_boxes` and of the training targets. The predicted corners are clamped to `[0, 1]`, i.e. to the canvas
    with its padding, not to the image; the targets are used as given. IoU is invariant to the letterbox's uniform
    scale and shift, so only that clamp distinguishes this from the IoU of the same boxes in image pixels.
    """
    predictions = torch.from_numpy(to_numpy(pred_boxes, "pred_boxes", ndim=2, dtype=np.float64))
    if predictions.shape[1] != 4:
        raise ValueError(f"`pred_boxes` must have shape [N, 4]; got {list(predictions.shape)}.")
    if not torch.isfinite(predictions).all():
        raise ValueError("`pred_boxes` contains NaN or infinite coordinates.")
    corners = convert_boxes(predictions, "cxcywh", "xyxy").clamp(0, 1)
    return grounding_iou(corners, target_boxes_xyxy(target_boxes))


def target_boxes_xyxy(target_boxes: Any) -> np.ndarray:
    """`[N, 4]` normalised (cx, cy, w, h) targets as xyxy corners (float64)."""
    targets = torch.from_numpy(to_numpy(target_boxes, "target_boxes", ndim=2, dtype=np.float64))
    if targets.shape[1] != 4:
        raise ValueError(f"`target_boxes` must have shape [N, 4]; got {list(targets.shape)}.")
    return convert_boxes(targets, "cxcywh", "xyxy").numpy()


def canvas_grounding_accuracy(pred_boxes: Any, target_boxes: Any, threshold: float = 0.5) -> float:
    """TransVG's Acc@0.5: the fraction of `canvas_grounding_iou` values >= `threshold` (normalised cxcywh inputs)."""
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be a number in (0, 1]; got {threshold!r}.")
    return float(np.mean(canvas_grounding_iou(pred_boxes, target_boxes) >= threshold))


@dataclass(frozen=True)
class GroundingEvaluation:
    """What `evaluate_grounding` measured: Acc@`threshold`, the mean IoU, each row's IoU and pipeline result."""

    accuracy: float
    mean_iou: float
    iou: np.ndarray = field(repr=False)
    results: list[dict[str, Any]] = field(repr=False)


def evaluate_grounding(
    model: Any,
    rows: Any,
    *,
    batch_size: int = 32,
    threshold: float = 0.5,
    image_column: str = "image",
    text_column: str = "expression",
    box_column: str = "bbox",
) -> GroundingEvaluation:
    """Acc@`threshold` of a grounding model on referring-expression rows, loaded the way a user loads it.

    `model` is a save_pretrained folder (read through `pipeline("visual-grounding", model=...)`) or such a
    pipeline. `rows` holds an image, an expression and its true box as `[x0, y0, x1, y1]` pixels of the original
    image (`vlzoo.data.task_dataset(split, "grounding")`, e.g. of `read_refcoco` or shapes). Predicted and true
    boxes are mapped onto the padded canvas with the processor's `transform_boxes` and scored by
    `canvas_grounding_iou`, TransVG's evaluation. The pipeline's boxes are clipped to the image, which equals the
    original's clamp to the canvas whenever the image fills the canvas (square images such as shapes); for padded
    images a predicted box reaching into the padding scores as its part on the image. The grounding objective's
    `evaluate` (what `vlzoo train` reports) clamps on the canvas from the raw `pred_boxes` in every case.
    """
    from transformers import Pipeline, pipeline

    from vlzoo.pipelines import register_pipelines
    from vlzoo.pipelines.visual_grounding import BOX_KEYS

    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be a number in (0, 1]; got {threshold!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
    columns = getattr(rows, "column_names", None)
    columns = list(rows) if columns is None and isinstance(rows, Mapping) else columns
    if columns is None:
        raise TypeError(f"`rows` must be a datasets.Dataset or a mapping of columns; got {type(rows).__name__}.")
    for name in (image_column, text_column, box_column):
        if name not in columns:
            raise ValueError(f"`rows` lacks the column {name!r}; it has {list(columns)} (image, expression, bbox).")
    if len(rows[text_column]) == 0:
        raise ValueError("`rows` is empty: nothing to evaluate.")
    if isinstance(model, Pipeline):
        grounder = model
    else:
        register_pipelines(["visual-grounding"])
        grounder = pipeline("visual-grounding", model=str(model))
    transform = _box_transform(grounder)
    images = [image.convert("RGB") for image in rows[image_column]]
    results = grounder(images, list(rows[text_column]), batch_size=batch_size)
    sizes = [(image.height, image.width) for image in images]
    predicted = torch.tensor([[result["box"][key] for key in BOX_KEYS] for result in results], dtype=torch.float32)
    truth = torch.tensor([list(box) for box in rows[box_column]], dtype=torch.float32)
    iou = canvas_grounding_iou(transform(predicted, sizes), transform(truth, sizes))
    return GroundingEvaluation(float(np.mean(iou >= threshold)), float(np.mean(iou)), iou, list(results))


def _box_transform(grounder: Any) -> Any:
    for owner in (getattr(grounder, "image_processor", None), getattr(grounder, "processor", None)):
        method = getattr(owner, "transform_boxes", None)
        if callable(method):
            return method
    raise TypeError(
        "evaluate_grounding maps boxes onto the processed canvas with the image processor's transform_boxes"
        "(boxes, image_sizes); the pipeline's processor has none (use a vlzoo.processing.LetterboxImageProcessor)."
    )
