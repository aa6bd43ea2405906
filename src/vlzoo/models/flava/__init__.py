"""FLAVA: a foundational language and vision alignment model (Singh et al., CVPR 2022)."""

from .configuration_flava import (
    FlavaConfig,
    FlavaImageCodebookConfig,
    FlavaImageConfig,
    FlavaMultimodalConfig,
    FlavaTextConfig,
)
from .image_processing_flava import VlzooFlavaImageProcessor
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
from .processing_flava import VlzooFlavaProcessor

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
    "VlzooFlavaImageProcessor",
    "FlavaLosses",
    "FlavaModel",
    "FlavaModelOutput",
    "FlavaMultimodalConfig",
    "FlavaPreTrainedModel",
    "VlzooFlavaProcessor",
    "FlavaTextConfig",
    "FlavaTowerOutput",
]
