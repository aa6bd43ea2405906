"""Position embeddings: learned tables with an index offset, DETR's 2-D sine positions, 2-D table resizing."""

import math

import torch
from torch import nn


class LearnedPositionEmbedding(nn.Embedding):
    """A learned position table whose position 0 is stored at row `offset`.

    fairseq-derived models keep `offset` unused leading rows: BEiT-3's vision and text tables start at row 2
    (beit3.md §2.4), as RoBERTa's does. The table has `num_positions + offset` rows, the shape the released weights
    have, so a checkpoint loads as is; `num_positions` is how many positions the model can use.
    """

    def __init__(self, num_positions: int, embedding_dim: int, *, offset: int = 0):
        if num_positions <= 0 or offset < 0:
            raise ValueError(f"num_positions must be positive and offset >= 0; got {num_positions} and {offset}")
        super().__init__(num_positions + offset, embedding_dim)
        self.num_positions = num_positions
        self.offset = offset

    def forward(self, position_ids: torch.Tensor | None = None, *, seq_len: int | None = None) -> torch.Tensor:
        """Embeddings of 0-based `position_ids` (any shape, plus a feature axis), or with `seq_len` of positions
        `0 .. seq_len - 1` as `[seq_len, embedding_dim]` (broadcasts over the batch)."""
        if (position_ids is None) == (seq_len is None):
            raise ValueError("pass exactly one of position_ids and seq_len")
        if position_ids is not None:
            return super().forward(position_ids + self.offset)
        if not 0 < seq_len <= self.num_positions:
            raise ValueError(
                f"seq_len must be in [1, {self.num_positions}] (the table's usable positions); got {seq_len}"
            )
        return self.weight[self.offset : self.offset + seq_len]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, offset={self.offset}"


class SinePositionEmbedding2D(nn.Module):
    """DETR's fixed 2-D sine/cosine positions of a feature map, from its pixel mask.

    For a mask `[batch, height, width]` (1 = real, 0 = padding, vlzoo's `pixel_mask` convention), the row and column
    coordinates are the running counts of real cells (`cumsum`), divided by the count in the last row / column and
    times `scale` when `normalize` (so padding after the image does not stretch the scale); each axis then gets
    `num_position_features` channels `sin(c / T^(2i/F))`, `cos(c / T^(2i/F))` interleaved, and the output is
    `[batch, 2 * num_position_features, height, width]`, y channels first (transvg.md §2 step 3; DETR's
    `PositionEmbeddingSine`). Computed in float32 whatever the output dtype.
    """

    def __init__(
        self,
        num_position_features: int = 64,
        *,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        eps: float = 1e-6,
    ):
        super().__init__()
        if num_position_features <= 0 or num_position_features % 2:
            raise ValueError(f"num_position_features must be a positive even number; got {num_position_features}")
        self.num_position_features = num_position_features
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps

    def forward(self, pixel_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Positions `[batch, 2 * num_position_features, height, width]` for `pixel_mask` `[batch, height, width]`."""
        if pixel_mask.dim() != 3:
            raise ValueError(f"pixel_mask must have shape [batch, height, width]; got {tuple(pixel_mask.shape)}")
        real = pixel_mask.to(torch.float32)
        y = real.cumsum(1)
        x = real.cumsum(2)
        if self.normalize:
            y = y / (y[:, -1:, :] + self.eps) * self.scale
            x = x / (x[:, :, -1:] + self.eps) * self.scale
        features = self.num_position_features
        exponent = torch.arange(features, dtype=torch.float32, device=pixel_mask.device)
        frequencies = self.temperature ** (2 * torch.div(exponent, 2, rounding_mode="floor") / features)
        pos_x = x[..., None] / frequencies
        pos_y = y[..., None] / frequencies
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(dtype)

    def extra_repr(self) -> str:
        return (
            f"num_position_features={self.num_position_features}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}"
        )


def resize_position_table_2d(
    table: torch.Tensor,
    new_grid_size: int | tuple[int, int],
    *,
    old_grid_size: int | tuple[int, int] | None = None,
    num_prefix_rows: int = 0,
    mode: str = "bicubic",
    align_corners: bool = False,
    antialias: bool = False,
) -> torch.Tensor:
    """Resize the grid part of a position table to another patch grid; leading rows are kept unchanged.

    The table is `[rows, dim]` or `[1, rows, dim]`: `num_prefix_rows` leading rows that are not grid cells (a class
    token: 1; BEiT-3's two unused fairseq rows plus its class token: 3, beit3.md §3.4), then the grid in row-major
    order. The grid is resampled with `torch.nn.functional.interpolate` (bicubic, `align_corners=False`: the rule of
    the BEiT-3, METER and timm converters) in float32, and returned in the table's dtype (released fp16 tables
    cannot be resized bicubically on CPU). Used by converters and by `interpolate_pos_encoding` at forward time.

    Args:
        table: the position table.
        new_grid_size: grid `(height, width)` to produce, or one int for a square grid.
        old_grid_size: grid of `table`; inferred for square grids, required otherwise.
        num_prefix_rows: leading rows copied unchanged.
        mode, align_corners, antialias: passed to `interpolate`.
    """
    if table.dim() not in (2, 3) or (table.dim() == 3 and table.shape[0] != 1):
        raise ValueError(f"table must have shape [rows, dim] or [1, rows, dim]; got {tuple(table.shape)}")
    rows = table.shape[-2]
    num_cells = rows - num_prefix_rows
    if not 0 <= num_prefix_rows < rows:
        raise ValueError(f"num_prefix_rows must be in [0, {rows}) for a table of {rows} rows; got {num_prefix_rows}")
    if old_grid_size is None:
        side = math.isqrt(num_cells)
        if side * side != num_cells:
            raise ValueError(
                f"the table has {num_cells} grid rows after {num_prefix_rows} prefix rows, not a square number; "
                "pass old_grid_size=(height, width)"
            )
        old_grid_size = side
    old_height, old_width = (old_grid_size, old_grid_size) if isinstance(old_grid_size, int) else old_grid_size
    new_height, new_width = (new_grid_size, new_grid_size) if isinstance(new_grid_size, int) else new_grid_size
    if old_height * old_width != num_cells:
        raise ValueError(
            f"old_grid_size {old_height}x{old_width} does not match the {num_cells} grid rows of the table"
        )
    if (old_height, old_width) == (new_height, new_width):
        return table
    flat = table.reshape(rows, table.shape[-1])
    prefix, grid = flat[:num_prefix_rows], flat[num_prefix_rows:]
    grid = grid.float().reshape(1, old_height, old_width, -1).permute(0, 3, 1, 2)
    if mode not in ("bilinear", "bicubic"):
        align_corners = None  # interpolate accepts it only for the interpolating modes
    grid = nn.functional.interpolate(
        grid, size=(new_height, new_width), mode=mode, align_corners=align_corners, antialias=antialias
    )
    grid = grid.permute(0, 2, 3, 1).reshape(new_height * new_width, -1).to(table.dtype)
    resized = torch.cat([prefix, grid], dim=0)
    return resized[None] if table.dim() == 3 else resized


__all__ = ["LearnedPositionEmbedding", "SinePositionEmbedding2D", "resize_position_table_2d"]
