"""MS-CLIP's registry record: heads, processors, converter, demo and what the common harness may assume."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig

from ...registry import DemoScore, DemoSpec, Family, demo_schedule

_MS_CLIP_DEMO_SIZE = 64


def _ms_clip_demo_config(kind: str) -> PreTrainedConfig:
    """Small MS-CLIP-S (conv stem /8, branch, shared blocks) or the vanilla baseline with the same widths.

    The vanilla vision tower has as many layers as MS-CLIP's stem plus blocks, as in the paper's comparison.
    """
    from .configuration_ms_clip import MsClipConfig

    vision = {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 3, "image_size": _MS_CLIP_DEMO_SIZE}
    text = {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 3, "num_hidden_layers": 5}
    if kind == "ms_clip":
        vision.update(
            patch_size=8,
            num_hidden_layers=4,
            stem_strides=[2, 2, 1, 1],
            lateral_adapter_layers=[1, 2, 3],
            branch_strides=[2, 2, 2],
            adapter_kernel_sizes=[4, 2, 1],
        )
        return MsClipConfig.from_preset(
            "b32-yfcc", vision_config=vision, text_config=text, projection_dim=64, num_shared_layers=4,
            logit_scale_init_value=2.6592,
        )  # fmt: skip
    vision.update(patch_size=8, num_hidden_layers=5)
    return MsClipConfig.from_preset(
        "vanilla", vision_config=vision, text_config=text, projection_dim=64, logit_scale_init_value=2.6592
    )


def _ms_clip_demo_processor() -> Any:
    """The real CLIP BPE tokenizer and the original MS-CLIP transform at the demo resolution."""
    from .processing_ms_clip import MsClipProcessor

    return MsClipProcessor.from_model_config(_ms_clip_demo_config("ms_clip"))


def _zero_shot_demo_score(model_dir: Path, test: Any) -> DemoScore:
    from ...evaluation.zero_shot_shapes import zero_shot_demo_score

    return zero_shot_demo_score(model_dir, test)


def _zero_shot_figure(path: Path, test: Any, scores: Mapping[str, DemoScore]) -> None:
    from ...evaluation.zero_shot_shapes import draw_zero_shot_figure

    draw_zero_shot_figure(path, test, scores)


def _chance(test: Any, train: Any) -> dict[str, float]:
    from ...data import class_names

    return {"chance": 1.0 / len(class_names())}


def _ms_clip_converter() -> Any:
    from .conversion_ms_clip import MsClipConverter

    return MsClipConverter()


def build_family() -> Family:
    """The MS-CLIP record of `vlzoo.registry`."""
    from .configuration_ms_clip import MsClipConfig, MsClipTextConfig, MsClipVisionConfig
    from .image_processing_ms_clip import MsClipImageProcessor
    from .modeling_ms_clip import (
        MsClipModel,
        MsClipTextModelWithProjection,
        MsClipVisionModelWithProjection,
    )
    from .processing_ms_clip import MsClipProcessor
    from .tokenization_ms_clip import MsClipTokenizer

    demo = DemoSpec(
        description="MS-CLIP-S vs the vanilla CLIP baseline, zero-shot accuracy on shapes",
        task="contrastive",
        models={
            "ms_clip": lambda: _ms_clip_demo_config("ms_clip"),
            "vanilla": lambda: _ms_clip_demo_config("vanilla"),
        },
        processor=_ms_clip_demo_processor,
        evaluate=_zero_shot_demo_score,
        summary="zero-shot accuracy: ms_clip={score[ms_clip]:.3f} vanilla={score[vanilla]:.3f} chance={chance:.3f} "
        "params: ms_clip={parameters[ms_clip]} vanilla={parameters[vanilla]}",
        metric="accuracy",
        references=_chance,
        figure=_zero_shot_figure,
        figure_name="zero_shot.png",
        data={"num_validation": 64, "image_size": _MS_CLIP_DEMO_SIZE},
        training=demo_schedule(1e-3, weight_decay=0.1, log_every_steps=50),
    )
    return Family(
        key="ms_clip",
        name="MS-CLIP",
        config_class=MsClipConfig,
        heads={"contrastive": MsClipModel},
        sub_config_classes=(MsClipVisionConfig, MsClipTextConfig),
        auto_models={"AutoModel": MsClipModel, "AutoModelForZeroShotImageClassification": MsClipModel},
        extra_model_classes=(MsClipVisionModelWithProjection, MsClipTextModelWithProjection),
        image_processor_class=MsClipImageProcessor,
        tokenizer_class=MsClipTokenizer,
        processor_class=MsClipProcessor,
        pipelines=("zero-shot-image-classification", "image-feature-extraction", "image-text-retrieval"),
        exports=(
            "MsClipConfig",
            "MsClipImageProcessor",
            "MsClipModel",
            "MsClipProcessor",
            "MsClipTextConfig",
            "MsClipTextModelWithProjection",
            "MsClipTokenizer",
            "MsClipVisionConfig",
            "MsClipVisionModelWithProjection",
        ),
        capabilities=frozenset({"dual_encoder"}),
        converter=_ms_clip_converter,
        demo=demo,
        lora_target_modules=("q_proj", "v_proj"),
        default_preset="b32-yfcc",
        presets={"b32-yfcc": 132_408_001, "b32-laion": 132_408_001, "b16-yfcc": 132_503_617, "vanilla": 151_277_313},
        config_builder=MsClipConfig.from_preset,
        processor_builder=MsClipProcessor.from_model_config,
    )
