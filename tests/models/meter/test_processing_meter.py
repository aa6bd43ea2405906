"""METER preprocessing: the exact clip_transform of the fixtures and the RoBERTa tokenizer layout."""

import pytest
import torch
from PIL import Image

from vlzoo.models.meter import MeterConfig, MeterImageProcessor, MeterProcessor
from vlzoo.models.meter.tokenization_meter import byte_level_tokenizer

from .tester import tiny_config

IMAGES = ("img0_33x49.png", "img1_63x51.png", "img2_87x35.png", "img3_29x43.png")


@pytest.mark.parametrize("size", [32, 48, 288])
def test_image_processor_reproduces_meter_crops_exactly(size, fixtures_dir, fixture_io):
    folder = fixtures_dir / "meter" / "meter-preprocess-tiny"
    io = fixture_io("meter/meter-preprocess-tiny")
    images = [Image.open(folder / name) for name in IMAGES]
    crops = MeterImageProcessor(size=size, crop_size=size, do_rescale=False, do_normalize=False)(
        images, return_tensors="pt"
    ).pixel_values
    assert torch.equal(crops.round().to(torch.uint8), io[f"output.uint8_crop_{size}"])
    pixels = MeterImageProcessor(size=size, crop_size=size)(images, return_tensors="pt").pixel_values
    expected = io[f"output.pixel_values_{size}"] if size != 288 else io["output.pixel_values_288_img0"]
    torch.testing.assert_close(pixels[: len(expected)], expected, rtol=0, atol=1e-6)


def test_byte_level_tokenizer_has_roberta_layout():
    tokenizer = byte_level_tokenizer(["a red circle left of a blue square"] * 4, vocab_size=300)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.mask_token_id == len(tokenizer) - 1 <= 299
    ids = tokenizer(["a red circle", "a"], padding=True).input_ids
    assert ids[0][0] == 0 and ids[0][-1] == 2 and ids[1][-1] == 1
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == "a red circle"
    with pytest.raises(ValueError, match="at least 261"):
        byte_level_tokenizer(vocab_size=100)


def test_processor_from_model_config_truncates_to_the_position_table():
    config = tiny_config()
    processor = MeterProcessor.from_model_config(config)
    assert processor.image_processor.crop_size == {"height": 32, "width": 32}
    batch = processor(text=["x" * 100, "short"], images=[Image.new("RGB", (40, 30))] * 2)
    assert batch["input_ids"].shape == (2, config.max_text_length) and batch["input_ids"][0, -1] == 2
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_processor_needs_the_models_tokenizer_for_other_vocabularies():
    with pytest.raises(ValueError, match="roberta-base"):
        MeterProcessor.from_model_config(MeterConfig())
    wrong = tiny_config(text_config={"vocab_size": 261, "pad_token_id": 0, "bos_token_id": 1})
    with pytest.raises(ValueError, match="pad_token_id"):
        MeterProcessor.from_model_config(wrong)
