"""The VQA pipeline on a toy VQA head: top-k answers equal the model's own transformed logits, batching, loading
from a folder, input forms and errors."""

import pytest
import torch
from transformers import pipeline

from tests.pipelines.toy_models import (
    ANSWERS,
    ToyFusionForImageTextMatching,
    ToyFusionForVqa,
    ToyFusionModel,
    build,
    toy_config,
)
from vlzoo.pipelines import VQA_TASK, VisualQuestionAnsweringPipeline

pytestmark = pytest.mark.usefixtures("toys")

QUESTIONS = ["what colour is it?", "how many circles are there in the picture", "is it red", "shape?", "why"]


@pytest.fixture(scope="module")
def model():
    return build(ToyFusionForVqa, toy_config(), seed=3)


@pytest.fixture(scope="module")
def vqa(model, processor):
    return pipeline(VQA_TASK, model=model, processor=processor)


def reference_logits(model, processor, image, question) -> torch.Tensor:
    """The model's logits `[num_labels]` for one pair, from a direct processor and model call."""
    inputs = processor(images=[image], text=[question], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).logits[0]


def expected_answers(logits: torch.Tensor, top_k: int, function: str = "sigmoid") -> list[dict]:
    scores = {"sigmoid": logits.sigmoid(), "softmax": logits.softmax(-1), "none": logits}[function]
    order = sorted(range(len(ANSWERS)), key=lambda index: -float(scores[index]))[:top_k]
    return [{"answer": ANSWERS[index], "score": float(scores[index])} for index in order]


def assert_answers(result, expected):
    assert [item["answer"] for item in result] == [item["answer"] for item in expected]
    torch.testing.assert_close(
        torch.tensor([item["score"] for item in result]), torch.tensor([item["score"] for item in expected])
    )


def test_reference_scores_are_distinct(model, processor, images):
    # Rankings can only be told apart if the toy model scores answers and pairs differently.
    logits = torch.stack([reference_logits(model, processor, image, QUESTIONS[0]) for image in images])
    assert logits.std(dim=1).min() > 1e-3 and logits.std(dim=0).max() > 1e-3


def test_top_k_answers_are_the_models_sigmoid_scores(vqa, model, processor, images):
    assert isinstance(vqa, VisualQuestionAnsweringPipeline)
    logits = reference_logits(model, processor, images[0], QUESTIONS[0])
    result = vqa(images[0], QUESTIONS[0])
    assert len(result) == 5 and set(result[0]) == {"answer", "score"}
    assert_answers(result, expected_answers(logits, 5))
    assert_answers(vqa(image=images[0], question=QUESTIONS[0], top_k=2), expected_answers(logits, 2))
    assert_answers(vqa({"image": images[0], "question": QUESTIONS[0]}, top_k=50), expected_answers(logits, 7))


@pytest.mark.parametrize("function", ["softmax", "none"])
def test_function_to_apply(vqa, model, processor, images, function):
    logits = reference_logits(model, processor, images[1], QUESTIONS[2])
    result = vqa(images[1], QUESTIONS[2], top_k=7, function_to_apply=function)
    assert_answers(result, expected_answers(logits, 7, function))
    if function == "softmax":
        assert sum(item["score"] for item in result) == pytest.approx(1.0, abs=1e-6)


def test_batched_lists_equal_single_calls(model, processor, images):
    vqa = pipeline(VQA_TASK, model=model, processor=processor, top_k=3)
    singles = [vqa(image, question) for image, question in zip(images, QUESTIONS, strict=True)]
    for batch_size in (1, 2, 8):
        batched = vqa(images, QUESTIONS, batch_size=batch_size)
        assert len(batched) == len(images)
        for result, single in zip(batched, singles, strict=True):
            assert_answers(result, single)
    as_dicts = vqa([{"image": image, "question": q} for image, q in zip(images, QUESTIONS, strict=True)])
    for result, single in zip(as_dicts, singles, strict=True):
        assert_answers(result, single)
    # One question for several images, and several questions for one image.
    for index, result in enumerate(vqa(images, QUESTIONS[0])):
        assert_answers(result, vqa(images[index], QUESTIONS[0]))
    for index, result in enumerate(vqa(images[2], QUESTIONS)):
        assert_answers(result, vqa(images[2], QUESTIONS[index]))


def test_folder_loads_the_vqa_head_and_processor(model, processor, images, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = pipeline(VQA_TASK, model=str(tmp_path))
    assert type(loaded.model) is ToyFusionForVqa
    assert type(loaded.processor).__name__ == "MsClipProcessor"
    logits = reference_logits(model, processor, images[3], QUESTIONS[1])
    assert_answers(loaded(images[3], QUESTIONS[1]), expected_answers(logits, 5))


def test_tokenizer_and_image_processor_without_processor(model, processor, images):
    separate = pipeline(
        VQA_TASK, model=model, tokenizer=processor.tokenizer, image_processor=processor.image_processor
    )
    assert separate.processor is None
    logits = reference_logits(model, processor, images[4], QUESTIONS[3])
    assert_answers(separate(images[4], QUESTIONS[3]), expected_answers(logits, 5))


def test_images_follow_the_image_processors_rule(vqa, images, sixteen_bit):
    with pytest.raises(ValueError, match=r"image has PIL mode 'I;16'"):
        vqa(sixteen_bit, "what is it")
    with pytest.raises(ValueError, match=r"image\[1\] has PIL mode 'I;16'"):
        vqa([images[0], sixteen_bit], "what is it")
    with pytest.raises(ValueError, match=r"inputs\[0\]\['image'\] has PIL mode 'I;16'"):
        vqa([{"image": sixteen_bit, "question": "what is it"}])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p, im: p(question="what"), ValueError, "missing `image`"),
        (lambda p, im: p(im), ValueError, "missing `question`"),
        (lambda p, im: p(None), ValueError, "missing `image` and `question`"),
        (lambda p, im: p(im, "   "), ValueError, "`question` is empty"),
        (lambda p, im: p(im, ["ok", ""]), ValueError, r"`question\[1\]` is empty"),
        (lambda p, im: p(im, 3), TypeError, r"`question` must be a string; got int"),
        (lambda p, im: p([im, im], ["a", "b", "c"]), ValueError, "different lengths"),
        (lambda p, im: p([], "what"), ValueError, "`image` is an empty list"),
        (lambda p, im: p([None], "what"), ValueError, r"`image\[0\]` is None"),
        (lambda p, im: p({"image": im, "text": "what"}), ValueError, r"exactly the keys \['image', 'question'\]"),
        (lambda p, im: p(im, "what", top_k=0), ValueError, "`top_k` must be a positive integer"),
        (lambda p, im: p(im, "what", function_to_apply="relu"), ValueError, "`function_to_apply` must be one of"),
        (lambda p, im: p(im, "what", topk=2), TypeError, r"unexpected arguments \['topk'\]"),
        (lambda p, im: p([im], "what", batch_size=0), ValueError, "`batch_size` must be a positive integer"),
        (lambda p, im: p(im, "what", tokenizer_kwargs=["x"]), TypeError, "`tokenizer_kwargs` must be a dict"),
        (lambda p, im: p(12, "what"), TypeError, r"image must be a PIL.Image.Image"),
    ],
)
def test_bad_inputs_raise_clear_errors(vqa, images, call, error, match):
    with pytest.raises(error, match=match):
        call(vqa, images[0])


@pytest.mark.parametrize("model_class", [ToyFusionModel, ToyFusionForImageTextMatching])
def test_a_model_without_the_vqa_head_is_refused(processor, model_class):
    with pytest.raises(TypeError, match=r"needs a model with a VQA head.*AutoModelForVisualQuestionAnswering"):
        pipeline(VQA_TASK, model=build(model_class, toy_config()), processor=processor)


def test_missing_preprocessing_is_named(model, processor):
    with pytest.raises(TypeError, match="image_processor is missing"):
        VisualQuestionAnsweringPipeline(model=model, tokenizer=processor.tokenizer)


def test_tokenizer_kwargs_reach_the_tokenizer(vqa, model, processor, images):
    question = QUESTIONS[1]
    inputs = processor(images=[images[0]], text=[question], return_tensors="pt", truncation=True, max_length=4)
    assert inputs["input_ids"].shape[1] == 4  # the question is cut, so the answer scores change
    with torch.no_grad():
        truncated = model(**inputs).logits[0]
    assert not torch.allclose(truncated, reference_logits(model, processor, images[0], question))
    result = vqa(images[0], question, tokenizer_kwargs={"max_length": 4}, top_k=7)
    assert_answers(result, expected_answers(truncated, 7))


def test_pixel_values_follow_the_model_dtype(model, processor, images):
    half = build(ToyFusionForVqa, toy_config(), seed=3).to(torch.bfloat16)
    result = pipeline(VQA_TASK, model=half, processor=processor)(images[0], QUESTIONS[0], top_k=7)
    expected = expected_answers(reference_logits(model, processor, images[0], QUESTIONS[0]), 7)
    scores = {item["answer"]: item["score"] for item in result}
    for item in expected:
        assert scores[item["answer"]] == pytest.approx(item["score"], abs=0.05)
