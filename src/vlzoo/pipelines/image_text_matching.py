"""Image-text matching: how well each text describes its image, from a cross-encoder's matching head."""

from typing import Any

import torch

from vlzoo.pipelines.pairs import ImageTextPairPipeline
from vlzoo.pipelines.task_heads import match_scores

__all__ = ["IMAGE_TEXT_MATCHING_TASK", "ImageTextMatchingPipeline"]

IMAGE_TEXT_MATCHING_TASK = "image-text-matching"


class ImageTextMatchingPipeline(ImageTextPairPipeline):
    """Score image-text pairs with an image-text matching (ITM) head: `{"score": p_match}` per pair.

    Task name `"image-text-matching"`, registered by `vlzoo.pipelines.register_pipelines()`. Works for any model whose
    class is registered with `vlzoo.pipelines.AutoModelForImageTextMatching` for its config. The score is
    `softmax(itm_logits)[:, 1]`, the probability that the text matches the image; a model whose class sets
    `itm_score_output = "logits"` is scored by its rank score instead (not a probability; see
    `vlzoo.pipelines.task_heads.ITM_SCORE_OUTPUTS`).

    Call as `pipe(image, text)`, `pipe(image, [text, ...])` (one image, several texts), `pipe([image, ...], text)`,
    `pipe([image, ...], [text, ...])` (paired item by item) or with dicts `{"image": ..., "text": ...}`; one pair
    returns `{"score": float}`, a list returns one per pair, in order, computed in batches (`batch_size`, default 8).
    Other options: `timeout` for image URLs, `tokenizer_kwargs` (over `padding=True, truncation=True`).
    """

    task_name = IMAGE_TEXT_MATCHING_TASK
    head = "itm"
    text_key = "text"

    def _sanitize_parameters(
        self,
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        self._unexpected(unexpected, "image, text, batch_size, timeout and tokenizer_kwargs")
        return self._sanitize_common(timeout, tokenizer_kwargs), {}, {}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"scores": match_scores(self._run_model(model_inputs), self.model, IMAGE_TEXT_MATCHING_TASK)}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"score": float(model_outputs["scores"][0])}
