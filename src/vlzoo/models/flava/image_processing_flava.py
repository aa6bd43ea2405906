"""FLAVA image processor: the original evaluation transform, codebook pixels and BEiT block masking."""

import math
import random
from typing import Any

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

from vlzoo.processing.image_processor import VlzooImageProcessor
from vlzoo.processing.image_transforms import resize_to, to_pixel_array

__all__ = ["VlzooFlavaImageProcessor", "FlavaImagesKwargs", "block_mask", "map_pixels"]

# DALL-E's logit-Laplace epsilon: codebook inputs live in [eps, 1 - eps]
LOGIT_LAPLACE_EPS = 0.1


class FlavaImagesKwargs(ImagesKwargs, total=False):
    """transformers' `VlzooFlavaImageProcessor` option names for the codebook pixels and the patch mask.

    return_codebook_pixels (`bool`): also return `codebook_pixel_values` (the encoder image resized again to
        `codebook_size` with `codebook_resample`, scaled to [0, 1], then `map_pixels`).
    codebook_size (`dict` or `int`): `{"height": 112, "width": 112}` in the release.
    codebook_resample: LANCZOS in the release.
    return_image_mask (`bool`): also return `bool_masked_pos` `[batch, input_size_patches**2]`.
    input_size_patches (`int`): the patch grid side (14 at 224 px / patch 16).
    total_mask_patches (`int`): patches to mask per image (75).
    mask_group_min_patches (`int`), mask_group_max_patches (`int`): block size bounds (16, unbounded).
    mask_group_min_aspect_ratio (`float`), mask_group_max_aspect_ratio (`float`): block aspect bounds (0.3, 1/0.3).
    mask_seed (`int`): seed of the masking generator for this call (default: the processor's own stream).
    """

    return_codebook_pixels: bool
    codebook_size: dict[str, int] | int
    codebook_resample: Any
    return_image_mask: bool
    input_size_patches: int
    total_mask_patches: int
    mask_group_min_patches: int
    mask_group_max_patches: int | None
    mask_group_min_aspect_ratio: float
    mask_group_max_aspect_ratio: float | None
    mask_seed: int | None


def map_pixels(pixels: np.ndarray) -> np.ndarray:
    """DALL-E's `map_pixels`: `[0, 1]` pixels to `[eps, 1 - eps]`, in float32 as the original's tensor arithmetic."""
    return pixels * np.float32(1 - 2 * LOGIT_LAPLACE_EPS) + np.float32(LOGIT_LAPLACE_EPS)


def _place_block(
    mask: np.ndarray, max_patches: int, min_patches: int, log_aspect: tuple[float, float], rng: random.Random
) -> int:
    """Try up to 10 random blocks; mask the first that adds between 1 and `max_patches` new patches."""
    height, width = mask.shape
    added = 0
    for _ in range(10):
        area = rng.uniform(min_patches, max_patches)
        aspect = math.exp(rng.uniform(*log_aspect))
        block_h = int(round(math.sqrt(area * aspect)))
        block_w = int(round(math.sqrt(area / aspect)))
        if block_w < width and block_h < height:
            top = rng.randint(0, height - block_h)
            left = rng.randint(0, width - block_w)
            window = mask[top : top + block_h, left : left + block_w]
            new = block_h * block_w - int(window.sum())
            if 0 < new <= max_patches:
                added += int((window == 0).sum())
                window[...] = 1
            if added > 0:
                break
    return added


def block_mask(
    grid_size: int | tuple[int, int],
    num_masking_patches: int = 75,
    *,
    min_num_patches: int = 16,
    max_num_patches: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    rng: random.Random | None = None,
) -> np.ndarray:
    """BEiT's block-wise patch mask (FLAVA's `ImageMaskingGenerator`): int64 `[h, w]`, 1 = masked.

    Rectangular blocks of random area and aspect ratio are added until about `num_masking_patches` patches are
    masked (a block never overshoots the remaining budget; generation stops when 10 tries in a row add nothing).
    `rng` draws the same sequence of `uniform`/`randint` calls as the original with Python's global `random`, so
    `random.Random(s)` reproduces the original run right after `random.seed(s)`.
    """
    height, width = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    if min(height, width) < 1 or num_masking_patches < 0 or min_num_patches < 0:
        raise ValueError(
            f"block_mask needs a positive grid and non-negative counts; got grid {(height, width)}, "
            f"num_masking_patches={num_masking_patches}, min_num_patches={min_num_patches}"
        )
    if not 0 < min_aspect:
        raise ValueError(f"min_aspect must be positive, got {min_aspect}")
    rng = rng if rng is not None else random.Random()
    max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
    log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
    mask = np.zeros((height, width), dtype=np.int64)
    count = 0
    while count < num_masking_patches:
        budget = min(num_masking_patches - count, max_num_patches)
        added = _place_block(mask, budget, min_num_patches, log_aspect, rng)
        if added == 0:
            break
        count += added
    return mask


def _hw(size: Any, name: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = {"height": size, "width": size}
    if hasattr(size, "height") and not isinstance(size, dict):
        size = {"height": size.height, "width": size.width}
    if not isinstance(size, dict) or set(size) != {"height", "width"}:
        raise ValueError(f"{name} must be an int or {{'height': h, 'width': w}}, got {size!r}")
    height, width = size["height"], size["width"]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (height, width)):
        raise ValueError(f"{name} must hold positive ints, got {size!r}")
    return height, width


class VlzooFlavaImageProcessor(VlzooImageProcessor):
    """FLAVA's evaluation transform (torchmultimodal `FLAVAImageTransform(is_train=False)`, flava.md §6).

    RGB conversion (alpha dropped), resize to exactly 224x224 with PIL bicubic (aspect not kept, no crop), `/ 255`,
    CLIP mean/std -> `pixel_values`. With `return_codebook_pixels=True` the same 224x224 PIL image is resized again
    to 112x112 with LANCZOS, scaled to [0, 1] and mapped to [0.1, 0.9] (`map_pixels`) -> `codebook_pixel_values`
    (transformers' processor resizes the original image instead, and uses torchvision tensors). With
    `return_image_mask=True`, BEiT block masking on the 14x14 patch grid -> `bool_masked_pos` `[batch, 196]`,
    drawn from the processor's own random stream (`mask_seed` per call for a reproducible one).
    """

    valid_kwargs = FlavaImagesKwargs
    model_input_names = ["pixel_values"]

    size = {"height": 224, "width": 224}
    do_center_crop = False
    crop_size = {"height": 224, "width": 224}
    resample = PILImageResampling.BICUBIC
    image_mean = tuple(OPENAI_CLIP_MEAN)
    image_std = tuple(OPENAI_CLIP_STD)
    return_codebook_pixels = False
    codebook_size = {"height": 112, "width": 112}
    codebook_resample = PILImageResampling.LANCZOS
    return_image_mask = False
    input_size_patches = 14
    total_mask_patches = 75
    mask_group_min_patches = 16
    mask_group_max_patches = None
    mask_group_min_aspect_ratio = 0.3
    mask_group_max_aspect_ratio = None
    mask_seed = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._mask_rng = random.Random(self.mask_seed)

    def _standardize_kwargs(self, **kwargs: Any) -> dict:
        codebook_size = kwargs.pop("codebook_size", None)
        kwargs = super()._standardize_kwargs(**kwargs)
        if codebook_size is not None:
            height, width = _hw(codebook_size, "codebook_size")
            kwargs["codebook_size"] = {"height": height, "width": width}
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_mask_rng", None)
        return output

    def mask_patches(self, count: int, seed: int | None = None, **options: Any) -> np.ndarray:
        """`count` block masks `[count, grid**2]` (int64, 1 = masked) with this processor's settings."""
        rng = self._mask_rng if seed is None else random.Random(seed)
        grid = options.get("input_size_patches", self.input_size_patches)
        masks = [
            block_mask(
                grid,
                options.get("total_mask_patches", self.total_mask_patches),
                min_num_patches=options.get("mask_group_min_patches", self.mask_group_min_patches),
                max_num_patches=options.get("mask_group_max_patches", self.mask_group_max_patches),
                min_aspect=options.get("mask_group_min_aspect_ratio", self.mask_group_min_aspect_ratio),
                max_aspect=options.get("mask_group_max_aspect_ratio", self.mask_group_max_aspect_ratio),
                rng=rng,
            ).reshape(-1)
            for _ in range(count)
        ]
        return np.stack(masks)

    def _preprocess(
        self,
        images: list[Image.Image],
        return_tensors: str | None = None,
        return_codebook_pixels: bool | None = None,
        codebook_size: Any = None,
        codebook_resample: Any = None,
        return_image_mask: bool | None = None,
        input_size_patches: int | None = None,
        total_mask_patches: int | None = None,
        mask_group_min_patches: int | None = None,
        mask_group_max_patches: int | None = None,
        mask_group_min_aspect_ratio: float | None = None,
        mask_group_max_aspect_ratio: float | None = None,
        mask_seed: int | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if return_codebook_pixels and not (kwargs.get("do_resize") and not kwargs.get("do_center_crop")):
            raise ValueError(
                "codebook pixels are made from the resized encoder image: keep do_resize=True and no crop"
            )
        encoder_images = []
        if kwargs.get("do_resize"):
            size = kwargs["size"]
            height, width = _hw({"height": size.height, "width": size.width}, "size")
            encoder_images = [resize_to(image, (height, width), resample=kwargs["resample"]) for image in images]
        features = super()._preprocess(images, return_tensors=None, **kwargs)
        data = dict(features.data)
        if return_codebook_pixels:
            height, width = _hw(codebook_size if codebook_size is not None else self.codebook_size, "codebook_size")
            resample = codebook_resample if codebook_resample is not None else self.codebook_resample
            data["codebook_pixel_values"] = np.stack(
                [
                    map_pixels(to_pixel_array(resize_to(image, (height, width), resample=resample)))
                    for image in encoder_images
                ]
            )
        if return_image_mask:
            options = {
                "input_size_patches": input_size_patches,
                "total_mask_patches": total_mask_patches,
                "mask_group_min_patches": mask_group_min_patches,
                "mask_group_max_patches": mask_group_max_patches,
                "mask_group_min_aspect_ratio": mask_group_min_aspect_ratio,
                "mask_group_max_aspect_ratio": mask_group_max_aspect_ratio,
            }
            options = {k: v for k, v in options.items() if v is not None}
            data["bool_masked_pos"] = self.mask_patches(len(images), seed=mask_seed, **options).astype(bool)
        return BatchFeature(data=data, tensor_type=return_tensors)
