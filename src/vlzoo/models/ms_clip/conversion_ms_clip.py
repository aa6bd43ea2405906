"""Key map and architecture inference for the released MS-CLIP checkpoints (flat `.pth` state dicts)."""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap, Transform, split_qkv, transpose
from vlzoo.conversion.escaping import printable_repr

from .configuration_ms_clip import PRESETS, MsClipConfig
from .modeling_ms_clip import MsClipModel
from .processing_ms_clip import MsClipProcessor

# the spec's shared modules: attention in-projection, out-projection and the MLP (msclip.md §1)
_SHARED_SUFFIXES = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)
_VISION_BLOCK = "visual.transformer.resblocks"
_TEXT_BLOCK = "transformer.resblocks"


class MsClipConversionError(ConversionError):
    """The checkpoint cannot be read as MS-CLIP (or its architecture cannot be determined)."""


# Far above every released size (width 768, 12 blocks, 49408 tokens, 224 px) and far below what would exhaust memory:
# a size outside these bounds comes from a damaged or hostile file, not from a model.
_MAX_SIZE = 1 << 20
_MAX_LAYERS = 256


def _block_indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d{1,6})\.attn\.in_proj_weight$")
    return sorted({int(m.group(1)) for key in state_dict if (m := pattern.match(key))})


def _has_conv_stem(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return f"{_VISION_BLOCK}.0.conv1.weight" in state_dict


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    """The shape of ``state_dict[key]``, which must exist and have ``ndim`` dimensions."""
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise MsClipConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim:
        raise MsClipConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} dimension(s)")
    return tuple(tensor.shape)


def _same(what: str, value: int, reference: str, expected: int) -> None:
    if value != expected:
        raise MsClipConversionError(f"{what} is {value} but {reference} is {expected}: the shapes are inconsistent")


def _bounded(name: str, value: int, source: str, *, minimum: int = 1, maximum: int = _MAX_SIZE) -> int:
    if not minimum <= value <= maximum:
        raise MsClipConversionError(
            f"the inferred {name} is {value} (from {source}); expected {minimum} to {maximum}: the checkpoint is "
            f"damaged or not an MS-CLIP checkpoint"
        )
    return int(value)


def _spec(original_config: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    """The value at ``path`` of the original config, or ``default`` when absent; a non-object on the way is an error."""
    node: Any = original_config or {}
    for depth, key in enumerate(path):
        if not isinstance(node, Mapping):
            where = ".".join(path[:depth]) or "the original config"
            raise MsClipConversionError(f"original_config {where} must be an object, got {printable_repr(node)}")
        if key not in node:
            return default
        node = node[key]
    return node


def _spec_int(original_config: Mapping[str, Any] | None, *path: str, minimum: int = 1) -> int | None:
    """An integer field of the original config (None when absent), at least ``minimum``."""
    value = _spec(original_config, *path)
    if value is not None and (type(value) is not int or value < minimum):
        raise MsClipConversionError(
            f"original_config {'.'.join(path)} must be an integer >= {minimum}, got {printable_repr(value)}"
        )
    return value


def _spec_ints(original_config: Mapping[str, Any] | None, *path: str, minimum: int) -> list[int] | None:
    """A non-empty integer-list field of the original config (None when absent), each entry at least ``minimum``."""
    value = _spec(original_config, *path)
    if value is not None and (
        not isinstance(value, (list, tuple)) or not value or not all(type(v) is int and v >= minimum for v in value)
    ):
        raise MsClipConversionError(
            f"original_config {'.'.join(path)} must be a non-empty list of integers >= {minimum}, got "
            f"{printable_repr(value)}"
        )
    return None if value is None else list(value)


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    original_config: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> MsClipConfig:
    """Read the architecture from tensor shapes, completed by the original yacs config or a preset.

    Shapes give every width, depth, vocabulary, context, patch size and the sharing depth. They do not give the text
    head count, the adapter positions or (without a branch) the patch size of the conv stem: those come from
    `original_config` (`MODEL.SPEC.TEXT.HEADS`, `CUSTOM.PARALLEL_LATERAL_LAYER`, `MODEL.SPEC.VISION.PATCH_SIZE`),
    else from the `variant` preset, else from the released rules when the sizes are the released ones.

    Every size is checked before a config is built: tensors that carry the same width must agree, sizes and depths
    must lie within generous bounds, and original-config values must be positive integers of the right form.
    """
    if variant is not None and variant not in PRESETS:
        raise MsClipConversionError(f"unknown variant {variant!r}; valid variants: {', '.join(PRESETS)}")
    if original_config is not None and not isinstance(original_config, Mapping):
        raise MsClipConversionError(f"original_config must be a mapping, got {type(original_config).__name__}")
    preset = PRESETS[variant] if variant else None
    sd = state_dict
    (width,) = _shape(sd, "visual.class_embedding", 1)
    vocab_size, text_width = _shape(sd, "token_embedding.weight", 2)
    context, position_width = _shape(sd, "positional_embedding", 2)
    proj_rows, projection_dim = _shape(sd, "visual.proj", 2)
    positions, vision_position_width = _shape(sd, "visual.positional_embedding", 2)
    _bounded("vision width", width, "visual.class_embedding")
    _bounded("text width", text_width, "token_embedding.weight")
    _bounded("vocabulary size", vocab_size, "token_embedding.weight", minimum=3)
    _bounded("context length", context, "positional_embedding")
    _bounded("projection size", projection_dim, "visual.proj")
    _same("positional_embedding width", position_width, "the token_embedding width", text_width)
    _same("visual.proj rows", proj_rows, "the visual.class_embedding width", width)
    _same("visual.positional_embedding width", vision_position_width, "the visual.class_embedding width", width)
    if "text_projection" in sd:
        text_rows, text_projection_dim = _shape(sd, "text_projection", 2)
        _same("text_projection rows", text_rows, "the token_embedding width", text_width)
        _same("text_projection columns", text_projection_dim, "the visual.proj columns", projection_dim)
    conv_stem = _has_conv_stem(sd)
    vision_blocks = _block_indices(sd, _VISION_BLOCK)
    text_blocks = _block_indices(sd, _TEXT_BLOCK)
    if not vision_blocks or not text_blocks:
        raise MsClipConversionError(
            "no transformer blocks found under 'visual.transformer.resblocks' or 'transformer.resblocks'"
        )
    _bounded("vision depth", len(vision_blocks), "visual.transformer.resblocks", maximum=_MAX_LAYERS)
    _bounded("text depth", len(text_blocks), "transformer.resblocks", maximum=_MAX_LAYERS)
    offset = 1 if conv_stem else 0  # the conv stem occupies resblock 0 in the released code
    if vision_blocks != list(range(offset, offset + len(vision_blocks))):
        raise MsClipConversionError(f"vision blocks are not contiguous from {offset}: {vision_blocks}")
    if text_blocks != list(range(len(text_blocks))):
        raise MsClipConversionError(f"text blocks are not contiguous from 0: {text_blocks}")
    vision_mlp, vision_mlp_in = _shape(sd, f"{_VISION_BLOCK}.{vision_blocks[0]}.mlp.c_fc.weight", 2)
    text_mlp, text_mlp_in = _shape(sd, f"{_TEXT_BLOCK}.0.mlp.c_fc.weight", 2)
    _bounded("vision MLP width", vision_mlp, f"{_VISION_BLOCK}.{vision_blocks[0]}.mlp.c_fc.weight")
    _bounded("text MLP width", text_mlp, f"{_TEXT_BLOCK}.0.mlp.c_fc.weight")
    _same("the vision MLP input width", vision_mlp_in, "the visual.class_embedding width", width)
    _same("the text MLP input width", text_mlp_in, "the token_embedding width", text_width)
    grid = math.isqrt(positions - 1) if positions else 0
    if grid < 1 or grid * grid + 1 != positions:
        raise MsClipConversionError("visual.positional_embedding does not hold a square grid plus a class token")

    adapter_kernels = []
    while (
        key := f"visual.transformer.parallel_lateral_adapter.{len(adapter_kernels)}.top2bottom_dw_conv.conv.weight"
    ) in sd:
        adapter_kernels.append(_bounded("adapter kernel size", _shape(sd, key, 4)[-1], key))

    # patch size
    if not conv_stem:
        patch = _bounded("patch size", _shape(sd, "visual.conv1.weight", 4)[-1], "visual.conv1.weight")
    elif (p := _spec_int(original_config, "MODEL", "SPEC", "VISION", "PATCH_SIZE")) is not None:
        patch = p
    elif adapter_kernels:
        patch = 2 * adapter_kernels[0]  # branch stage 0 has stride 2 (msclip.md §3)
    elif preset is not None:
        patch = preset["vision_config"]["patch_size"]
    else:
        raise MsClipConversionError(
            "cannot infer the patch size of a conv stem without a branch: pass --variant or --original-config"
        )
    image_size = _bounded("image size", grid * patch, "visual.positional_embedding and the patch size")
    if (size := _spec(original_config, "TRAIN", "IMAGE_SIZE")) is not None:
        if isinstance(size, (list, tuple)):
            size = _spec_ints(original_config, "TRAIN", "IMAGE_SIZE", minimum=1)[0]
        else:
            size = _spec_int(original_config, "TRAIN", "IMAGE_SIZE")
        if size != image_size:
            raise MsClipConversionError(
                f"TRAIN.IMAGE_SIZE is {size} but the position table holds a {grid}x{grid} grid of {patch} px patches"
            )

    # conv stem strides: 2 while the cumulative stride is below the patch size, then 1 (msclip.md §3)
    stem_strides = _spec_ints(original_config, "CUSTOM", "EARLY_CONV_RES_STRIDES", minimum=1)
    if stem_strides is None:
        stem_strides, stride = [], 2
        for _ in range(4):
            step = 2 if stride < patch else 1
            stem_strides.append(step)
            stride *= step
    branch_strides = [2] + [adapter_kernels[j - 1] // adapter_kernels[j] for j in range(1, len(adapter_kernels))]
    if not adapter_kernels:
        branch_strides = []

    adapter_layers: list[int] = []
    if adapter_kernels:
        released = _spec_ints(original_config, "CUSTOM", "PARALLEL_LATERAL_LAYER", minimum=offset)
        if released is None and preset is not None:
            adapter_layers = list(preset["vision_config"].get("lateral_adapter_layers", [1, 3, 5, 7, 9]))
        elif released is None and len(vision_blocks) == 11 and len(adapter_kernels) == 5:
            adapter_layers = [1, 3, 5, 7, 9]  # the released PARALLEL_LATERAL_LAYER [2, 4, 6, 8, 10]
        elif released is None:
            raise MsClipConversionError(
                "the adapter positions are not stored in the weights: pass --original-config (CUSTOM.PARALLEL_LATERAL_LAYER)"
            )
        else:
            adapter_layers = [i - offset for i in released]
        if len(adapter_layers) != len(adapter_kernels):
            raise MsClipConversionError(
                f"{len(adapter_kernels)} adapters in the weights but positions {adapter_layers}"
            )

    text_heads = _spec_int(original_config, "MODEL", "SPEC", "TEXT", "HEADS")
    if text_heads is None and preset is not None:
        text_heads = preset["text_config"].get("num_attention_heads", 12)
    if text_heads is None:
        if text_width % 64:
            raise MsClipConversionError(
                f"the text head count is not stored in the weights and width {text_width} is not a multiple of 64: "
                "pass --original-config (MODEL.SPEC.TEXT.HEADS) or --variant"
            )
        text_heads = text_width // 64
    if text_width % text_heads:
        raise MsClipConversionError(
            f"{text_heads} text heads (MODEL.SPEC.TEXT.HEADS or the preset) do not divide the text width {text_width} "
            f"stored in token_embedding.weight"
        )

    num_shared = _count_shared(sd, vision_blocks, text_blocks, offset)
    eot = vocab_size - 1
    return MsClipConfig(
        projection_dim=int(projection_dim),
        num_shared_layers=num_shared,
        vision_config={
            "hidden_size": int(width),
            "intermediate_size": int(vision_mlp),
            "num_hidden_layers": len(vision_blocks),
            "num_attention_heads": max(int(width) // 64, 1),  # hard-coded width // 64 in the released code
            "image_size": int(image_size),
            "patch_size": int(patch),
            "stem_type": "conv" if conv_stem else "patch",
            "stem_strides": [int(s) for s in stem_strides] if conv_stem else [2, 2, 2, 2],  # unused by a patch stem
            "lateral_adapter_layers": adapter_layers,
            "branch_strides": [int(s) for s in branch_strides],
            "adapter_kernel_sizes": [int(k) for k in adapter_kernels],
        },
        text_config={
            "vocab_size": int(vocab_size),
            "hidden_size": int(text_width),
            "intermediate_size": int(text_mlp),
            "num_hidden_layers": len(text_blocks),
            "num_attention_heads": int(text_heads),
            "max_position_embeddings": int(context),
            "bos_token_id": int(eot - 1),
            "eos_token_id": int(eot),
        },
    )


def _count_shared(
    sd: Mapping[str, torch.Tensor], vision_blocks: list[int], text_blocks: list[int], offset: int
) -> int:
    """Number of trailing blocks whose attention and MLP tensors are equal in both towers.

    The released code pairs text block i with vision resblock i; vlzoo shares the last n blocks of each tower, so
    the two agree only when both towers end at the same resblock index (true for every released model).
    """
    shared = [
        i
        for i in text_blocks
        if i in vision_blocks
        and all(_equal(sd, f"{_TEXT_BLOCK}.{i}.{s}", f"{_VISION_BLOCK}.{i}.{s}") for s in _SHARED_SUFFIXES)
    ]
    if not shared:
        return 0
    start = shared[0]
    if shared != list(range(start, text_blocks[-1] + 1)) or text_blocks[-1] != vision_blocks[-1]:
        raise MsClipConversionError(
            f"text blocks {shared} share weights with the vision blocks of the same index, but vlzoo supports "
            "sharing only for a trailing run of blocks ending at the last block of both towers"
        )
    return len(shared)


def _equal(sd: Mapping[str, torch.Tensor], a: str, b: str) -> bool:
    """Whether tensors ``a`` and ``b`` are equal; both must exist (every block stores its attention and MLP)."""
    for key in (a, b):
        if not isinstance(sd.get(key), torch.Tensor):
            raise MsClipConversionError(f"the checkpoint has no tensor {key!r}")
    return sd[a].shape == sd[b].shape and sd[a].dtype == sd[b].dtype and torch.equal(sd[a], sd[b])


def key_map(config: MsClipConfig) -> KeyMap:
    """Ordered (regex, replacement) pairs from the original keys to vlzoo keys; None drops a key.

    Fused attention in-projections land on `self_attn.in_proj.*` and are split into q/k/v by `transforms`.
    """
    vision, text = config.vision_config, config.text_config
    offset = 1 if vision.stem_type == "conv" else 0
    first_vision_shared = vision.num_hidden_layers - config.num_shared_layers
    first_text_shared = text.num_hidden_layers - config.num_shared_layers
    rules: list[tuple[str, str | None]] = [
        # fmt: off
        # image tower: embeddings, norms, projection
        (r"visual\.class_embedding", "vision_model.embeddings.class_embedding"),
        (r"visual\.positional_embedding", "vision_model.embeddings.position_embedding"),
        (r"visual\.ln_pre\.(weight|bias)", r"vision_model.pre_layernorm.\1"),
        (r"visual\.ln_post\.(weight|bias)", r"vision_model.post_layernorm.\1"),
        (r"visual\.proj", "visual_projection.weight"),
        (r"visual\.conv1\.weight", "vision_model.stem.weight"),
        # conv stem (resblock 0)
        (r"visual\.transformer\.resblocks\.0\.conv1\.weight", "vision_model.stem.conv1.weight"),
        (r"visual\.transformer\.resblocks\.0\.bn1\.(\w+)", r"vision_model.stem.bn1.\1"),
        (
            r"visual\.transformer\.resblocks\.0\.resnet_stage\.conv_(\d)\.conv1\.weight",
            r"vision_model.stem.stages.\1.conv.weight",
        ),
        (
            r"visual\.transformer\.resblocks\.0\.resnet_stage\.conv_(\d)\.bn1\.(\w+)",
            r"vision_model.stem.stages.\1.norm.\2",
        ),
        (
            r"visual\.transformer\.resblocks\.0\.resnet_stage\.conv_(\d)\.downsample\.0\.weight",
            r"vision_model.stem.stages.\1.shortcut_conv.weight",
        ),
        (
            r"visual\.transformer\.resblocks\.0\.resnet_stage\.conv_(\d)\.downsample\.1\.(\w+)",
            r"vision_model.stem.stages.\1.shortcut_norm.\2",
        ),
        (r"visual\.transformer\.resblocks\.0\.last_conv\.weight", "vision_model.stem.last_conv.weight"),
        # parallel branch and lateral adapters
        (r"visual\.transformer\.parallel_branch_v\.0\.conv\.weight", "vision_model.branch.0.conv.weight"),
        (r"visual\.transformer\.parallel_branch_v\.0\.bn\.(\w+)", r"vision_model.branch.0.norm.\1"),
        (
            r"visual\.transformer\.parallel_branch_v\.(\d)\.resnet_stage\.conv_0\.conv(\d)\.weight",
            r"vision_model.branch.\1.conv\2.weight",
        ),
        (
            r"visual\.transformer\.parallel_branch_v\.(\d)\.resnet_stage\.conv_0\.bn(\d)\.(\w+)",
            r"vision_model.branch.\1.norm\2.\3",
        ),
        (
            r"visual\.transformer\.parallel_branch_v\.(\d)\.resnet_stage\.conv_0\.residual_conv\.weight",
            r"vision_model.branch.\1.shortcut_conv.weight",
        ),
        (
            r"visual\.transformer\.parallel_branch_v\.(\d)\.resnet_stage\.conv_0\.residual_bn\.(\w+)",
            r"vision_model.branch.\1.shortcut_norm.\2",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.top2bottom_dw_conv\.conv\.weight",
            r"vision_model.adapters.\1.branch_conv.weight",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.top2bottom_dw_conv\.bn\.(\w+)",
            r"vision_model.adapters.\1.branch_norm.\2",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.top2bottom_pw_conv\.conv\.weight",
            r"vision_model.adapters.\1.branch_proj.weight",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.bottom_dw_conv\.conv\.weight",
            r"vision_model.adapters.\1.token_conv.weight",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.bottom_dw_conv\.bn\.(\w+)",
            r"vision_model.adapters.\1.token_norm.\2",
        ),
        (
            r"visual\.transformer\.parallel_lateral_adapter\.(\d)\.ln_adapt\.(weight|bias)",
            r"vision_model.adapters.\1.layer_norm.\2",
        ),
        # text tower: embeddings, final norm, projection, temperature
        (r"token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
        (r"positional_embedding", "text_model.embeddings.position_embedding"),
        (r"ln_final\.(weight|bias)", r"text_model.final_layer_norm.\1"),
        (r"text_projection", "text_projection.weight"),
        (r"logit_scale", "logit_scale"),
        # fmt: on
    ]
    for tower, prefix, depth, first_shared, start in (
        ("vision_model", re.escape(_VISION_BLOCK), vision.num_hidden_layers, first_vision_shared, offset),
        ("text_model", re.escape(_TEXT_BLOCK), text.num_hidden_layers, first_text_shared, 0),
    ):
        for index in range(depth):
            source = rf"{prefix}\.{index + start}"
            target = f"{tower}.encoder.layers.{index}"
            rules.append((rf"{source}\.ln_1\.(weight|bias)", rf"{target}.layer_norm1.\1"))
            rules.append((rf"{source}\.ln_2\.(weight|bias)", rf"{target}.layer_norm2.\1"))
            if index >= first_shared:
                if tower == "text_model":  # duplicates of the vision tensors, checked equal by check_state_dict
                    rules.append((rf"{source}\.(attn|mlp)\..*", None))
                    continue
                target = f"shared_layers.{index - first_shared}"
            rules.append((rf"{source}\.attn\.in_proj_(weight|bias)", rf"{target}.self_attn.in_proj.\1"))
            rules.append((rf"{source}\.attn\.out_proj\.(weight|bias)", rf"{target}.self_attn.out_proj.\1"))
            rules.append((rf"{source}\.mlp\.c_fc\.(weight|bias)", rf"{target}.mlp.fc1.\1"))
            rules.append((rf"{source}\.mlp\.c_proj\.(weight|bias)", rf"{target}.mlp.fc2.\1"))
    return rules


def check_state_dict(state_dict: Mapping[str, torch.Tensor], config: MsClipConfig) -> None:
    """Verify that every dropped text duplicate equals its vision counterpart (shared tensors are stored once)."""
    vision, text = config.vision_config, config.text_config
    offset = 1 if vision.stem_type == "conv" else 0
    for k in range(config.num_shared_layers):
        v_index = vision.num_hidden_layers - config.num_shared_layers + k + offset
        t_index = text.num_hidden_layers - config.num_shared_layers + k
        for suffix in _SHARED_SUFFIXES:
            if not _equal(state_dict, f"{_TEXT_BLOCK}.{t_index}.{suffix}", f"{_VISION_BLOCK}.{v_index}.{suffix}"):
                raise MsClipConversionError(
                    f"{_TEXT_BLOCK}.{t_index}.{suffix} should be shared with {_VISION_BLOCK}.{v_index}.{suffix} but "
                    "the tensors differ"
                )


@torch.no_grad()
def parity_outputs(model, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run `model` (eager attention, eval mode) on the fixture inputs; names follow the fixtures' `output.*`."""
    pixel_values, input_ids = inputs["pixel_values"], inputs["input_ids"]
    out = model(input_ids=input_ids, pixel_values=pixel_values, output_hidden_states=True)
    vision, text = out.vision_model_output, out.text_model_output
    pool_index = input_ids.argmax(dim=-1)
    return {
        "logits_per_image": out.logits_per_image,
        "logits_per_text": out.logits_per_text,
        "logit_scale_exp": model.logit_scale.exp().reshape(1),
        "image_embeds": out.image_embeds,
        "image_embeds_unnormalized": vision.pooler_output,
        "text_embeds": out.text_embeds,
        "text_embeds_unnormalized": text.pooler_output,
        "vision_embeddings": vision.hidden_states[0],
        "vision_last_hidden_state": vision.last_hidden_state,
        "vision_pooled_output": model.vision_model.post_layernorm(vision.last_hidden_state[:, 0]),
        "text_last_hidden_state": text_positions_to_compare("text_last_hidden_state", text.last_hidden_state, inputs),
        "text_pooled_output": model.text_model.final_layer_norm(
            text.last_hidden_state[torch.arange(len(pool_index)), pool_index]
        ),
        "text_pool_index": pool_index,
    }


def text_positions_to_compare(name: str, tensor: torch.Tensor, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Text hidden states are compared at positions up to the end token (later ones depend on padding)."""
    if name != "text_last_hidden_state":
        return tensor
    pool_index = inputs["input_ids"].argmax(dim=-1)
    keep = torch.arange(tensor.shape[1])[None, :] <= pool_index[:, None]
    return tensor * keep[..., None]


def transforms(config: MsClipConfig) -> dict[str, Transform]:
    """Split fused q/k/v in-projections; transpose the `[in, out]` projection matrices into Linear weights."""
    return {
        r".*\.self_attn\.in_proj\.(weight|bias)": split_qkv("in_proj"),
        r"(visual|text)_projection\.weight": transpose,  # the original stores projections as [in, out]
    }


class MsClipConverter(FamilyConverter):
    """Converts the released MS-CLIP `.pth` files (flat state dicts) into `MsClipModel` folders."""

    family = "MS-CLIP"
    variants = tuple(PRESETS)
    required_keys = (r"visual\.class_embedding", r"visual\.proj", r"token_embedding\.weight", r"logit_scale")

    def infer_config(self, state_dict, *, original_config, variant, extra) -> MsClipConfig:
        # The released files are flat state dicts: `extra` holds nothing MS-CLIP needs.
        return infer_config(state_dict, original_config=original_config, variant=variant)

    def key_map(self, config: MsClipConfig) -> KeyMap:
        return key_map(config)

    def transforms(self, config: MsClipConfig) -> dict[str, Transform]:
        return transforms(config)

    def check_state_dict(self, state_dict, config: MsClipConfig) -> None:
        check_state_dict(state_dict, config)

    def build_model(self, config: MsClipConfig) -> PreTrainedModel:
        return MsClipModel(config)

    def build_processor(self, config: MsClipConfig, tokenizer: Path | None = None) -> MsClipProcessor:
        """The CLIP BPE tokenizer ships with vlzoo: a ``tokenizer`` path is refused (see ``check_tokenizer``)."""
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        return MsClipProcessor.from_model_config(config)

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return parity_outputs(model, inputs)

    def align_expected(self, name: str, expected: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return text_positions_to_compare(name, expected, inputs)


__all__ = [
    "MsClipConversionError",
    "MsClipConverter",
    "check_state_dict",
    "infer_config",
    "key_map",
    "parity_outputs",
    "transforms",
]
