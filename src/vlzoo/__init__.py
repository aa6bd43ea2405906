"""vlzoo: vision-language transformers for the Hugging Face ecosystem.

`import vlzoo` registers every family with transformers' Auto classes and vlzoo's pipelines; it reads no file,
touches no network and builds no model. The family classes (`vlzoo.MsClipModel`, ...) are the `exports` of the
registry's `Family` records, looked up when first used.
"""

from typing import TYPE_CHECKING, Any

from .pipelines import register_pipelines
from .registry import (  # noqa: F401
    TOP_LEVEL_NAMES,
    families,
    get_family,
    register_all,
    register_family,
    unregister_family,
)

__version__ = "0.1.0"

register_pipelines()  # first: a family's declared pipeline tasks are checked against the registered ones
register_all()

# Top-level names of vlzoo's own modules that are imported on first use (they pull in huggingface_hub and yaml).
_LAZY_NAMES = {"list_pretrained": "vlzoo.hub.cards"}

if TYPE_CHECKING:  # static names for type checkers and IDEs; at run time they come from the registry
    from .hub.cards import list_pretrained  # noqa: F401
    from .models.ms_clip import (  # noqa: F401
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


def _all_names() -> list[str]:
    return [*TOP_LEVEL_NAMES, *(name for family in families() for name in family.exports)]


def __getattr__(name: str) -> Any:
    """`__all__`, `list_pretrained` and every registered family's classes (its `exports`), imported on first use."""
    if name == "__all__":
        return _all_names()
    from importlib import import_module

    if name in _LAZY_NAMES:
        return getattr(import_module(_LAZY_NAMES[name]), name)
    from .registry import exporting_family

    family = exporting_family(name)
    if family is None:
        raise AttributeError(f"module 'vlzoo' has no attribute {name!r}")
    return getattr(import_module(family.export_package), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_all_names()})
