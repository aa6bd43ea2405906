"""Tiny stand-ins for the fusion families' task heads and processors, following their input and output contracts.

`ToyVisionLanguageModel` embeds the tokens, convolves the image and fuses the two; it returns every head's output at
once (`logits` for VQA, `itm_logits`, `mlm_logits`, `pred_boxes`) and, as a dual encoder, `logits_per_image` with
`get_image_features` / `get_text_features`. The processors build a word-level tokenizer with a mask token over the
words of the data and turn images into 32 px tensors; `LetterboxProcessor` pads to a square with a `pixel_mask` and
maps boxes onto its canvas, as a grounding family's processor does.
"""

import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import CLIPProcessor, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.utils import ModelOutput

from vlzoo.data import load_shapes

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[MASK]"]
CANVAS = 32
SHAPES_OPTIONS = {"num_train": 48, "num_validation": 12, "num_test": 4, "image_size": 32, "seed": 5}


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread: tiny models on shared, busy CPU cores run many times faster without thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shapes_data(cache_dir):
    """A small shapes DatasetDict at 32 px."""
    return load_shapes(**SHAPES_OPTIONS, cache_dir=cache_dir)


def words_of(dataset) -> list[str]:
    """Every word of the captions, expressions and questions of a scene-schema dataset."""
    texts = []
    for captions, objects, questions in zip(
        dataset["captions"], dataset["objects"], dataset["questions"], strict=True
    ):
        texts += captions + objects["expression"] + questions["question"]
    return sorted({word for text in texts for word in re.findall(r"\w+|[^\w\s]", text)})


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]"
    )


def tiny_processor(words: list[str]) -> CLIPProcessor:
    """Word-level tokenizer with a mask token and a 32 px CLIP image transform."""
    images = CLIPImageProcessorPil(size={"shortest_edge": CANVAS}, crop_size={"height": CANVAS, "width": CANVAS})
    return CLIPProcessor(image_processor=images, tokenizer=word_tokenizer(words))


class LetterboxProcessor:
    """Resizes the long side to 32 px, centres the image on a black 32 x 32 canvas, returns `pixel_mask`.

    `transform_boxes` applies the same scale and offset to pixel boxes and normalises them to the canvas, the
    contract of `GroundingObjective`.
    """

    def __init__(self, words: list[str]):
        self.tokenizer = word_tokenizer(words)

    def _geometry(self, height: int, width: int) -> tuple[float, int, int, int, int]:
        scale = CANVAS / max(height, width)
        new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
        return scale, new_height, new_width, (CANVAS - new_height) // 2, (CANVAS - new_width) // 2

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True, **kwargs) -> dict:
        pixel_values = torch.zeros(len(images), 3, CANVAS, CANVAS)
        pixel_mask = torch.zeros(len(images), CANVAS, CANVAS, dtype=torch.long)
        for index, image in enumerate(images):
            _, new_height, new_width, top, left = self._geometry(image.height, image.width)
            resized = np.array(image.convert("RGB").resize((new_width, new_height), Image.BILINEAR))
            region = (slice(top, top + new_height), slice(left, left + new_width))
            pixel_values[index, :, region[0], region[1]] = torch.from_numpy(resized).permute(2, 0, 1) / 255.0 - 0.5
            pixel_mask[index, region[0], region[1]] = 1
        inputs = dict(self.tokenizer(text, return_tensors="pt", padding=padding, **kwargs))
        inputs.pop("token_type_ids", None)
        return {**inputs, "pixel_values": pixel_values, "pixel_mask": pixel_mask}

    def transform_boxes(self, boxes: torch.Tensor, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        result = []
        for (x0, y0, x1, y1), (height, width) in zip(boxes.tolist(), image_sizes, strict=True):
            scale, _, _, top, left = self._geometry(height, width)
            x0, x1 = x0 * scale + left, x1 * scale + left
            y0, y1 = y0 * scale + top, y1 * scale + top
            result.append([(x0 + x1) / 2 / CANVAS, (y0 + y1) / 2 / CANVAS, (x1 - x0) / CANVAS, (y1 - y0) / CANVAS])
        return torch.tensor(result)


@dataclass
class ToyOutput(ModelOutput):
    """Every head's output; shapes as the fusion families return them."""

    logits: torch.Tensor | None = None
    itm_logits: torch.Tensor | None = None
    mlm_logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None


class ToyVisionLanguageModel(nn.Module):
    """Token embeddings and a conv grid joined by text-to-grid attention, an MLP fusion and one linear head per task.

    The attended grid feature is fused with the text and the box centre is the attention's expected position, so a
    few steps learn where a named colour is.
    """

    def __init__(self, vocab_size: int, num_labels: int = 3, hidden_size: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab_size, hidden_size)
        self.conv = nn.Sequential(
            nn.Conv2d(4, hidden_size, kernel_size=4, stride=4), nn.ReLU(), nn.Conv2d(hidden_size, hidden_size, 1)
        )
        self.image_proj = nn.Linear(hidden_size, hidden_size)
        self.fuse = nn.Sequential(
            nn.Linear(3 * hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.vqa_head = nn.Linear(hidden_size, num_labels)
        self.itm_head = nn.Linear(hidden_size, 2)
        self.mlm_head = nn.Linear(hidden_size, vocab_size)
        self.size_head = nn.Linear(hidden_size, 2)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def _grid(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor:
        mask = torch.ones_like(pixel_values[:, :1]) if pixel_mask is None else pixel_mask[:, None].to(pixel_values)
        return self.conv(torch.cat([pixel_values * mask, mask], dim=1))

    def get_image_features(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.image_proj(self._grid(pixel_values, pixel_mask).mean(dim=(2, 3)))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keep = keep[..., None].float()
        return (self.embed(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
    ) -> ToyOutput:
        grid = self._grid(pixel_values, pixel_mask)
        image = self.image_proj(grid.mean(dim=(2, 3)))
        text = self.get_text_features(input_ids, attention_mask)
        # The text attends to the grid cells; the attended feature is fused, the expected position is the box centre.
        height, width = grid.shape[2:]
        attention = torch.einsum("bchw,bc->bhw", grid, text).flatten(1).softmax(dim=-1).view(-1, height, width)
        attended = self.image_proj(torch.einsum("bchw,bhw->bc", grid, attention))
        fused = self.fuse(torch.cat([attended, text, attended * text], dim=-1))
        tokens = self.embed(input_ids) + fused[:, None, :]
        ys = (torch.arange(height, dtype=grid.dtype, device=grid.device) + 0.5) / height
        xs = (torch.arange(width, dtype=grid.dtype, device=grid.device) + 0.5) / width
        centre = torch.stack([(attention.sum(1) * xs).sum(-1), (attention.sum(2) * ys).sum(-1)], dim=-1)
        normalized_image = nn.functional.normalize(image, dim=-1)
        normalized_text = nn.functional.normalize(text, dim=-1)
        return ToyOutput(
            logits=self.vqa_head(fused),
            itm_logits=self.itm_head(fused),
            mlm_logits=self.mlm_head(tokens),
            pred_boxes=torch.cat([centre, self.size_head(fused).sigmoid()], dim=-1),
            logits_per_image=self.logit_scale.exp() * normalized_image @ normalized_text.T,
        )


__all__ = [
    "LetterboxProcessor",
    "ToyOutput",
    "ToyVisionLanguageModel",
    "shapes_data",
    "single_thread",
    "tiny_processor",
    "word_tokenizer",
    "words_of",
]
