"""Multi-head attention through transformers' attention interface (sdpa by default, eager for checks)."""

from collections.abc import Callable

import torch
from torch import nn
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .multiway import Multiway, route


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


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with `q_proj`/`k_proj`/`v_proj`/`out_proj`, the head count fixed at construction.

    One module for every fusion family: BERT/METER co-attention (cross-attention to another stream whose width may
    differ, `kdim`/`vdim`), DETR/TransVG encoders (position embeddings added to the query and key inputs, never to
    the values), BEiT-3 (torchscale order: queries scaled after their bias, `scale_queries=True`; a sub-LN
    `inner_attn_ln` on the merged heads before `out_proj`; multiway projections routed by `split_position`).

    The kernel comes from `ALL_ATTENTION_FUNCTIONS` (sdpa, eager or a registered one), read at every call from
    `config._attn_implementation` when a config is given, so `model.set_attn_implementation("eager")` reaches this
    module (None there means eager); a block built without a config uses `attn_implementation` ("sdpa" by
    default). Attention weights are returned by the eager kernel only (sdpa returns None), as transformers does:
    use eager for `output_attentions`. `is_causal` is passed to the kernel explicitly (sdpa treats a missing flag as
    causal); a causal module applies its causal pattern through the mask, so eager and sdpa agree.

    Shared weights (MS-CLIP's image and text towers share blocks but split them into different numbers of heads):
    `share_projections_with=other` builds no projections of its own (and draws no random numbers) but registers
    those of `other` as its own submodules, through one module table: a projection replaced in either module (a
    PEFT adapter, a quantised layer) is replaced in both. Each module keeps its own head count, scaling, dropout,
    causality and kernel choice; the projection options (`kdim`, `vdim`, biases, `inner_layer_norm_eps`,
    `multiway`) are those of `other`.

    Masks: `attention_mask` is 4-D, broadcastable to `[batch, heads, q_len, k_len]`, either additive float (0 =
    attend, a large negative value = blocked; transformers' convention for eager kernels) or boolean (True =
    attend, sdpa's convention), which is turned into the additive form. Padding masks with 1 = keep, `[batch, k_len]`,
    become such a mask with `vlzoo.layers.masks.key_padding_attention_mask`.

    Args:
        hidden_size: width of the queries and of the output.
        num_heads: number of heads; must divide `hidden_size`.
        kdim: width of the key input (default `hidden_size`); `vdim`: of the value input (default `kdim`).
        qkv_bias: bias on `q_proj` and `v_proj` (and on `k_proj` unless `key_bias` says otherwise).
        key_bias: bias on `k_proj`; `None` follows `qkv_bias` (BEiT v1/v2-style blocks have q and v biases only).
        out_bias: bias on `out_proj`.
        scaling: factor of the scores; default `head_dim**-0.5`.
        scale_queries: multiply `q_proj(x)` by `scaling` before the dot product (torchscale, `nn.MultiheadAttention`)
            instead of scaling the scores; equal in exact arithmetic, this reproduces the rounding of that order.
        dropout: dropout on the attention probabilities (training only).
        inner_layer_norm_eps: if given, a LayerNorm `inner_attn_ln` with this eps on the merged heads (sub-LN).
        multiway: give every projection (and `inner_attn_ln`) a `vision` and a `language` expert (`Multiway`).
        is_causal: block keys after the query position (top-left aligned).
        config: the model config to read `_attn_implementation` from (nothing else is read).
        attn_implementation: the kernel to use when no `config` is given.
        share_projections_with: a `MultiHeadAttention` of the same `hidden_size` whose projections (and sub-LN) this
            module uses, see above.
    """

    is_causal = False

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        qkv_bias: bool = True,
        key_bias: bool | None = None,
        out_bias: bool = True,
        scaling: float | None = None,
        scale_queries: bool = False,
        dropout: float = 0.0,
        inner_layer_norm_eps: float | None = None,
        multiway: bool = False,
        is_causal: bool = False,
        config: PreTrainedConfig | None = None,
        attn_implementation: str | None = None,
        share_projections_with: "MultiHeadAttention | None" = None,
    ):
        super().__init__()
        if num_heads <= 0 or hidden_size % num_heads != 0:
            raise ValueError(f"num_heads must be a positive divisor of hidden_size={hidden_size}; got {num_heads}")
        if config is not None and attn_implementation is not None:
            raise ValueError(
                "pass either config (the implementation is read from config._attn_implementation at every call) or "
                f"attn_implementation, not both; got attn_implementation={attn_implementation!r} with a config"
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5 if scaling is None else scaling
        self.scale_queries = scale_queries
        self.dropout = dropout
        self.is_causal = is_causal
        self.config = config
        self.attn_implementation = "sdpa" if attn_implementation is None else attn_implementation
        if share_projections_with is not None:
            self._share_projections(share_projections_with, kdim, vdim, inner_layer_norm_eps, multiway)
            return
        self.kdim = hidden_size if kdim is None else kdim
        self.vdim = self.kdim if vdim is None else vdim
        self.multiway = multiway

        def linear(in_features: int, out_features: int, bias: bool) -> nn.Module:
            if multiway:
                return Multiway(nn.Linear, in_features, out_features, bias=bias)
            return nn.Linear(in_features, out_features, bias=bias)

        self.q_proj = linear(hidden_size, hidden_size, qkv_bias)
        self.k_proj = linear(self.kdim, hidden_size, qkv_bias if key_bias is None else key_bias)
        self.v_proj = linear(self.vdim, hidden_size, qkv_bias)
        if inner_layer_norm_eps is None:
            self.inner_attn_ln = None
        elif multiway:
            self.inner_attn_ln = Multiway(nn.LayerNorm, hidden_size, eps=inner_layer_norm_eps)
        else:
            self.inner_attn_ln = nn.LayerNorm(hidden_size, eps=inner_layer_norm_eps)
        self.out_proj = linear(hidden_size, hidden_size, out_bias)

    def _share_projections(
        self,
        source: "MultiHeadAttention",
        kdim: int | None,
        vdim: int | None,
        inner_layer_norm_eps: float | None,
        multiway: bool,
    ) -> None:
        if not isinstance(source, MultiHeadAttention):
            raise TypeError(f"share_projections_with must be a MultiHeadAttention; got {type(source).__name__}")
        if source.hidden_size != self.hidden_size:
            raise ValueError(
                f"share_projections_with has hidden_size {source.hidden_size}, this attention {self.hidden_size}"
            )
        if kdim is not None or vdim is not None or inner_layer_norm_eps is not None or multiway:
            raise ValueError(
                "kdim, vdim, inner_layer_norm_eps and multiway come from the module given as share_projections_with"
            )
        self.kdim, self.vdim, self.multiway = source.kdim, source.vdim, source.multiway
        if source.inner_attn_ln is None:
            self.inner_attn_ln = None  # a plain attribute, as in `source`
        # one module table for both: q/k/v/out_proj (and inner_attn_ln) are the same objects, and a projection
        # replaced by name in either module (setattr, as PEFT and quantisers do) is replaced in both
        self._modules = source._modules

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        *,
        value_states: torch.Tensor | None = None,
        query_position: torch.Tensor | None = None,
        key_position: torch.Tensor | None = None,
        split_position: int | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from `hidden_states` `[batch, q_len, hidden_size]` to itself or to `key_value_states`.

        Args:
            hidden_states: the queries (and keys/values for self-attention).
            attention_mask: 4-D additive float or boolean (True = attend) mask, see the class docstring.
            key_value_states: `[batch, k_len, kdim]` keys (and values) for cross-attention.
            value_states: `[batch, k_len, vdim]` values when they differ from `key_value_states`.
            query_position: added to the query input only (DETR), broadcastable to `hidden_states`.
            key_position: added to the key input only, broadcastable to the key input.
            split_position: multiway routing, the number of leading vision tokens (see `Multiway`).
            kwargs: passed to the attention kernel (e.g. `output_attentions`).

        Returns:
            The output `[batch, q_len, hidden_size]` and the weights `[batch, heads, q_len, k_len]` (eager only).
        """
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must have shape [batch, seq, {self.hidden_size}]; got {tuple(hidden_states.shape)}"
            )
        if key_value_states is None:
            if value_states is not None:
                raise ValueError("value_states is only used for cross-attention; pass key_value_states too")
            if (self.kdim, self.vdim) != (self.hidden_size, self.hidden_size):
                raise ValueError(
                    f"this attention reads keys/values of width kdim={self.kdim}, vdim={self.vdim}, not the "
                    f"hidden_size {self.hidden_size} of hidden_states: pass them as key_value_states"
                )
            key_input = hidden_states
        else:
            if self.multiway:
                raise ValueError("a multiway attention routes its keys like its queries and has no cross-attention")
            if key_value_states.dim() != 3 or key_value_states.shape[-1] != self.kdim:
                raise ValueError(
                    f"key_value_states must have shape [batch, k_len, {self.kdim}] (kdim); "
                    f"got {tuple(key_value_states.shape)}"
                )
            key_input = key_value_states
        value_input = key_input if value_states is None else value_states
        if value_input.shape[-1] != self.vdim:
            raise ValueError(f"value_states must have {self.vdim} features (vdim); got {tuple(value_input.shape)}")

        query_input = hidden_states if query_position is None else hidden_states + query_position
        if key_position is not None:
            key_input = key_input + key_position
        batch, q_len, _ = hidden_states.shape
        query = route(self.q_proj, query_input, split_position)
        key = route(self.k_proj, key_input, split_position)
        value = route(self.v_proj, value_input, split_position)
        scaling = self.scaling
        if self.scale_queries:
            query, scaling = query * self.scaling, 1.0
        query = query.view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch, key.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch, value.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        attention_mask = self._additive_mask(attention_mask, query, key)
        implementation = self.config._attn_implementation if self.config is not None else self.attn_implementation
        # an unset config value (a sub-config no model has dispatched yet) means eager, as transformers reads it
        implementation = implementation or "eager"
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=scaling,
            dropout=self.dropout if self.training else 0.0,
            # causality, when asked for, is already in the mask; sdpa must not add its own
            is_causal=False,
            **kwargs,
        )
        output = output.reshape(batch, q_len, self.hidden_size)
        if self.inner_attn_ln is not None:
            output = route(self.inner_attn_ln, output, split_position)
        return route(self.out_proj, output, split_position), weights

    def _additive_mask(
        self, attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor | None:
        """The mask in the one form every kernel reads alike: additive, in the query dtype, causality included."""
        dtype = query.dtype
        if attention_mask is not None:
            if attention_mask.dim() != 4:
                raise ValueError(
                    "attention_mask must be 4-D, broadcastable to [batch, heads, q_len, k_len]; got shape "
                    f"{tuple(attention_mask.shape)} (turn a [batch, k_len] padding mask with 1 = keep into one with "
                    "vlzoo.layers.masks.key_padding_attention_mask)"
                )
            if attention_mask.dtype == torch.bool:
                attention_mask = torch.zeros(attention_mask.shape, dtype=dtype, device=query.device).masked_fill(
                    ~attention_mask, torch.finfo(dtype).min
                )
            elif not attention_mask.is_floating_point():
                raise TypeError(
                    f"attention_mask must be boolean (True = attend) or additive float; got {attention_mask.dtype}"
                )
            elif attention_mask.dtype != dtype:
                # a float32 mask under bf16/fp16 autocast: keep blocked entries finite in the narrower dtype
                attention_mask = attention_mask.to(dtype).clamp(min=torch.finfo(dtype).min)
        if self.is_causal:
            q_len, k_len = query.shape[2], key.shape[2]
            future = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).triu(1)
            causal = torch.zeros(q_len, k_len, dtype=dtype, device=query.device).masked_fill(
                future, torch.finfo(dtype).min
            )[None, None]
            attention_mask = (
                causal if attention_mask is None else (attention_mask + causal).clamp(min=torch.finfo(dtype).min)
            )
        return attention_mask


__all__ = ["MultiHeadAttention", "eager_attention_forward"]
