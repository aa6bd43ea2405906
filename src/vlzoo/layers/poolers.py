"""Sequence poolers: the first token (optionally LayerNorm'd, through dense + tanh) and a masked mean."""

import torch
from torch import nn


class FirstTokenPooler(nn.Module):
    """Pool `[batch, seq, hidden]` to `[batch, hidden]` from the token at index 0.

    `dense=True` gives BERT's pooler, `tanh(dense(x[:, 0]))` (METER's `cross_modal_*_pooler`, FLAVA's towers);
    `layer_norm_eps` adds a LayerNorm `norm` first (BEiT-3's VQA pooler, `tanh(dense(norm(x[:, 0])))`, beit3.md
    §2.6); `dense=False` with `layer_norm_eps` gives the LayerNorm'd first token alone (TransVG++'s [REG] output).
    """

    def __init__(self, hidden_size: int, *, layer_norm_eps: float | None = None, dense: bool = True):
        super().__init__()
        if not dense and layer_norm_eps is None:
            raise ValueError("a FirstTokenPooler without dense needs layer_norm_eps; otherwise index x[:, 0] directly")
        self.norm = None if layer_norm_eps is None else nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dense = nn.Linear(hidden_size, hidden_size) if dense else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = hidden_states[:, 0]
        if self.norm is not None:
            pooled = self.norm(pooled)
        if self.dense is not None:
            pooled = torch.tanh(self.dense(pooled))
        return pooled


class MeanPooler(nn.Module):
    """Mean over the kept tokens of `[batch, seq, hidden]`, then an optional LayerNorm `norm`.

    `attention_mask` `[batch, seq]` (1 = keep) excludes padding; a row with no kept token pools to zeros before the
    norm. BEiT-3's ImageNet head is `MeanPooler(hidden, layer_norm_eps=1e-5)` on the patch tokens `x[:, 1:]`
    (its `fc_norm`, beit3.md §2.6); the Swin variant of METER average-pools the image tokens.
    """

    def __init__(self, hidden_size: int | None = None, *, layer_norm_eps: float | None = None):
        super().__init__()
        if layer_norm_eps is not None and hidden_size is None:
            raise ValueError("MeanPooler with layer_norm_eps needs hidden_size for its LayerNorm")
        self.norm = None if layer_norm_eps is None else nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            pooled = hidden_states.mean(dim=1)
        else:
            if attention_mask.shape != hidden_states.shape[:2]:
                raise ValueError(
                    f"attention_mask must have shape {tuple(hidden_states.shape[:2])} ([batch, seq], 1 = keep); "
                    f"got {tuple(attention_mask.shape)}"
                )
            weights = attention_mask.to(hidden_states.dtype)[..., None]
            pooled = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return pooled if self.norm is None else self.norm(pooled)


__all__ = ["FirstTokenPooler", "MeanPooler"]
