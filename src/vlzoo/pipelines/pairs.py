"""What the image-text pipelines share: reading (image, text) pairs from the call, encoding them with the model's
processor (or its tokenizer and image processor), and calling the model with the inputs its forward takes.

Encoding follows the contract the training objectives use: `processor(images=..., text=..., return_tensors="pt",
padding=True)`, plus `truncation=True` so an over-long text is cut to the tokenizer's maximum instead of failing.
Without a processor the image processor and the tokenizer are called separately with the same options.
"""

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image
from transformers import Pipeline

from vlzoo.pipelines.image_inputs import load_pipeline_image
from vlzoo.pipelines.task_heads import check_head

__all__ = [
    "DEFAULT_PAIR_BATCH_SIZE",
    "ImageTextPairPipeline",
    "check_positive_int",
    "check_preprocessing",
    "encode_images",
    "encode_pairs",
    "encode_texts",
    "forward_inputs",
    "text_options",
]

DEFAULT_PAIR_BATCH_SIZE = 8


def check_positive_int(value: Any, name: str) -> int:
    """Return `value` if it is a positive int, else raise a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return value


def check_preprocessing(pipe: Pipeline, task: str) -> None:
    """A pipeline needs a processor, or both a tokenizer and an image processor; a `TypeError` says which is missing.

    With a processor, a tokenizer or image processor not given separately is taken from it (batching pads with the
    tokenizer; images are checked by the image processor's rule).
    """
    if pipe.processor is not None:
        for name in ("tokenizer", "image_processor"):
            if getattr(pipe, name) is None:
                setattr(pipe, name, getattr(pipe.processor, name, None))
        return
    missing = [name for name in ("tokenizer", "image_processor") if getattr(pipe, name) is None]
    if missing:
        raise TypeError(
            f"{task} needs a processor, or a tokenizer and an image processor; {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Pass processor=... (or tokenizer=... and "
            "image_processor=...) or a model folder that holds them."
        )


def text_options(tokenizer_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Text options of every encoding: `padding=True, truncation=True`, with `tokenizer_kwargs` merged over them."""
    if tokenizer_kwargs is not None and not isinstance(tokenizer_kwargs, dict):
        raise TypeError(f"`tokenizer_kwargs` must be a dict; got {type(tokenizer_kwargs).__name__}.")
    return {"padding": True, "truncation": True, **(tokenizer_kwargs or {})}


def _to_model_dtype(pipe: Pipeline, encoded: Mapping[str, Any]) -> dict[str, Any]:
    """Float tensors (pixel values) in the model's dtype, as transformers' pipelines do; masks and ids unchanged."""
    return {
        key: value.to(pipe.dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        for key, value in encoded.items()
    }


def _require(encoded: Mapping[str, Any], names: tuple[str, ...], source: Any) -> None:
    missing = [name for name in names if name not in encoded]
    if missing:
        raise ValueError(f"{type(source).__name__} returned {sorted(encoded)}, without {missing}.")


def encode_pairs(
    pipe: Pipeline, images: list[Image.Image], texts: list[str], text_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Model inputs for `images[i]` paired with `texts[i]`, through the processor when the pipeline has one."""
    if pipe.processor is not None:
        encoded = dict(pipe.processor(images=images, text=texts, return_tensors="pt", **text_kwargs))
        _require(encoded, ("input_ids", "pixel_values"), pipe.processor)
        return _to_model_dtype(pipe, encoded)
    return {**encode_images(pipe, images), **encode_texts(pipe, texts, text_kwargs)}


def encode_images(pipe: Pipeline, images: list[Image.Image]) -> dict[str, Any]:
    """Image-side model inputs (`pixel_values`, `pixel_mask` if the processor pads) for a list of images."""
    source = pipe.processor if pipe.processor is not None else pipe.image_processor
    encoded = dict(source(images=images, return_tensors="pt"))
    _require(encoded, ("pixel_values",), source)
    return _to_model_dtype(pipe, encoded)


def encode_texts(pipe: Pipeline, texts: list[str], text_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Text-side model inputs (`input_ids`, `attention_mask`, ...) for a list of texts."""
    if pipe.processor is not None:
        encoded = dict(pipe.processor(text=texts, return_tensors="pt", **text_kwargs))
        source = pipe.processor
    else:
        encoded = dict(pipe.tokenizer(texts, return_tensors="pt", **text_kwargs))
        source = pipe.tokenizer
    _require(encoded, ("input_ids",), source)
    return encoded


def forward_inputs(model: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `inputs` that `model.forward` takes (all of them if it takes `**kwargs`).

    Tokenizers may return inputs a model does not use (BERT's `token_type_ids` for a model without segment
    embeddings); they are left out instead of failing the call.
    """
    parameters = inspect.signature(model.forward).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return dict(inputs)
    return {key: value for key, value in inputs.items() if key in parameters}


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string; got {type(value).__name__} ({value!r}).")
    if not value.strip():
        raise ValueError(f"`{name}` is empty; give a non-empty text.")
    return value


class ImageTextPairPipeline(Pipeline):
    """Base of the pipelines that run a model once per (image, text) pair and need a task head.

    Subclasses set `task_name`, `head` (a key of `vlzoo.pipelines.task_heads.HEAD_AUTO_CLASSES`), `text_key` (the
    name of the text argument and dict key) and implement `_forward`/`postprocess`. Calls take one image and one
    text, an image list with one text, one image with a text list, two lists of equal length (zipped into pairs), a
    dict `{"image": ..., text_key: ...}` or a list of such dicts; a list input gives a list of results, in order.
    Lists are run in batches (`batch_size`, default 8, at construction or per call).
    """

    _load_processor = None
    _load_image_processor = None
    _load_tokenizer = None
    _load_feature_extractor = False

    task_name = ""
    head = ""
    text_key = "text"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check_head(self.model, self.head, self.task_name)
        check_preprocessing(self, self.task_name)
        if self._batch_size is not None:
            check_positive_int(self._batch_size, "batch_size")

    def _pairs(self, image: Any, text: Any) -> tuple[list[dict[str, Any]], bool]:
        """The call's pairs as `[{"image", "text", "image_name"}]` and whether it was a single pair."""
        key = self.text_key
        if text is None:
            if isinstance(image, Mapping):
                return [self._pair_from_dict(image, "inputs")], True
            if isinstance(image, (list, tuple)) and image and all(isinstance(item, Mapping) for item in image):
                return [self._pair_from_dict(item, f"inputs[{index}]") for index, item in enumerate(image)], False
            if image is None:
                raise ValueError(f"missing `image` and `{key}`; {self._usage()}")
            raise ValueError(f"missing `{key}`; {self._usage()}")
        if image is None:
            raise ValueError(f"missing `image`; {self._usage()}")
        image_list = isinstance(image, (list, tuple))
        text_list = isinstance(text, (list, tuple))
        if not image_list and not text_list:
            return [self._pair(image, text, "image", key)], True
        for value, name, is_list in ((image, "image", image_list), (text, key, text_list)):
            if is_list and len(value) == 0:
                raise ValueError(f"`{name}` is an empty list; give at least one item.")
        if image_list and text_list:
            if len(image) != len(text):
                raise ValueError(
                    f"`image` and `{key}` are lists of different lengths ({len(image)} and {len(text)}); two lists "
                    "are paired item by item, so they must have the same length."
                )
            pairs = zip(image, text, strict=True)
            return [self._pair(i, t, f"image[{n}]", f"{key}[{n}]") for n, (i, t) in enumerate(pairs)], False
        if image_list:
            return [self._pair(item, text, f"image[{n}]", key) for n, item in enumerate(image)], False
        return [self._pair(image, item, "image", f"{key}[{n}]") for n, item in enumerate(text)], False

    def _pair_from_dict(self, item: Mapping[str, Any], name: str) -> dict[str, Any]:
        expected = {"image", self.text_key}
        if set(item) != expected:
            raise ValueError(
                f"{name} must have exactly the keys {sorted(expected)}; got {sorted(map(str, item))}. {self._usage()}"
            )
        return self._pair(item["image"], item[self.text_key], f"{name}['image']", f"{name}[{self.text_key!r}]")

    def _pair(self, image: Any, text: Any, image_name: str, text_name: str) -> dict[str, Any]:
        if image is None:
            raise ValueError(f"`{image_name}` is None; expected an image.")
        return {"image": image, "text": _check_text(text, text_name), "image_name": image_name}

    def _usage(self) -> str:
        key = self.text_key
        return (
            f"call {self.task_name} as pipe(image, {key}), pipe([image, ...], {key}), pipe(image, [{key}, ...]), "
            f"pipe([image, ...], [{key}, ...]) (paired item by item) or with dicts {{'image': ..., '{key}': ...}}."
        )

    def __call__(self, image: Any = None, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        text = kwargs.pop(self.text_key, None)
        if args:
            if len(args) > 1 or text is not None:
                raise TypeError(
                    f"{self.task_name} takes `image` and `{self.text_key}`; got extra positional arguments."
                )
            text = args[0]
        pairs, single = self._pairs(image, text)
        if single:
            return self._complete(pairs, [super().__call__(pairs[0], **kwargs)])[0]
        if batch_size is None:
            batch_size = self._batch_size if self._batch_size is not None else DEFAULT_PAIR_BATCH_SIZE
        results = super().__call__(pairs, batch_size=check_positive_int(batch_size, "batch_size"), **kwargs)
        return self._complete(pairs, results)

    def _complete(self, pairs: list[dict[str, Any]], results: list[Any]) -> list[Any]:
        """Add what the results carry from the call itself (nothing by default); one result per pair, in order."""
        return results

    def _sanitize_common(self, timeout: float | None, tokenizer_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        preprocess_params: dict[str, Any] = {}
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if tokenizer_kwargs is not None:
            preprocess_params["text_kwargs"] = text_options(tokenizer_kwargs)
        return preprocess_params

    def _unexpected(self, unexpected: dict[str, Any], accepted: str) -> None:
        if unexpected:
            raise TypeError(f"{self.task_name} got unexpected arguments {sorted(unexpected)}; it accepts {accepted}.")

    def _load_and_encode(
        self, pair: dict[str, Any], timeout: float | None, text_kwargs: dict[str, Any] | None
    ) -> tuple[Image.Image, dict[str, Any]]:
        """Load the pair's image by the image processor's rule and encode the pair (batch of one)."""
        image = load_pipeline_image(
            pair["image"], self.image_processor, argument_name=pair["image_name"], timeout=timeout
        )
        return image, encode_pairs(self, [image], [pair["text"]], text_kwargs or text_options(None))

    def preprocess(
        self, pair: dict[str, Any], timeout: float | None = None, text_kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._load_and_encode(pair, timeout, text_kwargs)[1]

    def _run_model(self, model_inputs: dict[str, Any], metadata: tuple[str, ...] = ()) -> Any:
        inputs = {key: value for key, value in model_inputs.items() if key not in metadata}
        return self.model(**forward_inputs(self.model, inputs))
