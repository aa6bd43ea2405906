"""TransVG: a DETR visual branch and BERT, fused with a [REG] token in a DETR-style encoder that regresses one box.

The parts that are literally transformers' own are composed: the ResNet backbone with DETR's frozen BatchNorm and
nearest-downsampled mask (`DetrConvEncoder`), DETR's sine positions (`DetrSinePositionEmbedding`), DETR's post-norm
encoder layer (`DetrEncoderLayer`, for both the visual encoder and the fusion encoder) and `BertModel`. Written here:
the projections, the [REG] token, the fusion sequence with its learned positions, and the box head (transvg.md §2).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.models.detr.modeling_detr import (
    DetrConvEncoder,
    DetrEncoderLayer,
    DetrFrozenBatchNorm2d,
    DetrSelfAttention,
    DetrSinePositionEmbedding,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from vlzoo.layers.box_ops import convert_boxes
from vlzoo.layers.heads import BoxHead
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.outputs import GroundingOutput
from vlzoo.losses.boxes import box_regression_loss

from .configuration_transvg import TransvgConfig, TransvgEncoderConfig


@dataclass
class TransvgVisualOutput:
    """What the visual branch computes (all batch-first).

    Args:
        backbone_features: `[batch, channels, h, w]`, the ResNet stage-4 map.
        backbone_mask: `[batch, h, w]` bool, True = real cell (the pixel mask downsampled with nearest).
        position_embeddings: `[batch, d_model, h, w]`, DETR's sine positions (y channels first).
        visual_features: `[batch, h * w, d_model]`, the DETR encoder output (the CNN tokens without an encoder).
        visual_mask: `[batch, h * w]` long, 1 = real token.
    """

    backbone_features: torch.Tensor
    backbone_mask: torch.Tensor
    position_embeddings: torch.Tensor
    visual_features: torch.Tensor
    visual_mask: torch.Tensor


class TransvgFusionLayer(DetrEncoderLayer):
    """The fusion encoder's layer: DETR's encoder layer unchanged (the original builds `vl_transformer` from the same
    class); a subclass only so that hidden states and attentions are recorded for the fusion encoder alone."""


class TransvgEncoder(nn.Module):
    """`layers` of DETR encoder layers run with one additive key-padding mask and positions added to q and k."""

    def __init__(self, config: TransvgEncoderConfig, layer_class: type[DetrEncoderLayer] = DetrEncoderLayer):
        super().__init__()
        self.layers = nn.ModuleList(layer_class(config) for _ in range(config.encoder_layers))

    def forward(
        self, hidden_states: torch.Tensor, padding_mask: torch.Tensor, position_embeddings: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        attention_mask = key_padding_attention_mask(padding_mask, dtype=hidden_states.dtype)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states, attention_mask, spatial_position_embeddings=position_embeddings, **kwargs
            )
        return hidden_states


class TransvgPreTrainedModel(PreTrainedModel):
    config: TransvgConfig
    base_model_prefix = "transvg"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["DetrConvEncoder", "DetrEncoderLayer", "BertLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False) -> None:
        """As transformers', plus: the ResNet backbone (no attention) stays eager, and the two DETR-layer configs (no
        sub-model of their own, so transformers would only warn) follow the model's implementation."""
        if isinstance(attn_implementation, str):
            attn_implementation = {
                "": attn_implementation,
                "text_config": attn_implementation,
                "backbone_config": "eager",
            }
        super().set_attn_implementation(attn_implementation, allow_all_kernels=allow_all_kernels)
        self._share_attn_implementation()

    def _share_attn_implementation(self) -> None:
        for config in (self.config.visual_encoder_config, self.config.fusion_encoder_config):
            config._attn_implementation_internal = self.config._attn_implementation

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults, except where the original differs: Xavier-uniform weights and zero biases in the
        DETR and fusion layers and the box MLP (DETR's `_reset_parameters`), N(0, 1) [REG] token and fusion
        positions (`nn.Embedding`'s default). Frozen BatchNorms start as the identity."""
        if isinstance(module, nn.Linear) and id(module) in self._xavier_linears():
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and module in (self.reg_token, self.fusion_position_embeddings):
            init.normal_(module.weight, std=1.0)
        elif isinstance(module, DetrFrozenBatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
        else:
            super()._init_weights(module)

    def _xavier_linears(self) -> set[int]:
        blocks = (self.visual_encoder, self.fusion_encoder, self.bbox_head)
        return {id(m) for block in blocks if block is not None for m in block.modules() if isinstance(m, nn.Linear)}


class TransvgForVisualGrounding(TransvgPreTrainedModel):
    r"""TransVG: the box a referring expression names, as normalised (cx, cy, w, h) on the padded square canvas.

    Inputs: `pixel_values` `[batch, 3, image_size, image_size]` and `pixel_mask` `[batch, image_size, image_size]`
    (1 = real pixel; default all real) from `TransvgProcessor`; `input_ids` and `attention_mask` `[batch, L]` with
    `L <= max_query_length` (shorter inputs are padded inside the model, which changes nothing: padded tokens are
    masked everywhere). `labels` `[batch, 4]`, normalised (cx, cy, w, h) targets, give `loss` = L1 + GIoU as the
    released code computes it (transvg.md §7).

    Example:
        >>> from vlzoo.models.transvg import TransvgConfig, TransvgForVisualGrounding
        >>> config = TransvgConfig(
        ...     backbone_config={"depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 8},
        ...     visual_encoder_config={"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64},
        ...     text_config={"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        ...                  "intermediate_size": 37},
        ...     fusion_encoder_config={"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64},
        ...     image_size=64, max_query_length=8)
        >>> model = TransvgForVisualGrounding(config).eval()
        >>> out = model(pixel_values=torch.randn(1, 3, 64, 64), input_ids=torch.tensor([[101, 7, 8, 102]]))
        >>> out.pred_boxes.shape
        torch.Size([1, 4])
    """  # noqa: E501

    _can_record_outputs = {
        "hidden_states": OutputRecorder(TransvgFusionLayer),
        "attentions": OutputRecorder(DetrSelfAttention, index=1, layer_name="fusion_encoder"),
    }

    def __init__(self, config: TransvgConfig):
        super().__init__(config)
        config.validate_architecture()
        visual, fusion = config.visual_encoder_config, config.fusion_encoder_config
        # visual branch (DETR without decoder): backbone, sine positions, input projection and encoder
        self.backbone = DetrConvEncoder(config)
        channels = self.backbone.intermediate_channel_sizes[-1]
        self.position_embedding = DetrSinePositionEmbedding(visual.d_model // 2, normalize=True)
        if visual.encoder_layers > 0:
            self.input_proj = nn.Conv2d(channels, visual.d_model, kernel_size=1)
            self.visual_encoder = TransvgEncoder(visual)
            visual_width = visual.d_model
        else:  # the original's detr_enc_num == 0: the CNN tokens go to visu_proj directly
            self.input_proj = None
            self.visual_encoder = None
            visual_width = channels
        # language branch
        self.text_model = BertModel._from_config(config.text_config, add_pooling_layer=False)
        # fusion: projections, [REG] token, one learned position per sequence slot, encoder, box head
        self.visual_projection = nn.Linear(visual_width, fusion.d_model)
        self.text_projection = nn.Linear(config.text_config.hidden_size, fusion.d_model)
        self.reg_token = nn.Embedding(1, fusion.d_model)
        self.fusion_position_embeddings = nn.Embedding(config.fusion_sequence_length, fusion.d_model)
        self.fusion_encoder = TransvgEncoder(fusion, TransvgFusionLayer)
        self.bbox_head = BoxHead(fusion.d_model, fusion.d_model)
        self._share_attn_implementation()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def encode_image(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> TransvgVisualOutput:
        """Run the visual branch (ResNet -> sine positions -> DETR encoder), before `visual_projection`."""
        _check_pixels(pixel_values, pixel_mask, self.config.image_size)
        if pixel_mask is None:
            pixel_mask = torch.ones(pixel_values.shape[:1] + pixel_values.shape[2:], dtype=torch.long)
        pixel_mask = pixel_mask.to(pixel_values.device)
        dtype = self.input_proj.weight.dtype if self.input_proj is not None else self.visual_projection.weight.dtype
        features, mask = self.backbone(pixel_values.to(dtype), pixel_mask)[-1]
        # DETR computes the positions in float32 from the real-cell counts; cast afterwards
        positions = self.position_embedding(features.shape, features.device, torch.float32, mask=mask).to(dtype)
        token_mask = mask.flatten(1).long()
        if self.visual_encoder is None:
            tokens = features.flatten(2).transpose(1, 2)
        else:
            tokens = self.input_proj(features).flatten(2).transpose(1, 2)
            tokens = self.visual_encoder(tokens, token_mask, positions.flatten(2).transpose(1, 2))
        return TransvgVisualOutput(features, mask, positions, tokens, token_mask)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The BERT layer `text_feature_layer` (1-based; 0 = word embeddings), `[batch, L, text_hidden]`."""
        layer = self.config.text_feature_layer
        if layer == 0:
            return self.text_model.embeddings.word_embeddings(input_ids)
        if layer is None or layer == self.config.text_config.num_hidden_layers:
            return self.text_model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
        outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
        )
        return outputs.hidden_states[layer]

    def fusion_inputs(
        self, visual: TransvgVisualOutput, text_features: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fusion sequence `[REG] | text | visual` `[batch, 1 + L_max + N, d]` (no positions) and its mask."""
        batch = text_features.shape[0]
        text = self.text_projection(text_features)
        missing = self.config.max_query_length - text.shape[1]
        if missing > 0:  # padded text slots are masked: padding here equals padding the tokens
            text = nn.functional.pad(text, (0, 0, 0, missing))
            attention_mask = nn.functional.pad(attention_mask, (0, missing))
        visual_tokens = self.visual_projection(visual.visual_features)
        # through the embedding modules (not `.weight`), so that offloading hooks can supply the weights
        reg = self.reg_token(attention_mask.new_zeros(batch, 1))
        sequence = torch.cat([reg, text, visual_tokens], dim=1)
        mask = torch.cat([attention_mask.new_ones(batch, 1), attention_mask.long(), visual.visual_mask], dim=1)
        if sequence.shape[1] != self.config.fusion_sequence_length:
            raise ValueError(
                f"the fusion sequence has {sequence.shape[1]} tokens but the learned positions cover "
                f"{self.config.fusion_sequence_length} (1 + max_query_length {self.config.max_query_length} + "
                f"{self.config.num_visual_tokens} visual tokens of a {self.config.image_size} px canvas)"
            )
        return sequence, mask

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> GroundingOutput:
        r"""
        token_type_ids (`torch.LongTensor`, *optional*):
            BERT's segment ids; the original never passes them (all 0), accepted for tokenizers that return them.
        labels (`torch.FloatTensor` of shape `(batch_size, 4)`, *optional*):
            Target boxes, normalised (cx, cy, w, h) on the padded canvas (`TransvgProcessor.transform_boxes`).
        """
        _check_kwargs(kwargs, type(self).__name__)
        if pixel_values is None or input_ids is None:
            raise ValueError("TransvgForVisualGrounding needs both pixel_values and input_ids")
        attention_mask = _check_text(input_ids, attention_mask, pixel_values.shape[0], self.config.max_query_length)
        visual = self.encode_image(pixel_values, pixel_mask)
        text_features = self.encode_text(input_ids, attention_mask, token_type_ids)
        sequence, mask = self.fusion_inputs(visual, text_features, attention_mask)
        positions = self.fusion_position_embeddings(torch.arange(sequence.shape[1], device=sequence.device))[None]
        hidden_states = self.fusion_encoder(sequence, mask, positions)
        pred_boxes = self.bbox_head(hidden_states[:, 0])
        loss = None
        if labels is not None:
            loss = grounding_loss(
                pred_boxes, labels, self.config.bbox_loss_coefficient, self.config.giou_loss_coefficient
            )["loss"]
        return GroundingOutput(loss=loss, pred_boxes=pred_boxes, last_hidden_state=hidden_states)


def grounding_loss(
    pred_boxes: torch.Tensor, labels: torch.Tensor, l1_weight: float = 1.0, giou_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """TransVG's `trans_vg_loss`: `sum |pred - target| / B` + `sum (1 - GIoU) / B` on normalised (cx, cy, w, h).

    `labels` must be `[batch, 4]` with positive width and height (a degenerate target has no GIoU); boxes reaching
    outside the canvas are allowed (the loss is defined for them). Returns `loss`, `loss_l1`, `loss_giou`.
    """
    if labels.shape != pred_boxes.shape:
        raise ValueError(
            f"labels must have shape {list(pred_boxes.shape)} (one normalised cx, cy, w, h box per example); got "
            f"{list(labels.shape)}"
        )
    labels = labels.to(pred_boxes.dtype)
    if not torch.isfinite(labels).all() or (labels[:, 2:] <= 0).any():
        raise ValueError(
            "labels must be finite normalised (cx, cy, w, h) boxes with a positive width and height; got "
            f"{labels.tolist()}"
        )
    return box_regression_loss(pred_boxes, labels, l1_weight=l1_weight, giou_weight=giou_weight, box_format="cxcywh")


# recorded by `capture_outputs` (which reads them from the call's keyword arguments); nothing else is accepted
_OUTPUT_FLAGS = ("output_attentions", "output_hidden_states")


def _check_kwargs(kwargs: dict, model_name: str) -> None:
    unexpected = sorted(set(kwargs) - set(_OUTPUT_FLAGS))
    if unexpected:
        raise TypeError(
            f"{model_name}.forward() got unexpected keyword arguments {unexpected}; it takes pixel_values, pixel_mask, "
            f"input_ids, attention_mask, token_type_ids, labels, {', '.join(_OUTPUT_FLAGS)} and return_dict"
        )


def _check_pixels(pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None, image_size: int) -> None:
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must have shape [batch, 3, height, width]; got {list(pixel_values.shape)}")
    height, width = pixel_values.shape[2:]
    if (height, width) != (image_size, image_size):
        raise ValueError(
            f"pixel_values are {height}x{width} but this model's fusion positions fix the canvas at {image_size}x"
            f"{image_size} (image_size): letterbox the images with the model's processor"
        )
    if pixel_mask is not None and tuple(pixel_mask.shape) != (pixel_values.shape[0], height, width):
        raise ValueError(
            f"pixel_mask must have shape [batch, height, width] = {[pixel_values.shape[0], height, width]} "
            f"(1 = real pixel); got {list(pixel_mask.shape)}"
        )


def _check_text(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, batch: int, max_length: int
) -> torch.Tensor:
    if input_ids.dim() != 2 or input_ids.shape[0] != batch:
        raise ValueError(f"input_ids must have shape [batch={batch}, length]; got {list(input_ids.shape)}")
    if input_ids.shape[1] > max_length:
        raise ValueError(
            f"input_ids have {input_ids.shape[1]} tokens but the model's fusion positions hold max_query_length="
            f"{max_length}: tokenize with max_length={max_length} and truncation=True (as the processor does)"
        )
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {list(input_ids.shape)}; got {list(attention_mask.shape)}"
        )
    return attention_mask


def pred_boxes_to_corners(pred_boxes: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) -> xyxy clamped to the canvas [0, 1], as TransVG's evaluation does."""
    return convert_boxes(pred_boxes, "cxcywh", "xyxy").clamp(0, 1)


__all__ = [
    "TransvgForVisualGrounding",
    "TransvgPreTrainedModel",
    "TransvgVisualOutput",
    "grounding_loss",
    "pred_boxes_to_corners",
]
