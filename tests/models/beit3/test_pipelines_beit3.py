"""BEiT-3 heads through transformers' and vlzoo's pipelines, loaded from saved folders."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the family and vlzoo's pipelines)
from tests.models.beit3.tester import TESTER, tiny_config
from vlzoo.models.beit3.modeling_beit3 import (
    Beit3ForImageClassification,
    Beit3ForImageTextRetrieval,
    Beit3ForQuestionAnswering,
)

IMAGE = Image.new("RGB", (45, 37), (220, 30, 30))


def _save(model_class, folder: Path, **overrides) -> Path:
    torch.manual_seed(0)
    model_class(tiny_config(**overrides)).eval().save_pretrained(folder)
    TESTER.tiny_processor().save_pretrained(folder)
    return folder


def test_zero_shot_image_classification(tmp_path: Path):
    folder = _save(Beit3ForImageTextRetrieval, tmp_path / "retrieval")
    pipe = pipeline("zero-shot-image-classification", model=str(folder))
    results = pipe(IMAGE, candidate_labels=["red circle", "blue square", "green triangle"])
    assert [r["label"] for r in results] and abs(sum(r["score"] for r in results) - 1) < 1e-5
    model = Beit3ForImageTextRetrieval.from_pretrained(folder).eval()
    processor = TESTER.tiny_processor()
    texts = [f"This is a photo of {label}." for label in ("red circle", "blue square", "green triangle")]
    with torch.no_grad():
        logits = model(**processor(images=[IMAGE], text=texts)).logits_per_image[0]
    expected = dict(zip(("red circle", "blue square", "green triangle"), logits.softmax(-1).tolist(), strict=True))
    for result in results:
        assert abs(result["score"] - expected[result["label"]]) < 1e-5


def test_image_text_retrieval_and_feature_extraction(tmp_path: Path):
    folder = _save(Beit3ForImageTextRetrieval, tmp_path / "retrieval")
    # the folder's AutoModel is the backbone: the retrieval head is passed as a model object
    processor = TESTER.tiny_processor()
    retrieval = pipeline(
        "image-text-retrieval",
        model=Beit3ForImageTextRetrieval.from_pretrained(folder),
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
    )
    ranked = retrieval(IMAGE, texts=["a red circle", "a blue square"])
    assert len(ranked) == 2
    features = pipeline("image-feature-extraction", model=str(folder))
    assert torch.tensor(features(IMAGE)).shape[-1] == tiny_config().hidden_size


def test_vqa_pipeline_returns_top_answers(tmp_path: Path):
    folder = _save(Beit3ForQuestionAnswering, tmp_path / "vqa")
    pipe = pipeline("vlzoo-visual-question-answering", model=str(folder))
    answers = pipe(IMAGE, "what color is the circle ?", top_k=3)
    assert len(answers) == 3 and all(a["answer"].startswith("answer_") for a in answers)
    assert answers[0]["score"] >= answers[1]["score"] >= answers[2]["score"]
    with pytest.raises(ValueError, match="empty"):
        pipe(IMAGE, "   ")


def test_image_classification_pipeline(tmp_path: Path):
    folder = tmp_path / "in1k"
    torch.manual_seed(0)
    Beit3ForImageClassification(tiny_config()).eval().save_pretrained(folder)
    TESTER.tiny_processor().image_processor.save_pretrained(folder)
    results = pipeline("image-classification", model=str(folder))(IMAGE, top_k=2)
    assert len(results) == 2 and results[0]["label"].startswith("answer_")


def test_nlvr2_documented_model_call():
    """NLVR2 has no pipeline: the class docstring's example runs as written, and the processor call it describes
    (two images of a pair as a batch of two, then `view(1, 2, ...)`) is the pair the model expects."""
    import doctest

    from vlzoo.models.beit3.modeling_beit3 import Beit3ForVisualReasoning

    # the example sits in a markdown code fence (transformers' docstring style): the fence lines are not output
    text = "\n".join(line for line in Beit3ForVisualReasoning.__doc__.splitlines() if line.strip() != "```")
    example = doctest.DocTestParser().get_doctest(text, {}, "Beit3ForVisualReasoning", None, 0)
    result = doctest.DocTestRunner().run(example)
    assert result.attempted >= 5 and result.failed == 0
    torch.manual_seed(0)
    model = Beit3ForVisualReasoning(tiny_config(id2label={0: "False", 1: "True"}, label2id={"False": 0, "True": 1}))
    processor = TESTER.tiny_processor()
    left, right = IMAGE, Image.new("RGB", (30, 50), (10, 200, 10))
    inputs = processor(images=[left, right], text="the left image is red")
    pair = inputs["pixel_values"].view(1, 2, *inputs["pixel_values"].shape[1:])
    separate = torch.stack([processor(images=[image])["pixel_values"][0] for image in (left, right)])[None]
    assert torch.equal(pair, separate)
    with torch.no_grad():
        logits = model.eval()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                              pixel_values=pair).logits  # fmt: skip
        swapped = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        pixel_values=pair.flip(1)).logits  # fmt: skip
    assert logits.shape == (1, 2) and not torch.allclose(logits, swapped)
