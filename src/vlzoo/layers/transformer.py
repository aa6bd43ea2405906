"""One transformer layer for the fusion families: pre- or post-LN, optional cross-attention, sub-LN, multiway."""

import torch
from torch import nn
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import MultiHeadAttention
from .fast_path import fast_linear
from .mlp import FeedForward
from .multiway import Multiway, route


def drop_path(hidden_states: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for whole samples with `probability`, rescaling the kept ones."""
    if probability == 0.0 or not training:
        return hidden_states
    keep = 1.0 - probability
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)
    mask = hidden_states.new_empty(shape).bernoulli_(keep)
    return hidden_states * mask / keep


class TransformerFeedForward(FeedForward):
    """`FeedForward` (`fc1` -> activation -> `fc2`) plus the options of the fusion families.

    Adds dropout after the activation and, with `sub_layer_norm_eps`, a LayerNorm `ffn_layernorm` on the
    intermediate activations before `fc2` (BEiT-3's Magneto sub-LN, beit3.md §2.5: `fc2(ffn_layernorm(gelu(fc1)))`).
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        activation: str = "gelu",
        *,
        bias: bool = True,
        sub_layer_norm_eps: float | None = None,
        activation_dropout: float = 0.0,
    ):
        super().__init__(hidden_size, intermediate_size, activation, bias=bias)
        self.activation_dropout = activation_dropout
        self.ffn_layernorm = (
            None if sub_layer_norm_eps is None else nn.LayerNorm(intermediate_size, eps=sub_layer_norm_eps)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = fast_linear(self.fc1, hidden_states, self.activation, activation_fn=self.activation_fn)
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        if self.ffn_layernorm is not None:
            hidden_states = self.ffn_layernorm(hidden_states)
        return fast_linear(self.fc2, hidden_states)


class TransformerLayer(GradientCheckpointingLayer):
    """Self-attention, optional cross-attention, then the FFN, each a residual sublayer, pre- or post-LN.

    `norm_first=True` (pre-LN: ViT, CLIP, FLAVA, BEiT-3, TransVG++): `x = x + Sublayer(LN(x))`.
    `norm_first=False` (post-LN: BERT, METER co-attention, DETR/TransVG encoders): `x = LN(x + Sublayer(x))`.
    With `cross_attention` the order is self-attention -> cross-attention -> FFN (METER's `BertCrossLayer`, BERT
    decoder layers); `cross_attention_norm=False` leaves the cross-attention without a LayerNorm (TransVG++ feeds
    the raw residual stream as queries, transvg.md §3). `sub_layer_norm` adds BEiT-3's two sub-LNs (see
    `MultiHeadAttention` and `TransformerFeedForward`); `multiway` gives every LayerNorm, projection and the FFN a
    `vision` and a `language` expert, routed by `split_position`.

    Submodule names (for key maps and PEFT targets): `self_attn`, `layer_norm1` (of the self-attention),
    `cross_attn`, `cross_attn_layer_norm`, `mlp` (`fc1`, `fc2`, `ffn_layernorm`), `layer_norm2` (of the FFN).
    Dropout is applied to each sublayer's output before the residual sum, as BERT and DETR do, and `drop_path`
    (stochastic depth) to each residual branch.

    A model records outputs with `_can_record_outputs = {"hidden_states": TransformerLayer, "attentions":
    OutputRecorder(MultiHeadAttention, index=1, layer_name="self_attn"), "cross_attentions":
    OutputRecorder(MultiHeadAttention, index=1, layer_name="cross_attn")}`.

    Args:
        hidden_size: width of the stream; num_heads: heads of both attentions; intermediate_size: FFN width.
        activation: a transformers `ACT2FN` name: "gelu" (exact erf), "quick_gelu", "gelu_pytorch_tanh", "relu".
        layer_norm_eps: eps of every LayerNorm of the layer (sub-LNs included).
        norm_first: pre-LN when True, post-LN when False.
        cross_attention: add a cross-attention sublayer; cross_attention_size: width of the attended stream
            (default `hidden_size`); cross_attention_norm: give the cross-attention a LayerNorm.
        sub_layer_norm: BEiT-3/Magneto sub-LNs (`self_attn.inner_attn_ln`, `mlp.ffn_layernorm`).
        qkv_bias, key_bias, scaling, scale_queries: as in `MultiHeadAttention` (both attentions).
        dropout: on each sublayer output; attention_dropout: on attention probabilities; activation_dropout: after
            the FFN activation; drop_path: stochastic-depth rate of each residual branch.
        multiway: vision/language experts for every LayerNorm, projection and the FFN (no cross-attention).
        config, attn_implementation: where the attention kernel is read from (see `MultiHeadAttention`).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        *,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        norm_first: bool = True,
        cross_attention: bool = False,
        cross_attention_size: int | None = None,
        cross_attention_norm: bool = True,
        sub_layer_norm: bool = False,
        qkv_bias: bool = True,
        key_bias: bool | None = None,
        scaling: float | None = None,
        scale_queries: bool = False,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        drop_path: float = 0.0,
        multiway: bool = False,
        config: PreTrainedConfig | None = None,
        attn_implementation: str | None = None,
    ):
        super().__init__()
        if multiway and cross_attention:
            raise ValueError("a multiway layer has no cross-attention (BEiT-3 attends over one joint sequence)")
        for name, rate in (
            ("dropout", dropout),
            ("attention_dropout", attention_dropout),
            ("activation_dropout", activation_dropout),
            ("drop_path", drop_path),
        ):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {rate}")
        self.norm_first = norm_first
        self.dropout = dropout
        self.drop_path = drop_path
        attention_options = {
            "qkv_bias": qkv_bias,
            "key_bias": key_bias,
            "scaling": scaling,
            "scale_queries": scale_queries,
            "dropout": attention_dropout,
            "config": config,
            "attn_implementation": attn_implementation,
        }

        def layer_norm(size: int) -> nn.Module:
            if multiway:
                return Multiway(nn.LayerNorm, size, eps=layer_norm_eps)
            return nn.LayerNorm(size, eps=layer_norm_eps)

        self.self_attn = MultiHeadAttention(
            hidden_size,
            num_heads,
            inner_layer_norm_eps=layer_norm_eps if sub_layer_norm else None,
            multiway=multiway,
            **attention_options,
        )
        self.layer_norm1 = layer_norm(hidden_size)
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                hidden_size,
                num_heads,
                kdim=cross_attention_size,
                inner_layer_norm_eps=layer_norm_eps if sub_layer_norm else None,
                **attention_options,
            )
            self.cross_attn_layer_norm = layer_norm(hidden_size) if cross_attention_norm else None
        else:
            self.cross_attn = None
            self.cross_attn_layer_norm = None
        mlp_arguments = (hidden_size, intermediate_size, activation)
        mlp_options = {
            "sub_layer_norm_eps": layer_norm_eps if sub_layer_norm else None,
            "activation_dropout": activation_dropout,
        }
        if multiway:
            self.mlp = Multiway(TransformerFeedForward, *mlp_arguments, **mlp_options)
        else:
            self.mlp = TransformerFeedForward(*mlp_arguments, **mlp_options)
        self.layer_norm2 = layer_norm(hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        *,
        position_embeddings: torch.Tensor | None = None,
        encoder_position_embeddings: torch.Tensor | None = None,
        split_position: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Run the layer on `hidden_states` `[batch, seq, hidden_size]`; returns the new hidden states.

        Tensors that need gradients under reentrant checkpointing (the hidden states of both streams) can be passed
        positionally, as `GradientCheckpointingLayer` asks.

        Args:
            attention_mask: 4-D mask of the self-attention (see `MultiHeadAttention`).
            encoder_hidden_states: `[batch, k_len, cross_attention_size]`, the stream the cross-attention reads.
            encoder_attention_mask: 4-D mask over `encoder_hidden_states` for the cross-attention.
            position_embeddings: DETR-style positions added to the self-attention queries and keys and to the
                cross-attention queries (never to values).
            encoder_position_embeddings: positions added to the cross-attention keys.
            split_position: number of leading vision tokens, for multiway layers.
            kwargs: passed to the attention kernels (e.g. `output_attentions`).
        """
        if self.cross_attn is None and encoder_hidden_states is not None:
            raise ValueError("encoder_hidden_states was given to a layer built without cross_attention")
        if self.cross_attn is not None and encoder_hidden_states is None:
            raise ValueError("this layer has a cross-attention sublayer and needs encoder_hidden_states")
        self_attention = {
            "query_position": position_embeddings,
            "key_position": position_embeddings,
            "split_position": split_position,
            **kwargs,
        }
        cross_attention = {
            "query_position": position_embeddings,
            "key_position": encoder_position_embeddings,
            **kwargs,
        }

        if self.norm_first:
            update, _ = self.self_attn(
                route(self.layer_norm1, hidden_states, split_position), attention_mask, **self_attention
            )
            hidden_states = self._add(hidden_states, update)
            if self.cross_attn is not None:
                queries = hidden_states
                if self.cross_attn_layer_norm is not None:
                    queries = self.cross_attn_layer_norm(queries)
                update, _ = self.cross_attn(queries, encoder_attention_mask, encoder_hidden_states, **cross_attention)
                hidden_states = self._add(hidden_states, update)
            update = route(self.mlp, route(self.layer_norm2, hidden_states, split_position), split_position)
            return self._add(hidden_states, update)

        update, _ = self.self_attn(hidden_states, attention_mask, **self_attention)
        hidden_states = route(self.layer_norm1, self._add(hidden_states, update), split_position)
        if self.cross_attn is not None:
            update, _ = self.cross_attn(
                hidden_states, encoder_attention_mask, encoder_hidden_states, **cross_attention
            )
            hidden_states = self._add(hidden_states, update)
            if self.cross_attn_layer_norm is not None:
                hidden_states = self.cross_attn_layer_norm(hidden_states)
        update = route(self.mlp, hidden_states, split_position)
        return route(self.layer_norm2, self._add(hidden_states, update), split_position)

    def _add(self, residual: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        update = nn.functional.dropout(update, p=self.dropout, training=self.training)
        return residual + drop_path(update, self.drop_path, self.training)


__all__ = ["TransformerFeedForward", "TransformerLayer", "drop_path"]
