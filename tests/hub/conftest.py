"""Fixtures shared by the Hub tests."""

import json

import pytest
import torch

from tests.models.ms_clip.original_format import original_config, to_original_state_dict
from vlzoo.models.ms_clip import MsClipConfig, MsClipModel


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny MS-CLIP checkpoint in the original format and its original config (JSON)."""
    torch.manual_seed(0)
    config = MsClipConfig.from_preset(
        "vanilla",
        projection_dim=12,
        vision_config={"hidden_size": 32, "intermediate_size": 40, "num_attention_heads": 1, "image_size": 32,
                       "patch_size": 16, "num_hidden_layers": 1},
        text_config={"hidden_size": 24, "intermediate_size": 30, "num_attention_heads": 3, "num_hidden_layers": 1,
                     "vocab_size": 600, "max_position_embeddings": 10},
    )  # fmt: skip
    model = MsClipModel(config)
    torch.save(to_original_state_dict(model), tmp_path / "model.pth")
    (tmp_path / "original_config.json").write_text(json.dumps(original_config(model)))
    return tmp_path
