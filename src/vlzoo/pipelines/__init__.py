"""vlzoo pipelines for tasks transformers lacks, made available to `transformers.pipeline` by `register_pipelines`."""

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .image_text_retrieval import ImageTextRetrievalPipeline

IMAGE_TEXT_RETRIEVAL_TASK = "image-text-retrieval"


def register_pipelines() -> None:
    """Register vlzoo's tasks with `transformers.pipeline`; calling it again changes nothing (and logs nothing)."""
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


__all__ = ["IMAGE_TEXT_RETRIEVAL_TASK", "ImageTextRetrievalPipeline", "register_pipelines"]
