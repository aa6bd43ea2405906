"""An independent Swin Transformer in the layout METER's `vit_model` stores (timm's `SwinTransformer` 0.4, the
Microsoft implementation), written from the Swin paper and meter.md, to check the conversion of the Swin-B variant.

It computes as the original does, step by step: `patch_embed` (conv + LayerNorm), pre-LN blocks of windowed
attention (fused `qkv`, queries scaled before `q @ k^T`, relative-position bias, a -100 mask across the regions a
cyclic shift brings together, the shift undone after), `PatchMerging` at the end of every stage but the last, and
the final LayerNorm on every token; the windows of a stage no larger than the window are the whole map, unshifted.
"""

import torch
from torch import nn


def _windows(x: torch.Tensor, window: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def _merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        grid = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offsets = (grid[:, :, None] - grid[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", offsets[..., 0] * (2 * window - 1) + offsets[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        count, tokens, channels = x.shape
        q, k, v = self.qkv(x).view(count, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        scores = scores + bias.view(tokens, tokens, -1).permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            scores = scores.view(-1, windows, self.heads, tokens, tokens) + mask[None, :, None]
            scores = scores.view(-1, self.heads, tokens, tokens)
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(count, tokens, channels))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = None
        if shift:
            regions = torch.zeros(1, resolution, resolution, 1)
            bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for number, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
                regions[:, rows, cols, :] = number
            labels = _windows(regions, window)[..., 0]
            mask = (labels[:, None, :] - labels[:, :, None]) != 0
            mask = torch.zeros(mask.shape).masked_fill(mask, -100.0)
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        size, window, shift = self.resolution, self.window, self.shift
        h = self.norm1(x).view(batch, size, size, channels)
        if shift:
            h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
        h = _merge(self.attn(_windows(h, window), self.attn_mask), window, size, size)
        if shift:
            h = torch.roll(h, shifts=(shift, shift), dims=(1, 2))
        x = x + h.reshape(batch, size * size, channels)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, self.resolution, self.resolution, channels)
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1).view(batch, -1, 4 * channels)))


class Stage(nn.Module):
    def __init__(self, dim, resolution, depth, heads, window, mlp_ratio, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(pixels).flatten(2).transpose(1, 2))


class OriginalSwin(nn.Module):
    """`forward(pixels)` = the original's `forward_features`: `[batch, tokens, embed_dim * 2^(stages - 1)]`."""

    def __init__(self, image_size, patch, embed_dim, depths, heads, window, mlp_ratio=4.0, num_classes=1000):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, embed_dim)
        grid = image_size // patch
        self.layers = nn.ModuleList(
            Stage(embed_dim * 2**i, grid // 2**i, depth, heads[i], window, mlp_ratio, i < len(depths) - 1)
            for i, depth in enumerate(depths)
        )
        width = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)  # built by the original, never run by METER

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)
