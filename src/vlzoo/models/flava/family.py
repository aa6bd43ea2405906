"""FLAVA's registry record: heads, processors, converter, pipelines and what the common harness may assume."""

from typing import Any

from ...registry import Family


def _flava_converter() -> Any:
    from .conversion_flava import FlavaConverter

    return FlavaConverter()


def _pretraining_objective(processor: Any, **options: Any) -> Any:
    from .objective_flava import FlavaPretrainingObjective

    return FlavaPretrainingObjective(processor, **options)


def build_family() -> Family:
    """The FLAVA record of `vlzoo.registry`."""
    from .configuration_flava import (
        FlavaConfig,
        FlavaImageCodebookConfig,
        FlavaImageConfig,
        FlavaMultimodalConfig,
        FlavaTextConfig,
    )
    from .image_processing_flava import VlzooFlavaImageProcessor
    from .modeling_flava import (
        FlavaForImageTextMatching,
        FlavaForPreTraining,
        FlavaForSequenceClassification,
        FlavaModel,
    )
    from .processing_flava import VlzooFlavaProcessor

    return Family(
        key="flava",
        name="FLAVA",
        config_class=FlavaConfig,
        heads={
            "contrastive": FlavaModel,
            "itm": FlavaForImageTextMatching,
            "vqa": FlavaForSequenceClassification,
            "pretraining": FlavaForPreTraining,
        },
        sub_config_classes=(FlavaImageConfig, FlavaTextConfig, FlavaMultimodalConfig, FlavaImageCodebookConfig),
        auto_models={
            "AutoModel": FlavaModel,
            "AutoModelForZeroShotImageClassification": FlavaModel,
            "AutoModelForPreTraining": FlavaForPreTraining,
            "AutoModelForSequenceClassification": FlavaForSequenceClassification,
        },
        image_processor_class=VlzooFlavaImageProcessor,
        processor_class=VlzooFlavaProcessor,
        objectives={"pretraining": _pretraining_objective},
        pipelines=(
            "zero-shot-image-classification",
            "image-feature-extraction",
            "image-text-retrieval",
            "image-text-matching",
            "vlzoo-visual-question-answering",
        ),
        exports=(
            "FlavaConfig",
            "FlavaForImageTextMatching",
            "FlavaForPreTraining",
            "FlavaForSequenceClassification",
            "FlavaImageCodebook",
            "VlzooFlavaImageProcessor",
            "FlavaModel",
            "VlzooFlavaProcessor",
        ),
        capabilities=frozenset({"dual_encoder", "fusion_encoder"}),
        converter=_flava_converter,
        lora_target_modules=("q_proj", "v_proj"),
        default_preset="flava-full",
        presets={"flava-full": 241_356_289},
        config_builder=FlavaConfig.from_preset,
        processor_builder=VlzooFlavaProcessor.from_model_config,
    )
