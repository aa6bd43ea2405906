"""`vlzoo train` picks the model class, objective and data rows of `model.task` from the family's registry record."""

import pytest

from vlzoo.registry import get_family
from vlzoo.training import ContrastiveObjective
from vlzoo.training.recipe import build_datasets, build_objective, load_run_config, model_task


def test_the_task_defaults_to_the_family_default_and_is_checked():
    family = get_family("ms_clip")
    assert model_task({}, family) == family.default_task == "contrastive"
    with pytest.raises(
        ValueError, match=r"model.task='vqa' is not a task of family 'ms_clip'; its tasks: contrastive"
    ):
        model_task({"task": "vqa"}, family)


def test_objective_options_reach_the_task_objective():
    family = get_family("ms_clip")
    processor = lambda **kwargs: kwargs  # noqa: E731 (a callable is all the objective checks)
    objective = build_objective({"objective": {"caption_index": 1, "max_length": 9}}, family, processor)
    assert type(objective) is ContrastiveObjective
    assert (objective.caption_index, objective.max_length) == (1, 9)
    with pytest.raises(ValueError, match=r"model.objective for task 'contrastive': .*'negatives'"):
        build_objective({"objective": {"negatives": "hard"}}, family, processor)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.objective=[1, 2]", "model.objective must be a mapping of objective options"),
        ("model.task=7", "model.task must be a string"),
        ("model.head=vqa", r"unknown keys in section 'model': \['head'\]"),
    ],
)
def test_model_section_errors(override, message):
    with pytest.raises(ValueError, match=message):
        load_run_config(None, [override])


def test_data_rows_follow_the_task(tmp_path):
    data = {"dataset": "shapes", "num_train": 6, "num_validation": 2, "num_test": 1, "image_size": 32,
            "cache_dir": str(tmp_path)}  # fmt: skip
    captions, _ = build_datasets(data, task="contrastive")
    assert "captions" in captions.column_names and len(captions) == 6
    questions, held_out = build_datasets(data, task="vqa")
    assert {"question", "answers", "question_type"} <= set(questions.column_names)
    assert len(questions) > len(captions) and "question" in held_out.column_names
    boxes, _ = build_datasets(data, task="grounding")
    assert {"expression", "bbox"} <= set(boxes.column_names)
