"""TransVG preprocessing against the original test transform and feature routine (fixture transvg-preprocess)."""

import json

import pytest
import torch
from PIL import Image

from vlzoo.models.transvg import TransvgImageProcessor, TransvgProcessor
from vlzoo.models.transvg.processing_transvg import bert_uncased_tokenizer

CASE = "transvg/transvg-preprocess"


@pytest.fixture
def preprocess(fixtures_dir, fixture_io):
    folder = fixtures_dir / "transvg" / "transvg-preprocess"
    inputs = json.loads((folder / "inputs.json").read_text())
    images = [Image.open(folder / entry["file"]) for entry in inputs["images"]]
    return inputs, images, fixture_io(CASE)


def test_letterbox_at_64_matches_the_original_exactly(preprocess):
    _, images, io = preprocess
    out = TransvgImageProcessor(size=64)(images, return_tensors="pt")
    torch.testing.assert_close(out["pixel_values"], io["output.pixel_values_64"], rtol=0, atol=1e-5)
    assert torch.equal(1 - out["pixel_mask"], io["output.img_mask_64"])  # the original's mask is 1 = padding


def test_letterbox_at_640_matches_the_original(preprocess):
    _, images, io = preprocess
    out = TransvgImageProcessor()(images, return_tensors="pt")  # 640 by default
    pixels, mask = out["pixel_values"], out["pixel_mask"]
    torch.testing.assert_close(pixels[:, :, 3::8, 5::8], io["output.pixel_values_640_sub"], rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels.sum(-1), io["output.pixel_values_640_rowsum"], rtol=0, atol=1e-3)
    assert torch.equal(1 - mask[:, 3::8, 5::8], io["output.img_mask_640_sub"])


@pytest.mark.parametrize("size", [64, 640])
def test_geometry_and_boxes(preprocess, size):
    inputs, images, io = preprocess
    processor = TransvgImageProcessor(size=size)
    geometry = [processor.letterbox_geometry(image.height, image.width) for image in images]
    found = torch.tensor([[g.resized_width, g.resized_height, g.left, g.top] for g in geometry])
    assert torch.equal(found, io[f"output.geometry_{size}"])
    sizes = [(image.height, image.width) for image in images]
    boxes = processor.transform_boxes(io["input.boxes_xyxy"], sizes)
    torch.testing.assert_close(boxes, io[f"output.boxes_{size}"], rtol=0, atol=1e-6)
    # and back: post_process_grounding inverts the transform (boxes inside the image are not clipped)
    back = processor.post_process_grounding(boxes, sizes)
    torch.testing.assert_close(back, io["input.boxes_xyxy"], rtol=0, atol=1e-3)


@pytest.mark.parametrize("length", [20, 40])
def test_token_ids_match_the_original_feature_routine(preprocess, length):
    inputs, _, io = preprocess
    texts = [entry["raw"] for entry in inputs["texts"]]
    processor = TransvgProcessor(tokenizer=bert_uncased_tokenizer(length))
    encoded = processor(text=texts)
    assert torch.equal(encoded["input_ids"], io[f"output.input_ids_len{length}"])
    assert torch.equal(encoded["attention_mask"], io[f"output.attention_mask_len{length}"])


def test_long_expressions_are_truncated_with_a_warning():
    from transformers.testing_utils import CaptureLogger

    from vlzoo.models.transvg import processing_transvg

    processor = TransvgProcessor(tokenizer=bert_uncased_tokenizer(8))
    long = "the second small brown dog from the right standing behind the fence"
    with CaptureLogger(processing_transvg.logger) as captured:
        encoded = processor(text=[long, "a dog"])
    assert "expressions [0]" in captured.out and "truncated" in captured.out
    assert encoded["input_ids"].shape == (2, 8) and encoded["input_ids"][0, -1] == 102


def test_pair_form_is_one_expression():
    # the original turns "a ||| b" into a text pair and crashes; here it is one expression with '|' punctuation
    processor = TransvgProcessor(tokenizer=bert_uncased_tokenizer(20))
    ids = processor(text=["left dog ||| brown"])["input_ids"][0].tolist()
    assert ids[: ids.index(102) + 1] == [101, 2187, 3899, 1064, 1064, 1064, 2829, 102]


def test_processor_round_trip(tmp_path, preprocess):
    _, images, _ = preprocess
    processor = TransvgProcessor(image_processor=TransvgImageProcessor(size=64), tokenizer=bert_uncased_tokenizer(12))
    processor.save_pretrained(tmp_path)
    loaded = TransvgProcessor.from_pretrained(tmp_path)
    a = processor(images=images[:2], text=["a dog", "the cat on the left"])
    b = loaded(images=images[:2], text=["a dog", "the cat on the left"])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
