"""vlzoo pipelines, made available to `transformers.pipeline` by `register_pipelines`: tasks transformers lacks, and
transformers' image tasks with the image processor's input checks."""

import importlib

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.image_feature_extraction import ImageFeatureExtractionPipeline
from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline
from transformers.utils import logging

from .image_inputs import (
    CheckedImageFeatureExtractionPipeline,
    CheckedZeroShotImageClassificationPipeline,
    load_pipeline_image,
)
from .image_text_retrieval import ImageTextRetrievalPipeline

logger = logging.get_logger(__name__)

IMAGE_TEXT_RETRIEVAL_TASK = "image-text-retrieval"
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


def register_pipelines() -> None:
    """Register vlzoo's tasks with `transformers.pipeline`; calling it again changes nothing (and logs nothing)."""
    _install_checked_pipelines()
    registered = PIPELINE_REGISTRY.supported_tasks.get(IMAGE_TEXT_RETRIEVAL_TASK)
    if registered is not None and registered["impl"] is ImageTextRetrievalPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        IMAGE_TEXT_RETRIEVAL_TASK,
        pipeline_class=ImageTextRetrievalPipeline,
        pt_model=AutoModel,
        default=None,
        type="multimodal",
    )


__all__ = [
    "CHECKED_TRANSFORMERS_TASKS",
    "IMAGE_TEXT_RETRIEVAL_TASK",
    "CheckedImageFeatureExtractionPipeline",
    "CheckedZeroShotImageClassificationPipeline",
    "ImageTextRetrievalPipeline",
    "load_pipeline_image",
    "register_pipelines",
]
