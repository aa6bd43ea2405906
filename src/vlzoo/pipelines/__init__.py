"""vlzoo pipelines, made available to `transformers.pipeline` by `register_pipelines`: tasks transformers lacks, and
transformers' image tasks with the image processor's input checks.

`PIPELINE_TASKS` maps each vlzoo task to its pipeline class and `PIPELINE_MODEL_CLASSES` to the Auto classes its
models load with; the task heads' Auto classes and their registration live in `vlzoo.pipelines.task_heads`.
"""

import importlib
from collections.abc import Iterable

from transformers import AutoModel, AutoModelForVisualQuestionAnswering, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.image_feature_extraction import ImageFeatureExtractionPipeline
from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline
from transformers.utils import logging

from .image_captioning import IMAGE_CAPTIONING_TASK, ImageCaptioningPipeline
from .image_inputs import (
    CheckedImageFeatureExtractionPipeline,
    CheckedZeroShotImageClassificationPipeline,
    load_pipeline_image,
)
from .image_text_matching import IMAGE_TEXT_MATCHING_TASK, ImageTextMatchingPipeline
from .image_text_retrieval import ImageTextRetrievalPipeline
from .saved_architecture import SavedArchitecture
from .task_heads import (
    HEAD_AUTO_CLASSES,
    AutoModelForImageCaptioning,
    AutoModelForImageTextMatching,
    AutoModelForVisualGrounding,
    register_head_model,
)
from .visual_grounding import VISUAL_GROUNDING_TASK, VisualGroundingPipeline, draw_grounding
from .visual_question_answering import VQA_TASK, VisualQuestionAnsweringPipeline

logger = logging.get_logger(__name__)

IMAGE_TEXT_RETRIEVAL_TASK = "image-text-retrieval"
# vlzoo's tasks -> their pipeline classes.
PIPELINE_TASKS: dict[str, type[Pipeline]] = {
    IMAGE_TEXT_RETRIEVAL_TASK: ImageTextRetrievalPipeline,
    IMAGE_TEXT_MATCHING_TASK: ImageTextMatchingPipeline,
    VQA_TASK: VisualQuestionAnsweringPipeline,
    VISUAL_GROUNDING_TASK: VisualGroundingPipeline,
    IMAGE_CAPTIONING_TASK: ImageCaptioningPipeline,
}
# vlzoo's tasks -> the Auto classes `pipeline(task, model=FOLDER)` tries, in order. Retrieval loads the class the folder
# was saved from (a dual encoder or a cross-encoder with its head), else tries the matching head, then AutoModel.
PIPELINE_MODEL_CLASSES: dict[str, tuple[type, ...]] = {
    IMAGE_TEXT_RETRIEVAL_TASK: (SavedArchitecture, AutoModelForImageTextMatching, AutoModel),
    IMAGE_TEXT_MATCHING_TASK: (AutoModelForImageTextMatching,),
    VQA_TASK: (AutoModelForVisualQuestionAnswering,),
    VISUAL_GROUNDING_TASK: (AutoModelForVisualGrounding,),
    IMAGE_CAPTIONING_TASK: (AutoModelForImageCaptioning,),
}
# transformers' task -> (its pipeline class, the subclass that checks images with the image processor's rule)
CHECKED_TRANSFORMERS_TASKS = {
    "zero-shot-image-classification": (
        ZeroShotImageClassificationPipeline,
        CheckedZeroShotImageClassificationPipeline,
    ),
    "image-feature-extraction": (ImageFeatureExtractionPipeline, CheckedImageFeatureExtractionPipeline),
}


def _resolve(impl: type | str) -> type:
    """A registry entry's class; transformers stores its own as dotted paths, imported on use."""
    if isinstance(impl, str):
        module_name, class_name = impl.rsplit(".", 1)
        return getattr(importlib.import_module(module_name), class_name)
    return impl


def _install_checked_pipelines() -> None:
    """Point transformers' image tasks at the checking subclasses (identical for non-vlzoo image processors)."""
    for task, (original, checked) in CHECKED_TRANSFORMERS_TASKS.items():
        entry = PIPELINE_REGISTRY.supported_tasks.get(task)
        if entry is None or entry["impl"] is checked:
            continue
        current = _resolve(entry["impl"])
        if current is not original:
            logger.warning(
                f"the {task!r} pipeline was replaced by {current.__name__}; vlzoo leaves it in place, so its "
                "image inputs are not checked by vlzoo's image rule."
            )
            continue
        # Replaced in the registry directly: `register_pipeline` would also mark the class as a custom pipeline,
        # and `save_pretrained` of such a pipeline would then require trust_remote_code to load it again.
        PIPELINE_REGISTRY.supported_tasks[task] = {**entry, "impl": checked}


def register_pipeline_task(task: str) -> None:
    """Register one of vlzoo's tasks (a key of `PIPELINE_TASKS`) with `transformers.pipeline`; idempotent and silent
    when it is already registered."""
    if task not in PIPELINE_TASKS:
        raise ValueError(f"unknown vlzoo pipeline task {task!r}; vlzoo's tasks: {', '.join(PIPELINE_TASKS)}")
    pipeline_class = PIPELINE_TASKS[task]
    registered = PIPELINE_REGISTRY.supported_tasks.get(task)
    if registered is not None and registered["impl"] is pipeline_class:
        return
    PIPELINE_REGISTRY.register_pipeline(
        task,
        pipeline_class=pipeline_class,
        pt_model=PIPELINE_MODEL_CLASSES[task],
        default=None,
        type="multimodal",
    )


def register_pipelines(tasks: Iterable[str] | None = None) -> None:
    """Register vlzoo's tasks (all of `PIPELINE_TASKS`, or those named) with `transformers.pipeline` and install the
    checked image pipelines; calling it again changes nothing (and logs nothing)."""
    _install_checked_pipelines()
    for task in PIPELINE_TASKS if tasks is None else tasks:
        register_pipeline_task(task)


__all__ = [
    "CHECKED_TRANSFORMERS_TASKS",
    "HEAD_AUTO_CLASSES",
    "IMAGE_CAPTIONING_TASK",
    "IMAGE_TEXT_MATCHING_TASK",
    "IMAGE_TEXT_RETRIEVAL_TASK",
    "PIPELINE_MODEL_CLASSES",
    "PIPELINE_TASKS",
    "VISUAL_GROUNDING_TASK",
    "VQA_TASK",
    "AutoModelForImageCaptioning",
    "AutoModelForImageTextMatching",
    "AutoModelForVisualGrounding",
    "CheckedImageFeatureExtractionPipeline",
    "CheckedZeroShotImageClassificationPipeline",
    "ImageCaptioningPipeline",
    "ImageTextMatchingPipeline",
    "ImageTextRetrievalPipeline",
    "VisualGroundingPipeline",
    "VisualQuestionAnsweringPipeline",
    "draw_grounding",
    "load_pipeline_image",
    "register_head_model",
    "register_pipeline_task",
    "register_pipelines",
]
