"""METER's registry record: heads, processors, converter, presets and what the common harness may assume."""

from typing import Any

from ...registry import DemoSpec, Family, demo_schedule

# Default LoRA targets: the query and value projections of every attention that has them, i.e. the co-attention
# layers' self- and cross-attentions and the CLIP tower's attention (RoBERTa names its projections `query`/`value`
# and is left out). For the fusion layers alone use the regex `FUSION_LORA_TARGETS` as `target_modules`.
LORA_TARGET_MODULES = ("q_proj", "v_proj")
FUSION_LORA_TARGETS = r".*\.(text|image)_layers\.\d+\.(self_attn|cross_attn)\.(q_proj|v_proj)"


def _meter_converter() -> Any:
    from .conversion_meter import MeterConverter

    return MeterConverter()


def _itm_objective(processor: Any, **options: Any) -> Any:
    from .objective_meter import MeterItmObjective

    return MeterItmObjective(processor, **options)


def _pretraining_objective(processor: Any, **options: Any) -> Any:
    from .objective_meter import MeterPretrainingObjective

    return MeterPretrainingObjective(processor, **options)


def _demo() -> DemoSpec:
    """`vlzoo demo meter`: VQA, then ITM fine-tuned from the VQA folder, of a small METER on shapes (`demo_meter`)."""
    from . import demo_meter

    return DemoSpec(
        description="a small METER: VQA then ITM on shapes, against the question-type prior and chance",
        task=("vqa", "itm"),
        models={"meter": demo_meter.demo_config},
        processor=demo_meter.demo_processor,
        evaluate=demo_meter.demo_score,
        summary="itm accuracy: meter={details[meter][itm]:.3f} chance={chance:.1f} | vqa accuracy: "
        "meter={details[meter][vqa]:.3f} prior={prior:.3f}",
        metric="vqa_accuracy",
        references=demo_meter.demo_references,
        figure=demo_meter.demo_figure,
        figure_name="meter.png",
        data={"num_validation": 8, "image_size": demo_meter.DEMO_IMAGE_SIZE, "max_objects": 2},
        training=demo_schedule(1e-3),
        max_steps=1000,
        batch_size=32,
        num_train=2000,
        num_test=200,
    )


def build_family() -> Family:
    """The METER record of `vlzoo.registry`."""
    from .configuration_meter import MeterConfig
    from .image_processing_meter import MeterImageProcessor
    from .modeling_meter import (
        MeterForImageTextRetrieval,
        MeterForPreTraining,
        MeterForQuestionAnswering,
        MeterForVisualEntailment,
        MeterForVisualReasoning,
        MeterModel,
    )
    from .processing_meter import MeterProcessor

    return Family(
        key="meter",
        name="METER",
        config_class=MeterConfig,
        heads={
            "mlm": MeterForPreTraining,
            "itm": MeterForImageTextRetrieval,
            "vqa": MeterForQuestionAnswering,
            # MLM + ITM together, as METER pretrains (hard ITM negatives with model.objective.similarity_model)
            "pretraining": MeterForPreTraining,
        },
        auto_models={"AutoModel": MeterModel, "AutoModelForPreTraining": MeterForPreTraining},
        # NLVR2 and SNLI-VE heads: converted, tested and usable, but no shapes task trains them yet
        extra_model_classes=(MeterForVisualReasoning, MeterForVisualEntailment),
        # the shared ITM objective plus the rank score the matching and retrieval pipelines read
        objectives={"itm": _itm_objective, "pretraining": _pretraining_objective},
        image_processor_class=MeterImageProcessor,
        processor_class=MeterProcessor,
        pipelines=("vlzoo-visual-question-answering", "image-text-matching", "image-text-retrieval"),
        exports=(
            "MeterConfig",
            "MeterForImageTextRetrieval",
            "MeterForPreTraining",
            "MeterForQuestionAnswering",
            "MeterForVisualEntailment",
            "MeterForVisualReasoning",
            "MeterImageProcessor",
            "MeterModel",
            "MeterProcessor",
        ),
        capabilities=frozenset({"fusion_encoder"}),
        converter=_meter_converter,
        demo=_demo(),
        lora_target_modules=LORA_TARGET_MODULES,
        default_preset="clip16-288-pretrain",
        presets={  # MeterForPreTraining (the default "mlm" head: MLM decoder 768 x 50265 + ITM)
            "clip16-288-pretrain": 357_899_099,
            "clip16-224-pretrain": 357_800_795,
            "clip16-288-vqa": 358_645_595,
            "clip16-288-nlvr2": 357_899_867,
            "clip16-288-snli": 358_092_635,
            "clip16-288-flickr": 358_092_635,
            "clip16-288-coco": 358_092_635,
            "swin-384-pretrain": 366_164_435,  # Swin-B (transformers' SwinModel) instead of CLIP
        },
        config_builder=MeterConfig.from_preset,
        processor_builder=MeterProcessor.from_model_config,
    )
