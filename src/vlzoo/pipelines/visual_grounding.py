"""Visual grounding: the box a referring expression names, in the original image's pixels, and a drawing helper."""

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from vlzoo.pipelines.pairs import ImageTextPairPipeline
from vlzoo.pipelines.task_heads import model_output
from vlzoo.processing.image_transforms import load_image_source, to_rgb_image

__all__ = [
    "BOX_KEYS",
    "VISUAL_GROUNDING_TASK",
    "VisualGroundingPipeline",
    "draw_grounding",
    "grounding_post_processor",
]

VISUAL_GROUNDING_TASK = "visual-grounding"
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
_POST_PROCESS = "post_process_grounding"
_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def grounding_post_processor(processor: Any, image_processor: Any) -> Any:
    """The `post_process_grounding(pred_boxes, original_sizes)` method of the image processor or the processor.

    The contract (implemented by `vlzoo.processing.LetterboxImageProcessor`): `pred_boxes` `[N, 4]` normalised
    (cx, cy, w, h) on the processed canvas, `original_sizes[i] = (height, width)` of image i; returns `[N, 4]` xyxy
    corners in the original image's pixels. Raises a `TypeError` when neither has it.
    """
    for owner in (image_processor, processor):
        method = getattr(owner, _POST_PROCESS, None)
        if callable(method):
            return method
    names = [type(owner).__name__ for owner in (image_processor, processor) if owner is not None]
    raise TypeError(
        f"{VISUAL_GROUNDING_TASK} maps boxes back to the original image with the image processor's {_POST_PROCESS}"
        f"(pred_boxes, original_sizes); {' and '.join(names) or 'no processor'} "
        f"{'has' if len(names) <= 1 else 'have'} none. Use an image processor that implements it (e.g. one "
        "subclassing vlzoo.processing.LetterboxImageProcessor)."
    )


class VisualGroundingPipeline(ImageTextPairPipeline):
    """Locate the region a referring expression describes: one box per (image, expression) pair.

    Task name `"visual-grounding"`, registered by `vlzoo.pipelines.register_pipelines()`. Works for any model whose
    class is registered with `vlzoo.pipelines.AutoModelForVisualGrounding` for its config and returns `pred_boxes`
    `[batch, 4]` (normalised cx, cy, w, h on the processed canvas, e.g. TransVG's letterboxed square). The image
    processor maps them back with `post_process_grounding(pred_boxes, original_sizes)` (see
    `grounding_post_processor`); the boxes are clipped to the image.

    Call as `pipe(image, expression)`, with lists (one image and several expressions, several images and one
    expression, or two lists paired item by item) or dicts `{"image": ..., "expression": ...}`. Each pair gives
    `{"expression": str, "box": {"xmin", "ymin", "xmax", "ymax"}}`, float pixel coordinates of the original image
    (x to the right, y down; round them to draw). Single-box regressors have no confidence, so there is no score.
    Options: `batch_size` for lists (default 8), `timeout` for image URLs, `tokenizer_kwargs`. `draw_grounding`
    draws the results onto the image.
    """

    task_name = VISUAL_GROUNDING_TASK
    head = "grounding"
    text_key = "expression"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._post_process = grounding_post_processor(self.processor, self.image_processor)

    def _complete(self, pairs: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each result names its expression first, so `draw_grounding` can label the boxes."""
        return [{"expression": pair["text"], **result} for pair, result in zip(pairs, results, strict=True)]

    def _sanitize_parameters(
        self,
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        self._unexpected(unexpected, "image, expression, batch_size, timeout and tokenizer_kwargs")
        return self._sanitize_common(timeout, tokenizer_kwargs), {}, {}

    def preprocess(
        self, pair: dict[str, Any], timeout: float | None = None, text_kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        image, encoded = self._load_and_encode(pair, timeout, text_kwargs)
        return {**encoded, "original_size": torch.tensor([[image.height, image.width]])}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        outputs = self._run_model(model_inputs, metadata=("original_size",))
        boxes = model_output(outputs, "pred_boxes", VISUAL_GROUNDING_TASK, self.model)
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(
                f"{VISUAL_GROUNDING_TASK}: the model's pred_boxes have shape {tuple(boxes.shape)}; expected [batch, 4]."
            )
        return {"pred_boxes": boxes, "original_size": model_inputs["original_size"]}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        sizes = [tuple(int(side) for side in size) for size in model_outputs["original_size"].tolist()]
        corners = self._post_process(model_outputs["pred_boxes"].float().cpu(), sizes)
        return {"box": dict(zip(BOX_KEYS, (float(value) for value in corners[0]), strict=True))}


def _load_drawing_image(image: Any) -> Image.Image:
    if isinstance(image, (str, os.PathLike)):
        image = load_image_source(os.fspath(image), argument_name="image")
    return to_rgb_image(image, argument_name="image").copy()


def _result_box(result: Any, index: int) -> tuple[float, float, float, float]:
    box = result.get("box") if isinstance(result, Mapping) else None
    if not isinstance(box, Mapping) or any(key not in box for key in BOX_KEYS):
        raise ValueError(f"results[{index}] must be a visual-grounding result with a 'box' of {list(BOX_KEYS)}.")
    return tuple(float(box[key]) for key in BOX_KEYS)


def draw_grounding(
    image: Any,
    results: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    width: int = 2,
) -> Image.Image:
    """Draw `visual-grounding` results (one or a list, for this image) with their expressions; optionally save a PNG.

    `image` is the image the boxes were predicted for (PIL image, array, tensor or path, as the pipeline takes it);
    `labels` replaces the texts written at each box (default: each result's "expression"). With `path`, the drawing
    is written as PNG through a temporary file moved into place, so an existing file is never left half-written.
    Returns the drawn RGB image.
    """
    if isinstance(results, Mapping):
        results = [results]
    if not isinstance(results, Sequence) or isinstance(results, str):
        raise TypeError(f"results must be a grounding result or a list of them; got {type(results).__name__}.")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"labels must hold one text per result ({len(results)}); got {len(labels)}.")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"width must be a positive int; got {width!r}.")
    canvas = _load_drawing_image(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, result in enumerate(results):
        x0, y0, x1, y1 = _result_box(result, index)
        color = _COLORS[index % len(_COLORS)]
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        label = labels[index] if labels is not None else result.get("expression", "")
        if label:
            left, top, right, bottom = draw.textbbox((x0, y0), str(label), font=font)
            y = y0 - (bottom - top) - 2 if y0 - (bottom - top) - 2 >= 0 else y0 + width
            text_box = draw.textbbox((x0 + width, y), str(label), font=font)
            draw.rectangle(text_box, fill=color)
            draw.text((x0 + width, y), str(label), fill="white", font=font)
    if path is not None:
        target = Path(path)
        if target.suffix.lower() != ".png":
            raise ValueError(f"path must end in .png; got {str(path)!r}.")
        if not target.parent.is_dir():
            raise FileNotFoundError(f"the folder {str(target.parent)!r} of path does not exist.")
        handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".png", dir=target.parent)
        os.close(handle)
        try:
            canvas.save(temporary, format="PNG")
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return canvas
