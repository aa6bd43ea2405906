"""MS-CLIP: modality-shared contrastive language-image pre-training (You et al., ECCV 2022)."""

from .configuration_ms_clip import MsClipConfig, MsClipTextConfig, MsClipVisionConfig
from .image_processing_ms_clip import MsClipImageProcessor
from .modeling_ms_clip import (
    MsClipModel,
    MsClipOutput,
    MsClipPreTrainedModel,
    MsClipTextModelWithProjection,
    MsClipVisionModelWithProjection,
)
from .processing_ms_clip import MsClipProcessor
from .tokenization_ms_clip import MsClipTokenizer

__all__ = [
    "MsClipConfig",
    "MsClipImageProcessor",
    "MsClipModel",
    "MsClipOutput",
    "MsClipPreTrainedModel",
    "MsClipProcessor",
    "MsClipTextConfig",
    "MsClipTextModelWithProjection",
    "MsClipTokenizer",
    "MsClipVisionConfig",
    "MsClipVisionModelWithProjection",
]
