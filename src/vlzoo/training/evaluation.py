"""Helpers objectives use to evaluate on every process: sharded evaluation batches and a reduced mean loss."""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader


def evaluation_batches(
    dataset: Any, collate_fn: Callable[[list[dict]], dict], accelerator: Accelerator, batch_size: int
) -> Iterable[dict[str, torch.Tensor]]:
    """This process's share of `dataset`, in order, as collated batches on the training device.

    Every process gets the same number of batches (the last ones are padded by wrapping around), so models whose
    forward gathers across processes (contrastive losses with global negatives) stay in step. The loader is built
    without `accelerator.prepare`, which would keep a reference to it for the rest of training.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    return prepare_data_loader(
        loader,
        device=accelerator.device,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
        put_on_device=True,
        even_batches=True,
    )


def mean_loss(
    compute_loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    accelerator: Accelerator,
) -> float:
    """Mean of `compute_loss` over `batches`, weighted by batch size and reduced over all processes.

    Call it on every process with that process's batches (`evaluation_batches`). When the dataset size is not a
    multiple of batch size x processes, the few examples used to pad the last batches count twice.
    """
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in batches:
        loss = compute_loss(model, batch).detach().double()
        size = _batch_size(batch)
        totals[0] += loss * size
        totals[1] += size
    totals = accelerator.reduce(totals, reduction="sum")
    if totals[1] == 0:
        raise ValueError("evaluation dataset is empty: there is nothing to compute a mean loss over.")
    return float(totals[0] / totals[1])


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    raise ValueError(f"cannot tell the batch size: no batched tensor among the batch keys {sorted(batch)}.")


__all__ = ["evaluation_batches", "mean_loss"]
