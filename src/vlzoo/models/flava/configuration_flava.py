"""Configuration of FLAVA (image, text and multimodal encoders; pretraining heads; the DALL-E image codebook)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from vlzoo.layers.config_checks import (
    require_divisible,
    require_finite,
    require_non_negative_floats,
    require_positive,
    require_positive_floats,
    require_probabilities,
)

FLAVA_MODEL_TYPE = "vlzoo_flava"
_TOWER_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


def _check_tower(config: PreTrainedConfig) -> None:
    require_positive(config, *_TOWER_FIELDS)
    require_divisible(config, "hidden_size", "num_attention_heads")
    require_probabilities(config, "hidden_dropout_prob", "attention_probs_dropout_prob")
    require_positive_floats(config, "layer_norm_eps")
    require_non_negative_floats(config, "initializer_range")


@strict
class FlavaImageConfig(PreTrainedConfig):
    r"""
    FLAVA's image encoder: a pre-LN ViT (patch embedding, class token, learned positions, optional mask token for
    masked image modelling), a final LayerNorm and a tanh pooler. Field names follow transformers' `FlavaImageConfig`.

    Args:
        hidden_size (`int`), num_hidden_layers (`int`), num_attention_heads (`int`), intermediate_size (`int`): the
            tower's width, depth, heads and MLP width (flava-full: 768, 12, 12, 3072).
        hidden_act (`str`): MLP activation, exact-erf `gelu` in the released model.
        hidden_dropout_prob (`float`), attention_probs_dropout_prob (`float`): dropout rates (0 in the release).
        layer_norm_eps (`float`): eps of every LayerNorm of the tower (1e-12).
        image_size (`int`), patch_size (`int`), num_channels (`int`): input geometry (224, 16, 3).
        qkv_bias (`bool`): biases on the query/key/value projections.
        mask_token (`bool`): a learned `mask_token` that replaces masked patches (present in every released model).
        vocab_size (`int`): the image codebook's vocabulary, scored by the MIM heads (8192).
        initializer_range (`float`): std of the truncated-normal init.
    """

    model_type = "vlzoo_flava_image_model"
    base_config_key = "image_config"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    mask_token: bool = True
    vocab_size: int = 8192
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _check_tower(self)
        require_positive(self, "image_size", "patch_size", "num_channels", "vocab_size")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"FlavaImageConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@strict
class FlavaTextConfig(PreTrainedConfig):
    r"""
    FLAVA's text encoder: BERT embeddings (word + position + token type, LayerNorm) followed by pre-LN ViT-style
    blocks (not BERT's post-LN), a final LayerNorm and a tanh pooler. Field names follow transformers.

    Args:
        vocab_size (`int`): WordPiece vocabulary (30522, bert-base-uncased).
        type_vocab_size (`int`): token types (2).
        max_position_embeddings (`int`): rows of the position table (512).
        pad_token_id (`int`): the padding id. The released code derives the text padding mask from it
            (`input_ids != pad_token_id`) when no `attention_mask` is given; vlzoo does the same.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act, hidden_dropout_prob,
        attention_probs_dropout_prob, layer_norm_eps, qkv_bias, initializer_range: as in [`FlavaImageConfig`].
    """

    model_type = "vlzoo_flava_text_model"
    base_config_key = "text_config"

    vocab_size: int = 30522
    type_vocab_size: int = 2
    max_position_embeddings: int = 512
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    qkv_bias: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _check_tower(self)
        require_positive(self, "vocab_size", "type_vocab_size", "max_position_embeddings")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"FlavaTextConfig.pad_token_id must be None or in [0, {self.vocab_size}), got {self.pad_token_id}"
            )
        super().__post_init__(**kwargs)


@strict
class FlavaMultimodalConfig(PreTrainedConfig):
    r"""
    FLAVA's multimodal (fusion) encoder: pre-LN blocks over `[mm CLS, projected image states, projected text states]`,
    a final LayerNorm and a tanh pooler.

    Args:
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act, hidden_dropout_prob,
        attention_probs_dropout_prob, layer_norm_eps, qkv_bias, initializer_range: as in [`FlavaImageConfig`]
            (flava-full: 768 wide, 6 layers).
        use_cls_token (`bool`): prepend the learned multimodal class token (always in the release).
    """

    model_type = "vlzoo_flava_multimodal_model"
    base_config_key = "multimodal_config"

    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    use_cls_token: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _check_tower(self)
        super().__post_init__(**kwargs)


@strict
class FlavaImageCodebookConfig(PreTrainedConfig):
    r"""
    The DALL-E dVAE encoder FLAVA uses to tokenise images for masked image modelling (frozen, never trained).

    Args:
        num_groups (`int`): groups of residual blocks (4); every group but the last halves the resolution.
        input_channels (`int`): input channels (3).
        num_blocks_per_group (`int`): residual blocks per group (2).
        hidden_size (`int`): width of the first group (`n_hid`, 256); groups widen 1x, 2x, 4x, 8x.
        vocab_size (`int`): codebook size (8192).
        freeze (`bool`): keep the codebook frozen (no gradients), as in every released use.
        initializer_range (`float`): unused by the released weights; kept for transformers compatibility.
    """

    model_type = "vlzoo_flava_image_codebook"
    base_config_key = "image_codebook_config"

    num_groups: int = 4
    input_channels: int = 3
    num_blocks_per_group: int = 2
    hidden_size: int = 256
    vocab_size: int = 8192
    freeze: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        require_positive(self, "num_groups", "input_channels", "num_blocks_per_group", "hidden_size", "vocab_size")
        super().__post_init__(**kwargs)

    @property
    def downsampling(self) -> int:
        """How many input pixels one codebook token covers per side (8 for 4 groups)."""
        return 2 ** (self.num_groups - 1)


PRESETS: dict[str, dict] = {
    # facebook/flava-full and torchmultimodal flava_model(pretrained=True): every tower 768 wide, mm 6 layers
    "flava-full": {},
}


@strict
class FlavaConfig(PreTrainedConfig):
    r"""
    FLAVA (Singh et al., CVPR 2022): image, text and multimodal encoders, CLIP-style projections and the pretraining
    heads. Follows the released torchmultimodal code (facebookresearch/multimodal @ 3c2a85a) where it differs from the
    paper or from transformers' port: the multimodal encoder reads each tower's last layer BEFORE its final LayerNorm;
    the projections read token 0 AFTER it (not the tanh pooler); the prediction heads' LayerNorm eps is 1e-5
    (transformers uses the towers' 1e-12); the contrastive logit scale is clamped to `[0, logit_scale_max]` at every
    forward.

    Args:
        image_config, text_config, multimodal_config, image_codebook_config (`dict` or config): the sub-models. Tower
            widths may differ; projections bridge them.
        projection_dim (`int`): width of the contrastive embeddings (768).
        logit_scale_init_value (`float`): initial log temperature (transformers: 2.6592 = ln(1/0.07)).
        logit_scale_max (`float`): upper clamp of the log temperature, ln(100) = 4.6052 as the original.
        mask_multimodal_padding (`bool`): mask text padding in the multimodal encoder too. True (default) makes
            padding change no result and reproduces transformers' `FlavaModel`; False reproduces torchmultimodal,
            whose fusion encoder attends to padding tokens (the text encoder masks them in both).
        head_layer_norm_eps (`float`): eps of the masked-prediction heads' LayerNorm (1e-5 in the original).
        init_codebook (`bool`): build the image codebook inside [`FlavaForPreTraining`] (needed for MIM/MMM-image
            labels computed from `codebook_pixel_values`).
        ce_ignore_index (`int`): label value ignored by the MLM/MIM/ITM losses (-100, transformers' convention;
            every negative label is ignored, so the original's -1 works too).
        mim_weight, mlm_weight, global_contrastive_weight, itm_weight, mmm_image_weight, mmm_text_weight (`float`):
            weights of the pretraining objectives; 0 switches one off (selectable objectives).
        skip_unmasked_multimodal_encoder (`bool`): in pretraining, skip the multimodal pass over the unmasked inputs
            (no loss reads it), as the original does by default.
        classifier_hidden_size (`int`), classifier_dropout (`float`): the MLP of [`FlavaForSequenceClassification`]
            (`Linear -> ReLU -> Dropout -> Linear`, original `FLAVAForClassification`: 768 and 0.5).
        initializer_range (`float`): std of the truncated-normal init of the heads and projections.
    """

    model_type = FLAVA_MODEL_TYPE
    sub_configs_defaults = {
        "image_config": FlavaImageConfig,
        "text_config": FlavaTextConfig,
        "multimodal_config": FlavaMultimodalConfig,
        "image_codebook_config": FlavaImageCodebookConfig,
    }

    image_config: dict | FlavaImageConfig | None = None
    text_config: dict | FlavaTextConfig | None = None
    multimodal_config: dict | FlavaMultimodalConfig | None = None
    image_codebook_config: dict | FlavaImageCodebookConfig | None = None
    projection_dim: int = 768
    logit_scale_init_value: float | int = 2.6592
    logit_scale_max: float | int = 4.6052
    mask_multimodal_padding: bool = True
    head_layer_norm_eps: float = 1e-5
    init_codebook: bool = True
    ce_ignore_index: int = -100
    mim_weight: float | int = 1.0
    mlm_weight: float | int = 1.0
    global_contrastive_weight: float | int = 1.0
    itm_weight: float | int = 1.0
    mmm_image_weight: float | int = 1.0
    mmm_text_weight: float | int = 1.0
    skip_unmasked_multimodal_encoder: bool = True
    classifier_hidden_size: int = 768
    classifier_dropout: float | int = 0.5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        require_positive(self, "projection_dim", "classifier_hidden_size")
        require_finite(self, "logit_scale_init_value", "logit_scale_max")
        require_positive_floats(self, "head_layer_norm_eps")
        require_non_negative_floats(
            self,
            "mim_weight",
            "mlm_weight",
            "global_contrastive_weight",
            "itm_weight",
            "mmm_image_weight",
            "mmm_text_weight",
            "initializer_range",
        )
        require_probabilities(self, "classifier_dropout")
        if self.ce_ignore_index >= 0:
            raise ValueError(f"FlavaConfig.ce_ignore_index must be negative, got {self.ce_ignore_index}")
        super().__post_init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        """The multimodal width (transformers' top-level `hidden_size`, read by the ITM head)."""
        return self.multimodal_config.hidden_size

    def validate_architecture(self):
        """Raise a ValueError when the codebook's token grid cannot label the image patches."""
        image, codebook = self.image_config, self.image_codebook_config
        if not isinstance(image, FlavaImageConfig) or not isinstance(codebook, FlavaImageCodebookConfig):
            return
        if image.vocab_size != codebook.vocab_size:
            raise ValueError(
                f"image_config.vocab_size ({image.vocab_size}) must equal image_codebook_config.vocab_size "
                f"({codebook.vocab_size}): the MIM heads score codebook tokens"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "FlavaConfig":
        """The configuration of a released checkpoint (`flava-full`); sub-config dicts in `overrides` update it."""
        if name not in PRESETS:
            raise ValueError(f"unknown FLAVA preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
        values = copy.deepcopy(PRESETS[name])
        for key in cls.sub_configs_defaults:
            if key in overrides:
                values[key] = {**values.get(key, {}), **(overrides.pop(key) or {})}
        values.update(overrides)
        return cls(**values)


__all__ = [
    "FLAVA_MODEL_TYPE",
    "FlavaConfig",
    "FlavaImageCodebookConfig",
    "FlavaImageConfig",
    "FlavaMultimodalConfig",
    "FlavaTextConfig",
    "PRESETS",
]
