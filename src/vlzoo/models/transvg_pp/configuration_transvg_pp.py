"""Configuration of TransVG++ (a language-conditioned ViT with a [REG] token that regresses one box)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, PreTrainedConfig

from vlzoo.layers.config_checks import (
    require_divisible,
    require_int_lists,
    require_non_negative_floats,
    require_positive,
    require_positive_floats,
)

TRANSVG_PP_MODEL_TYPE = "vlzoo_transvg_pp"
POSITION_EMBEDDING_INITS = ("normal", "sine")

# --vit_model of the original code: width and heads (depth is always 12, mlp ratio 4)
_VIT = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}

PRESETS: dict[str, dict] = {
    # the README configuration (--vit_model tiny, bert-base-uncased, cross_attn at blocks 2/5/8/11, 640 px)
    "tiny": {"hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 768},
    "small": {"hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    # the paper's ViT-B/16 variant (the speed benchmark's model)
    "base": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}


def language_layer_indices(num_hidden_layers: int, num_language_layers: int, *, last: bool = False) -> list[int]:
    """The original's language-block positions: `(depth // n) * (i + 1) - 1` (2, 5, 8, 11 for 12 and 4), or the
    last `n` blocks with `--modulate_in_last_blocks`."""
    if last:
        return list(range(num_hidden_layers - num_language_layers, num_hidden_layers))
    step = num_hidden_layers // num_language_layers
    return [step * (i + 1) - 1 for i in range(num_language_layers)]


@strict
class TransvgPlusPlusConfig(PreTrainedConfig):
    r"""
    TransVG++ (Deng et al., TPAMI 2023): a plain pre-norm ViT over `[REG] | patches` whose "language blocks"
    cross-attend from the visual tokens to the projected BERT tokens; the final LayerNorm of the [REG] token goes
    through a 3-layer MLP and a sigmoid to a normalised (cx, cy, w, h) box on the padded square canvas.

    Where the released code (djiajunustc/TransVG branch `transvg++` @ 70cea85) is more specific than the paper, this
    follows the code: the cross-attention queries are the raw residual stream (no LayerNorm); the [REG] token gets
    no position embedding; the box MLP hidden width is 256; the loss is plain L1 + GIoU (1 : 1). With
    `use_visual_mask` the padding mask reaches only the language blocks' self-attention (the plain blocks receive it
    as an ignored argument in the original); the README trains without it (`--without_visual_mask`), the default.
    No fine-tuned TransVG++ weights were released: vlzoo's own format is the reference.

    Args:
        text_config (`dict` or `BertConfig`): the BERT language model (its last layer feeds the text projection).
        hidden_size (`int`): ViT width D (tiny 192, small 384, base 768).
        num_hidden_layers (`int`): ViT blocks (12 in the original, not configurable there).
        num_attention_heads (`int`): heads of self- and cross-attention (tiny 3, small 6, base 12).
        intermediate_size (`int`): MLP width (4 D).
        hidden_act (`str`): MLP activation (exact GELU).
        layer_norm_eps (`float`): every ViT LayerNorm (1e-6).
        image_size (`int`), patch_size (`int`), num_channels (`int`): the square canvas and the patch grid
            (`image_size // patch_size` per side; the position table is fixed to it).
        language_layers (`list[int]`): 0-based blocks with the cross-attention to the text (`num_modulation` 4 ->
            [2, 5, 8, 11]).
        use_visual_mask (`bool`): mask padded patches in the language blocks' self-attention (the original's
            behaviour without `--without_visual_mask`).
        box_head_hidden_size (`int`): hidden width of the box MLP (256, hard-coded in the original).
        max_query_length (`int`): the processor's text length ([CLS] and [SEP] included); the model takes any
            length up to `text_config.max_position_embeddings`.
        bbox_loss_coefficient (`float`), giou_loss_coefficient (`float`): weights of the L1 and GIoU terms (1, 1).
        initializer_range (`float`): std of the normal init of linear layers, positions and the [REG] token.
        position_embedding_init (`str`): "normal" (the original's random table, std `initializer_range`) or "sine",
            the fixed 2-D sine/cosine table (DETR's, y channels then x) as the start of a model trained from
            scratch: positions are then readable from the first step, which shortens the plateau before small
            models localise anything (the original starts from MAE/ViTDet-pretrained backbones instead). Only the
            initialisation differs; the table is learned either way.
    """

    model_type = TRANSVG_PP_MODEL_TYPE
    sub_configs_defaults = {"text_config": BertConfig}

    text_config: dict | BertConfig | None = None
    hidden_size: int = 192
    num_hidden_layers: int = 12
    num_attention_heads: int = 3
    intermediate_size: int = 768
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    image_size: int = 640
    patch_size: int = 16
    num_channels: int = 3
    language_layers: list[int] | tuple[int, ...] = (2, 5, 8, 11)
    use_visual_mask: bool = False
    box_head_hidden_size: int = 256
    max_query_length: int = 20
    bbox_loss_coefficient: float | int = 1.0
    giou_loss_coefficient: float | int = 1.0
    initializer_range: float = 0.02
    position_embedding_init: str = "normal"

    def __post_init__(self, **kwargs):
        require_positive(
            self,
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "image_size",
            "patch_size",
            "num_channels",
            "box_head_hidden_size",
            "max_query_length",
        )
        require_positive_floats(self, "layer_norm_eps")
        require_non_negative_floats(self, "bbox_loss_coefficient", "giou_loss_coefficient", "initializer_range")
        require_int_lists(self, "language_layers", minimum=0)
        require_divisible(self, "hidden_size", "num_attention_heads")
        require_divisible(self, "image_size", "patch_size")
        if self.position_embedding_init not in POSITION_EMBEDDING_INITS:
            raise ValueError(
                f"TransvgPlusPlusConfig.position_embedding_init must be one of {POSITION_EMBEDDING_INITS}, got "
                f"{self.position_embedding_init!r}"
            )
        if self.position_embedding_init == "sine" and self.hidden_size % 4:
            raise ValueError(
                f"TransvgPlusPlusConfig.position_embedding_init='sine' needs hidden_size divisible by 4 (sine and "
                f"cosine per axis), got {self.hidden_size}"
            )
        self.language_layers = list(self.language_layers)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a ValueError naming the offending fields when the geometry is inconsistent."""
        layers = self.language_layers
        if any(index >= self.num_hidden_layers for index in layers) or len(set(layers)) != len(layers):
            raise ValueError(
                f"TransvgPlusPlusConfig.language_layers must be distinct block indices below num_hidden_layers "
                f"({self.num_hidden_layers}), got {layers}"
            )
        text = self.text_config
        if isinstance(text, BertConfig) and self.max_query_length > text.max_position_embeddings:
            raise ValueError(
                f"TransvgPlusPlusConfig.max_query_length ({self.max_query_length}) exceeds "
                f"text_config.max_position_embeddings ({text.max_position_embeddings})"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side (40 at 640 px)."""
        return self.image_size // self.patch_size

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TransvgPlusPlusConfig":
        """The configuration of a ViT size of the original code: `tiny` (the README's), `small` or `base`; all with
        bert-base-uncased, 640 px and language blocks 2, 5, 8, 11. A `text_config` dict updates BERT's fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown TransVG++ preset {name!r}; valid presets: {', '.join(PRESETS)}")
        values = copy.deepcopy(PRESETS[name])
        values.update(overrides)
        return cls(**values)


__all__ = ["PRESETS", "TRANSVG_PP_MODEL_TYPE", "TransvgPlusPlusConfig", "language_layer_indices"]
