"""The BEiT-3 tokenizer and image processors reproduce the original text path and eval transforms exactly."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.models.beit3.tester import TESTER, write_tiny_spm
from vlzoo.models.beit3.image_processing_beit3 import Beit3ImageProcessor
from vlzoo.models.beit3.processing_beit3 import Beit3Processor
from vlzoo.models.beit3.tokenization_beit3 import Beit3Tokenizer

IMAGES = ["img0_37x53_rgb.png", "img1_64x40_rgb.png", "img2_100x100_rgba.png", "img3_17x90_gray.png"]
TRANSFORMS = {
    "vl_eval_48": lambda: Beit3ImageProcessor.for_vision_language(48),
    "vl_eval_64": lambda: Beit3ImageProcessor.for_vision_language(64),
    "imagenet_eval_48": lambda: Beit3ImageProcessor.for_imagenet(48),
    "imagenet_eval_40_crop0.875": lambda: Beit3ImageProcessor.for_imagenet(40, crop_pct=0.875),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_preprocess_fixture_reproduced(name: str, fixtures_dir: Path, fixture_io):
    expected = fixture_io("beit3/beit3-preprocess")
    processor = TRANSFORMS[name]()
    folder = fixtures_dir / "beit3" / "beit3-preprocess"
    for index, file in enumerate(IMAGES):
        pixels = processor(Image.open(folder / file), return_tensors="pt")["pixel_values"][0]
        reference = expected[f"output.{name}.img{index}"]
        assert pixels.shape == reference.shape
        assert (pixels - reference).abs().max() <= 1e-4, (name, file)


def test_tokenizer_fixture_reproduced(fixtures_dir: Path, fixture_io):
    folder = fixtures_dir / "beit3" / "tokenizer"
    cases = json.loads((folder / "tokenization.json").read_text())["cases"]
    tokenizer = Beit3Tokenizer(folder / "tiny.spm")
    assert (tokenizer.vocab_size, tokenizer.mask_token_id, tokenizer.pad_token_id) == (122, 121, 1)
    texts = []
    for case in cases:
        if "error" in case:
            with pytest.raises(ValueError, match="at least one token"):
                tokenizer(case["text"])
            continue
        assert tokenizer.tokenize(case["text"]) == case["pieces"], case["text"]
        assert tokenizer.convert_tokens_to_ids(case["pieces"]) == case["index_token_ids"]
        texts.append(case["text"])
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    expected = fixture_io("beit3/tokenizer")
    assert torch.equal(batch["input_ids"], expected["output.input_ids"])
    assert torch.equal(1 - batch["attention_mask"], expected["output.padding_mask"])


def test_not_a_sentencepiece_model_is_refused(tmp_path: Path):
    path = tmp_path / "beit3.spm"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        Beit3Tokenizer(path)


def test_processor_round_trip_and_empty_question(tmp_path: Path):
    processor = TESTER.tiny_processor()
    sample = TESTER.processor_sample()
    out = processor(**sample)
    assert out["pixel_values"].shape == (2, 3, 32, 32)
    assert out["input_ids"][:, 0].eq(0).all() and out["attention_mask"].shape == out["input_ids"].shape
    processor.save_pretrained(tmp_path)
    reloaded = Beit3Processor.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(**sample)["input_ids"], out["input_ids"])
    with pytest.raises(ValueError, match="at least one token"):
        processor(text=["  "], images=sample["images"][:1])


def test_processor_from_model_config_checks_the_vocabulary(tmp_path: Path):
    from tests.models.beit3.tester import tiny_config

    spm = write_tiny_spm(tmp_path / "beit3.spm")
    processor = Beit3Processor.from_model_config(tiny_config(), spm)
    assert processor.tokenizer.mask_token_id == tiny_config().mask_token_id
    with pytest.raises(ValueError, match="mask_token_id"):
        Beit3Processor.from_model_config(tiny_config(mask_token_id=80), spm)
