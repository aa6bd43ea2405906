"""What every task objective shares: the OBJECTIVES table, uniform constructors, the real MS-CLIP processor, and an
evaluation that counts each example once whatever the batching."""

import inspect

import pytest
import torch
from accelerate import Accelerator

from vlzoo.data import build_answer_vocabulary, task_dataset
from vlzoo.demo import demo_processor
from vlzoo.training import ContrastiveObjective, EvaluatingObjective
from vlzoo.training.objectives import (
    OBJECTIVES,
    GroundingObjective,
    ItmObjective,
    MlmObjective,
    VqaObjective,
    common,
)

from .toy_heads import LetterboxProcessor, shapes_data, single_thread, tiny_processor, words_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return shapes_data(tmp_path_factory.mktemp("shapes"))


def test_objectives_table_covers_every_task_with_one_constructor_shape(scenes):
    assert OBJECTIVES == {
        "contrastive": ContrastiveObjective,
        "vqa": VqaObjective,
        "itm": ItmObjective,
        "mlm": MlmObjective,
        "grounding": GroundingObjective,
    }
    for task, objective_class in OBJECTIVES.items():
        parameters = list(inspect.signature(objective_class).parameters.values())
        assert parameters[0].name == "processor", task
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:]), task

    words = words_of(scenes["train"])
    options = {
        "vqa": build_answer_vocabulary(task_dataset(scenes["train"], "vqa")),
        "grounding": {"box_transform": LetterboxProcessor(words).transform_boxes},
    }
    for task, objective_class in OBJECTIVES.items():
        objective = objective_class(tiny_processor(words), **options.get(task, {}))
        assert isinstance(objective, EvaluatingObjective), task
        assert callable(objective.set_epoch), task


def test_objectives_collate_with_the_ms_clip_processor(scenes):
    processor = demo_processor()
    questions = task_dataset(scenes["train"], "vqa")
    vqa = VqaObjective(processor, **build_answer_vocabulary(questions))
    batch = vqa.collate([questions[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 64, 64) and batch["labels"].shape[0] == 3
    captions = task_dataset(scenes["train"], "itm")
    batch = ItmObjective(processor).collate([captions[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 3 and batch["pixel_values"].shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="no mask token"):  # CLIP's BPE vocabulary has none
        MlmObjective(processor)


def test_evaluation_counts_padded_duplicates_once(monkeypatch):
    rows = [{"value": float(v)} for v in range(7)]

    def collate(examples, indices):
        return {"values": torch.tensor([[e["value"]] for e in examples])}

    def score(batch, indices):
        assert batch["values"][:, 0].tolist() == [float(i) for i in indices]
        return torch.cat([batch["values"], batch["values"] ** 2], dim=1)

    accelerator = Accelerator(cpu=True)
    expected = torch.tensor([[float(v), float(v) ** 2] for v in range(7)], dtype=torch.float64)
    for batch_size in (1, 3, 7, 10):
        assert torch.equal(common.evaluate_examples(rows, collate, score, accelerator, batch_size), expected)

    # With several processes the last batches wrap around to the first rows: those are scored twice, counted once.
    real_batches = common.evaluation_batches

    def padded_batches(dataset, collate_fn, accelerator, batch_size):
        batches = list(real_batches(dataset, collate_fn, accelerator, batch_size))
        return batches + [collate_fn([dataset[0], dataset[1]])]

    monkeypatch.setattr(common, "evaluation_batches", padded_batches)
    values = common.evaluate_examples(rows, collate, score, accelerator, 3)
    assert torch.equal(values, expected)
    assert values.mean(dim=0)[0] == 3.0  # a mean over the scored batches would be lower

    with pytest.raises(ValueError, match="evaluation dataset is empty"):
        common.evaluate_examples([], collate, score, accelerator, 3)
