"""FLAVA's registry record: heads, processors, converter, pipelines and what the common harness may assume."""

from typing import Any

from ...registry import DemoSpec, Family, demo_schedule


def _flava_converter() -> Any:
    from .conversion_flava import FlavaConverter

    return FlavaConverter()


def _pretraining_objective(processor: Any, **options: Any) -> Any:
    from .objective_flava import FlavaPretrainingObjective

    return FlavaPretrainingObjective(processor, **options)


def _demo() -> DemoSpec:
    """`vlzoo demo flava`: pretraining then VQA fine-tuning of a small FLAVA on shapes (see `demo_flava`)."""
    from . import demo_flava

    return DemoSpec(
        description="a small FLAVA: contrastive then VQA on shapes, zero-shot and VQA accuracy against chance and the "
        "question-type prior",
        task=("contrastive", "vqa"),
        models={"flava": demo_flava.demo_config},
        processor=demo_flava.demo_processor,
        evaluate=demo_flava.demo_score,
        summary="zero-shot accuracy: flava={details[flava][zero_shot]:.3f} chance={chance:.3f} | vqa accuracy: "
        "flava={details[flava][vqa]:.3f} prior={prior:.3f}",
        metric="vqa_accuracy",
        references=demo_flava.demo_references,
        figure=demo_flava.demo_figure,
        figure_name="flava.png",
        data={"num_validation": 8, "image_size": demo_flava.DEMO_IMAGE_SIZE},
        training=demo_schedule(4e-4),
        max_steps=1000,
        batch_size=32,
        num_train=2000,
        num_test=200,
    )


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
        demo=_demo(),
        # Default LoRA targets: the query and value projections of every self-attention of the three encoders
        # (`image_model`, `text_model`, `multimodal_model`: `encoder.layers.N.self_attn.q_proj` / `.v_proj`, i.e.
        # 2 x (image + text + multimodal layers) modules, 2 x 30 in flava-full). Nothing else matches: not the MLPs,
        # the projections to the joint or multimodal space, the heads or the codebook. Add "classifier" (VQA) or
        # "itm_head" to `modules_to_save` to train a head with the adapter.
        lora_target_modules=("q_proj", "v_proj"),
        default_preset="flava-full",
        presets={"flava-full": 241_356_289},
        config_builder=FlavaConfig.from_preset,
        processor_builder=VlzooFlavaProcessor.from_model_config,
    )
