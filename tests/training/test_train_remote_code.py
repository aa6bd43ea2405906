"""The trainer's final model: a minimal model card always, and with `remote_code=True` the code that loads it without
vlzoo (the same files `save_with_remote_code` writes for that model)."""

import pytest
import torch
from huggingface_hub import ModelCard

from tests.common import harness
from vlzoo.conversion.output_dir import MARKER_FILE, list_files, read_marker
from vlzoo.hub import save_with_remote_code
from vlzoo.registry import get_family
from vlzoo.training import TrainingArguments, train

from .toy import ToyObjective, toy_args, toy_dataset, toy_model


class InputsObjective:
    """Every batch is the family tester's inputs; the loss pulls the image-text logits towards zero."""

    def __init__(self, inputs: dict):
        self.inputs = inputs

    def collate(self, examples: list) -> dict:
        return dict(self.inputs)

    def compute_loss(self, model, batch: dict) -> torch.Tensor:
        return model(**batch).logits_per_image.pow(2).mean()


def _card(folder) -> ModelCard:
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.license == "other"
    return card


def test_the_final_model_gets_remote_code_and_a_card(tmp_path):
    family = get_family("ms_clip")
    tester = harness.tester_for(family)
    config = next(iter(tester.configs.values()))()
    model_class = harness.base_class(family)
    torch.manual_seed(0)
    model, processor = model_class(config), tester.tiny_processor()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_batch_size=2,
        progress_bar=False,
        remote_code=True,
    )
    objective = InputsObjective(tester.inputs(model_class, config, batch=2))
    result = train(model, objective, [0, 1], args=args, processor=processor)

    folder = tmp_path / "run"
    reference = tmp_path / "reference"  # what save_with_remote_code writes for the trained model
    save_with_remote_code(model, processor, reference)
    assert sorted(list_files(folder)) == sorted([*list_files(reference), "README.md"])
    for name in list_files(reference):
        if name.endswith(".py") or name.endswith(".json"):
            assert (folder / name).read_text() == (reference / name).read_text(), name
    assert read_marker(folder)["files"] == sorted([*list_files(reference), "README.md"])
    card = _card(folder)
    assert card.data.tags == ["vlzoo", "ms_clip"] and card.data.pipeline_tag == "zero-shot-image-classification"
    assert "Trained with vlzoo's trainer for 1 optimizer steps." in card.text
    assert 'MsClipModel.from_pretrained("run")' in card.text  # the folder's name, not the trainer's temporary one
    assert result.final_model_dir == str(folder)


def test_a_model_of_no_vlzoo_family_gets_a_card_and_no_remote_code(tmp_path):
    train(toy_model(), ToyObjective(), toy_dataset(8), args=toy_args(tmp_path / "run", save_final_model=True))
    card = _card(tmp_path / "run")
    assert card.data.tags == ["vlzoo"] and card.data.pipeline_tag is None
    assert not list((tmp_path / "run").glob("*.py")) and (tmp_path / "run" / MARKER_FILE).is_file()

    with pytest.raises(ValueError, match="remote_code=True needs a transformers model of a registered vlzoo family"):
        train(toy_model(), ToyObjective(), toy_dataset(8), args=toy_args(tmp_path / "other", save_final_model=True,
                                                                          remote_code=True))  # fmt: skip
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_remote_code_needs_the_final_model():
    with pytest.raises(ValueError, match="remote_code=True writes code next to the final model"):
        TrainingArguments(output_dir="run", save_final_model=False, remote_code=True)
    with pytest.raises(ValueError, match="TrainingArguments.remote_code must be true or false"):
        TrainingArguments(output_dir="run", remote_code="yes")
    assert TrainingArguments.from_dict({"output_dir": "run", "remote_code": True}).to_dict()["remote_code"] is True
