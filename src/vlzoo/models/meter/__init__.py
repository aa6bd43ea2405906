"""METER: CLIP-ViT and RoBERTa joined by co-attention (Dou et al., CVPR 2022)."""

from .configuration_meter import MeterConfig
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
    "MeterModel",
    "MeterModelOutput",
    "MeterPreTrainedModel",
]
