"""Configuration of METER (CLIP-ViT and RoBERTa joined by co-attention layers)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, CLIPVisionConfig, PreTrainedConfig, RobertaConfig, SwinConfig
from transformers.configuration_utils import SubConfigSpec

from vlzoo.layers.config_checks import (
    require_divisible,
    require_non_negative_floats,
    require_positive,
    require_positive_floats,
    require_probabilities,
)

METER_MODEL_TYPE = "vlzoo_meter"

# METER's image tower: OpenAI CLIP ViT-B/16 without its last residual block (meter.md §2.1).
VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 11,
    "num_attention_heads": 12,
    "image_size": 288,
    "patch_size": 16,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
# The Swin-B tower of `meter_swinbase_384_roberta_pretrain.ckpt` (timm `swin_base_patch4_window12_384_in22k`):
# transformers' `SwinModel` computes what the original's does, its final LayerNorm on every token.
SWIN_DEFAULTS = {
    "model_type": "swin",
    "image_size": 384,
    "patch_size": 4,
    "embed_dim": 128,
    "depths": [2, 2, 18, 2],
    "num_heads": [4, 8, 16, 32],
    "window_size": 12,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
# METER's text tower: roberta-base (meter.md §2.2).
TEXT_DEFAULTS = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
}
VQA_NUM_LABELS = 3129
SNLI_LABELS = ("contradiction", "neutral", "entailment")
NLVR2_LABELS = ("False", "True")


def _labels(names: tuple[str, ...] | int) -> dict:
    names = tuple(f"LABEL_{i}" for i in range(names)) if isinstance(names, int) else names
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}


# The released checkpoints (meter.md §4): the resolution is that of the stored position table.
PRESETS: dict[str, dict] = {
    "clip16-288-pretrain": {"vision_config": {"image_size": 288}},
    "clip16-224-pretrain": {"vision_config": {"image_size": 224}},
    "clip16-288-vqa": {"vision_config": {"image_size": 576}, **_labels(VQA_NUM_LABELS)},
    "clip16-288-nlvr2": {"vision_config": {"image_size": 288}, "type_vocab_size": 3, **_labels(NLVR2_LABELS)},
    "clip16-288-snli": {"vision_config": {"image_size": 384}, **_labels(SNLI_LABELS)},
    "clip16-288-flickr": {"vision_config": {"image_size": 384}},
    "clip16-288-coco": {"vision_config": {"image_size": 384}},
    "swin-384-pretrain": {"vision_config": {"model_type": "swin"}},
}


def _with_defaults(value, defaults: dict, cls: type) -> object:
    """A sub-config: None gives METER's tower, a dict updates METER's tower (not the transformers class default).

    A vision dict with `"model_type": "swin"` (or a `SwinConfig`) is the Swin tower, updated from `SWIN_DEFAULTS`."""
    if value is None:
        return dict(defaults)
    if cls is CLIPVisionConfig and (
        isinstance(value, SwinConfig) or (isinstance(value, dict) and value.get("model_type") == "swin")
    ):
        return value if isinstance(value, SwinConfig) else {**SWIN_DEFAULTS, **value}
    if isinstance(value, dict):
        merged = {**defaults, **value}
        if cls is CLIPVisionConfig and "hidden_size" in value and "num_attention_heads" not in value:
            merged["num_attention_heads"] = max(value["hidden_size"] // 64, 1)  # the released code's width // 64
        return merged
    if not isinstance(value, cls):
        raise TypeError(f"expected a dict or a {cls.__name__}, got {type(value).__name__}")
    return value


@strict
class MeterConfig(PreTrainedConfig):
    r"""
    METER (Dou et al., CVPR 2022): a CLIP image tower and a RoBERTa text tower, projected to a common width and fused
    by co-attention layers, with task heads on the pooled features `text pooled ‖ image pooled`.

    Where the released code (zdou0830/METER @ f4f0934) is more specific than the paper, this follows the code:
    the CLIP tower keeps only the first 11 of CLIP's 12 residual blocks (`vision_config.num_hidden_layers`),
    applies `ln_post` to every token and drops `visual.proj`; the co-attention layers are BERT post-LN blocks with
    LayerNorm eps 1e-12 while both towers use 1e-5; the two streams are updated in parallel (both layer-i blocks
    read the layer-(i-1) outputs); the modality token-type embeddings are added after the projections.

    The Swin-B variant (`swin-384-pretrain`) has a transformers `SwinConfig` as `vision_config`: its image stream
    has no class token, so the image pooler reads the mean of the fused image tokens (the original's `avgpool`).

    Args:
        vision_config (`dict`, `CLIPVisionConfig` or `SwinConfig`): the CLIP image tower (QuickGELU, eps 1e-5,
            heads = width // 64). A dict updates METER's tower (ViT-B/16, 11 blocks, 288 px), not transformers' CLIP
            default; without `num_attention_heads` it gets the released `hidden_size // 64`. A dict with
            `"model_type": "swin"` updates the Swin-B tower instead (`SWIN_DEFAULTS`).
        text_config (`dict` or `RobertaConfig`): the RoBERTa text tower (roberta-base: eps 1e-5, pad id 1).
        hidden_size (`int`): width H of the co-attention layers (768).
        num_hidden_layers (`int`): co-attention layer pairs (one text and one image layer each; 6).
        num_attention_heads (`int`): heads of every co-attention (self and cross) attention (12).
        intermediate_size (`int`): FFN width of the co-attention layers (3072).
        hidden_act (`str`): FFN activation of the co-attention layers and the MLM transform (exact erf "gelu").
        layer_norm_eps (`float`): eps of the co-attention LayerNorms and of the MLM transform (1e-12, BERT's).
        classifier_layer_norm_eps (`float`): eps of the LayerNorm in the VQA/NLVR2/SNLI-VE classifiers (1e-5).
        type_vocab_size (`int`): rows of the modality token-type embedding: 0 = text, 1 = image (2 = second image
            of NLVR2, whose checkpoints have 3 rows).
        hidden_dropout_prob (`float`), attention_probs_dropout_prob (`float`): dropout of the co-attention layers.
        initializer_range (`float`): std of the normal init of linear and embedding weights.
        id2label / label2id: the answers (VQA: 3129, not stored in the checkpoints), NLVR2 (False, True) or SNLI-VE
            (contradiction, neutral, entailment) classes.
    """

    model_type = METER_MODEL_TYPE
    # the vision tower is CLIP's unless the dict names another model type (Swin)
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(AutoConfig, model_type="clip_vision_model"),
        "text_config": RobertaConfig,
    }

    vision_config: dict | CLIPVisionConfig | SwinConfig | None = None
    text_config: dict | RobertaConfig | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    classifier_layer_norm_eps: float = 1e-5
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.vision_config = _with_defaults(self.vision_config, VISION_DEFAULTS, CLIPVisionConfig)
        self.text_config = _with_defaults(self.text_config, TEXT_DEFAULTS, RobertaConfig)
        require_positive(self, "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        require_positive(self, "type_vocab_size")
        require_divisible(self, "hidden_size", "num_attention_heads")
        require_positive_floats(self, "layer_norm_eps", "classifier_layer_norm_eps")
        require_probabilities(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        require_non_negative_floats(self, "initializer_range")
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a ValueError naming the fields when the towers cannot feed the co-attention layers."""
        vision, text = self.vision_config, self.text_config
        if not isinstance(vision, (CLIPVisionConfig, SwinConfig)) or not isinstance(text, RobertaConfig):
            return
        if vision.image_size < vision.patch_size:
            raise ValueError(
                f"vision_config.image_size ({vision.image_size}) is smaller than vision_config.patch_size "
                f"({vision.patch_size}): the image tower would see no patch"
            )
        if text.max_position_embeddings <= text.pad_token_id + 1:
            raise ValueError(
                f"text_config.max_position_embeddings ({text.max_position_embeddings}) leaves no position for a "
                f"token: RoBERTa positions start at pad_token_id + 1 = {text.pad_token_id + 1}"
            )

    @property
    def uses_swin(self) -> bool:
        """Whether the image tower is Swin (no class token: the image pooler reads the mean token)."""
        return isinstance(self.vision_config, SwinConfig)

    @property
    def max_text_length(self) -> int:
        """The longest text the RoBERTa position table holds (positions start at `pad_token_id + 1`)."""
        return self.text_config.max_position_embeddings - self.text_config.pad_token_id - 1

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MeterConfig":
        """The configuration of a released checkpoint (`clip16-288-pretrain`, `clip16-288-vqa`, ...).

        `overrides` update top-level fields; `vision_config`/`text_config` dicts update the preset's towers.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown METER preset {name!r}; valid presets: {', '.join(PRESETS)}")
        values = copy.deepcopy(PRESETS[name])
        for key in ("vision_config", "text_config"):
            values[key] = {**values.get(key, {}), **(overrides.pop(key, None) or {})}
        values.update(overrides)
        return cls(**values)


__all__ = ["METER_MODEL_TYPE", "MeterConfig", "PRESETS", "SWIN_DEFAULTS", "TEXT_DEFAULTS", "VISION_DEFAULTS"]
