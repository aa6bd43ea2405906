"""Image transforms shared by every family: RGB conversion, torchvision-exact resize and centre crop, normalisation."""

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["CONVERTIBLE_PIL_MODES", "center_crop", "resize_short_side", "to_normalized_array", "to_rgb_image"]

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


def _numpy_to_rgb(array: np.ndarray, argument_name: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise ValueError(
            f"{argument_name} is a numpy array of dtype {array.dtype}; expected uint8 values in 0..255 "
            "(convert float images in [0, 1] with (array * 255).round().astype(np.uint8))."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        _check_not_empty(array.shape[1], array.shape[0], argument_name)
        return Image.fromarray(np.ascontiguousarray(array), mode="L").convert("RGB")
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            f"{argument_name} is a numpy array of shape {tuple(array.shape)}; expected a channels-last image of shape "
            "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."
        )
    _check_not_empty(array.shape[1], array.shape[0], argument_name)
    # A fourth channel is alpha and is dropped, as PIL's RGBA -> RGB conversion does.
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), mode="RGB")


def _tensor_to_rgb(tensor: torch.Tensor, argument_name: str) -> Image.Image:
    if tensor.ndim != 3 or 3 not in (tensor.shape[0], tensor.shape[-1]):
        raise ValueError(
            f"{argument_name} is a tensor of shape {tuple(tensor.shape)}; expected (3, H, W) or (H, W, 3)."
        )
    # Channels-first is the torch convention and wins when both ends have size 3.
    hwc = tensor.permute(1, 2, 0) if tensor.shape[0] == 3 else tensor
    _check_not_empty(hwc.shape[1], hwc.shape[0], argument_name)
    hwc = hwc.detach().cpu()
    if hwc.dtype == torch.uint8:
        array = hwc.numpy()
    elif hwc.is_floating_point():
        values = hwc.float()
        if not bool(torch.isfinite(values).all()) or float(values.min()) < 0.0 or float(values.max()) > 1.0:
            raise ValueError(
                f"{argument_name} is a float tensor with values outside [0, 1] (or not finite); expected values in "
                "[0, 1] as produced by ToTensor, or a uint8 tensor."
            )
        # Rounding (not truncation) recovers the exact uint8 image from x / 255.
        array = (values * 255.0).round().to(torch.uint8).numpy()
    else:
        raise ValueError(f"{argument_name} is a tensor of dtype {hwc.dtype}; expected uint8 or a float dtype.")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def to_rgb_image(image: Image.Image | np.ndarray | torch.Tensor, argument_name: str = "images") -> Image.Image:
    """Convert one image to an RGB `PIL.Image.Image` with one documented rule.

    - `PIL.Image.Image`: mode "RGB" is returned as is; the modes in `CONVERTIBLE_PIL_MODES` go through
      `convert("RGB")` like the original `ImageFolder` loader (alpha dropped, not composited); other modes raise.
    - `numpy.ndarray`: uint8, channels-last (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha dropped).
    - `torch.Tensor`: (3, H, W) or (H, W, 3) (channels-first when both ends are 3), uint8 or float in [0, 1]
      (scaled by 255 and rounded).

    Raises `ValueError` for empty images, unsupported modes, shapes, dtypes or value ranges, and `TypeError` for
    other input types; `argument_name` names the offending argument in the message.
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, argument_name)
    if isinstance(image, np.ndarray):
        return _numpy_to_rgb(image, argument_name)
    if isinstance(image, torch.Tensor):
        return _tensor_to_rgb(image, argument_name)
    raise TypeError(
        f"{argument_name} must be a PIL.Image.Image, a numpy.ndarray or a torch.Tensor, got {type(image).__name__}"
        " (open files or URLs with PIL.Image.open or transformers.image_utils.load_image first)."
    )


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


def to_normalized_array(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Return a float32 [3, H, W] array of an RGB image, `(x / 255 - mean) / std` per channel, in float32 like
    torchvision's `ToTensor` followed by `Normalize`."""
    if image.mode != "RGB":
        raise ValueError(f"image has mode {image.mode!r}; expected 'RGB' (use to_rgb_image first).")
    mean_array = np.asarray(mean, dtype=np.float32)
    std_array = np.asarray(std, dtype=np.float32)
    if mean_array.shape != (3,) or std_array.shape != (3,):
        raise ValueError(f"mean and std must have 3 values (one per RGB channel), got {list(mean)} and {list(std)}.")
    if not np.all(std_array > 0):
        raise ValueError(f"std must be positive, got {list(std)}.")
    pixels = np.asarray(image, dtype=np.uint8).astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    return (pixels - mean_array[:, None, None]) / std_array[:, None, None]
