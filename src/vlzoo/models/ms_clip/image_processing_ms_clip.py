"""MS-CLIP image processor: the original evaluation transform (bicubic short-side resize, centre crop, ImageNet norm)."""

from collections.abc import Sequence

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from vlzoo.processing.image_transforms import center_crop, resize_short_side, to_normalized_array, to_rgb_image

__all__ = ["MsClipImageProcessor"]

# Keys that transformers itself writes into saved image-processor configs; anything else is a user mistake.
_SAVED_METADATA_KEYS = ("image_processor_type", "processor_class", "feature_extractor_type", "backend")


def _positive_int(value, argument_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument_name} must be a positive int, got {value!r}.")
    return value


def _short_side_size(size: int | dict[str, int]) -> dict[str, int]:
    if isinstance(size, dict):
        if set(size) != {"shortest_edge"}:
            raise ValueError(f"size must be an int or {{'shortest_edge': int}}, got {size!r}.")
        size = size["shortest_edge"]
    return {"shortest_edge": _positive_int(size, "size")}


def _crop_size(crop_size: int | Sequence[int] | dict[str, int]) -> dict[str, int]:
    if isinstance(crop_size, dict):
        if set(crop_size) != {"height", "width"}:
            raise ValueError(f"crop_size must be an int, (height, width) or {{'height', 'width'}}, got {crop_size!r}.")
        height, width = crop_size["height"], crop_size["width"]
    elif isinstance(crop_size, (list, tuple)) and len(crop_size) == 2:
        height, width = crop_size
    else:
        height = width = crop_size
    return {"height": _positive_int(height, "crop_size"), "width": _positive_int(width, "crop_size")}


def _channel_values(values: Sequence[float], argument_name: str) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ValueError(f"{argument_name} must be 3 floats (one per RGB channel), got {values!r}.")
    return [float(value) for value in values]


def _resample(resample: int) -> int:
    try:
        return int(PILImageResampling(resample))
    except ValueError as error:
        valid = ", ".join(f"{mode.name}={int(mode)}" for mode in PILImageResampling)
        raise ValueError(f"resample must be a PIL resampling filter ({valid}), got {resample!r}.") from error


class MsClipImageProcessor(BaseImageProcessor):
    """Image processor reproducing the original MS-CLIP evaluation transform (msclip.md §5).

    `Resize(size)` with PIL bicubic (short side to `size`, long side `int(size * long / short)`), `CenterCrop` with
    round-half-to-even offsets, `/ 255`, then ImageNet mean/std (the original's `INPUT.MEAN/STD`, not CLIP's).
    The original hard-codes 224; other sizes (e.g. 96 for small test models) run the same steps. Images are
    converted to RGB by `vlzoo.processing.image_transforms.to_rgb_image` (alpha dropped, as the original
    `ImageFolder` loader does).

    Args:
        size (`int` or `{"shortest_edge": int}`, defaults to 224): target short side.
        crop_size (`int`, `(height, width)` or `{"height", "width"}`, defaults to 224): centre crop.
        resample (`int`, defaults to `PILImageResampling.BICUBIC`): PIL resampling filter.
        image_mean, image_std (3 floats, default ImageNet): per-channel normalisation.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int | dict[str, int] = 224,
        crop_size: int | Sequence[int] | dict[str, int] = 224,
        resample: int = PILImageResampling.BICUBIC,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - set(_SAVED_METADATA_KEYS))
        if unknown:
            raise TypeError(
                f"MsClipImageProcessor got unexpected arguments {unknown}; expected size, crop_size, resample, "
                "image_mean, image_std."
            )
        super().__init__()
        self.size = _short_side_size(size)
        self.crop_size = _crop_size(crop_size)
        self.resample = _resample(resample)
        self.image_mean = _channel_values(image_mean, "image_mean")
        self.image_std = _channel_values(image_std, "image_std")
        if min(self.image_std) <= 0:
            raise ValueError(f"image_std must be positive, got {self.image_std}.")

    def preprocess(
        self,
        images: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray],
        size: int | dict[str, int] | None = None,
        crop_size: int | Sequence[int] | dict[str, int] | None = None,
        resample: int | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Preprocess one image or a list of images into `pixel_values` [N, 3, crop height, crop width] float32.

        Images are PIL images, uint8 numpy arrays or torch tensors (see `to_rgb_image`); arguments left `None`
        take the processor's values. `return_tensors="pt"` gives a torch tensor, otherwise a numpy array.
        """
        short_side = _short_side_size(self.size if size is None else size)["shortest_edge"]
        crop = _crop_size(self.crop_size if crop_size is None else crop_size)
        resample = _resample(self.resample if resample is None else resample)
        mean = _channel_values(self.image_mean if image_mean is None else image_mean, "image_mean")
        std = _channel_values(self.image_std if image_std is None else image_std, "image_std")
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("images must be an image or a non-empty list of images, got an empty list.")
            named_images = [(image, f"images[{index}]") for index, image in enumerate(images)]
        else:
            named_images = [(images, "images")]
        pixel_values = []
        for image, argument_name in named_images:
            image = to_rgb_image(image, argument_name=argument_name)
            image = resize_short_side(image, short_side, resample=resample)
            image = center_crop(image, (crop["height"], crop["width"]))
            pixel_values.append(to_normalized_array(image, mean, std))
        return BatchFeature(data={"pixel_values": np.stack(pixel_values)}, tensor_type=return_tensors)
