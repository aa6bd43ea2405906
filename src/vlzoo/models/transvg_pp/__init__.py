"""TransVG++: visual grounding with a language-conditioned vision transformer (Deng et al., TPAMI 2023)."""

from .configuration_transvg_pp import TransvgPlusPlusConfig
from .modeling_transvg_pp import TransvgPlusPlusForVisualGrounding, TransvgPlusPlusPreTrainedModel

__all__ = ["TransvgPlusPlusConfig", "TransvgPlusPlusForVisualGrounding", "TransvgPlusPlusPreTrainedModel"]
