"""The typed contract between the common harness and a family's tests.

Every registered family ships `tests/models/<key>/tester.py` defining `TESTER`, an instance of a `FamilyTester`
subclass. The harness reads what a family can do from its registry record (`Family.capabilities`, `heads`,
`presets`) and asks the tester only for what the registry cannot know: tiny configurations, inputs, labels, the
tensor to compare and the processor to round-trip.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from vlzoo.registry import Family, get_family


class FamilyTester(ABC):
    """What the harness needs from one family.

    Class attributes:
        family_key: the registry key (`ms_clip`).
        configs: name -> builder of a tiny configuration (`**overrides` update it). Use awkward sizes (heads that
            differ per tower, widths that are not powers of two) so that a swapped axis fails.
    """

    family_key: ClassVar[str]
    configs: ClassVar[Mapping[str, Callable[..., PreTrainedConfig]]]

    @property
    def family(self) -> Family:
        return get_family(self.family_key)

    @abstractmethod
    def inputs(self, model_class: type[PreTrainedModel], config: PreTrainedConfig, batch: int = 3) -> dict:
        """The model inputs `model_class` takes (HF names), `batch` examples, deterministic."""

    def labels(self, model_class: type[PreTrainedModel], config: PreTrainedConfig, batch: int = 3) -> dict:
        """Keyword arguments that make `model_class` return a `loss` (empty when the class computes none)."""
        return {}

    @abstractmethod
    def main_output(self, model_class: type[PreTrainedModel], outputs: ModelOutput) -> torch.Tensor:
        """The tensor whose equality the harness checks for `model_class` (flatten and concatenate several)."""

    @abstractmethod
    def num_layers(self, model_class: type[PreTrainedModel], config: PreTrainedConfig) -> dict[str, int]:
        """Tower name -> number of layers `model_class` runs in it (hidden states are that plus one)."""

    def tower_outputs(
        self, model_class: type[PreTrainedModel], config: PreTrainedConfig, outputs: ModelOutput
    ) -> dict[str, ModelOutput]:
        """Tower name -> the output holding that tower's `hidden_states` and `attentions`.

        Dual encoders (`capabilities` has "dual_encoder") keep each tower's output in `vision_model_output` /
        `text_model_output` when the class runs both towers; otherwise the class's own output holds them. Families
        with another layout override this.
        """
        towers = self.num_layers(model_class, config)
        if "dual_encoder" in self.family.capabilities and set(towers) == {"vision", "text"}:
            return {"vision": outputs.vision_model_output, "text": outputs.text_model_output}
        return {name: outputs for name in towers}

    def unused_parameters(self, model_class: type[PreTrainedModel], config: PreTrainedConfig) -> dict[str, str]:
        """Parameter-name prefix -> why `model_class`'s forward leaves it without a gradient (e.g. a pooler the
        head does not read, kept so that the original checkpoint loads exactly). Everything else must get one."""
        return {}

    @abstractmethod
    def tiny_processor(self) -> Any:
        """A processor matching the tiny configurations (no download)."""

    @abstractmethod
    def processor_sample(self) -> dict:
        """Keyword arguments for the processor: a small batch of texts and/or images of odd sizes and modes."""

    def build_preset(self, preset: str) -> PreTrainedConfig:
        """The configuration of a released preset (the family's `config_builder`)."""
        return self.family.config_builder(preset)
