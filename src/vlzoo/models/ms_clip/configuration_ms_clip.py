"""Configuration of MS-CLIP (modality-shared contrastive language-image pre-training)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from vlzoo.layers.config_checks import (
    require_divisible,
    require_finite,
    require_int_lists,
    require_non_negative,
    require_non_negative_floats,
    require_one_of,
    require_positive,
    require_positive_floats,
    require_probabilities,
)

MS_CLIP_MODEL_TYPE = "vlzoo_ms_clip"


@strict
class MsClipVisionConfig(PreTrainedConfig):
    r"""
    The MS-CLIP image tower: a ViT whose input stem is either a patch embedding (the CLIP baseline) or a residual
    conv stem (MS-CLIP-S "early specialization"), optionally with a parallel CNN branch whose multi-scale features
    replace the token stream through lateral adapters before selected blocks.

    Args:
        hidden_size (`int`): token width W.
        intermediate_size (`int`): MLP width (4W in every released model).
        num_hidden_layers (`int`): number of transformer blocks. The released code counts the conv stem as layer 0,
            so its `VISION.LAYERS: 12` is the stem plus 11 blocks here.
        num_attention_heads (`int`): heads of the vision attention. The released code hard-codes `width // 64`.
        image_size (`int`), patch_size (`int`): the token grid is `image_size // patch_size` on each side; with the
            conv stem the patch size is the stem's total stride.
        num_channels (`int`): input channels (RGB).
        stem_type (`str`): `"patch"` (a `patch_size` convolution without bias) or `"conv"` (the MS-CLIP-S residual
            stem: a stride-2 3x3 conv, four single-conv residual stages doubling the width, a 1x1 conv).
        stem_strides (`list[int]`): strides of the four residual stages of the conv stem; `2 * prod(stem_strides)`
            must equal `patch_size` (released: `[2, 2, 2, 2]` for /32, `[2, 2, 2, 1]` for /16).
        lateral_adapter_layers (`list[int]`): 0-based indices of the blocks before which lateral adapter j runs
            (empty: no parallel branch). The released `PARALLEL_LATERAL_LAYER: [2, 4, 6, 8, 10]` counts the stem as
            layer 0, i.e. `[1, 3, 5, 7, 9]` here.
        branch_strides (`list[int]`): stride of each parallel-branch stage (one per adapter).
        adapter_kernel_sizes (`list[int]`): kernel (= stride) of the depthwise conv that brings branch stage j onto
            the token grid (released /32: `[16, 8, 4, 2, 1]`, /16: `[8, 4, 2, 1, 1]`).
        layer_norm_eps (`float`): every LayerNorm; the released code uses 1e-12 (not CLIP's 1e-5).
        batch_norm_eps (`float`): BatchNorms of the stem, of branch stage 0 and of the adapters (1e-5).
        branch_batch_norm_eps (`float`): BatchNorms inside the residual branch stages 1.. (1e-6 in the released code).
        hidden_act (`str`): MLP activation (`quick_gelu`, `x * sigmoid(1.702 x)`).
        attention_dropout (`float`): attention dropout (0 in every released model).
        initializer_range (`float`): std of the truncated-normal init of linear and conv weights.
    """

    model_type = "vlzoo_ms_clip_vision_model"
    base_config_key = "vision_config"

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 11
    num_attention_heads: int = 12
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    stem_type: str = "conv"
    stem_strides: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    lateral_adapter_layers: list[int] | tuple[int, ...] = (1, 3, 5, 7, 9)
    branch_strides: list[int] | tuple[int, ...] = (2, 2, 2, 2, 2)
    adapter_kernel_sizes: list[int] | tuple[int, ...] = (16, 8, 4, 2, 1)
    layer_norm_eps: float = 1e-12
    batch_norm_eps: float = 1e-5
    branch_batch_norm_eps: float = 1e-6
    hidden_act: str = "quick_gelu"
    attention_dropout: float | int = 0.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # Impossible geometry raises a ValueError here, at construction and when a config.json is loaded.
        self.validate_architecture()
        for name in ("stem_strides", "lateral_adapter_layers", "branch_strides", "adapter_kernel_sizes"):
            setattr(self, name, list(getattr(self, name)))
        super().__post_init__(**kwargs)

    @property
    def grid_size(self) -> int:
        """Tokens per side of the image grid."""
        return self.image_size // self.patch_size

    @property
    def branch_channels(self) -> list[int]:
        """Channels of the parallel-branch stages: W/16, W/8, W/4, W/2, W (released)."""
        base = self.hidden_size // 16
        return [base * 2**j for j in range(len(self.lateral_adapter_layers))]

    def validate_architecture(self):
        """Raise a ValueError naming the offending fields when a value is impossible or the geometry inconsistent."""
        require_positive(
            self,
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "image_size",
            "patch_size",
            "num_channels",
        )
        require_positive_floats(self, "layer_norm_eps", "batch_norm_eps", "branch_batch_norm_eps")
        require_probabilities(self, "attention_dropout")
        require_non_negative_floats(self, "initializer_range")
        require_one_of(self, "stem_type", ("patch", "conv"))
        require_int_lists(self, "stem_strides", "branch_strides", "adapter_kernel_sizes", minimum=1)
        require_int_lists(self, "lateral_adapter_layers", minimum=0)
        require_divisible(self, "hidden_size", "num_attention_heads")
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.stem_type == "conv":
            if self.hidden_size % 16 != 0:
                raise ValueError(f"the conv stem needs hidden_size divisible by 16, got {self.hidden_size}")
            stride = 2
            for s in self.stem_strides:
                stride *= s
            if len(self.stem_strides) != 4 or stride != self.patch_size:
                raise ValueError(
                    f"stem_strides {self.stem_strides} give a total stride of {stride} with 4 stages expected; "
                    f"patch_size is {self.patch_size}"
                )
        adapters = self.lateral_adapter_layers
        if adapters:
            if self.stem_type != "conv":
                raise ValueError("the parallel branch (lateral_adapter_layers) requires stem_type='conv'")
            if len(self.branch_strides) != len(adapters) or len(self.adapter_kernel_sizes) != len(adapters):
                raise ValueError(
                    f"branch_strides ({len(self.branch_strides)}) and adapter_kernel_sizes "
                    f"({len(self.adapter_kernel_sizes)}) need one entry per lateral adapter ({len(adapters)})"
                )
            if list(adapters) != sorted(set(adapters)) or adapters[0] < 0 or adapters[-1] >= self.num_hidden_layers:
                raise ValueError(
                    f"lateral_adapter_layers must be increasing block indices in [0, {self.num_hidden_layers}), "
                    f"got {adapters}"
                )
            stride = 1
            for j, (s, k) in enumerate(zip(self.branch_strides, self.adapter_kernel_sizes, strict=True)):
                stride *= s
                if stride * k != self.patch_size:
                    raise ValueError(
                        f"branch stage {j} has stride {stride} and adapter kernel {k}: their product must equal "
                        f"patch_size ({self.patch_size}) so that the branch lands on the token grid"
                    )


@strict
class MsClipTextConfig(PreTrainedConfig):
    r"""
    The MS-CLIP text tower: a causal pre-LN transformer over CLIP BPE tokens pooled at the end token, as in OpenAI
    CLIP.

    Args:
        vocab_size (`int`): 49408 for the CLIP BPE.
        hidden_size (`int`): width; 768 in MS-CLIP-S because shared blocks need the vision width (CLIP: 512).
        intermediate_size (`int`): MLP width.
        num_hidden_layers (`int`): transformer blocks.
        num_attention_heads (`int`): heads (`TEXT.HEADS`; 12 in MS-CLIP-S). Shared blocks keep the weights of the
            vision block but split them into this many heads.
        max_position_embeddings (`int`): context length (77).
        layer_norm_eps (`float`): 1e-12 in the released code.
        hidden_act (`str`): `quick_gelu`.
        attention_dropout (`float`): 0.
        initializer_range (`float`): std of the truncated-normal init.
        pad_token_id, bos_token_id, eos_token_id (`int`): 0 (the original pads with id 0), 49406, 49407. Each text
            is pooled at its first `eos_token_id` (where the released code's `argmax(input_ids)` lands, and still
            right after `tokenizer.add_tokens`); a row without it, or every row when `eos_token_id` is None, is
            pooled at `argmax(input_ids)` as in the released code.
    """

    model_type = "vlzoo_ms_clip_text_model"
    base_config_key = "text_config"

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-12
    hidden_act: str = "quick_gelu"
    attention_dropout: float | int = 0.0
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 49406
    eos_token_id: int | None = 49407

    def __post_init__(self, **kwargs):
        # Impossible geometry raises a ValueError here, at construction and when a config.json is loaded.
        self.validate_architecture()
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a ValueError naming the offending fields when a value is impossible or the geometry inconsistent."""
        require_positive(
            self,
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        )
        require_positive_floats(self, "layer_norm_eps")
        require_probabilities(self, "attention_dropout")
        require_non_negative_floats(self, "initializer_range")
        require_divisible(self, "hidden_size", "num_attention_heads")


_MS_CLIP_S_B32 = {
    "projection_dim": 512,
    "num_shared_layers": 11,
    "vision_config": {
        "patch_size": 32,
        "stem_strides": [2, 2, 2, 2],
        "branch_strides": [2, 2, 2, 2, 2],
        "adapter_kernel_sizes": [16, 8, 4, 2, 1],
    },
    "text_config": {},
}

PRESETS: dict[str, dict] = {
    # experiments/model/b32-yfcc-msclips.yaml (ImageNet zero-shot 36.7)
    "b32-yfcc": _MS_CLIP_S_B32,
    # experiments/model/b32-laion-msclips.yaml: architecturally identical to b32-yfcc (ImageNet zero-shot 40.2)
    "b32-laion": _MS_CLIP_S_B32,
    # experiments/model/b16-yfcc-msclips.yaml (ImageNet zero-shot 39.0)
    "b16-yfcc": {
        "projection_dim": 512,
        "num_shared_layers": 11,
        "vision_config": {"patch_size": 16, "stem_strides": [2, 2, 2, 1], "branch_strides": [2, 2, 2, 2, 1],
                          "adapter_kernel_sizes": [8, 4, 2, 1, 1]},
        "text_config": {},
    },
    # experiments/model/b32.yaml: the paper's CLIP baseline (no sharing, no stem, no branch); nothing released
    "vanilla": {
        "projection_dim": 512,
        "num_shared_layers": 0,
        "vision_config": {"patch_size": 32, "num_hidden_layers": 12, "stem_type": "patch",
                          "lateral_adapter_layers": [], "branch_strides": [], "adapter_kernel_sizes": []},
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8},
    },
}  # fmt: skip


@strict
class MsClipConfig(PreTrainedConfig):
    r"""
    MS-CLIP-S: a CLIP dual encoder whose image and text transformers share the attention and MLP weights of their
    last `num_shared_layers` blocks, keeping modality-specific LayerNorms, embeddings and projections.

    Where the released code (github.com/Hxyou/MSCLIP @ e25daf3) is more specific than the paper, this follows the
    code: text block i (i >= 1) shares with the vision block that follows the conv stem at the same depth, so with
    12 text blocks and stem + 11 vision blocks the last 11 blocks of both towers are shared; every LayerNorm uses
    eps 1e-12; the lateral adapters replace the tokens (no residual); `logit_scale` is never clamped and starts at
    1.0 (exp = e), not CLIP's log(1/0.07).

    Args:
        vision_config (`dict` or `MsClipVisionConfig`): the image tower.
        text_config (`dict` or `MsClipTextConfig`): the text tower.
        projection_dim (`int`): the joint embedding size E.
        num_shared_layers (`int`): how many trailing blocks of the two towers share attention and MLP weights (0 =
            the vanilla CLIP baseline). Shared blocks are stored once.
        logit_scale_init_value (`float`): initial value of the log temperature parameter (released init: 1.0).
    """

    model_type = MS_CLIP_MODEL_TYPE
    sub_configs_defaults = {"vision_config": MsClipVisionConfig, "text_config": MsClipTextConfig}

    vision_config: dict | MsClipVisionConfig | None = None
    text_config: dict | MsClipTextConfig | None = None
    projection_dim: int = 512
    num_shared_layers: int = 11
    logit_scale_init_value: float | int = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # The towers' own fields are checked by their configs; sharing across them by validate_architecture.
        require_positive(self, "projection_dim")
        require_non_negative(self, "num_shared_layers")
        require_finite(self, "logit_scale_init_value")
        require_non_negative_floats(self, "initializer_range")
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Raise a ValueError naming the offending fields when sharing is impossible."""
        vision, text = self.vision_config, self.text_config
        if not isinstance(vision, MsClipVisionConfig) or not isinstance(text, MsClipTextConfig):
            return
        n = self.num_shared_layers
        if n < 0 or n > min(vision.num_hidden_layers, text.num_hidden_layers):
            raise ValueError(
                f"num_shared_layers ({n}) must be between 0 and the smaller tower depth "
                f"(vision {vision.num_hidden_layers}, text {text.num_hidden_layers})"
            )
        if n and (vision.hidden_size, vision.intermediate_size) != (text.hidden_size, text.intermediate_size):
            raise ValueError(
                "shared blocks need equal widths: vision (hidden_size, intermediate_size) = "
                f"({vision.hidden_size}, {vision.intermediate_size}) but text = "
                f"({text.hidden_size}, {text.intermediate_size})"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MsClipConfig":
        """Build the configuration of a released checkpoint (`b32-yfcc`, `b32-laion`, `b16-yfcc`) or `vanilla`.

        `overrides` update top-level fields; `vision_config`/`text_config` dicts update the preset's sub-configs.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown MS-CLIP preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
        values = copy.deepcopy(PRESETS[name])
        for key in ("vision_config", "text_config"):
            values[key].update(overrides.pop(key, None) or {})
        values.update(overrides)
        return cls(**values)


__all__ = ["MsClipConfig", "MsClipTextConfig", "MsClipVisionConfig", "PRESETS", "MS_CLIP_MODEL_TYPE"]
