"""Image-text retrieval pipeline: rank an image gallery for a text query, or a text gallery for an image query."""

from typing import Any

import torch
from transformers import Pipeline, pipeline
from transformers.utils import logging

from vlzoo.pipelines.image_inputs import load_pipeline_image
from vlzoo.pipelines.pairs import (
    check_positive_int,
    check_preprocessing,
    encode_images,
    encode_texts,
    forward_inputs,
    text_options,
)
from vlzoo.pipelines.task_heads import has_head, match_scores

QUERY_MODES = ("text", "image")
RANKINGS = ("similarity", "itm")
DEFAULT_GALLERY_BATCH_SIZE = 32
DEFAULT_PREFILTER_K = 32
# Cross-encoder scoring shows a progress bar (by default) when it needs more model calls than this.
PROGRESS_BAR_MIN_BATCHES = 8
_TASK = "image-text-retrieval"

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


class ImageTextRetrievalPipeline(Pipeline):
    """Rank a gallery of images for a text query, or a gallery of texts for an image query.

    Task name `"image-text-retrieval"` (registered by `vlzoo.pipelines.register_pipelines()`). Two kinds of model:

    - A dual encoder exposing `get_image_features(pixel_values=...)` and `get_text_features(input_ids=...,
      attention_mask=...)` that return embeddings, either as a tensor or as an output whose `pooler_output` holds them
      (CLIP in transformers 5, MS-CLIP). Embeddings are L2-normalised and compared by dot product, so `scores` are
      cosine similarities in [-1, 1] (not multiplied by the model's logit scale, and not softmax-normalised).
    - A cross-encoder with an image-text matching head (a class registered with
      `vlzoo.pipelines.AutoModelForImageTextMatching`): every (query, candidate) pair goes through the model and
      `scores` are its match scores (`softmax(itm_logits)[:, 1]`, or the rank score the model declares; see
      `vlzoo.pipelines.task_heads.ITM_SCORE_OUTPUTS`). Without a prefilter every pair of the gallery is scored, in
      batches, with a progress bar when that takes many model calls. With a prefilter, retrieval has two stages: a
      dual encoder ranks the gallery, and the cross-encoder re-ranks its best `prefilter_k` candidates per query;
      only those candidates are returned.

    A model with both (FLAVA) ranks by its matching head unless `rank_by="similarity"`; it can be its own prefilter.

    Call conventions:
    - `pipe(images=[img, ...], texts="a query")`: a text query over an image gallery;
    - `pipe(images=img, texts=["a text", ...])`: an image query over a text gallery;
    - several queries: lists for both plus `query="text"` (texts are queries) or `query="image"`; returns a list
      with one result per query, in order. The gallery is encoded once for all queries.
    Each result is `{"scores": [...], "indices": [...]}`: gallery indices from best to worst, with their scores
    (ties keep gallery order). Images are PIL images, local paths or URLs; with a vlzoo image processor also arrays
    and tensors, checked by its rule (`vlzoo.pipelines.load_pipeline_image`), else loaded with transformers'
    `load_image`.

    Construction-only options: `rank_by` ("itm" or "similarity"; default "itm" for models with a matching head,
    else "similarity"), `prefilter` (an `ImageTextRetrievalPipeline` of a dual encoder, or a model folder / Hub id
    loaded as one; only with `rank_by="itm"`), `processor` (used by a cross-encoder instead of the tokenizer and
    image processor, e.g. when its processor pads or truncates texts its own way).
    Options (at construction or per call): `top_k` (keep the best k; None, the default, keeps all; a k larger than
    the gallery returns the whole gallery), `batch_size` (images, texts or pairs per model call, default 32),
    `prefilter_k` (candidates per query a cross-encoder re-ranks: default 32 with a `prefilter`; given without
    one, a cross-encoder that is also a dual encoder prefilters itself), `progress_bar` (True/False; default: shown
    when a cross-encoder needs more than 8 model calls), `timeout` (for image URLs), `tokenizer_kwargs` (merged over
    `padding=True, truncation=True`).

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

    # A folder's tokenizer and image processor are loaded (a processor only when given: dual encoders need none);
    # a pipeline built from a model instance gets them, or a processor, as arguments.
    _load_processor = False
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = None

    def __init__(self, *args: Any, rank_by: str | None = None, prefilter: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        dual = all(hasattr(self.model, name) for name in ("get_image_features", "get_text_features"))
        cross = has_head(self.model, "itm")
        if rank_by is None:
            if not dual and not cross:
                raise TypeError(
                    "image-text-retrieval needs a dual encoder with `get_image_features` and `get_text_features`, or a "
                    "cross-encoder with an image-text matching head (a class registered with "
                    f"vlzoo.pipelines.AutoModelForImageTextMatching); {type(self.model).__name__} has neither."
                )
            rank_by = "itm" if cross else "similarity"
        elif rank_by not in RANKINGS:
            raise ValueError(f"`rank_by` must be one of {list(RANKINGS)} or None; got {rank_by!r}.")
        elif rank_by == "similarity" and not dual:
            missing = [name for name in ("get_image_features", "get_text_features") if not hasattr(self.model, name)]
            raise TypeError(
                f"rank_by='similarity' needs a dual encoder with `get_image_features` and `get_text_features`; "
                f"{type(self.model).__name__} lacks {missing}."
            )
        elif rank_by == "itm" and not cross:
            raise TypeError(
                "rank_by='itm' needs a model with an image-text matching head (a class registered with "
                f"vlzoo.pipelines.AutoModelForImageTextMatching); {type(self.model).__name__} is not one."
            )
        self.rank_by = rank_by
        self._dual = dual
        check_preprocessing(self, _TASK)
        if self._batch_size is not None:
            check_positive_int(self._batch_size, "batch_size")
        self.prefilter = self._build_prefilter(prefilter)
        self._self_prefilter: ImageTextRetrievalPipeline | None = None

    def _build_prefilter(self, prefilter: Any) -> "ImageTextRetrievalPipeline | None":
        """The dual-encoder pipeline of the first stage (None: no separate prefilter)."""
        if prefilter is None:
            return None
        if self.rank_by != "itm":
            raise ValueError(
                "a `prefilter` gives candidates for a cross-encoder to re-rank; this pipeline ranks by similarity "
                "already (rank_by='similarity'), so there is nothing to re-rank."
            )
        if isinstance(prefilter, str):
            prefilter = pipeline(_TASK, model=prefilter, device=self.device, rank_by="similarity")
        if not isinstance(prefilter, ImageTextRetrievalPipeline):
            raise TypeError(
                "`prefilter` must be an image-text-retrieval pipeline of a dual encoder or the folder / Hub id of "
                f"one; got {type(prefilter).__name__}."
            )
        if prefilter.rank_by != "similarity":
            raise ValueError(
                "`prefilter` must rank by similarity (a dual encoder, rank_by='similarity'); the given pipeline ranks "
                f"by {prefilter.rank_by!r}."
            )
        return prefilter

    def _first_stage(self) -> "ImageTextRetrievalPipeline":
        """The prefilter pipeline: the given one, or this model ranking by similarity when it is a dual encoder."""
        if self.prefilter is not None:
            return self.prefilter
        if not self._dual:
            raise ValueError(
                f"`prefilter_k` needs a prefilter: {type(self.model).__name__} is not a dual encoder, so pass "
                "prefilter=<an image-text-retrieval pipeline or folder of a dual encoder> when building the pipeline."
            )
        if self._self_prefilter is None:
            self._self_prefilter = ImageTextRetrievalPipeline(
                model=self.model,
                tokenizer=self.tokenizer,
                image_processor=self.image_processor,
                device=self.device,
                rank_by="similarity",
            )
        return self._self_prefilter

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
            batch_size: images, texts or pairs per model call (default: the pipeline's, else 32).
            top_k: number of best gallery items to return (default: all).
            prefilter_k: candidates per query a cross-encoder re-ranks (see the class docstring).
            progress_bar: whether a cross-encoder shows its progress (default: for more than 8 model calls).

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
            "batch_size": check_positive_int(batch_size, "batch_size"),
        }
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        prefilter_k: int | None = None,
        progress_bar: bool | None = None,
        **unexpected: Any,
    ) -> tuple[dict, dict, dict]:
        if unexpected:
            raise TypeError(
                f"image-text-retrieval got unexpected arguments {sorted(unexpected)}; it accepts images, texts, "
                "query, top_k, batch_size, prefilter_k, progress_bar, timeout and tokenizer_kwargs."
            )
        preprocess_params: dict[str, Any] = {}
        if timeout is not None:
            preprocess_params["timeout"] = timeout
        if tokenizer_kwargs is not None:
            if not isinstance(tokenizer_kwargs, dict):
                raise TypeError(f"`tokenizer_kwargs` must be a dict; got {type(tokenizer_kwargs).__name__}.")
            preprocess_params["tokenizer_kwargs"] = tokenizer_kwargs
        if prefilter_k is not None:
            preprocess_params["prefilter_k"] = check_positive_int(prefilter_k, "prefilter_k")
        forward_params = {}
        if progress_bar is not None:
            if not isinstance(progress_bar, bool):
                raise TypeError(f"`progress_bar` must be True, False or None; got {progress_bar!r}.")
            forward_params["progress_bar"] = progress_bar
        postprocess_params = {}
        if top_k is not None:
            postprocess_params["top_k"] = check_positive_int(top_k, "top_k")
        return preprocess_params, forward_params, postprocess_params

    def preprocess(
        self,
        inputs: dict[str, Any],
        timeout: float | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        prefilter_k: int | None = None,
    ) -> dict[str, Any]:
        if self.rank_by == "itm":
            return self._preprocess_pairs(inputs, timeout, tokenizer_kwargs, prefilter_k)
        if prefilter_k is not None:
            raise ValueError(
                "`prefilter_k` sets how many candidates a cross-encoder re-ranks; this pipeline ranks by similarity "
                "(a dual encoder), so use `top_k` instead."
            )
        mode, batch_size = inputs["mode"], inputs["batch_size"]
        images = inputs["gallery"] if mode == "text" else inputs["queries"]
        texts = inputs["queries"] if mode == "text" else inputs["gallery"]
        text_kwargs = {"padding": True, "truncation": True, **(tokenizer_kwargs or {})}
        image_batches = []
        for start in range(0, len(images), batch_size):
            loaded = [
                load_pipeline_image(
                    image, self.image_processor, argument_name=_image_name(inputs, index), timeout=timeout
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

    def _preprocess_pairs(
        self,
        inputs: dict[str, Any],
        timeout: float | None,
        tokenizer_kwargs: dict[str, Any] | None,
        prefilter_k: int | None,
    ) -> dict[str, Any]:
        """Cross-encoder ranking: the candidates of each query (all, or the prefilter's best) and the encoded texts.

        Images are loaded and encoded in `_forward`, a batch at a time, so a large gallery is never held encoded.
        """
        mode, queries, gallery, batch_size = inputs["mode"], inputs["queries"], inputs["gallery"], inputs["batch_size"]
        if prefilter_k is None and self.prefilter is not None:
            prefilter_k = DEFAULT_PREFILTER_K
        if prefilter_k is None:
            candidates = [list(range(len(gallery)))] * len(queries)
        else:
            images, texts = (gallery, queries) if mode == "text" else (queries, gallery)
            ranked = self._first_stage()(
                images=images,
                texts=texts,
                query=mode,
                top_k=prefilter_k,
                batch_size=batch_size,
                timeout=timeout,
            )
            # Ties in the re-ranking keep gallery order, whatever order the prefilter gave.
            candidates = [sorted(result["indices"]) for result in ranked]
        pairs = []
        for query_index, indices in enumerate(candidates):
            for gallery_index in indices:
                pairs.append((gallery_index, query_index) if mode == "text" else (query_index, gallery_index))
        texts = queries if mode == "text" else gallery
        return {
            "mode": mode,
            "single": inputs["single"],
            "images": gallery if mode == "text" else queries,
            "image_names": [
                _image_name(inputs, index) for index in range(len(gallery if mode == "text" else queries))
            ],
            "text_inputs": encode_texts(self, list(texts), text_options(tokenizer_kwargs)),
            "pairs": pairs,
            "candidates": candidates,
            "batch_size": batch_size,
            "timeout": timeout,
        }

    def _embed(self, output: Any, method: str) -> torch.Tensor:
        """L2-normalised float32 embeddings from a `get_*_features` result (tensor or output with `pooler_output`)."""
        features = output if isinstance(output, torch.Tensor) else getattr(output, "pooler_output", None)
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            raise TypeError(
                f"{type(self.model).__name__}.{method} must return a [batch, dim] tensor or an output whose "
                f"`pooler_output` is one; got {type(output).__name__}."
            )
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def _forward(self, model_inputs: dict[str, Any], progress_bar: bool | None = None) -> dict[str, Any]:
        if self.rank_by == "itm":
            return self._forward_pairs(model_inputs, progress_bar)
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

    def _forward_pairs(self, model_inputs: dict[str, Any], progress_bar: bool | None) -> dict[str, Any]:
        """Score every (image, text) pair with the cross-encoder, images loaded and encoded a batch at a time."""
        pairs, batch_size = model_inputs["pairs"], model_inputs["batch_size"]
        text_inputs = model_inputs["text_inputs"]
        by_image: dict[int, list[int]] = {}
        for position, (image_index, _) in enumerate(pairs):
            by_image.setdefault(image_index, []).append(position)
        scores = torch.empty(len(pairs), dtype=torch.float32)
        image_order = sorted(by_image)
        model_calls = -(-len(pairs) // batch_size)
        show = model_calls > PROGRESS_BAR_MIN_BATCHES if progress_bar is None else progress_bar
        with logging.tqdm(total=len(pairs), desc="image-text pairs", unit="pair", disable=not show) as bar:
            for start in range(0, len(image_order), batch_size):
                chunk = image_order[start : start + batch_size]
                loaded = [
                    load_pipeline_image(
                        model_inputs["images"][index],
                        self.image_processor,
                        argument_name=model_inputs["image_names"][index],
                        timeout=model_inputs["timeout"],
                    )
                    for index in chunk
                ]
                image_inputs = {
                    key: value.to(self.device) if isinstance(value, torch.Tensor) else value
                    for key, value in encode_images(self, loaded).items()
                }
                local = {image_index: position for position, image_index in enumerate(chunk)}
                positions = [position for image_index in chunk for position in by_image[image_index]]
                for batch_start in range(0, len(positions), batch_size):
                    batch = positions[batch_start : batch_start + batch_size]
                    image_rows = torch.tensor([local[pairs[p][0]] for p in batch], device=self.device)
                    text_rows = torch.tensor([pairs[p][1] for p in batch], device=self.device)
                    inputs = {key: value[image_rows] for key, value in image_inputs.items()}
                    inputs.update({key: value[text_rows] for key, value in text_inputs.items()})
                    outputs = self.model(**forward_inputs(self.model, inputs))
                    scores[batch] = match_scores(outputs, self.model, _TASK).cpu()
                    bar.update(len(batch))
        # Pairs were built query by query, so each query's scores are the next len(candidates) entries.
        candidates = model_inputs["candidates"]
        query_scores = list(torch.split(scores, [len(indices) for indices in candidates]))
        return {"candidates": candidates, "scores": query_scores, "single": model_inputs["single"]}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> dict | list[dict]:
        if "candidates" in model_outputs:
            results = []
            for indices, values in zip(model_outputs["candidates"], model_outputs["scores"], strict=True):
                keep = len(indices) if top_k is None else min(top_k, len(indices))
                order = torch.sort(values, descending=True, stable=True).indices[:keep]
                results.append({"scores": values[order].tolist(), "indices": [indices[i] for i in order.tolist()]})
            return results[0] if model_outputs["single"] else results
        similarity = model_outputs["similarity"]
        keep = similarity.shape[1] if top_k is None else min(top_k, similarity.shape[1])
        scores, indices = torch.sort(similarity, dim=1, descending=True, stable=True)
        results = [
            {"scores": row_scores[:keep].tolist(), "indices": row_indices[:keep].tolist()}
            for row_scores, row_indices in zip(scores, indices, strict=True)
        ]
        return results[0] if model_outputs["single"] else results


def _image_name(inputs: dict[str, Any], index: int) -> str:
    """How errors name image `index` of the call: `images` for a single query image, else `images[index]`."""
    single_image = inputs["mode"] == "image" and inputs["single"]
    return "images" if single_image else f"images[{index}]"
