"""Tiny fusion models with vlzoo's task heads, registered with the Auto classes the pipelines load, and the
preprocessing they use: the MS-CLIP processor (CLIP BPE tokenizer of 614 tokens) at 32 px, or a letterbox image
processor for grounding.

`ToyFusionModel` embeds the tokens and the 8 px patches, pools each modality over its real positions (`attention_mask`,
`pixel_mask`) and fuses the two; the head models put `vlzoo.layers` heads on the fused features: `MlpClassifierHead`
(VQA), `ItmHead` (matching; this model is also a dual encoder), `BoxHead` (grounding). `ToyRankModel` is a matching
model scored by a one-logit rank score (`itm_score_output = "logits"`), as METER's retrieval model.
"""

from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import ModelOutput

from vlzoo.layers.heads import BoxHead, ItmHead, MlpClassifierHead
from vlzoo.layers.outputs import GroundingOutput, ImageTextMatchingOutput
from vlzoo.models.ms_clip.image_processing_ms_clip import MsClipImageProcessor
from vlzoo.models.ms_clip.processing_ms_clip import MsClipProcessor
from vlzoo.models.ms_clip.tokenization_ms_clip import MsClipTokenizer
from vlzoo.pipelines import register_head_model, register_pipelines
from vlzoo.processing import LetterboxImageProcessor, clip_bpe_vocab_and_merges

IMAGE_SIZE = 32
NUM_MERGES = 100
ANSWERS = ["yes", "no", "red", "green", "blue", "two", "circle"]


@strict
class ToyFusionConfig(PreTrainedConfig):
    """Sizes of the toy fusion model; `num_labels` answers for its VQA head."""

    model_type = "vlzoo_toy_fusion"

    vocab_size: int = 514 + NUM_MERGES
    hidden_size: int = 16
    patch_size: int = 8
    # Wide enough that the random heads' outputs differ visibly between inputs (0.02 leaves boxes at 0.5).
    initializer_range: float = 0.5


@strict
class ToyRankConfig(ToyFusionConfig):
    """The same model with a rank-score matching head."""

    model_type = "vlzoo_toy_rank"


class ToyFusionPreTrainedModel(PreTrainedModel):
    config: ToyFusionConfig
    base_model_prefix = "fusion"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")


class ToyFusionModel(ToyFusionPreTrainedModel):
    """Masked mean of token embeddings and of patch embeddings, fused by `tanh(Linear([text, image, text * image]))`."""

    def __init__(self, config: ToyFusionConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.patches = nn.Conv2d(3, config.hidden_size, config.patch_size, stride=config.patch_size)
        self.fuse = nn.Linear(3 * config.hidden_size, config.hidden_size)
        self.post_init()

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keep = keep[..., None].to(self.embeddings.weight.dtype)
        return (self.embeddings(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1)

    def get_image_features(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        grid = self.patches(pixel_values)
        if pixel_mask is None:
            return grid.mean(dim=(2, 3))
        keep = nn.functional.interpolate(pixel_mask[:, None].float(), size=grid.shape[2:], mode="nearest")
        return (grid * keep).sum(dim=(2, 3)) / keep.sum(dim=(2, 3)).clamp(min=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        text = self.get_text_features(input_ids, attention_mask)
        image = self.get_image_features(pixel_values, pixel_mask)
        fused = torch.tanh(self.fuse(torch.cat([text, image, text * image], dim=-1)))
        return BaseModelOutputWithPooling(pooler_output=fused)


class ToyFusionForVqa(ToyFusionPreTrainedModel):
    def __init__(self, config: ToyFusionConfig):
        super().__init__(config)
        self.fusion = ToyFusionModel(config)
        self.head = MlpClassifierHead(config.hidden_size, 2 * config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, pixel_values, attention_mask=None, pixel_mask=None) -> SequenceClassifierOutput:
        pooled = self.fusion(input_ids, pixel_values, attention_mask, pixel_mask).pooler_output
        return SequenceClassifierOutput(logits=self.head(pooled))


class ToyFusionForImageTextMatching(ToyFusionPreTrainedModel):
    """A matching head that is also a dual encoder (like FLAVA), so it can prefilter its own retrieval."""

    def __init__(self, config: ToyFusionConfig):
        super().__init__(config)
        self.fusion = ToyFusionModel(config)
        self.itm = ItmHead(config.hidden_size)
        self.post_init()

    def get_text_features(self, input_ids, attention_mask=None) -> torch.Tensor:
        return self.fusion.get_text_features(input_ids, attention_mask)

    def get_image_features(self, pixel_values, pixel_mask=None) -> torch.Tensor:
        return self.fusion.get_image_features(pixel_values, pixel_mask)

    def forward(self, input_ids, pixel_values, attention_mask=None, pixel_mask=None) -> ImageTextMatchingOutput:
        pooled = self.fusion(input_ids, pixel_values, attention_mask, pixel_mask).pooler_output
        return ImageTextMatchingOutput(itm_logits=self.itm(pooled), pooler_output=pooled)


@dataclass
class ToyRankOutput(ModelOutput):
    """`logits` `[batch, 1]`: the rank score; `itm_logits` `[batch, 2]`: a second head the score must not use."""

    logits: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None


class ToyRankPreTrainedModel(PreTrainedModel):
    config: ToyRankConfig
    base_model_prefix = "fusion"
    main_input_name = "input_ids"


class ToyRankModel(ToyRankPreTrainedModel):
    """A cross-encoder read by its rank score `logits` `[batch, 1]` (it also returns ITM logits, to be ignored)."""

    itm_score_output = "logits"

    def __init__(self, config: ToyRankConfig):
        super().__init__(config)
        self.fusion = ToyFusionModel(config)
        self.rank = nn.Linear(config.hidden_size, 1)
        self.itm = ItmHead(config.hidden_size)
        self.post_init()

    def forward(self, input_ids, pixel_values, attention_mask=None, pixel_mask=None) -> ToyRankOutput:
        pooled = self.fusion(input_ids, pixel_values, attention_mask, pixel_mask).pooler_output
        return ToyRankOutput(logits=self.rank(pooled), itm_logits=self.itm(pooled))


class ToyFusionForGrounding(ToyFusionPreTrainedModel):
    def __init__(self, config: ToyFusionConfig):
        super().__init__(config)
        self.fusion = ToyFusionModel(config)
        self.box = BoxHead(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids, pixel_values, attention_mask=None, pixel_mask=None) -> GroundingOutput:
        pooled = self.fusion(input_ids, pixel_values, attention_mask, pixel_mask).pooler_output
        return GroundingOutput(pred_boxes=self.box(pooled))


def register_toy_models() -> None:
    """Register the toy configs and models with transformers' and vlzoo's Auto classes (idempotent)."""
    register_pipelines()
    AutoConfig.register(ToyFusionConfig.model_type, ToyFusionConfig, exist_ok=True)
    AutoConfig.register(ToyRankConfig.model_type, ToyRankConfig, exist_ok=True)
    AutoModel.register(ToyFusionConfig, ToyFusionModel, exist_ok=True)
    register_head_model("vqa", ToyFusionConfig, ToyFusionForVqa)
    register_head_model("itm", ToyFusionConfig, ToyFusionForImageTextMatching)
    register_head_model("grounding", ToyFusionConfig, ToyFusionForGrounding)
    register_head_model("itm", ToyRankConfig, ToyRankModel)
    # The letterbox processor is found by name when a folder is loaded.
    AutoImageProcessor.register(
        ToyFusionConfig, image_processor_classes={"pil": LetterboxImageProcessor}, exist_ok=True
    )


def toy_config(answers: list[str] = ANSWERS, config_class: type[ToyFusionConfig] = ToyFusionConfig) -> ToyFusionConfig:
    """A toy config whose VQA head answers with `answers`."""
    return config_class(
        id2label=dict(enumerate(answers)), label2id={label: index for index, label in enumerate(answers)}
    )


def toy_tokenizer() -> MsClipTokenizer:
    """The CLIP BPE truncated to its first merges: 512 byte tokens, 100 merges and the 2 special tokens."""
    return MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=NUM_MERGES))


def toy_processor(tokenizer: MsClipTokenizer) -> MsClipProcessor:
    """The MS-CLIP processor at 32 px (bicubic short side, centre crop)."""
    return MsClipProcessor(
        image_processor=MsClipImageProcessor(size=IMAGE_SIZE, crop_size=IMAGE_SIZE), tokenizer=tokenizer
    )


def toy_letterbox() -> LetterboxImageProcessor:
    return LetterboxImageProcessor(size=IMAGE_SIZE)


def build(model_class: type[PreTrainedModel], config: PreTrainedConfig, seed: int = 0) -> PreTrainedModel:
    """A toy model with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return model_class(config).eval()


__all__ = [
    "ANSWERS",
    "IMAGE_SIZE",
    "ToyFusionConfig",
    "ToyFusionForGrounding",
    "ToyFusionForImageTextMatching",
    "ToyFusionForVqa",
    "ToyFusionModel",
    "ToyRankConfig",
    "ToyRankModel",
    "ToyRankOutput",
    "build",
    "register_toy_models",
    "toy_config",
    "toy_letterbox",
    "toy_processor",
    "toy_tokenizer",
]
