"""Letterboxing image processor for grounding families: long side resized, centred on a square zero canvas with a
pixel mask, and the box mappings between original pixels and the canvas that training and the pipelines share."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from vlzoo.layers.box_ops import convert_boxes
from vlzoo.processing.image_processor import (
    _FIXED_OPTION_REASONS,
    _FIXED_OPTIONS,
    VlzooImageProcessor,
    _size_items,
)
from vlzoo.processing.image_transforms import (
    LetterboxGeometry,
    letterbox_geometry,
    pad_to_canvas,
    resize_to,
    to_pixel_array,
)

__all__ = ["LetterboxImageProcessor"]

_LETTERBOX_SIZE_KEYS = ({"longest_edge"},)
_LETTERBOX_FIXED_OPTIONS = {
    **_FIXED_OPTIONS,
    "do_resize": (True,),
    "do_pad": (True,),
    "do_center_crop": (False,),
}
_LETTERBOX_REASONS = {
    **_FIXED_OPTION_REASONS,
    "do_resize": "a letterbox always resizes the long side to the canvas size",
    "do_pad": "a letterbox always pads the resized image to the square canvas",
    "do_center_crop": "a letterbox keeps the whole image and pads instead of cropping",
}


def _image_sizes(image_sizes: Any, count: int, argument_name: str) -> list[tuple[int, int]]:
    """`(height, width)` pairs of positive ints, one per box; a `[N, 2]` tensor or array works too."""
    if isinstance(image_sizes, (torch.Tensor, np.ndarray)):
        image_sizes = image_sizes.tolist()
    if not isinstance(image_sizes, (list, tuple)) or len(image_sizes) != count:
        found = len(image_sizes) if isinstance(image_sizes, (list, tuple)) else type(image_sizes).__name__
        raise ValueError(f"{argument_name} must hold one (height, width) per box ({count}); got {found}.")
    sizes = []
    for index, size in enumerate(image_sizes):
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or any(isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side <= 0 for side in size)
        ):
            raise ValueError(f"{argument_name}[{index}] must be (height, width) as positive ints; got {size!r}.")
        sizes.append((int(size[0]), int(size[1])))
    return sizes


def _boxes(boxes: Any, argument_name: str) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor):
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32))
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{argument_name} must have shape [N, 4]; got {tuple(boxes.shape)}.")
    return boxes.float()


class LetterboxImageProcessor(VlzooImageProcessor):
    """TransVG's test transform: the long side resized to `size["longest_edge"]`, the image centred on a square zero
    canvas of that size (zero after normalisation), with `pixel_mask` (1 = image pixel, 0 = padding).

    Geometry (`vlzoo.processing.image_transforms.letterbox_geometry`, transvg.md §6): `scale = size / max(h, w)`,
    resized sides `round(side * scale)` (half to even), offsets `(size - side) // 2`. A family configures it with class
    attributes (`size`, `resample`, `image_mean`, `image_std`); an int `size` means the long side.

    Boxes: `transform_boxes` maps original-pixel xyxy boxes onto the canvas as normalised (cx, cy, w, h) (the targets
    of `vlzoo.training.objectives.GroundingObjective`), and `post_process_grounding` maps a model's normalised
    canvas boxes back to original-pixel xyxy corners (the `visual-grounding` pipeline). Both take the original sizes
    as `(height, width)`, the order transformers' post-processing uses for `target_sizes`.

    Returns `pixel_values` `[N, 3, size, size]` float32 and `pixel_mask` `[N, size, size]` int64.
    """

    model_input_names = ["pixel_values", "pixel_mask"]
    _size_key_sets = _LETTERBOX_SIZE_KEYS
    _fixed_options = _LETTERBOX_FIXED_OPTIONS
    _fixed_option_reasons = _LETTERBOX_REASONS

    do_resize = True
    size = {"longest_edge": 640}
    default_to_square = False
    resample = PILImageResampling.BILINEAR
    do_center_crop = False
    crop_size = None
    do_pad = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = tuple(IMAGENET_DEFAULT_MEAN)
    image_std = tuple(IMAGENET_DEFAULT_STD)

    def _standardize_kwargs(self, **kwargs: Any) -> dict:
        """An int `size` is the long side (the canvas), not transformers' shortest edge."""
        size = kwargs.get("size")
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            kwargs["size"] = {"longest_edge": int(size)}
        return super()._standardize_kwargs(**kwargs)

    @property
    def canvas_size(self) -> int:
        """Side of the square canvas in pixels (`size["longest_edge"]`)."""
        return _size_items(self.size, "size", _LETTERBOX_SIZE_KEYS)["longest_edge"]

    def letterbox_geometry(self, height: int, width: int) -> LetterboxGeometry:
        """Scale, resized size and offsets of an image of `height` x `width` on this processor's canvas."""
        return letterbox_geometry(height, width, self.canvas_size)

    def transform_boxes(self, boxes: Any, image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Original-pixel xyxy boxes `[N, 4]` -> normalised (cx, cy, w, h) on the canvas, `[N, 4]` float32.

        `image_sizes[i]` is the `(height, width)` of the original image of box i. Each corner becomes
        `corner * scale + offset`, divided by the canvas size.
        """
        boxes = _boxes(boxes, "boxes")
        sizes = _image_sizes(image_sizes, len(boxes), "image_sizes")
        scale, offset = self._scales_and_offsets(sizes)
        corners = (boxes * scale + offset) / self.canvas_size
        return convert_boxes(corners, "xyxy", "cxcywh")

    def post_process_grounding(
        self, pred_boxes: Any, original_sizes: Sequence[tuple[int, int]], clip: bool = True
    ) -> torch.Tensor:
        """A model's `pred_boxes` `[N, 4]` (normalised cx, cy, w, h on the canvas) -> original-pixel xyxy corners.

        The inverse of `transform_boxes`: `(corner * size - offset) / scale`. `original_sizes[i]` is the
        `(height, width)` of the image of prediction i. With `clip=True` (default) the corners are clipped to the
        image, `[0, width] x [0, height]`: a prediction reaching into the padding ends at the image border.
        Returns float32 `[N, 4]` as (xmin, ymin, xmax, ymax).
        """
        boxes = _boxes(pred_boxes, "pred_boxes")
        sizes = _image_sizes(original_sizes, len(boxes), "original_sizes")
        scale, offset = self._scales_and_offsets(sizes)
        corners = (convert_boxes(boxes, "cxcywh", "xyxy") * self.canvas_size - offset) / scale
        if clip:
            limits = torch.tensor([[width, height, width, height] for height, width in sizes], dtype=torch.float32)
            corners = torch.minimum(corners.clamp(min=0), limits)
        return corners

    def _scales_and_offsets(self, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per box `[N, 1]` scale and `[N, 4]` (left, top, left, top) offset, from each image's geometry."""
        geometries = [self.letterbox_geometry(height, width) for height, width in sizes]
        scale = torch.tensor([[geometry.scale] for geometry in geometries], dtype=torch.float64)
        offset = torch.tensor(
            [[geometry.left, geometry.top, geometry.left, geometry.top] for geometry in geometries],
            dtype=torch.float64,
        )
        return scale.float(), offset.float()

    def _preprocess(
        self,
        images: list[Image.Image],
        size: Any = None,
        resample: PILImageResampling | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        canvas = _size_items(size, "size", _LETTERBOX_SIZE_KEYS)["longest_edge"]
        pixel_values, pixel_masks = [], []
        for image in images:
            geometry = letterbox_geometry(image.height, image.width, canvas)
            resized = resize_to(image, (geometry.resized_height, geometry.resized_width), resample=resample)
            pixels = to_pixel_array(
                resized,
                rescale_factor if do_rescale else None,
                image_mean if do_normalize else None,
                image_std if do_normalize else None,
            )
            values, mask = pad_to_canvas(pixels, canvas, geometry.top, geometry.left)
            pixel_values.append(values)
            pixel_masks.append(mask)
        return BatchFeature(
            data={"pixel_values": np.stack(pixel_values), "pixel_mask": np.stack(pixel_masks)},
            tensor_type=return_tensors,
        )
