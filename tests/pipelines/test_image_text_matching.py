"""The image-text-matching pipeline on toy matching heads: scores equal the model's own match probability (or its
declared rank score), input forms, batching, loading from a folder and errors."""

import pytest
import torch
from transformers import pipeline

from tests.pipelines.toy_models import (
    ToyFusionForImageTextMatching,
    ToyFusionForVqa,
    ToyRankConfig,
    ToyRankModel,
    build,
    toy_config,
)
from vlzoo.pipelines import IMAGE_TEXT_MATCHING_TASK, AutoModelForImageTextMatching, ImageTextMatchingPipeline
from vlzoo.pipelines.task_heads import ITM_SCORE_OUTPUTS, itm_score_output, match_scores

pytestmark = pytest.mark.usefixtures("toys")

TEXTS = ["a red circle", "two green squares on the left", "blue", "a small yellow star next to a big one", "grey"]


@pytest.fixture(scope="module")
def model():
    return build(ToyFusionForImageTextMatching, toy_config(), seed=4)


@pytest.fixture(scope="module")
def itm(model, processor):
    return pipeline(IMAGE_TEXT_MATCHING_TASK, model=model, processor=processor)


def reference(model, processor, images, texts) -> torch.Tensor:
    """`softmax(itm_logits)[:, 1]` for the pairs `(images[i], texts[i])`, from one direct padded batch."""
    inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).itm_logits.softmax(-1)[:, 1]


def scores_of(results) -> torch.Tensor:
    return torch.tensor([result["score"] for result in results])


def test_one_pair_scores_the_match_probability(itm, model, processor, images):
    assert isinstance(itm, ImageTextMatchingPipeline)
    result = itm(images[0], TEXTS[0])
    assert set(result) == {"score"}
    torch.testing.assert_close(torch.tensor([result["score"]]), reference(model, processor, images[:1], TEXTS[:1]))
    assert itm({"image": images[0], "text": TEXTS[0]}) == result
    assert itm(image=images[0], text=TEXTS[0]) == result


def test_lists_are_batched_and_equal_single_calls(itm, model, processor, images):
    expected = reference(model, processor, images, TEXTS)
    assert expected.std() > 1e-4  # the pairs score differently, so a mix-up would show
    singles = scores_of([itm(image, text) for image, text in zip(images, TEXTS, strict=True)])
    torch.testing.assert_close(singles, expected)
    for batch_size in (1, 2, 5, 8):
        torch.testing.assert_close(scores_of(itm(images, TEXTS, batch_size=batch_size)), expected)
    # One image with several texts, and several images with one text.
    torch.testing.assert_close(scores_of(itm(images[1], TEXTS)), reference(model, processor, [images[1]] * 5, TEXTS))
    torch.testing.assert_close(scores_of(itm(images, TEXTS[3])), reference(model, processor, images, [TEXTS[3]] * 5))


def test_rank_score_models_are_read_by_their_declared_output(processor, images):
    rank_model = build(ToyRankModel, toy_config(config_class=ToyRankConfig), seed=5)
    assert itm_score_output(rank_model) == "logits" and "logits" in ITM_SCORE_OUTPUTS
    rank = pipeline(IMAGE_TEXT_MATCHING_TASK, model=rank_model, processor=processor)
    inputs = processor(images=images[:3], text=TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        outputs = rank_model(**inputs)
    torch.testing.assert_close(scores_of(rank(images[:3], TEXTS[:3])), outputs.logits[:, 0])
    # Its ITM logits would give other scores: the declared output is the one used.
    assert not torch.allclose(outputs.logits[:, 0], outputs.itm_logits.softmax(-1)[:, 1])


def test_match_scores_rejects_malformed_outputs(model):
    with pytest.raises(ValueError, match=r"`itm_logits` must have shape \[batch, 2\]"):
        match_scores({"itm_logits": torch.zeros(2, 3)}, model, "test")
    with pytest.raises(TypeError, match="reads the model output `itm_logits`"):
        match_scores({"logits": torch.zeros(2, 2)}, model, "test")


def test_folder_loads_through_the_matching_auto_class(model, processor, images, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert type(AutoModelForImageTextMatching.from_pretrained(tmp_path)) is ToyFusionForImageTextMatching
    loaded = pipeline(IMAGE_TEXT_MATCHING_TASK, model=str(tmp_path))
    torch.testing.assert_close(
        scores_of(loaded(images[:2], TEXTS[:2])), reference(model, processor, images[:2], TEXTS[:2])
    )


def test_images_follow_the_image_processors_rule(itm, sixteen_bit):
    with pytest.raises(ValueError, match=r"image has PIL mode 'I;16'"):
        itm(sixteen_bit, "a square")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p, im: p(text="a square"), ValueError, "missing `image`"),
        (lambda p, im: p(im), ValueError, "missing `text`"),
        (lambda p, im: p(im, ""), ValueError, "`text` is empty"),
        (lambda p, im: p(im, [b"bytes"]), TypeError, r"`text\[0\]` must be a string; got bytes"),
        (lambda p, im: p([im], ["a", "b"]), ValueError, "different lengths"),
        (lambda p, im: p(im, "a", top_k=2), TypeError, r"unexpected arguments \['top_k'\]"),
    ],
)
def test_bad_inputs_raise_clear_errors(itm, images, call, error, match):
    with pytest.raises(error, match=match):
        call(itm, images[0])


def test_a_model_without_the_matching_head_is_refused(processor):
    with pytest.raises(TypeError, match=r"image-text matching head.*AutoModelForImageTextMatching"):
        pipeline(IMAGE_TEXT_MATCHING_TASK, model=build(ToyFusionForVqa, toy_config()), processor=processor)


def test_a_folder_saved_without_the_matching_head_is_refused(processor, tmp_path):
    """A VQA folder of the same config type loads through the matching Auto class with a fresh ITM head: refused."""
    build(ToyFusionForVqa, toy_config()).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"saved from ToyFusionForVqa .* would score at random"):
        pipeline(IMAGE_TEXT_MATCHING_TASK, model=str(tmp_path))
