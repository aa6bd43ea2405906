"""vlzoo: vision-language transformers for the Hugging Face ecosystem.

`import vlzoo` registers every family with transformers' Auto classes and vlzoo's pipelines; it reads no file,
touches no network and builds no model.
"""

from .models.ms_clip import (
    MsClipConfig,
    MsClipImageProcessor,
    MsClipModel,
    MsClipProcessor,
    MsClipTextConfig,
    MsClipTextModelWithProjection,
    MsClipTokenizer,
    MsClipVisionConfig,
    MsClipVisionModelWithProjection,
)
from .pipelines import register_pipelines
from .registry import families, get_family, register_all

__version__ = "0.1.0"

register_all()
register_pipelines()

__all__ = [
    "MsClipConfig",
    "MsClipImageProcessor",
    "MsClipModel",
    "MsClipProcessor",
    "MsClipTextConfig",
    "MsClipTextModelWithProjection",
    "MsClipTokenizer",
    "MsClipVisionConfig",
    "MsClipVisionModelWithProjection",
    "families",
    "get_family",
    "register_all",
    "register_pipelines",
]
