"""Image transforms shared by every family: the one input rule (loading, RGB conversion, value checks), torchvision-
exact resize and centre crop, rescaling and normalisation."""

import base64
import io
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "CONVERTIBLE_PIL_MODES",
    "LetterboxGeometry",
    "center_crop",
    "letterbox_geometry",
    "load_image_source",
    "pad_to_canvas",
    "resize_short_side",
    "resize_to",
    "to_normalized_array",
    "to_pixel_array",
    "to_rgb_image",
]

# Modes whose `convert("RGB")` is meaningful. Alpha is dropped, not composited, exactly as the
# `PIL.Image.open(path).convert("RGB")` loader of torchvision's `ImageFolder` that the original code uses.
# Rejected: 32-bit "I", 16-bit "I;16*" and float "F" (PIL clips them to 0..255 instead of scaling), "LAB" (PIL copies
# the bands without a colour conversion) and the premultiplied "La" (PIL cannot convert it).
CONVERTIBLE_PIL_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV")


def _check_not_empty(width: int, height: int, argument_name: str) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(
            f"{argument_name} is an empty image of size {width}x{height} (width x height); "
            "expected at least 1x1 pixels."
        )


def _pil_to_rgb(image: Image.Image, argument_name: str) -> Image.Image:
    _check_not_empty(image.width, image.height, argument_name)
    if image.mode == "RGB":
        return image
    if image.mode not in CONVERTIBLE_PIL_MODES:
        raise ValueError(
            f"{argument_name} has PIL mode {image.mode!r}, which cannot be converted to RGB meaningfully; expected "
            f"one of {', '.join(CONVERTIBLE_PIL_MODES)}. Scale high bit-depth or float images to 8 bits first "
            "(e.g. to mode 'L' or 'RGB')."
        )
    return image.convert("RGB")


CHANNEL_LAYOUTS = ("channels_first", "channels_last")


def _channels_last(array: np.ndarray, layout: str | None, torch_input: bool, argument_name: str) -> np.ndarray:
    """Return a (H, W) or (H, W, C) view of a 2-D or 3-D pixel array, C in (1, 3, 4)."""
    kind = "tensor" if torch_input else "numpy array"
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        first, last = array.shape[0] in (1, 3, 4), array.shape[-1] in (1, 3, 4)
        if layout is None and first and last:
            # Both ends could hold channels: each library's own convention decides.
            layout = "channels_first" if torch_input else "channels_last"
        elif layout is None:
            layout = "channels_first" if first else "channels_last" if last else None
        if layout == "channels_first" and first:
            return np.moveaxis(array, 0, -1)
        if layout == "channels_last" and last:
            return array
    raise ValueError(
        f"{argument_name} is a {kind} of shape {tuple(array.shape)}; expected an image of shape (H, W), "
        "(H, W, C) or (C, H, W) with C = 1 (gray), 3 (RGB) or 4 (RGBA, alpha dropped)."
    )


def _pixels_to_uint8(array: np.ndarray, torch_input: bool, argument_name: str) -> np.ndarray:
    """uint8 values as they are; floats in [0, 1] scaled by 255 and rounded; anything else raises."""
    kind = "tensor" if torch_input else "numpy array"
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        finite = values[np.isfinite(values)]
        if finite.size < values.size or finite.min() < 0.0 or finite.max() > 1.0:
            found = f"min {finite.min():g}, max {finite.max():g}" if finite.size else "no finite value"
            raise ValueError(
                f"{argument_name} is a float {kind} with values outside [0, 1] or not finite ({found}, "
                f"{values.size - finite.size} not finite); expected floats in [0, 1] (as ToTensor gives) or uint8 "
                "values in 0..255."
            )
        # Rounding (not truncation) recovers the exact uint8 image from x / 255.
        return np.round(values * np.float32(255.0)).astype(np.uint8)
    raise ValueError(
        f"{argument_name} is a {kind} of dtype {array.dtype}; expected uint8 values in 0..255 or floats in [0, 1]. "
        "Scale 16-bit or integer images to 8 bits first (e.g. (array / 65535 * 255).round().astype(np.uint8))."
    )


def _array_to_rgb(array: np.ndarray, layout: str | None, torch_input: bool, argument_name: str) -> Image.Image:
    hwc = _channels_last(array, layout, torch_input, argument_name)
    _check_not_empty(hwc.shape[1], hwc.shape[0], argument_name)
    hwc = _pixels_to_uint8(hwc, torch_input, argument_name)
    if hwc.ndim == 3 and hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    if hwc.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(hwc), mode="L").convert("RGB")
    # A fourth channel is alpha and is dropped, as PIL's RGBA -> RGB conversion does.
    return Image.fromarray(np.ascontiguousarray(hwc[..., :3]), mode="RGB")


def _check_layout(input_data_format: object) -> str | None:
    layout = getattr(input_data_format, "value", input_data_format)
    if layout is not None and layout not in CHANNEL_LAYOUTS:
        raise ValueError(f"input_data_format must be None, 'channels_first' or 'channels_last', got {layout!r}.")
    return layout


def to_rgb_image(
    image: Image.Image | np.ndarray | torch.Tensor,
    argument_name: str = "images",
    input_data_format: str | None = None,
) -> Image.Image:
    """Convert one image to an RGB `PIL.Image.Image` with the one rule every vlzoo entry point applies.

    - `PIL.Image.Image`: mode "RGB" is returned as is; the modes in `CONVERTIBLE_PIL_MODES` go through
      `convert("RGB")` like the original `ImageFolder` loader (alpha dropped, not composited). 16-bit ("I;16*"),
      32-bit integer ("I") and float ("F") modes raise: PIL would clip them to 0..255 instead of scaling.
    - `numpy.ndarray` and `torch.Tensor` alike: uint8 values in 0..255, or floats in [0, 1] (scaled by 255 and
      rounded); other dtypes (uint16, int32, bool, ...) and floats outside [0, 1] raise. Shapes (H, W), (H, W, C)
      or (C, H, W) with C = 1, 3 or 4 (alpha dropped). When both ends could be channels, tensors are read
      channels-first and arrays channels-last, unless `input_data_format` ("channels_first"/"channels_last") says.

    Raises `ValueError` for empty images, unsupported modes, shapes, dtypes or value ranges, and `TypeError` for
    other input types; `argument_name` names the offending argument in the message.
    """
    layout = _check_layout(input_data_format)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, argument_name)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, layout, torch_input=False, argument_name=argument_name)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        # numpy has no bfloat16: every float tensor is read as float32 (exact for the [0, 1] check and x * 255).
        array = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
        return _array_to_rgb(array, layout, torch_input=True, argument_name=argument_name)
    raise TypeError(
        f"{argument_name} must be a PIL.Image.Image, a numpy.ndarray, a torch.Tensor, or a path or URL (str), got "
        f"{type(image).__name__}."
    )


def load_image_source(source: str, argument_name: str = "images", timeout: float | None = None) -> Image.Image:
    """Open an image from a URL, a local path or base64 data, as `transformers.image_utils.load_image` does, but
    keep its PIL mode: the caller applies `to_rgb_image`, so 16-bit or float files raise instead of being clipped.

    `http://`/`https://` strings are downloaded (`timeout` in seconds), existing files are opened, anything else is
    decoded as base64 (optionally a `data:image/...;base64,` URI). The EXIF orientation is applied, like
    `load_image`.
    """
    if not isinstance(source, str):
        raise TypeError(f"{argument_name} must be a str (URL, path or base64 data), got {type(source).__name__}.")
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                data = response.read()
            image = Image.open(io.BytesIO(data))
        elif os.path.isfile(source):
            image = Image.open(source)
        else:
            encoded = source.split(",", 1)[1] if source.startswith("data:image/") else source
            image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
        image.load()
    except (OSError, ValueError, urllib.error.URLError) as error:
        shown = source if len(source) <= 80 else source[:77] + "..."
        raise ValueError(
            f"{argument_name} could not be read as an image from {shown!r}: expected an http(s) URL, the path of an "
            f"existing image file or base64 image data ({type(error).__name__}: {error})."
        ) from error
    return ImageOps.exif_transpose(image)


def _check_positive_size(size: int, argument_name: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"{argument_name} must be a positive int, got {size!r}.")


def resize_short_side(image: Image.Image, size: int, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """Resize so that the short side equals `size`, as torchvision's `Resize(size)` does on PIL images.

    The long side becomes `int(size * long / short)` (truncated, not rounded); the image is returned unchanged when
    its short side already equals `size`; PIL's `resize` (antialiased) does the resampling.
    """
    _check_positive_size(size, "size")
    width, height = image.size
    _check_not_empty(width, height, "image")
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, resample)


def resize_to(image: Image.Image, size: tuple[int, int], resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """Resize to exactly `size` = (height, width), as torchvision's `Resize((height, width))` does on PIL images."""
    height, width = size
    _check_positive_size(height, "size")
    _check_positive_size(width, "size")
    _check_not_empty(image.width, image.height, "image")
    return image.resize((width, height), resample)


def center_crop(image: Image.Image, size: int | tuple[int, int]) -> Image.Image:
    """Crop the centre `size` (an int or (height, width)), as torchvision's `CenterCrop` does on PIL images.

    Offsets are `round((H - height) / 2)` and `round((W - width) / 2)` with Python's round-half-to-even (floor
    division differs whenever the margin is 3 mod 4); an image smaller than the crop is first zero-padded with
    `(crop - side) // 2` pixels before and the rest after, like torchvision.
    """
    crop_height, crop_width = (size, size) if isinstance(size, int) else tuple(size)
    _check_positive_size(crop_height, "size")
    _check_positive_size(crop_width, "size")
    width, height = image.size
    _check_not_empty(width, height, "image")
    if crop_width > width or crop_height > height:
        pad_left = (crop_width - width) // 2 if crop_width > width else 0
        pad_top = (crop_height - height) // 2 if crop_height > height else 0
        padded = Image.new(image.mode, (max(width, crop_width), max(height, crop_height)))
        padded.paste(image, (pad_left, pad_top))
        image = padded
        width, height = image.size
        if (width, height) == (crop_width, crop_height):
            return image
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return image.crop((left, top, left + crop_width, top + crop_height))


class LetterboxGeometry(NamedTuple):
    """Where a letterboxed image lies on its square canvas: `canvas_pixel = original_pixel * scale + offset`."""

    scale: float
    resized_height: int
    resized_width: int
    top: int
    left: int


def letterbox_geometry(height: int, width: int, size: int) -> LetterboxGeometry:
    """The geometry of TransVG's test transform for an image of `height` x `width` on a `size` x `size` canvas.

    `scale = size / max(height, width)`; the resized sides are `round(side * scale)` with Python's round-half-to-even
    (22.5 -> 22), at least 1 pixel; the image is centred with `top = (size - resized_height) // 2` and
    `left = (size - resized_width) // 2`, which equals the original `round(margin / 2 - 0.1)` (the odd extra row or
    column goes to the bottom or right). Boxes follow the same `scale` (not the rounded side ratio), as the original.
    """
    _check_positive_size(size, "size")
    _check_not_empty(width, height, "image")
    scale = size / max(height, width)
    resized_height, resized_width = max(1, round(height * scale)), max(1, round(width * scale))
    return LetterboxGeometry(
        scale, resized_height, resized_width, (size - resized_height) // 2, (size - resized_width) // 2
    )


def pad_to_canvas(pixels: np.ndarray, size: int, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """Place a `[C, h, w]` array on a zero `[C, size, size]` canvas at (`top`, `left`); also return the int64
    `[size, size]` pixel mask (1 = image pixel, 0 = padding). The padding is zero after normalisation, as in TransVG."""
    _check_positive_size(size, "size")
    channels, height, width = pixels.shape
    if top < 0 or left < 0 or top + height > size or left + width > size:
        raise ValueError(
            f"an image of {height}x{width} pixels (height x width) at top={top}, left={left} does not fit a "
            f"{size}x{size} canvas."
        )
    canvas = np.zeros((channels, size, size), dtype=pixels.dtype)
    canvas[:, top : top + height, left : left + width] = pixels
    mask = np.zeros((size, size), dtype=np.int64)
    mask[top : top + height, left : left + width] = 1
    return canvas, mask


def _channel_values(values: Sequence[float], argument_name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (3,):
        raise ValueError(f"{argument_name} must have 3 values (one per RGB channel), got {list(np.ravel(values))}.")
    return array


def to_pixel_array(
    image: Image.Image,
    rescale_factor: float | None = 1 / 255,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Return a float32 [3, H, W] array of an RGB image: `x * rescale_factor` (skipped when None), then
    `(x - mean) / std` per channel when `mean`/`std` are given, in float32 like torchvision's `ToTensor` and
    `Normalize`. The rescale divides by `1 / rescale_factor` (255 for the default), as `ToTensor` does, so the
    result is bit-identical to it."""
    if image.mode != "RGB":
        raise ValueError(f"image has mode {image.mode!r}; expected 'RGB' (use to_rgb_image first).")
    pixels = np.asarray(image, dtype=np.uint8).astype(np.float32).transpose(2, 0, 1)
    if rescale_factor is not None:
        if isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float)) or rescale_factor <= 0:
            raise ValueError(f"rescale_factor must be a positive float, got {rescale_factor!r}.")
        pixels = pixels / np.float32(1.0 / rescale_factor)
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together (or both None to skip normalisation).")
    if mean is not None:
        mean_array, std_array = _channel_values(mean, "mean"), _channel_values(std, "std")
        if not np.all(std_array > 0):
            raise ValueError(f"std must be positive, got {list(std)}.")
        pixels = (pixels - mean_array[:, None, None]) / std_array[:, None, None]
    return pixels


def to_normalized_array(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Return a float32 [3, H, W] array of an RGB image, `(x / 255 - mean) / std` per channel, in float32 like
    torchvision's `ToTensor` followed by `Normalize`."""
    return to_pixel_array(image, 1 / 255, mean, std)
