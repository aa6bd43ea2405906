"""The visual-grounding pipeline on a toy box head with a letterbox processor: boxes in original pixels checked
against a hand computation of the letterbox inverse, batching, loading from a folder, drawing, and errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from tests.pipelines.toy_models import (
    IMAGE_SIZE,
    ToyFusionForGrounding,
    ToyFusionForImageTextMatching,
    build,
    toy_config,
    toy_letterbox,
)
from vlzoo.pipelines import VISUAL_GROUNDING_TASK, VisualGroundingPipeline, draw_grounding

pytestmark = pytest.mark.usefixtures("toys")

EXPRESSIONS = ["the red circle", "the second square from the left", "blue", "a star", "the thing at the top"]


@pytest.fixture(scope="module")
def model():
    return build(ToyFusionForGrounding, toy_config(), seed=6)


@pytest.fixture(scope="module")
def grounding(model, tokenizer):
    return pipeline(VISUAL_GROUNDING_TASK, model=model, tokenizer=tokenizer, image_processor=toy_letterbox())


def model_boxes(model, tokenizer, images, expressions, use_mask=True) -> torch.Tensor:
    """The model's normalised canvas boxes for the pairs, from a direct letterbox + tokenizer call."""
    pixels = toy_letterbox()(images=images, return_tensors="pt")
    text = tokenizer(expressions, return_tensors="pt", padding=True)
    mask = pixels["pixel_mask"] if use_mask else None
    with torch.no_grad():
        return model(**text, pixel_values=pixels["pixel_values"], pixel_mask=mask).pred_boxes


def by_hand(box: torch.Tensor, width: int, height: int) -> list[float]:
    """The letterbox inverse spelled out: canvas (cx, cy, w, h) -> original-pixel corners, clipped to the image."""
    scale = IMAGE_SIZE / max(width, height)
    left = (IMAGE_SIZE - round(width * scale)) // 2
    top = (IMAGE_SIZE - round(height * scale)) // 2
    cx, cy, w, h = (float(value) * IMAGE_SIZE for value in box)
    corners = [(cx - w / 2 - left) / scale, (cy - h / 2 - top) / scale, (cx + w / 2 - left) / scale]
    corners.append((cy + h / 2 - top) / scale)
    limits = [width, height, width, height]
    return [min(max(value, 0.0), limit) for value, limit in zip(corners, limits, strict=True)]


def box_of(result) -> list[float]:
    return [result["box"][key] for key in ("xmin", "ymin", "xmax", "ymax")]


def test_boxes_are_the_letterbox_inverse_of_the_models_boxes(grounding, model, tokenizer, images):
    assert isinstance(grounding, VisualGroundingPipeline)
    predicted = model_boxes(model, tokenizer, images, EXPRESSIONS)
    # The pipeline must pass pixel_mask: the toy model's boxes change without it.
    assert not torch.allclose(predicted, model_boxes(model, tokenizer, images, EXPRESSIONS, use_mask=False))
    for image, expression, box in zip(images, EXPRESSIONS, predicted, strict=True):
        result = grounding(image, expression)
        assert set(result) == {"expression", "box"} and result["expression"] == expression
        expected = by_hand(box, image.width, image.height)
        torch.testing.assert_close(torch.tensor(box_of(result)), torch.tensor(expected), atol=1e-4, rtol=0)
        assert 0 <= result["box"]["xmin"] <= result["box"]["xmax"] <= image.width
        assert 0 <= result["box"]["ymin"] <= result["box"]["ymax"] <= image.height


def test_batched_lists_equal_single_calls(grounding, images):
    singles = [grounding(image, expression) for image, expression in zip(images, EXPRESSIONS, strict=True)]
    for batch_size in (1, 3, 8):
        batched = grounding(images, EXPRESSIONS, batch_size=batch_size)
        assert [result["expression"] for result in batched] == EXPRESSIONS
        torch.testing.assert_close(
            torch.tensor([box_of(r) for r in batched]), torch.tensor([box_of(r) for r in singles]), atol=1e-4, rtol=0
        )
    pairs = [{"image": image, "expression": text} for image, text in zip(images, EXPRESSIONS, strict=True)]
    assert [box_of(r) for r in grounding(pairs)] == [box_of(r) for r in grounding(images, EXPRESSIONS)]
    several = grounding(images[0], EXPRESSIONS[:3])
    assert [r["expression"] for r in several] == EXPRESSIONS[:3]
    for result, text in zip(several, EXPRESSIONS[:3], strict=True):
        expected = torch.tensor(box_of(grounding(images[0], text)))
        torch.testing.assert_close(torch.tensor(box_of(result)), expected, atol=1e-4, rtol=0)


def test_image_paths_are_loaded(grounding, images, tmp_path):
    path = tmp_path / "image.png"
    images[1].save(path)
    assert grounding(str(path), EXPRESSIONS[1]) == grounding(images[1], EXPRESSIONS[1])


def test_folder_loads_the_grounding_head_and_letterbox(model, tokenizer, images, tmp_path):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    toy_letterbox().save_pretrained(tmp_path)
    loaded = pipeline(VISUAL_GROUNDING_TASK, model=str(tmp_path))
    assert type(loaded.model) is ToyFusionForGrounding
    assert type(loaded.image_processor).__name__ == "LetterboxImageProcessor"
    box = model_boxes(model, tokenizer, images[3:4], EXPRESSIONS[3:4])[0]
    expected = by_hand(box, images[3].width, images[3].height)
    torch.testing.assert_close(
        torch.tensor(box_of(loaded(images[3], EXPRESSIONS[3]))), torch.tensor(expected), atol=1e-4, rtol=0
    )


def test_an_image_processor_without_box_post_processing_is_refused(model, processor):
    with pytest.raises(TypeError, match="post_process_grounding"):
        pipeline(VISUAL_GROUNDING_TASK, model=model, processor=processor)


def test_a_model_without_the_grounding_head_is_refused(tokenizer):
    with pytest.raises(TypeError, match=r"grounding head \(`pred_boxes`.*AutoModelForVisualGrounding"):
        pipeline(
            VISUAL_GROUNDING_TASK,
            model=build(ToyFusionForImageTextMatching, toy_config()),
            tokenizer=tokenizer,
            image_processor=toy_letterbox(),
        )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p, im, bad: p(im), ValueError, "missing `expression`"),
        (lambda p, im, bad: p(im, " \n"), ValueError, "`expression` is empty"),
        (lambda p, im, bad: p(im, None, "x"), TypeError, "extra positional arguments"),
        (lambda p, im, bad: p(bad, "the square"), ValueError, r"image has PIL mode 'I;16'"),
        (lambda p, im, bad: p([im, bad], "the square"), ValueError, r"image\[1\] has PIL mode 'I;16'"),
        (lambda p, im, bad: p(np.zeros((0, 4, 3), np.uint8), "x"), ValueError, "empty image"),
    ],
)
def test_bad_inputs_raise_clear_errors(grounding, images, sixteen_bit, call, error, match):
    with pytest.raises(error, match=match):
        call(grounding, images[0], sixteen_bit)


def test_draw_grounding_draws_the_boxes_and_saves_a_png(tmp_path):
    image = Image.new("RGB", (60, 40), "white")
    results = [
        {"expression": "left", "box": {"xmin": 5.0, "ymin": 20.0, "xmax": 25.0, "ymax": 35.0}},
        {"expression": "right", "box": {"xmin": 35.2, "ymin": 10.0, "xmax": 55.0, "ymax": 30.0}},
    ]
    path = tmp_path / "grounding.png"
    drawn = draw_grounding(image, results, path, width=1)
    saved = Image.open(path)
    assert saved.format == "PNG" and saved.size == image.size
    assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(drawn))
    assert image.getpixel((5, 20)) == (255, 255, 255)  # the input image is left unchanged
    pixels = np.asarray(drawn)
    assert tuple(pixels[30, 5]) != (255, 255, 255) and tuple(pixels[30, 25]) != (255, 255, 255)  # box edges
    assert tuple(pixels[28, 15]) == (255, 255, 255)  # inside the first box, below its label
    assert (pixels[:18] != 255).any()  # the first label sits above its box
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    # One result, a path to the image and explicit labels work too.
    image.save(tmp_path / "input.png")
    one = draw_grounding(str(tmp_path / "input.png"), results[0], labels=["mine"])
    assert one.size == image.size and tuple(np.asarray(one)[30, 5]) != (255, 255, 255)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"results": [{"box": {"xmin": 1}}]}, ValueError, r"results\[0\] must be a visual-grounding result"),
        ({"results": "box"}, TypeError, "results must be a grounding result"),
        ({"labels": ["a", "b"]}, ValueError, r"labels must hold one text per result \(1\)"),
        ({"path": "drawing.jpg"}, ValueError, r"path must end in \.png"),
        ({"path": "missing/drawing.png"}, FileNotFoundError, "does not exist"),
        ({"width": 0}, ValueError, "width must be a positive int"),
    ],
)
def test_draw_grounding_errors(tmp_path, monkeypatch, arguments, error, match):
    monkeypatch.chdir(tmp_path)
    result = {"expression": "x", "box": {"xmin": 1.0, "ymin": 1.0, "xmax": 5.0, "ymax": 5.0}}
    call = {"image": Image.new("RGB", (10, 10)), "results": [result], **arguments}
    with pytest.raises(error, match=match):
        draw_grounding(**call)
    assert list(tmp_path.iterdir()) == []
