"""BEiT-3 (Multiway Transformer) backbone and its released task heads (beit3.md §2)."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
    SequenceClassifierOutput,
)
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.heads import MlpClassifierHead
from vlzoo.layers.incremental import LayerCache, transformer_layer_step
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.multiway import Multiway
from vlzoo.layers.patch_embedding import PatchEmbedding
from vlzoo.layers.positions import LearnedPositionEmbedding, resize_position_table_2d
from vlzoo.layers.tracing import is_tracing
from vlzoo.layers.transformer import TransformerLayer
from vlzoo.losses.contrastive import contrastive_loss
from vlzoo.losses.vqa import vqa_soft_target_loss

from .configuration_beit3 import POSITION_OFFSET, Beit3Config

# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Beit3ImageTextRetrievalOutput(ModelOutput):
    """Dual-encoder output with CLIP's field names.

    Args:
        loss: symmetric contrastive loss (`return_loss=True`).
        logits_per_image (`[n_images, n_texts]`): `exp(logit_scale) * image_embeds @ text_embeds.T`.
        logits_per_text (`[n_texts, n_images]`): its transpose.
        text_embeds, image_embeds (`[n, hidden]`): L2-normalised projections of the first token of each pass.
        text_model_output, vision_model_output: the two unimodal backbone passes.
    """

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple:
        return tuple(
            self[k] if k not in ("text_model_output", "vision_model_output") else getattr(self, k).to_tuple()
            for k in self.keys()
        )


@dataclass
class Beit3CaptioningOutput(ModelOutput):
    """Captioning head output.

    Args:
        loss: label-smoothed masked-token loss over the positions whose `labels` are not -100.
        logits (`[batch, text_len, vocab_size]`): scores of every text position under the captioning mask.
        hidden_states, attentions: of the joint backbone pass.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


class Beit3Embeddings(nn.Module):
    """Patch and token embeddings, class and mask tokens, and the two learned position tables (beit3.md §2.4).

    Both tables keep the two unused fairseq rows (`offset=2`); the vision table covers the class token and the
    patch grid, the text table `max_position_embeddings - 2` positions, and both restart at their row 2.
    """

    def __init__(self, config: Beit3Config):
        super().__init__()
        self.config = config
        self.patch_embedding = PatchEmbedding(
            config.num_channels, config.hidden_size, config.patch_size, image_size=config.image_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.text_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.vision_position_embedding = LearnedPositionEmbedding(
            config.num_vision_tokens, config.hidden_size, offset=POSITION_OFFSET
        )
        self.text_position_embedding = LearnedPositionEmbedding(
            config.max_text_length, config.hidden_size, offset=POSITION_OFFSET
        )

    def vision_positions(self, height: int, width: int) -> torch.Tensor:
        """Positions of the class token and a `height` x `width` patch grid; other grids resize the table bicubically
        (the original conversion rule, beit3.md §3.4)."""
        grid = self.config.grid_size
        # through the module's forward (not `.weight`), so that offloading hooks load the table
        table = self.vision_position_embedding(seq_len=self.config.num_vision_tokens)
        if (height, width) == (grid, grid):
            return table
        return resize_position_table_2d(table, (height, width), old_grid_size=grid, num_prefix_rows=1)

    def embed_image(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        """`[batch, 1 + patches, hidden]`: class token then row-major patches, positions added."""
        patches = self.patch_embedding(pixel_values, interpolate_pos_encoding)
        if bool_masked_pos is not None:
            if bool_masked_pos.shape != patches.shape[:2]:
                raise ValueError(
                    f"bool_masked_pos must have shape [batch, num_patches] = {tuple(patches.shape[:2])}; got "
                    f"{tuple(bool_masked_pos.shape)}"
                )
            weight = bool_masked_pos.to(patches.dtype).unsqueeze(-1)
            patches = patches * (1 - weight) + self.mask_token.to(patches.dtype) * weight
        cls = self.cls_token.to(patches.dtype).expand(patches.shape[0], -1, -1)
        embeddings = torch.cat([cls, patches], dim=1)
        height, width = self.patch_embedding.grid_size(*pixel_values.shape[-2:])
        return embeddings + self.vision_positions(height, width).to(embeddings.dtype)

    def embed_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[batch, text_len, hidden]`; padded tokens (attention_mask 0) are zeroed after adding positions."""
        embeddings = self.text_embedding(input_ids)
        if position_ids is None:
            embeddings = embeddings + self.text_position_embedding(seq_len=input_ids.shape[1])
        else:
            embeddings = embeddings + self.text_position_embedding(position_ids)
        if attention_mask is not None:
            embeddings = embeddings * attention_mask.unsqueeze(-1).to(embeddings.dtype)
        return embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        text_position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """The joint sequence `[image ; text]` (either may be absent) and the number of vision tokens in it.

        Called as a module (not through `embed_image`/`embed_text`) so that offloading hooks load its parameters.
        """
        parts = []
        if pixel_values is not None:
            parts.append(self.embed_image(pixel_values, bool_masked_pos, interpolate_pos_encoding))
        num_vision = parts[0].shape[1] if parts else 0
        if input_ids is not None:
            text = self.embed_text(input_ids, attention_mask, text_position_ids)
            parts.append(text.to(parts[0].dtype) if parts else text)
        return (torch.cat(parts, dim=1) if len(parts) == 2 else parts[0]), num_vision


class Beit3Encoder(nn.Module):
    """The multiway layers and the optional final multiway LayerNorm (torchscale `Encoder`)."""

    def __init__(self, config: Beit3Config):
        super().__init__()
        # stochastic depth rising linearly to drop_path_rate (plain floats: models are also built on the meta device)
        count = config.num_hidden_layers
        rates = [config.drop_path_rate * i / (count - 1) if count > 1 else 0.0 for i in range(count)]
        self.layers = nn.ModuleList(
            TransformerLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                activation=config.hidden_act,
                layer_norm_eps=config.layer_norm_eps,
                norm_first=True,
                sub_layer_norm=True,
                scale_queries=True,  # torchscale scales q after its bias (beit3.md §2.5)
                dropout=config.hidden_dropout_prob,
                attention_dropout=config.attention_dropout,
                activation_dropout=config.activation_dropout,
                drop_path=rate,
                multiway=True,
                config=config,
            )
            for rate in rates
        )
        self.layer_norm = (
            Multiway(nn.LayerNorm, config.hidden_size, eps=config.layer_norm_eps) if config.final_layer_norm else None
        )

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, split_position: int):
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, split_position=split_position)
        return hidden_states

    def finish(self, hidden_states: torch.Tensor, split_position: int) -> torch.Tensor:
        return hidden_states if self.layer_norm is None else self.layer_norm(hidden_states, split_position)


class Beit3Pooler(nn.Module):
    """`tanh(dense(norm(x[:, 0])))`: the VQA pooler, on the vision class token (beit3.md §2.6)."""

    def __init__(self, config: Beit3Config):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(self.norm(hidden_states[:, 0])))


class Beit3VisualReasoningHead(nn.Module):
    """NLVR2's `TwoLayerMLP`: `LN(4D) -> Linear(4D, 2D) -> LN(2D) -> GELU -> Linear(2D, num_labels)`."""

    def __init__(self, config: Beit3Config):
        super().__init__()
        size, hidden = 4 * config.hidden_size, config.classifier_hidden_size
        self.norm1 = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.dense1 = nn.Linear(size, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dense2 = nn.Linear(hidden, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.dense2(F.gelu(self.norm2(self.dense1(self.norm1(features)))))


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _check_pixel_values(pixel_values: torch.Tensor, config: Beit3Config, interpolate: bool, ndim: int = 4) -> None:
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        raise TypeError("pixel_values must be a floating-point torch.Tensor")
    expected = "[batch, 3, size, size]" if ndim == 4 else "[batch, 2, 3, size, size] (two images per example)"
    if pixel_values.dim() != ndim or pixel_values.shape[-3] != config.num_channels or pixel_values.shape[0] == 0:
        raise ValueError(
            f"pixel_values has shape {tuple(pixel_values.shape)}; BEiT-3 expects {expected} with "
            f"{config.num_channels} channels (convert other modes with the processor)"
        )
    if ndim == 5 and pixel_values.shape[1] != 2:
        raise ValueError(f"pixel_values has shape {tuple(pixel_values.shape)}; NLVR2 needs exactly 2 images per text")
    height, width = pixel_values.shape[-2:]
    if not interpolate and (height, width) != (config.image_size, config.image_size):
        raise ValueError(
            f"pixel_values is {height}x{width} px but the model's position table covers {config.image_size}x"
            f"{config.image_size} px ({config.grid_size}x{config.grid_size} patches of {config.patch_size}): resize the "
            f"image with the processor, or pass interpolate_pos_encoding=True to resize the position table"
        )


def _check_text(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: Beit3Config) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError("input_ids must be an integer torch.Tensor of shape [batch, sequence]")
    if input_ids.dim() != 2 or 0 in input_ids.shape:
        raise ValueError(f"input_ids must have shape [batch, sequence] with both > 0; got {tuple(input_ids.shape)}")
    if input_ids.shape[1] > config.max_text_length:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} tokens but the text position table covers {config.max_text_length} "
            "(max_position_embeddings minus its 2 unused rows): truncate with the processor (max_length)"
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}"
        )
    if is_tracing():
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"input_ids holds ids in [{low}, {high}] but the vocabulary has {config.vocab_size} rows: was the text "
            "tokenized with this model's tokenizer?"
        )


def _captioning_mask(
    num_vision: int, attention_mask: torch.Tensor | None, text_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive `[batch or 1, 1, L, L]` captioning mask (beit3.md §2.6): image queries see the image only; text
    position t sees the image and text positions <= t; padded text keys are blocked for everyone."""
    length = num_vision + text_len
    allowed = torch.zeros(length, length, dtype=torch.bool, device=device)
    allowed[:num_vision, :num_vision] = True
    allowed[num_vision:, :num_vision] = True
    allowed[num_vision:, num_vision:] = torch.ones(text_len, text_len, dtype=torch.bool, device=device).tril()
    allowed = allowed[None, None]
    if attention_mask is not None:
        keys = torch.cat(
            [torch.ones(attention_mask.shape[0], num_vision, dtype=torch.bool, device=device), attention_mask.bool()],
            dim=1,
        )
        allowed = allowed & keys[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class Beit3PreTrainedModel(PreTrainedModel):
    """Weight init and the capabilities shared by every BEiT-3 class."""

    config: Beit3Config
    base_model_prefix = "beit3"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["TransformerLayer", "Beit3Embeddings"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_record_outputs = {
        "hidden_states": TransformerLayer,
        "attentions": OutputRecorder(MultiHeadAttention, index=1),
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)
        elif isinstance(module, Beit3Embeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.mask_token, std=std)
        if isinstance(module, Beit3ForImageTextRetrieval):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.embeddings.text_embedding

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.base_model.embeddings.text_embedding = value


class Beit3Model(Beit3PreTrainedModel):
    """The BEiT-3 backbone (torchscale `BEiT3`): image-only, text-only or joint [image ; text] passes.

    Vision tokens (class token + patches) come first and use the `vision` experts, text tokens the `language`
    experts; attention is one softmax over the whole sequence. `last_hidden_state` is after the final multiway
    LayerNorm when the config has one; `hidden_states[-1]` is the last layer's output before it. `pooler_output` is
    the first token (the image class token, or `<s>` for text-only input), unprojected.

    Example:
    ```python
    >>> import torch
    >>> from vlzoo import Beit3Config, Beit3Model
    >>> config = Beit3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...     vocab_size=99, image_size=32, patch_size=16, mask_token_id=98)
    >>> model = Beit3Model(config).eval()
    >>> out = model(input_ids=torch.tensor([[0, 5, 2]]), pixel_values=torch.randn(1, 3, 32, 32))
    >>> out.last_hidden_state.shape  # 1 class token + 4 patches + 3 text tokens
    torch.Size([1, 8, 32])
    ```
    """

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.embeddings = Beit3Embeddings(config)
        self.encoder = Beit3Encoder(config)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        causal_text: bool = False,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """Encode an image, a text, or both jointly.

        Args:
            input_ids (`[batch, text_len]`): XLM-R sentencepiece ids from [`Beit3Processor`] (`<s> ... </s>`).
            pixel_values (`[batch, 3, size, size]`): images from [`Beit3ImageProcessor`].
            attention_mask (`[batch, text_len]`): 1 = token, 0 = padding (padded keys are masked and padded
                embeddings zeroed; padded positions still get outputs, as in the original).
            bool_masked_pos (`[batch, num_patches]`): patches replaced by the mask token (masked image modeling).
            causal_text (`bool`): the captioning mask: image tokens attend to the image only, text token t to the
                image and the text tokens up to t.
            interpolate_pos_encoding (`bool`): accept another image size (a multiple of the patch size), resizing the
                vision position table bicubically.
        """
        if input_ids is None and pixel_values is None:
            raise ValueError("Beit3Model needs input_ids, pixel_values or both; got neither")
        if pixel_values is not None:
            _check_pixel_values(pixel_values, self.config, interpolate_pos_encoding)
        elif bool_masked_pos is not None:
            raise ValueError("bool_masked_pos masks image patches: pass pixel_values with it")
        if input_ids is not None:
            _check_text(input_ids, attention_mask, self.config)
            if pixel_values is not None and input_ids.shape[0] != pixel_values.shape[0]:
                raise ValueError(
                    f"a joint pass pairs image i with text i: got {pixel_values.shape[0]} images and "
                    f"{input_ids.shape[0]} texts"
                )
        elif attention_mask is not None:
            raise ValueError("attention_mask is the text padding mask: pass input_ids with it")
        hidden_states, num_vision = self.embeddings(
            input_ids, pixel_values, attention_mask, bool_masked_pos, interpolate_pos_encoding
        )
        # a vision-only sequence is all `vision` experts (split = length), a text-only one all `language` (0)
        split_position = num_vision
        if causal_text:
            if input_ids is None:
                raise ValueError("causal_text (the captioning mask) needs input_ids")
            mask = _captioning_mask(
                num_vision, attention_mask, input_ids.shape[1], hidden_states.dtype, hidden_states.device
            )
        elif attention_mask is not None:
            keep = attention_mask
            if num_vision:
                keep = torch.cat([attention_mask.new_ones(attention_mask.shape[0], num_vision), attention_mask], 1)
            mask = key_padding_attention_mask(keep, dtype=hidden_states.dtype)
        else:
            mask = None
        hidden_states = self.encoder(hidden_states, mask, split_position)
        hidden_states = self.encoder.finish(hidden_states, split_position)
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=hidden_states[:, 0])


def _backbone_flags(output_hidden_states: bool | None, output_attentions: bool | None) -> dict:
    return {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}


class Beit3ForImageTextRetrieval(Beit3PreTrainedModel):
    """BEiT-3 as a dual encoder (`BEiT3ForRetrieval`), with CLIP's conventions.

    The image and the text are encoded in two SEPARATE passes of the same backbone (image through the vision
    experts, text through the language experts); the first token of each, projected without bias and
    L2-normalised, gives `image_embeds` / `text_embeds`. `logits_per_image = exp(logit_scale) * image_embeds @
    text_embeds.T` (the original ranks by the unscaled product, which orders alike). Called with `pixel_values`
    only, it returns `get_image_features`.
    """

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.beit3 = Beit3Model(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.text_projection = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """Image-only pass; `pooler_output` is the projected (unnormalised) class token."""
        outputs = self.beit3(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        outputs.pooler_output = self.visual_projection(outputs.last_hidden_state[:, 0])
        return outputs

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling:
        """Text-only pass; `pooler_output` is the projected (unnormalised) `<s>` token."""
        outputs = self.beit3(
            input_ids=input_ids,
            attention_mask=attention_mask,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        outputs.pooler_output = self.text_projection(outputs.last_hidden_state[:, 0])
        return outputs

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> Beit3ImageTextRetrievalOutput | BaseModelOutputWithPooling:
        """Score every image against every text; `return_loss=True` adds the symmetric contrastive loss (ClipLoss,
        negatives gathered from every process)."""
        flags = _backbone_flags(output_hidden_states, output_attentions)
        if pixel_values is None and input_ids is None:
            raise ValueError("Beit3ForImageTextRetrieval needs input_ids, pixel_values or both; got neither")
        if input_ids is None:
            if return_loss:
                raise ValueError("return_loss=True needs both input_ids and pixel_values")
            if attention_mask is not None:
                raise ValueError("attention_mask given without input_ids")
            return self.get_image_features(pixel_values, interpolate_pos_encoding, **flags)
        if pixel_values is None:
            raise ValueError("pixel_values is missing: for text features alone use get_text_features(input_ids, ...)")
        if return_loss and input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"return_loss=True pairs image i with text i, but got {pixel_values.shape[0]} images and "
                f"{input_ids.shape[0]} texts"
            )
        vision_outputs = self.get_image_features(pixel_values, interpolate_pos_encoding, **flags)
        text_outputs = self.get_text_features(input_ids, attention_mask, **flags)
        image_embeds = F.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        scale = self.logit_scale.exp()
        logits_per_image = scale * image_embeds @ text_embeds.t()
        loss = contrastive_loss(image_embeds, text_embeds, scale) if return_loss else None
        return Beit3ImageTextRetrievalOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


class Beit3ForQuestionAnswering(Beit3PreTrainedModel):
    """VQA as classification over `config.id2label` (`BEiT3ForVisualQuestionAnswering`, 3129 answers for VQAv2).

    Joint pass, then `pooler` (LayerNorm, dense, tanh) on the VISION class token (index 0) and `classifier`
    (Linear(D, 2D), LayerNorm, GELU, Linear(2D, answers)). `labels` are soft scores `[batch, answers]` in [0, 1]
    (soft-target BCE, summed over answers).
    """

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.beit3 = Beit3Model(config)
        self.pooler = Beit3Pooler(config)
        self.classifier = MlpClassifierHead(
            config.hidden_size, config.classifier_hidden_size, config.num_labels, layer_norm_eps=config.layer_norm_eps
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> SequenceClassifierOutput:
        if input_ids is None or pixel_values is None:
            raise ValueError("Beit3ForQuestionAnswering needs both input_ids (the question) and pixel_values")
        outputs = self.beit3(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        logits = self.classifier(self.pooler(outputs.last_hidden_state))
        loss = vqa_soft_target_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Beit3ForVisualReasoning(Beit3PreTrainedModel):
    """NLVR2 (`BEiT3ForVisualReasoning`): does the statement hold for the pair of images?

    `pixel_values` is `[batch, 2, 3, size, size]`. Both images are paired with the same text in one joint pass of
    the doubled batch; per image the vision class token (index 0) and the text's first token (index
    `num_vision_tokens`) are taken, giving `[vis_a, txt_a, vis_b, txt_b]` (4D) for `classifier`. `labels` are class
    ids `[batch]` (cross-entropy); class 1 = the statement is true (the original NLVR2 index maps "True" to 1).

    NLVR2 has no pipeline: call the model. The processor encodes the two images of a pair as a batch of two, which
    becomes one pair with `view(1, 2, ...)` (with a converted model, `processor(images=[left, right], text=statement)`).

    Example:
    ```python
    >>> import torch
    >>> from vlzoo import Beit3Config, Beit3ForVisualReasoning
    >>> config = Beit3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ...     vocab_size=99, image_size=32, patch_size=16, mask_token_id=98)
    >>> model = Beit3ForVisualReasoning(config).eval()
    >>> inputs = {"input_ids": torch.tensor([[0, 5, 7, 2]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
    ...     "pixel_values": torch.randn(2, 3, 32, 32)}  # as processor(images=[left, right], text=statement) returns
    >>> pixel_values = inputs["pixel_values"].view(1, 2, *inputs["pixel_values"].shape[1:])  # [pairs, 2, 3, H, W]
    >>> with torch.no_grad():
    ...     logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
    ...         pixel_values=pixel_values).logits
    >>> logits.shape, logits.softmax(-1)[0, 1].item() <= 1.0  # probability that the statement holds
    (torch.Size([1, 2]), True)
    ```
    """

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.beit3 = Beit3Model(config)
        self.classifier = Beit3VisualReasoningHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> SequenceClassifierOutput:
        if input_ids is None or pixel_values is None:
            raise ValueError("Beit3ForVisualReasoning needs input_ids (the statement) and pixel_values (2 images)")
        _check_pixel_values(pixel_values, self.config, interpolate_pos_encoding, ndim=5)
        batch = pixel_values.shape[0]
        if input_ids.shape[0] != batch:
            raise ValueError(f"got {batch} image pairs but {input_ids.shape[0]} texts; pass one text per pair")
        images = torch.cat([pixel_values[:, 0], pixel_values[:, 1]], dim=0)
        texts = torch.cat([input_ids, input_ids], dim=0)
        masks = None if attention_mask is None else torch.cat([attention_mask, attention_mask], dim=0)
        outputs = self.beit3(
            input_ids=texts,
            pixel_values=images,
            attention_mask=masks,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        hidden = outputs.last_hidden_state
        num_vision = hidden.shape[1] - input_ids.shape[1]
        pooled = torch.cat([hidden[:, 0], hidden[:, num_vision]], dim=-1)
        logits = self.classifier(torch.cat([pooled[:batch], pooled[batch:]], dim=-1))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Beit3ForImageClassification(Beit3PreTrainedModel):
    """ImageNet classification (`BEiT3ForImageClassification`): image-only pass, `fc_norm` of the mean of the patch
    tokens (class token excluded), then `classifier`. `labels` are class ids (cross-entropy)."""

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.beit3 = Beit3Model(config)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> ImageClassifierOutput:
        if pixel_values is None:
            raise ValueError("Beit3ForImageClassification needs pixel_values")
        outputs = self.beit3(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        logits = self.classifier(self.fc_norm(outputs.last_hidden_state[:, 1:].mean(dim=1)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def captioning_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """The original `BertCaptioningLoss` (without drop-worst): KL divergence to a smoothed one-hot target
    (`1 - eps` on the label, `eps / (V - 1)` elsewhere), summed over the vocabulary, averaged over the positions
    whose label is not -100."""
    chosen = labels != -100
    logits, targets = logits[chosen].float(), labels[chosen]
    if targets.numel() == 0:
        return logits.sum() * 0.0
    num_classes = logits.shape[-1]
    smooth = torch.full_like(logits, label_smoothing / (num_classes - 1))
    smooth.scatter_(1, targets[:, None], 1.0 - label_smoothing)
    log_probs = F.log_softmax(logits, dim=-1)
    return F.kl_div(log_probs, smooth, reduction="none").sum(dim=-1).mean()


class Beit3ForCaptioning(Beit3PreTrainedModel):
    """Image captioning (`BEiT3ForCaptioning`, COCO captioning and NoCaps).

    Training is masked-token prediction under the captioning mask (image tokens see the image, text token t sees
    the image and text up to t): `logits` `[batch, text_len, vocab_size]` score every text position; `labels`
    (`[batch, text_len]`, -100 = not scored) give the label-smoothed loss. `generate()` decodes as the original
    `CaptioningHandler` does: the text is `<s> w1 .. wk <mask>` and the logits at `<mask>` choose the next word, with
    cached keys and values (`use_cache`) or full recomputation, greedy or beam search.
    """

    def __init__(self, config: Beit3Config):
        super().__init__(config)
        self.beit3 = Beit3Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_smoothing: float = 0.1,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> Beit3CaptioningOutput:
        if input_ids is None or pixel_values is None:
            raise ValueError("Beit3ForCaptioning needs input_ids (the caption) and pixel_values")
        outputs = self.beit3(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            causal_text=True,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **_backbone_flags(output_hidden_states, output_attentions),
        )
        logits = self.lm_head(outputs.last_hidden_state[:, -input_ids.shape[1] :])
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}")
            loss = captioning_loss(logits, labels, label_smoothing)
        return Beit3CaptioningOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    # -- incremental decoding -------------------------------------------------------------------------------------

    def _step(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        position_start: int,
        caches: list[LayerCache] | None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, list[LayerCache]]:
        """Run new text tokens (with the image on the first step) against the cache; returns the logits of the new
        text tokens and the extended caches. The captioning mask restricted to the new queries is applied."""
        backbone = self.beit3
        positions = torch.arange(position_start, position_start + input_ids.shape[1], device=input_ids.device)
        hidden, num_vision = backbone.embeddings(
            input_ids,
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            text_position_ids=positions[None],
        )
        cached = 0 if caches is None else caches[0].length
        new_text = input_ids.shape[1]
        if pixel_values is not None:
            mask = _captioning_mask(num_vision, None, new_text, hidden.dtype, hidden.device)
        else:
            # the cache holds the image and earlier text: all visible; the new text tokens are causal among themselves
            allowed = torch.ones(new_text, cached + new_text, dtype=torch.bool, device=hidden.device)
            allowed[:, cached:] = torch.ones(new_text, new_text, dtype=torch.bool, device=hidden.device).tril()
            mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
            mask = mask.masked_fill(~allowed, torch.finfo(hidden.dtype).min)[None, None]
        new_caches = []
        for index, layer in enumerate(backbone.encoder.layers):
            hidden, cache = transformer_layer_step(
                layer, hidden, None if caches is None else caches[index], mask, split_position=num_vision
            )
            new_caches.append(cache)
        hidden = backbone.encoder.finish(hidden, num_vision)
        return self.lm_head(hidden[:, num_vision:]), new_caches

    def _next_token_logits(
        self,
        pixel_values: torch.Tensor,
        sequences: torch.Tensor,
        caches: list[LayerCache] | None,
        use_cache: bool,
        interpolate_pos_encoding: bool,
    ) -> tuple[torch.Tensor, list[LayerCache] | None]:
        """Logits `[rows, vocab]` at the `<mask>` slot after `sequences` (`<s> w1 .. wk`), and the cache of
        `<s> w1 .. wk` (the `<mask>` slot's keys are dropped, as the original does)."""
        mask_column = sequences.new_full((sequences.shape[0], 1), self.config.mask_token_id)
        if not use_cache:
            text = torch.cat([sequences, mask_column], dim=1)
            logits = self(input_ids=text, pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
            return logits.logits[:, -1], None
        if caches is None:  # first step: the image, `<s>` and the `<mask>` slot
            text = torch.cat([sequences, mask_column], dim=1)
            logits, caches = self._step(pixel_values, text, 0, None, interpolate_pos_encoding)
        else:  # the last chosen word and a new `<mask>` slot, at text positions k and k + 1
            text = torch.cat([sequences[:, -1:], mask_column], dim=1)
            logits, caches = self._step(None, text, sequences.shape[1] - 1, caches)
        return logits[:, -1], [cache.truncate(cache.length - 1) for cache in caches]

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_length: int | None = None,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        length_penalty: float = 0.6,
        do_sample: bool = False,
        use_cache: bool = True,
        interpolate_pos_encoding: bool = False,
    ) -> torch.LongTensor:
        """Caption images as the original `CaptioningHandler.eval_batch` (beit3.md §2.6).

        Beam search keeps `num_beams` beams (1 = greedy) and the top `3 * num_beams` candidates per step; a
        candidate `</s>` (or any candidate when the next step would reach `max_length`) closes a hypothesis scored
        `sum_logprob / len**length_penalty`, where the hypothesis is `<s>`, the chosen words and the still unfilled
        `<mask>` slot. Returns `[batch, max_length]` ids laid out as the original: `<s> w1 .. wk <mask> </s>` then
        `<pad>`; decode with `skip_special_tokens=True`. At most `max_length - 3` words are produced.

        Args:
            pixel_values: `[batch, 3, size, size]`.
            input_ids: optional caption prefixes `<s> w1 .. wk` (a trailing `</s>` and padding, per
                `attention_mask`, are removed); decoding continues them. Default: `<s>` alone, as the original.
            attention_mask: 1 = token of `input_ids`, 0 = padding.
            max_length: length of the returned rows (the original's `num_max_bpe_tokens`, 32 in its docs); default
                32, or `max_new_tokens + 3`.
            max_new_tokens: the most words to produce (sets `max_length = max_new_tokens + 3`).
            num_beams: beam width (the released evaluation uses 3).
            length_penalty: exponent of the hypothesis length in its score (0.6 in the original).
            do_sample: only greedy / beam search exist (False).
            use_cache: cached keys and values (True) or full recomputation at every step (same result).
        """
        if do_sample:
            raise ValueError("Beit3ForCaptioning.generate decodes by greedy or beam search only: pass do_sample=False")
        if max_new_tokens is not None and max_length is not None:
            raise ValueError("pass max_length or max_new_tokens, not both")
        options = {"num_beams": num_beams, "length_penalty": length_penalty, "use_cache": use_cache}
        options["interpolate_pos_encoding"] = interpolate_pos_encoding
        prefixes = self._prompt_prefixes(pixel_values, input_ids, attention_mask)
        if len({prefix.numel() for prefix in prefixes}) > 1:  # prompts of different lengths: one example at a time
            if max_length is None:
                max_length = max(prefix.numel() for prefix in prefixes) + (max_new_tokens or 29) + 2
            rows = [
                self.generate(pixel_values[i : i + 1], prefix[None], max_length=max_length, **options)
                for i, prefix in enumerate(prefixes)
            ]
            return torch.cat(rows, dim=0)
        prefix = torch.stack(prefixes)
        if max_new_tokens is not None:
            max_length = prefix.shape[1] + max_new_tokens + 2
        max_length = 32 if max_length is None else max_length
        if max_length < prefix.shape[1] + 2:
            raise ValueError(
                f"max_length must be at least {prefix.shape[1] + 2} (the prefix, one word slot and </s>); got {max_length}"
            )
        if max_length - 1 > self.config.max_text_length:
            raise ValueError(
                f"max_length {max_length} exceeds the text position table ({self.config.max_text_length})"
            )
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1; got {num_beams}")
        _check_pixel_values(pixel_values, self.config, interpolate_pos_encoding)
        config = self.config
        batch, device = pixel_values.shape[0], pixel_values.device
        vocab = config.vocab_size
        rows = batch * num_beams
        images = pixel_values.repeat_interleave(num_beams, dim=0)
        sequences = prefix.to(device).repeat_interleave(num_beams, dim=0)
        beam_scores = torch.zeros(batch, num_beams, device=device)
        beam_scores[:, 1:] = -1e9
        beam_scores = beam_scores.view(-1)
        hypotheses: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(batch)]
        worst = [1e9] * batch
        done = [False] * batch
        caches = None
        length = sequences.shape[1] + 1  # the prefix and the `<mask>` slot
        while length < max_length:
            logits, caches = self._next_token_logits(images, sequences, caches, use_cache, interpolate_pos_encoding)
            scores = F.log_softmax(logits.float(), dim=-1) + beam_scores[:, None]
            top_scores, top_ids = scores.view(batch, num_beams * vocab).topk(3 * num_beams, dim=1)
            last_step = length + 1 == max_length
            chosen: list[tuple[float, int, int]] = []
            for example in range(batch):
                if not done[example] and len(hypotheses[example]) >= 1:
                    bound = top_scores[example].max().item() / (max_length - 1) ** length_penalty
                    done[example] = worst[example] >= bound
                if done[example]:
                    chosen += [(0.0, config.pad_token_id, example * num_beams)] * num_beams
                    continue
                beams: list[tuple[float, int, int]] = []
                for score, index in zip(top_scores[example].tolist(), top_ids[example].tolist(), strict=True):
                    row = example * num_beams + index // vocab
                    word = index % vocab
                    if word == config.eos_token_id or last_step:
                        hypothesis = torch.cat([sequences[row], sequences.new_tensor([config.mask_token_id])])
                        self._add_hypothesis(hypotheses, worst, example, hypothesis, score, length_penalty)
                    else:
                        beams.append((score, word, row))
                    if len(beams) == num_beams:
                        break
                if not beams:
                    beams = [(0.0, config.pad_token_id, example * num_beams)] * num_beams
                chosen += beams
            if last_step or all(done):
                break
            order = torch.tensor([row for _, _, row in chosen], device=device)
            words = torch.tensor([word for _, word, _ in chosen], device=device)
            beam_scores = torch.tensor([score for score, _, _ in chosen], device=device)
            sequences = torch.cat([sequences[order], words[:, None]], dim=1)
            if caches is not None:
                caches = [cache.select(order) for cache in caches]
            length += 1
        output = torch.full((batch, max_length), config.pad_token_id, dtype=torch.long, device=device)
        for example, found in enumerate(hypotheses):
            best = max(found, key=lambda item: item[0])[1]
            output[example, : best.numel()] = best
            output[example, best.numel()] = config.eos_token_id
        return output

    def _prompt_prefixes(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """One prefix per image: `<s>` alone, or the rows of `input_ids` without padding and a trailing `</s>`."""
        config = self.config
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise ValueError("pixel_values must have shape [batch, 3, size, size]")
        batch = pixel_values.shape[0]
        if input_ids is None:
            if attention_mask is not None:
                raise ValueError("attention_mask given without input_ids")
            return [torch.tensor([config.bos_token_id], device=pixel_values.device)] * batch
        _check_text(input_ids, attention_mask, config)
        if input_ids.shape[0] != batch:
            raise ValueError(f"got {batch} images but {input_ids.shape[0]} prompts in input_ids")
        prefixes = []
        for row in range(batch):
            ids = input_ids[row] if attention_mask is None else input_ids[row][attention_mask[row].bool()]
            if ids.numel() > 1 and int(ids[-1]) == config.eos_token_id:
                ids = ids[:-1]
            if ids.numel() == 0 or int(ids[0]) != config.bos_token_id:
                raise ValueError(f"each prompt in input_ids must start with <s> (id {config.bos_token_id})")
            prefixes.append(ids)
        return prefixes

    @staticmethod
    def _add_hypothesis(
        hypotheses: list[list[tuple[float, torch.Tensor]]],
        worst: list[float],
        example: int,
        hypothesis: torch.Tensor,
        sum_logprobs: float,
        length_penalty: float,
    ) -> None:
        """Keep the best hypothesis of `example` (the original keeps one: `num_keep_best = 1`)."""
        score = sum_logprobs / hypothesis.numel() ** length_penalty
        kept = hypotheses[example]
        if not kept or score > worst[example]:
            kept.append((score, hypothesis))
            if len(kept) > 1:
                ranked = sorted(range(len(kept)), key=lambda i: kept[i][0])
                del kept[ranked[0]]
                worst[example] = kept[0][0]
            else:
                worst[example] = min(score, worst[example])


__all__ = [
    "Beit3CaptioningOutput",
    "Beit3ForCaptioning",
    "Beit3ForImageClassification",
    "Beit3ForImageTextRetrieval",
    "Beit3ForQuestionAnswering",
    "Beit3ForVisualReasoning",
    "Beit3ImageTextRetrievalOutput",
    "Beit3Model",
    "Beit3PreTrainedModel",
    "captioning_loss",
]
