"""Incremental (cached) self-attention steps for `MultiHeadAttention` and pre-LN `TransformerLayer`s.

Autoregressive decoding recomputes nothing for tokens already seen: each layer keeps the keys and values of the
earlier tokens (`LayerCache`), and a step runs only the new tokens, attending to the cached keys plus their own.
The step uses the module's own projections (multiway experts routed by `split_position` included) and the same
attention kernel (`config._attn_implementation`), so a step equals the full recomputation of the whole sequence
under the same mask up to rounding.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .attention import MultiHeadAttention, eager_attention_forward
from .multiway import route
from .transformer import TransformerLayer


@dataclass
class LayerCache:
    """Keys and values `[batch, heads, cached, head_dim]` of the tokens one self-attention layer has seen."""

    key: torch.Tensor
    value: torch.Tensor

    @property
    def length(self) -> int:
        return self.key.shape[2]

    def select(self, rows: torch.Tensor) -> "LayerCache":
        """The cache of the batch rows `rows` (beam search reordering)."""
        return LayerCache(self.key.index_select(0, rows), self.value.index_select(0, rows))

    def truncate(self, length: int) -> "LayerCache":
        """The first `length` cached positions (drops a placeholder token's keys after a step)."""
        return LayerCache(self.key[:, :, :length], self.value[:, :, :length])


def attention_step(
    attention: MultiHeadAttention,
    hidden_states: torch.Tensor,
    cache: LayerCache | None,
    attention_mask: torch.Tensor | None,
    *,
    split_position: int | None = None,
) -> tuple[torch.Tensor, LayerCache]:
    """Self-attention of the new tokens `hidden_states` `[batch, new, hidden]` over `cache` plus themselves.

    `attention_mask` is additive `[batch or 1, 1, new, cached + new]` (or None: every key visible). Returns the
    attention output and the cache extended by the new tokens' keys and values.
    """
    if attention.kdim != attention.hidden_size or attention.vdim != attention.hidden_size:
        raise ValueError("attention_step needs a self-attention module (kdim = vdim = hidden_size)")
    batch, new, _ = hidden_states.shape
    shape = (batch, new, attention.num_heads, attention.head_dim)
    query = route(attention.q_proj, hidden_states, split_position)
    key = route(attention.k_proj, hidden_states, split_position).view(shape).transpose(1, 2)
    value = route(attention.v_proj, hidden_states, split_position).view(shape).transpose(1, 2)
    scaling = attention.scaling
    if attention.scale_queries:
        query, scaling = query * attention.scaling, 1.0
    query = query.view(shape).transpose(1, 2)
    if cache is not None:
        key = torch.cat([cache.key, key], dim=2)
        value = torch.cat([cache.value, value], dim=2)
    if attention_mask is not None and attention_mask.dtype != query.dtype:
        attention_mask = attention_mask.to(query.dtype).clamp(min=torch.finfo(query.dtype).min)
    implementation = attention.config._attn_implementation if attention.config is not None else None
    implementation = implementation or attention.attn_implementation or "eager"
    kernel: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
    output, _ = kernel(attention, query, key, value, attention_mask, scaling=scaling, dropout=0.0, is_causal=False)
    output = output.reshape(batch, new, attention.hidden_size)
    if attention.inner_attn_ln is not None:
        output = route(attention.inner_attn_ln, output, split_position)
    return route(attention.out_proj, output, split_position), LayerCache(key, value)


def transformer_layer_step(
    layer: TransformerLayer,
    hidden_states: torch.Tensor,
    cache: LayerCache | None,
    attention_mask: torch.Tensor | None,
    *,
    split_position: int | None = None,
) -> tuple[torch.Tensor, LayerCache]:
    """One pre-LN `TransformerLayer` (no cross-attention) on new tokens, attending to `cache`; see `attention_step`."""
    if not layer.norm_first or layer.cross_attn is not None:
        raise ValueError("transformer_layer_step supports pre-LN layers without cross-attention")
    update, cache = attention_step(
        layer.self_attn,
        route(layer.layer_norm1, hidden_states, split_position),
        cache,
        attention_mask,
        split_position=split_position,
    )
    hidden_states = layer._add(hidden_states, update)
    update = route(layer.mlp, route(layer.layer_norm2, hidden_states, split_position), split_position)
    return layer._add(hidden_states, update), cache


__all__ = ["LayerCache", "attention_step", "transformer_layer_step"]
