"""METER: transformers' CLIP vision tower and RoBERTa joined by co-attention layers, with its task heads."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, PreTrainedModel, RobertaModel, SwinModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, BaseModelOutputWithPoolingAndCrossAttentions
from transformers.utils import ModelOutput, can_return_tuple, logging

from vlzoo.layers.heads import ItmHead, MlmHead, MlpClassifierHead
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.poolers import FirstTokenPooler
from vlzoo.layers.transformer import TransformerLayer
from vlzoo.losses.itm import image_text_matching_loss
from vlzoo.losses.mlm import masked_language_modeling_loss
from vlzoo.losses.vqa import vqa_soft_target_loss

from .configuration_meter import MeterConfig

logger = logging.get_logger(__name__)

__all__ = [
    "MeterForClassificationOutput",
    "MeterForImageTextRetrieval",
    "MeterForImageTextRetrievalOutput",
    "MeterForPreTraining",
    "MeterForPreTrainingOutput",
    "MeterForQuestionAnswering",
    "MeterForVisualEntailment",
    "MeterForVisualReasoning",
    "MeterForVisualReasoningOutput",
    "MeterModel",
    "MeterModelOutput",
    "MeterPreTrainedModel",
]


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MeterModelOutput(ModelOutput):
    """Output of `MeterModel`.

    Args:
        text_last_hidden_state: `[batch, text_len, hidden]`, the text stream after the last co-attention layer
            (the original's `text_feats`).
        image_last_hidden_state: `[batch, 1 + patches, hidden]`, the image stream after the last co-attention layer
            (`image_feats`).
        pooler_output: `[batch, 2 * hidden]`, `tanh(dense(text[:, 0]))` ‖ `tanh(dense(image[:, 0]))` (`cls_feats`;
            Swin tower: `tanh(dense(image.mean(1)))` for the image, which has no class token).
        text_encoder_last_hidden_state: `[batch, text_len, text_hidden]`, RoBERTa's output before the projection.
        image_encoder_last_hidden_state: `[batch, 1 + patches, vision_hidden]`, CLIP's output after `ln_post` on
            every token, before the projection (Swin: `[batch, tokens, vision_hidden]` after its final LayerNorm).
        text_hidden_states, image_hidden_states: with `output_hidden_states=True`, each stream's input to the
            co-attention layers and the output of every layer (`num_hidden_layers + 1` tensors).
        text_attentions, image_attentions: with `output_attentions=True` (eager attention), the self-attention
            weights of each co-attention layer, `[batch, heads, len, len]`.
        text_cross_attentions, image_cross_attentions: the cross-attention weights, `[batch, heads, len, other_len]`.
        text_model_output: RoBERTa's output (its `hidden_states` / `attentions` when asked for).
        vision_model_output: CLIP's output (`last_hidden_state` before `ln_post`, `hidden_states`, `attentions`), or
            Swin's.
    """

    text_last_hidden_state: torch.FloatTensor | None = None
    image_last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    text_encoder_last_hidden_state: torch.FloatTensor | None = None
    image_encoder_last_hidden_state: torch.FloatTensor | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    image_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None
    image_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    image_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_model_output: BaseModelOutputWithPoolingAndCrossAttentions | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None


@dataclass
class MeterForPreTrainingOutput(ModelOutput):
    """Output of `MeterForPreTraining`.

    Args:
        loss: `[]`, MLM cross-entropy (with `labels`) plus ITM cross-entropy (with `itm_labels`).
        mlm_logits: `[batch, text_len, vocab]`, the masked-token scores of every text position.
        itm_logits: `[batch, 2]`, image-text matching (index 1 = matched).
        model_output: the `MeterModelOutput` the heads read.
    """

    loss: torch.FloatTensor | None = None
    mlm_logits: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    model_output: MeterModelOutput | None = None


@dataclass
class MeterForClassificationOutput(ModelOutput):
    """Output of the classifiers on `pooler_output` (`MeterForQuestionAnswering`, `MeterForVisualEntailment`).

    Args:
        loss: `[]`, the task loss when `labels` are given.
        logits: `[batch, num_labels]` over `config.id2label`.
        model_output: the `MeterModelOutput` the head reads.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    model_output: MeterModelOutput | None = None


@dataclass
class MeterForVisualReasoningOutput(ModelOutput):
    """Output of `MeterForVisualReasoning` (NLVR2).

    Args:
        loss: `[]`, cross-entropy when `labels` are given.
        logits: `[batch, 2]` (index 1 = "True").
        model_outputs: the two passes (text with the first image, token type 1; with the second, token type 2).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    model_outputs: tuple[MeterModelOutput, MeterModelOutput] | None = None


@dataclass
class MeterForImageTextRetrievalOutput(ModelOutput):
    """Output of `MeterForImageTextRetrieval`.

    Args:
        loss: `[]`, ITM cross-entropy of `itm_logits` when `labels` are given.
        logits: `[batch, 1]`, the retrieval rank score `rank_output(pooler_output)` (higher = better match).
        itm_logits: `[batch, 2]`, the image-text matching head (index 1 = matched).
        model_output: the `MeterModelOutput` the heads read.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    model_output: MeterModelOutput | None = None


# ----------------------------------------------------------------------------------------------------------------
# Base model
# ----------------------------------------------------------------------------------------------------------------


@contextmanager
def _record_attentions(
    layers: nn.ModuleList, enabled: bool
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Collect the self- and cross-attention weights of `layers` while the block runs (eager kernels return them).

    `TransformerLayer` returns only its hidden states; the weights come from its attention modules, read by hooks
    that exist only inside the block (transformers' output recorders cannot tell the two streams' layers apart).
    """
    self_weights: list[torch.Tensor] = []
    cross_weights: list[torch.Tensor] = []
    handles = []
    if enabled:
        for layer in layers:
            handles.append(layer.self_attn.register_forward_hook(lambda m, a, out: self_weights.append(out[1])))
            handles.append(layer.cross_attn.register_forward_hook(lambda m, a, out: cross_weights.append(out[1])))
    try:
        yield self_weights, cross_weights
    finally:
        for handle in handles:
            handle.remove()


class MeterRankHead(nn.Linear):
    """`Linear(input_size, 1)`, the retrieval rank score (`rank_output`), computed as a product and a sum.

    A one-row matrix-vector product sums in an order that depends on the weight's memory alignment, and weights
    loaded with `from_pretrained` sit at arbitrary offsets: `F.linear` then changed the score in its last bits
    between a model and its reloaded copy. The element-wise form sums a freshly allocated product.
    """

    def __init__(self, input_size: int):
        super().__init__(input_size, 1)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return (pooled_output * self.weight[0]).sum(dim=-1, keepdim=True) + self.bias


class MeterPreTrainedModel(PreTrainedModel):
    config: MeterConfig
    base_model_prefix = "meter"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = [
        "TransformerLayer",
        "CLIPEncoderLayer",
        "CLIPVisionEmbeddings",
        "RobertaLayer",
        "RobertaEmbeddings",
        "SwinLayer",
        "SwinEmbeddings",
    ]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MlmHead):
            init.zeros_(module.bias)


class MeterModel(MeterPreTrainedModel):
    """The two towers, the projections into the fusion width, the modality token types, the co-attention layers and
    the two poolers (meter.md §2). Heads read `pooler_output` (`cls_feats`) or the fused text stream.

    Example:

    ```python
    >>> import torch
    >>> from vlzoo import MeterConfig, MeterModel
    >>> config = MeterConfig(
    ...     vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "image_size": 32},
    ...     text_config={"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    ...                  "intermediate_size": 37, "max_position_embeddings": 20},
    ...     hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
    ... )
    >>> model = MeterModel(config).eval()
    >>> out = model(input_ids=torch.tensor([[0, 5, 6, 2]]), pixel_values=torch.randn(1, 3, 32, 32))
    >>> out.pooler_output.shape
    torch.Size([1, 64])
    ```
    """

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        vision, text = config.vision_config, config.text_config
        if config.uses_swin:  # the Swin-B variant: transformers' Swin, its final LayerNorm on every token
            self.vision_model = SwinModel._from_config(vision, add_pooling_layer=False)
        else:
            self.vision_model = CLIPVisionModel._from_config(vision)
        self.text_model = RobertaModel._from_config(text, add_pooling_layer=False)
        self.text_projection = nn.Linear(text.hidden_size, config.hidden_size)
        self.image_projection = nn.Linear(vision.hidden_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)

        def fusion_layer() -> TransformerLayer:
            # meter.md §2.4: BERT post-LN blocks, self-attention -> cross-attention -> FFN, eps 1e-12, exact GELU
            return TransformerLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                activation=config.hidden_act,
                layer_norm_eps=config.layer_norm_eps,
                norm_first=False,
                cross_attention=True,
                dropout=config.hidden_dropout_prob,
                attention_dropout=config.attention_probs_dropout_prob,
                config=config,
            )

        self.text_layers = nn.ModuleList(fusion_layer() for _ in range(config.num_hidden_layers))
        self.image_layers = nn.ModuleList(fusion_layer() for _ in range(config.num_hidden_layers))
        self.text_pooler = FirstTokenPooler(config.hidden_size)
        self.image_pooler = FirstTokenPooler(config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    def _check_inputs(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape checks (never reading values, so tracing and export keep working); text over the position table is
        truncated with a warning."""
        name = type(self).__name__
        if input_ids is None or pixel_values is None:
            raise ValueError(f"{name} needs both input_ids [batch, text_len] and pixel_values [batch, 3, H, W]")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [batch, text_len]; got {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)} (1 = token, 0 = padding); "
                f"got {tuple(attention_mask.shape)}"
            )
        limit = self.config.max_text_length
        if input_ids.shape[1] > limit:
            logger.warning_once(
                f"input_ids has {input_ids.shape[1]} tokens but the RoBERTa position table holds {limit}; the text is "
                f"truncated to its first {limit} tokens (tokenize with truncation=True, max_length={limit})"
            )
            input_ids, attention_mask = input_ids[:, :limit], attention_mask[:, :limit]
        vision = self.config.vision_config
        expected = (vision.num_channels, vision.image_size, vision.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must have shape [batch, {', '.join(map(str, expected))}] (RGB at the model's "
                f"resolution; the processor resizes images); got {tuple(pixel_values.shape)}"
            )
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[0]} images but input_ids {input_ids.shape[0]} texts; METER "
                "fuses one image with one text: repeat them into pairs"
            )
        return input_ids, attention_mask

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        image_token_type_idx: int = 1,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterModelOutput:
        r"""
        Args:
            input_ids: `[batch, text_len]` RoBERTa ids (`<s> ... </s> <pad>...`); no token_type_ids are used.
            attention_mask: `[batch, text_len]`, 1 = token, 0 = padding (default: all tokens).
            pixel_values: `[batch, 3, image_size, image_size]`, one image per text.
            image_token_type_idx: the modality token-type row added to the image stream (1; NLVR2's second image 2).
        """
        if isinstance(image_token_type_idx, bool) or not isinstance(image_token_type_idx, int):
            raise TypeError(f"image_token_type_idx must be an int, got {type(image_token_type_idx).__name__}")
        if not 1 <= image_token_type_idx < self.config.type_vocab_size:
            raise ValueError(
                f"image_token_type_idx must be between 1 and {self.config.type_vocab_size - 1} (type_vocab_size "
                f"{self.config.type_vocab_size}); got {image_token_type_idx}"
            )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        input_ids, attention_mask = self._check_inputs(input_ids, attention_mask, pixel_values)
        recording = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}

        text_outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, **recording)
        vision_outputs = self.vision_model(pixel_values=pixel_values, **recording)
        text_embeds = text_outputs.last_hidden_state
        if self.config.uses_swin:
            image_embeds = vision_outputs.last_hidden_state  # SwinModel's final LayerNorm, every token
        else:
            # meter.md §2.1: ln_post on every token, no projection
            image_embeds = self.vision_model.post_layernorm(vision_outputs.last_hidden_state)

        text = self.text_projection(text_embeds)
        image = self.image_projection(image_embeds)
        # meter.md §2.3: modality token types after the projections; text row 0, image row image_token_type_idx
        # (called as a module, not indexed, so offloading hooks bring its weight in)
        text_types = torch.zeros(text.shape[:2], dtype=torch.long, device=text.device)
        text = text + self.token_type_embeddings(text_types)
        image = image + self.token_type_embeddings(
            torch.full(image.shape[:2], image_token_type_idx, dtype=torch.long, device=image.device)
        )
        text_mask = key_padding_attention_mask(attention_mask, dtype=text.dtype)

        text_states, image_states = [text], [image]
        with (
            _record_attentions(self.text_layers, output_attentions) as (text_self, text_cross),
            _record_attentions(self.image_layers, output_attentions) as (image_self, image_cross),
        ):
            for text_layer, image_layer in zip(self.text_layers, self.image_layers, strict=True):
                # both streams read the previous layer's outputs (parallel update); the image mask is all ones
                new_text = text_layer(text, text_mask, image, None)
                new_image = image_layer(image, None, text, text_mask)
                text, image = new_text, new_image
                text_states.append(text)
                image_states.append(image)

        # the Swin variant has no image class token: its pooler reads the mean of the image tokens (meter.md §2.5)
        image_first = image.mean(dim=1, keepdim=True) if self.config.uses_swin else image
        pooled = torch.cat([self.text_pooler(text), self.image_pooler(image_first)], dim=-1)
        return MeterModelOutput(
            text_last_hidden_state=text,
            image_last_hidden_state=image,
            pooler_output=pooled,
            text_encoder_last_hidden_state=text_embeds,
            image_encoder_last_hidden_state=image_embeds,
            text_hidden_states=tuple(text_states) if output_hidden_states else None,
            image_hidden_states=tuple(image_states) if output_hidden_states else None,
            text_attentions=tuple(text_self) if output_attentions else None,
            image_attentions=tuple(image_self) if output_attentions else None,
            text_cross_attentions=tuple(text_cross) if output_attentions else None,
            image_cross_attentions=tuple(image_cross) if output_attentions else None,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


# ----------------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------------


class MeterForPreTraining(MeterPreTrainedModel):
    """METER's pretraining heads: masked language modelling on the fused text stream (`mlm_score`, its decoder NOT
    tied to the word embeddings) and image-text matching on `pooler_output` (`itm_score`).

    The original computes the two from different passes (MLM on masked ids, ITM on the clean ids): call the model
    once per pass and read the output you need.
    """

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        self.meter = MeterModel(config)
        self.mlm_score = MlmHead(
            config.hidden_size,
            config.text_config.vocab_size,
            activation=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
        )
        self.itm_score = ItmHead(2 * config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.meter.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        itm_labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterForPreTrainingOutput:
        r"""
        Args:
            labels: `[batch, text_len]` original ids at the masked positions, -100 elsewhere (MLM loss).
            itm_labels: `[batch]`, 1 = the image matches the text, 0 = not (ITM loss).
        """
        outputs = self.meter(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        mlm_logits = self.mlm_score(outputs.text_last_hidden_state)
        itm_logits = self.itm_score(outputs.pooler_output)
        loss = None
        if labels is not None:
            loss = masked_language_modeling_loss(mlm_logits, labels[:, : mlm_logits.shape[1]])
        if itm_labels is not None:
            itm_loss = image_text_matching_loss(itm_logits, itm_labels)
            loss = itm_loss if loss is None else loss + itm_loss
        return MeterForPreTrainingOutput(loss=loss, mlm_logits=mlm_logits, itm_logits=itm_logits, model_output=outputs)


class MeterForQuestionAnswering(MeterPreTrainedModel):
    """VQA as classification over `config.id2label` (`vqa_classifier` on `pooler_output`), trained with soft-target
    binary cross-entropy (meter.md §2.6). The answer list is not in the released checkpoints: set `id2label`."""

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        self.meter = MeterModel(config)
        width = 2 * config.hidden_size
        self.vqa_classifier = MlpClassifierHead(
            width, width, config.num_labels, layer_norm_eps=config.classifier_layer_norm_eps
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.meter.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.FloatTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterForClassificationOutput:
        r"""
        Args:
            labels: `[batch, num_labels]` soft scores in [0, 1] (VQA accuracy of each answer).
        """
        outputs = self.meter(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.vqa_classifier(outputs.pooler_output)
        loss = None if labels is None else vqa_soft_target_loss(logits, labels)
        return MeterForClassificationOutput(loss=loss, logits=logits, model_output=outputs)


class MeterForVisualEntailment(MeterPreTrainedModel):
    """SNLI-VE: does the image entail the text (`snli_classifier` on `pooler_output`; labels 0 contradiction,
    1 neutral, 2 entailment)."""

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        self.meter = MeterModel(config)
        width = 2 * config.hidden_size
        self.snli_classifier = MlpClassifierHead(
            width, width, config.num_labels, layer_norm_eps=config.classifier_layer_norm_eps
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.meter.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterForClassificationOutput:
        r"""
        Args:
            labels: `[batch]` class ids of `config.id2label` (cross-entropy).
        """
        outputs = self.meter(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.snli_classifier(outputs.pooler_output)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return MeterForClassificationOutput(loss=loss, logits=logits, model_output=outputs)


class MeterForVisualReasoning(MeterPreTrainedModel):
    """NLVR2: is the statement true of the image pair? Two passes (the text with the first image under token type 1,
    with the second under token type 2), `nlvr2_classifier` on both `pooler_output`s concatenated (meter.md §2.6).
    Needs `type_vocab_size >= 3`."""

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        if config.type_vocab_size < 3:
            raise ValueError(
                f"MeterForVisualReasoning adds token type 2 to the second image and needs type_vocab_size >= 3; the "
                f"config has {config.type_vocab_size} (use the preset clip16-288-nlvr2 or set type_vocab_size=3)"
            )
        self.meter = MeterModel(config)
        width = 2 * config.hidden_size
        self.nlvr2_classifier = MlpClassifierHead(
            2 * width, width, config.num_labels, layer_norm_eps=config.classifier_layer_norm_eps
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.meter.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterForVisualReasoningOutput:
        r"""
        Args:
            pixel_values: `[batch, 2, 3, image_size, image_size]`, the left and right image of each statement.
            labels: `[batch]`, 1 = "True", 0 = "False" (cross-entropy).
        """
        if pixel_values is None or pixel_values.dim() != 5 or pixel_values.shape[1] != 2:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(
                f"MeterForVisualReasoning needs two images per text: pixel_values of shape [batch, 2, 3, H, W]; got "
                f"{shape}"
            )
        passes = tuple(
            self.meter(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values[:, index],
                image_token_type_idx=index + 1,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
            )
            for index in range(2)
        )
        logits = self.nlvr2_classifier(torch.cat([passes[0].pooler_output, passes[1].pooler_output], dim=-1))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return MeterForVisualReasoningOutput(loss=loss, logits=logits, model_outputs=passes)


class MeterForImageTextRetrieval(MeterPreTrainedModel):
    """Image-text retrieval by cross-encoding each pair: `logits` = `rank_output(pooler_output)` (the fine-tuned
    rank score the original ranks by) and `itm_logits` = `itm_score(pooler_output)` (the matching head).

    Both are kept as the checkpoint stores them (meter.md §2.6: the original's CPU load path overwrites the "match"
    row of `itm_score` with `rank_output`; vlzoo does not). A `rank_output` missing from the loaded weights (a
    pretraining checkpoint) starts as the "match" row of `itm_score`, as the original fine-tuning does. The
    pipelines score pairs by `logits` (`itm_score_output`).
    """

    itm_score_output = "logits"

    def __init__(self, config: MeterConfig):
        super().__init__(config)
        self.meter = MeterModel(config)
        self.itm_score = ItmHead(2 * config.hidden_size)
        self.rank_output = MeterRankHead(2 * config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.meter.get_input_embeddings()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self.rank_output:
            # initialised after itm_score (registration order), and after loading for a checkpoint that has it
            init.copy_(module.weight, self.itm_score.fc.weight[1:])
            init.copy_(module.bias, self.itm_score.fc.bias[1:])

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> MeterForImageTextRetrievalOutput:
        r"""
        Args:
            labels: `[batch]`, 1 = matched pair, 0 = not (cross-entropy of `itm_logits`).
        """
        outputs = self.meter(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.rank_output(outputs.pooler_output)
        itm_logits = self.itm_score(outputs.pooler_output)
        loss = None if labels is None else image_text_matching_loss(itm_logits, labels)
        return MeterForImageTextRetrievalOutput(loss=loss, logits=logits, itm_logits=itm_logits, model_output=outputs)
