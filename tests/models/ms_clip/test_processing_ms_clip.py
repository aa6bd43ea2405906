"""Tests for MS-CLIP preprocessing: tokenizer and image-processor parity with the original, processor round trips."""

import gzip
import html
import json
import logging
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ftfy
import numpy as np
import pytest
import regex
import torch
from PIL import Image
from safetensors.numpy import load_file
from transformers import AutoImageProcessor, AutoTokenizer, PreTrainedConfig
from transformers.models.auto.image_processing_auto import get_image_processor_class_from_name
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from vlzoo.models.ms_clip.image_processing_ms_clip import MsClipImageProcessor
from vlzoo.models.ms_clip.processing_ms_clip import MsClipProcessor
from vlzoo.models.ms_clip.tokenization_ms_clip import MsClipTokenizer
from vlzoo.processing.clip_bpe import CLIP_BPE_PATH, clip_bpe_vocab_and_merges

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "msclip"
PREPROCESS = FIXTURES / "preprocess"
IMAGE_NAMES = ["a_63x38", "b_37x50", "c_64x64", "d_31x45"]
SOT, EOT = 49406, 49407
TOKENIZER_LOGGER = "vlzoo.models.ms_clip.tokenization_ms_clip"

requires_fixtures = pytest.mark.skipif(
    not PREPROCESS.is_dir(), reason=f"MS-CLIP fixtures not found at {PREPROCESS} (the repository's ../shared)"
)


@pytest.fixture(scope="module")
def tokenizer():
    return MsClipTokenizer()


@pytest.fixture(scope="module")
def tokenizer_cases():
    with open(PREPROCESS / "tokenizer.json", encoding="utf-8") as handle:
        return json.load(handle)["cases"]


def _open_fixture_image(name: str) -> Image.Image:
    with Image.open(PREPROCESS / f"{name}.png") as image:
        return image.convert("RGB")


# ---- a reference of the original SimpleTokenizer, written from msclip.md §5 ----


class _ReferenceClipTokenizer:
    """Slow re-statement of the original algorithm: clean, split with the IGNORECASE pattern, greedy BPE."""

    pattern = regex.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        regex.IGNORECASE,
    )

    def __init__(self):
        kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
        extra = [byte for byte in range(256) if byte not in kept]
        self.byte_symbol = {byte: chr(byte) for byte in kept} | {b: chr(256 + i) for i, b in enumerate(extra)}
        with gzip.open(CLIP_BPE_PATH, "rt", encoding="utf-8") as handle:
            merges = [tuple(line.split()) for line in handle.read().split("\n")[1:48895]]
        symbols = [self.byte_symbol[byte] for byte in [*kept, *extra]]
        tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>"]
        self.ids = {token: index for index, token in enumerate(tokens + ["<|endoftext|>"])}
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}

    def _bpe(self, word: str) -> list[str]:
        if word in ("<|startoftext|>", "<|endoftext|>"):
            return [word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = min(zip(parts[:-1], parts[1:], strict=True), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            merged, index = [], 0
            while index < len(parts):
                if index + 1 < len(parts) and (parts[index], parts[index + 1]) == pair:
                    merged.append(parts[index] + parts[index + 1])
                    index += 2
                else:
                    merged.append(parts[index])
                    index += 1
            parts = merged
        return parts

    def encode(self, text: str) -> list[int]:
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = regex.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for word in self.pattern.findall(text):
            word = "".join(self.byte_symbol[byte] for byte in word.encode("utf-8"))
            ids += [self.ids[part] for part in self._bpe(word)]
        return ids


# ---- tokenizer ----


@requires_fixtures
def test_tokenizer_bpe_ids_match_the_original(tokenizer, tokenizer_cases):
    for case in tokenizer_cases:
        ids = tokenizer(case["text"], add_special_tokens=False, truncation=False)["input_ids"]
        assert ids == case["encode"], case["text"]


@requires_fixtures
def test_tokenizer_context_ids_match_the_original(tokenizer, tokenizer_cases, caplog):
    for case in tokenizer_cases:
        with caplog.at_level(logging.WARNING, logger=TOKENIZER_LOGGER):
            caplog.clear()
            ids = tokenizer(case["text"], padding="max_length")["input_ids"]
        assert len(ids) == 77
        if not case["truncated"]:
            assert ids == case["input_ids"], case["text"]
            assert not caplog.records
        else:
            # vlzoo keeps the end token in the last slot; the original keeps 77 ids and loses it.
            assert ids[:76] == case["input_ids"][:76]
            assert ids[76] == EOT and case["input_ids"][76] != EOT
            assert len(caplog.records) == 1
            message = caplog.records[0].getMessage()
            assert "1 text(s)" in message and "drops the end token" in message


@requires_fixtures
def test_padding_true_batch_gives_the_original_prefixes(tokenizer, tokenizer_cases):
    texts = [case["text"] for case in tokenizer_cases]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    lengths = [min(case["n_tokens_with_sot_eot"], 77) for case in tokenizer_cases]
    assert batch["input_ids"].shape == (len(texts), max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    for row, case, length in zip(batch["input_ids"].tolist(), tokenizer_cases, lengths, strict=True):
        assert row[: length - 1] == case["input_ids"][: length - 1]
        assert row[length - 1] == EOT
        assert row[length:] == [0] * (len(row) - length)


def test_tokenizer_matches_a_reference_on_random_texts(tokenizer):
    reference = _ReferenceClipTokenizer()
    alphabet = (
        "abcXYZ   09.,;:!?'\"()-/&#<>|éÉßñÇœ日本語テキスト한국Русский\t\n\u00a0\u3000\u200b🐱🇫🇷\u0301ſ\u0345ﬁİΣς"
    )
    # Literal special tokens only after a space: after punctuation they are the documented difference (below).
    words = ["&amp;amp;", "&lt;", " <|startoftext|>", " <|endoftext|>", "<|ſtartoftext|>", "'ll", "'S", "'ſ", "cafÃ©"]
    rng = random.Random(1234)
    texts = []
    for _ in range(400):
        pieces = [rng.choice(alphabet) if rng.random() < 0.8 else rng.choice(words) for _ in range(rng.randint(0, 30))]
        texts.append("".join(pieces))
    encoded = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    for text, ids in zip(texts, encoded, strict=True):
        assert ids == reference.encode(text), repr(text)


def test_literal_special_token_after_punctuation_is_the_documented_difference(tokenizer):
    # The original's punctuation run swallows "<|" and splits the literal into ordinary pieces; vlzoo matches it.
    assert EOT not in _ReferenceClipTokenizer().encode(")<|endoftext|>")
    ids = tokenizer(")<|endoftext|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [")</w>", "<|endoftext|>"]


def test_empty_text_gives_start_and_end_then_zero_padding(tokenizer):
    ids = tokenizer("", padding="max_length")["input_ids"]
    assert ids == [SOT, EOT] + [0] * 75


def test_special_tokens_and_context(tokenizer):
    assert tokenizer.pad_token_id == 0 and tokenizer.pad_token == "!"
    assert tokenizer.bos_token_id == SOT and tokenizer.eos_token_id == EOT
    assert tokenizer.model_max_length == 77 and tokenizer.padding_side == "right"
    assert len(tokenizer) == 49408
    assert "!" not in tokenizer.get_added_vocab()


def test_truncation_is_the_default_and_can_be_disabled(tokenizer, caplog):
    long_text = " ".join(["word"] * 100)
    with caplog.at_level(logging.WARNING, logger=TOKENIZER_LOGGER):
        truncated = tokenizer([long_text, "short", long_text], padding=True)["input_ids"]
    assert [len(ids) for ids in truncated] == [77, 77, 77]
    assert truncated[0][-1] == EOT and truncated[2][-1] == EOT
    warnings = [record for record in caplog.records if record.name == TOKENIZER_LOGGER]
    assert len(warnings) == 1 and "2 text(s)" in warnings[0].getMessage()
    assert len(tokenizer.encode(long_text)) == 77
    assert len(tokenizer(long_text, truncation=False)["input_ids"]) == 102


def test_invalid_text_arguments(tokenizer):
    with pytest.raises(ValueError, match="text must be a non-empty list of strings"):
        tokenizer([])
    with pytest.raises(TypeError, match=r"text\[1\] is a int"):
        tokenizer(["a", 3])
    with pytest.raises(TypeError, match="NoneType"):
        tokenizer([None])


def test_tokenizer_save_and_reload(tokenizer, tmp_path):
    texts = ["A photo of a cat!!", "Tom &amp; Jerry", ""]
    tokenizer.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {path.name for path in tmp_path.iterdir()}
    reloaded = MsClipTokenizer.from_pretrained(tmp_path)
    assert reloaded.pad_token_id == 0 and reloaded.model_max_length == 77
    assert reloaded(texts, padding=True)["input_ids"] == tokenizer(texts, padding=True)["input_ids"]
    assert reloaded(" ".join(["x"] * 90))["input_ids"][-1] == EOT


@requires_fixtures
def test_truncated_vocabulary_matches_the_tiny_model_fixture():
    vocab, merges = clip_bpe_vocab_and_merges(num_merges=486)
    small = MsClipTokenizer(vocab=vocab, merges=merges)
    expected = load_file(str(FIXTURES / "msclip-s-tiny" / "io.safetensors"))["input.input_ids"][0].tolist()
    assert small("a photo of a cat.", padding="max_length")["input_ids"] == expected
    assert small.pad_token_id == 0 and (small.bos_token_id, small.eos_token_id) == (998, 999)


# ---- image processor ----


@requires_fixtures
@pytest.mark.parametrize("size", [96, 224])
def test_image_processor_matches_the_original_transform(size):
    expected = load_file(str(PREPROCESS / "io.safetensors"))
    processor = MsClipImageProcessor(size=size, crop_size=size)
    images = [_open_fixture_image(name) for name in IMAGE_NAMES]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (4, 3, size, size) and pixel_values.dtype == torch.float32
    for index, name in enumerate(IMAGE_NAMES):
        reference = expected[f"output.pixel_values.{name}.{size}"]
        assert np.abs(pixel_values[index].numpy() - reference).max() <= 1e-4, name


@requires_fixtures
def test_fixture_detects_floor_division_cropping():
    # Guards the parity test: a_63x38 at 224 is resized to 371x224; floor cropping starts at 73, the original at 74.
    reference = load_file(str(PREPROCESS / "io.safetensors"))["output.pixel_values.a_63x38.224"]
    resized = _open_fixture_image("a_63x38").resize((371, 224), Image.Resampling.BICUBIC)
    floor_cropped = np.asarray(resized.crop((73, 0, 297, 224)), dtype=np.float32).transpose(2, 0, 1) / 255
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    assert np.abs((floor_cropped - mean) / std - reference).max() > 1e-2


@requires_fixtures
def test_image_processor_matches_the_tiny_model_inputs():
    expected = load_file(str(FIXTURES / "msclip-s-tiny" / "io.safetensors"))["input.pixel_values"]
    images = [_open_fixture_image("a_63x38"), _open_fixture_image("b_37x50")]
    pixel_values = MsClipImageProcessor(size=96, crop_size=96)(images)["pixel_values"]
    assert np.abs(pixel_values - expected).max() <= 1e-4


def test_image_processor_defaults_single_image_and_overrides():
    processor = MsClipImageProcessor()
    assert processor.size == {"shortest_edge": 224} and processor.crop_size == {"height": 224, "width": 224}
    assert processor.resample == Image.Resampling.BICUBIC
    assert list(processor.image_mean) == [0.485, 0.456, 0.406] and list(processor.image_std) == [0.229, 0.224, 0.225]
    assert processor.do_resize and processor.do_center_crop and processor.do_rescale and processor.do_normalize
    image = Image.new("RGB", (50, 40), (255, 0, 0))
    single = processor(image, return_tensors="pt")["pixel_values"]
    assert single.shape == (1, 3, 224, 224)
    assert torch.allclose(single[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert processor([image, image], size=32, crop_size=(16, 24))["pixel_values"].shape == (2, 3, 16, 24)


def test_image_processor_drops_alpha_like_the_original_loader():
    rgba = Image.new("RGBA", (30, 20), (10, 200, 30, 0))
    processor = MsClipImageProcessor(size=16, crop_size=16)
    np.testing.assert_array_equal(processor(rgba)["pixel_values"], processor(rgba.convert("RGB"))["pixel_values"])


def test_image_processor_invalid_arguments():
    processor = MsClipImageProcessor()
    with pytest.raises(ValueError, match="non-empty list"):
        processor([])
    with pytest.raises(ValueError, match=r"images\[1\] is an empty image"):
        processor([Image.new("RGB", (4, 4)), Image.new("RGB", (0, 4))])
    with pytest.raises(ValueError, match="images could not be read as an image from 'cat.png'"):
        processor("cat.png")
    with pytest.raises(TypeError, match=r"unexpected arguments \['do_normalise'\]"):
        MsClipImageProcessor(do_normalise=False)
    with pytest.raises(ValueError, match="size"):
        MsClipImageProcessor(size=0)
    with pytest.raises(ValueError, match="image_std"):
        MsClipImageProcessor(image_std=[0.2, 0.0, 0.2])


def test_image_processor_save_and_reload(tmp_path):
    processor = MsClipImageProcessor(size=96, crop_size=96)
    processor.save_pretrained(tmp_path)
    reloaded = MsClipImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    image = Image.new("RGB", (40, 30), (1, 2, 3))
    np.testing.assert_array_equal(reloaded(image)["pixel_values"], processor(image)["pixel_values"])


# ---- processor ----


@pytest.fixture(scope="module")
def processor(tokenizer):
    return MsClipProcessor(image_processor=MsClipImageProcessor(size=96, crop_size=96), tokenizer=tokenizer)


def test_processor_returns_text_and_image_inputs(processor, tokenizer):
    images = [Image.new("RGB", (50, 40), (9, 9, 9)), Image.new("L", (30, 60), 7)]
    texts = ["a photo of a cat.", "a photo of a small brown dog."]
    batch = processor(text=texts, images=images)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (2, 3, 96, 96)
    assert batch["input_ids"].tolist() == tokenizer(texts, padding=True)["input_ids"]
    assert set(processor(text="a cat")) == {"input_ids", "attention_mask"}
    assert set(processor(images=images[0])) == {"pixel_values"}


def test_processor_invalid_calls(processor):
    with pytest.raises(ValueError, match="at least one input"):
        processor()
    with pytest.raises(ValueError, match="non-empty list"):
        processor(text=[])
    with pytest.raises(ValueError, match="`text` must be a string or list of strings"):
        processor(text=3)


class _RoundTripConfig(PreTrainedConfig):
    model_type = "vlzoo_ms_clip_processing_test"


def test_processor_save_and_reload(processor, tmp_path):
    # Loading goes through AutoImageProcessor/AutoTokenizer; register the classes under a test-only config when the
    # package has not registered them yet.
    if get_image_processor_class_from_name("MsClipImageProcessor") is None:
        AutoImageProcessor.register(_RoundTripConfig, image_processor_classes={"pil": MsClipImageProcessor})
    if tokenizer_class_from_name("MsClipTokenizer") is None:
        AutoTokenizer.register(_RoundTripConfig, tokenizer_class=MsClipTokenizer)
    processor.save_pretrained(tmp_path)
    reloaded = MsClipProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded.image_processor, MsClipImageProcessor)
    assert isinstance(reloaded.tokenizer, MsClipTokenizer)
    assert reloaded.image_processor.to_dict() == processor.image_processor.to_dict()
    image, texts = Image.new("RGB", (33, 44), (50, 100, 150)), ["a cat", " ".join(["dog"] * 90)]
    original, again = processor(text=texts, images=image), reloaded(text=texts, images=image)
    for key in original:
        assert torch.equal(original[key], again[key]), key
