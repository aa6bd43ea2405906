"""The objective protocol: what a model family or task gives the one training loop."""

from typing import Any, Protocol, runtime_checkable

import torch
from accelerate import Accelerator


@runtime_checkable
class Objective(Protocol):
    """Turns dataset rows into batches and batches into a loss; the trainer does everything else.

    Required:
        `collate(examples)`: a list of dataset rows (dicts) to a dict of tensors. It runs inside the DataLoader
        (possibly in worker processes), so it must not touch the model.
        `compute_loss(model, batch)`: a scalar loss tensor for one batch (already on the training device). The model
        is the prepared one (possibly wrapped for distributed training); call it, do not reach into its modules.

    Optional (looked up by name, so a plain class need not define them):
        `evaluate(model, dataset, accelerator, batch_size) -> dict[str, float]`: called on every process with the
        model in eval mode under `torch.no_grad()`; shard the data and reduce the results across processes (see
        `vlzoo.training.evaluation.mean_loss`), so that every process returns the same metrics.
        `set_epoch(epoch, seed)`: called on every process before each epoch, so per-epoch randomness (such as the
        choice among several captions) is reproducible and differs between epochs.
    """

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]: ...

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...


@runtime_checkable
class EvaluatingObjective(Objective, Protocol):
    """An `Objective` that can also score a held-out dataset."""

    def evaluate(
        self, model: torch.nn.Module, dataset: Any, accelerator: Accelerator, batch_size: int
    ) -> dict[str, float]: ...


__all__ = ["EvaluatingObjective", "Objective"]
