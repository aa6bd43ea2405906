"""Additive attention masks (0 = attend, dtype minimum = blocked)."""

import torch


def additive_attention_mask(
    seq_len: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    causal: bool = False,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Build a `[batch or 1, 1, seq, seq]` additive mask from a causal flag and/or a padding mask (1 = keep).

    Returns None when nothing is masked, so attention kernels can take their unmasked fast path.
    """
    if not causal and padding_mask is None:
        return None
    blocked = torch.zeros(1, 1, seq_len, seq_len, dtype=torch.bool, device=device)
    if causal:
        blocked = blocked | torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu(1)[None, None]
    if padding_mask is not None:
        if padding_mask.dim() != 2 or padding_mask.shape[1] != seq_len:
            raise ValueError(
                f"attention_mask must have shape [batch, {seq_len}] (1 = keep), got {tuple(padding_mask.shape)}"
            )
        blocked = blocked | (padding_mask[:, None, None, :] == 0)
    mask = torch.zeros(blocked.shape, dtype=dtype, device=device)
    return mask.masked_fill(blocked, torch.finfo(dtype).min)


def key_padding_attention_mask(padding_mask: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    """A `[batch, k_len]` padding mask (1 = keep, 0 = padding) as an additive `[batch, 1, 1, k_len]` mask.

    Broadcasts over heads and over any number of queries, so it serves self- and cross-attention alike (for
    cross-attention pass the mask of the attended stream).
    """
    if padding_mask.dim() != 2:
        raise ValueError(f"padding_mask must have shape [batch, k_len] (1 = keep); got {tuple(padding_mask.shape)}")
    mask = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
    return mask.masked_fill(padding_mask == 0, torch.finfo(dtype).min)[:, None, None, :]


__all__ = ["additive_attention_mask", "key_padding_attention_mask"]
