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


@pytest.fixture
def toy_vqa_family():
    """A family with only a VQA head, registered for one test (the toy fusion model of the pipeline tests)."""
    from tests.pipelines.toy_models import (
        ToyFusionConfig,
        ToyFusionForVqa,
        register_toy_models,
        toy_processor,
        toy_tokenizer,
    )
    from vlzoo.registry import Family, register_family, unregister_family

    register_toy_models()
    family = Family(
        key="toy_vqa",
        name="Toy VQA",
        config_class=ToyFusionConfig,
        heads={"vqa": ToyFusionForVqa},
        config_builder=lambda preset, **overrides: ToyFusionConfig(**overrides),
        processor_builder=lambda config: toy_processor(toy_tokenizer()),
        default_preset="tiny",
    )
    register_family(family)
    try:
        yield family
    finally:
        unregister_family("toy_vqa")


SHAPES = ["data.num_train=12", "data.num_validation=4", "data.image_size=32"]
SHORT = ["training.max_steps=2", "training.per_device_batch_size=4", "training.progress_bar=false"]


def test_train_vqa_builds_the_answer_vocabulary_from_the_training_rows(toy_vqa_family, tmp_path):
    from transformers import AutoConfig

    from vlzoo.data.tasks import build_answer_vocabulary
    from vlzoo.training.recipe import run_training

    data = ["data.num_test=1", f"data.cache_dir={tmp_path / 'cache'}", *SHAPES]
    out = tmp_path / "run"
    run_training(None, ["model.family=toy_vqa", *data, *SHORT, f"training.output_dir={out}"])
    train_rows, _ = build_datasets(
        {"dataset": "shapes", "num_train": 12, "num_validation": 4, "num_test": 1, "image_size": 32,
         "cache_dir": str(tmp_path / "cache")}, task="vqa")  # fmt: skip
    expected = build_answer_vocabulary(train_rows)["id2label"]
    saved = AutoConfig.from_pretrained(out)
    assert saved.id2label == expected and len(expected) > 2
    assert saved.label2id == {label: index for index, label in expected.items()}
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as weights:
        head_rows = [weights.get_slice(k).get_shape()[0] for k in weights.keys() if k.endswith("bias")][-1]
    assert head_rows == len(expected)

    # min_answer_count trims the vocabulary; a vocabulary given in the config file is used as it is
    trimmed = tmp_path / "trimmed"
    run_training(None, ["model.family=toy_vqa", "model.objective={min_answer_count: 3, unknown_answers: ignore}", *data, *SHORT,
                        f"training.output_dir={trimmed}"])  # fmt: skip
    assert AutoConfig.from_pretrained(trimmed).id2label == build_answer_vocabulary(train_rows, min_count=3)["id2label"]
    given = tmp_path / "given"
    answers = {0: "yes", 1: "no", 2: "red"}
    run_training(None, ["model.family=toy_vqa", f"model.config.id2label={answers}", "model.objective={unknown_answers: ignore}",
                        *data, *SHORT, f"training.output_dir={given}"])  # fmt: skip
    assert AutoConfig.from_pretrained(given).id2label == answers


def test_float_config_overrides_written_without_a_dot_are_numbers():
    from transformers import PreTrainedConfig

    from vlzoo.models.ms_clip import MsClipConfig
    from vlzoo.training.recipe import _floats_as_numbers, build_model_and_processor

    section = load_run_config(
        None, ["model.config={logit_scale_init_value: 2e0, text_config: {layer_norm_eps: 1e-6}}"]
    )
    overrides = section["model"]["config"]
    assert overrides["text_config"]["layer_norm_eps"] == "1e-6"  # what YAML 1.1 gives
    numbers = _floats_as_numbers(MsClipConfig.from_preset("b32-yfcc"), overrides, PreTrainedConfig)
    assert numbers == {"logit_scale_init_value": 2.0, "text_config": {"layer_norm_eps": 1e-6}}
    assert MsClipConfig.from_preset("b32-yfcc", **numbers).text_config.layer_norm_eps == 1e-6
    with pytest.raises(ValueError, match=r"model.config.logit_scale_init_value must be a number, got 'big'"):
        build_model_and_processor({"config": {"logit_scale_init_value": "big"}})
