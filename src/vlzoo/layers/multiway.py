"""Modality-routed ("multiway") modules: one expert per modality, chosen by position along the sequence (BEiT-3)."""

from collections.abc import Callable

import torch
from torch import nn

# Expert names in vlzoo, and torchscale's names for the same experts (`A` = vision, `B` = language): a converter
# renames `.A.` to `.vision.` and `.B.` to `.language.` (beit3.md §2.2-2.3).
EXPERT_NAMES = ("vision", "language")
TORCHSCALE_EXPERT_NAMES = {"A": "vision", "B": "language"}


class Multiway(nn.Module):
    """Two independent copies of a module, `vision` and `language`, routed along the sequence.

    Built from any module constructor and its arguments (`Multiway(nn.LayerNorm, 768, eps=1e-5)`), so every block of
    a multiway transformer (projections, LayerNorms, the whole FFN) gets one expert per modality. In a joint sequence
    vision always comes first (beit3.md §2.3): tokens `[0, split_position)` go to `vision`, `[split_position, L)` to
    `language`, and the results are concatenated back in order. `split_position=L` routes a vision-only sequence
    entirely to `vision`, `split_position=0` a text-only one to `language`; then only that expert runs.
    torchscale encodes these two cases as -1 and 0; convert -1 to the sequence length at the model boundary.

    Args:
        module_factory: builds one expert; called twice with `*args, **kwargs`.
        dim: the sequence axis of the inputs (1 for `[batch, seq, hidden]`).
    """

    def __init__(self, module_factory: Callable[..., nn.Module], *args, dim: int = 1, **kwargs):
        super().__init__()
        self.vision = module_factory(*args, **kwargs)
        self.language = module_factory(*args, **kwargs)
        self.dim = dim

    def forward(self, hidden_states: torch.Tensor, split_position: int | None = None) -> torch.Tensor:
        """Apply `vision` to the first `split_position` positions along `dim` and `language` to the rest."""
        length = hidden_states.shape[self.dim]
        if split_position is None:
            raise ValueError(
                "split_position is required by a Multiway module: the number of leading vision tokens "
                f"(0 for text-only input, {length} = the sequence length for vision-only input)"
            )
        # a Python int (a SymInt when traced with dynamic shapes), never a tensor: routing must not read tensor values
        if isinstance(split_position, bool) or not isinstance(split_position, int | torch.SymInt):
            raise TypeError(f"split_position must be a Python int; got {type(split_position).__name__}")
        if not 0 <= split_position <= length:
            raise ValueError(
                f"split_position must lie in [0, {length}] (the sequence length along dim {self.dim}); got "
                f"{split_position}. For vision-only input pass the sequence length (torchscale's -1)."
            )
        if split_position == length:
            return _call(self.vision, hidden_states)
        if split_position == 0:
            return _call(self.language, hidden_states)
        vision, language = hidden_states.split([split_position, length - split_position], dim=self.dim)
        return torch.cat([_call(self.vision, vision), _call(self.language, language)], dim=self.dim)


def _call(expert: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """`expert(hidden_states)`; linear experts go through the CPU inference fast path where it applies."""
    if type(expert) is nn.Linear:
        from .fast_path import fast_linear  # fast_path imports attention, which imports this module

        return fast_linear(expert, hidden_states)
    return expert(hidden_states)


def route(module: nn.Module, hidden_states: torch.Tensor, split_position: int | None) -> torch.Tensor:
    """Call `module` on `hidden_states`, passing `split_position` only when it is a `Multiway` module.

    Lets one block be built plain or multiway and called the same way either way.
    """
    if isinstance(module, Multiway):
        return module(hidden_states, split_position)
    return module(hidden_states)


__all__ = ["EXPERT_NAMES", "TORCHSCALE_EXPERT_NAMES", "Multiway", "route"]
