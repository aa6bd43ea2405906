"""Which model class answers which task: Auto classes for the heads transformers has none for, head registration and
checks, and how each head's outputs become the pipelines' scores.

transformers 5 has `AutoModelForVisualQuestionAnswering` but no Auto class for image-text matching or single-box
visual grounding, so vlzoo defines `AutoModelForImageTextMatching` and `AutoModelForVisualGrounding` the way
transformers defines its own (a `_BaseAutoModelClass` over a lazy config -> model mapping, empty until a family
registers its head). A family registers each head model with `register_head_model(head, ConfigClass, ModelClass)`;
the pipelines load models through these classes and accept a model only if its class is the one registered for its
config (so a base model without the head is refused with a message naming the head).

This module imports nothing of vlzoo: the Hub bundler copies it into remote-code folders with the pipelines. There
nothing is registered with these Auto classes, so a model whose config no Auto class knows is checked against the
folder's `config.auto_map` instead, which names each head's class under the head's Auto class name.
"""

from collections import OrderedDict
from typing import Any

import torch
from transformers import AutoModelForVisualQuestionAnswering, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

__all__ = [
    "HEAD_AUTO_CLASSES",
    "ITM_SCORE_OUTPUTS",
    "AutoModelForImageCaptioning",
    "AutoModelForImageTextMatching",
    "AutoModelForVisualGrounding",
    "check_head",
    "has_head",
    "itm_score_output",
    "match_scores",
    "model_output",
    "register_head_model",
    "unwrap_model",
]


class AutoModelForImageTextMatching(_BaseAutoModelClass):
    """Auto class of image-text matching heads: `forward(input_ids, attention_mask, pixel_values, ...)` returns
    `itm_logits` `[batch, 2]` (index 1 = "matches"), or the output named by the model's `itm_score_output`."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForVisualGrounding(_BaseAutoModelClass):
    """Auto class of single-box visual grounding heads: `forward(input_ids, attention_mask, pixel_values,
    pixel_mask, ...)` returns `pred_boxes` `[batch, 4]`, normalised (cx, cy, w, h) on the processed canvas."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForImageCaptioning(_BaseAutoModelClass):
    """Auto class of captioning heads: `generate(pixel_values, ...)` returns caption token ids (transformers'
    `image-text-to-text` pipeline needs chat-style `GenerationMixin` models with a text prompt)."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


# Head key (the task keys of vlzoo.training.objectives.OBJECTIVES) -> the Auto class its models register with.
HEAD_AUTO_CLASSES: dict[str, type[_BaseAutoModelClass]] = {
    "vqa": AutoModelForVisualQuestionAnswering,
    "itm": AutoModelForImageTextMatching,
    "grounding": AutoModelForVisualGrounding,
    "captioning": AutoModelForImageCaptioning,
}
_HEAD_DESCRIPTIONS = {
    "vqa": "a VQA head (`logits` [batch, num_labels] over `config.id2label`)",
    "itm": "an image-text matching head (`itm_logits` [batch, 2], index 1 = match)",
    "grounding": "a grounding head (`pred_boxes` [batch, 4], normalised cx, cy, w, h)",
    "captioning": "a captioning head (`generate(pixel_values, ...)` returning caption token ids)",
}
# How a match score is read from an ITM head's output. A model picks another rule than the default `itm_logits`
# with the class attribute `itm_score_output` (METER's retrieval model: its rank score "logits").
ITM_SCORE_OUTPUTS = {
    "itm_logits": "softmax over the 2 logits, probability of index 1 (match), in [0, 1]",
    "logits": "a rank score `[batch, 1]` or `[batch]`, used as it is (higher = better match; not a probability)",
}


def _check_head_key(head: str) -> type[_BaseAutoModelClass]:
    if head not in HEAD_AUTO_CLASSES:
        raise ValueError(f"head must be one of {sorted(HEAD_AUTO_CLASSES)}; got {head!r}.")
    return HEAD_AUTO_CLASSES[head]


def register_head_model(head: str, config_class: type[PreTrainedConfig], model_class: type[PreTrainedModel]) -> None:
    """Register `model_class` as the `head` model ("vqa", "itm", "grounding" or "captioning") of `config_class` (idempotent)."""
    _check_head_key(head).register(config_class, model_class, exist_ok=True)


def unwrap_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper, else `model` itself."""
    if hasattr(model, "peft_config") and callable(getattr(model, "get_base_model", None)):
        return model.get_base_model()
    return model


def _auto_map_head(model: Any, auto_class: type[_BaseAutoModelClass]) -> bool:
    """Whether the model's class (or a base class) is the one its `config.auto_map` names for `auto_class`.

    Remote code loads classes by name from the folder's own modules, so names are compared, not class objects.
    """
    auto_map = getattr(getattr(model, "config", None), "auto_map", None)
    reference = auto_map.get(auto_class.__name__) if isinstance(auto_map, dict) else None
    if not isinstance(reference, str) or not reference:
        return False
    class_name = reference.rpartition(".")[2]
    return any(cls.__name__ == class_name for cls in type(model).__mro__)


def has_head(model: Any, head: str) -> bool:
    """Whether `model` is an instance of the class registered as the `head` model of its config.

    A config no Auto class knows (a remote-code folder loaded where vlzoo is not installed) is answered by the
    folder's `config.auto_map` entry for the head's Auto class.
    """
    auto_class = _check_head_key(head)
    mapping = auto_class._model_mapping
    model = unwrap_model(model)
    config_class = type(getattr(model, "config", None))
    if config_class not in mapping:
        return _auto_map_head(model, auto_class)
    return isinstance(model, mapping[config_class])


def check_head(model: Any, head: str, task: str) -> None:
    """Raise a `TypeError` naming the head `task` needs unless `model` has it (`has_head`) with trained weights.

    A folder saved from another class of the family (its `config.architectures`, e.g. a VQA model) loads through
    the head's Auto class with that head freshly initialised: such a model is refused rather than scored at random.
    """
    if has_head(model, head):
        base = unwrap_model(model)
        saved = getattr(base.config, "architectures", None) or []
        if saved and type(base).__name__ not in saved:
            raise TypeError(
                f"{task} needs {_HEAD_DESCRIPTIONS[head]}, but these weights were saved from {', '.join(saved)} "
                f"(config.architectures), so the {type(base).__name__} head was not in them and would score at "
                "random. Use a folder saved from a model with that head, or fine-tune the head first."
            )
        return
    auto_class = _check_head_key(head)
    base = unwrap_model(model)
    config_name = type(getattr(base, "config", None)).__name__
    raise TypeError(
        f"{task} needs a model with {_HEAD_DESCRIPTIONS[head]}, i.e. the class registered with "
        f"{auto_class.__name__} for its config; {type(base).__name__} ({config_name}) is not one. Load the head model "
        f"with {auto_class.__name__}.from_pretrained(...), or register a head class with "
        f"vlzoo.pipelines.register_head_model({head!r}, ConfigClass, ModelClass)."
    )


def model_output(outputs: Any, name: str, task: str, model: Any) -> torch.Tensor:
    """Output `name` of a forward result (ModelOutput, dict or tuple-less object); a `TypeError` if it is missing."""
    value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
    if not isinstance(value, torch.Tensor):
        found = sorted(key for key, item in outputs.items() if item is not None) if isinstance(outputs, dict) else []
        raise TypeError(
            f"{task} reads the model output `{name}`, but {type(unwrap_model(model)).__name__} returned "
            f"{type(outputs).__name__} without it (outputs: {found})."
        )
    return value


def itm_score_output(model: Any) -> str:
    """The output an ITM model is scored by: its class attribute `itm_score_output`, default "itm_logits"."""
    name = getattr(type(unwrap_model(model)), "itm_score_output", "itm_logits")
    if name not in ITM_SCORE_OUTPUTS:
        raise ValueError(
            f"{type(unwrap_model(model)).__name__}.itm_score_output must be one of {sorted(ITM_SCORE_OUTPUTS)}; "
            f"got {name!r}."
        )
    return name


def match_scores(outputs: Any, model: Any, task: str) -> torch.Tensor:
    """One float32 match score per pair, `[batch]`, by the model's `itm_score_output` rule (`ITM_SCORE_OUTPUTS`)."""
    name = itm_score_output(model)
    value = model_output(outputs, name, task, model).float()
    if name == "itm_logits":
        if value.dim() != 2 or value.shape[-1] != 2:
            raise ValueError(f"{task}: `itm_logits` must have shape [batch, 2]; got {tuple(value.shape)}.")
        return value.softmax(dim=-1)[:, 1]
    if value.dim() == 2 and value.shape[-1] == 1:
        value = value[:, 0]
    if value.dim() != 1:
        raise ValueError(
            f"{task}: the rank score `{name}` must have shape [batch, 1] or [batch]; got {tuple(value.shape)}."
        )
    return value
