"""TransVG++'s registry record: the grounding head, the shared TransVG processor, converter and harness facts."""

from typing import Any

from ...registry import DemoSpec, Family


def _transvg_pp_converter() -> Any:
    from .conversion_transvg_pp import TransvgPlusPlusConverter

    return TransvgPlusPlusConverter()


def _demo() -> DemoSpec:
    """`vlzoo demo grounding`: a small TransVG++ on the shapes referring expressions (see `demo_transvg_pp`)."""
    from . import demo_transvg_pp as demo

    return DemoSpec(
        description="a small TransVG++ grounding the shapes referring expressions, against the mean training box",
        task="grounding",
        models={"transvg_pp": demo.demo_config},
        processor=demo.demo_processor,
        evaluate=demo.demo_score,
        summary="grounding acc@0.5: transvg_pp={score[transvg_pp]:.3f} baseline={baseline:.3f}",
        metric="grounding_accuracy",
        references=demo.demo_references,
        figure=demo.demo_figure,
        figure_name="grounding.png",
        data={"num_validation": 8, "image_size": demo.DEMO_IMAGE_SIZE, "max_objects": demo.DEMO_MAX_OBJECTS},
        training=demo.demo_training,
        max_steps=1600,
        batch_size=32,
        num_train=3000,
        num_test=200,
        aliases=("grounding",),
    )


def build_family() -> Family:
    """The TransVG++ record of `vlzoo.registry`."""
    from transformers import BertTokenizer

    from ..transvg.family import grounding_objective
    from ..transvg.image_processing_transvg import TransvgImageProcessor
    from ..transvg.processing_transvg import TransvgProcessor
    from .configuration_transvg_pp import TransvgPlusPlusConfig
    from .modeling_transvg_pp import TransvgPlusPlusForVisualGrounding

    return Family(
        key="transvg_pp",
        name="TransVG++",
        config_class=TransvgPlusPlusConfig,
        heads={"grounding": TransvgPlusPlusForVisualGrounding},
        image_processor_class=TransvgImageProcessor,
        tokenizer_class=BertTokenizer,
        processor_class=TransvgProcessor,
        objectives={"grounding": grounding_objective},
        pipelines=("visual-grounding",),
        exports=("TransvgPlusPlusConfig", "TransvgPlusPlusForVisualGrounding"),
        capabilities=frozenset({"fusion_encoder", "boxes"}),
        converter=_transvg_pp_converter,
        # ViT self- and cross-attention (q_proj/v_proj) and BERT's (query/value)
        lora_target_modules=("q_proj", "v_proj", "query", "value"),
        default_preset="tiny",
        presets={"tiny": 115_542_212, "small": 133_922_180, "base": 206_071_556},
        config_builder=TransvgPlusPlusConfig.from_preset,
        processor_builder=TransvgProcessor.from_model_config,
        demo=_demo(),
    )
