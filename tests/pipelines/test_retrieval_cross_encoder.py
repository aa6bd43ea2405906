"""image-text-retrieval with cross-encoders: ranking every pair by the matching head, two-stage retrieval with a
dual-encoder prefilter (the model itself or another pipeline), rank-score models, progress bars and errors."""

import pytest
import torch
from transformers import CLIPImageProcessorPil, CLIPModel, pipeline
from transformers.testing_utils import CaptureStderr
from transformers.utils import logging as hf_logging

from tests.pipelines.test_image_text_retrieval import _tiny_config, _tiny_tokenizer
from tests.pipelines.toy_models import (
    ToyFusionForImageTextMatching,
    ToyRankConfig,
    ToyRankModel,
    build,
    toy_config,
)
from vlzoo.pipelines import ImageTextRetrievalPipeline

pytestmark = pytest.mark.usefixtures("toys")

TASK = "image-text-retrieval"
TEXTS = ["a red circle", "green", "the blue sky at night", "white", "a dark square", "two stars"]


@pytest.fixture(scope="module")
def model():
    return build(ToyFusionForImageTextMatching, toy_config(), seed=7)


@pytest.fixture(scope="module")
def retrieve(model, processor):
    return pipeline(TASK, model=model, processor=processor)


def match_matrix(model, processor, images, texts) -> torch.Tensor:
    """`[n_images, n_texts]` match probabilities, every pair through the model directly."""
    rows = []
    for image in images:
        inputs = processor(images=[image] * len(texts), text=texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            rows.append(model(**inputs).itm_logits.softmax(-1)[:, 1])
    return torch.stack(rows)


def cosine_matrix(model, processor, images, texts) -> torch.Tensor:
    """`[n_images, n_texts]` cosine similarities of the model's own dual-encoder features."""
    with torch.no_grad():
        image_features = model.get_image_features(**processor(images=images, return_tensors="pt"))
        text_features = model.get_text_features(**processor(text=texts, return_tensors="pt", padding=True))
    image_features = torch.nn.functional.normalize(image_features, dim=-1)
    text_features = torch.nn.functional.normalize(text_features, dim=-1)
    return image_features @ text_features.T


def expected_ranking(scores: torch.Tensor, candidates: list[int] | None = None, top_k: int | None = None) -> dict:
    """Candidates (default: all) by descending score, ties in gallery order, the best `top_k`."""
    candidates = sorted(range(len(scores)) if candidates is None else candidates)
    ranked = sorted(candidates, key=lambda index: -float(scores[index]))[:top_k]
    return {"indices": ranked, "scores": [float(scores[index]) for index in ranked]}


def assert_result(result, expected):
    assert result["indices"] == expected["indices"]
    torch.testing.assert_close(torch.tensor(result["scores"]), torch.tensor(expected["scores"]), atol=1e-5, rtol=0)


def test_a_cross_encoder_scores_every_pair_with_its_matching_head(retrieve, model, processor, images):
    assert retrieve.rank_by == "itm"
    matches = match_matrix(model, processor, images, TEXTS)
    assert matches.std() > 1e-3
    assert_result(retrieve(images=images, texts=TEXTS[0]), expected_ranking(matches[:, 0]))
    assert_result(retrieve(images=images[2], texts=TEXTS), expected_ranking(matches[2]))
    by_text = retrieve(images=images, texts=TEXTS[:3], query="text", top_k=2, batch_size=3)
    for index, result in enumerate(by_text):
        assert_result(result, expected_ranking(matches[:, index], top_k=2))
    by_image = retrieve(images=images[:2], texts=TEXTS, query="image", batch_size=1)
    for index, result in enumerate(by_image):
        assert_result(result, expected_ranking(matches[index]))


def test_the_model_prefilters_itself_when_it_is_also_a_dual_encoder(retrieve, model, processor, images):
    matches = match_matrix(model, processor, images, TEXTS)
    cosine = cosine_matrix(model, processor, images, TEXTS)
    for text_index in range(3):
        candidates = expected_ranking(cosine[:, text_index], top_k=3)["indices"]
        result = retrieve(images=images, texts=TEXTS[text_index], prefilter_k=3)
        assert_result(result, expected_ranking(matches[:, text_index], candidates))
    # The stages differ for this model, so re-ranking the prefilter's candidates is seen in the order.
    assert any(
        expected_ranking(cosine[:, t], top_k=3)["indices"]
        != retrieve(images=images, texts=TEXTS[t], prefilter_k=3)["indices"]
        for t in range(len(TEXTS))
    )
    # With rank_by="similarity" the same model is a plain dual encoder.
    similarity = pipeline(TASK, model=model, processor=processor, rank_by="similarity")
    assert_result(similarity(images=images, texts=TEXTS[1]), expected_ranking(cosine[:, 1]))


def test_another_dual_encoder_prefilters(model, processor, images, tmp_path):
    torch.manual_seed(0)
    clip = CLIPModel(_tiny_config()).eval()
    clip_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    first_stage = pipeline(TASK, model=clip, tokenizer=_tiny_tokenizer(), image_processor=clip_processor)
    two_stage = pipeline(TASK, model=model, processor=processor, prefilter=first_stage)
    matches = match_matrix(model, processor, images, TEXTS)
    for text_index in (0, 4):
        clip_top = first_stage(images=images, texts=TEXTS[text_index], top_k=2)["indices"]
        result = two_stage(images=images, texts=TEXTS[text_index], prefilter_k=2)
        assert_result(result, expected_ranking(matches[:, text_index], clip_top))
    # The default prefilter_k (32) keeps this whole gallery: the cross-encoder ranks all of it.
    assert_result(two_stage(images=images, texts=TEXTS[0]), expected_ranking(matches[:, 0]))
    # A folder is loaded as the first-stage pipeline.
    clip.save_pretrained(tmp_path)
    _tiny_tokenizer().save_pretrained(tmp_path)
    clip_processor.save_pretrained(tmp_path)
    from_folder = pipeline(TASK, model=model, processor=processor, prefilter=str(tmp_path), prefilter_k=2)
    assert isinstance(from_folder.prefilter, ImageTextRetrievalPipeline)
    assert (
        from_folder(images=images, texts=TEXTS[4])["indices"]
        == two_stage(images=images, texts=TEXTS[4], prefilter_k=2)["indices"]
    )


def test_rank_score_models_rank_by_their_declared_output(processor, images):
    rank_model = build(ToyRankModel, toy_config(config_class=ToyRankConfig), seed=8)
    ranker = pipeline(TASK, model=rank_model, processor=processor)
    inputs = processor(images=images, text=[TEXTS[2]] * len(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        rank_scores = rank_model(**inputs).logits[:, 0]
    assert_result(ranker(images=images, texts=TEXTS[2], top_k=3), expected_ranking(rank_scores, top_k=3))


def test_batch_sizes_and_preprocessing_paths_agree(model, processor, images):
    separate = pipeline(TASK, model=model, tokenizer=processor.tokenizer, image_processor=processor.image_processor)
    together = pipeline(TASK, model=model, processor=processor)
    expected = together(images=images, texts=TEXTS, query="image")
    for pipe, batch_size in ((separate, 1), (separate, 4), (together, 32)):
        for result, reference in zip(
            pipe(images=images, texts=TEXTS, query="image", batch_size=batch_size), expected, strict=True
        ):
            assert_result(result, reference)


def test_progress_bar_for_many_pairs(retrieve, images):
    hf_logging.enable_progress_bar()
    try:
        with CaptureStderr() as shown:
            retrieve(images=images, texts=TEXTS, query="image", batch_size=2)  # 15 model calls
        with CaptureStderr() as small:
            retrieve(images=images, texts=TEXTS[0], batch_size=2)  # 3 model calls
        with CaptureStderr() as off:
            retrieve(images=images, texts=TEXTS, query="image", batch_size=2, progress_bar=False)
        with CaptureStderr() as on:
            retrieve(images=images, texts=TEXTS[0], progress_bar=True)
    finally:
        hf_logging.disable_progress_bar()
    assert "image-text pairs" in shown.err and "30/30" in shown.err
    assert "image-text pairs" not in small.err and "image-text pairs" not in off.err
    assert "5/5" in on.err


def test_cross_encoder_images_follow_the_image_rule(retrieve, images, sixteen_bit):
    with pytest.raises(ValueError, match=r"images\[1\] has PIL mode 'I;16'"):
        retrieve(images=[images[0], sixteen_bit], texts="a square")
    with pytest.raises(ValueError, match=r"images has PIL mode 'I;16'"):
        retrieve(images=sixteen_bit, texts=TEXTS)


def test_errors(model, processor, images):
    rank_model = build(ToyRankModel, toy_config(config_class=ToyRankConfig))
    ranker = pipeline(TASK, model=rank_model, processor=processor)
    with pytest.raises(ValueError, match="`prefilter_k` needs a prefilter: ToyRankModel is not a dual encoder"):
        ranker(images=images, texts="a square", prefilter_k=2)
    with pytest.raises(ValueError, match="`prefilter_k` must be a positive integer"):
        ranker(images=images, texts="a square", prefilter_k=0)
    with pytest.raises(TypeError, match="`progress_bar` must be True, False or None"):
        ranker(images=images, texts="a square", progress_bar="yes")
    with pytest.raises(TypeError, match="rank_by='similarity' needs a dual encoder"):
        pipeline(TASK, model=rank_model, processor=processor, rank_by="similarity")
    with pytest.raises(ValueError, match="`rank_by` must be one of"):
        pipeline(TASK, model=model, processor=processor, rank_by="cosine")
    with pytest.raises(TypeError, match="`prefilter` must be an image-text-retrieval pipeline"):
        pipeline(TASK, model=model, processor=processor, prefilter=model)
    similarity = pipeline(TASK, model=model, processor=processor, rank_by="similarity")
    with pytest.raises(ValueError, match="nothing to re-rank"):
        pipeline(TASK, model=model, processor=processor, rank_by="similarity", prefilter=similarity)
    with pytest.raises(ValueError, match="`prefilter` must rank by similarity"):
        pipeline(TASK, model=model, processor=processor, prefilter=ranker)
    with pytest.raises(ValueError, match="use `top_k` instead"):
        similarity(images=images, texts="a square", prefilter_k=2)
    with pytest.raises(TypeError, match="rank_by='itm' needs a model with an image-text matching head"):
        pipeline(TASK, model=similarity.model.fusion, processor=processor, rank_by="itm")
