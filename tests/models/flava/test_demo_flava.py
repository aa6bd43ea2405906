"""`vlzoo demo flava` on a tiny budget: the staged folders, the summary line, results.json and the figure."""

import json
import re
from collections import Counter, defaultdict

from PIL import Image

from vlzoo.demo import run_demo

LINE = re.compile(
    r"zero-shot accuracy: flava=(\d\.\d{3}) chance=(\d\.\d{3}) \| vqa accuracy: flava=(\d\.\d{3}) prior=(\d\.\d{3})"
)


def test_flava_demo_on_a_tiny_budget(tmp_path, monkeypatch):
    from vlzoo.data import load_shapes, task_dataset

    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", family="flava", max_steps=2, batch_size=4, num_train=12, num_test=6)
    match = LINE.fullmatch(result.summary())
    assert match, result.summary()
    out = tmp_path / "demo"
    assert (out / "flava" / "contrastive" / "config.json").is_file() and (
        out / "flava" / "vqa" / "config.json"
    ).is_file()
    with Image.open(out / "flava.png") as figure:
        assert figure.format == "PNG" and figure.width > 100
    results = json.loads((out / "results.json").read_text())
    details = results["details"]["flava"]
    assert f"{details['zero_shot']:.3f}" == match.group(1) and f"{details['vqa']:.3f}" == match.group(3)
    assert results["vqa_accuracy"]["flava"] == details["vqa"]
    assert abs(results["chance"] - 1 / 42) < 1e-9

    # the prior, recomputed here: most frequent training answer per question type, scored on the test questions
    data = load_shapes(num_train=12, num_test=6, seed=0, num_validation=8, image_size=64)
    counts = defaultdict(Counter)
    train = task_dataset(data["train"], "vqa")
    for kind, answer in zip(train["question_type"], train["answer"], strict=True):
        counts[kind][answer] += 1
    test = task_dataset(data["test"], "vqa")
    hits = [
        counts[kind].most_common(1)[0][0] in answers
        for kind, answers in zip(test["question_type"], test["answers"], strict=True)
    ]
    assert abs(results["prior"] - sum(hits) / len(hits)) < 1e-9
