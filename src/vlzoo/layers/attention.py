"""Multi-head self-attention through transformers' attention interface (sdpa by default, eager for checks)."""

from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention: `softmax(q k^T * scaling + mask) v`.

    q/k/v are `[batch, heads, seq, head_dim]`; `attention_mask` is additive and broadcastable to
    `[batch, heads, q_len, k_len]`. Returns the output as `[batch, seq, heads, head_dim]` and the weights.
    """
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with `q_proj`/`k_proj`/`v_proj`/`out_proj` whose head count is chosen per call.

    The head count is an argument of `forward`, not of the module, so that two modalities can share one set of
    projection weights while splitting them into different numbers of heads (MS-CLIP shares the vision block's
    weights with the text tower, which uses its own `TEXT.HEADS`). Masks are additive floats; `is_causal` is passed
    explicitly on every call because SDPA treats a missing flag as causal.
    """

    is_causal = False

    def __init__(self, hidden_size: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        *,
        num_heads: int,
        attention_mask: torch.Tensor | None = None,
        attn_implementation: str | None = "sdpa",
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over `hidden_states` `[batch, seq, hidden]`; returns the output and (eager only) the weights."""
        batch, seq, _ = hidden_states.shape
        head_dim = self.hidden_size // num_heads
        shape = (batch, seq, num_heads, head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)

        implementation = attn_implementation or "eager"
        if output_attentions:
            implementation = "eager"
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=head_dim**-0.5,
            dropout=self.dropout if self.training else 0.0,
            is_causal=False,
        )
        output = self.out_proj(output.reshape(batch, seq, self.hidden_size))
        return output, (weights if output_attentions else None)


__all__ = ["MultiHeadSelfAttention", "eager_attention_forward"]
