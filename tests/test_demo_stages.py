"""The demo mechanism with staged tasks: a family's demo pretrains one head and fine-tunes another from its folder,
builds the VQA answer vocabulary from the training rows, and reports several metrics and a training-split prior."""

import json

import pytest

from vlzoo.demo import run_demo
from vlzoo.registry import DemoScore, DemoSpec, Family, register_family, unregister_family


@pytest.fixture
def staged_family():
    from tests.pipelines.toy_models import (
        ToyFusionConfig,
        ToyFusionForImageTextMatching,
        ToyFusionForVqa,
        register_toy_models,
        toy_processor,
        toy_tokenizer,
    )

    register_toy_models()
    seen: dict = {}

    def evaluate(folder, test):
        from transformers import AutoConfig

        seen["folders"] = sorted(p.name for p in folder.iterdir())
        seen["id2label"] = AutoConfig.from_pretrained(folder / "vqa").id2label
        return DemoScore(0.25, {"itm": 0.5, "vqa": 0.25})

    def prior(test, train):
        seen["splits"] = (len(test), len(train))
        return {"prior": 0.125}

    family = Family(
        key="toy_staged",
        name="Toy staged",
        config_class=ToyFusionConfig,
        heads={"itm": ToyFusionForImageTextMatching, "vqa": ToyFusionForVqa},
        config_builder=lambda preset, **overrides: ToyFusionConfig(**overrides),
        processor_builder=lambda config: toy_processor(toy_tokenizer()),
        demo=DemoSpec(
            description="pretrain ITM, fine-tune VQA",
            task=("itm", "vqa"),
            models={"toy": ToyFusionConfig},
            processor=lambda: toy_processor(toy_tokenizer()),
            evaluate=evaluate,
            summary="itm accuracy: toy={details[toy][itm]:.3f} | vqa accuracy: toy={details[toy][vqa]:.3f} "
            "prior={prior:.3f}",
            references=prior,
            data={"num_validation": 2, "image_size": 32},
            training=lambda max_steps: {"progress_bar": False},
            max_steps=2,
            batch_size=4,
            num_train=8,
            num_test=4,
        ),
    )
    register_family(family)
    try:
        yield seen
    finally:
        unregister_family("toy_staged")


def test_staged_demo_trains_each_task_from_the_previous_folder(staged_family, tmp_path, monkeypatch):
    from vlzoo.data import load_shapes, task_dataset
    from vlzoo.data.tasks import build_answer_vocabulary

    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", family="toy_staged")
    assert result.summary() == "itm accuracy: toy=0.500 | vqa accuracy: toy=0.250 prior=0.125"
    assert staged_family["folders"] == ["itm", "vqa"]
    assert staged_family["splits"] == (4, 8)
    train = load_shapes(num_train=8, num_test=4, seed=0, num_validation=2, image_size=32)["train"]
    assert staged_family["id2label"] == build_answer_vocabulary(task_dataset(train, "vqa"))["id2label"]
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["details"] == {"toy": {"itm": 0.5, "vqa": 0.25}} and results["prior"] == 0.125


def test_a_demo_task_must_be_named():
    with pytest.raises(ValueError, match="DemoSpec.task must be a task name or a tuple"):
        DemoSpec(description="d", task=(), models={"a": dict}, processor=dict, evaluate=dict, summary="")
