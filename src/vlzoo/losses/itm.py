"""Image-text matching: the binary match loss and ALBEF/METER hard-negative sampling."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def image_text_matching_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the 2-way match head, averaged over pairs.

    Args:
        logits: `[N, 2]` scores; index 1 means "matched" (METER's `itm_score`, FLAVA's ITM head).
        labels: `[N]` integer labels, 1 for a matched pair and 0 for a negative.
    """
    if logits.dim() != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape [N, 2]; got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape [{logits.shape[0]}] to match logits; got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of 0/1; got dtype {labels.dtype}")
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def sample_hard_negatives(similarity: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw one hard negative text per image and one hard negative image per text.

    For image i, text j != i is drawn with probability `softmax(similarity[i])[j]` renormalised over j != i
    (equivalently a softmax over the off-diagonal entries of row i); texts draw images from the columns the
    same way. This is ALBEF's and METER's sampler without their 1e-5 smoothing, computed in float32 with the
    diagonal masked before the softmax so that a confident diagonal cannot leave a row with all-zero weights.

    Args:
        similarity: `[B, B]` image-text similarity (rows images, columns texts; the diagonal holds the positives),
            e.g. the contrastive logits. No gradient flows through the sampling.
        generator: optional random generator on `similarity`'s device, for reproducible draws.

    Returns:
        `(negative_text_index, negative_image_index)`, two `[B]` int64 tensors: the negative text of each image
        and the negative image of each text; never the positive.
    """
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square [B, B] matrix; got shape {tuple(similarity.shape)}")
    if similarity.shape[0] < 2:
        raise ValueError(
            f"similarity must cover at least 2 pairs to have negatives; got batch size {similarity.shape[0]}"
        )
    if not torch.isfinite(similarity).all():
        raise ValueError("similarity contains NaN or infinite values; cannot sample negatives from it")
    batch_size = similarity.shape[0]
    diagonal = torch.eye(batch_size, dtype=torch.bool, device=similarity.device)
    masked = similarity.float().masked_fill(diagonal, float("-inf"))
    text_weights = masked.softmax(dim=1)
    image_weights = masked.T.softmax(dim=1)
    negative_text_index = torch.multinomial(text_weights, 1, generator=generator).squeeze(1)
    negative_image_index = torch.multinomial(image_weights, 1, generator=generator).squeeze(1)
    return negative_text_index, negative_image_index


class ImageTextMatchingLoss(nn.Module):
    """Module form of `image_text_matching_loss`."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return image_text_matching_loss(logits, labels)


__all__ = ["ImageTextMatchingLoss", "image_text_matching_loss", "sample_hard_negatives"]
