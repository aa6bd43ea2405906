"""Writes a vlzoo MS-CLIP model in the released checkpoint layout (flat state dict, original key names).

An independent inverse of the converter, used to check that other geometries of the same code convert back to the
same model. Shared blocks are written under both towers' names, as the released files do.
"""

import torch

from vlzoo.models.ms_clip import MsClipModel


def _block(out: dict, prefix: str, layer, weights) -> None:
    out[f"{prefix}.ln_1.weight"] = layer.layer_norm1.weight
    out[f"{prefix}.ln_1.bias"] = layer.layer_norm1.bias
    out[f"{prefix}.ln_2.weight"] = layer.layer_norm2.weight
    out[f"{prefix}.ln_2.bias"] = layer.layer_norm2.bias
    attn = weights.self_attn
    out[f"{prefix}.attn.in_proj_weight"] = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    out[f"{prefix}.attn.in_proj_bias"] = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
    out[f"{prefix}.attn.out_proj.weight"] = attn.out_proj.weight
    out[f"{prefix}.attn.out_proj.bias"] = attn.out_proj.bias
    out[f"{prefix}.mlp.c_fc.weight"] = weights.mlp.fc1.weight
    out[f"{prefix}.mlp.c_fc.bias"] = weights.mlp.fc1.bias
    out[f"{prefix}.mlp.c_proj.weight"] = weights.mlp.fc2.weight
    out[f"{prefix}.mlp.c_proj.bias"] = weights.mlp.fc2.bias


def _bn(out: dict, prefix: str, bn) -> None:
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        out[f"{prefix}.{name}"] = getattr(bn, name)


def to_original_state_dict(model: MsClipModel) -> dict[str, torch.Tensor]:
    config = model.config
    vision, text = model.vision_model, model.text_model
    conv = config.vision_config.stem_type == "conv"
    offset = 1 if conv else 0
    out: dict[str, torch.Tensor] = {
        "visual.class_embedding": vision.embeddings.class_embedding,
        "visual.positional_embedding": vision.embeddings.position_embedding,
        "visual.ln_pre.weight": vision.pre_layernorm.weight,
        "visual.ln_pre.bias": vision.pre_layernorm.bias,
        "visual.ln_post.weight": vision.post_layernorm.weight,
        "visual.ln_post.bias": vision.post_layernorm.bias,
        "visual.proj": model.visual_projection.weight.t(),
        "token_embedding.weight": text.embeddings.token_embedding.weight,
        "positional_embedding": text.embeddings.position_embedding,
        "ln_final.weight": text.final_layer_norm.weight,
        "ln_final.bias": text.final_layer_norm.bias,
        "text_projection": model.text_projection.weight.t(),
        "logit_scale": model.logit_scale,
    }
    if conv:
        stem, p = vision.stem, "visual.transformer.resblocks.0"
        out[f"{p}.conv1.weight"] = stem.conv1.weight
        _bn(out, f"{p}.bn1", stem.bn1)
        for k, stage in enumerate(stem.stages):
            q = f"{p}.resnet_stage.conv_{k}"
            out[f"{q}.conv1.weight"] = stage.conv.weight
            _bn(out, f"{q}.bn1", stage.norm)
            out[f"{q}.downsample.0.weight"] = stage.shortcut_conv.weight
            _bn(out, f"{q}.downsample.1", stage.shortcut_norm)
        out[f"{p}.last_conv.weight"] = stem.last_conv.weight
    else:
        out["visual.conv1.weight"] = vision.stem.weight
    for j, stage in enumerate(vision.branch):
        p = f"visual.transformer.parallel_branch_v.{j}"
        if j == 0:
            out[f"{p}.conv.weight"] = stage.conv.weight
            _bn(out, f"{p}.bn", stage.norm)
            continue
        q = f"{p}.resnet_stage.conv_0"
        for n in (1, 2, 3):
            out[f"{q}.conv{n}.weight"] = getattr(stage, f"conv{n}").weight
            _bn(out, f"{q}.bn{n}", getattr(stage, f"norm{n}"))
        out[f"{q}.residual_conv.weight"] = stage.shortcut_conv.weight
        _bn(out, f"{q}.residual_bn", stage.shortcut_norm)
    for j, adapter in enumerate(vision.adapters):
        p = f"visual.transformer.parallel_lateral_adapter.{j}"
        out[f"{p}.top2bottom_dw_conv.conv.weight"] = adapter.branch_conv.weight
        _bn(out, f"{p}.top2bottom_dw_conv.bn", adapter.branch_norm)
        out[f"{p}.top2bottom_pw_conv.conv.weight"] = adapter.branch_proj.weight
        out[f"{p}.bottom_dw_conv.conv.weight"] = adapter.token_conv.weight
        _bn(out, f"{p}.bottom_dw_conv.bn", adapter.token_norm)
        out[f"{p}.ln_adapt.weight"] = adapter.layer_norm.weight
        out[f"{p}.ln_adapt.bias"] = adapter.layer_norm.bias
    for tower, prefix, start in ((vision, "visual.transformer.resblocks", offset), (text, "transformer.resblocks", 0)):
        first = tower.encoder.first_shared
        for i, layer in enumerate(tower.encoder.layers):
            weights = layer if i < first else model.shared_layers[i - first]
            _block(out, f"{prefix}.{i + start}", layer, weights)
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def original_config(model: MsClipModel) -> dict:
    """The parts of the original yacs config that the weights do not determine."""
    config = model.config
    offset = 1 if config.vision_config.stem_type == "conv" else 0
    return {
        "MODEL": {"SPEC": {"TEXT": {"HEADS": config.text_config.num_attention_heads}}},
        "CUSTOM": {"PARALLEL_LATERAL_LAYER": [i + offset for i in config.vision_config.lateral_adapter_layers]},
    }
