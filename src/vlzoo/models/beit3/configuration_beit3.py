"""Configuration of BEiT-3, the Multiway Transformer of "Image as a Foreign Language" (Wang et al., CVPR 2023)."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from vlzoo.layers.config_checks import (
    require_divisible,
    require_finite,
    require_non_negative,
    require_non_negative_floats,
    require_one_of,
    require_positive,
    require_positive_floats,
    require_probabilities,
)

BEIT3_MODEL_TYPE = "vlzoo_beit3"
# fairseq's offset: rows 0 and 1 of both position tables are never used (beit3.md §2.4)
POSITION_OFFSET = 2


@strict
class Beit3Config(PreTrainedConfig):
    r"""
    BEiT-3 as released (torchscale `BEiT3` + the heads of `microsoft/unilm/beit3/modeling_finetune.py`).

    Where the released code differs from the paper (beit3.md §1): every q/k/v/out projection, the attention sub-LN,
    both block LayerNorms, the FFN (with its sub-LN) and the final LayerNorm exist once per modality (`vision` and
    `language` experts, routed by position: image tokens first); attention is ONE softmax over the joint sequence
    [image ; text]; there is no vision-language FFN expert; blocks are pre-LN with Magneto sub-LNs; positions are
    learned tables (one per modality) whose first two rows are unused (fairseq offset), restarting at row 2 for the
    text part.

    Args:
        hidden_size (`int`): token width D (768 base, 1024 large).
        num_hidden_layers (`int`): number of multiway layers (12 base, 24 large).
        num_attention_heads (`int`): heads (12 base, 16 large; head dim 64). Not stored in the released weights.
        intermediate_size (`int`): FFN width (4D).
        hidden_act (`str`): FFN activation, exact erf GELU.
        layer_norm_eps (`float`): eps of every LayerNorm (1e-5).
        vocab_size (`int`): rows of the text embedding (64010: 64002 tokenizer ids plus 8 unused rows).
        max_position_embeddings (`int`): rows of the text position table (torchscale `max_source_positions`, 1024);
            its first two rows are unused, so texts hold at most `max_position_embeddings - 2` tokens.
        image_size (`int`), patch_size (`int`), num_channels (`int`): the square image and patch grid (224/384/480/768
            px per released head, patch 16, RGB). The vision table has `grid**2 + 1 + 2` rows.
        final_layer_norm (`bool`): the multiway LayerNorm after the last layer (torchscale `normalize_output`). The
            released VQA and ImageNet checkpoints have none; pretrained, retrieval, NLVR2 and captioning do.
        hidden_dropout_prob, attention_dropout, activation_dropout (`float`): dropouts (0 in every release).
        drop_path_rate (`float`): stochastic depth, linearly increasing over the layers (training only).
        initializer_range (`float`): std of the truncated-normal init of linear weights.
        logit_scale_init_value (`float`): initial log of the retrieval temperature, `log(1/0.07)`.
        classifier_hidden_size (`int`, optional): width of the hidden layer of the VQA and NLVR2 heads (2D).
        bos_token_id, pad_token_id, eos_token_id, mask_token_id (`int`): the XLM-R sentencepiece ids (`<s>` 0,
            `<pad>` 1, `</s>` 2, `<mask>` = sentencepiece size + 1, 64001 for `beit3.spm`).
    """

    model_type = BEIT3_MODEL_TYPE

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    vocab_size: int = 64010
    max_position_embeddings: int = 1024
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    final_layer_norm: bool = True
    hidden_dropout_prob: float | int = 0.0
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    drop_path_rate: float | int = 0.0
    initializer_range: float = 0.02
    logit_scale_init_value: float | int = 2.6592600369327779
    classifier_hidden_size: int | None = None
    bos_token_id: int | None = 0
    pad_token_id: int | None = 1
    eos_token_id: int | None = 2
    mask_token_id: int = 64001

    def __post_init__(self, **kwargs):
        if self.classifier_hidden_size is None:
            self.classifier_hidden_size = 2 * self.hidden_size
        self.validate_architecture()
        super().__post_init__(**kwargs)

    @property
    def grid_size(self) -> int:
        """Patches per side of the image grid."""
        return self.image_size // self.patch_size

    @property
    def num_vision_tokens(self) -> int:
        """Class token plus patches: where the text part of a joint sequence starts."""
        return self.grid_size**2 + 1

    @property
    def max_text_length(self) -> int:
        """The longest text the position table covers."""
        return self.max_position_embeddings - POSITION_OFFSET

    def validate_architecture(self) -> None:
        """Raise a ValueError naming the offending fields when a value is impossible."""
        require_positive(
            self,
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "vocab_size",
            "image_size",
            "patch_size",
            "num_channels",
            "classifier_hidden_size",
        )
        require_non_negative(self, "mask_token_id")
        require_divisible(self, "hidden_size", "num_attention_heads")
        require_positive_floats(self, "layer_norm_eps")
        require_non_negative_floats(self, "initializer_range")
        require_finite(self, "logit_scale_init_value")
        require_probabilities(self, "hidden_dropout_prob", "attention_dropout", "activation_dropout", "drop_path_rate")
        require_one_of(self, "hidden_act", ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "quick_gelu"))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"Beit3Config.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.max_position_embeddings <= POSITION_OFFSET:
            raise ValueError(
                f"Beit3Config.max_position_embeddings ({self.max_position_embeddings}) must exceed the "
                f"{POSITION_OFFSET} unused leading rows of the text position table"
            )
        if self.mask_token_id >= self.vocab_size:
            raise ValueError(
                f"Beit3Config.mask_token_id ({self.mask_token_id}) must be below vocab_size ({self.vocab_size})"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Beit3Config":
        """A released size (`base`, `large`), with field overrides (`image_size=480`, `id2label=...`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown BEiT-3 preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
        values = copy.deepcopy(PRESETS[name])
        values.update(overrides)
        return cls(**values)


# beit3.md §2.1: `_get_base_config` / `_get_large_config`; head dim 64
PRESETS: dict[str, dict] = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}

__all__ = ["BEIT3_MODEL_TYPE", "POSITION_OFFSET", "PRESETS", "Beit3Config"]
