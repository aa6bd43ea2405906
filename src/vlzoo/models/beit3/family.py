"""BEiT-3's registry record: heads, processors, converter and what the common harness may assume."""

from typing import Any

from transformers import PreTrainedConfig

from ...registry import DemoSpec, Family, demo_schedule


def _beit3_converter() -> Any:
    from .conversion_beit3 import Beit3Converter

    return Beit3Converter()


def _beit3_processor(config: PreTrainedConfig, sentencepiece_model: str | None = None) -> Any:
    from .processing_beit3 import Beit3Processor

    return Beit3Processor.from_model_config(config, sentencepiece_model)


def _captioning_objective(processor: Any, **options: Any) -> Any:
    from .objective_beit3 import Beit3CaptioningObjective

    return Beit3CaptioningObjective(processor, **options)


class _ClassificationObjective:
    """The image-classification objective's factory, imported on use (training pulls in accelerate); it exposes
    `labels_from_data`, so `vlzoo train` and the demo build a new head with the data's classes."""

    def __call__(self, processor: Any, **options: Any) -> Any:
        from .objective_beit3 import Beit3ImageClassificationObjective

        return Beit3ImageClassificationObjective(processor, **options)

    @staticmethod
    def labels_from_data(train_rows: Any, **options: Any) -> dict[str, dict]:
        from .objective_beit3 import Beit3ImageClassificationObjective

        return Beit3ImageClassificationObjective.labels_from_data(train_rows, **options)


def _demo() -> DemoSpec:
    """`vlzoo demo beit3`: a small BEiT-3 trained on shapes VQA against the question-type prior (see `demo_beit3`)."""
    from . import demo_beit3

    return DemoSpec(
        description="a small BEiT-3 trained on shapes (contrastive on the captions, then VQA), against the best "
        "question-type prior",
        task=("contrastive", "vqa"),
        models={"beit3": demo_beit3.demo_config},
        processor=demo_beit3.demo_processor,
        evaluate=demo_beit3.demo_score,
        summary="vqa accuracy: beit3={score[beit3]:.3f} prior={prior:.3f}",
        metric="vqa_accuracy",
        references=demo_beit3.question_type_prior,
        figure=demo_beit3.demo_figure,
        figure_name="beit3_vqa.png",
        data={"num_validation": 8, "image_size": demo_beit3.DEMO_IMAGE_SIZE},
        training=demo_schedule(3e-4),
        max_steps=1000,
        batch_size=32,
        num_train=2000,
        num_test=200,
    )


def build_family() -> Family:
    """The BEiT-3 record of `vlzoo.registry`."""
    from .configuration_beit3 import Beit3Config
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

    return Family(
        key="beit3",
        name="BEiT-3",
        config_class=Beit3Config,
        heads={
            "contrastive": Beit3ForImageTextRetrieval,
            "vqa": Beit3ForQuestionAnswering,
            "captioning": Beit3ForCaptioning,
            "image-classification": Beit3ForImageClassification,
        },
        # NLVR2: converted, tested and usable (a documented model call), but no shapes task trains it
        extra_model_classes=(Beit3ForVisualReasoning,),
        auto_models={
            "AutoModel": Beit3Model,
            "AutoModelForZeroShotImageClassification": Beit3ForImageTextRetrieval,
            "AutoModelForImageClassification": Beit3ForImageClassification,
        },
        objectives={"captioning": _captioning_objective, "image-classification": _ClassificationObjective()},
        image_processor_class=Beit3ImageProcessor,
        tokenizer_class=Beit3Tokenizer,
        processor_class=Beit3Processor,
        pipelines=(
            "zero-shot-image-classification",
            "image-feature-extraction",
            "image-text-retrieval",
            "vlzoo-visual-question-answering",
            "vlzoo-image-captioning",
            "image-classification",
        ),
        exports=(
            "Beit3Config",
            "Beit3ForCaptioning",
            "Beit3ForImageClassification",
            "Beit3ForImageTextRetrieval",
            "Beit3ForQuestionAnswering",
            "Beit3ForVisualReasoning",
            "Beit3ImageProcessor",
            "Beit3Model",
            "Beit3Processor",
            "Beit3Tokenizer",
        ),
        capabilities=frozenset({"dual_encoder", "fusion_encoder", "generation"}),
        converter=_beit3_converter,
        demo=_demo(),
        # the multiway experts are Linear leaves: `q_proj.vision`, `q_proj.language`, ...
        lora_target_modules=("q_proj.vision", "q_proj.language", "v_proj.vision", "v_proj.language"),
        default_preset="base",
        presets={"base": 222_167_041, "large": 674_799_617},
        config_builder=Beit3Config.from_preset,
        processor_builder=_beit3_processor,
    )
