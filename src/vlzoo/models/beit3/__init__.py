"""BEiT-3: the Multiway Transformer of "Image as a Foreign Language" (Wang et al., CVPR 2023), as released."""

from .configuration_beit3 import Beit3Config
from .image_processing_beit3 import Beit3ImageProcessor
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
from .processing_beit3 import Beit3Processor
from .tokenization_beit3 import Beit3Tokenizer

__all__ = [
    "Beit3CaptioningOutput",
    "Beit3Config",
    "Beit3ForCaptioning",
    "Beit3ForImageClassification",
    "Beit3ForImageTextRetrieval",
    "Beit3ForQuestionAnswering",
    "Beit3ForVisualReasoning",
    "Beit3ImageProcessor",
    "Beit3ImageTextRetrievalOutput",
    "Beit3Model",
    "Beit3PreTrainedModel",
    "Beit3Processor",
    "Beit3Tokenizer",
]
