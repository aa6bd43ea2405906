"""Output dataclasses the fusion families share where transformers has no fitting one.

Heads that fit transformers' own outputs use those: `SequenceClassifierOutput` (VQA, NLVR2, SNLI-VE logits),
`MaskedLMOutput` (MLM, captioning logits). CLIP-like contrastive outputs stay with their family (`MsClipOutput`).
"""

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class GroundingOutput(ModelOutput):
    """Output of a visual-grounding head (TransVG, TransVG++): one box per image-expression pair.

    Args:
        loss: `[]`, the box regression loss (L1 + GIoU) when target boxes are given.
        pred_boxes: `[batch, 4]`, normalised (cx, cy, w, h) with respect to the padded input canvas.
        last_hidden_state: `[batch, seq, hidden]`, the fused sequence the box is read from.
        hidden_states: per layer `[batch, seq, hidden]`, with `output_hidden_states=True`.
        attentions: per layer `[batch, heads, seq, seq]`, with `output_attentions=True` (eager attention).
    """

    loss: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class ImageTextMatchingOutput(ModelOutput):
    """Output of an image-text matching head (METER, FLAVA): whether each image-text pair belongs together.

    Args:
        loss: `[]`, cross-entropy of `itm_logits` against the match labels when given.
        itm_logits: `[batch, 2]`; index 1 is "matched", `softmax(itm_logits)[:, 1]` the match probability.
        pooler_output: `[batch, hidden]`, the pooled fused features the logits come from.
        hidden_states: per layer hidden states, with `output_hidden_states=True`.
        attentions: per layer attention weights, with `output_attentions=True` (eager attention).
    """

    loss: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


__all__ = ["GroundingOutput", "ImageTextMatchingOutput"]
