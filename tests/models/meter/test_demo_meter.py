"""`vlzoo demo meter` with a tiny budget: the staged folders, the one-line summary, the figure and results.json."""

import json
import re
from collections import Counter

import pytest
from PIL import Image

from vlzoo.data import load_shapes
from vlzoo.demo import run_demo
from vlzoo.evaluation.vqa import normalize_vqa_answer
from vlzoo.registry import get_family

LINE = re.compile(r"itm accuracy: meter=(\d\.\d{3}) chance=0\.5 \| vqa accuracy: meter=(\d\.\d{3}) prior=(\d\.\d{3})")


def _question_type_prior(train, test) -> float:
    """Most frequent training answer per question type, scored on the test questions (one answer each)."""
    best: dict[str, Counter] = {}
    for scene in train["questions"]:
        for kind, answer in zip(scene["type"], scene["answer"], strict=True):
            best.setdefault(kind, Counter())[normalize_vqa_answer(answer)] += 1
    hits = [
        best[kind].most_common(1)[0][0] == normalize_vqa_answer(answer)
        for scene in test["questions"]
        for kind, answer in zip(scene["type"], scene["answer"], strict=True)
    ]
    return sum(hits) / len(hits)


def test_meter_demo_with_a_tiny_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    spec = get_family("meter").demo
    assert sorted(spec.tasks) == ["itm", "vqa"]
    result = run_demo(tmp_path / "demo", family="meter", max_steps=1, batch_size=4, num_train=8, num_test=6)
    line = result.summary()
    match = LINE.fullmatch(line)
    assert match, line
    itm, vqa, prior = (float(value) for value in match.groups())

    out = tmp_path / "demo"
    assert sorted(p.name for p in (out / "meter").iterdir()) == ["itm", "vqa"]
    for stage in ("itm", "vqa"):
        assert (out / "meter" / stage / "model.safetensors").is_file()
        assert (out / "meter" / stage / "processor_config.json").is_file()
    with Image.open(out / "meter.png") as figure:
        assert figure.format == "PNG" and figure.width > 600 and figure.height > 150
    results = json.loads((out / "results.json").read_text())
    details = results["details"]["meter"]
    assert round(details["itm"], 3) == itm and round(details["vqa"], 3) == vqa
    assert results["vqa_accuracy"]["meter"] == details["vqa"] and results["chance"] == 0.5
    assert (results["max_steps"], results["batch_size"], results["num_train"], results["num_test"]) == (1, 4, 8, 6)
    data = load_shapes(num_train=8, num_test=6, seed=0, **spec.data)
    assert round(_question_type_prior(data["train"], data["test"]), 3) == prior
    assert results["prior"] == pytest.approx(_question_type_prior(data["train"], data["test"]))
