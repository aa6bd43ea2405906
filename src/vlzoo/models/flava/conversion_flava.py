"""Key maps and architecture inference for FLAVA checkpoints.

Three source layouts are read (flava.md §4):
- torchmultimodal flat state dicts: `flava_model*.pt` (FLAVAModel), `flava_for_pretraining*.pt` (model + DALL-E
  codebook + loss heads), `FLAVAForClassification` state dicts (`model.*` + `classifier.model.*`);
- the transformers Hub layout (`facebook/flava-full`: `FlavaForPreTraining` with `flava.*`, or `FlavaModel` without
  the prefix; `facebook/flava-image-codebook`), a `config.json` passed as the original config;
- the DALL-E `encoder.pkl` (a pickled module, read as data by the restricted unpickler: nothing is imported or run).
The model class follows from the keys: heads -> `FlavaForPreTraining`, a classifier -> `FlavaForSequenceClassification`,
codebook blocks only -> `FlavaImageCodebook`, otherwise `FlavaModel`.
"""

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, ProcessorMixin

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap, Transform

from .configuration_flava import FlavaConfig
from .modeling_flava import (
    FlavaForPreTraining,
    FlavaForSequenceClassification,
    FlavaImageCodebook,
    FlavaModel,
)

_MAX_SIZE = 1 << 20
_MAX_LAYERS = 256

# torchmultimodal encoder-layer names -> vlzoo (`vlzoo.layers` names) ; transformers names -> vlzoo
_LAYER_NAMES_TMM = {
    r"attention\.query": "self_attn.q_proj",
    r"attention\.key": "self_attn.k_proj",
    r"attention\.value": "self_attn.v_proj",
    r"attention\.output": "self_attn.out_proj",
    r"feedforward\.model\.0": "mlp.fc1",
    r"feedforward\.model\.2": "mlp.fc2",
    r"attention_layernorm": "layer_norm1",
    r"feedforward_layernorm": "layer_norm2",
}
_LAYER_NAMES_HF = {
    r"attention\.attention\.query": "self_attn.q_proj",
    r"attention\.attention\.key": "self_attn.k_proj",
    r"attention\.attention\.value": "self_attn.v_proj",
    r"attention\.output\.dense": "self_attn.out_proj",
    r"intermediate\.dense": "mlp.fc1",
    r"output\.dense": "mlp.fc2",
    r"layernorm_before": "layer_norm1",
    r"layernorm_after": "layer_norm2",
}
_TOWERS_TMM = {"image_encoder": "image_model", "text_encoder": "text_model", "mm_encoder": "multimodal_model"}
_TOWERS_HF = {"image_model": "image_model", "text_model": "text_model", "multimodal_model": "multimodal_model"}


class FlavaConversionError(ConversionError):
    """The checkpoint cannot be read as FLAVA (or its architecture cannot be determined)."""


# ---------------------------------------------------------------------------------------------------------------
# Layout detection
# ---------------------------------------------------------------------------------------------------------------


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str, str]:
    """`(layout, model kind, prefix of the backbone keys)`: layout "tmm" (torchmultimodal), "hf" (transformers) or
    "dalle" (a bare DALL-E encoder); kind "model", "pretraining", "classification" or "codebook"."""
    keys = list(state_dict)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if keys and all(k.startswith("blocks.") for k in keys):
        layout = "hf" if any(k.endswith(".weight") for k in keys) else "dalle"
        return layout, "codebook", ""
    if has("model.image_encoder.") or has("model.text_encoder.") or has("model.mm_encoder."):
        kind = "pretraining" if has("loss.") else "classification" if has("classifier.") else "model"
        if kind == "model":
            raise FlavaConversionError(
                "the checkpoint wraps a FLAVA model under 'model.' but has neither pretraining losses ('loss.*') nor "
                "a classifier ('classifier.*')"
            )
        return "tmm", kind, "model."
    if has("image_encoder.") or has("text_encoder.") or has("mm_encoder."):
        return "tmm", "model", ""
    if has("flava.image_model.") or has("flava.text_model."):
        if has("classifier."):
            return "hf", "classification", "flava."
        return "hf", "pretraining", "flava."
    if has("image_model.") or has("text_model."):
        return "hf", "model", ""
    raise FlavaConversionError(
        "this is not a FLAVA checkpoint: expected torchmultimodal keys ('image_encoder.*', 'model.image_encoder.*'), "
        "transformers keys ('image_model.*', 'flava.image_model.*') or DALL-E codebook keys ('blocks.*')"
    )


# ---------------------------------------------------------------------------------------------------------------
# Architecture inference
# ---------------------------------------------------------------------------------------------------------------


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise FlavaConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim:
        raise FlavaConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} dimension(s)")
    for size in tensor.shape:
        if not 0 < size <= _MAX_SIZE:
            raise FlavaConversionError(f"{key} has an implausible shape {list(tensor.shape)}")
    return tuple(tensor.shape)


def _num_layers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.encoder\.layer\.(\d{1,6})\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    if not indices:
        raise FlavaConversionError(f"the checkpoint has no encoder layers under {prefix}.encoder.layer.*")
    if sorted(indices) != list(range(len(indices))) or len(indices) > _MAX_LAYERS:
        raise FlavaConversionError(f"the encoder layers under {prefix} are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _heads(hidden: int, given: Any, what: str) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1 or hidden % given:
            raise FlavaConversionError(f"{what}: num_attention_heads {given!r} does not divide the width {hidden}")
        return given
    if hidden % 64:
        raise FlavaConversionError(
            f"{what}: the head count is not stored in the checkpoint and the width {hidden} is not a multiple of 64 "
            "(the released convention, 64 per head): pass --original-config with *_num_attention_heads"
        )
    return hidden // 64


def _codebook_config(state_dict: Mapping[str, torch.Tensor], prefix: str, suffix: str) -> dict[str, int]:
    """`blocks.input` gives n_hid and the input channels, `blocks.output.conv` the vocabulary."""
    hidden, channels = _shape(state_dict, f"{prefix}blocks.input.{suffix}", 4)[:2]
    vocab = _shape(state_dict, f"{prefix}blocks.output.conv.{suffix}", 4)[0]
    groups = {int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"blocks\.group_(\d+)\.", k))}
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r".*\.block_(\d+)\.", k))}
    if not groups or sorted(groups) != list(range(1, len(groups) + 1)) or not blocks:
        raise FlavaConversionError("the codebook's groups/blocks are not numbered group_1..n / block_1..m")
    return {
        "hidden_size": hidden,
        "input_channels": channels,
        "vocab_size": vocab,
        "num_groups": len(groups),
        "num_blocks_per_group": len(blocks),
    }


def _original_kwargs(original_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The torchmultimodal builder arguments from an original config (`kwargs`, `flava_model_kwargs` or flat)."""
    if not original_config:
        return {}
    for key in ("flava_model_kwargs", "kwargs"):
        if isinstance(original_config.get(key), Mapping):
            return dict(original_config[key])
    return dict(original_config)


def infer_tmm_config(
    state_dict: Mapping[str, torch.Tensor], kind: str, prefix: str, original_config: Mapping[str, Any] | None
) -> FlavaConfig:
    """A torchmultimodal checkpoint's configuration, from its shapes plus the builder arguments the keys lack."""
    kwargs = _original_kwargs(original_config)
    p = prefix
    image_hidden = _shape(state_dict, f"{p}image_encoder.layernorm.weight", 1)[0]
    text_hidden = _shape(state_dict, f"{p}text_encoder.layernorm.weight", 1)[0]
    mm_hidden = _shape(state_dict, f"{p}mm_encoder.layernorm.weight", 1)[0]
    patch_out, channels, patch, _ = _shape(
        state_dict, f"{p}image_encoder.embeddings.patch_embeddings.projection.weight", 4
    )
    positions = _shape(state_dict, f"{p}image_encoder.embeddings.position_embeddings", 3)[1]
    grid = round((positions - 1) ** 0.5)
    if grid * grid != positions - 1 or patch_out != image_hidden:
        raise FlavaConversionError(
            f"the image position table ({positions} rows) is not a square grid plus a class token"
        )
    vocab, text_width = _shape(state_dict, f"{p}text_encoder.embeddings.word_embeddings.weight", 2)
    max_positions = _shape(state_dict, f"{p}text_encoder.embeddings.position_embeddings.weight", 2)[0]
    type_vocab = _shape(state_dict, f"{p}text_encoder.embeddings.token_type_embeddings.weight", 2)[0]
    projection = _shape(state_dict, f"{p}image_projection.weight", 2)[0]
    if text_width != text_hidden:
        raise FlavaConversionError("the text embeddings and the text encoder have different widths")

    def tower(name: str, hidden: int, what: str) -> dict[str, Any]:
        return {
            "hidden_size": hidden,
            "num_hidden_layers": _num_layers(state_dict, f"{p}{name}"),
            "num_attention_heads": _heads(hidden, kwargs.get(f"{what}_num_attention_heads"), f"{what} encoder"),
            "intermediate_size": _shape(state_dict, f"{p}{name}.encoder.layer.0.feedforward.model.0.weight", 2)[0],
            "layer_norm_eps": float(kwargs.get(f"{what}_layer_norm_eps", 1e-12)),
        }

    image = tower("image_encoder", image_hidden, "image")
    image.update(
        image_size=grid * patch,
        patch_size=patch,
        num_channels=channels,
        mask_token=f"{p}image_encoder.embeddings.mask_token" in state_dict,
    )
    text = tower("text_encoder", text_hidden, "text")
    text.update(
        vocab_size=vocab,
        max_position_embeddings=max_positions,
        type_vocab_size=type_vocab,
        pad_token_id=int(kwargs.get("pad_token_id", 0)),
    )
    multimodal = tower("mm_encoder", mm_hidden, "multimodal")
    values: dict[str, Any] = {
        "image_config": image,
        "text_config": text,
        "multimodal_config": multimodal,
        "projection_dim": projection,
    }
    if kind == "pretraining":
        codebook = _codebook_config(state_dict, "image_codebook.encoder.", "w")
        values["image_codebook_config"] = codebook
        image["vocab_size"] = codebook["vocab_size"]
        mim_vocab = _shape(state_dict, "loss.mim_loss.cls.decoder.weight", 2)[0]
        if mim_vocab != codebook["vocab_size"]:
            raise FlavaConversionError(
                f"the MIM head scores {mim_vocab} tokens, the codebook has {codebook['vocab_size']}"
            )
        for head in ("mlm_loss", "mim_loss", "mmm_loss.mlm", "mmm_loss.mim"):
            width = _shape(state_dict, f"loss.{head}.cls.dense.weight", 2)[1]
            expected = {"mlm_loss": text_hidden, "mim_loss": image_hidden}.get(head, mm_hidden)
            if width != expected:
                raise FlavaConversionError(
                    f"loss.{head} is {width} wide but reads a {expected}-wide sequence: the original sizes every head "
                    "with the multimodal width, which only works when all towers are equally wide"
                )
        loss = original_config.get("loss", {}) if original_config else {}
        eps = loss.get("layer_norm_eps(heads)", loss.get("layer_norm_eps")) if isinstance(loss, Mapping) else None
        values["head_layer_norm_eps"] = float(eps) if eps is not None else 1e-5
        values["logit_scale_init_value"] = float(state_dict["loss.contrastive_loss.logit_scale"])
    else:
        values["init_codebook"] = False
    if kind == "classification":
        hidden, inputs = _shape(state_dict, "classifier.model.0.weight", 2)
        num_labels = _shape(state_dict, "classifier.model.3.weight", 2)[0]
        if inputs != mm_hidden:
            raise FlavaConversionError(
                f"the classifier reads {inputs} features; the multimodal encoder is {mm_hidden} wide"
            )
        values.update(
            classifier_hidden_size=hidden,
            classifier_dropout=float(kwargs.get("classifier_dropout", 0.5)),
            id2label={i: f"LABEL_{i}" for i in range(num_labels)},
            label2id={f"LABEL_{i}": i for i in range(num_labels)},
        )
    return FlavaConfig(**values)


_HF_TOWER_FIELDS = {
    "image_config": (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "image_size", "patch_size",
        "num_channels", "qkv_bias", "mask_token", "vocab_size", "initializer_range",
    ),
    "text_config": (
        "vocab_size", "type_vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
        "num_attention_heads", "intermediate_size", "hidden_act", "hidden_dropout_prob",
        "attention_probs_dropout_prob", "layer_norm_eps", "pad_token_id", "qkv_bias", "initializer_range",
    ),
    "multimodal_config": (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "qkv_bias", "use_cls_token",
        "initializer_range",
    ),
    "image_codebook_config": (
        "num_groups", "input_channels", "num_blocks_per_group", "hidden_size", "vocab_size", "freeze",
        "initializer_range",
    ),
}  # fmt: skip
_HF_TOP_FIELDS = (
    "projection_dim", "logit_scale_init_value", "initializer_range", "ce_ignore_index", "mim_weight", "mlm_weight",
    "global_contrastive_weight", "itm_weight", "mmm_image_weight", "mmm_text_weight",
    "skip_unmasked_multimodal_encoder",
)  # fmt: skip


def _codebook_only_config(codebook: dict[str, Any]) -> FlavaConfig:
    """A config for [`FlavaImageCodebook`] alone (the towers keep their defaults; only the vocabulary must agree)."""
    vocab = codebook.get("vocab_size", 8192)
    return FlavaConfig(image_codebook_config=codebook, image_config={"vocab_size": vocab})


def config_from_transformers(hf_config: Mapping[str, Any], kind: str) -> FlavaConfig:
    """A vlzoo config from a transformers `FlavaConfig` / `FlavaImageCodebookConfig` dict (config.json).

    The masked-prediction heads keep the original's LayerNorm eps 1e-5 (transformers' port uses the towers' 1e-12,
    which moves MLM/MIM logits by up to 7e-5 against the released model).
    """
    model_type = hf_config.get("model_type")
    if model_type == "flava_image_codebook":
        codebook = {k: hf_config[k] for k in _HF_TOWER_FIELDS["image_codebook_config"] if k in hf_config}
        return _codebook_only_config(codebook)
    if model_type != "flava":
        raise FlavaConversionError(
            f"--original-config for a transformers-layout checkpoint must be its config.json with model_type 'flava' or "
            f"'flava_image_codebook'; got model_type {model_type!r}"
        )
    values: dict[str, Any] = {}
    for name, fields in _HF_TOWER_FIELDS.items():
        sub = hf_config.get(name) or {}
        values[name] = {k: sub[k] for k in fields if k in sub}
    for name in _HF_TOP_FIELDS:
        if name in hf_config:
            value = hf_config[name]
            values[name] = (
                float(value) if isinstance(value, int) and not isinstance(value, bool) and "weight" in name else value
            )
    values["logit_scale_init_value"] = float(values.get("logit_scale_init_value", 2.6592))
    values["init_codebook"] = kind == "pretraining"
    for key in ("id2label", "label2id"):
        if key in hf_config:
            values[key] = hf_config[key]
    return FlavaConfig(**values)


# ---------------------------------------------------------------------------------------------------------------
# Key maps
# ---------------------------------------------------------------------------------------------------------------


def _dalle_rules(source: str, target: str, suffix_map: Mapping[str, str]) -> KeyMap:
    """DALL-E / transformers codebook keys under `source` -> vlzoo's (transformers') under `target`."""
    s, t = re.escape(source), target
    rules: KeyMap = []
    for old, new in suffix_map.items():
        rules += [
            (rf"{s}blocks\.input\.{old}", rf"{t}blocks.input.{new}"),
            (rf"{s}blocks\.output\.conv\.{old}", rf"{t}blocks.output.conv.{new}"),
            (rf"{s}blocks\.group_(\d+)\.(?:group\.)?block_(\d+)\.id_path\.{old}",
             rf"{t}blocks.group_\1.group.block_\2.id_path.{new}"),
            (rf"{s}blocks\.group_(\d+)\.(?:group\.)?block_(\d+)\.res_path\.(?:path\.)?conv_(\d)\.{old}",
             rf"{t}blocks.group_\1.group.block_\2.res_path.path.conv_\3.{new}"),
        ]  # fmt: skip
    return rules


def _backbone_rules(source: str, target: str, layout: str) -> KeyMap:
    """Backbone keys under `source` (towers, projections) -> vlzoo's under `target`."""
    s, t = re.escape(source), target
    towers = _TOWERS_TMM if layout == "tmm" else _TOWERS_HF
    layer_names = _LAYER_NAMES_TMM if layout == "tmm" else _LAYER_NAMES_HF
    rules: KeyMap = []
    for old_tower, tower in towers.items():
        for old, new in layer_names.items():
            rules.append((rf"{s}{old_tower}\.encoder\.layer\.(\d+)\.{old}\.(weight|bias)",
                          rf"{t}{tower}.encoder.layers.\1.{new}.\2"))  # fmt: skip
        rules += [
            (rf"{s}{old_tower}\.layernorm\.(weight|bias)", rf"{t}{tower}.layernorm.\1"),
            (rf"{s}{old_tower}\.pooler\.dense\.(weight|bias)", rf"{t}{tower}.pooler.dense.\1"),
        ]
    image, text, mm = (next(k for k, v in towers.items() if v == name) for name in _TOWERS_HF)
    text_norm = "layer_norm" if layout == "tmm" else "LayerNorm"
    rules += [
        (rf"{s}{image}\.embeddings\.(cls_token|mask_token|position_embeddings)", rf"{t}image_model.embeddings.\1"),
        (rf"{s}{image}\.embeddings\.patch_embeddings\.projection\.(weight|bias)",
         rf"{t}image_model.embeddings.patch_embeddings.projection.\1"),
        (rf"{s}{text}\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight",
         rf"{t}text_model.embeddings.\1.weight"),
        (rf"{s}{text}\.embeddings\.{text_norm}\.(weight|bias)", rf"{t}text_model.embeddings.LayerNorm.\1"),
        (rf"{s}{mm}\.cls_token", rf"{t}multimodal_model.cls_token"),
        (rf"{s}(image_projection|text_projection|image_to_mm_projection|text_to_mm_projection)\.(weight|bias)",
         rf"{t}\1.\2"),
        (rf"{s}logit_scale", rf"{t}logit_scale"),
        # index buffers some transformers versions saved; rebuilt at forward time
        (rf"{s}{text}\.embeddings\.(position_ids|token_type_ids)", None),
    ]  # fmt: skip
    return rules


def _head_rules(layout: str) -> KeyMap:
    if layout == "tmm":
        heads = {"mlm_loss": "mlm_head", "mim_loss": "mim_head", r"mmm_loss\.mlm": "mmm_text_head",
                 r"mmm_loss\.mim": "mmm_image_head"}  # fmt: skip
        rules: KeyMap = [(r"loss\.contrastive_loss\.logit_scale", "flava.logit_scale")]
        for old, new in heads.items():
            rules += [
                (rf"loss\.{old}\.cls\.dense\.(weight|bias)", rf"{new}.transform.dense.\1"),
                (rf"loss\.{old}\.cls\.layer_norm\.(weight|bias)", rf"{new}.transform.LayerNorm.\1"),
                (rf"loss\.{old}\.cls\.decoder\.weight", rf"{new}.decoder.weight"),
                (rf"loss\.{old}\.cls\.bias", rf"{new}.bias"),
                (rf"loss\.{old}\.cls\.decoder\.bias", None),  # the same tensor as cls.bias (checked)
            ]
        rules += [
            (r"loss\.itm_loss\.pooler\.dense\.(weight|bias)", r"itm_head.pooler.dense.\1"),
            (r"loss\.itm_loss\.cls\.seq_relationship\.(weight|bias)", r"itm_head.seq_relationship.\1"),
        ]
        return rules
    return [
        (r"(mlm_head|mim_head|mmm_text_head|mmm_image_head)\.transform\.(dense|LayerNorm)\.(weight|bias)",
         r"\1.transform.\2.\3"),
        (r"(mlm_head|mim_head|mmm_text_head|mmm_image_head)\.decoder\.weight", r"\1.decoder.weight"),
        # transformers ties `*_head.bias` to `*_head.decoder.bias` and stores whichever it kept
        (r"(mlm_head|mim_head|mmm_text_head|mmm_image_head)\.(?:decoder\.)?bias", r"\1.bias"),
        (r"itm_head\.(pooler\.dense|seq_relationship)\.(weight|bias)", r"itm_head.\1.\2"),
    ]  # fmt: skip


def key_map(layout: str, kind: str, prefix: str) -> KeyMap:
    """The ordered table from the detected layout's keys to vlzoo's for the detected model kind."""
    if kind == "codebook":
        suffixes = {"w": "weight", "b": "bias"} if layout == "dalle" else {"weight": "weight", "bias": "bias"}
        return _dalle_rules("", "", suffixes)
    target = "" if kind == "model" else "flava."
    rules = _backbone_rules(prefix, target, layout)
    if kind == "pretraining":
        rules += _head_rules(layout)
        if layout == "tmm":
            rules += _dalle_rules("image_codebook.encoder.", "image_codebook.", {"w": "weight", "b": "bias"})
        else:
            rules += _dalle_rules("image_codebook.", "image_codebook.", {"weight": "weight", "bias": "bias"})
    if kind == "classification":
        rules += [(r"classifier\.(?:model\.)?(0|3)\.(weight|bias)", r"classifier.\1.\2")]
    return rules


def check_duplicates(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Tensors stored twice must be equal (torchmultimodal's `cls.bias` / `cls.decoder.bias`; transformers' tied
    head biases), since only one is kept."""
    for key, tensor in state_dict.items():
        for pattern, other in (
            (r"(.*)\.cls\.decoder\.bias", r"\1.cls.bias"),
            (r"(.*_head)\.decoder\.bias", r"\1.bias"),
        ):
            match = re.fullmatch(pattern, key)
            if match and match.expand(other) in state_dict:
                if not torch.equal(tensor, state_dict[match.expand(other)]):
                    raise FlavaConversionError(f"{key} and {match.expand(other)} should be the same tensor but differ")


# ---------------------------------------------------------------------------------------------------------------
# Parity (fixture outputs of flava.md §7)
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def multimodal_padding(model: PreTrainedModel, masked: bool) -> Iterator[None]:
    """Temporarily run the fusion encoder with (transformers) or without (torchmultimodal) the padding mask."""
    saved = model.config.mask_multimodal_padding
    model.config.mask_multimodal_padding = masked
    try:
        yield
    finally:
        model.config.mask_multimodal_padding = saved


def _tower(prefix: str, output: Any) -> dict[str, torch.Tensor]:
    values = {f"{prefix}.last_hidden_state": output.last_hidden_state, f"{prefix}.pooler_output": output.pooler_output}
    if output.pre_layernorm_last_hidden_state is not None and "multimodal" not in prefix:
        values[f"{prefix}.pre_layernorm_last_hidden_state"] = output.pre_layernorm_last_hidden_state
    return values


def parity_outputs(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run the converted model the way each fixture case ran the original; names follow its `output.*`."""
    if isinstance(model, FlavaImageCodebook):
        out = model(inputs["pixel_values"])
        logits = out.logits
        return {
            "logits": logits,
            "probs": logits.softmax(dim=1),
            "token_ids": logits.argmax(dim=1),
            "token_ids_flat": out.token_ids,
        }
    if isinstance(model, FlavaModel):
        ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs.get("attention_mask")
        with multimodal_padding(model, masked=False):  # torchmultimodal convention
            out = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True)
        with multimodal_padding(model, masked=True):  # transformers convention (vlzoo's default)
            masked = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
        flava = model
        values = {
            **_tower("image_output", out.image_output),
            **_tower("text_output", out.text_output),
            **_tower("multimodal_output", out.multimodal_output),
            **_tower("hf_masked_mm.multimodal_output", masked.multimodal_output),
            "image_embeds": out.image_embeds,
            "text_embeds": out.text_embeds,
            "projected_image_embeddings": flava.image_projection(out.image_output.last_hidden_state[:, 0]),
            "projected_text_embeddings": flava.text_projection(out.text_output.last_hidden_state[:, 0]),
            "logits_per_image": out.logits_per_image,
            "logits_per_text": out.logits_per_text,
            "contrastive_loss": out.loss,
            "logit_scale": flava.logit_scale.detach().clone(),
        }
        return values
    if isinstance(model, FlavaForSequenceClassification):
        image, text, labels = inputs["image"], inputs["text"], inputs["labels"]
        values = {}
        with multimodal_padding(model, masked=False):
            for mode, kwargs in (
                ("mm", {"input_ids": text, "pixel_values": image}),
                ("image", {"pixel_values": image}),
                ("text", {"input_ids": text}),
            ):
                out = model(**kwargs, labels=labels)
                values[f"{mode}.logits"], values[f"{mode}.loss"] = out.logits, out.loss
        return values
    if isinstance(model, FlavaForPreTraining):
        return _pretraining_parity(model, inputs)
    raise TypeError(f"no parity recipe for {type(model).__name__}")


def _pretraining_parity(model: FlavaForPreTraining, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    image, text, mask = inputs["image"], inputs["text"], inputs["image_patches_mask"]
    codebook, mlm_labels = inputs["image_for_codebook"], inputs["mlm_labels"]
    with multimodal_padding(model, masked=False):
        mm = model(
            input_ids=text,
            input_ids_masked=inputs["text_masked"],
            pixel_values=image,
            codebook_pixel_values=codebook,
            bool_masked_pos=mask,
            mlm_labels=mlm_labels,
            itm_labels=inputs["itm_labels"],
        )
        image_only = model(pixel_values=image, codebook_pixel_values=codebook, bool_masked_pos=mask)
        text_only = model(input_ids_masked=inputs["text_masked"], mlm_labels=mlm_labels)
    ids = model.image_codebook(codebook).token_ids
    losses = mm.loss_info
    return {
        "codebook_token_ids": ids,
        # vlzoo writes ce_ignore_index (-100) at unmasked patches; the original writes -1
        "mim_labels": mm.mim_labels.masked_fill(mm.mim_labels < 0, -1),
        "mm.losses.mmm_text_loss": losses.mmm_text,
        "mm.losses.mmm_image_loss": losses.mmm_image,
        "mm.losses.itm_loss": losses.itm,
        "mm.losses.global_contrastive_loss": losses.global_contrastive,
        "mm.mmm_text_logits": mm.mmm_text_logits,
        "mm.mmm_image_logits": mm.mmm_image_logits,
        "mm.itm_logits": mm.itm_logits,
        "mm.contrastive_logits_per_image": mm.logits_per_image,
        "mm.contrastive_logits_per_text": mm.logits_per_text,
        "mm.image_embeds": mm.image_embeds,
        "mm.text_embeds": mm.text_embeds,
        "mm.logit_scale": model.flava.logit_scale.detach().clamp(0, model.config.logit_scale_max),
        "mm.image_sequence": mm.image_output.last_hidden_state,
        "mm.text_sequence": mm.text_output.last_hidden_state,
        "mm.image_masked_sequence": mm.image_masked_output.last_hidden_state,
        "mm.text_masked_sequence": mm.text_masked_output.last_hidden_state,
        "mm.multimodal_masked_sequence": mm.multimodal_masked_output.last_hidden_state,
        "mm.multimodal_masked_pooler_output": mm.multimodal_masked_output.pooler_output,
        "image_only.mim_logits": image_only.mim_logits,
        "image_only.mim_loss": image_only.loss_info.mim,
        "text_only.mlm_logits": text_only.mlm_logits,
        "text_only.mlm_loss": text_only.loss_info.mlm,
    }


# ---------------------------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------------------------


class FlavaConverter(FamilyConverter):
    """`vlzoo convert flava`: torchmultimodal `.pt` files, transformers folders' weights (with their config.json as
    `--original-config`), and the DALL-E `encoder.pkl`."""

    family = "FLAVA"

    def __init__(self):
        self._layout: tuple[str, str, str] | None = None
        self._fill_logit_scale = False

    def infer_config(self, state_dict, *, original_config, variant, extra) -> FlavaConfig:
        layout, kind, prefix = self._layout = detect_layout(state_dict)
        if layout == "dalle":
            config = _codebook_only_config(_codebook_config(state_dict, "", "w"))
        elif layout == "hf":
            if original_config is None:
                raise FlavaConversionError(
                    "a transformers-layout checkpoint needs its config.json: pass it as --original-config"
                )
            config = config_from_transformers(original_config, kind)
            if kind == "codebook":
                found = _codebook_config(state_dict, "", "weight")
                given = {k: getattr(config.image_codebook_config, k) for k in found}
                if found != given:
                    raise FlavaConversionError(f"the codebook weights ({found}) do not match its config ({given})")
        else:
            config = infer_tmm_config(state_dict, kind, prefix, original_config)
        # torchmultimodal's FLAVAModel (and its classifier) stores no logit scale
        self._fill_logit_scale = kind in ("model", "classification") and not any(
            k.endswith("logit_scale") for k in state_dict
        )
        return config

    def key_map(self, config: FlavaConfig) -> KeyMap:
        return key_map(*self._layout)

    def transforms(self, config: FlavaConfig) -> dict[str, Transform]:
        if not self._fill_logit_scale:
            return {}
        # torchmultimodal's FLAVAModel has no logit scale: add the configured initial value next to a projection
        target = "image_projection.weight" if self._layout[1] == "model" else "flava.image_projection.weight"
        scale = torch.tensor(float(config.logit_scale_init_value))
        logit_scale = target.replace("image_projection.weight", "logit_scale")
        return {re.escape(target): lambda name, tensor: {name: tensor, logit_scale: scale.to(tensor.dtype)}}

    def check_state_dict(self, state_dict, config: FlavaConfig) -> None:
        check_duplicates(state_dict)

    def build_model(self, config: FlavaConfig) -> PreTrainedModel:
        kind = self._layout[1] if self._layout else "model"
        model_class = {
            "model": FlavaModel,
            "pretraining": FlavaForPreTraining,
            "classification": FlavaForSequenceClassification,
            "codebook": FlavaImageCodebook,
        }[kind]
        return model_class(config)

    def build_processor(self, config: FlavaConfig, tokenizer: Path | None = None) -> ProcessorMixin | None:
        """The BERT tokenizer ships with vlzoo: a ``tokenizer`` path is refused (see ``check_tokenizer``)."""
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        if self._layout and self._layout[1] == "codebook":
            return None
        from .processing_flava import VlzooFlavaProcessor

        return VlzooFlavaProcessor.from_model_config(config)

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return parity_outputs(model, inputs)


__all__ = [
    "FlavaConversionError",
    "FlavaConverter",
    "config_from_transformers",
    "detect_layout",
    "infer_tmm_config",
    "key_map",
    "parity_outputs",
]


# ---------------------------------------------------------------------------------------------------------------
# Export: vlzoo weights and config in transformers' FLAVA layout (no lock-in)
# ---------------------------------------------------------------------------------------------------------------

_EXPORT_LAYER_NAMES = {
    "self_attn.q_proj": "attention.attention.query",
    "self_attn.k_proj": "attention.attention.key",
    "self_attn.v_proj": "attention.attention.value",
    "self_attn.out_proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "layer_norm1": "layernorm_before",
    "layer_norm2": "layernorm_after",
}


def to_transformers_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' `FlavaModel` / `FlavaForPreTraining` / `FlavaImageCodebook` keys.

    `transformers.FlavaModel(to_transformers_config(config)).load_state_dict(...)` loads them strictly (the
    classification head has no transformers counterpart and is left out).
    """
    exported: dict[str, torch.Tensor] = {}
    layer = re.compile(r"(.*\.encoder)\.layers\.(\d+)\.(" + "|".join(map(re.escape, _EXPORT_LAYER_NAMES)) + r")\.(.*)")
    for name, tensor in model.state_dict().items():
        if name.startswith("classifier."):
            continue
        match = layer.fullmatch(name)
        if match:
            name = f"{match.group(1)}.layer.{match.group(2)}.{_EXPORT_LAYER_NAMES[match.group(3)]}.{match.group(4)}"
        exported[name] = tensor
        head = re.fullmatch(r"(mlm_head|mim_head|mmm_text_head|mmm_image_head)\.bias", name)
        if head:  # transformers' decoder carries the (tied) bias too
            exported[f"{head.group(1)}.decoder.bias"] = tensor
    return exported


def to_transformers_config(config: FlavaConfig) -> Any:
    """A `transformers.FlavaConfig` with the same architecture (its heads' LayerNorm eps stays the towers')."""
    from transformers import FlavaConfig as TransformersFlavaConfig

    values = config.to_dict()
    sub = {}
    for name, fields in _HF_TOWER_FIELDS.items():
        sub[name] = {k: values[name][k] for k in fields if k in values[name]}
    top = {k: values[k] for k in _HF_TOP_FIELDS if k in values}
    return TransformersFlavaConfig(
        **sub, **top, hidden_size=config.multimodal_config.hidden_size, init_codebook=config.init_codebook
    )


__all__ += ["to_transformers_config", "to_transformers_state_dict"]
