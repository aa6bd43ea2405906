"""Normalisation layers with training behaviour that suits adapter fine-tuning."""

import torch
from torch import nn
from torch.nn import functional as F


class FreezableBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose running statistics are frozen together with its affine parameters.

    In train mode a plain BatchNorm normalises with batch statistics and updates `running_mean`, `running_var` and
    `num_batches_tracked`, even when its weight and bias are frozen. Adapter training (PEFT LoRA) freezes the whole
    base model and saves only the adapter, so those silently updated buffers would be lost and the reloaded
    base + adapter would not reproduce the trained model. Here a BatchNorm whose affine parameters all have
    `requires_grad=False` behaves as in eval mode (running statistics, no update) in train mode too; with a trainable
    weight or bias (full fine-tuning), or without affine parameters or running statistics, it is an ordinary
    BatchNorm. To re-estimate the statistics of a frozen model, make the BatchNorm parameters trainable.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training and self.statistics_frozen:
            return F.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(input)

    @property
    def statistics_frozen(self) -> bool:
        """True when the running statistics are used and kept in train mode (the affine parameters are frozen)."""
        if not self.affine or not self.track_running_stats:
            return False
        return not (self.weight.requires_grad or self.bias.requires_grad)


__all__ = ["FreezableBatchNorm2d"]
