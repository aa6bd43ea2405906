"""VqaObjective: soft targets, errors, and training a toy VQA head on shapes questions with metrics checked by hand."""

import json

import pytest
import torch
from accelerate import Accelerator

from vlzoo.data import build_answer_vocabulary, task_dataset
from vlzoo.evaluation import vqa_accuracy
from vlzoo.losses import vqa_soft_target_loss
from vlzoo.training import EvaluatingObjective, train
from vlzoo.training.objectives import VqaObjective

from .toy import toy_args
from .toy_heads import ToyVisionLanguageModel, shapes_data, single_thread, tiny_processor, words_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    scenes = shapes_data(tmp_path_factory.mktemp("shapes"))
    return {"questions": task_dataset(scenes, "vqa"), "processor": tiny_processor(words_of(scenes["train"]))}


@pytest.fixture(scope="module")
def vocabulary(data):
    return build_answer_vocabulary(data["questions"]["train"])


def test_collate_gives_processor_inputs_and_soft_targets(data, vocabulary):
    objective = VqaObjective(data["processor"], **vocabulary)
    assert isinstance(objective, EvaluatingObjective)
    rows = [data["questions"]["train"][i] for i in range(5)]
    batch = objective.collate(rows)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "labels"}
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["labels"].shape == (5, len(vocabulary["id2label"])) and batch["labels"].dtype == torch.float32
    for row, labels in zip(rows, batch["labels"], strict=True):
        expected = torch.zeros_like(labels)
        expected[vocabulary["label2id"][row["answers"][0]]] = 1.0  # shapes: one answer per question
        assert torch.equal(labels, expected)

    # Ten annotators: 1, 2, 3 and 4+ votes score 0.3, 0.6, 0.9 and 1 (VQAv2), spelling normalised first.
    labels = ["2", "cat", "dog", "yes", "no"]
    ten = VqaObjective(data["processor"], id2label=dict(enumerate(labels)))
    answers = ["Two", "2", "two", "two", "cat", "the cat", "cat", "dog", "dog", "yes"]
    row = {"image": rows[0]["image"], "question": "what?", "answers": answers}
    torch.testing.assert_close(ten.collate([row])["labels"][0], torch.tensor([1.0, 0.9, 0.6, 0.3, 0.0]))


def test_vocabulary_from_a_saved_config_has_string_keys(data, vocabulary):
    from_json = json.loads(json.dumps(vocabulary))  # what a config.json holds
    assert all(isinstance(key, str) for key in from_json["id2label"])
    rows = [data["questions"]["train"][i] for i in range(4)]
    expected = VqaObjective(data["processor"], **vocabulary).collate(rows)["labels"]
    assert torch.equal(VqaObjective(data["processor"], **from_json).collate(rows)["labels"], expected)


def test_bad_rows_and_options_raise(data, vocabulary):
    processor = data["processor"]
    objective = VqaObjective(processor, **vocabulary)
    row = dict(data["questions"]["train"][0])
    with pytest.raises(ValueError, match=r"no column\(s\) \['answers'\]"):
        objective.collate([{k: v for k, v in row.items() if k != "answers"}])
    with pytest.raises(ValueError, match="'penguin' .* is not in id2label"):
        objective.collate([{**row, "answers": ["penguin"]}])
    ignoring = VqaObjective(processor, **vocabulary, unknown_answers="ignore")
    assert ignoring.collate([{**row, "answers": ["penguin"]}])["labels"].sum() == 0
    with pytest.raises(ValueError, match="non-empty list of answer strings"):
        objective.collate([{**row, "answers": []}])
    with pytest.raises(ValueError, match="non-empty question"):
        objective.collate([{**row, "question": " "}])
    with pytest.raises(ValueError, match="empty list of examples"):
        objective.collate([])
    with pytest.raises(ValueError, match="not the inverse of id2label"):
        VqaObjective(processor, id2label={0: "yes", 1: "no"}, label2id={"yes": 1, "no": 0})
    with pytest.raises(ValueError, match="normalise to the same answer '2'"):
        VqaObjective(processor, id2label={0: "2", 1: "two"})
    with pytest.raises(ValueError, match="without gaps"):
        VqaObjective(processor, id2label={0: "yes", 2: "no"})
    with pytest.raises(ValueError, match="non-empty mapping"):
        VqaObjective(processor, id2label={})
    with pytest.raises(ValueError, match="unknown_answers must be one of"):
        VqaObjective(processor, **vocabulary, unknown_answers="skip")
    with pytest.raises(TypeError, match="processor must be callable"):
        VqaObjective("processor", **vocabulary)
    wrong_width = ToyVisionLanguageModel(len(processor.tokenizer), num_labels=3)
    with pytest.raises(ValueError, match=r"expected \[batch, \d+\] for the answer vocabulary"):
        objective.compute_loss(wrong_width, objective.collate([row]))


def test_trains_and_reports_accuracy_per_question_type(data, vocabulary, tmp_path):
    processor, questions = data["processor"], data["questions"]
    objective = VqaObjective(processor, **vocabulary)
    model = ToyVisionLanguageModel(len(processor.tokenizer), num_labels=len(vocabulary["id2label"]))
    args = toy_args(tmp_path, per_device_batch_size=16, num_epochs=2, eval_batch_size=7)
    result = train(model, objective, questions["train"], args=args, eval_dataset=questions["validation"])

    losses = [loss for _, loss in result.train_loss_history]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    metrics = result.eval_history[-1][1]

    # The same numbers, computed on the whole validation set at once with the metric functions.
    rows = list(questions["validation"])
    inputs = processor(
        images=[r["image"] for r in rows], text=[r["question"] for r in rows], return_tensors="pt", padding=True
    )
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    predictions = [vocabulary["id2label"][int(i)] for i in logits.argmax(dim=-1)]
    targets = torch.zeros_like(logits)
    for index, row in enumerate(rows):
        targets[index, vocabulary["label2id"][row["answers"][0]]] = 1.0
    assert metrics["eval_loss"] == pytest.approx(vqa_soft_target_loss(logits, targets).item(), rel=1e-5)
    assert metrics["eval_vqa_accuracy"] == pytest.approx(vqa_accuracy(predictions, [r["answers"] for r in rows]))
    for question_type in ("color", "shape", "count", "position"):
        chosen = [i for i, r in enumerate(rows) if r["question_type"] == question_type]
        expected = vqa_accuracy([predictions[i] for i in chosen], [rows[i]["answers"] for i in chosen])
        assert metrics[f"eval_vqa_accuracy_{question_type}"] == pytest.approx(expected)
    assert metrics["eval_vqa_accuracy"] > 0.2  # chance over the ~20 answers is about 0.05


def test_evaluation_scores_unseen_answers_and_names_types_safely(data, vocabulary):
    processor = data["processor"]
    objective = VqaObjective(processor, **vocabulary)
    base = [data["questions"]["validation"][i] for i in range(4)]
    rows = [
        {**base[0], "answers": ["penguin"], "question_type": "yes/no"},  # not in the vocabulary: counts, scores 0
        {**base[1], "question_type": "yes/no"},
        {**base[2], "question_type": "other"},
        {**base[3], "question_type": "other"},
    ]
    model = ToyVisionLanguageModel(len(processor.tokenizer), num_labels=len(vocabulary["id2label"]))
    with torch.no_grad():
        metrics = objective.evaluate(model.eval(), rows, Accelerator(cpu=True), batch_size=3)
        inputs = processor(
            images=[r["image"] for r in rows], text=[r["question"] for r in rows], return_tensors="pt", padding=True
        )
        predictions = [vocabulary["id2label"][int(i)] for i in model(**inputs).logits.argmax(dim=-1)]
    answers = [r["answers"] for r in rows]
    assert set(metrics) == {"eval_loss", "eval_vqa_accuracy", "eval_vqa_accuracy_yes_no", "eval_vqa_accuracy_other"}
    assert metrics["eval_vqa_accuracy"] == pytest.approx(vqa_accuracy(predictions, answers))
    assert metrics["eval_vqa_accuracy_yes_no"] == pytest.approx(vqa_accuracy(predictions[:2], answers[:2]))
    assert metrics["eval_vqa_accuracy_other"] == pytest.approx(vqa_accuracy(predictions[2:], answers[2:]))
