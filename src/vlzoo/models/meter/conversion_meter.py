"""Key map and architecture inference for the released METER checkpoints (PyTorch-Lightning `.ckpt` files)."""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, RobertaTokenizer

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap, Transform, split_qkv
from vlzoo.conversion.escaping import printable, printable_repr

from .configuration_meter import NLVR2_LABELS, PRESETS, SNLI_LABELS, MeterConfig
from .image_processing_meter import MeterImageProcessor
from .modeling_meter import (
    MeterForImageTextRetrieval,
    MeterForPreTraining,
    MeterForQuestionAnswering,
    MeterForVisualEntailment,
    MeterForVisualReasoning,
)
from .processing_meter import MeterProcessor

__all__ = [
    "HEADS",
    "MeterConversionError",
    "MeterConverter",
    "detect_head",
    "head_class",
    "infer_config",
    "key_map",
    "load_roberta_tokenizer",
    "parity_outputs",
]

_VISUAL = "vit_model.visual"
_SWIN = "vit_model"
_RESBLOCKS = f"{_VISUAL}.transformer.resblocks"
_MAX_SIZE = 1 << 20
_MAX_LAYERS = 256

# Head keys in the checkpoint -> the vlzoo head class and the preset family it belongs to (meter.md §2: only the
# heads of the task's loss_names exist). Checked in this order; retrieval files hold itm_score too.
HEADS: dict[str, type[PreTrainedModel]] = {
    "rank_output": MeterForImageTextRetrieval,
    "mlm_score": MeterForPreTraining,
    "vqa_classifier": MeterForQuestionAnswering,
    "nlvr2_classifier": MeterForVisualReasoning,
    "snli_classifier": MeterForVisualEntailment,
}
_PRESET_HEADS = {
    "clip16-288-pretrain": "mlm_score",
    "clip16-224-pretrain": "mlm_score",
    "clip16-288-vqa": "vqa_classifier",
    "clip16-288-nlvr2": "nlvr2_classifier",
    "clip16-288-snli": "snli_classifier",
    "clip16-288-flickr": "rank_output",
    "clip16-288-coco": "rank_output",
    "swin-384-pretrain": "mlm_score",
}


class MeterConversionError(ConversionError):
    """The checkpoint cannot be read as METER (or its architecture cannot be determined)."""


_TOKENIZER_EXPECTED = (
    "a folder holding roberta-base's vocab.json and merges.txt (or a RoBERTa tokenizer folder that AutoTokenizer "
    "loads offline)"
)


def load_roberta_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The RoBERTa byte-level BPE tokenizer of the ``--tokenizer`` folder, read offline.

    ``vocab.json`` with ``merges.txt`` (roberta-base's files, with the folder's tokenizer_config.json if any) are
    read as a ``RobertaTokenizer``; otherwise a folder with tokenizer.json or tokenizer_config.json goes through
    ``AutoTokenizer``. A missing path, a file (such as a ``.spm``) or a folder with neither is refused, naming what
    is expected.
    """
    if not path.exists():
        raise FileNotFoundError(f"--tokenizer {printable(path)} does not exist; METER expects {_TOKENIZER_EXPECTED}")
    if not path.is_dir():
        raise MeterConversionError(f"--tokenizer {printable(path)} is a file; METER expects {_TOKENIZER_EXPECTED}")
    bpe_files = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    tokenizer_files = (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()
    if not bpe_files and not tokenizer_files:
        raise MeterConversionError(
            f"--tokenizer {printable(path)} holds neither vocab.json and merges.txt nor tokenizer.json / "
            f"tokenizer_config.json; METER expects {_TOKENIZER_EXPECTED}"
        )
    loader = RobertaTokenizer if bpe_files else AutoTokenizer
    try:
        tokenizer = loader.from_pretrained(path, local_files_only=True)
    except Exception as error:  # the tokenizer libraries raise many types on damaged files; all mean "unusable"
        raise MeterConversionError(
            f"--tokenizer {printable(path)} cannot be loaded ({printable(type(error).__name__)}: "
            f"{printable(' '.join(str(error).split()), limit=300)}); METER expects {_TOKENIZER_EXPECTED}"
        ) from None
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise MeterConversionError(
            f"--tokenizer {printable(path)} loads as {type(tokenizer).__name__}, not a tokenizer; METER expects "
            f"{_TOKENIZER_EXPECTED}"
        )
    return tokenizer


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise MeterConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim:
        raise MeterConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} dimension(s)")
    return tuple(int(s) for s in tensor.shape)


def _same(what: str, value: int, reference: str, expected: int) -> None:
    if value != expected:
        raise MeterConversionError(f"{what} is {value} but {reference} is {expected}: the shapes are inconsistent")


def _bounded(name: str, value: int, source: str, *, minimum: int = 1, maximum: int = _MAX_SIZE) -> int:
    if not minimum <= value <= maximum:
        raise MeterConversionError(
            f"the inferred {name} is {value} (from {source}); expected {minimum} to {maximum}: the checkpoint is "
            "damaged or not a METER checkpoint"
        )
    return int(value)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    compiled = re.compile(pattern)
    found = sorted({int(m.group(1)) for key in state_dict if (m := compiled.match(key))})
    if found != list(range(len(found))):
        raise MeterConversionError(f"layers matching {pattern!r} are not numbered 0..n-1: {found}")
    return found


def detect_head(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The head prefix the checkpoint holds (one of `HEADS`); an error names what was found."""
    present = [prefix for prefix in HEADS if any(key.startswith(prefix + ".") for key in state_dict)]
    if "rank_output" in present and "itm_score.fc.weight" not in state_dict:
        raise MeterConversionError("the checkpoint has rank_output but no itm_score: a retrieval file holds both")
    if "mlm_score" in present and "itm_score.fc.weight" not in state_dict:
        raise MeterConversionError("the checkpoint has mlm_score but no itm_score: a pretraining file holds both")
    if len(present) != 1:
        found = ", ".join(present) or "none"
        raise MeterConversionError(
            f"a METER checkpoint holds exactly one task head of {', '.join(HEADS)} (pretraining: mlm_score and "
            f"itm_score; retrieval: rank_output and itm_score); this one holds {found}"
        )
    return present[0]


def _sacred_config(original_config: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """The original sacred config: the one the Lightning file stores in `hyper_parameters.config`, updated by
    `--original-config` (its `sacred_config` entry, or the dict itself when it is a flat sacred config)."""
    stored = extra.get("hyper_parameters") if isinstance(extra, Mapping) else None
    stored = stored.get("config") if isinstance(stored, Mapping) else None
    merged = dict(stored) if isinstance(stored, Mapping) else {}
    if isinstance(original_config, Mapping):
        given = original_config.get("sacred_config")
        if given is None and ("num_heads" in original_config or "loss_names" in original_config):
            given = original_config
        if given is not None and not isinstance(given, Mapping):
            raise MeterConversionError(f"original_config sacred_config must be an object, got {printable_repr(given)}")
        merged.update(given or {})
    return merged


def _int_field(config: Mapping[str, Any], name: str, source: str) -> int | None:
    value = config.get(name)
    if value is not None and (type(value) is not int or value < 1):
        raise MeterConversionError(f"{source} {name} must be a positive integer, got {printable_repr(value)}")
    return value


def _clip_vision_config(sd: Mapping[str, torch.Tensor], sacred: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The CLIP tower's config (meter.md §2.1) and its width."""
    (width,) = _shape(sd, f"{_VISUAL}.class_embedding", 1)
    conv_out, channels, patch, patch_w = _shape(sd, f"{_VISUAL}.conv1.weight", 4)
    positions, position_width = _shape(sd, f"{_VISUAL}.positional_embedding", 2)
    _bounded("vision width", width, "class_embedding")
    _bounded("patch size", patch, "conv1.weight")
    _same("conv1 output channels", conv_out, "the class_embedding width", width)
    _same("the positional_embedding width", position_width, "the class_embedding width", width)
    _same("conv1 kernel width", patch_w, "its height", patch)
    grid = math.isqrt(max(positions - 1, 0))
    if grid < 1 or grid * grid + 1 != positions:
        raise MeterConversionError(
            f"{_VISUAL}.positional_embedding has {positions} rows; expected a square grid plus a class token"
        )
    blocks = _indices(sd, re.escape(_RESBLOCKS) + r"\.(\d{1,6})\.attn\.in_proj_weight$")
    if not blocks:
        raise MeterConversionError(f"no CLIP blocks found under {_RESBLOCKS}")
    _bounded("CLIP depth", len(blocks), _RESBLOCKS, maximum=_MAX_LAYERS)
    vision_mlp, vision_mlp_in = _shape(sd, f"{_RESBLOCKS}.0.mlp.c_fc.weight", 2)
    _same("the CLIP MLP input width", vision_mlp_in, "the class_embedding width", width)
    image_size = patch * grid
    stored_size = _int_field(sacred, "image_size", "the original config's")
    if stored_size is not None and stored_size != image_size:
        if stored_size < patch:
            raise MeterConversionError(f"the original image_size {stored_size} is below the patch size {patch}")
        image_size = stored_size - stored_size % patch

    config = {
        "hidden_size": width,
        "intermediate_size": vision_mlp,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": max(width // 64, 1),  # hard-coded width // 64 in the released code
        "image_size": image_size,
        "patch_size": patch,
        "num_channels": channels,
    }
    return config, width


def _swin_vision_config(sd: Mapping[str, torch.Tensor], sacred: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The Swin tower's config (timm's `SwinTransformer` as METER builds it) and its output width.

    Stages and blocks are counted from the keys, the window from the relative-position tables ((2w - 1)^2 rows, one
    column per head), the MLP ratio from `fc1`; the resolution from the shifted-window masks the original stores
    (`attn_mask` [windows, w^2, w^2] of the first stage), else the sacred `image_size`.
    """
    embed_dim, channels, patch, patch_w = _shape(sd, f"{_SWIN}.patch_embed.proj.weight", 4)
    _bounded("Swin width", embed_dim, "patch_embed.proj.weight")
    _bounded("patch size", patch, "patch_embed.proj.weight")
    _same("patch_embed kernel width", patch_w, "its height", patch)
    stages = _indices(sd, re.escape(_SWIN) + r"\.layers\.(\d{1,3})\.blocks\.0\.norm1\.weight$")
    if not stages:
        raise MeterConversionError(f"no Swin stages found under {_SWIN}.layers")
    depths, heads, window = [], [], None
    for stage in stages:
        prefix = f"{_SWIN}.layers.{stage}.blocks"
        blocks = _indices(sd, re.escape(prefix) + r"\.(\d{1,4})\.norm1\.weight$")
        _bounded("Swin stage depth", len(blocks), prefix, maximum=_MAX_LAYERS)
        depths.append(len(blocks))
        rows, stage_heads = _shape(sd, f"{prefix}.0.attn.relative_position_bias_table", 2)
        side = math.isqrt(rows)
        if side * side != rows or side % 2 == 0:
            raise MeterConversionError(
                f"{prefix}.0.attn.relative_position_bias_table has {rows} rows; expected (2 * window - 1)^2"
            )
        heads.append(_bounded("Swin heads", stage_heads, "relative_position_bias_table"))
        window = (side + 1) // 2 if window is None else window
    width = embed_dim * 2 ** (len(stages) - 1)
    _same(
        "the final Swin LayerNorm width", _shape(sd, f"{_SWIN}.norm.weight", 1)[0], "embed_dim * 2^(stages-1)", width
    )
    hidden, _ = _shape(sd, f"{_SWIN}.layers.0.blocks.0.mlp.fc1.weight", 2)
    image_size = None
    mask = sd.get(f"{_SWIN}.layers.0.blocks.1.attn_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 3:
        grid = math.isqrt(mask.shape[0])
        if grid * grid == mask.shape[0]:
            image_size = grid * window * patch
    stored = _int_field(sacred, "image_size", "the original config's")
    if stored is not None and image_size is not None and stored != image_size:
        raise MeterConversionError(
            f"the original image_size {stored} differs from the {image_size} px the Swin masks were built for; "
            "converting the Swin tower to another resolution is not supported"
        )
    image_size = image_size or stored
    if image_size is None:
        raise MeterConversionError(
            "the Swin resolution is neither in the checkpoint's masks nor in its config: pass --original-config "
            "with sacred_config.image_size"
        )
    config = {
        "model_type": "swin",
        "image_size": image_size,
        "patch_size": patch,
        "num_channels": channels,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": heads,
        "window_size": window,
        "mlp_ratio": hidden / embed_dim,
        "qkv_bias": f"{_SWIN}.layers.0.blocks.0.attn.qkv.bias" in sd,
    }
    return config, width


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    original_config: Mapping[str, Any] | None = None,
    variant: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> MeterConfig:
    """Read the architecture from the tensor shapes, completed by the original configs.

    Shapes give every width, depth, vocabulary, patch size, resolution, token types and head sizes. They do not give
    the head counts: the fusion's come from the sacred config (`num_heads`, stored in the Lightning file's
    `hyper_parameters`), RoBERTa's from `--original-config` (`tiny_roberta_config_used_for_from_pretrained`) or,
    for the released 768-wide towers, from roberta-base (12); the CLIP tower's are width // 64, as the original
    hard-codes. The image size is the sacred `image_size` when stored (the original resizes its position table to
    it), else that of the stored table.
    """
    if variant is not None and variant not in PRESETS:
        raise MeterConversionError(f"unknown variant {variant!r}; valid variants: {', '.join(PRESETS)}")
    extra = extra or {}
    sd = state_dict
    head = detect_head(sd)
    if variant is not None and _PRESET_HEADS[variant] != head:
        raise MeterConversionError(
            f"variant {variant!r} is a {_PRESET_HEADS[variant]} checkpoint, but this file holds the {head} head"
        )
    sacred = _sacred_config(original_config, extra)

    # image tower (meter.md §2.1; the Swin-B variant when the file holds timm's Swin keys)
    if f"{_SWIN}.patch_embed.proj.weight" in sd:
        vision_config, width = _swin_vision_config(sd, sacred)
    else:
        vision_config, width = _clip_vision_config(sd, sacred)

    # text tower (meter.md §2.2)
    vocab, text_width = _shape(sd, "text_transformer.embeddings.word_embeddings.weight", 2)
    max_positions, _ = _shape(sd, "text_transformer.embeddings.position_embeddings.weight", 2)
    text_types, _ = _shape(sd, "text_transformer.embeddings.token_type_embeddings.weight", 2)
    _bounded("text width", text_width, "word_embeddings")
    _bounded("vocabulary size", vocab, "word_embeddings", minimum=4)
    _bounded("text positions", max_positions, "position_embeddings", minimum=3)
    text_layers = _indices(sd, r"text_transformer\.encoder\.layer\.(\d{1,6})\.attention\.self\.query\.weight$")
    if not text_layers:
        raise MeterConversionError("no RoBERTa layers found under text_transformer.encoder.layer")
    _bounded("RoBERTa depth", len(text_layers), "text_transformer.encoder.layer", maximum=_MAX_LAYERS)
    text_mlp, _ = _shape(sd, "text_transformer.encoder.layer.0.intermediate.dense.weight", 2)
    roberta = original_config.get("tiny_roberta_config_used_for_from_pretrained") if original_config else None
    text_heads = _int_field(roberta, "num_attention_heads", "original_config tiny_roberta_config") if roberta else None
    if text_heads is None and text_width == 768:
        text_heads = 12  # roberta-base, what every released model uses
    if text_heads is None:
        raise MeterConversionError(
            f"the RoBERTa head count is not stored in the weights and the text width {text_width} is not "
            "roberta-base's: pass --original-config with tiny_roberta_config_used_for_from_pretrained."
            "num_attention_heads"
        )
    if text_width % text_heads:
        raise MeterConversionError(f"{text_heads} RoBERTa heads do not divide the text width {text_width}")

    # fusion (meter.md §2.3-2.5)
    hidden, text_in = _shape(sd, "cross_modal_text_transform.weight", 2)
    hidden_i, image_in = _shape(sd, "cross_modal_image_transform.weight", 2)
    _bounded("fusion width", hidden, "cross_modal_text_transform")
    _same("cross_modal_text_transform input width", text_in, "the RoBERTa width", text_width)
    _same("cross_modal_image_transform input width", image_in, "the image tower's width", width)
    _same("cross_modal_image_transform output width", hidden_i, "the text transform's", hidden)
    token_types, _ = _shape(sd, "token_type_embeddings.weight", 2)
    _bounded("token types", token_types, "token_type_embeddings", minimum=2, maximum=16)
    fusion = _indices(sd, r"cross_modal_text_layers\.(\d{1,6})\.attention\.self\.query\.weight$")
    image_fusion = _indices(sd, r"cross_modal_image_layers\.(\d{1,6})\.attention\.self\.query\.weight$")
    if not fusion or fusion != image_fusion:
        raise MeterConversionError(
            f"expected as many cross_modal_text_layers as cross_modal_image_layers (at least one); got "
            f"{len(fusion)} and {len(image_fusion)}"
        )
    _bounded("fusion depth", len(fusion), "cross_modal_text_layers", maximum=_MAX_LAYERS)
    fusion_mlp, _ = _shape(sd, "cross_modal_text_layers.0.intermediate.dense.weight", 2)
    fusion_heads = _int_field(sacred, "num_heads", "the original config's")
    if fusion_heads is None and variant is not None:
        fusion_heads = 12
    if fusion_heads is None and hidden == 768:
        fusion_heads = 12  # the released num_heads
    if fusion_heads is None:
        raise MeterConversionError(
            "the fusion head count is not stored in the weights: the file has no hyper_parameters.config.num_heads; "
            "pass --original-config with sacred_config.num_heads"
        )
    if hidden % fusion_heads:
        raise MeterConversionError(f"{fusion_heads} fusion heads (num_heads) do not divide the fusion width {hidden}")

    labels: dict[str, Any] = {}
    if head == "vqa_classifier":
        num_labels, _ = _shape(sd, "vqa_classifier.3.weight", 2)
        names = [f"LABEL_{i}" for i in range(_bounded("VQA answers", num_labels, "vqa_classifier.3.weight"))]
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    elif head in ("nlvr2_classifier", "snli_classifier"):
        names = NLVR2_LABELS if head == "nlvr2_classifier" else SNLI_LABELS
        num_labels, _ = _shape(sd, f"{head}.3.weight", 2)
        _same(f"{head}.3.weight rows", num_labels, "the number of classes", len(names))
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    if head == "nlvr2_classifier" and token_types < 3:
        raise MeterConversionError(
            f"an NLVR2 checkpoint needs 3 token_type_embeddings rows; this one has {token_types}"
        )

    return MeterConfig(
        vision_config=vision_config,
        text_config={
            "vocab_size": vocab,
            "hidden_size": text_width,
            "num_hidden_layers": len(text_layers),
            "num_attention_heads": text_heads,
            "intermediate_size": text_mlp,
            "max_position_embeddings": max_positions,
            "type_vocab_size": text_types,
        },
        hidden_size=hidden,
        num_hidden_layers=len(fusion),
        num_attention_heads=fusion_heads,
        intermediate_size=fusion_mlp,
        type_vocab_size=token_types,
        architectures=[HEADS[head].__name__],
        **labels,
    )


def key_map(config: MeterConfig) -> KeyMap:
    """Ordered (regex, replacement) pairs from the original keys to vlzoo's (heads keep their names under the head
    class, the base model lives under `meter.`); None drops a key."""
    clip_layer = r"meter.vision_model.encoder.layers.\1"
    fusion_layer = r"meter.\1_layers.\2"
    return [*(_swin_key_map() if config.uses_swin else _clip_key_map(clip_layer)), *_shared_key_map(fusion_layer)]


def _swin_key_map() -> KeyMap:
    """timm's `SwinTransformer` keys (METER's `vit_model`) to transformers' `SwinModel`'s."""
    block = r"meter.vision_model.encoder.layers.\1.blocks.\2"
    swin_block = r"vit_model\.layers\.(\d+)\.blocks\.(\d+)"
    # fmt: off
    return [
        # the unused ImageNet classifier and the buffers transformers rebuilds (shift masks, position indices)
        (r"vit_model\.head\.(weight|bias)", None),
        (rf"{swin_block}\.attn_mask", None),
        (rf"{swin_block}\.attn\.relative_position_index", None),
        (r"vit_model\.patch_embed\.proj\.(weight|bias)", r"meter.vision_model.embeddings.patch_embeddings.projection.\1"),
        (r"vit_model\.patch_embed\.norm\.(weight|bias)", r"meter.vision_model.embeddings.norm.\1"),
        (rf"{swin_block}\.norm1\.(weight|bias)", block + r".layernorm_before.\3"),
        (rf"{swin_block}\.attn\.qkv\.(weight|bias)", block + r".attention.qkv.\3"),
        (rf"{swin_block}\.attn\.proj\.(weight|bias)", block + r".attention.o_proj.\3"),
        (rf"{swin_block}\.attn\.relative_position_bias_table",
         block + r".attention.relative_position_bias.relative_position_bias_table"),
        (rf"{swin_block}\.norm2\.(weight|bias)", block + r".layernorm_after.\3"),
        (rf"{swin_block}\.mlp\.(fc1|fc2)\.(weight|bias)", block + r".mlp.\3.\4"),
        (r"vit_model\.layers\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)",
         r"meter.vision_model.encoder.layers.\1.downsample.\2"),
        (r"vit_model\.norm\.(weight|bias)", r"meter.vision_model.layernorm.\1"),
    ]
    # fmt: on


def _clip_key_map(clip_layer: str) -> KeyMap:
    # fmt: off
    return [
        # text-side leftovers of the OpenAI CLIP model
        (r"vit_model\.positional_embedding", None),
        (r"vit_model\.ln_final\.(weight|bias)", None),
        # CLIP tower
        (r"vit_model\.visual\.class_embedding", "meter.vision_model.embeddings.class_embedding"),
        (r"vit_model\.visual\.positional_embedding", "meter.vision_model.embeddings.position_embedding.weight"),
        (r"vit_model\.visual\.conv1\.weight", "meter.vision_model.embeddings.patch_embedding.weight"),
        (r"vit_model\.visual\.ln_pre\.(weight|bias)", r"meter.vision_model.pre_layrnorm.\1"),
        (r"vit_model\.visual\.ln_post\.(weight|bias)", r"meter.vision_model.post_layernorm.\1"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.attn\.in_proj_(weight|bias)", clip_layer + r".self_attn.in_proj.\2"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.attn\.out_proj\.(weight|bias)", clip_layer + r".self_attn.out_proj.\2"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.ln_1\.(weight|bias)", clip_layer + r".layer_norm1.\2"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.ln_2\.(weight|bias)", clip_layer + r".layer_norm2.\2"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.mlp\.c_fc\.(weight|bias)", clip_layer + r".mlp.fc1.\2"),
        (rf"{re.escape(_RESBLOCKS)}\.(\d+)\.mlp\.c_proj\.(weight|bias)", clip_layer + r".mlp.fc2.\2"),
    ]
    # fmt: on


def _shared_key_map(fusion_layer: str) -> KeyMap:
    # fmt: off
    return [
        # a transformers-4.6 buffer and the unused RoBERTa pooler
        (r"text_transformer\.embeddings\.position_ids", None),
        (r"text_transformer\.pooler\.dense\.(weight|bias)", None),
        # RoBERTa: transformers' own module, the same names
        (r"text_transformer\.(embeddings|encoder)\.(.+)", r"meter.text_model.\1.\2"),
        # projections, modality token types, poolers
        (r"cross_modal_(text|image)_transform\.(weight|bias)", r"meter.\1_projection.\2"),
        (r"token_type_embeddings\.weight", "meter.token_type_embeddings.weight"),
        (r"cross_modal_(text|image)_pooler\.dense\.(weight|bias)", r"meter.\1_pooler.dense.\2"),
        # co-attention layers (BertCrossLayer -> TransformerLayer)
        (r"cross_modal_(text|image)_layers\.(\d+)\.attention\.self\.query\.(weight|bias)", fusion_layer + r".self_attn.q_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.attention\.self\.key\.(weight|bias)", fusion_layer + r".self_attn.k_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.attention\.self\.value\.(weight|bias)", fusion_layer + r".self_attn.v_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.attention\.output\.dense\.(weight|bias)", fusion_layer + r".self_attn.out_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", fusion_layer + r".layer_norm1.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.crossattention\.self\.query\.(weight|bias)", fusion_layer + r".cross_attn.q_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.crossattention\.self\.key\.(weight|bias)", fusion_layer + r".cross_attn.k_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.crossattention\.self\.value\.(weight|bias)", fusion_layer + r".cross_attn.v_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.crossattention\.output\.dense\.(weight|bias)", fusion_layer + r".cross_attn.out_proj.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.crossattention\.output\.LayerNorm\.(weight|bias)", fusion_layer + r".cross_attn_layer_norm.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.intermediate\.dense\.(weight|bias)", fusion_layer + r".mlp.fc1.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.output\.dense\.(weight|bias)", fusion_layer + r".mlp.fc2.\3"),
        (r"cross_modal_(text|image)_layers\.(\d+)\.output\.LayerNorm\.(weight|bias)", fusion_layer + r".layer_norm2.\3"),
        # heads, same names
        (r"mlm_score\.(bias|decoder\.weight|transform\.dense\.(?:weight|bias)|transform\.LayerNorm\.(?:weight|bias))", r"mlm_score.\1"),
        (r"itm_score\.fc\.(weight|bias)", r"itm_score.fc.\1"),
        (r"rank_output\.(weight|bias)", r"rank_output.\1"),
        (r"(vqa|nlvr2|snli)_classifier\.([013])\.(weight|bias)", r"\1_classifier.\2.\3"),
    ]
    # fmt: on


def transforms(config: MeterConfig) -> dict[str, Transform]:
    """Split the fused q/k/v projections (rows q, k, v): the CLIP blocks' `nn.MultiheadAttention.in_proj_*`, or
    the Swin blocks' `attn.qkv`."""
    if config.uses_swin:
        return {
            r"meter\.vision_model\.encoder\.layers\.\d+\.blocks\.\d+\.attention\.qkv\.(weight|bias)": split_qkv("qkv")
        }
    return {r"meter\.vision_model\.encoder\.layers\.\d+\.self_attn\.in_proj\.(weight|bias)": split_qkv("in_proj")}


@torch.no_grad()
def parity_outputs(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run the converted head (eval mode, eager attention) on the fixture inputs; names follow `output.*`."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if isinstance(model, MeterForVisualReasoning):
        pixels = torch.stack([inputs["pixel_values_0"], inputs["pixel_values_1"]], dim=1)
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        results = {"nlvr2_logits": out.logits}
        for index, one in enumerate(out.model_outputs):
            results[f"text_feats_pass{index + 1}"] = one.text_last_hidden_state
            results[f"image_feats_pass{index + 1}"] = one.image_last_hidden_state
            results[f"cls_feats_pass{index + 1}"] = one.pooler_output
            results[f"image_encoder_last_hidden_state_{index}"] = one.image_encoder_last_hidden_state
        results["text_encoder_last_hidden_state"] = out.model_outputs[0].text_encoder_last_hidden_state
        if "labels" in inputs:
            results["nlvr2_loss"] = torch.nn.functional.cross_entropy(out.logits, inputs["labels"])
        return results
    pixels = inputs["pixel_values"]
    if isinstance(model, MeterForImageTextRetrieval):
        # every image with every text, pair p = i * B + j (image i, text j), reshaped to [images, texts, ...]
        images, texts = pixels.shape[0], ids.shape[0]
        out = model(
            input_ids=ids.repeat(images, 1),
            attention_mask=mask.repeat(images, 1),
            pixel_values=pixels.repeat_interleave(texts, dim=0),
        )
        grid = (images, texts)
        fused = out.model_output
        itm = out.itm_logits.reshape(*grid, 2)
        # the original CPU load path writes rank_output over the "match" row of itm_score (meter.md §2.6)
        original = torch.stack([itm[..., 0], out.logits.reshape(grid)], dim=-1)
        return {
            "rank_scores": out.logits.reshape(grid),
            "itm_logits": itm,
            "itm_logits_original_cpu_load": original,
            "cls_feats": fused.pooler_output.reshape(*grid, -1),
            "text_feats": fused.text_last_hidden_state.reshape(*grid, *fused.text_last_hidden_state.shape[1:]),
            "image_feats": fused.image_last_hidden_state.reshape(*grid, *fused.image_last_hidden_state.shape[1:]),
            "text_encoder_last_hidden_state": fused.text_encoder_last_hidden_state[:texts],
            "image_encoder_last_hidden_state": fused.image_encoder_last_hidden_state[::texts],
        }
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    fused = out.model_output
    results = {
        "text_feats": fused.text_last_hidden_state,
        "image_feats": fused.image_last_hidden_state,
        "cls_feats": fused.pooler_output,
        "text_encoder_last_hidden_state": fused.text_encoder_last_hidden_state,
        "image_encoder_last_hidden_state": fused.image_encoder_last_hidden_state,
    }
    if isinstance(model, MeterForPreTraining):
        results["itm_logits"] = out.itm_logits
        masked = model(
            input_ids=inputs["input_ids_mlm"], attention_mask=mask, pixel_values=pixels, labels=inputs["mlm_labels"]
        )
        results["mlm_logits"] = masked.mlm_logits
        results["mlm_loss"] = masked.loss
    elif isinstance(model, MeterForQuestionAnswering):
        results["vqa_logits"] = out.logits
        if "vqa_targets" in inputs:
            results["vqa_loss"] = model(
                input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=inputs["vqa_targets"]
            ).loss
    elif isinstance(model, MeterForVisualEntailment):
        results["snli_logits"] = out.logits
        if "labels" in inputs:
            results["snli_loss"] = torch.nn.functional.cross_entropy(out.logits, inputs["labels"])
    return results


class MeterConverter(FamilyConverter):
    """Converts the released METER Lightning `.ckpt` files into the head class their head keys name."""

    family = "METER"
    variants = tuple(PRESETS)
    required_keys = (
        r"vit_model\.(visual\.class_embedding|patch_embed\.proj\.weight)",  # the CLIP or the Swin tower
        r"text_transformer\.embeddings\.word_embeddings\.weight",
        r"cross_modal_text_transform\.weight",
        r"cross_modal_text_layers\.0\..*",
    )
    position_tables = {r"meter\.vision_model\.embeddings\.position_embedding\.weight": 1}

    def infer_config(self, state_dict, *, original_config, variant, extra) -> MeterConfig:
        return infer_config(state_dict, original_config=original_config, variant=variant, extra=extra)

    def key_map(self, config: MeterConfig) -> KeyMap:
        return key_map(config)

    def transforms(self, config: MeterConfig) -> dict[str, Transform]:
        return transforms(config)

    def build_model(self, config: MeterConfig) -> PreTrainedModel:
        return head_class(config)(config)

    def check_tokenizer(self, tokenizer: Path) -> None:
        """``--tokenizer`` must be roberta-base's files (or a RoBERTa tokenizer folder)."""
        load_roberta_tokenizer(tokenizer)

    def build_processor(
        self, config: MeterConfig, tokenizer: Path | None = None
    ) -> MeterProcessor | MeterImageProcessor:
        """The processor with the ``--tokenizer`` RoBERTa tokenizer, or without it the image processor alone at the
        checkpoint's resolution: the released models use roberta-base's files, which vlzoo does not ship."""
        if tokenizer is None:
            return MeterProcessor.image_processor_for(config)
        try:
            return MeterProcessor.from_model_config(config, tokenizer=load_roberta_tokenizer(tokenizer))
        except ValueError as error:
            raise MeterConversionError(
                f"--tokenizer {printable(tokenizer)} does not fit the checkpoint: {error}"
            ) from None

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return parity_outputs(model, inputs)


def head_class(config: MeterConfig) -> type[PreTrainedModel]:
    """The head class `infer_config` recorded in `config.architectures`."""
    names = {cls.__name__: cls for cls in HEADS.values()}
    architectures = config.architectures or []
    if len(architectures) != 1 or architectures[0] not in names:
        raise MeterConversionError(
            f"config.architectures must name one of {', '.join(names)}; got {printable_repr(architectures)}"
        )
    return names[architectures[0]]
