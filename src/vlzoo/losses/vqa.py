"""VQA soft-target loss: binary cross-entropy against per-answer scores, summed over answers."""

import torch.nn.functional as F
from torch import Tensor, nn


def vqa_soft_target_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """BCE-with-logits (mean over all entries) times the number of answers.

    This equals the mean over the batch of the BCE summed over answers, the VQA convention (ViLT, METER:
    `binary_cross_entropy_with_logits(logits, targets) * targets.shape[1]`).

    Args:
        logits: `[B, A]` answer scores.
        targets: `[B, A]` soft scores in [0, 1] (VQA accuracy of each answer, e.g. min(1, count / 3)).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [batch, answers]; got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}; got {tuple(targets.shape)}")
    if not targets.dtype.is_floating_point:
        raise TypeError(f"targets must be a floating-point tensor of soft scores; got dtype {targets.dtype}")
    if targets.numel() and (targets.min() < 0 or targets.max() > 1):
        raise ValueError(f"targets must lie in [0, 1]; got values in [{targets.min().item()}, {targets.max().item()}]")
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype)) * logits.shape[1]


class VqaSoftTargetLoss(nn.Module):
    """Module form of `vqa_soft_target_loss`."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return vqa_soft_target_loss(logits, targets)


__all__ = ["VqaSoftTargetLoss", "vqa_soft_target_loss"]
