"""Task heads shared by the fusion families: MLP classifier (VQA, NLVR2, SNLI-VE), ITM, MLM, box MLP, projection."""

import torch
from torch import nn
from transformers.activations import ACT2FN


def _activation(name: str) -> nn.Module:
    if name not in ACT2FN:
        raise ValueError(f"activation {name!r} is not a transformers ACT2FN name (e.g. 'gelu', 'relu', 'quick_gelu')")
    return ACT2FN[name]


class MlpClassifierHead(nn.Sequential):
    """`Linear(input, intermediate)` -> `LayerNorm` -> activation -> `Linear(intermediate, num_labels)`; logits out.

    The VQA head of METER (`vqa_classifier`, input = the 2H pooled features, intermediate 2H), VLMo and BEiT-3
    (`head`, input H, intermediate 2H), and METER's NLVR2 (input 4H, intermediate 2H) and SNLI-VE heads
    (meter.md §2.6, beit3.md §2.6). A `Sequential`, so its keys are `0`, `1`, `3` as in the released checkpoints
    (`2` is the parameter-free activation). The LayerNorm eps is 1e-5 and the GELU exact in all of them.
    """

    def __init__(
        self,
        input_size: int,
        intermediate_size: int,
        num_labels: int,
        *,
        layer_norm_eps: float = 1e-5,
        activation: str = "gelu",
    ):
        super().__init__(
            nn.Linear(input_size, intermediate_size),
            nn.LayerNorm(intermediate_size, eps=layer_norm_eps),
            _activation(activation),
            nn.Linear(intermediate_size, num_labels),
        )


class ItmHead(nn.Module):
    """Image-text matching: `fc` = `Linear(input_size, 2)` on pooled fused features; logit 1 means "matched"."""

    def __init__(self, input_size: int):
        super().__init__()
        self.fc = nn.Linear(input_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled_output)


class MlmTransform(nn.Module):
    """`dense` -> activation -> `LayerNorm`, with the names of transformers' `BertPredictionHeadTransform`."""

    def __init__(self, hidden_size: int, *, activation: str = "gelu", layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.transform_act_fn = _activation(activation)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class MlmHead(nn.Module):
    """Masked-token prediction: `transform` (dense -> activation -> LayerNorm) -> `decoder` (no bias) -> `+ bias`.

    BERT's `BertLMPredictionHead` layout (`transform.dense`, `transform.LayerNorm`, `decoder.weight`, `bias`), which
    METER's `mlm_score` and FLAVA's masked heads share (eps 1e-12 in METER, 1e-5 in torchmultimodal's FLAVA heads).
    The decoder weight may be tied to a word embedding: the model declares
    `_tied_weights_keys = {"<path>.decoder.weight": "<path to>.word_embeddings.weight"}` and sets
    `tie_word_embeddings=True` in its config (hf_conventions.md §0.3, §2.6); the bias is this head's own. The
    model's `_init_weights` must zero `bias` (a plain parameter transformers' default init does not know).
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-12,
    ):
        super().__init__()
        self.transform = MlmTransform(hidden_size, activation=activation, layer_norm_eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states)) + self.bias


class BoxHead(nn.Module):
    """DETR-style box MLP: `layers` of Linear with ReLU between, then a sigmoid -> normalised (cx, cy, w, h).

    TransVG's `bbox_embed` is `BoxHead(256, 256)` and TransVG++'s `prediction_head` is `BoxHead(D, 256)`: both
    `input -> hidden -> hidden -> 4` (transvg.md §2-3), keys `layers.0..2`.
    """

    def __init__(self, input_size: int, hidden_size: int, *, output_size: int = 4, num_layers: int = 3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1; got {num_layers}")
        sizes = [input_size] + [hidden_size] * (num_layers - 1) + [output_size]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states)
            if index < len(self.layers) - 1:
                hidden_states = nn.functional.relu(hidden_states)
        return hidden_states.sigmoid()


class NormalizedProjection(nn.Linear):
    """A bias-free `Linear` whose outputs are L2-normalised: contrastive embeddings (BEiT-3's `vision_head` and
    `language_head`). A subclass of `nn.Linear`, so the weight keeps the original's flat key (`vision_head.weight`).
    """

    def __init__(self, input_size: int, output_size: int, *, eps: float = 1e-12):
        super().__init__(input_size, output_size, bias=False)
        self.eps = eps

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(super().forward(pooled_output), dim=-1, eps=self.eps)


__all__ = ["BoxHead", "ItmHead", "MlmHead", "MlmTransform", "MlpClassifierHead", "NormalizedProjection"]
