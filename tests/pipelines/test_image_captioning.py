"""The `vlzoo-image-captioning` pipeline: captions equal the model's own `generate()` decoded by its tokenizer (greedy,
beam search, prompts, batches), the original decodes of the converted BEiT-3 fixture, and clear refusals."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the families and vlzoo's pipelines)
from tests.models.beit3.tester import TESTER, tiny_config
from vlzoo import get_family
from vlzoo.models.beit3 import Beit3ForCaptioning, Beit3ForQuestionAnswering, Beit3ImageProcessor, Beit3Processor
from vlzoo.models.beit3.tokenization_beit3 import Beit3Tokenizer
from vlzoo.pipelines import IMAGE_CAPTIONING_TASK, PIPELINE_TASKS, AutoModelForImageCaptioning

IMAGES = [
    Image.new("RGB", (45, 37), (220, 30, 30)),
    Image.new("RGB", (30, 52), (20, 40, 210)),
    Image.linear_gradient("L").convert("RGB").resize((40, 40)),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A random tiny BEiT-3 captioning model whose word scores vary (so captions are not empty) and whose unused
    vocabulary rows are never chosen, saved with its processor."""
    torch.manual_seed(0)
    model = Beit3ForCaptioning(tiny_config()).eval()
    processor = TESTER.tiny_processor()
    with torch.no_grad():
        model.lm_head.bias.normal_(0, 3)
        model.lm_head.bias[processor.tokenizer.vocab_size :] = -20
    path = tmp_path_factory.mktemp("beit3-captioning")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _generate(folder: Path, image: Image.Image, prompt: str | None = None, **options) -> str:
    model = Beit3ForCaptioning.from_pretrained(folder).eval()
    processor = Beit3Processor.from_pretrained(folder)
    inputs = {"pixel_values": processor(images=[image], return_tensors="pt")["pixel_values"]}
    if prompt is not None:
        inputs["input_ids"] = processor.tokenizer(prompt, return_tensors="pt")["input_ids"]
    ids = model.generate(**inputs, **options)
    return processor.tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)


def test_the_task_is_registered_with_its_head():
    assert IMAGE_CAPTIONING_TASK == "vlzoo-image-captioning" and IMAGE_CAPTIONING_TASK in PIPELINE_TASKS
    assert IMAGE_CAPTIONING_TASK in get_family("beit3").pipelines


@pytest.mark.parametrize(
    "options", [{}, {"num_beams": 3}, {"num_beams": 2, "max_new_tokens": 4, "length_penalty": 1.0}]
)
def test_captions_equal_generate_and_decode(folder: Path, options: dict):
    captioner = pipeline(IMAGE_CAPTIONING_TASK, model=str(folder))
    expected = [_generate(folder, image, **options) for image in IMAGES]
    assert any(expected), "the tiny model should produce words"
    assert captioner(IMAGES[0], **options) == [{"generated_text": expected[0]}]
    batched = captioner(IMAGES, batch_size=2, **options)
    assert batched == [[{"generated_text": text}] for text in expected]


def test_a_prompt_is_continued(folder: Path):
    captioner = pipeline(IMAGE_CAPTIONING_TASK, model=str(folder), num_beams=2)
    result = captioner(IMAGES[1], prompt="a red", max_length=9)
    expected = _generate(folder, IMAGES[1], prompt="a red", num_beams=2, max_length=9)
    assert result == [{"generated_text": expected}] and expected.startswith("a red")


def test_auto_class_and_refusals(folder: Path, tmp_path: Path):
    assert type(AutoModelForImageCaptioning.from_pretrained(folder)) is Beit3ForCaptioning
    captioner = pipeline(IMAGE_CAPTIONING_TASK, model=str(folder))
    with pytest.raises(ValueError, match="`num_beams` must be a positive integer"):
        captioner(IMAGES[0], num_beams=0)
    with pytest.raises(ValueError, match="not both"):
        captioner(IMAGES[0], max_length=8, max_new_tokens=3)
    with pytest.raises(TypeError, match=r"unexpected arguments \['temperature'\]"):
        captioner(IMAGES[0], temperature=0.7)
    with pytest.raises(ValueError, match="empty list"):
        captioner([])
    with pytest.raises(ValueError, match="`prompt` must be a non-empty string"):
        captioner(IMAGES[0], prompt=" ")
    vqa = tmp_path / "vqa"
    Beit3ForQuestionAnswering(tiny_config()).save_pretrained(vqa)
    TESTER.tiny_processor().save_pretrained(vqa)
    with pytest.raises(TypeError, match="saved from Beit3ForQuestionAnswering"):
        pipeline(IMAGE_CAPTIONING_TASK, model=str(vqa))
    with pytest.raises(TypeError, match="needs a model with a captioning head"):
        pipeline(
            IMAGE_CAPTIONING_TASK, model=Beit3ForQuestionAnswering(tiny_config()), processor=TESTER.tiny_processor()
        )


def test_converted_fixture_decodes_the_original_captions(fixtures_dir: Path, fixture_io, tmp_path: Path):
    """The captioning fixture converted by `vlzoo convert`, with the tiny.spm tokenizer: the pipeline's decoding of
    the fixture images gives the original `CaptioningHandler` strings for beam 1 and beam 3."""
    from vlzoo.conversion import run_cli

    case = fixtures_dir / "beit3" / "beit3-captioning-tiny"
    out = tmp_path / "converted"
    argv = ["--checkpoint", str(case / "beit3_tiny_patch16_48_coco_captioning.pth"),
            "--original-config", str(case / "original_config.json"), "--output-dir", str(out)]  # fmt: skip
    assert run_cli(get_family("beit3").build_converter(), argv) == 0
    tokenizer = Beit3Tokenizer(fixtures_dir / "beit3" / "tokenizer" / "tiny.spm")
    Beit3Processor(Beit3ImageProcessor.for_vision_language(48), tokenizer).save_pretrained(out)
    captioner = pipeline(IMAGE_CAPTIONING_TASK, model=str(out))
    images = fixture_io("beit3/beit3-captioning-tiny")["input.image"]
    original = json.loads((case / "original_config.json").read_text())["generation"]
    for beams in (1, 3):
        captions = [
            captioner.postprocess(captioner._forward({"pixel_values": images[i : i + 1]}, {"num_beams": beams,
                                                                                           "max_length": 12}))
            for i in range(len(images))
        ]  # fmt: skip
        assert captions == [[{"generated_text": text}] for text in original["captions"][f"_captions_beams{beams}"]]
    assert captioner(IMAGES[0], max_length=12)[0]["generated_text"] == _generate(out, IMAGES[0], max_length=12)
