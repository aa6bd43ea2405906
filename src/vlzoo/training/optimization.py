"""AdamW with decoupled weight decay on matrices only, and the warmup-then-cosine learning-rate schedule."""

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_schedule_with_warmup


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (2-D and up) and an undecayed one (0-D and 1-D).

    Decay pulls weights towards zero; that regularises matrices, embeddings and convolutions but only harms biases,
    LayerNorm/RMSNorm gains, class tokens and scalars such as a contrastive logit scale, which are all 0-D or 1-D.
    Frozen parameters (e.g. outside LoRA adapters) are left out; shared parameters appear once.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False).")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `parameter_groups(model, weight_decay)`."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warmup from 0 over `warmup_steps`, then a half cosine down to 0 at `total_steps`."""
    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


__all__ = ["build_optimizer", "build_scheduler", "parameter_groups"]
