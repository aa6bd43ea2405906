"""Key map and architecture inference for TransVG++ training checkpoints (what the original train.py writes)."""

import re
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap, Transform
from vlzoo.conversion.escaping import printable_repr
from vlzoo.models.transvg.conversion_transvg import loss_and_accuracy, training_args
from vlzoo.models.transvg.processing_transvg import TransvgProcessor

from .configuration_transvg_pp import _VIT, PRESETS, TransvgPlusPlusConfig
from .modeling_transvg_pp import TransvgPlusPlusForVisualGrounding

logger = logging.get_logger(__name__)

_BERT = "language_branch.language_backbone"
_VISUAL = "visual_branch"
_MAX_SIZE = 1 << 20


class TransvgPlusPlusConversionError(ConversionError):
    """The checkpoint cannot be read as TransVG++, or its architecture cannot be determined."""


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise TransvgPlusPlusConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim or not all(0 < size <= _MAX_SIZE for size in tensor.shape):
        raise TransvgPlusPlusConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} positive sizes")
    return tuple(int(s) for s in tensor.shape)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    compiled = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state_dict if (m := compiled.fullmatch(key))})


def _overrides(original_config: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """`name` (e.g. `bert_config`) at the top of the original config or under `tiny_overrides`, else {}."""
    if original_config is None:
        return {}
    found = original_config.get(name) or (original_config.get("tiny_overrides") or {}).get(name) or {}
    if not isinstance(found, Mapping):
        raise TransvgPlusPlusConversionError(f"original_config {name} must be an object")
    return found


def _heads(given: Any, width: int, what: str, fallback: int | None) -> int:
    heads = given if given is not None else fallback
    if heads is None:
        if width % 64:
            raise TransvgPlusPlusConversionError(
                f"the {what} head count is not stored in the weights and the width {width} is not a multiple of 64: "
                f"pass --original-config with its num_heads / num_attention_heads"
            )
        heads = width // 64
    if type(heads) is not int or heads < 1 or width % heads:
        raise TransvgPlusPlusConversionError(
            f"the {what} head count must be a positive divisor of the width {width}, got {printable_repr(heads)}"
        )
    return heads


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    extra: Mapping[str, Any],
    original_config: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> TransvgPlusPlusConfig:
    """Read the architecture from the shapes and the stored training `args` (transvg.md §3-4).

    Shapes give the ViT width, depth, MLP width, grid (so the image size), the language blocks (those owning
    `lang_modulation` keys) and all BERT sizes. Head counts are not stored: the ViT's come from
    `tiny_overrides.vision_transformer.num_heads` of the original config, else `args.vit_model` (tiny 3, small 6,
    base 12) when the width is that model's, else width / 64; BERT's from `bert_config`, else width / 64.
    """
    sd = state_dict
    args = training_args(extra, original_config)
    for name, supported in (("reg_out_type", "reg_token"), ("language_modulation", "cross_attn")):
        if args.get(name, supported) != supported:
            raise TransvgPlusPlusConversionError(
                f"args.{name} is {printable_repr(args[name])}; only {supported!r} (the README configuration) is supported"
            )
    if args.get("reg_token_in_last_blocks") or args.get("num_vpt"):
        raise TransvgPlusPlusConversionError("reg_token_in_last_blocks and visual prompts (num_vpt) are not supported")
    if "roberta" in str(args.get("bert_model", "bert")).lower():
        raise TransvgPlusPlusConversionError("RoBERTa language branches are not supported (the README uses BERT)")

    width = _shape(sd, f"{_VISUAL}.patch_embed.proj.weight", 4)[0]
    patch = _shape(sd, f"{_VISUAL}.patch_embed.proj.weight", 4)[-1]
    _, pos_width, grid, grid_w = _shape(sd, f"{_VISUAL}.pos_embed", 4)
    if pos_width != width or grid != grid_w:
        raise TransvgPlusPlusConversionError(f"{_VISUAL}.pos_embed is not a square (1, {width}, S, S) table")
    blocks = _indices(sd, rf"{_VISUAL}\.blocks\.(\d+)\.attn\.q_in\.weight")
    if not blocks or blocks != list(range(len(blocks))):
        raise TransvgPlusPlusConversionError(
            f"the ViT blocks are not numbered 0..n-1 with q_in/k_in/v_in: {blocks[:20]}"
        )
    language = _indices(sd, rf"{_VISUAL}\.blocks\.(\d+)\.lang_modulation\.q_in\.weight")
    intermediate = _shape(sd, f"{_VISUAL}.blocks.0.mlp.fc1.weight", 2)[0]
    image_size = grid * patch
    if "imsize" in args and args["imsize"] != image_size:
        raise TransvgPlusPlusConversionError(
            f"args.imsize is {printable_repr(args['imsize'])} but the position table covers {grid}x{grid} patches "
            f"of {patch} px ({image_size} px)"
        )
    vit = _overrides(original_config, "vision_transformer")
    named = _VIT.get(args.get("vit_model"))
    fallback = named[1] if named is not None and named[0] == width else None
    if variant is not None and PRESETS[variant]["hidden_size"] == width:
        fallback = PRESETS[variant]["num_attention_heads"]
    heads = _heads(vit.get("num_heads"), width, "ViT", fallback)

    vocab, text_width = _shape(sd, f"{_BERT}.embeddings.word_embeddings.weight", 2)
    bert = _overrides(original_config, "bert_config")
    max_query_length = args.get("max_query_len", 20)
    if type(max_query_length) is not int or max_query_length < 1:
        raise TransvgPlusPlusConversionError(
            f"args.max_query_len must be a positive int, got {printable_repr(max_query_length)}"
        )
    return TransvgPlusPlusConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": text_width,
            "num_hidden_layers": len(_indices(sd, rf"{_BERT}\.encoder\.layer\.(\d+)\.attention\.self\.query\.weight")),
            "num_attention_heads": _heads(bert.get("num_attention_heads"), text_width, "BERT", None),
            "intermediate_size": _shape(sd, f"{_BERT}.encoder.layer.0.intermediate.dense.weight", 2)[0],
            "max_position_embeddings": _shape(sd, f"{_BERT}.embeddings.position_embeddings.weight", 2)[0],
            "type_vocab_size": _shape(sd, f"{_BERT}.embeddings.token_type_embeddings.weight", 2)[0],
            "layer_norm_eps": float(bert.get("layer_norm_eps", 1e-12)),
        },
        hidden_size=width,
        num_hidden_layers=len(blocks),
        num_attention_heads=heads,
        intermediate_size=intermediate,
        image_size=image_size,
        patch_size=patch,
        language_layers=language,
        use_visual_mask=not args.get("without_visual_mask", False),
        box_head_hidden_size=_shape(sd, "prediction_head.layers.0.weight", 2)[0],
        max_query_length=max_query_length,
    )


def key_map(config: TransvgPlusPlusConfig) -> KeyMap:
    """Ordered (regex, replacement) pairs from the original keys to vlzoo keys; None drops a key."""
    block = rf"{_VISUAL}\.blocks\.(\d+)"
    return [
        # fmt: off
        (r"reg_token", "reg_token"),
        (rf"{_BERT}\.embeddings\.position_ids", None),  # obsolete buffer of transformers < 4.31
        (rf"{_BERT}\.pooler\.dense\.(weight|bias)", None),  # BERT's pooler is never used
        (rf"{_BERT}\.((?:embeddings|encoder)\..*)", r"text_model.\1"),
        (r"text_proj\.(weight|bias)", r"text_projection.\1"),
        (rf"{_VISUAL}\.pos_embed", "position_embeddings"),
        (rf"{_VISUAL}\.patch_embed\.proj\.(weight|bias)", r"patch_embedding.projection.\1"),
        (rf"{block}\.norm1\.(weight|bias)", r"layers.\1.layer_norm1.\2"),
        (rf"{block}\.norm2\.(weight|bias)", r"layers.\1.layer_norm2.\2"),
        (rf"{block}\.attn\.(q|k|v)_in\.(weight|bias)", r"layers.\1.self_attn.\2_proj.\3"),
        (rf"{block}\.attn\.proj\.(weight|bias)", r"layers.\1.self_attn.out_proj.\2"),
        (rf"{block}\.lang_modulation\.(q|k|v)_in\.(weight|bias)", r"layers.\1.cross_attn.\2_proj.\3"),
        (rf"{block}\.lang_modulation\.proj\.(weight|bias)", r"layers.\1.cross_attn.out_proj.\2"),
        (rf"{block}\.mlp\.(fc1|fc2)\.(weight|bias)", r"layers.\1.mlp.\2.\3"),
        (rf"{_VISUAL}\.norm\.(weight|bias)", r"norm.\1"),
        (r"prediction_head\.layers\.(\d+)\.(weight|bias)", r"bbox_head.layers.\1.\2"),
        # fmt: on
    ]


def _flatten_positions(target: str, tensor: torch.Tensor) -> torch.Tensor:
    """The original's channel-first `(1, D, S, S)` table as `(1, S*S, D)` rows in row-major patch order."""
    if tensor.dim() != 4:
        raise TransvgPlusPlusConversionError(f"{target}: expected a (1, D, S, S) table, got {list(tensor.shape)}")
    return tensor.flatten(2).transpose(1, 2).contiguous()


@contextmanager
def _visual_mask(model: TransvgPlusPlusForVisualGrounding, enabled: bool):
    saved = model.config.use_visual_mask
    model.config.use_visual_mask = enabled
    try:
        yield
    finally:
        model.config.use_visual_mask = saved


@torch.no_grad()
def parity_outputs(
    model: TransvgPlusPlusForVisualGrounding, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The transvgpp-tiny fixture's `output.*`: with the checkpoint's mask setting and with the visual mask on."""
    pixel_values, input_ids, attention_mask = inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]
    arguments = {
        "pixel_values": pixel_values,
        "pixel_mask": inputs.get("pixel_mask"),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": inputs.get("target_boxes"),
    }
    text = model.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    with _visual_mask(model, False):
        out = model(**arguments, output_hidden_states=True)
    with _visual_mask(model, True):
        masked = model(**arguments, output_hidden_states=True)
    outputs = {
        "text_features": text,
        "text_padding_mask": 1 - attention_mask.long(),
        "text_projected": model.text_projection(text),
        "patch_embeddings": model.patch_embedding(pixel_values),
        "block3_hidden_states": out.hidden_states[3],
        "last_hidden_states": out.last_hidden_state,
        "reg_token_output": model.norm(out.last_hidden_state[:, 0]),
        "pred_boxes": out.pred_boxes,
        "pred_boxes_visual_mask": masked.pred_boxes,
        "reg_token_output_visual_mask": model.norm(masked.last_hidden_state[:, 0]),
    }
    outputs.update(loss_and_accuracy(out, inputs))
    return outputs


class TransvgPlusPlusConverter(FamilyConverter):
    """Converts TransVG++ training checkpoints (`{'model', 'args', ...}` from the `transvg++` branch's train.py) into
    `TransvgPlusPlusForVisualGrounding` folders. No fine-tuned TransVG++ weights were released."""

    family = "TransVG++"
    variants = tuple(PRESETS)
    required_keys = (r"visual_branch\.patch_embed\.proj\.weight", r"visual_branch\.pos_embed", r"prediction_head\..*")

    def infer_config(self, state_dict, *, original_config, variant, extra) -> TransvgPlusPlusConfig:
        return infer_config(state_dict, extra=extra, original_config=original_config, variant=variant)

    def key_map(self, config: TransvgPlusPlusConfig) -> KeyMap:
        return key_map(config)

    def transforms(self, config: TransvgPlusPlusConfig) -> dict[str, Transform]:
        return {r"position_embeddings": _flatten_positions}

    def build_model(self, config: TransvgPlusPlusConfig) -> PreTrainedModel:
        return TransvgPlusPlusForVisualGrounding(config)

    def build_processor(self, config: TransvgPlusPlusConfig, tokenizer: Path | None = None) -> TransvgProcessor:
        """The uncased BERT vocabulary ships with vlzoo: a ``tokenizer`` path is refused (see ``check_tokenizer``)."""
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        return TransvgProcessor.from_model_config(config)

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return parity_outputs(model, inputs)


__all__ = ["TransvgPlusPlusConversionError", "TransvgPlusPlusConverter", "infer_config", "key_map", "parity_outputs"]
