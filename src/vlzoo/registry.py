"""One `Family` record per architecture, and the registration of every family with transformers' Auto classes."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
)


@dataclass(frozen=True)
class Family:
    """Everything vlzoo knows about one architecture family.

    Args:
        key: folder and file name (`ms_clip`).
        name: display name (`MS-CLIP`).
        config_class: the top-level config (its `model_type` is `vlzoo_<key>`).
        sub_config_classes: configs of sub-towers, registered with `AutoConfig` as well.
        auto_models: Auto class name -> model class (`{"AutoModel": MsClipModel, ...}`).
        extra_model_classes: other public model classes (tower-only classes), tested by the common harness.
        image_processor_class, tokenizer_class, processor_class: preprocessing classes.
        pipeline_tasks: transformers or vlzoo pipeline tasks the family supports.
        lora_target_modules: documented default PEFT LoRA targets (module-name suffixes).
        variants: names of the released checkpoints (config presets).
        status: a short line for the README table.
        training_objective: the objective `vlzoo train` uses (`contrastive`, ...).
        config_builder: `(preset, **overrides) -> config`, for building a model from a released configuration.
        processor_builder: `config -> processor` matching that model (resolution, vocabulary).
    """

    key: str
    name: str
    config_class: type[PreTrainedConfig]
    auto_models: dict[str, type[PreTrainedModel]]
    sub_config_classes: tuple[type[PreTrainedConfig], ...] = ()
    extra_model_classes: tuple[type[PreTrainedModel], ...] = ()
    image_processor_class: type | None = None
    tokenizer_class: type | None = None
    processor_class: type | None = None
    pipeline_tasks: tuple[str, ...] = ()
    lora_target_modules: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    status: str = ""
    training_objective: str = "contrastive"
    config_builder: Callable[..., PreTrainedConfig] | None = field(default=None, compare=False)
    processor_builder: Callable[[PreTrainedConfig], Any] | None = field(default=None, compare=False)

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def model_classes(self) -> tuple[type[PreTrainedModel], ...]:
        """Every public model class of the family, without repeats."""
        classes: list[type[PreTrainedModel]] = []
        for cls in (*self.auto_models.values(), *self.extra_model_classes):
            if cls not in classes:
                classes.append(cls)
        return tuple(classes)


def _ms_clip() -> Family:
    from .models.ms_clip.configuration_ms_clip import PRESETS, MsClipConfig, MsClipTextConfig, MsClipVisionConfig
    from .models.ms_clip.image_processing_ms_clip import MsClipImageProcessor
    from .models.ms_clip.modeling_ms_clip import (
        MsClipModel,
        MsClipTextModelWithProjection,
        MsClipVisionModelWithProjection,
    )
    from .models.ms_clip.processing_ms_clip import MsClipProcessor
    from .models.ms_clip.tokenization_ms_clip import MsClipTokenizer

    return Family(
        key="ms_clip",
        name="MS-CLIP",
        config_class=MsClipConfig,
        sub_config_classes=(MsClipVisionConfig, MsClipTextConfig),
        auto_models={"AutoModel": MsClipModel, "AutoModelForZeroShotImageClassification": MsClipModel},
        extra_model_classes=(MsClipVisionModelWithProjection, MsClipTextModelWithProjection),
        image_processor_class=MsClipImageProcessor,
        tokenizer_class=MsClipTokenizer,
        processor_class=MsClipProcessor,
        pipeline_tasks=("zero-shot-image-classification", "image-feature-extraction", "image-text-retrieval"),
        lora_target_modules=("q_proj", "v_proj"),
        variants=tuple(PRESETS),
        status="complete: b32-yfcc, b32-laion, b16-yfcc converters, vanilla baseline, training, pipelines",
        training_objective="contrastive",
        config_builder=MsClipConfig.from_preset,
        processor_builder=MsClipProcessor.from_model_config,
    )


_FAMILY_BUILDERS: dict[str, Callable[[], Family]] = {"ms_clip": _ms_clip}
_FAMILIES: dict[str, Family] = {}


def get_family(key: str) -> Family:
    """The `Family` record for `key` (`ms_clip`, ...); a ValueError lists the valid keys."""
    if key not in _FAMILY_BUILDERS:
        raise ValueError(f"unknown family {key!r}; valid families: {', '.join(sorted(_FAMILY_BUILDERS))}")
    if key not in _FAMILIES:
        _FAMILIES[key] = _FAMILY_BUILDERS[key]()
    return _FAMILIES[key]


def families() -> list[Family]:
    """Every family, in registry order."""
    return [get_family(key) for key in _FAMILY_BUILDERS]


def register_family(family: Family) -> None:
    """Register a family's config, models and preprocessing classes with transformers' Auto classes (idempotent)."""
    for config_class in (family.config_class, *family.sub_config_classes):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_name, model_class in family.auto_models.items():
        getattr(transformers, auto_name).register(family.config_class, model_class, exist_ok=True)
    if family.image_processor_class is not None:
        AutoImageProcessor.register(
            family.config_class, image_processor_classes={"pil": family.image_processor_class}, exist_ok=True
        )
    if family.tokenizer_class is not None:
        AutoTokenizer.register(family.config_class, tokenizer_class=family.tokenizer_class, exist_ok=True)
    if family.processor_class is not None:
        AutoProcessor.register(family.config_class, family.processor_class, exist_ok=True)


def register_all() -> None:
    """Register every family (called by `import vlzoo`)."""
    for family in families():
        register_family(family)


__all__ = ["Family", "families", "get_family", "register_all", "register_family"]
