"""TransVG++: a language-conditioned ViT whose [REG] token regresses the box of a referring expression.

Composed of transformers' `BertModel` and vlzoo's shared blocks (`PatchEmbedding`, pre-norm `TransformerLayer` with
an un-normalised cross-attention in the language blocks, `BoxHead`); written here are the [REG] token, the position
table, the visual-mask rule and the wiring (transvg.md §3).
"""

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.heads import BoxHead
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.outputs import GroundingOutput
from vlzoo.layers.patch_embedding import PatchEmbedding
from vlzoo.layers.positions import SinePositionEmbedding2D
from vlzoo.layers.transformer import TransformerLayer
from vlzoo.losses.boxes import box_regression_loss

from .configuration_transvg_pp import TransvgPlusPlusConfig


class TransvgPlusPlusPreTrainedModel(PreTrainedModel):
    config: TransvgPlusPlusConfig
    base_model_prefix = "transvg_pp"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["TransformerLayer", "BertLayer"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TransvgPlusPlusForVisualGrounding):
            if self.config.position_embedding_init == "sine":
                grid = self.config.grid_size
                table = SinePositionEmbedding2D(self.config.hidden_size // 2)(torch.ones(1, grid, grid))
                init.copy_(module.position_embeddings, table.flatten(2).transpose(1, 2))
            else:
                init.normal_(module.position_embeddings, std=self.config.initializer_range)
            init.zeros_(module.reg_token)  # zeros at init, as the original


class TransvgPlusPlusForVisualGrounding(TransvgPlusPlusPreTrainedModel):
    r"""TransVG++: the box a referring expression names, as normalised (cx, cy, w, h) on the padded square canvas.

    Inputs as `TransvgForVisualGrounding`: `pixel_values` `[batch, 3, image_size, image_size]`, `pixel_mask` (1 =
    real pixel; read only when `config.use_visual_mask`), `input_ids` / `attention_mask` from the processor,
    `labels` `[batch, 4]` normalised (cx, cy, w, h) for the L1 + GIoU loss. `last_hidden_state` is the ViT output
    before the final LayerNorm (the box reads the LayerNorm of its token 0).

    Example:
        >>> from vlzoo.models.transvg_pp import TransvgPlusPlusConfig, TransvgPlusPlusForVisualGrounding
        >>> config = TransvgPlusPlusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...     num_hidden_layers=4, language_layers=[1, 3], image_size=64, box_head_hidden_size=16,
        ...     text_config={"vocab_size": 99, "hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
        ...                  "intermediate_size": 37})
        >>> model = TransvgPlusPlusForVisualGrounding(config).eval()
        >>> model(pixel_values=torch.randn(1, 3, 64, 64), input_ids=torch.tensor([[101, 7, 102]])).pred_boxes.shape
        torch.Size([1, 4])
    """

    _can_record_outputs = {
        "hidden_states": TransformerLayer,
        "attentions": OutputRecorder(MultiHeadAttention, index=1, layer_name="self_attn"),
    }

    def __init__(self, config: TransvgPlusPlusConfig):
        super().__init__(config)
        config.validate_architecture()
        width = config.hidden_size
        self.text_model = BertModel._from_config(config.text_config, add_pooling_layer=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, width)
        self.patch_embedding = PatchEmbedding(
            config.num_channels, width, config.patch_size, image_size=config.image_size, flatten=False
        )
        self.reg_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.grid_size**2, width))
        language = set(config.language_layers)
        self.layers = nn.ModuleList(
            TransformerLayer(
                width,
                config.num_attention_heads,
                config.intermediate_size,
                activation=config.hidden_act,
                layer_norm_eps=config.layer_norm_eps,
                norm_first=True,
                cross_attention=index in language,
                cross_attention_norm=False,  # transvg.md §3: the raw residual stream queries the text
                config=config,
            )
            for index in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.bbox_head = BoxHead(width, config.box_head_hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def embed_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`[REG] | patches + positions`, `[batch, 1 + grid**2, hidden]` (the [REG] token has no position)."""
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        tokens = patches + self.position_embeddings.to(patches.dtype)
        reg = self.reg_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        return torch.cat([reg, tokens], dim=1)

    def visual_attention_mask(self, pixel_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive `[batch, 1, 1, 1 + grid**2]` mask of padded patches (nearest-downsampled pixel mask), [REG] kept."""
        grid = self.config.grid_size
        patches = nn.functional.interpolate(pixel_mask[:, None].float(), size=(grid, grid))[:, 0].flatten(1)
        keep = torch.cat([patches.new_ones(patches.shape[0], 1), patches], dim=1)
        return key_padding_attention_mask(keep, dtype=dtype)

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
            Target boxes, normalised (cx, cy, w, h) on the padded canvas.
        """
        unexpected = sorted(set(kwargs) - {"output_attentions", "output_hidden_states"})
        if unexpected:
            raise TypeError(
                f"{type(self).__name__}.forward() got unexpected keyword arguments {unexpected}; it takes pixel_values, "
                "pixel_mask, input_ids, attention_mask, token_type_ids, labels, output_attentions, output_hidden_states and return_dict"
            )
        if pixel_values is None or input_ids is None:
            raise ValueError("TransvgPlusPlusForVisualGrounding needs both pixel_values and input_ids")
        if pixel_values.dim() != 4 or input_ids.dim() != 2 or input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"pixel_values [batch, 3, H, W] and input_ids [batch, L] must share the batch size; got "
                f"{list(pixel_values.shape)} and {list(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        text = self.text_projection(text)
        hidden_states = self.embed_image(pixel_values)
        text_mask = key_padding_attention_mask(attention_mask, dtype=hidden_states.dtype)
        visual_mask = None
        if self.config.use_visual_mask:
            if pixel_mask is None:
                pixel_mask = pixel_values.new_ones(pixel_values.shape[:1] + pixel_values.shape[2:])
            visual_mask = self.visual_attention_mask(pixel_mask.to(pixel_values.device), hidden_states.dtype)
        for layer in self.layers:
            if layer.cross_attn is None:
                # transvg.md §3: the original's plain blocks never receive the visual mask
                hidden_states = layer(hidden_states, None)
            else:
                hidden_states = layer(hidden_states, visual_mask, text, text_mask)
        reg = self.norm(hidden_states[:, 0])
        pred_boxes = self.bbox_head(reg)
        loss = None
        if labels is not None:
            loss = self.loss_function(pred_boxes, labels)
        return GroundingOutput(loss=loss, pred_boxes=pred_boxes, last_hidden_state=hidden_states)

    def loss_function(self, pred_boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """TransVG's `trans_vg_loss` (the branch keeps it): `sum |pred - target| / B + sum (1 - GIoU) / B`.

        `labels` `[batch, 4]` normalised (cx, cy, w, h) need a positive width and height (a degenerate box has no
        GIoU); boxes reaching outside the canvas are allowed.
        """
        if labels.shape != pred_boxes.shape:
            raise ValueError(f"labels must have shape {list(pred_boxes.shape)}; got {list(labels.shape)}")
        labels = labels.to(pred_boxes.dtype)
        if not torch.isfinite(labels).all() or (labels[:, 2:] <= 0).any():
            raise ValueError(
                f"labels must be finite normalised (cx, cy, w, h) boxes with a positive width and height; got "
                f"{labels.tolist()}"
            )
        return box_regression_loss(
            pred_boxes,
            labels,
            l1_weight=self.config.bbox_loss_coefficient,
            giou_weight=self.config.giou_loss_coefficient,
            box_format="cxcywh",
        )["loss"]


__all__ = ["TransvgPlusPlusForVisualGrounding", "TransvgPlusPlusPreTrainedModel"]
