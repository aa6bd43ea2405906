"""FLAVA preprocessing against the original transform and tokenizer (fixtures flava-preprocess, flava-tokenizer)."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.models.flava import VlzooFlavaImageProcessor, VlzooFlavaProcessor
from vlzoo.models.flava.image_processing_flava import block_mask

IMAGES = ("img_rgb_40x30", "img_gray_17x23", "img_rgba_25x19")


@pytest.mark.parametrize("name", IMAGES)
def test_image_transform_and_codebook_pixels_match_the_original(name, fixtures_dir, fixture_io):
    io = fixture_io("flava/flava-preprocess")
    image = Image.open(fixtures_dir / "flava" / "flava-preprocess" / f"{name}.png")
    out = VlzooFlavaImageProcessor()(image, return_codebook_pixels=True, return_tensors="pt")
    assert (out["pixel_values"][0] - io[f"output.{name}.image"]).abs().max() <= 1e-6
    assert (out["codebook_pixel_values"][0] - io[f"output.{name}.image_for_codebook"]).abs().max() <= 1e-6


@pytest.mark.parametrize("name", IMAGES)
def test_block_mask_is_a_line_exact_port(name, fixture_io):
    """The fixture re-seeds Python's `random` with 0 before each image; `random.Random(0)` draws the same."""
    expected = fixture_io("flava/flava-preprocess")[f"output.{name}.image_patches_mask"]
    mask = block_mask(14, 75, min_num_patches=16, rng=random.Random(0))
    assert torch.equal(torch.from_numpy(mask), expected)


def test_processor_masks_follow_its_settings():
    processor = VlzooFlavaImageProcessor(mask_seed=3)
    images = [Image.new("RGB", (30, 20), (i * 40, 0, 0)) for i in range(4)]
    out = processor(images, return_image_mask=True, return_tensors="pt")
    masks = out["bool_masked_pos"]
    assert masks.shape == (4, 196) and masks.dtype == torch.bool
    assert all(60 <= int(row.sum()) <= 75 for row in masks)
    assert len({tuple(row.tolist()) for row in masks}) > 1  # one stream, different masks per image
    again = processor(images, return_image_mask=True, mask_seed=5, return_tensors="pt")["bool_masked_pos"]
    same = processor(images, return_image_mask=True, mask_seed=5, return_tensors="pt")["bool_masked_pos"]
    assert torch.equal(again, same)


def test_tokenizer_matches_bert_base_uncased(fixtures_dir, fixture_io):
    io = fixture_io("flava/flava-tokenizer")
    texts = json.loads((fixtures_dir / "flava" / "flava-tokenizer" / "strings.json").read_text())
    tokenizer = VlzooFlavaProcessor().tokenizer
    out = tokenizer(
        texts,
        padding="max_length",
        max_length=77,
        truncation=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"):
        assert torch.equal(out[key], io[f"output.{key}"]), key


def test_processor_call_and_round_trip(tmp_path):
    processor = VlzooFlavaProcessor()
    images = [Image.new("RGBA", (40, 30)), np.zeros((12, 9, 3), dtype=np.uint8)]
    out = processor(images=images, text=["A red square", "two dogs"], return_codebook_pixels=True)
    assert out["pixel_values"].shape == (2, 3, 224, 224) and out["codebook_pixel_values"].shape == (2, 3, 112, 112)
    assert out["input_ids"][0, 0] == 101 and out["input_ids"].shape[1] == 5  # padded to the longest
    assert float(out["codebook_pixel_values"].min()) >= 0.1 and float(out["codebook_pixel_values"].max()) <= 0.9
    processor.save_pretrained(tmp_path)
    loaded = VlzooFlavaProcessor.from_pretrained(tmp_path)
    again = loaded(images=images, text=["A red square", "two dogs"], return_codebook_pixels=True)
    for key in out:
        assert torch.equal(out[key], again[key]), key


def test_truncated_vocabulary_keeps_the_special_ids():
    from tests.models.flava.tester import tiny_config

    processor = VlzooFlavaProcessor.from_model_config(tiny_config())
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 1200
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.mask_token_id) == (0, 101, 103)
    assert processor.image_processor.size.height == 32 and processor.image_processor.codebook_size["height"] == 16
    with pytest.raises(ValueError, match="vocab_size must be between"):
        VlzooFlavaProcessor.from_model_config(tiny_config(text_config={"vocab_size": 50}))
