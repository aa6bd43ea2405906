"""Masked language modelling: BERT's 80/10/10 token masking and the cross-entropy over masked positions."""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_language_modeling_loss(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Cross-entropy averaged over the positions whose label is not `ignore_index`.

    Args:
        logits: `[B, L, V]` vocabulary scores.
        labels: `[B, L]` original token ids at masked positions and `ignore_index` elsewhere (as `mask_tokens`
            returns them).
        ignore_index: label value of positions that do not count.

    Returns:
        Scalar loss. A batch without any masked position gives 0 (still attached to `logits`) instead of the
        NaN of an empty mean, so a small batch cannot poison training.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [batch, length, vocab]; got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape {tuple(logits.shape[:2])} to match logits {tuple(logits.shape)}; "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of token ids; got dtype {labels.dtype}")
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=ignore_index)


def mask_tokens(
    input_ids: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Iterable[int],
    probability: float = 0.15,
    attention_mask: Tensor | None = None,
    ignore_index: int = -100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Choose MLM targets with BERT's rule and corrupt the input accordingly.

    Each position that is not a special token (list the padding id among `special_token_ids`) and, when
    `attention_mask` is given, not padding (mask 0) is selected with probability `probability`. Of the selected
    positions 80% become `mask_token_id`, 10% a token drawn uniformly from `[0, vocab_size)` (as BERT and
    transformers' DataCollatorForLanguageModeling do; the draw may hit a special id) and 10% stay unchanged.

    Args:
        input_ids: `[B, L]` integer token ids; not modified.
        mask_token_id: id written at the 80% share.
        vocab_size: size of the vocabulary the random replacements are drawn from.
        special_token_ids: ids never selected (CLS, SEP, PAD, ...).
        probability: selection rate of eligible positions.
        attention_mask: optional `[B, L]`, 1 = real token; positions with 0 are never selected.
        ignore_index: label of unselected positions.
        generator: optional random generator on `input_ids`' device, for reproducible masks.

    Returns:
        `(masked_ids, labels)`: the corrupted ids and `[B, L]` labels holding the original id at selected
        positions and `ignore_index` elsewhere.
    """
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must be an integer tensor; got dtype {input_ids.dtype}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1]; got {probability}")
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive; got {vocab_size}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id must be in [0, vocab_size={vocab_size}); got {mask_token_id}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}; got {tuple(attention_mask.shape)}"
        )
    special = torch.tensor(sorted(set(special_token_ids)), dtype=input_ids.dtype, device=input_ids.device)
    eligible = ~torch.isin(input_ids, special)
    if attention_mask is not None:
        eligible &= attention_mask.bool()

    def draw(rate: float) -> Tensor:
        rates = torch.full(input_ids.shape, rate, device=input_ids.device)
        return torch.bernoulli(rates, generator=generator).bool()

    selected = draw(probability) & eligible
    labels = input_ids.masked_fill(~selected, ignore_index)
    replaced = draw(0.8) & selected
    randomised = draw(0.5) & selected & ~replaced
    random_ids = torch.randint(
        vocab_size, input_ids.shape, generator=generator, device=input_ids.device, dtype=input_ids.dtype
    )
    masked_ids = input_ids.masked_fill(replaced, mask_token_id)
    masked_ids = torch.where(randomised, random_ids, masked_ids)
    return masked_ids, labels


class MaskedLanguageModelingLoss(nn.Module):
    """Module form of `masked_language_modeling_loss`."""

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return masked_language_modeling_loss(logits, labels, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


__all__ = ["MaskedLanguageModelingLoss", "mask_tokens", "masked_language_modeling_loss"]
