"""Image-text retrieval pipeline: rank an image gallery for a text query, or a text gallery for an image query."""

from typing import Any

import torch
from transformers import Pipeline

from vlzoo.pipelines.image_inputs import load_pipeline_image

QUERY_MODES = ("text", "image")
DEFAULT_GALLERY_BATCH_SIZE = 32

_MODES_HELP = (
    "image-text-retrieval has two modes: a text query over an image gallery, "
    "`pipe(images=[image, ...], texts='a query')`, and an image query over a text gallery, "
    "`pipe(images=image, texts=['a text', ...])`; the gallery is the argument given as a list. To send several "
    "queries at once, pass lists for both and name the query side with `query='text'` or `query='image'`."
)


def _as_list(value: Any) -> list | None:
    """The items of a list or tuple, or None for anything else (a single query)."""
    return list(value) if isinstance(value, (list, tuple)) else None


def _resolve_queries(images: Any, texts: Any, query: str | None) -> tuple[str, list, list, bool]:
    """Work out the mode and return `(query_mode, queries, gallery, single_query)`, or raise on ambiguous input."""
    if images is None or texts is None:
        missing = [name for name, value in (("images", images), ("texts", texts)) if value is None]
        raise ValueError(f"missing {' and '.join(f'`{name}`' for name in missing)}. {_MODES_HELP}")
    image_list, text_list = _as_list(images), _as_list(texts)
    if query is None:
        if image_list is not None and text_list is None:
            query = "text"
        elif text_list is not None and image_list is None:
            query = "image"
        elif image_list is not None:
            raise ValueError(f"both `images` and `texts` are lists, so the query side is ambiguous. {_MODES_HELP}")
        else:
            raise ValueError(f"neither `images` nor `texts` is a list, so there is no gallery to rank. {_MODES_HELP}")
    elif query not in QUERY_MODES:
        raise ValueError(f"`query` must be one of {list(QUERY_MODES)} or None; got {query!r}. {_MODES_HELP}")

    gallery_name, gallery = ("images", image_list) if query == "text" else ("texts", text_list)
    queries = text_list if query == "text" else image_list
    single = queries is None
    if single:
        queries = [texts if query == "text" else images]
    if gallery is None:
        raise ValueError(f"with `query={query!r}`, `{gallery_name}` is the gallery and must be a list. {_MODES_HELP}")
    if len(gallery) == 0:
        raise ValueError(f"the gallery `{gallery_name}` is empty; give at least one item to rank.")
    if len(queries) == 0:
        raise ValueError(f"the query list `{'texts' if query == 'text' else 'images'}` is empty.")
    for index, text in enumerate(queries if query == "text" else gallery):
        if not isinstance(text, str):
            raise TypeError(f"`texts` must hold strings; item {index} is {type(text).__name__} ({text!r}).")
    return query, queries, gallery, single


def _check_count(value: Any, name: str) -> int:
    """Return `value` if it is a positive integer, else raise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return value


class ImageTextRetrievalPipeline(Pipeline):
    """Rank a gallery of images for a text query, or a gallery of texts for an image query, by cosine similarity.

    Task name `"image-text-retrieval"` (registered by `vlzoo.pipelines.register_pipelines()`). Works with any dual
    encoder exposing `get_image_features(pixel_values=...)` and `get_text_features(input_ids=..., attention_mask=...)`
    that return embeddings, either as a tensor or as an output whose `pooler_output` holds them (CLIP in transformers
    5). Embeddings are L2-normalised and compared by dot product, so `scores` are cosine similarities in [-1, 1]
    (not multiplied by the model's logit scale, and not softmax-normalised).

    Call conventions:
    - `pipe(images=[img, ...], texts="a query")`: a text query over an image gallery;
    - `pipe(images=img, texts=["a text", ...])`: an image query over a text gallery;
    - several queries: lists for both plus `query="text"` (texts are queries) or `query="image"`; returns a list
      with one result per query, in order. The gallery is encoded once for all queries.
    Each result is `{"scores": [...], "indices": [...]}`: gallery indices from best to worst, with their scores
    (ties keep gallery order). Images are PIL images, local paths or URLs; with a vlzoo image processor also arrays
    and tensors, checked by its rule (`vlzoo.pipelines.load_pipeline_image`), else loaded with transformers'
    `load_image`.

    Options (at construction or per call): `top_k` (keep the best k; None, the default, keeps the whole gallery; a k
    larger than the gallery returns the whole gallery), `batch_size` (images or texts per model call when encoding,
    default 32), `timeout` (for image URLs), `tokenizer_kwargs` (merged over `padding=True, truncation=True`).

    Example (a random tiny CLIP, so the ranking itself is arbitrary):

        >>> from PIL import Image
        >>> from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer, pipeline
        >>> from vlzoo.pipelines import register_pipelines
        >>> register_pipelines()
        >>> tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4}
        >>> config = CLIPConfig(text_config=tower, vision_config={**tower, "image_size": 32}, projection_dim=16)
        >>> retrieve = pipeline(
        ...     "image-text-retrieval",
        ...     model=CLIPModel(config),
        ...     tokenizer=CLIPTokenizer(),
        ...     image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size=32),
        ... )
        >>> gallery = [Image.new("RGB", (48, 40), color) for color in ("red", "green", "blue")]
        >>> result = retrieve(images=gallery, texts="a red square", top_k=2)
        >>> sorted(result), len(result["indices"])
        (['indices', 'scores'], 2)
        >>> sorted(retrieve(images=gallery[0], texts=["red", "green", "blue"])["indices"])
        [0, 1, 2]
        >>> len(retrieve(images=gallery, texts=["red", "blue"], query="text"))
        2
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        missing = [name for name in ("get_image_features", "get_text_features") if not hasattr(self.model, name)]
        if missing:
            raise TypeError(
                f"image-text-retrieval needs a dual encoder with `get_image_features` and `get_text_features`; "
                f"{type(self.model).__name__} lacks {missing}."
            )
        if self._batch_size is not None:
            _check_count(self._batch_size, "batch_size")

    def __call__(
        self,
        images: Any = None,
        texts: str | list[str] | None = None,
        *,
        query: str | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> dict[str, list] | list[dict[str, list]]:
        """Rank the gallery for each query (see the class docstring for the modes).

        Args:
            images: one image or a list of images (PIL image, local path or URL; see the class docstring).
            texts: one text or a list of texts.
            query: "text" or "image" to name the query side; needed only when both `images` and `texts` are lists.
            batch_size: images or texts per model call while encoding (default: the pipeline's, else 32).
            top_k: number of best gallery items to return (default: all).

        Returns:
            `{"scores": list[float], "indices": list[int]}` for one query, or a list of them for a list of queries.
        """
        mode, queries, gallery, single = _resolve_queries(images, texts, query)
        if batch_size is None:
            batch_size = self._batch_size if self._batch_size is not None else DEFAULT_GALLERY_BATCH_SIZE
        inputs = {
            "mode": mode,
            "queries": queries,
            "gallery": gallery,
            "single": single,
            "batch_size": _check_count(batch_size, "batch_size"),
        }
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        if unexpected:
            raise TypeError(
                f"image-text-retrieval got unexpected arguments {sorted(unexpected)}; it accepts images, texts, "
                "query, top_k, batch_size, timeout and tokenizer_kwargs."
            )
        preprocess_params: dict[str, Any] = {}
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if tokenizer_kwargs is not None:
            if not isinstance(tokenizer_kwargs, dict):
                raise TypeError(f"`tokenizer_kwargs` must be a dict; got {type(tokenizer_kwargs).__name__}.")
            preprocess_params["tokenizer_kwargs"] = tokenizer_kwargs
        postprocess_params = {}
        if top_k is not None:
            postprocess_params["top_k"] = _check_count(top_k, "top_k")
        return preprocess_params, {}, postprocess_params

    def preprocess(
        self, inputs: dict[str, Any], timeout: float | None = None, tokenizer_kwargs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        mode, batch_size = inputs["mode"], inputs["batch_size"]
        images = inputs["gallery"] if mode == "text" else inputs["queries"]
        texts = inputs["queries"] if mode == "text" else inputs["gallery"]
        text_kwargs = {"padding": True, "truncation": True, **(tokenizer_kwargs or {})}
        single_image = mode == "image" and inputs["single"]
        image_batches = []
        for start in range(0, len(images), batch_size):
            loaded = [
                load_pipeline_image(
                    image,
                    self.image_processor,
                    argument_name="images" if single_image else f"images[{index}]",
                    timeout=timeout,
                )
                for index, image in enumerate(images[start : start + batch_size], start=start)
            ]
            pixel_values = self.image_processor(images=loaded, return_tensors="pt")["pixel_values"]
            image_batches.append({"pixel_values": pixel_values.to(self.dtype)})
        text_batches = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(texts[start : start + batch_size], return_tensors="pt", **text_kwargs)
            # get_text_features takes input_ids and attention_mask only (no token_type_ids).
            text_batches.append({key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded})
        return {"mode": mode, "single": inputs["single"], "image_batches": image_batches, "text_batches": text_batches}

    def _embed(self, output: Any, method: str) -> torch.Tensor:
        """L2-normalised float32 embeddings from a `get_*_features` result (tensor or output with `pooler_output`)."""
        features = output if isinstance(output, torch.Tensor) else getattr(output, "pooler_output", None)
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            raise TypeError(
                f"{type(self.model).__name__}.{method} must return a [batch, dim] tensor or an output whose "
                f"`pooler_output` is one; got {type(output).__name__}."
            )
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        image_embeds = torch.cat(
            [
                self._embed(self.model.get_image_features(**batch), "get_image_features")
                for batch in model_inputs["image_batches"]
            ]
        )
        text_embeds = torch.cat(
            [
                self._embed(self.model.get_text_features(**batch), "get_text_features")
                for batch in model_inputs["text_batches"]
            ]
        )
        if model_inputs["mode"] == "text":
            similarity = text_embeds @ image_embeds.T
        else:
            similarity = image_embeds @ text_embeds.T
        return {"similarity": similarity, "single": model_inputs["single"]}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> dict | list[dict]:
        similarity = model_outputs["similarity"]
        keep = similarity.shape[1] if top_k is None else min(top_k, similarity.shape[1])
        scores, indices = torch.sort(similarity, dim=1, descending=True, stable=True)
        results = [
            {"scores": row_scores[:keep].tolist(), "indices": row_indices[:keep].tolist()}
            for row_scores, row_indices in zip(scores, indices, strict=True)
        ]
        return results[0] if model_outputs["single"] else results
