"""FLAVA: image, text and multimodal encoders with CLIP-style outputs, pretraining heads and the DALL-E codebook."""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from vlzoo.layers.fast_path import FusedQKVAttention, fast_linear, unwrapped
from vlzoo.layers.heads import MlmHead
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.mlp import FeedForward
from vlzoo.layers.outputs import ImageTextMatchingOutput
from vlzoo.layers.patch_embedding import PatchEmbedding
from vlzoo.layers.poolers import FirstTokenPooler
from vlzoo.layers.positions import resize_position_table_2d
from vlzoo.layers.tracing import is_tracing
from vlzoo.losses.distributed import all_gather_with_grad, world_info

from .configuration_flava import (
    FlavaConfig,
    FlavaImageCodebookConfig,
    FlavaImageConfig,
    FlavaMultimodalConfig,
    FlavaTextConfig,
)

# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


def _nested_tuple(output: ModelOutput) -> tuple[Any, ...]:
    return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in output.values())


@dataclass
class FlavaTowerOutput(BaseModelOutputWithPooling):
    """One encoder's output (image, text or multimodal).

    Args:
        last_hidden_state (`[batch, seq, hidden]`): after the tower's final LayerNorm.
        pooler_output (`[batch, hidden]`): `tanh(dense(last_hidden_state[:, 0]))`; from `get_image_features` /
            `get_text_features` the projected (unnormalised) token 0 `[batch, projection_dim]` instead.
        hidden_states, attentions: per layer, with `output_hidden_states` / `output_attentions` (eager attention).
        pre_layernorm_last_hidden_state (`[batch, seq, hidden]`): the last layer's output before the final LayerNorm,
            what the multimodal encoder reads.
    """

    pre_layernorm_last_hidden_state: torch.FloatTensor | None = None


@dataclass
class FlavaModelOutput(ModelOutput):
    """Output of [`FlavaModel`]: transformers' FLAVA fields plus CLIP's.

    Args:
        loss (`[]`): symmetric contrastive loss, with `return_loss=True`.
        logits_per_image (`[n_images, n_texts]`): `exp(clamp(logit_scale))` times the cosine similarities.
        logits_per_text (`[n_texts, n_images]`): the transpose.
        image_embeds (`[n_images, projection_dim]`), text_embeds (`[n_texts, projection_dim]`): L2-normalised
            projections of token 0 of each tower (after its final LayerNorm).
        image_output, text_output (`FlavaTowerOutput`): the unimodal encoders.
        multimodal_output (`FlavaTowerOutput`): the fusion encoder over `[mm CLS, image CLS, patches, text tokens]`,
            run when the model gets as many images as texts (pairs) unless `skip_multimodal_encoder=True`.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_output: FlavaTowerOutput | None = None
    text_output: FlavaTowerOutput | None = None
    multimodal_output: FlavaTowerOutput | None = None

    @property
    def vision_model_output(self) -> FlavaTowerOutput | None:
        """CLIP's name of `image_output`."""
        return self.image_output

    @property
    def text_model_output(self) -> FlavaTowerOutput | None:
        """CLIP's name of `text_output`."""
        return self.text_output

    def to_tuple(self) -> tuple[Any, ...]:
        return _nested_tuple(self)


@dataclass
class FlavaLosses(ModelOutput):
    """The weighted pretraining losses that were computed (each `[]`); see [`FlavaForPreTraining`]."""

    mim: torch.FloatTensor | None = None
    mlm: torch.FloatTensor | None = None
    itm: torch.FloatTensor | None = None
    global_contrastive: torch.FloatTensor | None = None
    mmm_image: torch.FloatTensor | None = None
    mmm_text: torch.FloatTensor | None = None


@dataclass
class FlavaForPreTrainingOutput(ModelOutput):
    """Output of [`FlavaForPreTraining`].

    Args:
        loss (`[]`): the sum of the computed weighted losses (`loss_info`).
        logits_per_image, logits_per_text (`[n_pos, batch]`): contrastive logits of the positive pairs' rows
            (`itm_labels != 0`; every row when no pair is positive or no ITM labels are given).
        itm_logits (`[batch, 2]`): image-text matching on the masked multimodal pass (index 1 = match).
        mim_logits, mlm_logits, mmm_image_logits, mmm_text_logits (`[n_labelled, vocab]`): masked-prediction logits
            of the labelled positions only, row-major over `[batch, length]` (MMM: positive pairs only).
        image_embeds, text_embeds (`[batch, projection_dim]`): L2-normalised contrastive embeddings.
        mim_labels (`[batch, num_patches]`): the codebook ids of the masked patches (`ce_ignore_index` elsewhere),
            when computed from `codebook_pixel_values`.
        loss_info (`FlavaLosses`): each computed loss.
        image_output, text_output, image_masked_output, text_masked_output, multimodal_output,
        multimodal_masked_output (`FlavaTowerOutput`): the encoder passes that ran.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    mim_logits: torch.FloatTensor | None = None
    mlm_logits: torch.FloatTensor | None = None
    mmm_image_logits: torch.FloatTensor | None = None
    mmm_text_logits: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    mim_labels: torch.LongTensor | None = None
    loss_info: FlavaLosses | None = None
    image_output: FlavaTowerOutput | None = None
    text_output: FlavaTowerOutput | None = None
    image_masked_output: FlavaTowerOutput | None = None
    text_masked_output: FlavaTowerOutput | None = None
    multimodal_output: FlavaTowerOutput | None = None
    multimodal_masked_output: FlavaTowerOutput | None = None

    @property
    def vision_model_output(self) -> FlavaTowerOutput | None:
        """CLIP's name of `image_output`."""
        return self.image_output

    @property
    def text_model_output(self) -> FlavaTowerOutput | None:
        """CLIP's name of `text_output`."""
        return self.text_output

    def to_tuple(self) -> tuple[Any, ...]:
        return _nested_tuple(self)


@dataclass
class FlavaImageCodebookOutput(ModelOutput):
    """Output of [`FlavaImageCodebook`].

    Args:
        logits (`[batch, vocab, height / 8, width / 8]`): the dVAE encoder's logits.
        token_ids (`[batch, height / 8 * width / 8]`): argmax ids, row-major (the MIM labels of the patches).
        hidden_states: the input and each group's output, with `output_hidden_states=True`.
    """

    logits: torch.FloatTensor | None = None
    token_ids: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Encoder blocks (flava.md §2): every tower runs the same pre-LN layer
# ---------------------------------------------------------------------------------------------------------------

_TowerConfig = FlavaImageConfig | FlavaTextConfig | FlavaMultimodalConfig


class FlavaLayer(GradientCheckpointingLayer):
    """`h = x + attn(LN1(x))`, `out = h + fc2(gelu(fc1(LN2(h))))` (torchmultimodal `TransformerEncoderLayer`).

    Names as `vlzoo.layers.TransformerLayer`: `layer_norm1`, `self_attn` (`q_proj`, `k_proj`, `v_proj`,
    `out_proj`), `layer_norm2`, `mlp` (`fc1`, `fc2`). Attention is `vlzoo.layers.fast_path.FusedQKVAttention`
    (a `MultiHeadAttention` whose kernel follows `config._attn_implementation`, sdpa by default, eager for checks).
    Without dropout to apply, the residual adds and the GELU go through `vlzoo.layers.fast_path.fast_linear`, which
    fuses them into the oneDNN matmuls in CPU inference (same results; the plain modules everywhere else).
    """

    def __init__(self, config: _TowerConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = FusedQKVAttention(
            config.hidden_size,
            config.num_attention_heads,
            qkv_bias=config.qkv_bias,
            dropout=config.attention_probs_dropout_prob,
            config=config,
        )
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.dropout = config.hidden_dropout_prob
        self.activation = config.hidden_act

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.training and self.dropout > 0:
            update, weights = self.self_attn(
                self.layer_norm1(hidden_states), attention_mask, output_attentions=output_attentions
            )
            hidden_states = hidden_states + F.dropout(update, p=self.dropout, training=True)
            update = self.mlp(self.layer_norm2(hidden_states))
            return hidden_states + F.dropout(update, p=self.dropout, training=True), weights
        hidden_states, weights = self.self_attn(
            self.layer_norm1(hidden_states),
            attention_mask,
            output_attentions=output_attentions,
            residual=hidden_states,
        )
        mlp = self.mlp
        if not unwrapped(mlp, FeedForward):  # hooks or a replaced module: call it as it is
            return hidden_states + mlp(self.layer_norm2(hidden_states)), weights
        update = fast_linear(
            mlp.fc1, self.layer_norm2(hidden_states), activation=self.activation, activation_fn=mlp.activation_fn
        )
        return fast_linear(mlp.fc2, update, residual=hidden_states), weights


class FlavaEncoder(nn.Module):
    def __init__(self, config: _TowerConfig):
        super().__init__()
        self.layers = nn.ModuleList(FlavaLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, attention_mask, output_attentions)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(weights)
        return (
            hidden_states,
            tuple(all_hidden) if all_hidden is not None else None,
            tuple(all_attentions) if all_attentions is not None else None,
        )


def _finish(
    tower: "nn.Module", hidden_states: torch.Tensor, all_hidden: tuple | None, all_attentions: tuple | None
) -> FlavaTowerOutput:
    last = tower.layernorm(hidden_states)
    return FlavaTowerOutput(
        last_hidden_state=last,
        pooler_output=tower.pooler(last),
        hidden_states=all_hidden,
        attentions=all_attentions,
        pre_layernorm_last_hidden_state=hidden_states,
    )


class FlavaImageEmbeddings(nn.Module):
    """Patch embedding, masked patches replaced by `mask_token`, the class token, learned positions."""

    def __init__(self, config: FlavaImageConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden)) if config.mask_token else None
        self.patch_embeddings = PatchEmbedding(
            config.num_channels, hidden, config.patch_size, image_size=config.image_size
        )
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, hidden))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        # in the parameters' dtype: under autocast the patch convolution returns bf16, but the residual stream stays
        # fp32 as in transformers and the original (their class-token concatenation promotes it)
        embeddings = self.patch_embeddings(pixel_values, interpolate_pos_encoding).to(self.cls_token.dtype)
        batch, num_patches, _ = embeddings.shape
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "bool_masked_pos was given but this image encoder has no mask_token (mask_token=False)"
                )
            masked = bool_masked_pos.reshape(bool_masked_pos.shape[0], -1)
            if masked.shape != (batch, num_patches):
                raise ValueError(
                    f"bool_masked_pos must have {num_patches} entries per image ([batch, {num_patches}] or the patch "
                    f"grid), got shape {tuple(bool_masked_pos.shape)}"
                )
            weight = masked.unsqueeze(-1).to(embeddings.dtype)
            embeddings = embeddings * (1.0 - weight) + self.mask_token.to(embeddings.dtype) * weight
        embeddings = torch.cat([self.cls_token.expand(batch, -1, -1).to(embeddings.dtype), embeddings], dim=1)
        positions = self.position_embeddings
        grid = self.patch_embeddings.grid_size(pixel_values.shape[-2], pixel_values.shape[-1])
        if interpolate_pos_encoding and grid[0] * grid[1] != positions.shape[1] - 1:
            positions = resize_position_table_2d(positions, grid, num_prefix_rows=1)
        return self.dropout(embeddings + positions.to(embeddings.dtype))


class FlavaImageTransformer(nn.Module):
    """Image encoder: embeddings, pre-LN layers, final `layernorm`, tanh `pooler` on token 0."""

    def __init__(self, config: FlavaImageConfig):
        super().__init__()
        self.config = config
        self.embeddings = FlavaImageEmbeddings(config)
        self.encoder = FlavaEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = FirstTokenPooler(config.hidden_size)

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> FlavaTowerOutput:
        _check_pixel_values(pixel_values, self.config.num_channels)
        hidden_states = self.embeddings(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        return _finish(self, *self.encoder(hidden_states, None, output_hidden_states, output_attentions))


class FlavaTextEmbeddings(nn.Module):
    """BERT embeddings: word + position + token type, LayerNorm, dropout."""

    def __init__(self, config: FlavaTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # called as a module (not `.weight[0]`), so that offloading hooks load the table
        embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class FlavaTextTransformer(nn.Module):
    """Text encoder: BERT embeddings, pre-LN layers masked by the padding mask, final `layernorm`, tanh `pooler`."""

    def __init__(self, config: FlavaTextConfig):
        super().__init__()
        self.config = config
        self.embeddings = FlavaTextEmbeddings(config)
        self.encoder = FlavaEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = FirstTokenPooler(config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> FlavaTowerOutput:
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = _padding_mask(attention_mask, hidden_states.dtype)
        return _finish(self, *self.encoder(hidden_states, mask, output_hidden_states, output_attentions))


class FlavaMultimodalTransformer(nn.Module):
    """Fusion encoder over `[cls_token, inputs]` (the projected unimodal states), final `layernorm`, `pooler`."""

    def __init__(self, config: FlavaMultimodalConfig):
        super().__init__()
        self.config = config
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.use_cls_token else None
        self.encoder = FlavaEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = FirstTokenPooler(config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> FlavaTowerOutput:
        """`attention_mask` `[batch, seq]` (1 = keep) covers `hidden_states`; the class token is always kept."""
        if self.cls_token is not None:
            batch = hidden_states.shape[0]
            # the parameters' dtype (fp32 under autocast, as transformers' concatenation promotes to)
            hidden_states = torch.cat(
                [self.cls_token.expand(batch, -1, -1), hidden_states.to(self.cls_token.dtype)], 1
            )
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask.new_ones(batch, 1), attention_mask], dim=1)
        mask = _padding_mask(attention_mask, hidden_states.dtype)
        return _finish(self, *self.encoder(hidden_states, mask, output_hidden_states, output_attentions))


def _padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The additive `[batch, 1, 1, seq]` mask, or None when nothing is padded (sdpa's unmasked fast path).

    Dropping an all-ones mask reads tensor values, so it happens in eager mode only; traced graphs keep the mask.
    """
    if attention_mask is None:
        return None
    if not is_tracing() and bool(attention_mask.all()):
        return None
    return key_padding_attention_mask(attention_mask, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# DALL-E image codebook (flava.md §3): transformers' FlavaImageCodebook layout
# ---------------------------------------------------------------------------------------------------------------


class FlavaImageCodebookResPath(nn.Module):
    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        hidden = out_size // 4
        self.path = nn.Sequential(
            OrderedDict(
                [
                    ("relu_1", nn.ReLU()),
                    ("conv_1", nn.Conv2d(in_size, hidden, kernel_size=3, padding=1)),
                    ("relu_2", nn.ReLU()),
                    ("conv_2", nn.Conv2d(hidden, hidden, kernel_size=3, padding=1)),
                    ("relu_3", nn.ReLU()),
                    ("conv_3", nn.Conv2d(hidden, hidden, kernel_size=3, padding=1)),
                    ("relu_4", nn.ReLU()),
                    ("conv_4", nn.Conv2d(hidden, out_size, kernel_size=1)),
                ]
            )
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.path(hidden_states)


class FlavaImageCodebookBlock(GradientCheckpointingLayer):
    """`id_path(x) + res_path(x) / num_layers**2`; `id_path` is a 1x1 conv only where the width changes."""

    def __init__(self, in_size: int, out_size: int, num_layers: int):
        super().__init__()
        self.post_gain = 1 / (num_layers**2)
        self.id_path = nn.Conv2d(in_size, out_size, kernel_size=1) if in_size != out_size else nn.Identity()
        self.res_path = FlavaImageCodebookResPath(in_size, out_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.id_path(hidden_states) + self.post_gain * self.res_path(hidden_states)


class FlavaImageCodebookLayerGroup(nn.Module):
    def __init__(self, num_blocks: int, num_layers: int, in_size: int, out_size: int, use_pool: bool = True):
        super().__init__()
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_blocks):
            blocks[f"block_{i + 1}"] = FlavaImageCodebookBlock(in_size if i == 0 else out_size, out_size, num_layers)
        if use_pool:
            blocks["pool"] = nn.MaxPool2d(kernel_size=2)
        self.group = nn.Sequential(blocks)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.group(hidden_states)


def _codebook_blocks(config: FlavaImageCodebookConfig) -> nn.Sequential:
    """`input` 7x7 conv, `group_1..n` (widths 1x, 2x, 4x, 8x `hidden_size`, max-pool after all but the last),
    `output` = ReLU + 1x1 conv to the vocabulary."""
    num_layers = config.num_groups * config.num_blocks_per_group
    blocks: OrderedDict[str, nn.Module] = OrderedDict(
        input=nn.Conv2d(config.input_channels, config.hidden_size, kernel_size=7, padding=3)
    )
    in_size = config.hidden_size
    for g in range(config.num_groups):
        out_size = config.hidden_size * 2**g
        blocks[f"group_{g + 1}"] = FlavaImageCodebookLayerGroup(
            config.num_blocks_per_group, num_layers, in_size, out_size, use_pool=g < config.num_groups - 1
        )
        in_size = out_size
    blocks["output"] = nn.Sequential(
        OrderedDict(relu=nn.ReLU(), conv=nn.Conv2d(in_size, config.vocab_size, kernel_size=1))
    )
    return nn.Sequential(blocks)


def _run_codebook(
    blocks: nn.Sequential, config: FlavaImageCodebookConfig, pixel_values: torch.Tensor, output_hidden_states: bool
) -> FlavaImageCodebookOutput:
    _check_pixel_values(pixel_values, config.input_channels, name="codebook_pixel_values")
    step = config.downsampling
    if pixel_values.shape[-2] % step or pixel_values.shape[-1] % step:
        raise ValueError(
            f"codebook_pixel_values must have sides divisible by {step} (the codebook's downsampling), got "
            f"{tuple(pixel_values.shape)}"
        )
    hidden_states = pixel_values.to(blocks.input.weight.dtype)
    all_hidden = [hidden_states] if output_hidden_states else None
    for block in blocks:
        hidden_states = block(hidden_states)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
    token_ids = hidden_states.argmax(dim=1).flatten(1)
    return FlavaImageCodebookOutput(
        logits=hidden_states, token_ids=token_ids, hidden_states=tuple(all_hidden) if all_hidden else None
    )


class FlavaCodebookEncoder(nn.Module):
    """The codebook inside [`FlavaForPreTraining`] (`image_codebook.blocks.*`, as in transformers' layout)."""

    def __init__(self, config: FlavaImageCodebookConfig):
        super().__init__()
        self.config = config
        self.blocks = _codebook_blocks(config)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False) -> FlavaImageCodebookOutput:
        return _run_codebook(self.blocks, self.config, pixel_values, output_hidden_states)


# ---------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------


class FlavaItmHead(nn.Module):
    """`pooler` (dense + tanh on token 0) then `seq_relationship` = Linear(hidden, 2); index 1 = "matches"."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.pooler = FirstTokenPooler(hidden_size)
        self.seq_relationship = nn.Linear(hidden_size, 2)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pooler(hidden_states)
        return self.seq_relationship(pooled), pooled


# ---------------------------------------------------------------------------------------------------------------
# Input checks (shape checks always; value checks only when not traced)
# ---------------------------------------------------------------------------------------------------------------


def _check_pixel_values(pixel_values: torch.Tensor, channels: int, name: str = "pixel_values") -> None:
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor [batch, {channels}, height, width]")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != channels or pixel_values.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape [batch > 0, {channels}, height, width], got {tuple(pixel_values.shape)}"
        )


def _check_text(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    config: FlavaTextConfig,
    name: str = "input_ids",
) -> torch.Tensor:
    """Validate the text inputs and return the padding mask (1 = keep) the text encoder always uses."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer torch.Tensor of shape [batch, sequence]")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape [batch, sequence] with both > 0, got {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"{name} has {input_ids.shape[1]} positions but the text encoder has {config.max_position_embeddings}: "
            "tokenize with truncation (the processor does)"
        )
    for other, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if value is not None and tuple(value.shape) != tuple(input_ids.shape):
            raise ValueError(f"{other} has shape {tuple(value.shape)} but {name} has {tuple(input_ids.shape)}")
    if position_ids is not None and (position_ids.dim() != 2 or position_ids.shape[1] != input_ids.shape[1]):
        raise ValueError(
            f"position_ids must have shape [batch or 1, {input_ids.shape[1]}], got {tuple(position_ids.shape)}"
        )
    if attention_mask is None:
        if config.pad_token_id is None:
            raise ValueError(
                f"{name} came without an attention_mask and text_config.pad_token_id is None, so the padding cannot "
                "be found: pass attention_mask (1 = token, 0 = padding)"
            )
        # the released text encoder derives its mask from the pad id (flava.md §2)
        attention_mask = (input_ids != config.pad_token_id).long()
    if not is_tracing():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"{name} holds ids in [{low}, {high}] but the vocabulary has {config.vocab_size} tokens: was the text "
                "tokenized with this model's tokenizer?"
            )
        if token_type_ids is not None and (
            int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= config.type_vocab_size
        ):
            raise ValueError(f"token_type_ids must be in [0, {config.type_vocab_size})")
        if position_ids is not None and (
            int(position_ids.min()) < 0 or int(position_ids.max()) >= config.max_position_embeddings
        ):
            raise ValueError(f"position_ids must be in [0, {config.max_position_embeddings})")
        if not bool(attention_mask[:, 0].all()):
            raise ValueError("attention_mask must keep the first token ([CLS]) of every text: FLAVA pools it")
    return attention_mask


def _reject_inputs_embeds(inputs_embeds: torch.Tensor | None) -> None:
    # accepted as None because PEFT's wrappers pass `inputs_embeds=None` explicitly
    if inputs_embeds is not None:
        raise ValueError("FLAVA does not take inputs_embeds; pass input_ids")


def _masked_prediction(
    head: nn.Module, sequence: torch.Tensor, labels: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the labelled positions (label >= 0), row-major, and their weighted mean cross-entropy (0 if none)."""
    if labels.shape != sequence.shape[:2]:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(sequence.shape[:2])}")
    chosen = labels >= 0
    logits = head(sequence[chosen])
    targets = labels[chosen]
    if targets.numel() == 0:  # the original replaces the NaN of an empty mean by 0
        return logits, logits.sum() * 0.0
    return logits, F.cross_entropy(logits.float(), targets) * weight


def _global_contrastive(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FLAVA's global contrastive loss: logits against the texts/images of every process (autograd-aware gather),
    then only the `rows` (positive pairs) of this process are scored, with labels = their global index."""
    rank, world_size = world_info()
    batch = image_embeds.shape[0]
    if world_size > 1:
        all_images, all_texts = all_gather_with_grad(image_embeds), all_gather_with_grad(text_embeds)
    else:
        all_images, all_texts = image_embeds, text_embeds
    logits_per_image = scale * image_embeds @ all_texts.t()
    logits_per_text = scale * text_embeds @ all_images.t()
    labels = torch.arange(rank * batch, rank * batch + batch, device=image_embeds.device)
    if rows is not None:
        logits_per_image, logits_per_text, labels = logits_per_image[rows], logits_per_text[rows], labels[rows]
    loss = (F.cross_entropy(logits_per_image.float(), labels) + F.cross_entropy(logits_per_text.float(), labels)) / 2
    return logits_per_image, logits_per_text, loss


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class FlavaPreTrainedModel(PreTrainedModel):
    """Weight init and the capabilities shared by every FLAVA class."""

    config: FlavaConfig
    base_model_prefix = "flava"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    # modules whose forward reads their own parameters stay whole (Accelerate loads a module's direct parameters)
    _no_split_modules = [
        "FlavaLayer",
        "FlavaImageEmbeddings",
        "FlavaTextEmbeddings",
        "FlavaMultimodalTransformer",
        "FlavaImageCodebookBlock",
    ]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            init.normal_(module.weight, std=fan_in**-0.5)  # DALL-E's init (the patch conv is re-initialised below)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, FlavaImageEmbeddings):
            init.trunc_normal_(module.patch_embeddings.projection.weight, std=std)
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)
        elif isinstance(module, FlavaMultimodalTransformer) and module.cls_token is not None:
            init.trunc_normal_(module.cls_token, std=std)
        elif isinstance(module, MlmHead):
            init.zeros_(module.bias)
        if isinstance(module, FlavaModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def post_init(self) -> None:
        super().post_init()
        self._share_attn_implementation()

    def _share_attn_implementation(self) -> None:
        """The towers' attention reads their own sub-config, which transformers' init leaves unset (read as eager):
        give every unset tower config the model's implementation (sdpa by default)."""
        for key in self.config.sub_configs:
            sub = getattr(self.config, key, None)
            if sub is not None and sub._attn_implementation is None:
                sub._attn_implementation_internal = self.config._attn_implementation

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False) -> None:
        """As transformers'; a string reaches every tower (they have no sub-model, so transformers would only warn)."""
        subs = [getattr(self.config, key) for key in self.config.sub_configs if getattr(self.config, key) is not None]
        before = [sub._attn_implementation for sub in subs]
        if isinstance(attn_implementation, str):
            for sub in subs:
                sub._attn_implementation_internal = attn_implementation
        try:
            super().set_attn_implementation(attn_implementation, allow_all_kernels=allow_all_kernels)
        except Exception:
            for sub, value in zip(subs, before, strict=True):
                sub._attn_implementation_internal = value
            raise
        self._share_attn_implementation()

    def _flags(self, output_hidden_states: bool | None, output_attentions: bool | None) -> dict[str, bool]:
        return {
            "output_hidden_states": bool(
                output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
            ),
            "output_attentions": bool(
                output_attentions if output_attentions is not None else self.config.output_attentions
            ),
        }


class FlavaModel(FlavaPreTrainedModel):
    """FLAVA's encoders with transformers' output names and CLIP's scores (registered for zero-shot classification).

    `model(input_ids, pixel_values, attention_mask)` runs the image and text encoders, scores every image against
    every text (`logits_per_image`, `logits_per_text`, normalised `image_embeds` / `text_embeds`) and, when it gets
    image-text pairs (as many images as texts), the multimodal encoder (`multimodal_output`). The multimodal pass is
    skipped when it cannot apply (different numbers of images and texts, as in zero-shot classification) or when
    `skip_multimodal_encoder=True`; `get_image_features` / `get_text_features` run one tower only.

    The text padding mask always reaches the text encoder: `attention_mask` when given, else `input_ids !=
    pad_token_id` as the released code derives it. `config.mask_multimodal_padding` decides whether the multimodal
    encoder masks padding too (True, transformers) or attends to it (False, torchmultimodal).

    Example:
    ```python
    >>> import torch
    >>> from vlzoo import FlavaConfig, FlavaModel
    >>> tower = {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 64}
    >>> config = FlavaConfig(image_config={**tower, "image_size": 32}, text_config={**tower, "vocab_size": 99},
    ...     multimodal_config=tower, projection_dim=16)
    >>> model = FlavaModel(config).eval()
    >>> out = model(input_ids=torch.tensor([[2, 5, 3, 0]]), pixel_values=torch.randn(1, 3, 32, 32))
    >>> out.logits_per_image.shape, out.multimodal_output.last_hidden_state.shape
    (torch.Size([1, 1]), torch.Size([1, 10, 32]))
    ```
    """

    def __init__(self, config: FlavaConfig):
        super().__init__(config)
        image, text, multimodal = config.image_config, config.text_config, config.multimodal_config
        # registered first: device maps fill in registration order, and a root parameter must not be offloaded to
        # disk (no module hook would load it)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.image_model = FlavaImageTransformer(image)
        self.text_model = FlavaTextTransformer(text)
        self.multimodal_model = FlavaMultimodalTransformer(multimodal)
        self.image_projection = nn.Linear(image.hidden_size, config.projection_dim)
        self.text_projection = nn.Linear(text.hidden_size, config.projection_dim)
        self.image_to_mm_projection = nn.Linear(image.hidden_size, multimodal.hidden_size)
        self.text_to_mm_projection = nn.Linear(text.hidden_size, multimodal.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.embeddings.word_embeddings = value

    # -- towers -------------------------------------------------------------------------------------------------

    def encode_image(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **flags: bool,
    ) -> FlavaTowerOutput:
        """The image encoder's output (patches replaced by the mask token where `bool_masked_pos` is set)."""
        return self.image_model(pixel_values, bool_masked_pos, interpolate_pos_encoding, **flags)

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        name: str = "input_ids",
        **flags: bool,
    ) -> FlavaTowerOutput:
        """The text encoder's output, always masked by the padding mask (see the class docstring)."""
        return self._encode_text(input_ids, attention_mask, token_type_ids, position_ids, name=name, **flags)[0]

    def _encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        *,
        name: str = "input_ids",
        **flags: bool,
    ) -> tuple[FlavaTowerOutput, torch.Tensor]:
        """The text encoder's output and the padding mask it used (1 = keep), which the multimodal pass reuses."""
        mask = _check_text(input_ids, attention_mask, token_type_ids, position_ids, self.config.text_config, name)
        return self.text_model(input_ids, mask, token_type_ids, position_ids, **flags), mask

    def encode_multimodal(
        self,
        image_output: FlavaTowerOutput,
        text_output: FlavaTowerOutput,
        text_attention_mask: torch.Tensor | None,
        **flags: bool,
    ) -> FlavaTowerOutput:
        """The fusion encoder over the projected pre-LayerNorm unimodal states `[image CLS, patches, text]`."""
        image_states = image_output.pre_layernorm_last_hidden_state
        text_states = text_output.pre_layernorm_last_hidden_state
        if image_states.shape[0] != text_states.shape[0]:
            raise ValueError(
                f"the multimodal encoder fuses image i with text i: got {image_states.shape[0]} images and "
                f"{text_states.shape[0]} texts"
            )
        fused = torch.cat(
            [
                fast_linear(self.image_to_mm_projection, image_states),
                fast_linear(self.text_to_mm_projection, text_states),
            ],
            dim=1,
        )
        mask = None
        if self.config.mask_multimodal_padding and text_attention_mask is not None:
            image_keep = text_attention_mask.new_ones(image_states.shape[0], image_states.shape[1])
            mask = torch.cat([image_keep, text_attention_mask], dim=1)
        return self.multimodal_model(fused, mask, **flags)

    def _embeds(self, output: FlavaTowerOutput, projection: nn.Linear) -> torch.Tensor:
        return F.normalize(projection(output.last_hidden_state[:, 0]), dim=-1, eps=1e-12)

    def logit_scale_value(self) -> torch.Tensor:
        """`exp(logit_scale)` with the log clamped to `[0, logit_scale_max]` (the original clamps on every forward)."""
        return self.logit_scale.clamp(0.0, self.config.logit_scale_max).exp()

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> FlavaTowerOutput:
        """Image encoder output whose `pooler_output` is the projected (unnormalised) token 0 `[batch, proj]`.

        (transformers' `FlavaModel.get_image_features` projects every token; take `[:, 0]` of it for the same.)
        """
        output = self.encode_image(
            pixel_values, None, interpolate_pos_encoding, **self._flags(output_hidden_states, output_attentions)
        )
        output.pooler_output = self.image_projection(output.last_hidden_state[:, 0])
        return output

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> FlavaTowerOutput:
        """Text encoder output whose `pooler_output` is the projected (unnormalised) token 0 `[batch, proj]`."""
        output = self.encode_text(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            **self._flags(output_hidden_states, output_attentions),
        )
        output.pooler_output = self.text_projection(output.last_hidden_state[:, 0])
        return output

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        return_loss: bool | None = None,
        skip_multimodal_encoder: bool | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> FlavaModelOutput:
        """Encode images and/or texts, score them against each other and fuse pairs.

        Args:
            input_ids (`[n_texts, seq]`): WordPiece ids from [`VlzooFlavaProcessor`].
            pixel_values (`[n_images, 3, size, size]`): images from [`VlzooFlavaImageProcessor`].
            attention_mask (`[n_texts, seq]`): 1 = token, 0 = padding; default `input_ids != pad_token_id`.
            token_type_ids (`[n_texts, seq]`), position_ids (`[n_texts or 1, seq]`): BERT's, default 0 and 0..seq-1.
            bool_masked_pos (`[n_images, num_patches]`): patches replaced by the mask token (1 = masked).
            return_loss (`bool`): the symmetric contrastive loss (pairs; negatives gathered across processes).
            skip_multimodal_encoder (`bool`): never run the fusion encoder; by default it runs for pairs.
            interpolate_pos_encoding (`bool`): accept other image sizes (multiples of the patch size).
            inputs_embeds: not supported (a ValueError unless None).
        """
        _reject_inputs_embeds(inputs_embeds)
        if input_ids is None and pixel_values is None:
            raise ValueError("FlavaModel needs input_ids, pixel_values or both; got neither")
        if input_ids is None and any(v is not None for v in (attention_mask, token_type_ids, position_ids)):
            raise ValueError("attention_mask, token_type_ids and position_ids need input_ids")
        if pixel_values is None and bool_masked_pos is not None:
            raise ValueError("bool_masked_pos needs pixel_values")
        flags = self._flags(output_hidden_states, output_attentions)
        image_output = text_output = multimodal_output = image_embeds = text_embeds = None
        if pixel_values is not None:
            image_output = self.encode_image(pixel_values, bool_masked_pos, interpolate_pos_encoding, **flags)
            image_embeds = self._embeds(image_output, self.image_projection)
        if input_ids is not None:
            text_output, text_mask = self._encode_text(
                input_ids, attention_mask, token_type_ids, position_ids, **flags
            )
            text_embeds = self._embeds(text_output, self.text_projection)
        logits_per_image = logits_per_text = loss = None
        if image_embeds is not None and text_embeds is not None:
            scale = self.logit_scale_value()
            logits_per_image = scale * image_embeds @ text_embeds.t()
            logits_per_text = logits_per_image.t()
            paired = image_embeds.shape[0] == text_embeds.shape[0]
            if return_loss:
                if not paired:
                    raise ValueError(
                        f"return_loss=True pairs image i with text i, but got {image_embeds.shape[0]} images and "
                        f"{text_embeds.shape[0]} texts"
                    )
                loss = _global_contrastive(image_embeds, text_embeds, scale, None)[2]
            if paired and not skip_multimodal_encoder:
                multimodal_output = self.encode_multimodal(image_output, text_output, text_mask, **flags)
        elif return_loss:
            raise ValueError("return_loss=True needs both input_ids and pixel_values")
        return FlavaModelOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            image_output=image_output,
            text_output=text_output,
            multimodal_output=multimodal_output,
        )


class FlavaImageCodebook(FlavaPreTrainedModel):
    """The DALL-E dVAE encoder (`config.image_codebook_config`): image -> codebook logits and token ids.

    Input: `pixel_values` in [0.1, 0.9] (`0.8 x + 0.1` of [0, 1] pixels, the processor's `codebook_pixel_values`) at
    half the encoder's resolution, so that its token grid (side / 8) matches the patch grid. Frozen when
    `image_codebook_config.freeze` (the released use); loads `facebook/flava-image-codebook`-style weights.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: FlavaConfig):
        super().__init__(config)
        self.blocks = _codebook_blocks(config.image_codebook_config)
        self.post_init()
        if config.image_codebook_config.freeze:
            self.requires_grad_(False)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> FlavaImageCodebookOutput:
        """`output_attentions` is accepted for the common interface; the codebook has no attention."""
        flags = self._flags(output_hidden_states, output_attentions)
        return _run_codebook(
            self.blocks, self.config.image_codebook_config, pixel_values, flags["output_hidden_states"]
        )

    def get_codebook_indices(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Token ids `[batch, height / 8, width / 8]`."""
        logits = self(pixel_values).logits
        return logits.argmax(dim=1)

    def get_codebook_probs(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Softmax over the vocabulary, `[batch, vocab, height / 8, width / 8]`."""
        return self(pixel_values).logits.softmax(dim=1)


class FlavaForPreTraining(FlavaPreTrainedModel):
    """FLAVA with its pretraining objectives (torchmultimodal `FLAVAForPreTraining` + `FLAVAPretrainingLoss`).

    Objectives (each switched off by a zero weight in the config):
    - global contrastive: unmasked image/text token 0, projected and normalised; rows of positive pairs only;
    - ITM: `itm_head` on the masked multimodal pass, all pairs, with `itm_labels` (1 = match, 0 = mismatch);
    - MMM: `mmm_text_head` / `mmm_image_head` on the masked multimodal pass of positive pairs, at the text positions
      labelled by `mlm_labels` and the patch positions labelled by `mim_labels`;
    - unimodal MLM / MIM (`mlm_head` / `mim_head`), when there is no multimodal pass (text-only or image-only input).
    `mim_labels` come from the image codebook (`codebook_pixel_values`, argmax ids) at the patches set in
    `bool_masked_pos`, or are given. Negative labels (-100, or the original's -1) are ignored.

    Heads are sized as in transformers (MIM: image width; MLM: text width; MMM and ITM: multimodal width); the
    prediction heads' LayerNorm uses `config.head_layer_norm_eps` (the original's 1e-5).
    """

    def __init__(self, config: FlavaConfig):
        super().__init__(config)
        image, text, multimodal = config.image_config, config.text_config, config.multimodal_config
        self.flava = FlavaModel(config)
        self.image_codebook = FlavaCodebookEncoder(config.image_codebook_config) if config.init_codebook else None
        eps = config.head_layer_norm_eps
        self.mim_head = MlmHead(image.hidden_size, image.vocab_size, layer_norm_eps=eps)
        self.mlm_head = MlmHead(text.hidden_size, text.vocab_size, layer_norm_eps=eps)
        self.itm_head = FlavaItmHead(multimodal.hidden_size)
        self.mmm_image_head = MlmHead(multimodal.hidden_size, image.vocab_size, layer_norm_eps=eps)
        self.mmm_text_head = MlmHead(multimodal.hidden_size, text.vocab_size, layer_norm_eps=eps)
        self.post_init()
        if self.image_codebook is not None and config.image_codebook_config.freeze:
            self.image_codebook.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.flava.get_input_embeddings()

    def codebook_labels(self, codebook_pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        """MIM labels: the codebook ids of the masked patches, `ce_ignore_index` at the others."""
        if self.image_codebook is None:
            raise ValueError(
                "codebook_pixel_values were given but this model has no image codebook (init_codebook=False): "
                "convert a checkpoint with its codebook or pass mim_labels"
            )
        with torch.no_grad():
            ids = self.image_codebook(codebook_pixel_values).token_ids
        masked = bool_masked_pos.reshape(bool_masked_pos.shape[0], -1).bool()
        if ids.shape != masked.shape:
            raise ValueError(
                f"the codebook gives {ids.shape[1]} tokens per image ({tuple(codebook_pixel_values.shape[-2:])} px) but "
                f"the image has {masked.shape[1]} patches: codebook_pixel_values must be {self._codebook_size()} px "
                "so that its token grid matches the patch grid"
            )
        return ids.masked_fill(~masked, self.config.ce_ignore_index)

    def _codebook_size(self) -> str:
        image = self.config.image_config
        side = image.image_size // image.patch_size * self.config.image_codebook_config.downsampling
        return f"{side}x{side}"

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        input_ids_masked: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        codebook_pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        mim_labels: torch.Tensor | None = None,
        itm_labels: torch.Tensor | None = None,
        skip_unmasked_multimodal_encoder: bool | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> FlavaForPreTrainingOutput:
        """Run the encoders the inputs call for and every objective whose inputs are present.

        Args:
            input_ids / input_ids_masked (`[batch, seq]`): the text and its MLM-masked copy (same padding).
            pixel_values (`[batch, 3, size, size]`), bool_masked_pos (`[batch, num_patches]`, 1 = masked patch).
            codebook_pixel_values (`[batch, 3, size / 2, size / 2]`): for MIM labels from the codebook.
            attention_mask: padding of both texts (default: from the pad id).
            mlm_labels (`[batch, seq]`): original ids at masked positions, negative elsewhere.
            mim_labels (`[batch, num_patches]`): codebook ids at masked patches, negative elsewhere.
            itm_labels (`[batch]`): 1 for a matching pair, 0 for a mismatched one.
            skip_unmasked_multimodal_encoder: default `config.skip_unmasked_multimodal_encoder`.
            return_loss: add the losses (default: whenever labels allow one).
        """
        _reject_inputs_embeds(inputs_embeds)
        config = self.config
        flags = self._flags(output_hidden_states, output_attentions)
        flava = self.flava
        if all(v is None for v in (input_ids, input_ids_masked, pixel_values)):
            raise ValueError("FlavaForPreTraining needs input_ids, input_ids_masked and/or pixel_values")
        if bool_masked_pos is not None and pixel_values is None:
            raise ValueError("bool_masked_pos needs pixel_values")
        if codebook_pixel_values is not None:
            if bool_masked_pos is None:
                raise ValueError("codebook_pixel_values label the masked patches: pass bool_masked_pos too")
            if mim_labels is None:
                mim_labels = self.codebook_labels(codebook_pixel_values, bool_masked_pos)
        skip_unmasked = (
            config.skip_unmasked_multimodal_encoder
            if skip_unmasked_multimodal_encoder is None
            else skip_unmasked_multimodal_encoder
        )

        image_output = image_masked_output = text_output = text_masked_output = None
        multimodal_output = multimodal_masked_output = None
        if pixel_values is not None:
            image_output = flava.encode_image(pixel_values, None, interpolate_pos_encoding, **flags)
            image_masked_output = image_output
            if bool_masked_pos is not None:
                image_masked_output = flava.encode_image(
                    pixel_values, bool_masked_pos, interpolate_pos_encoding, **flags
                )
        if input_ids is not None:
            text_output, text_mask = flava._encode_text(
                input_ids, attention_mask, token_type_ids, position_ids, **flags
            )
        if input_ids_masked is not None:
            text_masked_output, masked_text_mask = flava._encode_text(
                input_ids_masked, attention_mask, token_type_ids, position_ids, name="input_ids_masked", **flags
            )
        if image_output is not None and text_output is not None and not skip_unmasked:
            multimodal_output = flava.encode_multimodal(image_output, text_output, text_mask, **flags)
        if image_masked_output is not None and text_masked_output is not None:
            multimodal_masked_output = flava.encode_multimodal(
                image_masked_output, text_masked_output, masked_text_mask, **flags
            )

        losses = FlavaLosses()
        logits: dict[str, torch.Tensor | None] = {}
        if multimodal_masked_output is None:
            if mim_labels is not None and image_masked_output is not None and config.mim_weight > 0:
                sequence = image_masked_output.last_hidden_state[:, -mim_labels.shape[1] :]
                logits["mim"], losses.mim = _masked_prediction(self.mim_head, sequence, mim_labels, config.mim_weight)
            if mlm_labels is not None and text_masked_output is not None and config.mlm_weight > 0:
                sequence = text_masked_output.last_hidden_state[:, -mlm_labels.shape[1] :]
                logits["mlm"], losses.mlm = _masked_prediction(self.mlm_head, sequence, mlm_labels, config.mlm_weight)

        positives = None
        if multimodal_masked_output is not None:
            fused = multimodal_masked_output.last_hidden_state
            if config.itm_weight > 0:
                logits["itm"], _ = self.itm_head(fused)
                if itm_labels is not None:
                    if itm_labels.shape != (fused.shape[0],):
                        raise ValueError(
                            f"itm_labels must have shape [{fused.shape[0]}], got {tuple(itm_labels.shape)}"
                        )
                    losses.itm = F.cross_entropy(logits["itm"].float(), itm_labels) * config.itm_weight
                    pairs = itm_labels != 0
                    positives = torch.where(pairs.any(), pairs, torch.ones_like(pairs))
            kept = fused if positives is None else fused[positives]
            if mlm_labels is not None and config.mmm_text_weight > 0:
                labels = mlm_labels if positives is None else mlm_labels[positives]
                logits["mmm_text"], losses.mmm_text = _masked_prediction(
                    self.mmm_text_head, kept[:, -labels.shape[1] :], labels, config.mmm_text_weight
                )
            if mim_labels is not None and config.mmm_image_weight > 0:
                labels = mim_labels if positives is None else mim_labels[positives]
                # [mm CLS, image CLS, patches..., text...]
                logits["mmm_image"], losses.mmm_image = _masked_prediction(
                    self.mmm_image_head, kept[:, 2 : 2 + labels.shape[1]], labels, config.mmm_image_weight
                )

        image_embeds = text_embeds = logits_per_image = logits_per_text = None
        if image_output is not None and text_output is not None:
            image_embeds = flava._embeds(image_output, flava.image_projection)
            text_embeds = flava._embeds(text_output, flava.text_projection)
            if config.global_contrastive_weight > 0 and image_embeds.shape[0] == text_embeds.shape[0]:
                logits_per_image, logits_per_text, contrastive = _global_contrastive(
                    image_embeds, text_embeds, flava.logit_scale_value(), positives
                )
                losses.global_contrastive = contrastive * config.global_contrastive_weight

        computed = [v for v in losses.values() if v is not None]
        want_loss = return_loss if return_loss is not None else bool(computed)
        total = torch.stack(computed).sum() if computed and want_loss else None
        return FlavaForPreTrainingOutput(
            loss=total,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            itm_logits=logits.get("itm"),
            mim_logits=logits.get("mim"),
            mlm_logits=logits.get("mlm"),
            mmm_image_logits=logits.get("mmm_image"),
            mmm_text_logits=logits.get("mmm_text"),
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            mim_labels=mim_labels,
            loss_info=losses if computed and want_loss else None,
            image_output=image_output,
            text_output=text_output,
            image_masked_output=image_masked_output if bool_masked_pos is not None else None,
            text_masked_output=text_masked_output,
            multimodal_output=multimodal_output,
            multimodal_masked_output=multimodal_masked_output,
        )


class FlavaForImageTextMatching(FlavaPreTrainedModel):
    """Whether an image and a text belong together: `itm_head` on the multimodal encoder's output.

    `forward(input_ids, pixel_values, attention_mask, labels=None)` pairs image i with text i and returns
    `itm_logits` `[batch, 2]` (index 1 = match); `labels` (1 = match, 0 = not) add a cross-entropy loss.
    The head's weights are those of [`FlavaForPreTraining`]'s `itm_head` (a pretraining folder loads here).
    """

    def __init__(self, config: FlavaConfig):
        super().__init__(config)
        self.flava = FlavaModel(config)
        self.itm_head = FlavaItmHead(config.multimodal_config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.flava.get_input_embeddings()

    def get_image_features(self, *args: Any, **kwargs: Any) -> FlavaTowerOutput:
        """[`FlavaModel.get_image_features`]: the matching model is a dual encoder too (retrieval prefiltering)."""
        return self.flava.get_image_features(*args, **kwargs)

    def get_text_features(self, *args: Any, **kwargs: Any) -> FlavaTowerOutput:
        """[`FlavaModel.get_text_features`]."""
        return self.flava.get_text_features(*args, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> ImageTextMatchingOutput:
        _reject_inputs_embeds(inputs_embeds)
        flags = self._flags(output_hidden_states, output_attentions)
        image = self.flava.encode_image(pixel_values, None, interpolate_pos_encoding, **flags)
        text, text_mask = self.flava._encode_text(input_ids, attention_mask, token_type_ids, position_ids, **flags)
        fused = self.flava.encode_multimodal(image, text, text_mask, **flags)
        itm_logits, pooled = self.itm_head(fused.last_hidden_state)
        loss = None
        if labels is not None:
            if labels.shape != (itm_logits.shape[0],):
                raise ValueError(
                    f"labels must have shape [{itm_logits.shape[0]}] (1 = match), got {tuple(labels.shape)}"
                )
            loss = F.cross_entropy(itm_logits.float(), labels.long())
        return ImageTextMatchingOutput(
            loss=loss,
            itm_logits=itm_logits,
            pooler_output=pooled,
            hidden_states=fused.hidden_states,
            attentions=fused.attentions,
        )


class FlavaForSequenceClassification(FlavaPreTrainedModel):
    """FLAVA's classifier (torchmultimodal `FLAVAForClassification`): an MLP on token 0 of an encoder's output.

    With both `input_ids` and `pixel_values` the classifier reads the multimodal encoder (VQA, NLVR2-style tasks,
    registered as the VQA head), with `pixel_values` alone the image encoder, with `input_ids` alone the text encoder;
    token 0 of `last_hidden_state` (after the final LayerNorm, not the tanh pooler) as the original.
    `classifier` = `Linear(hidden, classifier_hidden_size) -> ReLU -> Dropout(classifier_dropout) -> Linear(.,
    num_labels)`. `labels`: class indices `[batch]` (cross-entropy) or soft targets `[batch, num_labels]` (VQA
    scores, binary cross-entropy over answers times `num_labels`, as VQA heads are trained).
    """

    def __init__(self, config: FlavaConfig):
        super().__init__(config)
        self.flava = FlavaModel(config)
        hidden = config.multimodal_config.hidden_size
        self.classifier = nn.Sequential(
            nn.Linear(hidden, config.classifier_hidden_size),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.classifier_hidden_size, config.num_labels),
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.flava.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        _reject_inputs_embeds(inputs_embeds)
        flags = self._flags(output_hidden_states, output_attentions)
        flava = self.flava
        if input_ids is None and pixel_values is None:
            raise ValueError("FlavaForSequenceClassification needs input_ids, pixel_values or both")
        image = text = text_mask = None
        if pixel_values is not None:
            image = flava.encode_image(pixel_values, None, interpolate_pos_encoding, **flags)
        if input_ids is not None:
            text, text_mask = flava._encode_text(input_ids, attention_mask, token_type_ids, position_ids, **flags)
        if image is not None and text is not None:
            encoded = flava.encode_multimodal(image, text, text_mask, **flags)
        else:
            encoded = image if image is not None else text
        width = self.config.multimodal_config.hidden_size  # the classifier's input (not read from the module,
        # which PEFT may wrap, e.g. with modules_to_save=["classifier"])
        if encoded.last_hidden_state.shape[-1] != width:
            raise ValueError(
                f"the classifier reads {width} features but this input's encoder is "
                f"{encoded.last_hidden_state.shape[-1]} wide: pass both input_ids and pixel_values (multimodal)"
            )
        logits = self.classifier(encoded.last_hidden_state[:, 0])
        loss = None
        if labels is not None:
            if labels.dim() == 2 and labels.is_floating_point():
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * labels.shape[1]
            else:
                loss = F.cross_entropy(logits.float(), labels.long().view(-1))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


__all__ = [
    "FlavaForImageTextMatching",
    "FlavaForPreTraining",
    "FlavaForPreTrainingOutput",
    "FlavaForSequenceClassification",
    "FlavaImageCodebook",
    "FlavaImageCodebookOutput",
    "FlavaLosses",
    "FlavaModel",
    "FlavaModelOutput",
    "FlavaPreTrainedModel",
    "FlavaTowerOutput",
]
