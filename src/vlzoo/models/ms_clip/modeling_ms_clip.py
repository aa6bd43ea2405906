"""MS-CLIP: a CLIP dual encoder whose image and text transformers share attention and MLP weights."""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from vlzoo.layers.attention import MultiHeadSelfAttention
from vlzoo.layers.masks import additive_attention_mask
from vlzoo.layers.mlp import FeedForward
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
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)
        self.shortcut_conv = _conv(in_channels, out_channels, 1, stride)
        self.shortcut_norm = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(features)) + self.shortcut_norm(self.shortcut_conv(features)))


class MsClipConvStem(nn.Module):
    """Early specialization: a stride-2 3x3 conv and four residual stages doubling the width up to W, then 1x1."""

    def __init__(self, config: MsClipVisionConfig):
        super().__init__()
        width = config.hidden_size
        channels = [width // 16 * 2**k for k in range(5)]
        self.conv1 = _conv(config.num_channels, channels[0], 3, 2)
        self.bn1 = nn.BatchNorm2d(channels[0], eps=config.batch_norm_eps)
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
        self.norm1 = nn.BatchNorm2d(mid, eps=eps)
        self.conv2 = _conv(mid, mid, 3, stride)
        self.norm2 = nn.BatchNorm2d(mid, eps=eps)
        self.conv3 = _conv(mid, out_channels, 1)
        self.norm3 = nn.BatchNorm2d(out_channels, eps=eps)
        self.shortcut_conv = _conv(in_channels, out_channels, 1, stride)
        self.shortcut_norm = nn.BatchNorm2d(out_channels, eps=eps)

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
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)

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
        self.branch_norm = nn.BatchNorm2d(branch_channels, eps=eps)
        self.branch_proj = _conv(branch_channels, hidden_size, 1)
        self.token_conv = _conv(hidden_size, hidden_size, 3, groups=hidden_size)
        self.token_norm = nn.BatchNorm2d(hidden_size, eps=eps)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, branch: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, width = tokens.shape
        side = int(round((length - 1) ** 0.5))
        projected = self.branch_proj(self.branch_norm(self.branch_conv(branch)))
        if projected.shape[-2:] != (side, side):
            raise ValueError(
                f"the parallel branch produced a {tuple(projected.shape[-2:])} map but the token grid is "
                f"{side}x{side}: check branch_strides and adapter_kernel_sizes"
            )
        projected = projected.flatten(2).transpose(1, 2)
        cls, grid = tokens[:, :1], tokens[:, 1:]
        grid = grid.transpose(1, 2).reshape(batch, width, side, side)
        grid = self.token_norm(self.token_conv(grid)).flatten(2).transpose(1, 2)
        return self.layer_norm(torch.cat([cls, grid], dim=1) + torch.cat([cls, projected], dim=1))


# ---------------------------------------------------------------------------------------------------------------
# Transformer blocks
# ---------------------------------------------------------------------------------------------------------------


class MsClipBlockWeights(nn.Module):
    """The attention and MLP of one transformer block: owned by a layer, or by `shared_layers` when shared."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, attention_dropout: float):
        super().__init__()
        self.self_attn = MultiHeadSelfAttention(hidden_size, dropout=attention_dropout)
        self.mlp = FeedForward(hidden_size, intermediate_size, activation)


class MsClipEncoderLayer(GradientCheckpointingLayer):
    """Pre-LN block `x + attn(ln1(x))`, `x + mlp(ln2(x))` with modality-specific LayerNorms.

    A shared layer has `self_attn = mlp = None`: the caller passes the shared `MsClipBlockWeights`, so each shared
    tensor exists once in the module tree (and in the safetensors file) and PEFT adapters on it reach both towers.
    """

    def __init__(self, config: MsClipVisionConfig | MsClipTextConfig, *, shared: bool):
        super().__init__()
        self.config = config
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if shared:
            self.self_attn = None
            self.mlp = None
        else:
            self.self_attn = MultiHeadSelfAttention(config.hidden_size, dropout=config.attention_dropout)
            self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        shared_weights: MsClipBlockWeights | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        source = self if self.self_attn is not None else shared_weights
        if source is None:
            raise ValueError("this layer is shared: pass the shared block as `shared_weights`")
        attended, attention = source.self_attn(
            self.layer_norm1(hidden_states),
            num_heads=self.config.num_attention_heads,
            attention_mask=attention_mask,
            attn_implementation=self.config._attn_implementation,
            output_attentions=output_attentions,
        )
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + source.mlp(self.layer_norm2(hidden_states))
        return hidden_states, attention


class MsClipEncoder(nn.Module):
    """A stack of blocks whose last `num_shared_layers` take their attention and MLP from `shared_layers`."""

    def __init__(self, config: MsClipVisionConfig | MsClipTextConfig, num_shared_layers: int):
        super().__init__()
        self.first_shared = config.num_hidden_layers - num_shared_layers
        self.layers = nn.ModuleList(
            MsClipEncoderLayer(config, shared=i >= self.first_shared) for i in range(config.num_hidden_layers)
        )

    def run_layer(
        self,
        index: int,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        shared_layers: nn.ModuleList | None,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        shared = None
        if index >= self.first_shared:
            if shared_layers is None:
                raise ValueError("this tower shares blocks with the other modality: pass `shared_layers`")
            shared = shared_layers[index - self.first_shared]
        return self.layers[index](hidden_states, attention_mask, shared, output_attentions)


def _finish_outputs(
    hidden_states: torch.Tensor, pooled: torch.Tensor, all_hidden: list | None, all_attentions: list | None
) -> BaseModelOutputWithPooling:
    return BaseModelOutputWithPooling(
        last_hidden_state=hidden_states,
        pooler_output=pooled,
        hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        attentions=tuple(all_attentions) if all_attentions is not None else None,
    )


class MsClipVisionTransformer(nn.Module):
    """Image tower: stem, class token and positions, `pre_layernorm`, blocks (adapters before some), pooling."""

    def __init__(self, config: MsClipVisionConfig, num_shared_layers: int):
        super().__init__()
        self.config = config
        width = config.hidden_size
        if config.stem_type == "conv":
            self.stem = MsClipConvStem(config)
        else:
            self.stem = nn.Conv2d(config.num_channels, width, config.patch_size, config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.position_embedding = nn.Parameter(torch.zeros(config.grid_size**2 + 1, width))
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

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Stem tokens (row-major grid) with the class token and positions, after `pre_layernorm`."""
        grid = self.stem(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(grid.dtype).expand(grid.shape[0], 1, -1)
        tokens = torch.cat([cls, grid], dim=1) + self.position_embedding.to(grid.dtype)
        return self.pre_layernorm(tokens)

    def forward(
        self,
        pixel_values: torch.Tensor,
        shared_layers: nn.ModuleList | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPooling:
        _check_pixel_values(pixel_values, self.config)
        hidden_states = self.embed(pixel_values)
        branch = pixel_values
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for index in range(len(self.encoder.layers)):
            if index in self.adapter_at:
                j = self.adapter_at[index]
                branch = self.branch[j](branch)
                hidden_states = self.adapters[j](branch, hidden_states)
            hidden_states, attention = self.encoder.run_layer(
                index, hidden_states, None, shared_layers, output_attentions
            )
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(attention)
        pooled = self.post_layernorm(hidden_states[:, 0])
        return _finish_outputs(hidden_states, pooled, all_hidden, all_attentions)


class MsClipTextTransformer(nn.Module):
    """Text tower: token + learned positions, causal blocks, `final_layer_norm` at the end token (argmax id)."""

    def __init__(self, config: MsClipTextConfig, num_shared_layers: int):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_position_embeddings, config.hidden_size))
        self.encoder = MsClipEncoder(config, num_shared_layers)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        shared_layers: nn.ModuleList | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutputWithPooling:
        _check_input_ids(input_ids, attention_mask, self.config)
        length = input_ids.shape[1]
        hidden_states = self.token_embedding(input_ids) + self.position_embedding[:length].to(
            self.token_embedding.weight.dtype
        )
        # msclip.md §2: causal, and the original uses no padding mask. A padding mask only changes the states after
        # the end token (which causal attention already hides from every earlier position).
        mask = additive_attention_mask(
            length, dtype=hidden_states.dtype, device=hidden_states.device, causal=True, padding_mask=attention_mask
        )
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for index in range(len(self.encoder.layers)):
            hidden_states, attention = self.encoder.run_layer(
                index, hidden_states, mask, shared_layers, output_attentions
            )
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(attention)
        # the released code pools at argmax(input_ids): the end token is the largest id (msclip.md §7)
        positions = input_ids.argmax(dim=-1)
        pooled = self.final_layer_norm(hidden_states[torch.arange(input_ids.shape[0]), positions])
        return _finish_outputs(hidden_states, pooled, all_hidden, all_attentions)


def _check_pixel_values(pixel_values: torch.Tensor, config: MsClipVisionConfig) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    expected = (config.num_channels, config.image_size, config.image_size)
    if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
        hint = " (RGB): convert other modes with the processor" if pixel_values.dim() == 4 else ""
        raise ValueError(
            f"pixel_values has shape {tuple(pixel_values.shape)}; MS-CLIP expects [batch, {expected[0]}, "
            f"{expected[1]}, {expected[2]}]{hint}"
        )
    if pixel_values.shape[0] == 0:
        raise ValueError("pixel_values is an empty batch")


def _check_input_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: MsClipTextConfig) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError("input_ids must be an integer torch.Tensor of shape [batch, sequence]")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have shape [batch, sequence] with both > 0, got {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} positions but the context is {config.max_position_embeddings}: "
            "tokenize with the processor, which truncates and keeps the end token"
        )
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"input_ids holds ids in [{low}, {high}] but the vocabulary has {config.vocab_size} tokens: was the text "
            "tokenized with this model's tokenizer?"
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class MsClipPreTrainedModel(PreTrainedModel):
    """Weight init of the released code (msclip.md §2) and the capabilities shared by every MS-CLIP class."""

    config: MsClipConfig
    base_model_prefix = "ms_clip"
    input_modalities = ("image", "text")
    _no_split_modules = ["MsClipEncoderLayer", "MsClipBlockWeights", "MsClipConvStem"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def _build_shared_layers(self) -> nn.ModuleList:
        text = self.config.text_config
        return nn.ModuleList(
            MsClipBlockWeights(text.hidden_size, text.intermediate_size, text.hidden_act, text.attention_dropout)
            for _ in range(self.config.num_shared_layers)
        )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # `apply` visits children before parents, so parent-level rules below override the generic Linear rule
        std = self.config.initializer_range
        if isinstance(module, MultiHeadSelfAttention):
            # xavier_uniform over the original fused [3W, W] in_proj_weight, applied to each of q/k/v
            bound = (6.0 / (4 * module.hidden_size)) ** 0.5
            for proj in (module.q_proj, module.k_proj, module.v_proj):
                init.uniform_(proj.weight, -bound, bound)
                init.zeros_(proj.bias)
            init.trunc_normal_(module.out_proj.weight, std=std)
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, nn.Conv2d):
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
            scale = module.config.hidden_size**-0.5
            init.normal_(module.class_embedding, std=scale)
            init.normal_(module.position_embedding, std=scale)
        elif isinstance(module, MsClipTextTransformer):
            init.trunc_normal_(module.position_embedding, std=std)
        if isinstance(module, (MsClipModel, MsClipVisionModelWithProjection)):
            init.normal_(module.visual_projection.weight, std=self.config.vision_config.hidden_size**-0.5)
        if isinstance(module, (MsClipModel, MsClipTextModelWithProjection)):
            init.trunc_normal_(module.text_projection.weight, std=std)
        if isinstance(module, MsClipModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def get_input_embeddings(self) -> nn.Module:
        if hasattr(self, "text_model"):
            return self.text_model.token_embedding
        return super().get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not hasattr(self, "text_model"):
            raise AttributeError(f"{type(self).__name__} has no text tower")
        self.text_model.token_embedding = value

    def _project_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, flags: dict[str, bool]
    ) -> BaseModelOutputWithPooling:
        outputs = self.text_model(input_ids, attention_mask, self.shared_layers, **flags)
        outputs.pooler_output = self.text_projection(outputs.pooler_output)
        return outputs

    def _project_image(self, pixel_values: torch.Tensor, flags: dict[str, bool]) -> BaseModelOutputWithPooling:
        outputs = self.vision_model(pixel_values, self.shared_layers, **flags)
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


class MsClipModel(MsClipPreTrainedModel):
    """MS-CLIP dual encoder (CLIP conventions): `model(input_ids, pixel_values, attention_mask=None)`.

    Called with `pixel_values` only (as transformers' `image-feature-extraction` pipeline does), it returns the
    image tower's `BaseModelOutputWithPooling` with the projected image embedding as `pooler_output`.

    Example:
    ```python
    >>> import torch
    >>> from vlzoo import MsClipConfig, MsClipModel
    >>> config = MsClipConfig.from_preset("b32-yfcc", vision_config={"hidden_size": 64, "intermediate_size": 128,
    ...     "num_attention_heads": 2, "image_size": 64}, text_config={"hidden_size": 64, "intermediate_size": 128,
    ...     "num_attention_heads": 2, "vocab_size": 99}, projection_dim=16)
    >>> model = MsClipModel(config).eval()
    >>> out = model(input_ids=torch.tensor([[97, 5, 98]]), pixel_values=torch.randn(2, 3, 64, 64))
    >>> out.logits_per_image.shape
    torch.Size([2, 1])
    ```
    """

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self.vision_model = MsClipVisionTransformer(config.vision_config, config.num_shared_layers)
        self.text_model = MsClipTextTransformer(config.text_config, config.num_shared_layers)
        self.shared_layers = self._build_shared_layers()
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Text tower output whose `pooler_output` is the projected (unnormalised) text embedding."""
        return self._project_text(input_ids, attention_mask, self._flags(output_hidden_states, output_attentions))

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Image tower output whose `pooler_output` is the projected (unnormalised) image embedding."""
        return self._project_image(pixel_values, self._flags(output_hidden_states, output_attentions))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> MsClipOutput | BaseModelOutputWithPooling:
        """Score every image against every text.

        Args:
            input_ids (`[n_texts, seq]`): CLIP BPE ids from [`MsClipProcessor`] (end token = largest id).
            pixel_values (`[n_images, 3, size, size]`): images from [`MsClipImageProcessor`].
            attention_mask (`[n_texts, seq]`, optional): 1 = token, 0 = padding. Only states after the end token
                depend on it; embeddings do not.
            return_loss (`bool`): add the symmetric contrastive loss (needs as many texts as images; negatives are
                gathered from every process when training on several).
        """
        flags = self._flags(output_hidden_states, output_attentions)
        if pixel_values is None and input_ids is None:
            raise ValueError("MsClipModel needs input_ids, pixel_values or both; got neither")
        if input_ids is None:
            if return_loss:
                raise ValueError("return_loss=True needs both input_ids and pixel_values")
            return self.get_image_features(pixel_values, **flags)
        if pixel_values is None:
            raise ValueError(
                "pixel_values is missing: for text features alone use get_text_features(input_ids, attention_mask)"
            )
        if return_loss and input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"return_loss=True pairs image i with text i, but got {pixel_values.shape[0]} images and "
                f"{input_ids.shape[0]} texts"
            )
        vision_outputs = self.get_image_features(pixel_values, **flags)
        text_outputs = self.get_text_features(input_ids, attention_mask, **flags)
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

    `forward(pixel_values)` returns `BaseModelOutputWithPooling` with the projected embedding as `pooler_output`.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self.vision_model = MsClipVisionTransformer(config.vision_config, config.num_shared_layers)
        self.shared_layers = self._build_shared_layers()
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        return self._project_image(pixel_values, self._flags(output_hidden_states, output_attentions))


class MsClipTextModelWithProjection(MsClipPreTrainedModel):
    """Text tower + projection alone (loads the weights of an [`MsClipModel`] folder; image keys are ignored).

    `forward(input_ids, attention_mask)` returns `BaseModelOutputWithPooling` with the projected embedding as
    `pooler_output`.
    """

    input_modalities = ("text",)

    def __init__(self, config: MsClipConfig):
        super().__init__(config)
        self.text_model = MsClipTextTransformer(config.text_config, config.num_shared_layers)
        self.shared_layers = self._build_shared_layers()
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        return self._project_text(input_ids, attention_mask, self._flags(output_hidden_states, output_attentions))


__all__ = [
    "MsClipModel",
    "MsClipOutput",
    "MsClipPreTrainedModel",
    "MsClipTextModelWithProjection",
    "MsClipVisionModelWithProjection",
]
