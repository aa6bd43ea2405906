"""Registration of vlzoo's pipeline tasks and task heads: the tables, idempotence, the Auto classes and the checks."""

import pytest
import torch
from transformers import AutoModelForVisualQuestionAnswering, CLIPConfig, pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

from tests.pipelines.toy_models import (
    ToyFusionConfig,
    ToyFusionForGrounding,
    ToyFusionForImageTextMatching,
    ToyFusionForVqa,
    ToyFusionModel,
    build,
    toy_config,
)
from vlzoo.pipelines import (
    HEAD_AUTO_CLASSES,
    PIPELINE_MODEL_CLASSES,
    PIPELINE_TASKS,
    AutoModelForImageTextMatching,
    AutoModelForVisualGrounding,
    register_head_model,
    register_pipeline_task,
    register_pipelines,
)
from vlzoo.pipelines.pairs import forward_inputs
from vlzoo.pipelines.task_heads import check_head, has_head, unwrap_model
from vlzoo.training.objectives import OBJECTIVES

pytestmark = pytest.mark.usefixtures("toys")


def test_every_task_is_registered_with_its_class_and_auto_classes():
    assert (
        set(PIPELINE_TASKS)
        == set(PIPELINE_MODEL_CLASSES)
        == {
            "image-text-retrieval",
            "image-text-matching",
            "vlzoo-visual-question-answering",
            "visual-grounding",
            "vlzoo-image-captioning",
        }
    )
    for task, pipeline_class in PIPELINE_TASKS.items():
        entry = PIPELINE_REGISTRY.supported_tasks[task]
        assert entry["impl"] is pipeline_class and entry["pt"] == PIPELINE_MODEL_CLASSES[task]
        assert entry["type"] == "multimodal"
        head = getattr(pipeline_class, "head", None)
        if head is not None:  # a task that needs a head loads its models with that head's Auto class
            assert PIPELINE_MODEL_CLASSES[task] == (HEAD_AUTO_CLASSES[head],)


def test_head_keys_are_training_task_keys():
    assert set(HEAD_AUTO_CLASSES) == {"vqa", "itm", "grounding", "captioning"}
    assert {"vqa", "itm", "grounding"} <= set(OBJECTIVES)  # captioning trains with its family's own objective
    assert HEAD_AUTO_CLASSES["vqa"] is AutoModelForVisualQuestionAnswering


def test_registration_is_idempotent_and_silent():
    entries = {task: PIPELINE_REGISTRY.supported_tasks[task] for task in PIPELINE_TASKS}
    with CaptureLogger(hf_logging.get_logger("transformers.pipelines.base")) as captured:
        register_pipelines()
        register_pipelines(["visual-grounding"])
        register_pipeline_task("image-text-matching")
    assert all(PIPELINE_REGISTRY.supported_tasks[task] is entry for task, entry in entries.items())
    assert captured.out == ""


def test_unknown_and_refused_task_names():
    with pytest.raises(ValueError, match="unknown vlzoo pipeline task 'vqa'"):
        register_pipeline_task("vqa")
    with pytest.raises(KeyError):  # transformers keeps refusing its removed names; vlzoo's task is namespaced
        pipeline("visual-question-answering", model=build(ToyFusionForVqa, toy_config()))


def test_head_auto_classes_load_and_build_the_registered_heads(tmp_path):
    for head, model_class in (
        ("vqa", ToyFusionForVqa),
        ("itm", ToyFusionForImageTextMatching),
        ("grounding", ToyFusionForGrounding),
    ):
        folder = tmp_path / head
        build(model_class, toy_config()).save_pretrained(folder)
        assert type(HEAD_AUTO_CLASSES[head].from_pretrained(folder)) is model_class
        assert type(HEAD_AUTO_CLASSES[head].from_config(toy_config())) is model_class
    with pytest.raises(ValueError, match="Unrecognized configuration class"):
        AutoModelForVisualGrounding.from_config(CLIPConfig())
    with pytest.raises(ValueError, match="head must be one of"):
        register_head_model("segmentation", ToyFusionConfig, ToyFusionModel)


def test_has_head_and_check_head():
    vqa = build(ToyFusionForVqa, toy_config())
    assert has_head(vqa, "vqa") and not has_head(vqa, "itm") and not has_head(vqa, "grounding")
    assert not has_head(build(ToyFusionModel, toy_config()), "vqa")
    assert not has_head(torch.nn.Linear(2, 2), "itm")
    with pytest.raises(TypeError, match=r"ToyFusionForVqa \(ToyFusionConfig\) is not one.*register_head_model\('itm'"):
        check_head(vqa, "itm", "image-text-matching")
    assert has_head(ToyFusionForImageTextMatching(toy_config()), "itm")
    assert HEAD_AUTO_CLASSES["itm"] is AutoModelForImageTextMatching


def test_peft_wrapped_models_are_unwrapped():
    from peft import LoraConfig, get_peft_model

    model = build(ToyFusionForVqa, toy_config())
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["fuse"]))
    assert unwrap_model(wrapped) is model and has_head(wrapped, "vqa")


def test_forward_inputs_keeps_what_the_forward_takes():
    inputs = {"input_ids": 1, "attention_mask": 2, "token_type_ids": 3, "pixel_values": 4, "pixel_mask": 5}
    kept = forward_inputs(build(ToyFusionForVqa, toy_config()), inputs)
    assert kept == {"input_ids": 1, "attention_mask": 2, "pixel_values": 4, "pixel_mask": 5}

    class TakesAnything(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            return input_ids

    assert forward_inputs(TakesAnything(), inputs) == inputs
