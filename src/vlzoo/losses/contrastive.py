"""Symmetric image-text InfoNCE (CLIP) with optional global negatives across processes."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributed import all_gather_with_grad, world_info


def _validate(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> None:
    for name, embeds in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
        if embeds.dim() != 2:
            raise ValueError(f"{name} must be 2-D [batch, dim]; got shape {tuple(embeds.shape)}")
    if image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"image_embeds has batch size {image_embeds.shape[0]} but text_embeds has {text_embeds.shape[0]}; "
            "the i-th image and the i-th text must form a pair"
        )
    if image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            f"image_embeds has dim {image_embeds.shape[1]} but text_embeds has {text_embeds.shape[1]}; "
            "both must be projected to the same embedding size"
        )
    if image_embeds.shape[0] == 0:
        raise ValueError("image_embeds and text_embeds are empty (batch size 0)")
    if not isinstance(logit_scale, Tensor):
        raise TypeError(
            f"logit_scale must be a scalar tensor (the exponentiated scale, so gradients reach it); got "
            f"{type(logit_scale).__name__}"
        )
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must hold one value; got shape {tuple(logit_scale.shape)}")


def contrastive_loss(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor, *, gather: bool = True) -> Tensor:
    """CLIP's symmetric cross-entropy between matched image and text rows.

    Args:
        image_embeds: `[B, D]` L2-normalised image embeddings (normalise before calling; this function does not).
        text_embeds: `[B, D]` L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: scalar tensor, the multiplier itself (e.g. `model.logit_scale.exp()`), so gradients reach it.
        gather: score the local rows against the rows of every process (global negatives). Ignored when
            `torch.distributed` is not initialised or has one process.

    Returns:
        Scalar `(CE(image->text) + CE(text->image)) / 2`, each cross-entropy averaged over the LOCAL rows.

    Scaling with `gather=True` on W processes of B rows each: rank r's loss is the mean over its own B rows of
    the losses those rows have in the single-process loss on the concatenated W*B batch, so the average of the
    W per-rank losses equals that single-process loss. Gradients flow through `all_gather_with_grad`, whose
    backward sums over ranks: rank r's gradient w.r.t. its embeddings is W times the gradient of the
    single-process loss w.r.t. those rows, and once DDP averages parameter gradients over ranks, every parameter
    (`logit_scale` included) gets exactly the single-process gradient.
    """
    _validate(image_embeds, text_embeds, logit_scale)
    rank, world_size = world_info()
    batch_size = image_embeds.shape[0]
    if gather and world_size > 1:
        all_image_embeds = all_gather_with_grad(image_embeds)
        all_text_embeds = all_gather_with_grad(text_embeds)
        offset = rank * batch_size
    else:
        all_image_embeds, all_text_embeds, offset = image_embeds, text_embeds, 0
    logits_per_image = logit_scale * image_embeds @ all_text_embeds.T
    logits_per_text = logit_scale * text_embeds @ all_image_embeds.T
    labels = torch.arange(offset, offset + batch_size, device=image_embeds.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


class ContrastiveLoss(nn.Module):
    """Module form of `contrastive_loss`; holds no parameters (the model owns `logit_scale`)."""

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(self, image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor) -> Tensor:
        return contrastive_loss(image_embeds, text_embeds, logit_scale, gather=self.gather)

    def extra_repr(self) -> str:
        return f"gather={self.gather}"


__all__ = ["ContrastiveLoss", "contrastive_loss"]
