"""`vlzoo demo beit3` with a tiny budget: the one summary line, the figure, results.json, the prior and the demo
tokenizer (the full demo runs for minutes; see the family record for its budget)."""

import json
import re
from collections import Counter

from PIL import Image

from vlzoo import get_family
from vlzoo.demo import run_demo


def test_demo_runs_with_a_tiny_budget(tmp_path, monkeypatch):
    from vlzoo.data import load_shapes, task_dataset

    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", family="beit3", max_steps=2, batch_size=4, num_train=8, num_test=4)
    line = result.summary()
    assert re.fullmatch(r"vqa accuracy: beit3=\d\.\d{3} prior=\d\.\d{3}", line), line
    figure = tmp_path / "demo" / "beit3_vqa.png"
    assert result.figure == figure and Image.open(figure).size[1] > 100
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["vqa_accuracy"]["beit3"] == result.scores["beit3"] and results["num_test"] == 4
    assert set(results["details"]["beit3"]) >= {"vqa", "color", "shape", "count", "position", "predictions"}

    # the prior: each test question answered with its type's most frequent training answer
    spec = get_family("beit3").demo
    splits = load_shapes(num_train=8, num_test=4, seed=0, **spec.data)
    train, test = task_dataset(splits["train"], "vqa"), task_dataset(splits["test"], "vqa")
    best = {}
    for kind in set(train["question_type"]):
        answers = Counter(a for t, a in zip(train["question_type"], train["answer"], strict=True) if t == kind)
        best[kind] = answers.most_common(1)[0][0]
    hits = [best.get(t) == a for t, a in zip(test["question_type"], test["answer"], strict=True)]
    assert abs(results["prior"] - sum(hits) / len(hits)) < 1e-9
    assert line.endswith(f"prior={sum(hits) / len(hits):.3f}")


def test_demo_tokenizer_has_a_piece_for_every_question_word():
    from vlzoo.data import shapes_task_dataset
    from vlzoo.models.beit3.demo_beit3 import demo_config, demo_processor

    tokenizer = demo_processor().tokenizer
    config = demo_config()
    assert (config.vocab_size, config.mask_token_id) == (tokenizer.vocab_size, tokenizer.mask_token_id)
    questions = shapes_task_dataset("vqa", num_train=40, num_validation=1, num_test=1, image_size=64)["question"]
    for question in questions:
        tokens = tokenizer.tokenize(question)
        assert len(tokens) == len(question.split()) + 1, tokens  # one piece per word, and "?"
        assert max(len(tokenizer(question)["input_ids"]), 0) <= config.max_position_embeddings - 2
