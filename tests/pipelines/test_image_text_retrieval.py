"""The image-text-retrieval pipeline on a tiny saved CLIP: both modes, several queries, top_k, batching, errors."""

import doctest
import os
import string

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPTextModel,
    CLIPTokenizer,
    pipeline,
)
from transformers.pipelines import PIPELINE_REGISTRY  # noqa: E402

import vlzoo.pipelines.image_text_retrieval as retrieval_module  # noqa: E402
from vlzoo.pipelines import ImageTextRetrievalPipeline, register_pipelines  # noqa: E402

TASK = "image-text-retrieval"
TEXTS = ["a red circle", "green", "the blue sky at night", "white", "a dark square"]


def _tiny_config() -> CLIPConfig:
    return CLIPConfig(
        text_config={
            "vocab_size": 99,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )


def _tiny_tokenizer() -> CLIPTokenizer:
    # Character-level BPE vocabulary (no merges): every letter alone and as a word end.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for letter in string.ascii_lowercase:
            vocab[letter + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    CLIPModel(_tiny_config()).save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir):
    register_pipelines()
    return pipeline(TASK, model=str(model_dir))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = [Image.new("RGB", (48, 40), color) for color in ("red", "green", "blue")]
    images += [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(2)]
    path = tmp_path_factory.mktemp("images") / "noise.png"
    images[-1].save(path)
    images[-1] = str(path)  # a local path is loaded like a PIL image
    return images


@pytest.fixture(scope="module")
def reference(model_dir, gallery):
    """Cosine similarities `[n_images, n_texts]` computed directly with the model, tokenizer and image processor."""
    model = CLIPModel.from_pretrained(model_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(model_dir)
    processor = CLIPImageProcessorPil.from_pretrained(model_dir)
    images = [Image.open(image) if isinstance(image, str) else image for image in gallery]
    with torch.no_grad():
        image_embeds = model.get_image_features(**processor(images=images, return_tensors="pt")).pooler_output
        text_embeds = model.get_text_features(**tokenizer(TEXTS, padding=True, return_tensors="pt")).pooler_output
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    return image_embeds @ text_embeds.T


def assert_ranking(result, expected_scores, top_k=None):
    """`result` ranks the gallery whose true scores are `expected_scores`, best first, keeping `top_k` items."""
    expected_scores = torch.as_tensor(expected_scores)
    keep = len(expected_scores) if top_k is None else min(top_k, len(expected_scores))
    assert sorted(result) == ["indices", "scores"]
    indices, scores = result["indices"], torch.tensor(result["scores"])
    assert len(indices) == keep == len(set(indices))
    assert torch.all(scores[:-1] >= scores[1:]), "scores must be sorted best first"
    torch.testing.assert_close(scores, expected_scores[indices].float(), atol=1e-5, rtol=0)
    left_out = [index for index in range(len(expected_scores)) if index not in indices]
    if left_out:
        assert expected_scores[indices].min() >= expected_scores[left_out].max() - 1e-5


def test_reference_scores_are_distinct(reference):
    # The checks below can tell rankings apart only if the tiny model does not score everything alike.
    assert reference.std() > 1e-3


def test_text_query_ranks_image_gallery(pipe, gallery, reference):
    for text_index, text in enumerate(TEXTS[:2]):
        assert_ranking(pipe(images=gallery, texts=text), reference[:, text_index])


def test_image_query_ranks_text_gallery(pipe, gallery, reference):
    for image_index in (0, 4):
        assert_ranking(pipe(images=gallery[image_index], texts=TEXTS), reference[image_index])


def test_several_queries_return_one_result_each(pipe, gallery, reference):
    by_text = pipe(images=gallery, texts=TEXTS[:3], query="text", top_k=2)
    assert isinstance(by_text, list) and len(by_text) == 3
    for text_index, result in enumerate(by_text):
        assert_ranking(result, reference[:, text_index], top_k=2)
    by_image = pipe(images=gallery[:2], texts=TEXTS, query="image")
    assert len(by_image) == 2
    for image_index, result in enumerate(by_image):
        assert_ranking(result, reference[image_index])


def test_top_k_and_gallery_batch_size(pipe, gallery, reference):
    full = pipe(images=gallery, texts=TEXTS[2])
    top = pipe(images=gallery, texts=TEXTS[2], top_k=3, batch_size=2)
    assert_ranking(top, reference[:, 2], top_k=3)
    assert top["indices"] == full["indices"][:3]
    assert pipe(images=gallery, texts=TEXTS[2], top_k=50)["indices"] == full["indices"]
    one_by_one = pipe(images=gallery[1], texts=TEXTS, batch_size=1)
    assert_ranking(one_by_one, reference[1])


def test_top_k_and_batch_size_given_at_construction(model_dir, gallery, reference):
    register_pipelines()
    configured = pipeline(TASK, model=str(model_dir), top_k=1, batch_size=2)
    result = configured(images=gallery, texts=TEXTS[0])
    assert_ranking(result, reference[:, 0], top_k=1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        ({"images": "GALLERY", "texts": TEXTS}, ValueError, "both `images` and `texts` are lists"),
        ({"images": "IMAGE", "texts": "a query"}, ValueError, "neither `images` nor `texts` is a list"),
        ({"images": [], "texts": "a query"}, ValueError, "gallery `images` is empty"),
        ({"images": "IMAGE", "texts": []}, ValueError, "gallery `texts` is empty"),
        ({"images": "GALLERY", "texts": [], "query": "text"}, ValueError, "query list `texts` is empty"),
        ({"images": "GALLERY", "texts": "a query", "top_k": 0}, ValueError, "`top_k` must be a positive integer"),
        ({"images": "GALLERY", "texts": "a query", "top_k": -2}, ValueError, "`top_k`"),
        ({"images": "GALLERY", "texts": "a query", "batch_size": 0}, ValueError, "`batch_size`"),
        ({"images": "GALLERY", "texts": TEXTS, "query": "both"}, ValueError, "`query` must be one of"),
        ({"images": "IMAGE", "texts": "a query", "query": "text"}, ValueError, "`images` is the gallery"),
        ({"texts": "a query"}, ValueError, "missing `images`"),
        ({"images": "IMAGE", "texts": ["ok", 3]}, TypeError, "item 1 is int"),
        ({"images": "GALLERY", "texts": "a query", "topk": 2}, TypeError, r"unexpected arguments \['topk'\]"),
    ],
)
def test_invalid_calls_explain_the_modes(pipe, gallery, call, error, match):
    placeholders = {"GALLERY": gallery, "IMAGE": gallery[0]}
    call = {key: placeholders.get(value, value) if isinstance(value, str) else value for key, value in call.items()}
    with pytest.raises(error, match=match):
        pipe(**call)


def test_tensor_features_are_accepted(pipe, gallery):
    class TensorFeaturesCLIP(CLIPModel):
        """A dual encoder whose feature methods return plain tensors."""

        def get_image_features(self, **kwargs):
            return super().get_image_features(**kwargs).pooler_output

        def get_text_features(self, **kwargs):
            return super().get_text_features(**kwargs).pooler_output

    model = TensorFeaturesCLIP(pipe.model.config)
    model.load_state_dict(pipe.model.state_dict())
    tensor_pipe = ImageTextRetrievalPipeline(
        model=model.eval(), tokenizer=pipe.tokenizer, image_processor=pipe.image_processor
    )
    expected = pipe(images=gallery, texts=TEXTS[0])
    result = tensor_pipe(images=gallery, texts=TEXTS[0])
    assert result["indices"] == expected["indices"]
    torch.testing.assert_close(torch.tensor(result["scores"]), torch.tensor(expected["scores"]))


def test_model_without_feature_methods_is_rejected(pipe):
    text_only = CLIPTextModel(pipe.model.config.text_config)
    with pytest.raises(TypeError, match="get_image_features"):
        ImageTextRetrievalPipeline(model=text_only, tokenizer=pipe.tokenizer, image_processor=pipe.image_processor)


def test_registration_is_idempotent(pipe):
    register_pipelines()
    entry = PIPELINE_REGISTRY.supported_tasks[TASK]
    register_pipelines()
    assert PIPELINE_REGISTRY.supported_tasks[TASK] is entry
    assert entry["impl"] is ImageTextRetrievalPipeline and entry["type"] == "multimodal"
    assert isinstance(pipe, ImageTextRetrievalPipeline)


def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(retrieval_module.ImageTextRetrievalPipeline, globs={})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
