"""The image processor every vlzoo family configures: transformers' option names, the original code's exact
transforms (`image_transforms`), and one input rule shared with the pipelines."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ChannelDimension, PILImageResampling
from transformers.processing_utils import ImagesKwargs

from vlzoo.processing.image_transforms import (
    center_crop,
    load_image_source,
    resize_short_side,
    resize_to,
    to_pixel_array,
    to_rgb_image,
)

__all__ = ["SUPPORTED_IMAGE_OPTIONS", "VlzooImageProcessor"]

# The transformers option names this processor implements (at construction and per call).
SUPPORTED_IMAGE_OPTIONS = (
    "do_resize",
    "size",
    "default_to_square",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "input_data_format",
    "return_tensors",
)
# transformers options with one meaning here (PIL processing, channels-first float32 output): any other value raises.
_FIXED_OPTIONS = {
    "do_convert_rgb": (True,),
    "do_pad": (False,),
    "pad_size": (),
    "data_format": ("channels_first", ChannelDimension.FIRST),
    "device": (),
    "image_seq_length": (),
}
_FIXED_OPTION_REASONS = {
    "do_convert_rgb": "every image is converted to RGB by the one documented rule (vlzoo.processing.to_rgb_image)",
    "do_pad": "images are resized and centre-cropped, never padded",
    "pad_size": "images are resized and centre-cropped, never padded",
    "data_format": "pixel_values are always channels-first",
    "device": "processing runs on the CPU; move the returned pixel_values with .to(device)",
    "image_seq_length": "the processor inserts no image tokens",
}
# Keys transformers writes into a saved image processor config (`auto_map` in remote-code folders): accepted, not kept.
_SAVED_METADATA_KEYS = ("image_processor_type", "processor_class", "feature_extractor_type", "backend", "auto_map")
_SIZE_KEYS = ({"shortest_edge"}, {"height", "width"})


def _positive_int(value: Any, argument_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{argument_name} must be a positive int, got {value!r}.")
    return int(value)


def _size_items(size: Any, argument_name: str, allowed: tuple[set[str], ...]) -> dict[str, int] | None:
    if size is None:
        return None
    items = {key: value for key, value in dict(size).items() if value is not None}
    if set(items) not in allowed:
        expected = " or ".join(str(sorted(keys)) for keys in allowed)
        raise ValueError(f"{argument_name} must have the keys {expected}, got {items!r}.")
    return {key: _positive_int(value, f"{argument_name}[{key!r}]") for key, value in items.items()}


def _channel_values(values: Any, argument_name: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,) * 3
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ValueError(f"{argument_name} must be one float or 3 floats (one per RGB channel), got {values!r}.")
    return tuple(float(value) for value in values)


def _resample(resample: Any) -> PILImageResampling:
    try:
        return PILImageResampling(resample)
    except ValueError as error:
        valid = ", ".join(f"{mode.name}={int(mode)}" for mode in PILImageResampling)
        raise ValueError(f"resample must be a PIL resampling filter ({valid}), got {resample!r}.") from error


def _check_fixed_options(options: dict[str, Any], fixed: dict[str, tuple[Any, ...]], reasons: dict[str, str]) -> None:
    for name, allowed in fixed.items():
        value = options.get(name)
        if value is not None and value not in allowed:
            raise ValueError(
                f"{name}={value!r} is not supported: {reasons[name]}. Leave {name} unset"
                + (f" or use {allowed[0]!r}." if allowed else ".")
            )


class VlzooImageProcessor(BaseImageProcessor):
    """Image processor with transformers' option names and torchvision-exact transforms.

    A family sets the class attributes below to its released evaluation transform and writes nothing else; every
    option can also be given at construction or per call, under the names transformers uses:

    - `do_resize`, `size`, `resample`: `{"shortest_edge": s}` resizes the short side to `s` with the long side
      truncated, as torchvision's `Resize(s)` (an int means that unless `default_to_square=True`);
      `{"height": h, "width": w}` resizes to exactly that, as `Resize((h, w))`. PIL resampling (antialiased).
    - `do_center_crop`, `crop_size`: torchvision's `CenterCrop` (round-half-to-even offsets, zero padding when the
      image is smaller). Without a crop the batch must come out at one size (e.g. a `{"height", "width"}` size).
    - `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std`: `x * rescale_factor`, then
      `(x - mean) / std`, in float32 like `ToTensor` + `Normalize`.
    - `input_data_format`: the layout of numpy/tensor inputs when it is ambiguous.

    Inputs: a PIL image, numpy array, torch tensor, path, URL or base64 string, or a list of them (a 4-D
    array/tensor is a batch). Each goes through `vlzoo.processing.image_transforms.to_rgb_image`, the one rule the
    processor and the pipelines share: 16-bit/float PIL modes, non-uint8 integer arrays, floats outside [0, 1] and
    empty images raise a `ValueError` naming the argument (e.g. `images[2]`). Unknown options raise a `TypeError`;
    transformers options that do not apply here (`do_pad`, `device`, ...) raise a `ValueError` unless left unset.
    Returns `pixel_values` [N, 3, H, W] float32 (a numpy array, or a tensor with `return_tensors="pt"`).
    """

    valid_kwargs = ImagesKwargs
    model_input_names = ["pixel_values"]
    # Subclasses with another geometry (vlzoo.processing.LetterboxImageProcessor) replace these three tables: the
    # accepted key sets of `size`, and the transformers options that have one meaning here (with the reason why).
    _size_key_sets: tuple[set[str], ...] = _SIZE_KEYS
    _fixed_options: dict[str, tuple[Any, ...]] = _FIXED_OPTIONS
    _fixed_option_reasons: dict[str, str] = _FIXED_OPTION_REASONS

    do_convert_rgb = True
    do_resize = True
    size = {"shortest_edge": 224}
    default_to_square = False
    resample = PILImageResampling.BICUBIC
    do_center_crop = True
    crop_size = {"height": 224, "width": 224}
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = tuple(IMAGENET_DEFAULT_MEAN)
    image_std = tuple(IMAGENET_DEFAULT_STD)

    def __init__(self, **kwargs: Any):
        self._check_option_names(kwargs, allowed_extra=_SAVED_METADATA_KEYS)
        for key in _SAVED_METADATA_KEYS:
            kwargs.pop(key, None)
        super().__init__()
        self._set_attributes(**kwargs)

    @classmethod
    def _check_option_names(cls, options: dict[str, Any], allowed_extra: Sequence[str] = ()) -> None:
        known = set(cls.valid_kwargs.__annotations__) | set(allowed_extra)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unexpected arguments {unknown}; it accepts {', '.join(SUPPORTED_IMAGE_OPTIONS)}."
            )

    def _standardize_kwargs(self, **kwargs: Any) -> dict:
        """transformers' standardisation (sizes to `SizeDict`), then vlzoo's value checks, at init and per call."""
        kwargs = super()._standardize_kwargs(**kwargs)
        _size_items(kwargs.get("size"), "size", self._size_key_sets)
        _size_items(kwargs.get("crop_size"), "crop_size", ({"height", "width"},))
        kwargs["image_mean"] = _channel_values(kwargs.get("image_mean"), "image_mean")
        kwargs["image_std"] = _channel_values(kwargs.get("image_std"), "image_std")
        if kwargs["image_std"] is not None and min(kwargs["image_std"]) <= 0:
            raise ValueError(f"image_std must be positive, got {kwargs['image_std']}.")
        if kwargs.get("resample") is not None:
            kwargs["resample"] = _resample(kwargs["resample"])
        factor = kwargs.get("rescale_factor")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0):
            raise ValueError(f"rescale_factor must be a positive float, got {factor!r}.")
        _check_fixed_options(kwargs, self._fixed_options, self._fixed_option_reasons)
        return kwargs

    def preprocess(
        self, images: Any, *args: Any, image_like_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> BatchFeature:
        """Preprocess an image or a list of images; options left out take the processor's values."""
        self._check_option_names(kwargs)
        return super().preprocess(images, *args, image_like_kwargs=image_like_kwargs, **kwargs)

    def fetch_images(self, image_url_or_urls: Any, timeout: float | None = None, argument_name: str = "images") -> Any:
        """Open the strings (URLs, paths, base64) among the inputs, keeping their PIL mode for `to_rgb_image`.

        transformers' version converts to RGB while loading, which would clip 16-bit and float files silently.
        """
        if isinstance(image_url_or_urls, (list, tuple)):
            return [
                self.fetch_images(item, timeout=timeout, argument_name=f"{argument_name}[{index}]")
                for index, item in enumerate(image_url_or_urls)
            ]
        if isinstance(image_url_or_urls, str):
            return load_image_source(image_url_or_urls, argument_name=argument_name, timeout=timeout)
        return image_url_or_urls

    def load_rgb_image(
        self,
        image: Any,
        argument_name: str = "images",
        timeout: float | None = None,
        input_data_format: str | None = None,
    ) -> Image.Image:
        """Load (if a string) and convert one image by the shared rule; the pipelines call this on their inputs."""
        image = self.fetch_images(image, timeout=timeout, argument_name=argument_name)
        return to_rgb_image(image, argument_name=argument_name, input_data_format=input_data_format)

    def _prepare_image_like_inputs(
        self, images: Any, *args: Any, input_data_format: str | None = None, **kwargs: Any
    ) -> list[Image.Image]:
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError("images must be an image or a non-empty list of images, got an empty list.")
            named = [(image, f"images[{index}]") for index, image in enumerate(images)]
        elif getattr(images, "ndim", None) == 4:  # a batched numpy array or tensor
            named = [(image, f"images[{index}]") for index, image in enumerate(images)]
        else:
            named = [(images, "images")]
        for image, argument_name in named:
            if isinstance(image, (list, tuple)):
                raise TypeError(f"{argument_name} is a {type(image).__name__}; expected one image (no nested lists).")
        return [self.load_rgb_image(image, name, input_data_format=input_data_format) for image, name in named]

    def _preprocess(
        self,
        images: list[Image.Image],
        do_resize: bool | None = None,
        size: Any = None,
        resample: PILImageResampling | None = None,
        do_center_crop: bool | None = None,
        crop_size: Any = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: tuple[float, ...] | None = None,
        image_std: tuple[float, ...] | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        size_items = _size_items(size, "size", _SIZE_KEYS) if do_resize else None
        crop = _size_items(crop_size, "crop_size", ({"height", "width"},)) if do_center_crop else None
        pixel_values = []
        for image in images:
            if size_items is not None and "shortest_edge" in size_items:
                image = resize_short_side(image, size_items["shortest_edge"], resample=resample)
            elif size_items is not None:
                image = resize_to(image, (size_items["height"], size_items["width"]), resample=resample)
            if crop is not None:
                image = center_crop(image, (crop["height"], crop["width"]))
            pixel_values.append(
                to_pixel_array(
                    image,
                    rescale_factor if do_rescale else None,
                    image_mean if do_normalize else None,
                    image_std if do_normalize else None,
                )
            )
        shapes = sorted({tuple(array.shape[1:]) for array in pixel_values})
        if len(shapes) > 1:
            raise ValueError(
                f"the images came out at different sizes {shapes} (height, width) and cannot be stacked; keep "
                "do_center_crop=True or resize to a fixed {'height': h, 'width': w} size."
            )
        return BatchFeature(data={"pixel_values": np.stack(pixel_values)}, tensor_type=return_tensors)
