"""An all-gather that carries gradients back to every process, for losses with global negatives."""

import torch
import torch.distributed as dist
from torch import Tensor


def world_info() -> tuple[int, int]:
    """Return `(rank, world_size)`, or `(0, 1)` when `torch.distributed` is unavailable or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _check_equal_shapes(tensor: Tensor, world_size: int) -> None:
    """Fail on every rank at once when the ranks' shapes differ (an all_gather of unequal shapes would hang)."""
    trailing = tensor.shape[1:].numel() if tensor.dim() > 0 else 0
    local = torch.tensor([tensor.dim(), tensor.shape[0] if tensor.dim() > 0 else 0, trailing], device=tensor.device)
    shapes = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(shapes, local)
    ndims, sizes, trailings = (sorted({int(s[i]) for s in shapes}) for i in range(3))
    if len(ndims) > 1 or ndims[0] == 0:
        raise ValueError(
            "all_gather_with_grad expects a tensor of at least 1 dimension with the same number of dimensions on "
            f"every rank; got ranks' dimension counts {[int(s[0]) for s in shapes]}"
        )
    if len(sizes) > 1:
        raise ValueError(
            "all_gather_with_grad needs the same first-dimension size (local batch size) on every rank; got sizes "
            f"{[int(s[1]) for s in shapes]} for ranks 0..{world_size - 1}: use equal per-process batches "
            "(e.g. drop_last=True in the DataLoader)"
        )
    if len(trailings) > 1:
        raise ValueError(
            "all_gather_with_grad needs the same trailing shape on every rank; got per-row element counts "
            f"{[int(s[2]) for s in shapes]} for ranks 0..{world_size - 1}"
        )


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's tensor. Backward: sum the gradient over ranks, keep this rank's rows."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rank = dist.get_rank()
        ctx.batch_size = tensor.shape[0]
        tensor = tensor.contiguous()
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor)
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        # Every rank's loss depends on this rank's rows through its own copy of the gathered tensor, so the
        # gradient of the sum of all ranks' losses w.r.t. these rows is the sum of all ranks' gradients.
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate `tensor` from every process along dim 0 in rank order, differentiably.

    The backward pass all-reduces (sums) the incoming gradient over processes and returns this rank's slice, so
    rank r's gradient is the gradient of the SUM of every rank's loss w.r.t. rank r's rows. When each rank's loss
    is a mean over its own rows and DDP then averages parameter gradients over ranks, parameters receive exactly
    the gradient of the single-process loss on the concatenated batch (see `contrastive_loss`).

    Every process must call this (and later run backward) collectively, with the same shape on every rank; a
    different shape raises `ValueError` on all ranks. Without an initialised process group, or with one process,
    the input is returned unchanged.

    Args:
        tensor: `[B, ...]` local rows.

    Returns:
        `[world_size * B, ...]` rows of rank 0, then rank 1, and so on.
    """
    _, world_size = world_info()
    if world_size == 1:
        return tensor
    _check_equal_shapes(tensor, world_size)
    return _AllGatherWithGrad.apply(tensor)


__all__ = ["all_gather_with_grad", "world_info"]
