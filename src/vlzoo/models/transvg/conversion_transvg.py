"""Key map and architecture inference for TransVG training checkpoints (`{'model', 'args', 'optimizer', ...}`)."""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap, Transform, split_qkv
from vlzoo.conversion.escaping import printable_repr
from vlzoo.evaluation.grounding import grounding_iou
from vlzoo.layers.box_ops import convert_boxes

from .configuration_transvg import BACKBONE_STRIDE, PRESETS, TransvgConfig
from .modeling_transvg import TransvgForVisualGrounding, grounding_loss
from .processing_transvg import TransvgProcessor

logger = logging.get_logger(__name__)

_BODY = "visumodel.backbone.0.body"
_MAX_SIZE = 1 << 20
_MAX_LAYERS = 256


class TransvgConversionError(ConversionError):
    """The checkpoint cannot be read as TransVG, or its architecture cannot be determined."""


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise TransvgConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim:
        raise TransvgConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} dimension(s)")
    for size in tensor.shape:
        if not 0 < size <= _MAX_SIZE:
            raise TransvgConversionError(f"{key} has shape {list(tensor.shape)}: a size outside 1..{_MAX_SIZE}")
    return tuple(int(s) for s in tensor.shape)


def _indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    compiled = re.compile(pattern)
    found = sorted({int(m.group(1)) for key in state_dict if (m := compiled.fullmatch(key))})
    if len(found) > _MAX_LAYERS or found != list(range(len(found))):
        raise TransvgConversionError(f"the blocks matching {pattern!r} are not numbered 0..n-1: {found[:20]}")
    return found


def _arg(args: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """`args.<name>` of the stored training Namespace, type-checked; `default` when absent (None = required)."""
    if name not in args:
        if default is None:
            raise TransvgConversionError(
                f"the checkpoint's training args have no {name!r} (needed: it is not stored in the weights); pass "
                "--original-config with an 'args' object holding it"
            )
        return default
    value = args[name]
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise TransvgConversionError(f"args.{name} must be a {kind.__name__}, got {printable_repr(value)}")
    return value


def training_args(extra: Mapping[str, Any], original_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored `args` (the Namespace as a dict), updated by an `args` object of the original config."""
    args: dict[str, Any] = {}
    stored = extra.get("args")
    if stored is not None:
        stored = getattr(stored, "__dict__", stored)  # a neutralised Namespace record, or already a dict
        if not isinstance(stored, Mapping):
            raise TransvgConversionError(
                f"the checkpoint's 'args' entry is not a Namespace, got {type(stored).__name__}"
            )
        args.update(stored)
    if original_config is not None:
        given = original_config.get("args", {})
        if not isinstance(given, Mapping):
            raise TransvgConversionError("original_config 'args' must be an object")
        args.update(given)
    return args


def _bert_heads(original_config: Mapping[str, Any] | None, hidden: int) -> int:
    """BERT's head count is not in the weights: from a `bert_config` in the original config, else hidden / 64."""
    bert = None
    if original_config is not None:
        bert = original_config.get("bert_config") or (original_config.get("tiny_overrides") or {}).get("bert_config")
    if bert is not None:
        heads = bert.get("num_attention_heads") if isinstance(bert, Mapping) else None
        if type(heads) is not int or heads < 1 or hidden % heads:
            raise TransvgConversionError(
                f"original_config bert_config.num_attention_heads must be a positive divisor of the BERT width "
                f"{hidden}, got {printable_repr(heads)}"
            )
        return heads
    if hidden % 64:
        raise TransvgConversionError(
            f"the BERT head count is not stored in the weights and the width {hidden} is not a multiple of 64 (the "
            "head size of bert-base/large): pass --original-config with bert_config.num_attention_heads"
        )
    return hidden // 64


def _encoder(sd: Mapping[str, torch.Tensor], prefix: str, heads: int, dropout: float, what: str) -> dict[str, Any]:
    layers = _indices(sd, rf"{re.escape(prefix)}\.(\d+)\.self_attn\.in_proj_weight")
    if not layers:
        return {"encoder_layers": 0}
    fused, width = _shape(sd, f"{prefix}.0.self_attn.in_proj_weight", 2)
    ffn, ffn_in = _shape(sd, f"{prefix}.0.linear1.weight", 2)
    if fused != 3 * width or ffn_in != width:
        raise TransvgConversionError(f"{prefix}.0 has inconsistent widths ({fused} fused rows, {ffn_in} FFN inputs)")
    if heads < 1 or width % heads:
        raise TransvgConversionError(f"{what} heads ({heads}) must divide the {what} width {width}")
    return {
        "d_model": width,
        "encoder_layers": len(layers),
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": ffn,
        "dropout": dropout,
        "attention_dropout": dropout,
        "activation_dropout": dropout,
    }


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    extra: Mapping[str, Any],
    original_config: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> TransvgConfig:
    """Read the architecture from the shapes and the checkpoint's training `args` (transvg.md §4).

    Shapes give the ResNet depths and widths, every width and depth of the DETR encoder, BERT and the fusion encoder,
    and `max_query_length` (from the fusion position rows and `args.imsize`). The stored `args` give what shapes
    cannot: `imsize`, `nheads`, `vl_nheads`, `bert_enc_num`, `dropout`/`vl_dropout`. BERT's head count comes from a
    `bert_config` in the original config, else width / 64 (bert-base).
    """
    if original_config is not None and not isinstance(original_config, Mapping):
        raise TransvgConversionError(f"original_config must be a mapping, got {type(original_config).__name__}")
    sd = state_dict
    args = training_args(extra, original_config)
    if variant is not None and not args:
        args = {"imsize": 640, "nheads": 8, "vl_nheads": 8, "bert_enc_num": 12, "dropout": 0.1, "vl_dropout": 0.1}
    if _arg(args, "dilation", bool, False):
        raise TransvgConversionError(
            "args.dilation (DC5, output stride 16) is not supported: no released model uses it"
        )
    image_size = _arg(args, "imsize", int)

    # ResNet: stem width, blocks per stage, stage widths (torchvision Bottleneck layout)
    stem_width = _shape(sd, f"{_BODY}.conv1.weight", 4)[0]
    depths, widths = [], []
    for stage in range(1, 5):
        blocks = _indices(sd, rf"{re.escape(_BODY)}\.layer{stage}\.(\d+)\.conv1\.weight")
        if not blocks:
            raise TransvgConversionError(f"the checkpoint has no ResNet blocks under {_BODY}.layer{stage}")
        if f"{_BODY}.layer{stage}.0.conv3.weight" not in sd:
            raise TransvgConversionError(
                "only Bottleneck ResNets (ResNet-50/101) are TransVG backbones; conv3 is missing"
            )
        out_channels = _shape(sd, f"{_BODY}.layer{stage}.0.conv3.weight", 4)[0]
        reduced = _shape(sd, f"{_BODY}.layer{stage}.0.conv1.weight", 4)[0]
        if out_channels != 4 * reduced:
            raise TransvgConversionError(
                f"{_BODY}.layer{stage} widens {reduced} -> {out_channels} channels; a Bottleneck widens by 4"
            )
        depths.append(len(blocks))
        widths.append(out_channels)

    visual = _encoder(
        sd,
        "visumodel.transformer.encoder.layers",
        _arg(args, "nheads", int),
        _arg(args, "dropout", float, 0.1),
        "DETR",
    )
    if visual["encoder_layers"] and _arg(args, "detr_enc_num", int, 1) <= 0:
        raise TransvgConversionError(
            "the checkpoint holds DETR encoder layers but args.detr_enc_num switches them off"
        )
    fusion = _encoder(
        sd,
        "vl_transformer.encoder.layers",
        _arg(args, "vl_nheads", int),
        _arg(args, "vl_dropout", float, 0.1),
        "fusion",
    )
    if not fusion["encoder_layers"]:
        raise TransvgConversionError("the checkpoint has no fusion encoder layers under vl_transformer.encoder.layers")

    # BERT
    vocab, text_width = _shape(sd, "textmodel.bert.embeddings.word_embeddings.weight", 2)
    positions = _shape(sd, "textmodel.bert.embeddings.position_embeddings.weight", 2)[0]
    types = _shape(sd, "textmodel.bert.embeddings.token_type_embeddings.weight", 2)[0]
    bert_layers = _indices(sd, r"textmodel\.bert\.encoder\.layer\.(\d+)\.attention\.self\.query\.weight")
    intermediate = _shape(sd, "textmodel.bert.encoder.layer.0.intermediate.dense.weight", 2)[0]
    bert_enc_num = _arg(args, "bert_enc_num", int, len(bert_layers))
    if bert_enc_num > len(bert_layers):
        raise TransvgConversionError(f"args.bert_enc_num is {bert_enc_num} but BERT has {len(bert_layers)} layers")

    # fusion positions fix the query length: rows = 1 + max_query_len + (imsize / 32)^2
    rows, fusion_width = _shape(sd, "vl_pos_embed.weight", 2)
    grid = image_size // BACKBONE_STRIDE
    max_query_length = rows - 1 - grid * grid
    if image_size % BACKBONE_STRIDE or max_query_length < 1:
        raise TransvgConversionError(
            f"vl_pos_embed has {rows} rows, which does not fit args.imsize {image_size} ({grid}x{grid} visual tokens "
            "plus [REG] and the text)"
        )
    if "max_query_len" in args and _arg(args, "max_query_len", int) != max_query_length:
        raise TransvgConversionError(
            f"args.max_query_len is {args['max_query_len']} but vl_pos_embed holds {max_query_length} text positions"
        )
    if fusion_width != fusion["d_model"]:
        raise TransvgConversionError(
            f"vl_pos_embed width {fusion_width} differs from the fusion width {fusion['d_model']}"
        )
    return TransvgConfig(
        backbone_config={
            "depths": depths,
            "hidden_sizes": widths,
            "embedding_size": stem_width,
            "layer_type": "bottleneck",
            "out_features": ["stage4"],
        },
        visual_encoder_config=visual,
        text_config={
            "vocab_size": vocab,
            "hidden_size": text_width,
            "num_hidden_layers": len(bert_layers),
            "num_attention_heads": _bert_heads(original_config, text_width),
            "intermediate_size": intermediate,
            "max_position_embeddings": positions,
            "type_vocab_size": types,
            "layer_norm_eps": 1e-12,
            "hidden_act": "gelu",
        },
        fusion_encoder_config=fusion,
        image_size=image_size,
        max_query_length=max_query_length,
        text_feature_layer=None if bert_enc_num == len(bert_layers) else max(bert_enc_num, 0),
    )


def key_map(config: TransvgConfig) -> KeyMap:
    """Ordered (regex, replacement) pairs from the original keys to vlzoo keys; None drops a key."""
    resnet = r"backbone.model"
    rules: KeyMap = [
        # fmt: off
        # ResNet (torchvision names -> transformers' ResNet inside DETR's conv encoder)
        (rf"{re.escape(_BODY)}\.conv1\.weight", f"{resnet}.embedder.embedder.convolution.weight"),
        (
            rf"{re.escape(_BODY)}\.bn1\.(weight|bias|running_mean|running_var)",
            rf"{resnet}.embedder.embedder.normalization.\1",
        ),
        (rf"{re.escape(_BODY)}\..*num_batches_tracked", None),
        (rf"{re.escape(_BODY)}\.fc\.(weight|bias)", None),  # the classifier, unused by DETR
    ]
    for stage in range(1, 5):
        source = rf"{re.escape(_BODY)}\.layer{stage}\.(\d+)"
        target = rf"{resnet}.encoder.stages.{stage - 1}.layers.\1"
        for conv in range(1, 4):
            rules.append((rf"{source}\.conv{conv}\.weight", rf"{target}.layer.{conv - 1}.convolution.weight"))
            rules.append(
                (
                    rf"{source}\.bn{conv}\.(weight|bias|running_mean|running_var)",
                    rf"{target}.layer.{conv - 1}.normalization.\2",
                )
            )
        rules.append((rf"{source}\.downsample\.0\.weight", rf"{target}.shortcut.convolution.weight"))
        rules.append(
            (
                rf"{source}\.downsample\.1\.(weight|bias|running_mean|running_var)",
                rf"{target}.shortcut.normalization.\2",
            )
        )
    for source, target in (
        ("visumodel.transformer.encoder", "visual_encoder"),
        ("vl_transformer.encoder", "fusion_encoder"),
    ):
        layer = rf"{re.escape(source)}\.layers\.(\d+)"
        rules += [
            (rf"{layer}\.self_attn\.in_proj_(weight|bias)", rf"{target}.layers.\1.self_attn.in_proj.\2"),
            (rf"{layer}\.self_attn\.out_proj\.(weight|bias)", rf"{target}.layers.\1.self_attn.o_proj.\2"),
            (rf"{layer}\.linear1\.(weight|bias)", rf"{target}.layers.\1.mlp.fc1.\2"),
            (rf"{layer}\.linear2\.(weight|bias)", rf"{target}.layers.\1.mlp.fc2.\2"),
            (rf"{layer}\.norm1\.(weight|bias)", rf"{target}.layers.\1.self_attn_layer_norm.\2"),
            (rf"{layer}\.norm2\.(weight|bias)", rf"{target}.layers.\1.final_layer_norm.\2"),
        ]
    rules += [
        (r"visumodel\.input_proj\.(weight|bias)", r"input_proj.\1"),
        # BERT (pytorch_pretrained_bert names = transformers' BertModel names; pre-0.5 gamma/beta LayerNorms)
        (r"textmodel\.bert\.embeddings\.position_ids", None),  # obsolete buffer of newer exports
        (r"textmodel\.bert\.pooler\.dense\.(weight|bias)", None),  # the pooler is never used by TransVG
        (r"textmodel\.bert\.(.*)\.LayerNorm\.gamma", r"text_model.\1.LayerNorm.weight"),
        (r"textmodel\.bert\.(.*)\.LayerNorm\.beta", r"text_model.\1.LayerNorm.bias"),
        (r"textmodel\.bert\.((?:embeddings|encoder)\..*)", r"text_model.\1"),
        # fusion
        (r"visu_proj\.(weight|bias)", r"visual_projection.\1"),
        (r"text_proj\.(weight|bias)", r"text_projection.\1"),
        (r"reg_token\.weight", "reg_token.weight"),
        (r"vl_pos_embed\.weight", "fusion_position_embeddings.weight"),
        (r"bbox_embed\.layers\.(\d+)\.(weight|bias)", r"bbox_head.layers.\1.\2"),
        # fmt: on
    ]
    return rules


def transforms(config: TransvgConfig) -> dict[str, Transform]:
    """Split the packed `nn.MultiheadAttention` in-projections (rows q | k | v) into `q_proj`, `k_proj`, `v_proj`."""
    return {r".*\.self_attn\.in_proj\.(weight|bias)": split_qkv("in_proj")}


@torch.no_grad()
def parity_outputs(model: TransvgForVisualGrounding, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every intermediate of the transvg-tiny fixture, named like its `output.*` tensors (masks: 1 = padding)."""
    pixel_values, pixel_mask = inputs["pixel_values"], inputs["pixel_mask"]
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    visual = model.encode_image(pixel_values, pixel_mask)
    text = model.encode_text(input_ids, attention_mask)
    sequence, mask = model.fusion_inputs(visual, text, attention_mask)
    out = model(
        pixel_values=pixel_values,
        pixel_mask=pixel_mask,
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=inputs.get("target_boxes"),
    )
    outputs = {
        "backbone_features": visual.backbone_features,
        "backbone_mask": (~visual.backbone_mask).long(),
        "visual_pos_embed": visual.position_embeddings,
        "visual_features": visual.visual_features,
        "visual_mask": 1 - visual.visual_mask,
        "text_features": text,
        "text_padding_mask": 1 - attention_mask.long(),
        "vl_input": sequence,
        "vl_padding_mask": 1 - mask,
        "vl_hidden_states": out.last_hidden_state,
        "reg_token_output": out.last_hidden_state[:, 0],
        "pred_boxes": out.pred_boxes,
    }
    outputs.update(loss_and_accuracy(out, inputs))
    return outputs


def loss_and_accuracy(out: Any, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`loss_bbox`, `loss_giou` (the model's loss is their sum), `iou` and `accu` as TransVG's evaluation computes."""
    targets = inputs.get("target_boxes")
    if targets is None:
        return {}
    losses = grounding_loss(out.pred_boxes, targets)
    if not torch.allclose(out.loss, losses["loss"]):
        raise TransvgConversionError("the model's loss is not loss_bbox + loss_giou")
    corners = convert_boxes(out.pred_boxes, "cxcywh", "xyxy").clamp(0, 1)
    iou = torch.from_numpy(grounding_iou(corners, convert_boxes(targets, "cxcywh", "xyxy"))).float()
    return {
        "loss_bbox": losses["loss_l1"],
        "loss_giou": losses["loss_giou"],
        "iou": iou,
        "accu": (iou >= 0.5).float().mean(),
    }


class TransvgConverter(FamilyConverter):
    """Converts TransVG training checkpoints (`best_checkpoint.pth`, legacy or zip torch files) into
    `TransvgForVisualGrounding` folders; argparse `args` are read as data, never executed."""

    family = "TransVG"
    variants = tuple(PRESETS)
    required_keys = (r"visumodel\.backbone\.0\.body\.conv1\.weight", r"vl_pos_embed\.weight", r"textmodel\.bert\..*")

    def infer_config(self, state_dict, *, original_config, variant, extra) -> TransvgConfig:
        return infer_config(state_dict, extra=extra, original_config=original_config, variant=variant)

    def key_map(self, config: TransvgConfig) -> KeyMap:
        return key_map(config)

    def transforms(self, config: TransvgConfig) -> dict[str, Transform]:
        return transforms(config)

    def build_model(self, config: TransvgConfig) -> PreTrainedModel:
        return TransvgForVisualGrounding(config)

    def build_processor(self, config: TransvgConfig, tokenizer: Path | None = None) -> TransvgProcessor:
        """The uncased BERT vocabulary ships with vlzoo: a ``tokenizer`` path is refused (see ``check_tokenizer``)."""
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        return TransvgProcessor.from_model_config(config)

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return parity_outputs(model, inputs)


__all__ = [
    "TransvgConversionError",
    "TransvgConverter",
    "infer_config",
    "key_map",
    "loss_and_accuracy",
    "parity_outputs",
    "training_args",
    "transforms",
]
