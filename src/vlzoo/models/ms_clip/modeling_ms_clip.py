"""MS-CLIP: a CLIP dual encoder whose image and text transformers share attention and MLP weights."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.masks import additive_attention_mask
from vlzoo.layers.mlp import FeedForward
from vlzoo.layers.norms import FreezableBatchNorm2d
from vlzoo.layers.tracing import is_tracing
from vlzoo.losses.contrastive import contrastive_loss

from .configuration_ms_clip import MsClipConfig, MsClipTextConfig, MsClipVisionConfig


@dataclass
class MsClipOutput(ModelOutput):
    """Output of [`MsClipModel`], with CLIP's field names.

    Args:
        loss (`torch.FloatTensor` of shape `()`): contrastive loss, when `return_loss=True`.
        logits_per_image (`[n_images, n_texts]`): `exp(logit_scale)` times the cosine similarities.
        logits_per_text (`[n_texts, n_images]`): the transpose.
        text_embeds (`[n_texts, projection_dim]`): L2-normalised projected text features.
        image_embeds (`[n_images, projection_dim]`): L2-normalised projected image features.
        text_model_output (`BaseModelOutputWithPooling`): the text tower's output.
        vision_model_output (`BaseModelOutputWithPooling`): the image tower's output.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            self[k].to_tuple() if k in ("text_model_output", "vision_model_output") else self[k] for k in self.keys()
        )


# ---------------------------------------------------------------------------------------------------------------
# Convolutional parts of the image tower (conv stem, parallel branch, lateral adapters): msclip.md §2
# Their BatchNorms keep their running statistics while their affine parameters are frozen (adapter training), so
# a saved adapter reproduces the trained model: see `FreezableBatchNorm2d`.
# ---------------------------------------------------------------------------------------------------------------


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1, padding: int | None = None
) -> nn.Conv2d:
    # every conv of MS-CLIP-S is bias-free; 3x3 convs pad 1, 1x1 convs pad 0
    padding = kernel // 2 if padding is None else padding
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False)


class MsClipStemStage(nn.Module):
    """Residual stage of the conv stem: ReLU(BN(conv3x3) + BN(conv1x1)); no ReLU before the add (msclip.md §7)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 3, stride)
        self.norm = FreezableBatchNorm2d(out_channels, eps=eps)
        self.shortcut_conv = _conv(in_channels, out_channels, 1, stride)
        self.shortcut_norm = FreezableBatchNorm2d(out_channels, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(features)) + self.shortcut_norm(self.shortcut_conv(features)))


class MsClipConvStem(nn.Module):
    """Early specialization: a stride-2 3x3 conv and four residual stages doubling the width up to W, then 1x1."""

    def __init__(self, config: MsClipVisionConfig):
        super().__init__()
        width = config.hidden_size
        channels = [width // 16 * 2**k for k in range(5)]
        self.conv1 = _conv(config.num_channels, channels[0], 3, 2)
        self.bn1 = FreezableBatchNorm2d(channels[0], eps=config.batch_norm_eps)
        self.stages = nn.ModuleList(
            MsClipStemStage(channels[k], channels[k + 1], stride, config.batch_norm_eps)
            for k, stride in enumerate(config.stem_strides)
        )
        self.last_conv = _conv(width, width, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.bn1(self.conv1(pixel_values)))
        for stage in self.stages:
            features = stage(features)
        return self.last_conv(features)


class MsClipBranchStage(nn.Module):
    """Parallel-branch stage j >= 1: a bottleneck residual block (1x1, 3x3 strided, 1x1) with a 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float):
        super().__init__()
        mid = out_channels // 2
        self.conv1 = _conv(in_channels, mid, 1)
        self.norm1 = FreezableBatchNorm2d(mid, eps=eps)
        self.conv2 = _conv(mid, mid, 3, stride)
        self.norm2 = FreezableBatchNorm2d(mid, eps=eps)
        self.conv3 = _conv(mid, out_channels, 1)
        self.norm3 = FreezableBatchNorm2d(out_channels, eps=eps)
        self.shortcut_conv = _conv(in_channels, out_channels, 1, stride)
        self.shortcut_norm = FreezableBatchNorm2d(out_channels, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.norm1(self.conv1(features)))
        hidden = torch.relu(self.norm2(self.conv2(hidden)))
        hidden = self.norm3(self.conv3(hidden))
        return torch.relu(hidden + self.shortcut_norm(self.shortcut_conv(features)))


class MsClipBranchInput(nn.Module):
    """Parallel-branch stage 0: conv3x3 -> BN -> ReLU on the normalised pixels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 3, stride)
        self.norm = FreezableBatchNorm2d(out_channels, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(features)))


class MsClipLateralAdapter(nn.Module):
    """Brings a branch feature map onto the token grid and REPLACES the tokens (no residual, msclip.md §7).

    `out = LN(cat[cls, BN(dw3x3(grid))] + cat[cls, pw(BN(dwK(branch)))])`: the class token becomes `LN(2 * cls)`.
    """

    def __init__(self, branch_channels: int, hidden_size: int, kernel: int, eps: float, layer_norm_eps: float):
        super().__init__()
        # a K x K depthwise conv with stride K and no padding tiles the branch map onto the token grid
        self.branch_conv = _conv(branch_channels, branch_channels, kernel, kernel, groups=branch_channels, padding=0)
        self.branch_norm = FreezableBatchNorm2d(branch_channels, eps=eps)
        self.branch_proj = _conv(branch_channels, hidden_size, 1)
        self.token_conv = _conv(hidden_size, hidden_size, 3, groups=hidden_size)
        self.token_norm = FreezableBatchNorm2d(hidden_size, eps=eps)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, branch: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, width = tokens.shape
        projected = self.branch_proj(self.branch_norm(self.branch_conv(branch)))
        height, grid_width = projected.shape[-2], projected.shape[-1]
        # the branch map fixes the grid (also for a non-square or interpolated one); shapes only, so it traces
        if not is_tracing() and height * grid_width != length - 1:
            raise ValueError(
                f"the parallel branch produced a {height}x{grid_width} map but there are {length - 1} grid tokens: "
                "check branch_strides and adapter_kernel_sizes"
            )
        projected = projected.flatten(2).transpose(1, 2)
        cls, grid = tokens[:, :1], tokens[:, 1:]
        grid = grid.transpose(1, 2).reshape(batch, width, height, grid_width)
        grid = self.token_norm(self.token_conv(grid)).flatten(2).transpose(1, 2)
        return self.layer_norm(torch.cat([cls, grid], dim=1) + torch.cat([cls, projected], dim=1))


# ---------------------------------------------------------------------------------------------------------------
# Transformer blocks
# ---------------------------------------------------------------------------------------------------------------


def _self_attention(
    config: MsClipVisionConfig | MsClipTextConfig, share_projections_with: MultiHeadAttention | None = None
) -> MultiHeadAttention:
    """A tower's self-attention: its own head count and dropout, the kernel read from the tower's config."""
    return MultiHeadAttention(
        config.hidden_size,
        config.num_attention_heads,
        dropout=config.attention_dropout,
        config=config,
        share_projections_with=share_projections_with,
    )


class MsClipBlockWeights(nn.Module):
    """The attention and MLP weights of one shared block, stored once under the model's `shared_layers`.

    Built from the text config (whose widths the configuration requires the image tower to match). The towers do
    not call `self_attn` itself: each tower layer runs a `MultiHeadAttention` of its own head count over the same
    projection modules (`MsClipEncoderLayer.attach`).
    """

    def __init__(self, config: MsClipTextConfig):
        super().__init__()
        self.self_attn = _self_attention(config)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)


class MsClipSharedLayers(nn.ModuleList):
    """The model's `shared_layers`: the attention and MLP of the shared blocks of both towers.

    A class of its own, listed in `_no_split_modules`, so that a device map places all shared blocks together with
    the tower layers tied to them in one step: transformers' `infer_auto_device_map` fails when the later items of a
    split list are tied to modules it has already placed with an earlier item.
    """


class MsClipEncoderLayer(GradientCheckpointingLayer):
    """Pre-LN block `x + attn(ln1(x))`, `x + mlp(ln2(x))` with modality-specific LayerNorms.

    A shared layer registers the `mlp` of one of the model's `shared_layers` as its own submodule, and a
    `self_attn` of its own (the tower's head count, dropout and `config._attn_implementation`) whose q/k/v/out
    projections are those of the shared block's `self_attn` (`MultiHeadAttention(share_projections_with=...)`):
    the same weight modules sit in both towers, which may split them into different numbers of heads, and the
    layer runs like any other, so hooks on the module tree (Accelerate offloading and device placement, PEFT) see
    ordinary modules. `save_pretrained` stores those weights once, under `shared_layers.*` (the tower names are
    declared as tied aliases), and an adapter on them reaches both towers.
    """

    def __init__(self, config: MsClipVisionConfig | MsClipTextConfig, *, shared: bool = False):
        super().__init__()
        self.config = config
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if shared:  # filled by `attach` once the model has built its shared blocks
            self.self_attn = None
            self.mlp = None
        else:
            self.self_attn = _self_attention(config)
            self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)

    def attach(self, block: MsClipBlockWeights) -> None:
        """Use the attention projections and the MLP of one of the model's shared blocks (draws no random numbers)."""
        self.self_attn = _self_attention(self.config, share_projections_with=block.self_attn)
        self.mlp = block.mlp

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, attention = self.self_attn(
            self.layer_norm1(hidden_states), attention_mask, output_attentions=output_attentions
        )
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, attention


class MsClipEncoder(nn.Module):
    """A stack of blocks whose last `num_shared_layers` take their attention and MLP from the model's shared blocks
    (given to `attach_shared` after construction)."""

    def __init__(self, config: MsClipVisionConfig | MsClipTextConfig, num_shared_layers: int):
        super().__init__()
        self.first_shared = config.num_hidden_layers - num_shared_layers
        self.layers = nn.ModuleList(
            MsClipEncoderLayer(config, shared=i >= self.first_shared) for i in range(config.num_hidden_layers)
        )

    def attach_shared(self, shared_layers: Sequence[MsClipBlockWeights]) -> None:
        for layer, block in zip(self.layers[self.first_shared :], shared_layers, strict=True):
            layer.attach(block)


def _finish_outputs(
    hidden_states: torch.Tensor, pooled: torch.Tensor, all_hidden: list | None, all_attentions: list | None
) -> BaseModelOutputWithPooling:
    return BaseModelOutputWithPooling(
        last_hidden_state=hidden_states,
        pooler_output=pooled,
        hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        attentions=tuple(all_attentions) if all_attentions is not None else None,
    )


class MsClipVisionEmbeddings(nn.Module):
    """The class token and the learned position table of the image tower.

    A module of its own (listed in `_no_split_modules`) so that device maps never separate these parameters from the
    module whose forward uses them: Accelerate loads offloaded weights per called module.
    """

    def __init__(self, config: MsClipVisionConfig):
        super().__init__()
        self.config = config
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.position_embedding = nn.Parameter(torch.zeros(config.grid_size**2 + 1, config.hidden_size))

    def position_table(self, height: int, width: int, interpolate: bool) -> torch.Tensor:
        """Positions for a `height x width` token grid; bicubic resizing of the grid part when `interpolate`.

        Follows transformers' CLIP (`interpolate_pos_encoding`): the class position is kept, the square table of the
        configured grid is resized with `align_corners=False`. Without `interpolate` the table is used as is.
        """
        table = self.position_embedding
        grid = self.config.grid_size
        if not interpolate or (not is_tracing() and (height, width) == (grid, grid)):
            return table
        cls, positions = table[:1], table[1:]
        positions = positions.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        positions = F.interpolate(positions.float(), size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([cls, positions.to(table.dtype).permute(0, 2, 3, 1).reshape(height * width, -1)])

    def forward(self, grid_tokens: torch.Tensor, height: int, width: int, interpolate: bool = False) -> torch.Tensor:
        """`[batch, height * width, W]` row-major grid tokens -> class token first, positions added."""
        cls = self.class_embedding.to(grid_tokens.dtype).expand(grid_tokens.shape[0], 1, -1)
        positions = self.position_table(height, width, interpolate).to(grid_tokens.dtype)
        return torch.cat([cls, grid_tokens], dim=1) + positions


class MsClipVisionTransformer(nn.Module):
    """Image tower: stem, class token and positions, `pre_layernorm`, blocks (adapters before some), pooling.

    `last_hidden_state` holds the states after the last block, before `post_layernorm`, as in transformers' CLIP;
    the pooled output is `post_layernorm` of the class token.
    """

    def __init__(self, config: MsClipVisionConfig, num_shared_layers: int):
        super().__init__()
        self.config = config
        width = config.hidden_size
        if config.stem_type == "conv":
            self.stem = MsClipConvStem(config)
        else:
            self.stem = nn.Conv2d(config.num_channels, width, config.patch_size, config.patch_size, bias=False)
        self.embeddings = MsClipVisionEmbeddings(config)
        self.pre_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.encoder = MsClipEncoder(config, num_shared_layers)
        self.post_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)

        channels = config.branch_channels
        self.branch = nn.ModuleList()
        self.adapters = nn.ModuleList()
        for j, (stride, kernel) in enumerate(zip(config.branch_strides, config.adapter_kernel_sizes, strict=True)):
            if j == 0:
                self.branch.append(MsClipBranchInput(config.num_channels, channels[0], stride, config.batch_norm_eps))
            else:
                self.branch.append(
                    MsClipBranchStage(channels[j - 1], channels[j], stride, config.branch_batch_norm_eps)
                )
            self.adapters.append(
                MsClipLateralAdapter(channels[j], width, kernel, config.batch_norm_eps, config.layer_norm_eps)
            )
        self.adapter_at = {layer: j for j, layer in enumerate(config.lateral_adapter_layers)}

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of the first convolution, which pixel values are cast to (the processor gives float32)."""
        first = self.stem.conv1 if isinstance(self.stem, MsClipConvStem) else self.stem
        return first.weight.dtype

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """Stem tokens (row-major grid) with the class token and positions, after `pre_layernorm`."""
        features = self.stem(pixel_values)
        height, width = features.shape[-2], features.shape[-1]
        tokens = self.embeddings(features.flatten(2).transpose(1, 2), height, width, interpolate_pos_encoding)
        return self.pre_layernorm(tokens)

    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPooling:
        _check_pixel_values(pixel_values, self.config, interpolate_pos_encoding)
        # the processor gives float32; a bf16/fp16 model computes in its own dtype (as transformers' CLIP does)
        pixel_values = pixel_values.to(dtype=self.input_dtype)
        hidden_states = self.embed(pixel_values, interpolate_pos_encoding)
        branch = pixel_values
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for index, layer in enumerate(self.encoder.layers):
            if index in self.adapter_at:
                j = self.adapter_at[index]
                branch = self.branch[j](branch)
                hidden_states = self.adapters[j](branch, hidden_states)
            hidden_states, attention = layer(hidden_states, None, output_attentions)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(attention)
        pooled = self.post_layernorm(hidden_states[:, 0])
        return _finish_outputs(hidden_states, pooled, all_hidden, all_attentions)


class MsClipTextEmbeddings(nn.Module):
    """Token embeddings plus learned positions (a module of its own for device maps, like the image embeddings)."""

    def __init__(self, config: MsClipTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_position_embeddings, config.hidden_size))

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`position_ids` (`[batch or 1, seq]`) pick rows of the position table; default `0..seq-1`."""
        if position_ids is None:
            positions = self.position_embedding[: input_ids.shape[1]]
        else:
            positions = self.position_embedding[position_ids]
        return self.token_embedding(input_ids) + positions.to(self.token_embedding.weight.dtype)


class MsClipTextTransformer(nn.Module):
    """Text tower: token + learned positions, causal blocks, `final_layer_norm` of the end token's state.

    Pooling position: the first `eos_token_id` of each row (robust to tokens added after the end token's id). A row
    without it (the original tokenizer drops the end token of an over-long text) pools where the released code
    does, at the largest id (msclip.md §7); so does every row when `eos_token_id` is None.

    `last_hidden_state` holds the states after the last block, before `final_layer_norm`, which is applied to the
    pooled state only (the released `ln_final` placement). transformers' CLIP instead applies its final LayerNorm to
    every token of `last_hidden_state`; here apply `final_layer_norm` yourself for per-token features.
    """

    def __init__(self, config: MsClipTextConfig, num_shared_layers: int):
        super().__init__()
        self.config = config
        self.embeddings = MsClipTextEmbeddings(config)
        self.encoder = MsClipEncoder(config, num_shared_layers)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def pool_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Index of the pooled token of each row (see the class docstring); traceable (no Python branching)."""
        largest = input_ids.argmax(dim=-1)
        if self.config.eos_token_id is None:
            return largest
        is_end = input_ids == self.config.eos_token_id
        return torch.where(is_end.any(dim=-1), is_end.int().argmax(dim=-1), largest)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPooling:
        _check_input_ids(input_ids, attention_mask, position_ids, self.config)
        length = input_ids.shape[1]
        hidden_states = self.embeddings(input_ids, position_ids)
        # msclip.md §2: causal, and the original uses no padding mask. A padding mask only changes the states after
        # the end token (which causal attention already hides from every earlier position).
        mask = additive_attention_mask(
            length, dtype=hidden_states.dtype, device=hidden_states.device, causal=True, padding_mask=attention_mask
        )
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for layer in self.encoder.layers:
            hidden_states, attention = layer(hidden_states, mask, output_attentions)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(attention)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        pooled = self.final_layer_norm(hidden_states[rows, self.pool_positions(input_ids)])
        return _finish_outputs(hidden_states, pooled, all_hidden, all_attentions)


def _check_pixel_values(pixel_values: torch.Tensor, config: MsClipVisionConfig, interpolate: bool) -> None:
    """Shape checks only (they trace); `interpolate` accepts any size that is a multiple of the patch size."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if not pixel_values.is_floating_point():
        raise TypeError(f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}")
    expected = (config.num_channels, config.image_size, config.image_size)
    if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
        hint = " (RGB): convert other modes with the processor" if pixel_values.dim() == 4 else ""
        raise ValueError(
            f"pixel_values has shape {tuple(pixel_values.shape)}; MS-CLIP expects [batch, {expected[0]}, "
            f"{expected[1]}, {expected[2]}]{hint}"
        )
    height, width = pixel_values.shape[2], pixel_values.shape[3]
    if interpolate:
        patch = config.patch_size
        if height < patch or width < patch or height % patch != 0 or width % patch != 0:
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)}; with interpolate_pos_encoding=True the height "
                f"and width must be positive multiples of patch_size ({patch})"
            )
    elif height != config.image_size or width != config.image_size:
        raise ValueError(
            f"pixel_values has shape {tuple(pixel_values.shape)}; MS-CLIP expects [batch, {expected[0]}, "
            f"{expected[1]}, {expected[2]}] (pass interpolate_pos_encoding=True for other multiples of the patch "
            f"size {config.patch_size})"
        )
    if pixel_values.shape[0] == 0:
        raise ValueError("pixel_values is an empty batch")


def _check_input_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    config: MsClipTextConfig,
) -> None:
    """Shape checks always; the value checks (ids and positions in range) only when not traced (`is_tracing`)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError("input_ids must be an integer torch.Tensor of shape [batch, sequence]")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape [batch, sequence] with both > 0, got {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} positions but the context is {config.max_position_embeddings}: "
            "tokenize with the processor, which truncates and keeps the end token"
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}"
        )
    if position_ids is not None:
        if not isinstance(position_ids, torch.Tensor) or position_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError("position_ids must be an integer torch.Tensor of shape [batch or 1, sequence]")
        if (
            position_ids.dim() != 2
            or position_ids.shape[1] != input_ids.shape[1]
            or position_ids.shape[0]
            not in (
                1,
                input_ids.shape[0],
            )
        ):
            raise ValueError(
                f"position_ids has shape {tuple(position_ids.shape)}; expected [{input_ids.shape[0]} or 1, "
                f"{input_ids.shape[1]}] to match input_ids"
            )
    if is_tracing():
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"input_ids holds ids in [{low}, {high}] but the vocabulary has {config.vocab_size} tokens: was the text "
            "tokenized with this model's tokenizer?"
        )
    if position_ids is not None:
        low, high = int(position_ids.min()), int(position_ids.max())
        if low < 0 or high >= config.max_position_embeddings:
            raise ValueError(
                f"position_ids holds positions in [{low}, {high}] but the position table has "
                f"{config.max_position_embeddings} rows"
            )


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class MsClipPreTrainedModel(PreTrainedModel):
    """Weight init of the released code (msclip.md §2) and the capabilities shared by every MS-CLIP class."""

    config: MsClipConfig
    base_model_prefix = "ms_clip"
    input_modalities = ("image", "text")
    # modules with parameters of their own stay whole (Accelerate loads a module's direct parameters in its hook)
    _no_split_modules = [
        "MsClipEncoderLayer",
        "MsClipSharedLayers",
        "MsClipConvStem",
        "MsClipVisionEmbeddings",
        "MsClipTextEmbeddings",
    ]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def _build_towers(self, *tower_classes: type[nn.Module]) -> None:
        """Build the towers, then the shared blocks, and register `shared_layers` first.

        Construction order fixes the random draws of a seed (towers first, as in every vlzoo release); registering
        `shared_layers` before the towers makes `shared_layers.*` the first name of each shared weight (PEFT and
        device maps see that name). The towers' shared layers then take their modules from `shared_layers`.
        """
        config = self.config
        towers = {}
        for tower_class in tower_classes:
            name = "vision_model" if tower_class is MsClipVisionTransformer else "text_model"
            sub_config = config.vision_config if name == "vision_model" else config.text_config
            towers[name] = tower_class(sub_config, config.num_shared_layers)
        self.shared_layers = MsClipSharedLayers(
            MsClipBlockWeights(config.text_config) for _ in range(config.num_shared_layers)
        )
        for name, tower in towers.items():
            tower.encoder.attach_shared(self.shared_layers)
            setattr(self, name, tower)

    @torch.no_grad()
    @init.guard_torch_init_functions()
    def initialize_weights(self) -> None:
        """transformers' children-first initialisation, in the order towers, shared blocks, the rest, with each
        shared block initialised once under `shared_layers`: a seed gives the same weights as the construction
        order, whatever the registration order. Every rule of `_init_weights` goes through
        `transformers.initialization`, which leaves loaded tensors alone, so parents without direct parameters (the
        towers, whose rules set their embeddings) are always visited."""
        shared = {id(module) for module in self.shared_layers.modules()}
        custom = False

        def visit(module: nn.Module, skip_shared: bool) -> None:
            for child in module.children():
                if not (skip_shared and id(child) in shared):
                    visit(child, skip_shared)
            self._initialize_weights(module, custom)

        towers = [name for name in ("vision_model", "text_model") if hasattr(self, name)]
        rest = [name for name, _ in self.named_children() if name not in (*towers, "shared_layers")]
        for name in towers:
            visit(getattr(self, name), skip_shared=True)
        visit(self.shared_layers, skip_shared=False)
        for name in rest:
            visit(getattr(self, name), skip_shared=False)
        self._initialize_weights(self, custom)

    def _declare_shared_aliases(self) -> None:
        """Declare each tower's name of a shared weight as a tied alias of its `shared_layers.*` name.

        `save_pretrained` then stores every shared tensor once (under `shared_layers.*`), loading fills the aliases,
        and device maps keep each group on one device. Call at the end of `__init__`, before `post_init`.
        """
        aliases: dict[str, str] = {}
        for tower in ("vision_model", "text_model"):
            if not hasattr(self, tower):
                continue
            layers = getattr(self, tower).encoder.layers
            first_shared = len(layers) - len(self.shared_layers)
            for k, block in enumerate(self.shared_layers):
                for name, _ in block.named_parameters():
                    aliases[f"{tower}.encoder.layers.{first_shared + k}.{name}"] = f"shared_layers.{k}.{name}"
        self._tied_weights_keys = aliases

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """transformers' ties plus the shared-block aliases, which are part of the architecture and therefore do not
        depend on `tie_word_embeddings` (transformers only applies `_tied_weights_keys` when that flag is set)."""
        tied = super().get_expanded_tied_weights_keys(all_submodels=all_submodels)
        if all_submodels:
            return tied
        return {**(self._tied_weights_keys or {}), **tied}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # `apply` visits children before parents, so parent-level rules below override the generic Linear rule
        std = self.config.initializer_range
        # q/k/v/out projections take the Linear rule (truncated normal, zero bias): the figures vlzoo reports for
        # training from scratch (the demo) come from this initialisation.
        if isinstance(module, nn.Conv2d):
            # He init as in ResNets: the released 0.02 std shrinks the image signal to ~1e-6 through the stem when
            # BatchNorm runs on its initial statistics (an untrained model in eval mode would ignore its input)
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=1.0)  # PyTorch's default, kept by the released code
        elif isinstance(module, MsClipVisionTransformer):
            # at the tower, after its blocks and branch, as in the released code's order of draws
            scale = module.config.hidden_size**-0.5
            init.normal_(module.embeddings.class_embedding, std=scale)
            init.normal_(module.embeddings.position_embedding, std=scale)
        elif isinstance(module, MsClipTextTransformer):
            init.trunc_normal_(module.embeddings.position_embedding, std=std)
        if isinstance(module, (MsClipModel, MsClipVisionModelWithProjection)):
            init.normal_(module.visual_projection.weight, std=self.config.vision_config.hidden_size**-0.5)
        if isinstance(module, (MsClipModel, MsClipTextModelWithProjection)):
            init.trunc_normal_(module.text_projection.weight, std=std)
        if isinstance(module, MsClipModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding; for the image-only class the stem, as transformers' CLIP vision models return their
        patch embedding (PEFT asks for it whenever `_tied_weights_keys` is set)."""
        if hasattr(self, "text_model"):
            return self.text_model.embeddings.token_embedding
        return self.vision_model.stem

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not hasattr(self, "text_model"):
            raise AttributeError(f"{type(self).__name__} has no text tower")
        self.text_model.embeddings.token_embedding = value

    def _project_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        flags: dict[str, bool],
    ) -> BaseModelOutputWithPooling:
        outputs = self.text_model(input_ids, attention_mask, position_ids, **flags)
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    def _project_image(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool, flags: dict[str, bool]
    ) -> BaseModelOutputWithPooling:
        outputs = self.vision_model(pixel_values, interpolate_pos_encoding, **flags)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    def _flags(self, output_hidden_states: bool | None, output_attentions: bool | None) -> dict[str, bool]:
        return {
            "output_hidden_states": bool(
                output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
            ),
            "output_attentions": bool(
                output_attentions if output_attentions is not None else self.config.output_attentions
            ),
        }


def _reject_inputs_embeds(inputs_embeds: torch.Tensor | None) -> None:
    # accepted as None because PEFT's feature-extraction wrapper passes `inputs_embeds=None` explicitly
    if inputs_embeds is not None:
        raise ValueError(
            "MS-CLIP does not take inputs_embeds: the text tower pools at the end token, found in input_ids"
        )


class MsClipModel(MsClipPreTrainedModel):
    """MS-CLIP dual encoder (CLIP conventions): `model(input_ids, pixel_values, attention_mask=None)`.

    Called with `pixel_values` only (as transformers' `image-feature-extraction` pipeline does), it returns the
    image tower's `BaseModelOutputWithPooling` with the projected image embedding as `pooler_output`.

    The towers' `last_hidden_state` is taken before their final LayerNorm: for the image tower as in
    transformers' CLIP, for the text tower unlike it (CLIP normalises every text token there; here only the pooled
    end token is normalised, by `text_model.final_layer_norm`). Unknown keyword arguments raise a TypeError.

    Example:
    ```python
    >>> import torch
    >>> from vlzoo import MsClipConfig, MsClipModel
    >>> config = MsClipConfig.from_preset("b32-yfcc", vision_config={"hidden_size": 64, "intermediate_size": 128,
    ...     "num_attention_heads": 2, "image_size": 64}, text_config={"hidden_size": 64, "intermediate_size": 128,
    ...     "num_attention_heads": 2, "vocab_size": 99, "eos_token_id": 98}, projection_dim=16)
    >>> model = MsClipModel(config).eval()
    >>> out = model(input_ids=torch.tensor([[97, 5, 98]]), pixel_values=torch.randn(2, 3, 64, 64))
    >>> out.logits_per_image.shape
    torch.Size([2, 1])
    ```
    """

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self._build_towers(MsClipVisionTransformer, MsClipTextTransformer)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self._declare_shared_aliases()
        self.post_init()

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """Text tower output whose `pooler_output` is the projected (unnormalised) text embedding.

        `last_hidden_state` is before `final_layer_norm` (transformers' CLIP normalises every token there).
        `position_ids` (`[batch or 1, seq]`) index the learned position table; default `0..seq-1`.
        """
        flags = self._flags(output_hidden_states, output_attentions)
        return self._project_text(input_ids, attention_mask, position_ids, flags)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """Image tower output whose `pooler_output` is the projected (unnormalised) image embedding.

        `interpolate_pos_encoding=True` accepts images whose sides are multiples of the patch size and resizes the
        position table bicubically, as transformers' CLIP does. `last_hidden_state` is before `post_layernorm`.
        """
        flags = self._flags(output_hidden_states, output_attentions)
        return self._project_image(pixel_values, interpolate_pos_encoding, flags)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> MsClipOutput | BaseModelOutputWithPooling:
        """Score every image against every text.

        Args:
            input_ids (`[n_texts, seq]`): CLIP BPE ids from [`MsClipProcessor`]; each text is pooled at its first
                `text_config.eos_token_id` (the released code's largest id when a row has none).
            pixel_values (`[n_images, 3, size, size]`): images from [`MsClipImageProcessor`] (cast to the model's
                dtype).
            attention_mask (`[n_texts, seq]`, optional): 1 = token, 0 = padding. Only states after the end token
                depend on it; embeddings do not.
            position_ids (`[n_texts or 1, seq]`, optional): rows of the text position table; default `0..seq-1`.
            return_loss (`bool`): add the symmetric contrastive loss (needs as many texts as images; negatives are
                gathered from every process when training on several).
            interpolate_pos_encoding (`bool`): accept image sides that are any multiple of the patch size, resizing
                the position table bicubically (transformers' CLIP behaviour).
            inputs_embeds: not supported (a ValueError unless None).
        """
        _reject_inputs_embeds(inputs_embeds)
        flags = self._flags(output_hidden_states, output_attentions)
        if pixel_values is None and input_ids is None:
            raise ValueError("MsClipModel needs input_ids, pixel_values or both; got neither")
        if input_ids is None:
            if return_loss:
                raise ValueError("return_loss=True needs both input_ids and pixel_values")
            text_only = (("attention_mask", attention_mask), ("position_ids", position_ids))
            unused = [name for name, value in text_only if value is not None]
            if unused:
                raise ValueError(f"{' and '.join(unused)} given without input_ids")
            return self.get_image_features(pixel_values, interpolate_pos_encoding, **flags)
        if pixel_values is None:
            raise ValueError(
                "pixel_values is missing: for text features alone use get_text_features(input_ids, attention_mask)"
            )
        if return_loss and input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"return_loss=True pairs image i with text i, but got {pixel_values.shape[0]} images and "
                f"{input_ids.shape[0]} texts"
            )
        vision_outputs = self.get_image_features(pixel_values, interpolate_pos_encoding, **flags)
        text_outputs = self.get_text_features(input_ids, attention_mask, position_ids, **flags)
        # msclip.md §2: plain norms (no eps) and an unclamped logit_scale
        image_embeds = vision_outputs.pooler_output / vision_outputs.pooler_output.norm(dim=-1, keepdim=True)
        text_embeds = text_outputs.pooler_output / text_outputs.pooler_output.norm(dim=-1, keepdim=True)
        scale = self.logit_scale.exp()
        logits_per_image = scale * image_embeds @ text_embeds.t()
        loss = contrastive_loss(image_embeds, text_embeds, scale) if return_loss else None
        return MsClipOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


class MsClipVisionModelWithProjection(MsClipPreTrainedModel):
    """Image tower + projection alone (loads the weights of an [`MsClipModel`] folder; text keys are ignored).

    `forward(pixel_values, interpolate_pos_encoding=False)` returns `BaseModelOutputWithPooling` with the projected
    embedding as `pooler_output` and the states before `post_layernorm` as `last_hidden_state`.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self._build_towers(MsClipVisionTransformer)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self._declare_shared_aliases()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        flags = self._flags(output_hidden_states, output_attentions)
        return self._project_image(pixel_values, interpolate_pos_encoding, flags)


class MsClipTextModelWithProjection(MsClipPreTrainedModel):
    """Text tower + projection alone (loads the weights of an [`MsClipModel`] folder; image keys are ignored).

    `forward(input_ids, attention_mask, position_ids)` returns `BaseModelOutputWithPooling` with the projected
    embedding as `pooler_output` and the states before `final_layer_norm` as `last_hidden_state` (transformers' CLIP
    normalises every token there).
    """

    input_modalities = ("text",)

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self._build_towers(MsClipTextTransformer)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self._declare_shared_aliases()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        _reject_inputs_embeds(inputs_embeds)
        flags = self._flags(output_hidden_states, output_attentions)
        return self._project_text(input_ids, attention_mask, position_ids, flags)


__all__ = [
    "MsClipModel",
    "MsClipOutput",
    "MsClipPreTrainedModel",
    "MsClipTextModelWithProjection",
    "MsClipVisionModelWithProjection",
]
