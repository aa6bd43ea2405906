"""Image captioning with a captioning head's own `generate()`: one caption per image, greedy or beam search."""

from numbers import Real
from typing import Any

import torch
from transformers import Pipeline

from vlzoo.pipelines.image_inputs import load_pipeline_image
from vlzoo.pipelines.pairs import DEFAULT_PAIR_BATCH_SIZE, check_positive_int, check_preprocessing, encode_images
from vlzoo.pipelines.task_heads import check_head

__all__ = ["IMAGE_CAPTIONING_TASK", "ImageCaptioningPipeline"]

# transformers 5 removed "image-to-text"; its "image-text-to-text" pipeline needs chat-style GenerationMixin models
# and a text prompt, which a captioning head (BEiT-3's decodes from `<s>` alone, with its own beam search) is not.
IMAGE_CAPTIONING_TASK = "vlzoo-image-captioning"


class ImageCaptioningPipeline(Pipeline):
    """Caption images with a captioning head: `[{"generated_text": caption}]` per image.

    Task name `"vlzoo-image-captioning"`, registered by `vlzoo.pipelines.register_pipelines()`. Works for any model
    whose class is registered with `vlzoo.pipelines.AutoModelForImageCaptioning` for its config (families register
    their "captioning" heads there) and whose `generate(pixel_values, input_ids=None, attention_mask=None, **options)`
    returns token ids; the caption is the tokenizer's decoding with `skip_special_tokens=True`.

    Call as `pipe(image)` or `pipe([image, ...])` (a list gives one result list per image, in order); images follow
    the image processor's rule (`vlzoo.pipelines.load_pipeline_image`).

    Options (at construction or per call):
    - `num_beams` (default: the model's, 1 = greedy), `max_new_tokens` or `max_length`, `length_penalty`: passed to
      `generate`;
    - `prompt`: a caption prefix the model continues (the result includes it);
    - `batch_size` for lists (default 8), `timeout` for image URLs.

    Example:
        >>> from transformers import pipeline
        >>> captioner = pipeline("vlzoo-image-captioning", model="beit3-captioning")  # doctest: +SKIP
        >>> captioner("cat.png", num_beams=3, max_new_tokens=20)  # doctest: +SKIP
        [{'generated_text': 'a cat sitting on a couch'}]
    """

    _load_processor = None
    _load_image_processor = None
    _load_tokenizer = None
    _load_feature_extractor = False

    head = "captioning"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check_head(self.model, self.head, IMAGE_CAPTIONING_TASK)
        check_preprocessing(self, IMAGE_CAPTIONING_TASK)
        if self._batch_size is not None:
            check_positive_int(self._batch_size, "batch_size")

    def __call__(self, images: Any = None, *, batch_size: int | None = None, **kwargs: Any) -> Any:
        if images is None:
            raise ValueError(f"missing `images`; call {IMAGE_CAPTIONING_TASK} as pipe(image) or pipe([image, ...]).")
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("`images` is an empty list; give at least one image.")
            items = [{"image": image, "name": f"images[{n}]"} for n, image in enumerate(images)]
            if batch_size is None:
                batch_size = self._batch_size if self._batch_size is not None else DEFAULT_PAIR_BATCH_SIZE
            return super().__call__(items, batch_size=check_positive_int(batch_size, "batch_size"), **kwargs)
        return super().__call__({"image": images, "name": "images"}, **kwargs)

    def _sanitize_parameters(
        self,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        length_penalty: float | None = None,
        prompt: str | None = None,
        timeout: float | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        if unexpected:
            raise TypeError(
                f"{IMAGE_CAPTIONING_TASK} got unexpected arguments {sorted(unexpected)}; it accepts images, "
                "num_beams, max_new_tokens, max_length, length_penalty, prompt, batch_size and timeout."
            )
        preprocess_params: dict[str, Any] = {}
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if prompt is not None:
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"`prompt` must be a non-empty string; got {prompt!r}.")
            preprocess_params["prompt"] = prompt
        generate: dict[str, Any] = {}
        for name, value in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens), ("max_length", max_length)):
            if value is not None:
                generate[name] = check_positive_int(value, name)
        if "max_new_tokens" in generate and "max_length" in generate:
            raise ValueError("pass `max_new_tokens` or `max_length`, not both.")
        if length_penalty is not None:
            if isinstance(length_penalty, bool) or not isinstance(length_penalty, Real):
                raise ValueError(f"`length_penalty` must be a number; got {length_penalty!r}.")
            generate["length_penalty"] = float(length_penalty)
        return preprocess_params, {"generate_kwargs": generate}, {}

    def preprocess(self, item: dict[str, Any], timeout: float | None = None, prompt: str | None = None) -> dict:
        image = load_pipeline_image(item["image"], self.image_processor, argument_name=item["name"], timeout=timeout)
        inputs = encode_images(self, [image])
        if prompt is not None:
            # the prefix without `</s>`: generation continues it
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
            if ids.shape[1] > 1 and int(ids[0, -1]) == self.tokenizer.eos_token_id:
                ids = ids[:, :-1]
            inputs["input_ids"] = ids
            inputs["attention_mask"] = torch.ones_like(ids)
        return inputs

    def _forward(self, model_inputs: dict[str, Any], generate_kwargs: dict[str, Any] | None = None) -> dict:
        inputs = {
            key: model_inputs[key] for key in ("pixel_values", "input_ids", "attention_mask") if key in model_inputs
        }
        sequences = self.model.generate(**inputs, **(generate_kwargs or {}))
        if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
            raise TypeError(
                f"{IMAGE_CAPTIONING_TASK}: {type(self.model).__name__}.generate must return token ids [batch, length]."
            )
        return {"sequences": sequences}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> list[dict[str, str]]:
        text = self.tokenizer.decode(model_outputs["sequences"][0].tolist(), skip_special_tokens=True)
        return [{"generated_text": text}]
