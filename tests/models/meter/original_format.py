"""An independent writer of METER's original checkpoint layout (a Lightning-style dict), from a vlzoo model.

Written from meter.md §3 (not from the converter's key map), so that conversion is checked at geometries no fixture
has: the inverse renames, the CLIP q/k/v rows fused into `in_proj_*`, and the unused tensors the original stores.
"""

import re

import torch

_HEADS = ("mlm_score.", "itm_score.", "rank_output.", "vqa_classifier.", "nlvr2_classifier.", "snli_classifier.")
_FUSION = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "layer_norm1": "attention.output.LayerNorm",
    "cross_attn.q_proj": "crossattention.self.query",
    "cross_attn.k_proj": "crossattention.self.key",
    "cross_attn.v_proj": "crossattention.self.value",
    "cross_attn.out_proj": "crossattention.output.dense",
    "cross_attn_layer_norm": "crossattention.output.LayerNorm",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "layer_norm2": "output.LayerNorm",
}
_CLIP = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc"}
_CLIP["mlp.fc2"] = "mlp.c_proj"


def to_original_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict `METERTransformerSS` would save for `model` (a vlzoo METER head)."""
    config = model.config
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_HEADS):
            out[key] = value
            continue
        name = key.removeprefix("meter.")
        if m := re.fullmatch(r"(text|image)_projection\.(weight|bias)", name):
            out[f"cross_modal_{m[1]}_transform.{m[2]}"] = value
        elif name == "token_type_embeddings.weight":
            out[name] = value
        elif m := re.fullmatch(r"(text|image)_pooler\.dense\.(weight|bias)", name):
            out[f"cross_modal_{m[1]}_pooler.dense.{m[2]}"] = value
        elif m := re.fullmatch(r"(text|image)_layers\.(\d+)\.(.+)\.(weight|bias)", name):
            out[f"cross_modal_{m[1]}_layers.{m[2]}.{_FUSION[m[3]]}.{m[4]}"] = value
        elif name.startswith("text_model."):
            out["text_transformer." + name.removeprefix("text_model.")] = value
        elif name == "vision_model.embeddings.class_embedding":
            out["vit_model.visual.class_embedding"] = value
        elif name == "vision_model.embeddings.position_embedding.weight":
            out["vit_model.visual.positional_embedding"] = value
        elif name == "vision_model.embeddings.patch_embedding.weight":
            out["vit_model.visual.conv1.weight"] = value
        elif m := re.fullmatch(r"vision_model\.(pre_layrnorm|post_layernorm)\.(weight|bias)", name):
            out[f"vit_model.visual.{'ln_pre' if m[1] == 'pre_layrnorm' else 'ln_post'}.{m[2]}"] = value
        elif m := re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", name):
            continue  # fused below
        elif m := re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", name):
            out[f"vit_model.visual.transformer.resblocks.{m[1]}.{_CLIP[m[2]]}.{m[3]}"] = value
        elif name.startswith(("vision_model.embeddings.position_ids",)):
            continue
        else:
            raise KeyError(f"no original name for {key}")
    for index in range(config.vision_config.num_hidden_layers):
        prefix = f"meter.vision_model.encoder.layers.{index}.self_attn"
        for kind in ("weight", "bias"):
            fused = torch.cat([state[f"{prefix}.{p}_proj.{kind}"] for p in "qkv"])
            out[f"vit_model.visual.transformer.resblocks.{index}.attn.in_proj_{kind}"] = fused
    text = config.text_config
    out["text_transformer.embeddings.position_ids"] = torch.arange(text.max_position_embeddings)[None]
    out["text_transformer.pooler.dense.weight"] = torch.randn(text.hidden_size, text.hidden_size)
    out["text_transformer.pooler.dense.bias"] = torch.randn(text.hidden_size)
    out["vit_model.positional_embedding"] = torch.randn(77, 16)
    out["vit_model.ln_final.weight"] = torch.ones(16)
    out["vit_model.ln_final.bias"] = torch.zeros(16)
    return out


def save_lightning_checkpoint(path, state_dict: dict, *, num_heads: int | None, image_size: int | None = None) -> None:
    """A Lightning-1.3-style container holding `state_dict` and the sacred config entries the converter reads."""
    config = {"loss_names": {"itm": 1}, "max_text_len": 12}
    if num_heads is not None:
        config["num_heads"] = num_heads
    if image_size is not None:
        config["image_size"] = image_size
    torch.save(
        {
            "epoch": 1,
            "global_step": 10,
            "pytorch-lightning_version": "1.3.2",
            "state_dict": state_dict,
            "optimizer_states": [],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {"config": config},
        },
        path,
    )
