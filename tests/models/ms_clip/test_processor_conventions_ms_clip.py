"""MsClipProcessor and MsClipTokenizer follow transformers' conventions: CLIPProcessor's call, image options routed
to the image processor, paths and URLs, decoding without padding, added tokens, and the special ids the model uses."""

import inspect
import logging
import uuid

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, CLIPProcessor
from transformers.image_utils import PILImageResampling
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

import vlzoo  # noqa: F401  (registers the Auto classes)
from tests.processing.image_server import serve_directory, write_images
from vlzoo.models.ms_clip import MsClipConfig, MsClipImageProcessor, MsClipModel, MsClipProcessor, MsClipTokenizer
from vlzoo.processing.clip_bpe import clip_bpe_vocab_and_merges

PROCESSOR_LOGGER = "vlzoo.models.ms_clip.processing_ms_clip"
TEXTS = ["a cat", "a big brown dog sits on the mat", "stop!?"]


def _small_tokenizer() -> MsClipTokenizer:
    """The CLIP BPE truncated to 486 merges (vocabulary 1000, start 998, end 999), as the tiny test models use."""
    return MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=486))


def _image(width: int = 45, height: int = 37, seed: int = 0) -> Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, mode="RGB")


@pytest.fixture(scope="module")
def processor() -> MsClipProcessor:
    return MsClipProcessor(image_processor=MsClipImageProcessor(size=32, crop_size=32), tokenizer=_small_tokenizer())


def _assert_same(batch_a, batch_b) -> None:
    assert set(batch_a) == set(batch_b)
    for key in batch_a:
        torch.testing.assert_close(batch_a[key], batch_b[key], rtol=0, atol=0, msg=key)


# ---- the call ----


def test_call_signature_is_clip_processors(processor):
    assert list(inspect.signature(MsClipProcessor.__call__).parameters) == list(
        inspect.signature(CLIPProcessor.__call__).parameters
    )
    image = _image()
    by_keyword = processor(images=image, text=TEXTS)
    _assert_same(processor(image, TEXTS), by_keyword)
    _assert_same(processor(text=TEXTS, images=image), by_keyword)
    assert set(processor(image)) == {"pixel_values"}
    # As with CLIPProcessor, the first positional argument is the images: a lone string is read as an image source.
    with pytest.raises(ValueError, match="images could not be read as an image from 'a cat'"):
        processor("a cat")


IMAGE_OPTIONS = {
    "do_resize": {"do_resize": False},
    "size": {"size": 40},
    "size height width": {"size": {"height": 20, "width": 24}, "do_center_crop": False},
    "crop_size": {"crop_size": (16, 24)},
    "resample": {"resample": PILImageResampling.NEAREST},
    "do_rescale": {"do_rescale": False},
    "do_normalize": {"do_normalize": False},
    "image_mean and image_std": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]},
}


@pytest.mark.parametrize("name", list(IMAGE_OPTIONS))
def test_image_options_reach_the_image_processor_at_call_and_construction(processor, name):
    options, image = IMAGE_OPTIONS[name], _image()
    configured = {"size": 32, "crop_size": 32, **options}
    expected = MsClipImageProcessor(**configured)(image, return_tensors="pt")["pixel_values"]
    default = processor(images=image, text=TEXTS)
    assert expected.shape != default["pixel_values"].shape or not torch.equal(expected, default["pixel_values"])

    for batch in (
        processor(images=image, text=TEXTS, **options),
        processor(images=image, text=TEXTS, images_kwargs=options),
        MsClipProcessor(image_processor=MsClipImageProcessor(**configured), tokenizer=processor.tokenizer)(
            images=image, text=TEXTS
        ),
    ):
        torch.testing.assert_close(batch["pixel_values"], expected, rtol=0, atol=0)
        # Nothing of the image options reached the tokenizer.
        assert torch.equal(batch["input_ids"], default["input_ids"])
        assert torch.equal(batch["attention_mask"], default["attention_mask"])


def test_text_options_reach_the_tokenizer(processor):
    batch = processor(text=TEXTS, padding="max_length", max_length=12)
    assert batch["input_ids"].shape == (3, 12)
    assert processor(text=TEXTS, text_kwargs={"padding": "max_length", "max_length": 12})["input_ids"].shape == (3, 12)


def test_paths_and_urls_are_loaded(processor, tmp_path):
    files = write_images(tmp_path)
    expected = processor(images=Image.open(files["rgb"]))["pixel_values"]
    assert torch.equal(processor(images=str(files["rgb"]))["pixel_values"], expected)
    with serve_directory(tmp_path) as base_url:
        batch = processor([f"{base_url}/rgb.png", str(files["rgb"])], TEXTS[:2])
        assert torch.equal(batch["pixel_values"], torch.cat([expected, expected]))
        with pytest.raises(ValueError, match=r"images\[1\] has PIL mode 'I;16'"):
            processor([f"{base_url}/rgb.png", f"{base_url}/gray16.png"], TEXTS[:2])


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (Image.new("I;16", (8, 8)), r"images\[1\] has PIL mode 'I;16'"),
        (Image.new("F", (8, 8)), r"images\[1\] has PIL mode 'F'"),
        (Image.new("RGB", (8, 0)), r"images\[1\] is an empty image"),
        (np.zeros((8, 8, 3), dtype=np.uint16), r"images\[1\] is a numpy array of dtype uint16"),
    ],
    ids=["I;16", "F", "empty", "uint16"],
)
def test_hostile_images_raise_naming_the_item(processor, image, match):
    with pytest.raises(ValueError, match=match):
        processor([_image(), image], TEXTS[:2])


def test_unknown_option_is_logged_not_silently_dropped(processor):
    name = f"unknown_option_{uuid.uuid4().hex[:8]}"  # transformers logs each distinct message once per process
    with CaptureLogger(hf_logging.get_logger("transformers.processing_utils")) as captured:
        batch = processor(text=TEXTS, **{name: 1})
    assert f"`{name}` is not a valid argument for this processor" in captured.out
    assert torch.equal(batch["input_ids"], processor(text=TEXTS)["input_ids"])


def test_tokenizer_options_without_text_are_reported(processor, caplog):
    with caplog.at_level(logging.WARNING, logger=PROCESSOR_LOGGER):
        processor(images=_image(), max_length=5, truncation=True)
    messages = [record.getMessage() for record in caplog.records if record.name == PROCESSOR_LOGGER]
    assert messages == [
        "['max_length', 'truncation'] are tokenizer options, but no text was given: they are not used."
    ]


def test_videos_and_audio_raise(processor):
    with pytest.raises(ValueError, match="takes images and text; got videos"):
        processor(text="a cat", videos=[np.zeros((2, 8, 8, 3), dtype=np.uint8)])
    with pytest.raises(ValueError, match="takes images and text; got audio"):
        processor(audio=np.zeros(16000, dtype=np.float32))


def test_defaults_pad_and_return_tensors_and_can_be_changed(processor):
    batch = processor(text=TEXTS, images=_image())
    assert isinstance(batch["input_ids"], torch.Tensor) and isinstance(batch["pixel_values"], torch.Tensor)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) == 3 and batch["input_ids"].shape[1] == max(lengths)
    plain = processor(text=TEXTS, images=_image(), return_tensors=None, padding=False)
    assert [len(ids) for ids in plain["input_ids"]] == lengths
    assert isinstance(plain["pixel_values"], np.ndarray)


# ---- decoding ----


def test_batch_decode_and_decode_drop_padding_and_special_tokens(processor):
    tokenizer = processor.tokenizer
    unpadded = [tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) for text in TEXTS]
    assert unpadded[:2] == TEXTS[:2] and unpadded[2] == "stop !?"  # CLIP BPE separates punctuation
    batch = processor(text=TEXTS)
    assert (batch["input_ids"] == tokenizer.pad_token_id).any(), "the batch must contain padding"
    assert processor.batch_decode(batch["input_ids"], skip_special_tokens=True) == unpadded
    assert processor.decode(batch["input_ids"][0], skip_special_tokens=True) == "a cat"
    # The pad id is also the token "!": inside a text it is kept, and without skip_special_tokens nothing is dropped.
    assert tokenizer.pad_token_id in tokenizer("stop!?")["input_ids"]
    assert processor.decode(batch["input_ids"][0]).startswith("<|startoftext|>a cat <|endoftext|>!")


def test_decode_drops_left_padding(processor):
    tokenizer = _small_tokenizer()
    tokenizer.padding_side = "left"
    ids = tokenizer(TEXTS, padding=True)["input_ids"]
    assert ids[0][0] == tokenizer.pad_token_id
    expected = [tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) for text in TEXTS]
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == expected


# ---- added tokens ----


def test_added_tokens_encode_decode_and_survive_save_and_reload(tmp_path):
    tokenizer = _small_tokenizer()
    base_size = len(tokenizer)
    assert tokenizer.add_tokens(["zorblax", "Quux"]) == 2
    assert tokenizer.add_special_tokens({"additional_special_tokens": ["<obj>"]}) == 1
    # Non-special added tokens match the lowercased texts, as transformers' normalized added tokens do.
    new_ids = tokenizer.convert_tokens_to_ids(["zorblax", "Quux", "<obj>"])
    assert sorted(new_ids) == list(range(base_size, base_size + 3))

    text = "A zorblax sees <obj> and a QUUX"
    ids = tokenizer(text)["input_ids"]
    assert [token_id for token_id in ids if token_id >= base_size] == new_ids[:1] + new_ids[2:] + new_ids[1:2]
    assert ids[-1] == tokenizer.eos_token_id == 999 and ids[0] == tokenizer.bos_token_id == 998
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a zorblax sees and a quux"
    assert tokenizer.decode(ids) == "<|startoftext|>a zorblax sees <obj> and a quux <|endoftext|>"
    padded = tokenizer([text, "a"], padding=True)["input_ids"]
    assert tokenizer.batch_decode(padded, skip_special_tokens=True) == ["a zorblax sees and a quux", "a"]

    tokenizer.save_pretrained(tmp_path)
    for reloaded in (MsClipTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert type(reloaded) is MsClipTokenizer and len(reloaded) == len(tokenizer)
        assert reloaded(text)["input_ids"] == ids
        assert reloaded.decode(ids, skip_special_tokens=True) == "a zorblax sees and a quux"
        assert (reloaded.eos_token_id, reloaded.pad_token_id) == (999, 0)


def test_added_tokens_that_cleaning_would_change_are_refused():
    tokenizer = _small_tokenizer()
    with pytest.raises(ValueError, match=r"'<OBJ>' can never match.*add '<obj>' instead"):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<OBJ>"]})
    assert "<OBJ>" not in tokenizer.get_added_vocab()


# ---- the ids and names the model reads ----


@pytest.mark.parametrize("vocab_size", [1000, 49408])
def test_from_model_config_gives_the_configs_special_ids(vocab_size):
    config = MsClipConfig(
        text_config={"vocab_size": vocab_size, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1}
    )
    processor = MsClipProcessor.from_model_config(config)
    tokenizer, text_config = processor.tokenizer, config.text_config
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        text_config.bos_token_id,
        text_config.eos_token_id,
        text_config.pad_token_id,
    )
    batch = processor(text=[*TEXTS, " ".join(["word"] * 100)])
    lengths = batch["attention_mask"].sum(dim=1)
    for row, length in zip(batch["input_ids"], lengths, strict=True):
        # The end token sits at the last attended position, exactly once; everything after it is the pad id.
        assert (row == text_config.eos_token_id).nonzero().flatten().tolist() == [int(length) - 1]
        assert (row[length:] == text_config.pad_token_id).all()


def test_from_model_config_refuses_mismatched_special_ids():
    config = MsClipConfig(text_config={"vocab_size": 1000})  # end id left at the full vocabulary's 49407
    with pytest.raises(ValueError, match=r"text_config.bos_token_id is 49406, .* gives 998"):
        MsClipProcessor.from_model_config(config)


def test_model_input_names_are_what_the_processor_returns_and_the_model_reads(processor, tmp_path):
    assert processor.tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert processor.image_processor.model_input_names == ["pixel_values"]
    returned = set(processor(images=_image(), text=TEXTS))
    assert set(processor.model_input_names) == returned
    assert returned <= set(inspect.signature(MsClipModel.forward).parameters)
    processor.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path).model_input_names == processor.model_input_names
