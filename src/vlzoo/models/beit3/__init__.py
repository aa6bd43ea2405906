"""BEiT-3: the Multiway Transformer of "Image as a Foreign Language" (Wang et al., CVPR 2023), as released."""

from .configuration_beit3 import Beit3Config
from .modeling_beit3 import (
    Beit3CaptioningOutput,
    Beit3ForCaptioning,
    Beit3ForImageClassification,
    Beit3ForImageTextRetrieval,
    Beit3ForQuestionAnswering,
    Beit3ForVisualReasoning,
    Beit3ImageTextRetrievalOutput,
    Beit3Model,
    Beit3PreTrainedModel,
)

__all__ = [
    "Beit3CaptioningOutput",
    "Beit3Config",
    "Beit3ForCaptioning",
    "Beit3ForImageClassification",
    "Beit3ForImageTextRetrieval",
    "Beit3ForQuestionAnswering",
    "Beit3ForVisualReasoning",
    "Beit3ImageTextRetrievalOutput",
    "Beit3Model",
    "Beit3PreTrainedModel",
]
