"""METER: CLIP-ViT and RoBERTa joined by co-attention (Dou et al., CVPR 2022)."""

from .configuration_meter import MeterConfig
from .image_processing_meter import MeterImageProcessor
from .modeling_meter import (
    MeterForClassificationOutput,
    MeterForImageTextRetrieval,
    MeterForImageTextRetrievalOutput,
    MeterForPreTraining,
    MeterForPreTrainingOutput,
    MeterForQuestionAnswering,
    MeterForVisualEntailment,
    MeterForVisualReasoning,
    MeterForVisualReasoningOutput,
    MeterModel,
    MeterModelOutput,
    MeterPreTrainedModel,
)
from .processing_meter import MeterProcessor

__all__ = [
    "MeterConfig",
    "MeterForClassificationOutput",
    "MeterForImageTextRetrieval",
    "MeterForImageTextRetrievalOutput",
    "MeterForPreTraining",
    "MeterForPreTrainingOutput",
    "MeterForQuestionAnswering",
    "MeterForVisualEntailment",
    "MeterForVisualReasoning",
    "MeterForVisualReasoningOutput",
    "MeterImageProcessor",
    "MeterModel",
    "MeterModelOutput",
    "MeterPreTrainedModel",
    "MeterProcessor",
]
