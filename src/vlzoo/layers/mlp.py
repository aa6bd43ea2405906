"""Two-layer transformer MLP (`fc1` -> activation -> `fc2`)."""

import torch
from torch import nn
from transformers.activations import ACT2FN

from .fast_path import fast_linear


class FeedForward(nn.Module):
    """The position-wise MLP of a transformer block; `activation` is a transformers `ACT2FN` name."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu", *, bias: bool = True):
        super().__init__()
        if activation not in ACT2FN:
            raise ValueError(f"activation {activation!r} is not a transformers activation name")
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.activation = activation
        self.activation_fn = ACT2FN[activation]
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = fast_linear(self.fc1, hidden_states, self.activation, activation_fn=self.activation_fn)
        return fast_linear(self.fc2, hidden_states)


__all__ = ["FeedForward"]
