"""transformers' image tasks run through vlzoo's checking subclasses: unchanged for other image processors, installed
once and silently, never marked as custom (remote-code) pipelines when saved."""

import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPVisionModel, pipeline  # noqa: E402
from transformers.pipelines import PIPELINE_REGISTRY  # noqa: E402
from transformers.pipelines.image_feature_extraction import ImageFeatureExtractionPipeline  # noqa: E402
from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline  # noqa: E402
from transformers.testing_utils import CaptureLogger  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from tests.pipelines.test_image_text_retrieval import _tiny_config, _tiny_tokenizer  # noqa: E402
from vlzoo.pipelines import (  # noqa: E402
    CHECKED_TRANSFORMERS_TASKS,
    CheckedImageFeatureExtractionPipeline,
    CheckedZeroShotImageClassificationPipeline,
    register_pipelines,
)

ZERO_SHOT = "zero-shot-image-classification"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip_checked")
    torch.manual_seed(0)
    CLIPModel(_tiny_config()).save_pretrained(folder)
    _tiny_tokenizer().save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    register_pipelines()
    return folder


def test_other_image_processors_see_transformers_behaviour(clip_dir):
    checked = pipeline(ZERO_SHOT, model=str(clip_dir))
    assert type(checked) is CheckedZeroShotImageClassificationPipeline
    plain = ZeroShotImageClassificationPipeline(
        model=checked.model, tokenizer=checked.tokenizer, image_processor=checked.image_processor
    )
    gray16 = Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))
    # CLIP's image processor is not vlzoo's: the 16-bit image is converted (clipped) exactly as transformers does.
    for image in (Image.new("RGB", (40, 30), (200, 30, 30)), gray16):
        assert checked(image, candidate_labels=["red", "blue"]) == plain(image, candidate_labels=["red", "blue"])

    vision = CLIPVisionModel(checked.model.config.vision_config).eval()
    extractor = pipeline("image-feature-extraction", model=vision, image_processor=checked.image_processor)
    assert type(extractor) is CheckedImageFeatureExtractionPipeline
    plain_extractor = ImageFeatureExtractionPipeline(model=extractor.model, image_processor=extractor.image_processor)
    torch.testing.assert_close(extractor(gray16, return_tensors=True), plain_extractor(gray16, return_tensors=True))


def test_registration_is_idempotent_and_silent():
    register_pipelines()
    entries = {task: PIPELINE_REGISTRY.supported_tasks[task] for task in CHECKED_TRANSFORMERS_TASKS}
    with CaptureLogger(hf_logging.get_logger("transformers.pipelines.base")) as captured:
        register_pipelines()
    assert captured.out == ""
    for task, (_, checked) in CHECKED_TRANSFORMERS_TASKS.items():
        assert PIPELINE_REGISTRY.supported_tasks[task] is entries[task]
        assert PIPELINE_REGISTRY.supported_tasks[task]["impl"] is checked


def test_a_pipeline_replaced_by_someone_else_is_left_in_place(monkeypatch, caplog):
    class OtherPipeline(ZeroShotImageClassificationPipeline):
        pass

    entry = PIPELINE_REGISTRY.supported_tasks[ZERO_SHOT]
    monkeypatch.setitem(PIPELINE_REGISTRY.supported_tasks, ZERO_SHOT, {**entry, "impl": OtherPipeline})
    with caplog.at_level(logging.WARNING, logger="vlzoo.pipelines"):
        register_pipelines()
    assert PIPELINE_REGISTRY.supported_tasks[ZERO_SHOT]["impl"] is OtherPipeline
    assert any("replaced by OtherPipeline" in record.getMessage() for record in caplog.records)


def test_saved_checked_pipeline_is_not_a_custom_pipeline(clip_dir, tmp_path):
    pipe = pipeline(ZERO_SHOT, model=str(clip_dir))
    pipe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "custom_pipelines" not in config
    assert not list(tmp_path.glob("*.py"))
    reloaded = pipeline(ZERO_SHOT, model=str(tmp_path))
    image = Image.new("RGB", (40, 30), (20, 200, 30))
    assert reloaded(image, candidate_labels=["red", "green"]) == pipe(image, candidate_labels=["red", "green"])
