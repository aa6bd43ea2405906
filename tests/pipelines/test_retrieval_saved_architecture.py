"""`pipeline("image-text-retrieval", model=FOLDER)` loads the class the folder was saved from, never a head class
whose weights the folder lacks (a dual encoder of a family that also has a matching head)."""

import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, pipeline

from tests.models.flava.tester import TESTER as FLAVA
from vlzoo.models.flava import FlavaModel
from vlzoo.pipelines import register_pipelines
from vlzoo.pipelines.saved_architecture import SavedArchitecture


@pytest.fixture(autouse=True)
def _pipelines():
    register_pipelines()


@pytest.mark.parametrize(("tester", "model_class"), [(FLAVA, FlavaModel)])
def test_a_dual_encoder_folder_loads_as_itself(tester, model_class, tmp_path):
    torch.manual_seed(0)
    config = next(iter(tester.configs.values()))()
    model_class(config).save_pretrained(tmp_path)
    tester.tiny_processor().save_pretrained(tmp_path)
    retrieve = pipeline("image-text-retrieval", model=str(tmp_path))
    assert type(retrieve.model) is model_class
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (30, 40), (10, 10, 200))]
    ranked = retrieve(images=images, texts="a red square")
    assert sorted(ranked["indices"]) == [0, 1] and len(ranked["scores"]) == 2


def test_other_folders_are_left_to_the_next_loader(tmp_path):
    CLIPModel(
        CLIPConfig(
            text_config={"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2},
            vision_config={
                "hidden_size": 8,
                "intermediate_size": 8,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 16,
                "patch_size": 8,
            },
            projection_dim=4,
        )  # fmt: skip
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a vlzoo folder"):
        SavedArchitecture.from_pretrained(str(tmp_path))
