"""Key map, head recognition and architecture inference for the released BEiT-3 checkpoints (beit3.md §3)."""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from vlzoo.conversion import ConversionError, FamilyConverter, KeyMap
from vlzoo.conversion.escaping import printable, printable_repr

from .configuration_beit3 import POSITION_OFFSET, PRESETS, Beit3Config
from .image_processing_beit3 import Beit3ImageProcessor
from .modeling_beit3 import (
    Beit3ForCaptioning,
    Beit3ForImageClassification,
    Beit3ForImageTextRetrieval,
    Beit3ForQuestionAnswering,
    Beit3ForVisualReasoning,
    Beit3Model,
)
from .processing_beit3 import Beit3Processor
from .tokenization_beit3 import Beit3Tokenizer

# head name -> model class; the head is recognised from the keys (beit3.md §3.3)
HEAD_CLASSES: dict[str, type[PreTrainedModel]] = {
    "backbone": Beit3Model,
    "retrieval": Beit3ForImageTextRetrieval,
    "vqa": Beit3ForQuestionAnswering,
    "nlvr2": Beit3ForVisualReasoning,
    "captioning": Beit3ForCaptioning,
    "imagenet": Beit3ForImageClassification,
}
# what a fine-tuning run's `args.task` names, for a cross-check with the keys
_TASK_HEADS = {
    "vqav2": "vqa",
    "nlvr2": "nlvr2",
    "coco_captioning": "captioning",
    "nocaps": "captioning",
    "coco_retrieval": "retrieval",
    "flickr30k": "retrieval",
    "imagenet": "imagenet",
}
_MAX_SIZE = 1 << 20
_MAX_LAYERS = 256
# sentencepiece models take a few MB (XLM-R's 250,000 pieces about 5 MB); a larger --tokenizer is not one
_MAX_SENTENCEPIECE_BYTES = 64 << 20


class Beit3ConversionError(ConversionError):
    """The checkpoint cannot be read as BEiT-3 (or its architecture cannot be determined)."""


def load_sentencepiece_tokenizer(path: Path) -> Beit3Tokenizer:
    """The ``Beit3Tokenizer`` of the ``--tokenizer`` file; a missing path, a folder or a file that is not an XLM-R
    style sentencepiece model is refused with what was expected."""
    expected = "the sentencepiece model the checkpoint was trained with (the released beit3.spm file)"
    if not path.exists():
        raise FileNotFoundError(f"--tokenizer {printable(path)} does not exist; BEiT-3 expects {expected}")
    if not path.is_file():
        raise Beit3ConversionError(f"--tokenizer {printable(path)} is not a file; BEiT-3 expects {expected}")
    size = path.stat().st_size
    if size > _MAX_SENTENCEPIECE_BYTES:  # read whole: a checkpoint passed by mistake would fill memory first
        raise Beit3ConversionError(
            f"--tokenizer {printable(path)} has {size:,} bytes, too many for a sentencepiece model; BEiT-3 expects "
            f"{expected}"
        )
    try:
        return Beit3Tokenizer(path)
    except (ValueError, OSError) as error:
        raise Beit3ConversionError(f"--tokenizer {printable(path)}: BEiT-3 expects {expected}: {error}") from None


def detect_head(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The released head whose keys the checkpoint holds (`backbone` when it has none)."""
    if "logit_scale" in state_dict or "vision_head.weight" in state_dict:
        return "retrieval"
    if "pooler.dense.weight" in state_dict:
        return "vqa"
    if "head.dense1.weight" in state_dict:
        return "nlvr2"
    if "mlm_head.weight" in state_dict:
        return "captioning"
    if "fc_norm.weight" in state_dict:
        return "imagenet"
    return "backbone"


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise Beit3ConversionError(f"the checkpoint has no tensor {key!r}")
    if tensor.dim() != ndim:
        raise Beit3ConversionError(f"{key} has shape {list(tensor.shape)}; expected {ndim} dimension(s)")
    return tuple(tensor.shape)


def _bounded(name: str, value: int, source: str, *, minimum: int = 1) -> int:
    if not minimum <= value <= _MAX_SIZE:
        raise Beit3ConversionError(f"the inferred {name} is {value} (from {source}); the checkpoint is damaged")
    return int(value)


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise Beit3ConversionError(f"{where} must be a positive integer, got {printable_repr(value)}")
    return value


def _encoder_config(original_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """torchscale's `EncoderConfig` fields from an original config: the fixtures' `{"encoder_config": {...}}`, or the
    flat dict itself."""
    if original_config is None:
        return {}
    if not isinstance(original_config, Mapping):
        raise Beit3ConversionError(f"original_config must be a JSON object, got {type(original_config).__name__}")
    node = original_config.get("encoder_config", original_config)
    if not isinstance(node, Mapping):
        raise Beit3ConversionError(f"original_config encoder_config must be an object, got {printable_repr(node)}")
    return node


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    original_config: Mapping[str, Any] | None = None,
    variant: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Beit3Config:
    """Read the architecture from tensor shapes (beit3.md §3.3), completed by the original config or the variant.

    Shapes give the width, depth, FFN, vocabulary, patch size, text table and (from the vision table) the stored
    resolution; the final LayerNorm is present or not. The head count is not in the weights: it comes from
    `original_config` (`encoder_attention_heads`), else from the `variant` preset, else from the released head
    dimension 64. The target resolution is `original_config` `img_size`, else the fine-tuning `args.input_size`,
    else the stored one; a different grid makes the converter resize the vision table by the original rule.
    """
    if variant is not None and variant not in PRESETS:
        raise Beit3ConversionError(f"unknown variant {variant!r}; valid variants: {', '.join(PRESETS)}")
    encoder = _encoder_config(original_config)
    sd = state_dict
    vocab_size, hidden = _shape(sd, "beit3.text_embed.weight", 2)
    _bounded("hidden size", hidden, "beit3.text_embed.weight")
    _bounded("vocabulary size", vocab_size, "beit3.text_embed.weight", minimum=4)
    out_channels, channels, patch, patch_w = _shape(sd, "beit3.vision_embed.proj.weight", 4)
    if out_channels != hidden or patch != patch_w:
        raise Beit3ConversionError(
            f"beit3.vision_embed.proj.weight is {[out_channels, channels, patch, patch_w]}; expected a square "
            f"patch kernel with {hidden} output channels"
        )
    vision_rows, width = _shape(sd, "beit3.encoder.embed_positions.A.weight", 2)
    text_rows, text_width = _shape(sd, "beit3.encoder.embed_positions.B.weight", 2)
    if width != hidden or text_width != hidden:
        raise Beit3ConversionError("the position tables do not have the width of the text embedding")
    grid = math.isqrt(max(vision_rows - POSITION_OFFSET - 1, 0))
    if grid < 1 or grid * grid + POSITION_OFFSET + 1 != vision_rows:
        raise Beit3ConversionError(
            f"beit3.encoder.embed_positions.A.weight has {vision_rows} rows; expected a square patch grid plus 3 "
            "(two unused rows and the class token)"
        )
    pattern = re.compile(r"^beit3\.encoder\.layers\.(\d{1,6})\.")
    layers = sorted({int(m.group(1)) for key in sd if (m := pattern.match(key))})
    if not layers or layers != list(range(len(layers))) or len(layers) > _MAX_LAYERS:
        raise Beit3ConversionError(f"the layers under beit3.encoder.layers are not 0..n-1: {layers[:10]}")
    intermediate, ffn_in = _shape(sd, "beit3.encoder.layers.0.ffn.A.fc1.weight", 2)
    if ffn_in != hidden:
        raise Beit3ConversionError("beit3.encoder.layers.0.ffn.A.fc1.weight does not read the hidden size")
    _bounded("FFN size", intermediate, "beit3.encoder.layers.0.ffn.A.fc1.weight")

    heads = _positive_int(encoder.get("encoder_attention_heads"), "original_config encoder_attention_heads")
    if heads is None and variant is not None:
        heads = PRESETS[variant]["num_attention_heads"]
        if PRESETS[variant]["hidden_size"] != hidden:
            raise Beit3ConversionError(
                f"variant {variant!r} has hidden size {PRESETS[variant]['hidden_size']} but the checkpoint {hidden}"
            )
    if heads is None:
        if hidden % 64:
            raise Beit3ConversionError(
                f"the head count is not stored in BEiT-3 weights and hidden size {hidden} is not a multiple of the "
                "released head dimension 64: pass --original-config (encoder_attention_heads) or --variant"
            )
        heads = hidden // 64
    if hidden % heads:
        raise Beit3ConversionError(f"{heads} attention heads do not divide the hidden size {hidden}")

    args = (extra or {}).get("args")
    args = args if isinstance(args, Mapping) else {}
    image_size = _positive_int(encoder.get("img_size"), "original_config img_size")
    if image_size is None:
        image_size = _positive_int(args.get("input_size"), "the checkpoint's args.input_size")
    if image_size is None:
        image_size = grid * patch
    if image_size % patch:
        raise Beit3ConversionError(f"image size {image_size} is not a multiple of the patch size {patch}")
    _bounded("image size", image_size, "the original config")

    head = detect_head(sd)
    task = args.get("task")
    if isinstance(task, str) and task in _TASK_HEADS and _TASK_HEADS[task] != head:
        raise Beit3ConversionError(
            f"the checkpoint's args.task is {task!r} (a {_TASK_HEADS[task]} head) but its keys hold a {head} head"
        )
    fields: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "vocab_size": vocab_size,
        "max_position_embeddings": text_rows,
        "image_size": image_size,
        "patch_size": patch,
        "num_channels": channels,
        "final_layer_norm": "beit3.encoder.layer_norm.A.weight" in sd,
        # the mask token is the last tokenizer id: 64001 for beit3.spm (8 unused rows after it)
        "mask_token_id": vocab_size - 9 if vocab_size > 9 else vocab_size - 1,
    }
    eps = encoder.get("layernorm_eps")
    if isinstance(eps, float) and eps > 0:
        fields["layer_norm_eps"] = eps
    if head == "vqa":
        classes = _shape(sd, "head.3.weight", 2)[0]
        fields["classifier_hidden_size"] = _shape(sd, "head.0.weight", 2)[0]
        fields.update(_labels(classes, "answer"))
    elif head == "nlvr2":
        fields["classifier_hidden_size"] = _shape(sd, "head.dense1.weight", 2)[0]
        fields.update({"id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}})
    elif head == "imagenet":
        fields.update(_labels(_shape(sd, "head.weight", 2)[0], "class"))
    return Beit3Config(**fields)


def _labels(count: int, stem: str) -> dict[str, dict]:
    id2label = {i: f"{stem}_{i}" for i in range(count)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


# fmt: off
_BACKBONE_KEY_MAP: KeyMap = [
    (r"beit3\.text_embed\.weight",                      "beit3.embeddings.text_embedding.weight"),
    (r"beit3\.vision_embed\.proj\.(weight|bias)",       r"beit3.embeddings.patch_embedding.projection.\1"),
    (r"beit3\.vision_embed\.(cls_token|mask_token)",    r"beit3.embeddings.\1"),
    (r"beit3\.encoder\.embed_positions\.A\.weight",     "beit3.embeddings.vision_position_embedding.weight"),
    (r"beit3\.encoder\.embed_positions\.B\.weight",     "beit3.embeddings.text_position_embedding.weight"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.A\.(weight|bias)",
     r"beit3.encoder.layers.\1.self_attn.\2_proj.vision.\3"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.B\.(weight|bias)",
     r"beit3.encoder.layers.\1.self_attn.\2_proj.language.\3"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn\.inner_attn_ln\.A\.(weight|bias)",
     r"beit3.encoder.layers.\1.self_attn.inner_attn_ln.vision.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn\.inner_attn_ln\.B\.(weight|bias)",
     r"beit3.encoder.layers.\1.self_attn.inner_attn_ln.language.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.A\.(weight|bias)", r"beit3.encoder.layers.\1.layer_norm1.vision.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.B\.(weight|bias)", r"beit3.encoder.layers.\1.layer_norm1.language.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.final_layer_norm\.A\.(weight|bias)",     r"beit3.encoder.layers.\1.layer_norm2.vision.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.final_layer_norm\.B\.(weight|bias)",     r"beit3.encoder.layers.\1.layer_norm2.language.\2"),
    (r"beit3\.encoder\.layers\.(\d+)\.ffn\.A\.(fc1|fc2|ffn_layernorm)\.(weight|bias)",
     r"beit3.encoder.layers.\1.mlp.vision.\2.\3"),
    (r"beit3\.encoder\.layers\.(\d+)\.ffn\.B\.(fc1|fc2|ffn_layernorm)\.(weight|bias)",
     r"beit3.encoder.layers.\1.mlp.language.\2.\3"),
    (r"beit3\.encoder\.layer_norm\.A\.(weight|bias)",   r"beit3.encoder.layer_norm.vision.\1"),
    (r"beit3\.encoder\.layer_norm\.B\.(weight|bias)",   r"beit3.encoder.layer_norm.language.\1"),
]
_HEAD_KEY_MAPS: dict[str, KeyMap] = {
    "backbone": [],
    "retrieval": [
        (r"vision_head\.weight",               "visual_projection.weight"),
        (r"language_head\.weight",             "text_projection.weight"),
        (r"logit_scale",                       "logit_scale"),
    ],
    "vqa": [
        (r"pooler\.(norm|dense)\.(weight|bias)", r"pooler.\1.\2"),
        (r"head\.(0|1|3)\.(weight|bias)",        r"classifier.\1.\2"),
    ],
    "nlvr2": [(r"head\.(norm1|dense1|norm2|dense2)\.(weight|bias)", r"classifier.\1.\2")],
    "captioning": [(r"mlm_head\.(weight|bias)", r"lm_head.\1")],
    "imagenet": [
        (r"fc_norm\.(weight|bias)",            r"fc_norm.\1"),
        (r"head\.(weight|bias)",               r"classifier.\1"),
    ],
}
# fmt: on


def key_map_for(head: str) -> KeyMap:
    """The backbone keys, the head's keys, and for a pretrained backbone its pretraining heads dropped (the released
    code never reads them, beit3.md §3.2)."""
    if head != "backbone":
        return _BACKBONE_KEY_MAP + _HEAD_KEY_MAPS[head]
    # the bare `Beit3Model` holds the backbone at its root: no `beit3.` prefix
    bare = [(pattern, target.removeprefix("beit3.")) for pattern, target in _BACKBONE_KEY_MAP]
    return bare + [(r"(?!beit3\.).+", None)]


class Beit3Converter(FamilyConverter):
    """`vlzoo convert beit3`: every released checkpoint (pretrained, itc, indomain, in1k, vqa, nlvr2, captioning,
    nocaps, coco/f30k retrieval), in `{'model'}`, DeepSpeed `{'module'}` or flat containers; fine-tuned files pickle
    `argparse.Namespace` (read as data, never executed). The head is recognised from the keys; `--variant` (`base`,
    `large`) or `--original-config` (`encoder_attention_heads`, `img_size`) give what the weights do not store."""

    family = "BEiT-3"
    variants = tuple(PRESETS)
    required_keys = (
        r"beit3\.text_embed\.weight",
        r"beit3\.vision_embed\.proj\.weight",
        r"beit3\.encoder\.embed_positions\.A\.weight",
        r"beit3\.encoder\.layers\.0\.self_attn\.q_proj\.A\.weight",
    )
    position_tables = {r"(beit3\.)?embeddings\.vision_position_embedding\.weight": POSITION_OFFSET + 1}

    def __init__(self):
        self.head = "backbone"
        self.config: Beit3Config | None = None

    def infer_config(self, state_dict, *, original_config, variant, extra) -> Beit3Config:
        self.head = detect_head(state_dict)
        self.config = infer_config(state_dict, original_config=original_config, variant=variant, extra=extra)
        return self.config

    def key_map(self, config: Beit3Config) -> KeyMap:
        return key_map_for(self.head)

    def check_state_dict(self, state_dict: dict[str, torch.Tensor], config: Beit3Config) -> None:
        # released pretrained weights are fp16 (beit3.md §3.1): convert in float32, bicubic resizing included
        for key, tensor in state_dict.items():
            if tensor.is_floating_point() and tensor.dtype != torch.float32:
                state_dict[key] = tensor.float()

    def build_model(self, config: Beit3Config) -> PreTrainedModel:
        return HEAD_CLASSES[self.head](config)

    def check_tokenizer(self, tokenizer: Path) -> None:
        """``--tokenizer`` must be the sentencepiece file the model was trained with (``beit3.spm``)."""
        load_sentencepiece_tokenizer(tokenizer)

    def build_processor(
        self, config: Beit3Config, tokenizer: Path | None = None
    ) -> Beit3Processor | Beit3ImageProcessor:
        """The original evaluation transform at the checkpoint's resolution (the ImageNet one for the in1k head, the
        vision-language one otherwise), with the tokenizer of ``tokenizer`` (the ``.spm`` file) when given; without
        it the image processor alone, since ``Beit3Tokenizer`` cannot be built without the released file."""
        imagenet = self.head == "imagenet"
        size = config.image_size
        images = Beit3ImageProcessor.for_imagenet(size) if imagenet else Beit3ImageProcessor.for_vision_language(size)
        if tokenizer is None:
            return images
        text = load_sentencepiece_tokenizer(tokenizer)
        if text.mask_token_id != config.mask_token_id or text.vocab_size > config.vocab_size:
            raise Beit3ConversionError(
                f"--tokenizer {printable(tokenizer)} gives {text.vocab_size} ids with <mask> = {text.mask_token_id}, "
                f"but the checkpoint has a vocabulary of {config.vocab_size} with <mask> = {config.mask_token_id}: "
                "pass the sentencepiece file the model was trained with (beit3.spm for the released models)"
            )
        return Beit3Processor(image_processor=images, tokenizer=text)

    def align_expected(self, name, expected, inputs):
        """Outputs of the resized model are compared only when the conversion targets its resolution, and the
        other outputs only when it does not (one converted folder has one resolution)."""
        if self.head != "backbone" or "resized64.visual_tokens" not in inputs:
            return expected
        resized = inputs["resized64.visual_tokens"].shape[-1]
        target = self.config is not None and self.config.image_size == resized
        return expected if name.startswith("resized64.") == target else None

    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return PARITY_RUNNERS[self.head](model, inputs)


# -- parity: the fixtures' input/output names are the original forward's (beit3.md §6) ----------------------------


def _keep(padding: torch.Tensor) -> torch.Tensor:
    """The original's padding mask (1 = pad) as HF's attention_mask (1 = keep)."""
    return 1 - padding


def _backbone_outputs(model: Beit3Model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    results = {}
    image_size = model.config.image_size
    if "resized64.visual_tokens" in inputs and inputs["resized64.visual_tokens"].shape[-1] == image_size:
        results["resized64.embed_positions_A"] = model.embeddings.vision_position_embedding.weight
        out = model(
            input_ids=inputs["textual_tokens"],
            pixel_values=inputs["resized64.visual_tokens"],
            attention_mask=_keep(inputs["text_padding_position"]),
        )
        results["resized64.joint.encoder_out"] = out.last_hidden_state
        return results
    ids, mask, image = inputs["textual_tokens"], _keep(inputs["text_padding_position"]), inputs["visual_tokens"]
    joint = model(input_ids=ids, pixel_values=image, attention_mask=mask, output_hidden_states=True)
    results["joint.encoder_out"] = joint.last_hidden_state
    results["joint.multiway_split_position"] = torch.tensor(joint.last_hidden_state.shape[1] - ids.shape[1])
    results["joint.embedding_output"] = joint.hidden_states[0]
    for index, state in enumerate(joint.hidden_states[1:]):
        results[f"joint.layer{index}_output"] = state
    results["vision.encoder_out"] = model(pixel_values=image).last_hidden_state
    results["text.encoder_out"] = model(input_ids=ids, attention_mask=mask).last_hidden_state
    masked = model(pixel_values=image, bool_masked_pos=inputs["vision_masked_position"].bool())
    results["vision_masked.encoder_out"] = masked.last_hidden_state
    return results


def _retrieval_outputs(model: Beit3ForImageTextRetrieval, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ids, mask, image = inputs["text_description"], _keep(inputs["padding_mask"]), inputs["image"]
    out = model(input_ids=ids, pixel_values=image, attention_mask=mask, return_loss=True)
    return {
        "vision_cls": out.image_embeds,
        "language_cls": out.text_embeds,
        "logits_per_image": out.logits_per_image,
        "logits_per_text": out.logits_per_text,
        "loss": out.loss,
        "eval_scores": out.image_embeds @ out.text_embeds.t(),
        "vision.encoder_out": out.vision_model_output.last_hidden_state,
        "text.encoder_out": out.text_model_output.last_hidden_state,
    }


def _vqa_outputs(model: Beit3ForQuestionAnswering, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ids, mask, image = inputs["question"], _keep(inputs["padding_mask"]), inputs["image"]
    out = model(input_ids=ids, pixel_values=image, attention_mask=mask)
    encoded = model.beit3(input_ids=ids, pixel_values=image, attention_mask=mask).last_hidden_state
    return {"logits": out.logits, "pooled_output": model.pooler(encoded), "encoder_out": encoded}


def _nlvr2_outputs(model: Beit3ForVisualReasoning, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ids, mask = inputs["text_description"], _keep(inputs["padding_mask"])
    pairs = torch.stack([inputs["image_a"], inputs["image_b"]], dim=1)
    out = model(input_ids=ids, pixel_values=pairs, attention_mask=mask)
    encoded = model.beit3(
        input_ids=torch.cat([ids, ids]),
        pixel_values=torch.cat([inputs["image_a"], inputs["image_b"]]),
        attention_mask=torch.cat([mask, mask]),
    ).last_hidden_state
    return {"logits": out.logits, "encoder_out": encoded}


def _captioning_outputs(model: Beit3ForCaptioning, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    image, masked_ids, mask = inputs["image"], inputs["text_ids"], _keep(inputs["padding_mask"])
    chosen = inputs["language_masked_pos"].bool()
    labels = torch.where(chosen, inputs["language_tokens"], torch.full_like(masked_ids, -100))
    out = model(input_ids=masked_ids, pixel_values=image, attention_mask=mask, labels=labels)
    max_length = inputs["language_tokens"].shape[1]
    return {
        "all_text_logits": out.logits,
        "masked_logits": out.logits[chosen],
        "masked_labels": inputs["language_tokens"][chosen],
        "loss": out.loss,
        "generate_beams1.decoded_ids": model.generate(image, max_length=max_length, num_beams=1),
        "generate_beams3.decoded_ids": model.generate(image, max_length=max_length, num_beams=3),
    }


def _imagenet_outputs(model: Beit3ForImageClassification, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    image = inputs["image"]
    encoded = model.beit3(pixel_values=image).last_hidden_state
    return {
        "logits": model(pixel_values=image).logits,
        "pooled_output": model.fc_norm(encoded[:, 1:].mean(dim=1)),
        "encoder_out": encoded,
    }


PARITY_RUNNERS = {
    "backbone": _backbone_outputs,
    "retrieval": _retrieval_outputs,
    "vqa": _vqa_outputs,
    "nlvr2": _nlvr2_outputs,
    "captioning": _captioning_outputs,
    "imagenet": _imagenet_outputs,
}

__all__ = [
    "HEAD_CLASSES",
    "Beit3ConversionError",
    "Beit3Converter",
    "detect_head",
    "infer_config",
    "key_map_for",
    "load_sentencepiece_tokenizer",
]
