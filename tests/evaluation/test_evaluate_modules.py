"""The evaluate modules load offline through `load_metric` and agree with the plain functions."""

import json
import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before evaluate is imported (by load_metric)
os.environ["HF_EVALUATE_OFFLINE"] = "1"

import pytest  # noqa: E402

from vlzoo.evaluation import (  # noqa: E402
    METRIC_NAMES,
    grounding_accuracy,
    load_metric,
    retrieval_recall_at_k,
    vqa_accuracy,
    zero_shot_accuracy,
    zero_shot_accuracy_from_logits,
)

SIMILARITY = [[0.9, 0.1, 0.8, 0.3], [0.2, 0.3, 0.1, 0.6], [0.4, 0.1, 0.7, 0.5]]  # [n_images, n_texts]
TEXT_TO_IMAGE = [0, 0, 1, 2]


def _load(name):
    return load_metric(name, keep_in_memory=True)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_metric_loads_offline_with_its_documentation(name):
    import evaluate

    metric = _load(name)
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == name
    assert metric.description.strip() and metric.citation.strip() and "Args:" in metric.inputs_description


@pytest.mark.slow  # a second cold import of evaluate and datasets (10-20 s on 2 cores)
def test_metrics_load_in_a_fresh_offline_process(tmp_path):
    # A clean modules cache forces evaluate to copy each script; an unreachable endpoint fails any network call.
    script = (
        "import json; from vlzoo.evaluation import METRIC_NAMES, load_metric; "
        "print(json.dumps(sorted(type(load_metric(name, keep_in_memory=True)).__name__ for name in METRIC_NAMES)))"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert names == ["GroundingAccuracy", "RetrievalRecall", "VqaAccuracy", "ZeroShotAccuracy"]
    assert (tmp_path / "modules").is_dir()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="retrieval_recall"):
        load_metric("recall")


def test_zero_shot_accuracy_module():
    metric = _load("zero_shot_accuracy")
    result = metric.compute(predictions=[0, 2, 1, 1], references=[0, 1, 1, 1])
    assert result == {"accuracy": zero_shot_accuracy([0, 2, 1, 1], [0, 1, 1, 1])}
    logits, labels = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1]], [2, 0, 2]
    result = metric.compute(predictions=logits, references=labels, k=2)
    assert result == {"accuracy": zero_shot_accuracy_from_logits(logits, labels, k=2)}
    assert result["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="class scores"):
        metric.compute(predictions=[0, 1], references=[0, 1], k=2)


def test_retrieval_recall_module_takes_one_row_per_text():
    metric = _load("retrieval_recall")
    rows = [list(column) for column in zip(*SIMILARITY, strict=True)]  # the transpose: one row per text
    result = metric.compute(predictions=rows, references=TEXT_TO_IMAGE, ks=(1, 2, 3))
    assert result == retrieval_recall_at_k(SIMILARITY, TEXT_TO_IMAGE, ks=(1, 2, 3))
    assert result["mean_recall"] == pytest.approx(11 / 18)
    # Batches of texts added one by one give the same result.
    metric.add_batch(predictions=rows[:2], references=TEXT_TO_IMAGE[:2])
    metric.add_batch(predictions=rows[2:], references=TEXT_TO_IMAGE[2:])
    assert metric.compute(ks=(1, 2, 3)) == result


def test_vqa_accuracy_module():
    predictions = ["Two", "a dog", "yes", "2"]
    answers = [["2"] * 10, ["dog"] * 10, ["yes", "yes", "no"], ["two"] * 3 + ["three"] * 7]
    result = load_metric("vqa_accuracy", keep_in_memory=True).compute(predictions=predictions, references=answers)
    assert result == {"accuracy": vqa_accuracy(predictions, answers)}
    assert result["accuracy"] == pytest.approx((1 + 1 + 4 / 9 + 0.9) / 4)


def test_grounding_accuracy_module():
    predictions = [[0, 0, 10, 10], [0, 0, 10, 5], [5, 0, 15, 10], [20, 20, 30, 30]]
    targets = [[0, 0, 10, 10]] * 4
    metric = _load("grounding_accuracy")
    assert metric.compute(predictions=predictions, references=targets) == {"accuracy": 0.5}
    result = metric.compute(predictions=predictions, references=targets, threshold=0.3, box_format="xyxy")
    assert result == {"accuracy": grounding_accuracy(predictions, targets, threshold=0.3)}
    assert result["accuracy"] == pytest.approx(0.75)
