"""METER through the shared pipelines: VQA answers, image-text matching scores and cross-encoder retrieval."""

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the families and the pipelines)
from vlzoo.models.meter import MeterForImageTextRetrieval, MeterForQuestionAnswering, MeterProcessor

from .tester import tiny_config

IMAGES = [
    Image.new("RGB", size, color) for size, color in (((40, 30), "red"), ((33, 49), "blue"), ((64, 64), "green"))
]
TEXTS = ["a red square", "a blue thing", "green"]


def _save(cls, folder):
    torch.manual_seed(0)
    config = tiny_config()
    model = cls(config).eval()
    if cls is MeterForImageTextRetrieval:
        with torch.no_grad():  # a rank head that differs from the ITM match row
            model.rank_output.weight.normal_()
    model.save_pretrained(folder)
    processor = MeterProcessor.from_model_config(config)
    processor.save_pretrained(folder)
    return model, processor


def _direct(model, processor, images, texts):
    batch = processor(images=images, text=texts)
    with torch.no_grad():
        return model(**batch)


def test_vqa_pipeline_returns_the_heads_best_answers(tmp_path):
    model, processor = _save(MeterForQuestionAnswering, tmp_path)
    answers = pipeline("vlzoo-visual-question-answering", model=str(tmp_path), top_k=3)(IMAGES[0], "what color?")
    probabilities = _direct(model, processor, IMAGES[:1], ["what color?"]).logits[0].sigmoid()
    best = probabilities.topk(3)
    assert [a["answer"] for a in answers] == [model.config.id2label[int(i)] for i in best.indices]
    torch.testing.assert_close(torch.tensor([a["score"] for a in answers]), best.values, rtol=0, atol=1e-5)


def test_image_text_matching_scores_pairs_by_the_rank_score(tmp_path):
    model, processor = _save(MeterForImageTextRetrieval, tmp_path)
    scores = pipeline("image-text-matching", model=str(tmp_path))(IMAGES, TEXTS)
    expected = _direct(model, processor, IMAGES, TEXTS).logits[:, 0]
    torch.testing.assert_close(torch.tensor([s["score"] for s in scores]), expected, rtol=0, atol=1e-5)


def test_cross_encoder_retrieval_ranks_a_gallery(tmp_path):
    model, processor = _save(MeterForImageTextRetrieval, tmp_path)
    result = pipeline("image-text-retrieval", model=str(tmp_path))(images=IMAGES, texts="a red square")
    expected = _direct(model, processor, IMAGES, ["a red square"] * 3).logits[:, 0]
    assert result["indices"] == expected.argsort(descending=True).tolist()
    torch.testing.assert_close(torch.tensor(result["scores"]), expected.sort(descending=True).values, atol=1e-5,
                               rtol=0)  # fmt: skip


def test_matching_pipeline_refuses_a_model_without_the_itm_head(tmp_path):
    model, processor = _save(MeterForQuestionAnswering, tmp_path)
    with pytest.raises(TypeError, match="image-text matching head"):
        pipeline(
            "image-text-matching",
            model=model,
            tokenizer=processor.tokenizer,
            image_processor=processor.image_processor,
        )(IMAGES[0], TEXTS[0])
