"""An independent writer of TransVG's original checkpoint format (train.py's container), for key-mapping tests."""

import argparse
from pathlib import Path

import torch

from vlzoo.models.transvg import TransvgForVisualGrounding

from .tester import tiny_config


def to_original_state_dict(model: TransvgForVisualGrounding) -> dict[str, torch.Tensor]:
    """vlzoo names -> the original names (torchvision ResNet, packed q|k|v, `textmodel.bert`, with a pooler)."""
    body = "visumodel.backbone.0.body"
    out: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    for name, tensor in state.items():
        parts = name.split(".")
        if name.startswith("backbone.model.embedder"):
            kind = "conv1.weight" if parts[4] == "convolution" else f"bn1.{parts[-1]}"
            out[f"{body}.{kind}"] = tensor
        elif name.startswith("backbone.model.encoder"):
            stage, block = int(parts[4]) + 1, parts[6]
            if parts[7] == "shortcut":
                kind = "downsample.0.weight" if parts[8] == "convolution" else f"downsample.1.{parts[-1]}"
            else:
                index = int(parts[8]) + 1
                kind = f"conv{index}.weight" if parts[9] == "convolution" else f"bn{index}.{parts[-1]}"
            out[f"{body}.layer{stage}.{block}.{kind}"] = tensor
        elif name.startswith("text_model."):
            out["textmodel.bert." + name[len("text_model.") :]] = tensor
    for source, target in (
        ("visual_encoder", "visumodel.transformer.encoder"),
        ("fusion_encoder", "vl_transformer.encoder"),
    ):
        for index in range(len(getattr(model, source).layers) if getattr(model, source) else 0):
            prefix = f"{source}.layers.{index}"
            attention = f"{prefix}.self_attn"
            for kind in ("weight", "bias"):
                out[f"{target}.layers.{index}.self_attn.in_proj_{kind}"] = torch.cat(
                    [state[f"{attention}.{p}_proj.{kind}"] for p in ("q", "k", "v")]
                )
                out[f"{target}.layers.{index}.self_attn.out_proj.{kind}"] = state[f"{attention}.o_proj.{kind}"]
                out[f"{target}.layers.{index}.linear1.{kind}"] = state[f"{prefix}.mlp.fc1.{kind}"]
                out[f"{target}.layers.{index}.linear2.{kind}"] = state[f"{prefix}.mlp.fc2.{kind}"]
                out[f"{target}.layers.{index}.norm1.{kind}"] = state[f"{prefix}.self_attn_layer_norm.{kind}"]
                out[f"{target}.layers.{index}.norm2.{kind}"] = state[f"{prefix}.final_layer_norm.{kind}"]
    width = model.config.text_config.hidden_size
    out["textmodel.bert.pooler.dense.weight"] = torch.randn(width, width)
    out["textmodel.bert.pooler.dense.bias"] = torch.randn(width)
    for kind in ("weight", "bias"):
        if model.input_proj is not None:
            out[f"visumodel.input_proj.{kind}"] = state[f"input_proj.{kind}"]
        out[f"visu_proj.{kind}"] = state[f"visual_projection.{kind}"]
        out[f"text_proj.{kind}"] = state[f"text_projection.{kind}"]
        for index in range(3):
            out[f"bbox_embed.layers.{index}.{kind}"] = state[f"bbox_head.layers.{index}.{kind}"]
    out["vl_pos_embed.weight"] = state["fusion_position_embeddings.weight"]
    out["reg_token.weight"] = state["reg_token.weight"]
    return out


def write_original_checkpoint(
    path: Path, *, text_feature_layer: int | None = None, dilation: bool = False, return_model: bool = False
):
    """Save a random tiny TransVG as train.py does (`model`, `optimizer`, `lr_scheduler`, `epoch`, `args`)."""
    torch.manual_seed(3)
    config = tiny_config(text_feature_layer=text_feature_layer)
    model = TransvgForVisualGrounding(config).eval()
    with torch.no_grad():  # non-trivial frozen BatchNorm statistics
        for name, buffer in model.named_buffers():
            if "normalization" in name and "running_var" in name:
                buffer.uniform_(0.5, 2.0)
    visual, fusion = config.visual_encoder_config, config.fusion_encoder_config
    args = argparse.Namespace(
        imsize=config.image_size, max_query_len=config.max_query_length, nheads=visual.encoder_attention_heads,
        vl_nheads=fusion.encoder_attention_heads, enc_layers=visual.encoder_layers, detr_enc_num=visual.encoder_layers,
        bert_enc_num=text_feature_layer or config.text_config.num_hidden_layers, dropout=0.1, vl_dropout=0.1,
        dilation=dilation, backbone="resnet50",
    )  # fmt: skip
    container = {
        "model": to_original_state_dict(model),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        "lr_scheduler": {"step_size": 60, "gamma": 0.1},
        "epoch": 0,
        "args": args,
        "val_accu": 0.5,
    }
    torch.save(container, path)
    return (model, path) if return_model else path
