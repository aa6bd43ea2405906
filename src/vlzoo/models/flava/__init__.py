"""FLAVA: a foundational language and vision alignment model (Singh et al., CVPR 2022)."""

from .configuration_flava import (
    FlavaConfig,
    FlavaImageCodebookConfig,
    FlavaImageConfig,
    FlavaMultimodalConfig,
    FlavaTextConfig,
)
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
    "FlavaLosses",
    "FlavaModel",
    "FlavaModelOutput",
    "FlavaMultimodalConfig",
    "FlavaPreTrainedModel",
    "FlavaTextConfig",
    "FlavaTowerOutput",
]
