"""FLAVA: a foundational language and vision alignment model (Singh et al., CVPR 2022)."""

from .configuration_flava import (
    FlavaConfig,
    FlavaImageCodebookConfig,
    FlavaImageConfig,
    FlavaMultimodalConfig,
    FlavaTextConfig,
)
from .image_processing_flava import FlavaImageProcessor
from .modeling_flava import (
    FlavaForImageTextMatching,
    FlavaForPreTraining,
    FlavaForPreTrainingOutput,
    FlavaForSequenceClassification,
    FlavaImageCodebook,
    FlavaImageCodebookOutput,
    FlavaLosses,
    FlavaModel,
    FlavaModelOutput,
    FlavaPreTrainedModel,
    FlavaTowerOutput,
)
from .processing_flava import FlavaProcessor

__all__ = [
    "FlavaConfig",
    "FlavaForImageTextMatching",
    "FlavaForPreTraining",
    "FlavaForPreTrainingOutput",
    "FlavaForSequenceClassification",
    "FlavaImageCodebook",
    "FlavaImageCodebookConfig",
    "FlavaImageCodebookOutput",
    "FlavaImageConfig",
    "FlavaImageProcessor",
    "FlavaLosses",
    "FlavaModel",
    "FlavaModelOutput",
    "FlavaMultimodalConfig",
    "FlavaPreTrainedModel",
    "FlavaProcessor",
    "FlavaTextConfig",
    "FlavaTowerOutput",
]
