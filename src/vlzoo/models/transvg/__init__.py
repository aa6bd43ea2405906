"""TransVG: end-to-end visual grounding with transformers (Deng et al., ICCV 2021)."""

from .configuration_transvg import TransvgConfig, TransvgEncoderConfig
from .image_processing_transvg import TransvgImageProcessor
from .modeling_transvg import TransvgForVisualGrounding, TransvgPreTrainedModel
from .processing_transvg import TransvgProcessor

__all__ = [
    "TransvgConfig",
    "TransvgEncoderConfig",
    "TransvgForVisualGrounding",
    "TransvgImageProcessor",
    "TransvgPreTrainedModel",
    "TransvgProcessor",
]
