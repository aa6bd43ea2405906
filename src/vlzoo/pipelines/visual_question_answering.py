"""Visual question answering as answer classification: the top-k answers of a VQA head with their scores."""

from typing import Any

import torch

from vlzoo.pipelines.pairs import ImageTextPairPipeline, check_positive_int
from vlzoo.pipelines.task_heads import model_output

__all__ = ["SCORE_FUNCTIONS", "VQA_TASK", "VisualQuestionAnsweringPipeline"]

# transformers 5 refuses the names "visual-question-answering" and "vqa" for custom pipelines (hf_conventions.md §4).
VQA_TASK = "vlzoo-visual-question-answering"
DEFAULT_TOP_K = 5
SCORE_FUNCTIONS = ("sigmoid", "softmax", "none")


class VisualQuestionAnsweringPipeline(ImageTextPairPipeline):
    """Answer a question about an image with a VQA classification head: the `top_k` best answers and their scores.

    Task name `"vlzoo-visual-question-answering"`, registered by `vlzoo.pipelines.register_pipelines()`. Works for any
    model whose class is registered with `AutoModelForVisualQuestionAnswering` for its config (vlzoo families register
    their VQA heads there) and returns `logits` `[batch, num_labels]` over `model.config.id2label`.

    Call as `pipe(image, question)` (or `image=..., question=...`), with a list of images or questions, two lists
    paired item by item, or dicts `{"image": ..., "question": ...}`. One pair returns
    `[{"answer": str, "score": float}, ...]` (best first, as transformers' former VQA pipeline); a list returns one
    such list per pair. Images follow the image processor's rule (`vlzoo.pipelines.load_pipeline_image`).

    Options (at construction or per call):
    - `top_k` (default 5; more than the number of answers gives all of them);
    - `function_to_apply`: "sigmoid" (default: VQA heads of METER, BEiT-3 and FLAVA are trained with soft-target
      binary cross-entropy, so each answer's score is its own probability), "softmax" (scores over all answers sum
      to 1) or "none" (raw logits);
    - `batch_size` for lists, `timeout` for image URLs, `tokenizer_kwargs` (over `padding=True, truncation=True`).
    """

    task_name = VQA_TASK
    head = "vqa"
    text_key = "question"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not self.model.config.id2label:
            raise ValueError(f"{VQA_TASK} needs model.config.id2label to name the answers; it is empty.")

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        function_to_apply: str | None = None,
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        self._unexpected(
            unexpected, "image, question, top_k, function_to_apply, batch_size, timeout and tokenizer_kwargs"
        )
        postprocess_params: dict[str, Any] = {}
        if top_k is not None:
            postprocess_params["top_k"] = check_positive_int(top_k, "top_k")
        if function_to_apply is not None:
            if function_to_apply not in SCORE_FUNCTIONS:
                raise ValueError(
                    f"`function_to_apply` must be one of {list(SCORE_FUNCTIONS)}; got {function_to_apply!r}."
                )
            postprocess_params["function_to_apply"] = function_to_apply
        return self._sanitize_common(timeout, tokenizer_kwargs), {}, postprocess_params

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = model_output(self._run_model(model_inputs), "logits", VQA_TASK, self.model)
        num_labels = len(self.model.config.id2label)
        if logits.dim() != 2 or logits.shape[-1] != num_labels:
            raise ValueError(
                f"{VQA_TASK}: the model's logits have shape {tuple(logits.shape)}; expected [batch, {num_labels}] "
                "(one per answer in config.id2label)."
            )
        return {"logits": logits}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], top_k: int = DEFAULT_TOP_K, function_to_apply: str = "sigmoid"
    ) -> list[dict[str, Any]]:
        logits = model_outputs["logits"][0].float()
        if function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        elif function_to_apply == "softmax":
            scores = logits.softmax(dim=-1)
        else:
            scores = logits
        keep = min(top_k, scores.numel())
        values, indices = torch.sort(scores, descending=True, stable=True)
        id2label = self.model.config.id2label
        return [
            {"answer": id2label[int(index)], "score": float(value)}
            for value, index in zip(values[:keep], indices[:keep], strict=True)
        ]
