"""The shared blocks, wired by hand with weights from the authors' own checkpoints, reproduce the original code's
outputs (../shared/fixtures, written by the released BEiT-3 / TransVG / METER code): multiway pre-LN sub-LN layers
with offset position tables and table resizing; DETR post-LN layers with sine positions on queries and keys and a
box head; METER's post-LN co-attention layers, poolers, ITM and VQA heads."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from vlzoo.layers.heads import BoxHead, ItmHead, MlpClassifierHead
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.multiway import TORCHSCALE_EXPERT_NAMES, Multiway
from vlzoo.layers.patch_embedding import PatchEmbedding
from vlzoo.layers.poolers import FirstTokenPooler
from vlzoo.layers.positions import LearnedPositionEmbedding, SinePositionEmbedding2D, resize_position_table_2d
from vlzoo.layers.transformer import TransformerLayer

TOLERANCE = {"atol": 1e-4, "rtol": 0}


def _state_dict(fixtures_dir: Path, case: str, name: str) -> dict[str, torch.Tensor]:
    from vlzoo.conversion.safe_load import load_checkpoint

    return load_checkpoint(fixtures_dir / case / name).state_dict


def _submodule_state(state: dict, prefix: str, renames: list[tuple[str, str]]) -> dict:
    selected = {}
    for key, value in state.items():
        if key.startswith(prefix):
            key = key[len(prefix) :]
            for pattern, replacement in renames:
                key = re.sub(pattern, replacement, key)
            selected[key] = value
    return selected


# ---- BEiT-3 (torchscale): multiway, pre-LN, sub-LN, q scaled after its bias, positions from row 2 -------------------

BEIT3_RENAMES = [
    (r"^self_attn_layer_norm\.", "layer_norm1."),
    (r"^final_layer_norm\.", "layer_norm2."),
    (r"^ffn\.", "mlp."),
    (r"\.([AB])(\.|$)", lambda m: f".{TORCHSCALE_EXPERT_NAMES[m.group(1)]}{m.group(2)}"),
    (r"^([AB])\.", lambda m: f"{TORCHSCALE_EXPERT_NAMES[m.group(1)]}."),
]


class _Beit3Blocks:
    """The BEiT-3 backbone of beit3.md §2.4-2.5 assembled from vlzoo.layers blocks."""

    def __init__(self, state: dict, image_size: int = 48, vision_table: torch.Tensor | None = None):
        grid = image_size // 16
        self.patch = PatchEmbedding(3, 32, 16, image_size=image_size)
        self.patch.load_state_dict(_submodule_state(state, "beit3.vision_embed.proj.", [(r"^", "projection.")]))
        self.cls_token = state["beit3.vision_embed.cls_token"]
        self.text_embed = nn.Embedding(130, 32)
        self.text_embed.load_state_dict({"weight": state["beit3.text_embed.weight"]})
        self.vision_positions = LearnedPositionEmbedding(grid * grid + 1, 32, offset=2)
        table = state["beit3.encoder.embed_positions.A.weight"] if vision_table is None else vision_table
        self.vision_positions.load_state_dict({"weight": table})
        self.text_positions = LearnedPositionEmbedding(1022, 32, offset=2)
        self.text_positions.load_state_dict({"weight": state["beit3.encoder.embed_positions.B.weight"]})
        self.layers = []
        for index in range(2):
            layer = TransformerLayer(
                32, 4, 128, sub_layer_norm=True, scale_queries=True, multiway=True, attn_implementation="eager"
            )
            layer.load_state_dict(_submodule_state(state, f"beit3.encoder.layers.{index}.", BEIT3_RENAMES))
            self.layers.append(layer.eval())
        self.final_norm = Multiway(nn.LayerNorm, 32, eps=1e-5)
        self.final_norm.load_state_dict(_submodule_state(state, "beit3.encoder.layer_norm.", BEIT3_RENAMES))

    @torch.no_grad()
    def embed(self, pixel_values=None, input_ids=None, padding=None):
        parts, pads = [], []
        if pixel_values is not None:
            patches = self.patch(pixel_values)
            vision = torch.cat([self.cls_token.expand(len(patches), -1, -1), patches], dim=1)
            parts.append(vision + self.vision_positions(seq_len=vision.shape[1]))
            pads.append(torch.zeros(vision.shape[:2], dtype=torch.long))
        if input_ids is not None:
            parts.append(self.text_embed(input_ids) + self.text_positions(seq_len=input_ids.shape[1]))
            pads.append(padding)
        pad = torch.cat(pads, dim=1)
        return torch.cat(parts, dim=1) * (1 - pad[..., None]), pad

    @torch.no_grad()
    def encode(self, hidden, pad, split_position):
        mask = key_padding_attention_mask(1 - pad, dtype=hidden.dtype)
        outputs = []
        for layer in self.layers:
            hidden = layer(hidden, mask, split_position=split_position)
            outputs.append(hidden)
        return outputs, self.final_norm(hidden, split_position)


def test_beit3_joint_vision_only_and_text_only(fixtures_dir, fixture_io):
    io = fixture_io("beit3/beit3-backbone-tiny")
    model = _Beit3Blocks(_state_dict(fixtures_dir, "beit3/beit3-backbone-tiny", "beit3_tiny_patch16_48.pth"))
    ids, pad, pixels = io["input.textual_tokens"], io["input.text_padding_position"], io["input.visual_tokens"]

    hidden, joint_pad = model.embed(pixels, ids, pad)
    torch.testing.assert_close(hidden, io["output.joint.embedding_output"], **TOLERANCE)
    split = int(io["output.joint.multiway_split_position"])
    layer_outputs, encoded = model.encode(hidden, joint_pad, split)
    for index, output in enumerate(layer_outputs):
        torch.testing.assert_close(output, io[f"output.joint.layer{index}_output"], **TOLERANCE)
    torch.testing.assert_close(encoded, io["output.joint.encoder_out"], **TOLERANCE)

    hidden, vision_pad = model.embed(pixel_values=pixels)
    _, encoded = model.encode(hidden, vision_pad, hidden.shape[1])  # torchscale's -1: everything to vision
    torch.testing.assert_close(encoded, io["output.vision.encoder_out"], **TOLERANCE)

    hidden, text_pad = model.embed(input_ids=ids, padding=pad)
    _, encoded = model.encode(hidden, text_pad, 0)
    torch.testing.assert_close(encoded, io["output.text.encoder_out"], **TOLERANCE)


def test_beit3_position_table_resize(fixtures_dir, fixture_io):
    io = fixture_io("beit3/beit3-backbone-tiny")
    state = _state_dict(fixtures_dir, "beit3/beit3-backbone-tiny", "beit3_tiny_patch16_48.pth")
    # beit3.md §3.4: rows 0..2 (two unused fairseq rows and the class token) kept, the 3x3 grid resized to 4x4
    resized = resize_position_table_2d(state["beit3.encoder.embed_positions.A.weight"], 4, num_prefix_rows=3)
    torch.testing.assert_close(resized, io["output.resized64.embed_positions_A"], **TOLERANCE)
    model = _Beit3Blocks(state, image_size=64, vision_table=resized)
    hidden, pad = model.embed(
        io["input.resized64.visual_tokens"], io["input.textual_tokens"], io["input.text_padding_position"]
    )
    _, encoded = model.encode(hidden, pad, 17)
    torch.testing.assert_close(encoded, io["output.resized64.joint.encoder_out"], **TOLERANCE)


# ---- TransVG: DETR post-LN encoder with sine positions, fusion encoder with learned positions, box head ---------------


def _detr_layer(state: dict, prefix: str) -> TransformerLayer:
    """A TransVG/DETR encoder layer: post-LN, ReLU, eps 1e-5, packed q|k|v in_proj split into three projections."""
    layer = TransformerLayer(32, 4, 64, activation="relu", norm_first=False, attn_implementation="eager")
    weights = {}
    q, k, v = state[f"{prefix}self_attn.in_proj_weight"].chunk(3)
    q_bias, k_bias, v_bias = state[f"{prefix}self_attn.in_proj_bias"].chunk(3)
    for name, weight, bias in (("q_proj", q, q_bias), ("k_proj", k, k_bias), ("v_proj", v, v_bias)):
        weights[f"self_attn.{name}.weight"], weights[f"self_attn.{name}.bias"] = weight, bias
    renames = {"self_attn.out_proj": "self_attn.out_proj", "linear1": "mlp.fc1", "linear2": "mlp.fc2"}
    renames |= {"norm1": "layer_norm1", "norm2": "layer_norm2"}
    for old, new in renames.items():
        for parameter in ("weight", "bias"):
            weights[f"{new}.{parameter}"] = state[f"{prefix}{old}.{parameter}"]
    layer.load_state_dict(weights)
    return layer.eval()


@torch.no_grad()
def test_transvg_encoders_and_box_head(fixtures_dir, fixture_io):
    io = fixture_io("transvg/transvg-tiny")
    state = _state_dict(fixtures_dir, "transvg/transvg-tiny", "best_checkpoint.pth")

    # sine positions of the backbone feature map; the fixture's mask is 1 = padding, vlzoo's 1 = real
    positions = SinePositionEmbedding2D(16)(1 - io["output.backbone_mask"])
    torch.testing.assert_close(positions, io["output.visual_pos_embed"], **TOLERANCE)

    input_proj = nn.Conv2d(128, 32, 1)
    input_proj.load_state_dict(_submodule_state(state, "visumodel.input_proj.", []))
    hidden = input_proj(io["output.backbone_features"]).flatten(2).transpose(1, 2)
    position_tokens = positions.flatten(2).transpose(1, 2)
    mask = key_padding_attention_mask(1 - io["output.visual_mask"], dtype=torch.float32)
    for index in range(2):
        layer = _detr_layer(state, f"visumodel.transformer.encoder.layers.{index}.")
        hidden = layer(hidden, mask, position_embeddings=position_tokens)
    torch.testing.assert_close(hidden, io["output.visual_features"], **TOLERANCE)

    fusion_positions = LearnedPositionEmbedding(17, 32)
    fusion_positions.load_state_dict({"weight": state["vl_pos_embed.weight"]})
    hidden = io["output.vl_input"]
    mask = key_padding_attention_mask(1 - io["output.vl_padding_mask"], dtype=torch.float32)
    for index in range(2):
        layer = _detr_layer(state, f"vl_transformer.encoder.layers.{index}.")
        hidden = layer(hidden, mask, position_embeddings=fusion_positions(seq_len=hidden.shape[1]))
    torch.testing.assert_close(hidden, io["output.vl_hidden_states"], **TOLERANCE)

    head = BoxHead(32, 32)
    head.load_state_dict(_submodule_state(state, "bbox_embed.", []))
    torch.testing.assert_close(head(hidden[:, 0]), io["output.pred_boxes"], **TOLERANCE)


# ---- METER: post-LN BERT co-attention layers (eps 1e-12), streams updated in parallel, poolers, ITM / VQA heads -------

BERT_RENAMES = [
    (r"^attention\.self\.query\.", "self_attn.q_proj."),
    (r"^attention\.self\.key\.", "self_attn.k_proj."),
    (r"^attention\.self\.value\.", "self_attn.v_proj."),
    (r"^attention\.output\.dense\.", "self_attn.out_proj."),
    (r"^attention\.output\.LayerNorm\.", "layer_norm1."),
    (r"^crossattention\.self\.query\.", "cross_attn.q_proj."),
    (r"^crossattention\.self\.key\.", "cross_attn.k_proj."),
    (r"^crossattention\.self\.value\.", "cross_attn.v_proj."),
    (r"^crossattention\.output\.dense\.", "cross_attn.out_proj."),
    (r"^crossattention\.output\.LayerNorm\.", "cross_attn_layer_norm."),
    (r"^intermediate\.dense\.", "mlp.fc1."),
    (r"^output\.dense\.", "mlp.fc2."),
    (r"^output\.LayerNorm\.", "layer_norm2."),
]


@torch.no_grad()
def _meter_fusion(state: dict, io: dict, num_heads: int, num_layers: int) -> torch.Tensor:
    text_width = state["cross_modal_text_transform.weight"].shape[1]
    image_width = state["cross_modal_image_transform.weight"].shape[1]
    text_transform, image_transform = nn.Linear(text_width, 32), nn.Linear(image_width, 32)
    text_transform.load_state_dict(_submodule_state(state, "cross_modal_text_transform.", []))
    image_transform.load_state_dict(_submodule_state(state, "cross_modal_image_transform.", []))
    token_types = state["token_type_embeddings.weight"]
    text = text_transform(io["output.text_encoder_last_hidden_state"]) + token_types[0]
    image = image_transform(io["output.image_encoder_last_hidden_state"]) + token_types[1]
    text_mask = key_padding_attention_mask(io["input.attention_mask"], dtype=torch.float32)
    for index in range(num_layers):
        layers = {}
        for stream in ("text", "image"):
            layer = TransformerLayer(32, num_heads, 128, norm_first=False, cross_attention=True, layer_norm_eps=1e-12)
            layer.load_state_dict(_submodule_state(state, f"cross_modal_{stream}_layers.{index}.", BERT_RENAMES))
            layers[stream] = layer.eval()
        # both streams read the previous layer's outputs (meter.md §2.4); the image mask is all ones
        text, image = layers["text"](text, text_mask, image, None), layers["image"](image, None, text, text_mask)
    torch.testing.assert_close(text, io["output.text_feats"], **TOLERANCE)
    torch.testing.assert_close(image, io["output.image_feats"], **TOLERANCE)
    pooled = []
    for stream, features in (("text", text), ("image", image)):
        pooler = FirstTokenPooler(32)
        pooler.load_state_dict(_submodule_state(state, f"cross_modal_{stream}_pooler.", []))
        pooled.append(pooler(features))
    cls_feats = torch.cat(pooled, dim=-1)
    torch.testing.assert_close(cls_feats, io["output.cls_feats"], **TOLERANCE)
    return cls_feats


def test_meter_co_attention_poolers_and_itm_head(fixtures_dir, fixture_io):
    io = fixture_io("meter/meter-pretrain-tiny")
    state = _state_dict(fixtures_dir, "meter/meter-pretrain-tiny", "meter_tiny_pretrain.ckpt")
    cls_feats = _meter_fusion(state, io, num_heads=2, num_layers=2)
    head = ItmHead(64)
    head.load_state_dict(_submodule_state(state, "itm_score.", []))
    torch.testing.assert_close(head(cls_feats), io["output.itm_logits"], **TOLERANCE)


def test_meter_vqa_head(fixtures_dir, fixture_io):
    io = fixture_io("meter/meter-vqa-tiny")
    state = _state_dict(fixtures_dir, "meter/meter-vqa-tiny", "meter_tiny_vqa.ckpt")
    cls_feats = _meter_fusion(state, io, num_heads=4, num_layers=1)
    head = MlpClassifierHead(64, 64, 10)
    head.load_state_dict(_submodule_state(state, "vqa_classifier.", []))
    with torch.no_grad():
        torch.testing.assert_close(head(cls_feats), io["output.vqa_logits"], **TOLERANCE)


@pytest.fixture(autouse=True)
def _quiet_conversion_logs():
    from transformers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    yield
    logging.set_verbosity(previous)
