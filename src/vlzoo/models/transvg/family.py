"""TransVG's registry record: the grounding head, its processor, converter and what the common harness may assume."""

from typing import Any

from ...registry import Family


def _transvg_converter() -> Any:
    from .conversion_transvg import TransvgConverter

    return TransvgConverter()


def grounding_objective(processor: Any, **options: Any) -> Any:
    """The shared grounding objective with the released code's loss weights, L1 : GIoU = 1 : 1 (transvg.md §7)."""
    from ...training.objectives import GroundingObjective

    options.setdefault("l1_weight", 1.0)
    options.setdefault("giou_weight", 1.0)
    return GroundingObjective(processor, **options)


def build_family() -> Family:
    """The TransVG record of `vlzoo.registry`."""
    from transformers import BertTokenizer

    from .configuration_transvg import TransvgConfig, TransvgEncoderConfig
    from .image_processing_transvg import TransvgImageProcessor
    from .modeling_transvg import TransvgForVisualGrounding
    from .processing_transvg import TransvgProcessor

    return Family(
        key="transvg",
        name="TransVG",
        config_class=TransvgConfig,
        heads={"grounding": TransvgForVisualGrounding},
        sub_config_classes=(TransvgEncoderConfig,),
        image_processor_class=TransvgImageProcessor,
        tokenizer_class=BertTokenizer,
        processor_class=TransvgProcessor,
        objectives={"grounding": grounding_objective},
        pipelines=("visual-grounding",),
        exports=(
            "TransvgConfig",
            "TransvgEncoderConfig",
            "TransvgForVisualGrounding",
            "TransvgImageProcessor",
            "TransvgProcessor",
        ),
        capabilities=frozenset({"fusion_encoder", "boxes"}),
        converter=_transvg_converter,
        # DETR and fusion attention (q_proj/v_proj) and BERT's (query/value)
        lora_target_modules=("q_proj", "v_proj", "query", "value"),
        default_preset="r50",
        presets={"r50": 149_155_268, "r101": 168_095_172, "r50-l40": 149_160_388, "r101-l40": 168_100_292},
        config_builder=TransvgConfig.from_preset,
        processor_builder=TransvgProcessor.from_model_config,
    )
