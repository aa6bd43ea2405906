"""Configuration of TransVG (visual grounding: DETR visual branch + BERT + a fusion encoder with a [REG] token)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, PreTrainedConfig, ResNetConfig

from vlzoo.layers.config_checks import (
    require_divisible,
    require_non_negative,
    require_non_negative_floats,
    require_one_of,
    require_positive,
    require_probabilities,
)

TRANSVG_MODEL_TYPE = "vlzoo_transvg"
# ResNet-50/101 reduce the image by 32 (conv1 /2, maxpool /2, layer2-4 /2 each); DC5 (dilation) is not supported.
BACKBONE_STRIDE = 32


@strict
class TransvgEncoderConfig(PreTrainedConfig):
    r"""
    A stack of DETR encoder layers (transformers' `DetrEncoderLayer`: post-norm, LayerNorm eps 1e-5, positions added
    to queries and keys only). TransVG uses it twice: as the DETR encoder of the visual branch (`args.enc_layers`,
    `hidden_dim`, `nheads`, `dim_feedforward`) and as the visual-linguistic fusion encoder (`args.vl_enc_layers`,
    `vl_hidden_dim`, `vl_nheads`, `vl_dim_feedforward`). The field names are DETR's, which `DetrEncoderLayer` reads.

    Args:
        d_model (`int`): token width.
        encoder_layers (`int`): number of layers (0 = no visual encoder: the CNN tokens go straight to `visu_proj`).
        encoder_attention_heads (`int`): attention heads.
        encoder_ffn_dim (`int`): FFN width.
        activation_function (`str`): FFN activation (`relu` in TransVG).
        dropout (`float`): dropout after each sublayer; attention_dropout: on attention probabilities;
            activation_dropout: after the FFN activation. The original `nn.TransformerEncoderLayer`-style layers use
            the one `args.dropout` (0.1) for all three.
    """

    model_type = "vlzoo_transvg_encoder"

    d_model: int = 256
    encoder_layers: int = 6
    encoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    activation_dropout: float | int = 0.1

    def __post_init__(self, **kwargs):
        require_positive(self, "d_model", "encoder_attention_heads", "encoder_ffn_dim")
        require_non_negative(self, "encoder_layers")
        require_probabilities(self, "dropout", "attention_dropout", "activation_dropout")
        require_one_of(self, "activation_function", ("relu", "gelu"))
        require_divisible(self, "d_model", "encoder_attention_heads")
        super().__post_init__(**kwargs)


def _resnet(depths: list[int]) -> dict:
    return {"depths": depths, "hidden_sizes": [256, 512, 1024, 2048], "embedding_size": 64, "out_features": ["stage4"]}


PRESETS: dict[str, dict] = {
    # released TransVG R-50 (ReferIt, RefCOCO, RefCOCO+, Flickr30K): imsize 640, max_query_len 20
    "r50": {"backbone_config": _resnet([3, 4, 6, 3]), "max_query_length": 20},
    # released TransVG R-101 at 640 / 20
    "r101": {"backbone_config": _resnet([3, 4, 23, 3]), "max_query_length": 20},
    # RefCOCOg models use max_query_len 40 (vl_pos_embed has 441 rows)
    "r50-l40": {"backbone_config": _resnet([3, 4, 6, 3]), "max_query_length": 40},
    "r101-l40": {"backbone_config": _resnet([3, 4, 23, 3]), "max_query_length": 40},
}


@strict
class TransvgConfig(PreTrainedConfig):
    r"""
    TransVG (Deng et al., ICCV 2021): a DETR visual branch (torchvision-layout ResNet with frozen BatchNorm, DETR sine
    positions and encoder), a BERT language branch, both projected to the fusion width and concatenated as
    `[REG] | text tokens | visual tokens` into a post-norm fusion encoder with learned positions; the [REG] output
    goes through a 3-layer MLP and a sigmoid to a normalised (cx, cy, w, h) box on the padded square canvas.

    Where the released code (djiajunustc/TransVG @ c862427) differs from the paper, this follows the code: the loss is
    plain L1 + GIoU with weights 1 and 1 (the paper says smooth-L1); the BERT pooler is unused (and not kept here);
    the fusion positions are one learned row per sequence slot, so `image_size` and `max_query_length` are fixed by
    the weights.

    Args:
        backbone_config (`dict` or `ResNetConfig`): the CNN (transformers' ResNet = torchvision's v1.5 Bottleneck
            layout); its BatchNorms are replaced by DETR's frozen BatchNorm (eps 1e-5). `out_features` must be
            `["stage4"]` (the output stride is 32).
        visual_encoder_config (`dict` or `TransvgEncoderConfig`): the DETR encoder (`args.enc_layers` layers when
            `args.detr_enc_num > 0`, else 0).
        text_config (`dict` or `BertConfig`): the BERT language model (bert-base-uncased in the released models).
        fusion_encoder_config (`dict` or `TransvgEncoderConfig`): the visual-linguistic encoder.
        image_size (`int`): the square canvas the processor letterboxes to (`args.imsize`, 640).
        max_query_length (`int`): text positions of the fusion sequence, [CLS] and [SEP] included
            (`args.max_query_len`: 20, 40 for RefCOCOg). Shorter inputs are padded inside the model.
        text_feature_layer (`int` or None): which BERT layer output feeds the fusion, 1-based (`args.bert_enc_num`);
            None = the last layer, 0 = the word embeddings alone (the original's `bert_enc_num <= 0`).
        bbox_loss_coefficient (`float`), giou_loss_coefficient (`float`): weights of the L1 and GIoU terms (1, 1).
        initializer_range (`float`): std of the normal init of new linear layers and embeddings.
    """

    model_type = TRANSVG_MODEL_TYPE
    sub_configs_defaults = {
        "backbone_config": ResNetConfig,
        "visual_encoder_config": TransvgEncoderConfig,
        "text_config": BertConfig,
        "fusion_encoder_config": TransvgEncoderConfig,
    }

    backbone_config: dict | ResNetConfig | None = None
    visual_encoder_config: dict | TransvgEncoderConfig | None = None
    text_config: dict | BertConfig | None = None
    fusion_encoder_config: dict | TransvgEncoderConfig | None = None
    image_size: int = 640
    max_query_length: int = 20
    text_feature_layer: int | None = None
    bbox_loss_coefficient: float | int = 1.0
    giou_loss_coefficient: float | int = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.backbone_config is None:
            self.backbone_config = _resnet([3, 4, 6, 3])
        if isinstance(self.backbone_config, dict):  # transformers resolves a backbone dict by its model type
            self.backbone_config = {"model_type": "resnet", **self.backbone_config}
        require_positive(self, "image_size", "max_query_length")
        require_non_negative_floats(self, "bbox_loss_coefficient", "giou_loss_coefficient", "initializer_range")
        if self.text_feature_layer is not None:
            require_non_negative(self, "text_feature_layer")
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a ValueError naming the offending fields when the geometry is inconsistent."""
        backbone, text = self.backbone_config, self.text_config
        if isinstance(backbone, ResNetConfig) and list(backbone.out_features) != [backbone.stage_names[-1]]:
            raise ValueError(
                f"TransvgConfig.backbone_config.out_features must be the last stage [{backbone.stage_names[-1]!r}] "
                f"(TransVG reads the stride-32 map), got {backbone.out_features}"
            )
        if self.image_size % BACKBONE_STRIDE:
            raise ValueError(
                f"TransvgConfig.image_size must be a multiple of the backbone stride {BACKBONE_STRIDE}, got "
                f"{self.image_size}"
            )
        if isinstance(text, BertConfig):
            if self.text_feature_layer is not None and self.text_feature_layer > text.num_hidden_layers:
                raise ValueError(
                    f"TransvgConfig.text_feature_layer ({self.text_feature_layer}) exceeds the BERT depth "
                    f"text_config.num_hidden_layers ({text.num_hidden_layers})"
                )
            if self.max_query_length > text.max_position_embeddings:
                raise ValueError(
                    f"TransvgConfig.max_query_length ({self.max_query_length}) exceeds "
                    f"text_config.max_position_embeddings ({text.max_position_embeddings})"
                )

    @property
    def feature_grid_size(self) -> int:
        """Side of the backbone's feature map for an `image_size` canvas (20 at 640)."""
        return self.image_size // BACKBONE_STRIDE

    @property
    def num_visual_tokens(self) -> int:
        return self.feature_grid_size**2

    @property
    def fusion_sequence_length(self) -> int:
        """`1 + max_query_length + num_visual_tokens`: the rows of the fusion position table."""
        return 1 + self.max_query_length + self.num_visual_tokens

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TransvgConfig":
        """The configuration of a released checkpoint: `r50`, `r101` (max query length 20) or `r50-l40`,
        `r101-l40` (RefCOCOg, 40). Sub-config dicts in `overrides` update the preset's."""
        if name not in PRESETS:
            raise ValueError(f"unknown TransVG preset {name!r}; valid presets: {', '.join(PRESETS)}")
        values = copy.deepcopy(PRESETS[name])
        for key in cls.sub_configs_defaults:
            if key in overrides and isinstance(overrides[key], dict):
                values[key] = {**values.get(key, {}), **overrides.pop(key)}
        values.update(overrides)
        return cls(**values)


__all__ = ["BACKBONE_STRIDE", "PRESETS", "TRANSVG_MODEL_TYPE", "TransvgConfig", "TransvgEncoderConfig"]
