"""Patch embedding: a Conv2d whose kernel and stride are the patch size (ViT, CLIP, BEiT-3, FLAVA, TransVG++)."""

import torch
from torch import nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class PatchEmbedding(nn.Module):
    """`projection` = `Conv2d(num_channels, hidden_size, patch_size, stride=patch_size)` over `pixel_values`.

    Returns `[batch, grid_h * grid_w, hidden_size]` in row-major patch order (`flatten=True`) or the map
    `[batch, hidden_size, grid_h, grid_w]`; class tokens and positions are the caller's. Non-square images work.
    With `image_size` set, another input size raises unless `interpolate_pos_encoding=True`; a size that is not a
    multiple of the patch size raises too (the convolution would drop the border) unless interpolation is allowed.
    """

    def __init__(
        self,
        num_channels: int,
        hidden_size: int,
        patch_size: int | tuple[int, int],
        *,
        image_size: int | tuple[int, int] | None = None,
        bias: bool = True,
        flatten: bool = True,
    ):
        super().__init__()
        self.num_channels = num_channels
        self.patch_size = _pair(patch_size)
        self.image_size = None if image_size is None else _pair(image_size)
        if self.image_size is not None and any(s % p for s, p in zip(self.image_size, self.patch_size, strict=True)):
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        self.flatten = flatten
        self.projection = nn.Conv2d(
            num_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size, bias=bias
        )

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid `(rows, columns)` of a `height` x `width` image."""
        return height // self.patch_size[0], width // self.patch_size[1]

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must have shape [batch, channels, height, width]; got {tuple(pixel_values.shape)}"
            )
        channels, height, width = pixel_values.shape[1:]
        if channels != self.num_channels:
            raise ValueError(f"pixel_values has {channels} channels; this patch embedding expects {self.num_channels}")
        if not interpolate_pos_encoding:
            if self.image_size is not None and (height, width) != self.image_size:
                raise ValueError(
                    f"input image size {height}x{width} does not match the model's {self.image_size[0]}x"
                    f"{self.image_size[1]}; resize the image or pass interpolate_pos_encoding=True"
                )
            if height % self.patch_size[0] or width % self.patch_size[1]:
                raise ValueError(
                    f"input image size {height}x{width} is not a multiple of the patch size "
                    f"{self.patch_size[0]}x{self.patch_size[1]}; resize or pad the image, or pass "
                    "interpolate_pos_encoding=True to drop the incomplete border patches"
                )
        # images arrive in float32; the convolution runs in the model's dtype (bf16/fp16 checkpoints), as CLIP's does
        embeddings = self.projection(pixel_values.to(self.projection.weight.dtype))
        return embeddings.flatten(2).transpose(1, 2) if self.flatten else embeddings


__all__ = ["PatchEmbedding"]
