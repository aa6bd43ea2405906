"""METER's registry record: heads, processors, converter, presets and what the common harness may assume."""

from typing import Any

from ...registry import Family

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
        },
        config_builder=MeterConfig.from_preset,
        processor_builder=MeterProcessor.from_model_config,
    )
