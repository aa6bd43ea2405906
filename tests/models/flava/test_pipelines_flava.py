"""Pipelines on saved FLAVA folders: zero-shot classification, feature extraction, retrieval, matching and VQA."""

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the family and the pipelines)
from vlzoo.models.flava import FlavaForImageTextMatching, FlavaForSequenceClassification, FlavaModel

from .tester import tiny_config, tiny_processor


def _save(model_class, path):
    torch.manual_seed(0)
    model_class(tiny_config()).save_pretrained(path)
    tiny_processor().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def images():
    return [Image.new("RGB", (40, 32), (220, 20, 20)), Image.new("L", (33, 33), 200)]


def test_zero_shot_classification_matches_the_model(tmp_path, images):
    folder = _save(FlavaModel, tmp_path)
    labels = ["cat", "dog", "red"]
    pipe = pipeline("zero-shot-image-classification", model=str(folder))
    assert isinstance(pipe.model, FlavaModel)
    result = pipe(images[0], candidate_labels=labels)
    model = FlavaModel.from_pretrained(folder).eval()
    processor = tiny_processor()
    texts = [f"This is a photo of {label}." for label in labels]
    inputs = processor(images=images[:1], text=texts)
    with torch.no_grad():
        out = model(**inputs)
    assert out.multimodal_output is None  # 1 image vs 3 texts: no pairs, the fusion pass is skipped
    expected = out.logits_per_image.softmax(dim=-1)[0]
    got = {r["label"]: r["score"] for r in result}
    for label, score in zip(labels, expected.tolist(), strict=True):
        assert abs(got[label] - score) < 1e-5


def test_feature_extraction_and_retrieval(tmp_path, images):
    folder = _save(FlavaModel, tmp_path)
    extractor = pipeline("image-feature-extraction", model=str(folder))
    features = extractor(images[0], return_tensors=True)
    assert features.shape[-1] == tiny_config().projection_dim
    pooled = extractor(images[0], pool=True, return_tensors=True)  # no top-level pooler_output: the image embedding
    with torch.no_grad():
        expected = extractor.model(**extractor.image_processor(images[0], return_tensors="pt")).image_embeds
    torch.testing.assert_close(pooled, expected)
    # from a model instance: given a folder, the shared pipeline tries the matching head first, which a FlavaModel
    # folder would fill with a new, random ITM head
    processor = tiny_processor()
    retrieval = pipeline(
        "image-text-retrieval",
        model=FlavaModel.from_pretrained(folder),
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    texts = ["a", "the"]  # words inside the tiny test vocabulary (its first 1200 WordPiece entries)
    ranked = retrieval(images=images[0], texts=texts)
    model = FlavaModel.from_pretrained(folder).eval()
    inputs = tiny_processor()(images=images[:1], text=texts)
    with torch.no_grad():
        out = model(**inputs)
    cosine = (out.image_embeds @ out.text_embeds.T)[0]
    assert ranked["indices"] == cosine.argsort(descending=True).tolist()
    assert torch.allclose(torch.tensor(ranked["scores"]), cosine.sort(descending=True).values, atol=1e-5)


def test_image_text_matching_pipeline(tmp_path, images):
    folder = _save(FlavaForImageTextMatching, tmp_path)
    pipe = pipeline("image-text-matching", model=str(folder))
    result = pipe(images[0], "a red square")
    model = FlavaForImageTextMatching.from_pretrained(folder).eval()
    inputs = tiny_processor()(images=images[:1], text=["a red square"])
    with torch.no_grad():
        expected = model(**inputs).itm_logits.softmax(dim=-1)[0, 1]
    score = result["score"] if isinstance(result, dict) else result[0]["score"]
    assert abs(score - float(expected)) < 1e-5


def test_vqa_pipeline(tmp_path, images):
    folder = _save(FlavaForSequenceClassification, tmp_path)
    pipe = pipeline("vlzoo-visual-question-answering", model=str(folder))
    answers = pipe(images[0], "what colour is it?", top_k=2)
    assert len(answers) == 2 and {a["answer"] for a in answers} <= {"no", "yes", "two"}
    assert answers[0]["score"] >= answers[1]["score"]
