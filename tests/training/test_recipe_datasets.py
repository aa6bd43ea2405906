"""`vlzoo train` on RefCOCO-style refs (`data.dataset: refcoco`) and VQAv2-style questions (`data.dataset: vqa`)."""

import json
import pickle
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image
from transformers import AutoConfig

from tests.data.test_readers import refcoco_files, vqa_files, vqa_images
from vlzoo.cli import main
from vlzoo.registry import get_family
from vlzoo.training.recipe import build_datasets, with_data_defaults

# TransVG++ at the sizes of tests/models/transvg_pp/tester.py (the processor keeps the first 200 BERT ids)
TINY_TRANSVG_PP = {
    "family": "transvg_pp",
    "task": "grounding",
    "config": {
        "text_config": {"vocab_size": 200, "hidden_size": 20, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "intermediate_size": 37, "max_position_embeddings": 40},
        "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 37,
        "language_layers": [1, 3], "image_size": 64, "box_head_hidden_size": 24, "max_query_length": 12,
    },
}  # fmt: skip
# METER at the sizes of tests/models/meter/test_training_meter.py (the 261-id byte-level vocabulary needs no files)
TINY_METER = {
    "family": "meter",
    "task": "vqa",
    "preset": "clip16-224-pretrain",
    "config": {
        "vision_config": {"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "image_size": 32},
        "text_config": {"vocab_size": 261, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "intermediate_size": 37, "max_position_embeddings": 66},
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 37,
    },
}  # fmt: skip
SHORT = {"max_steps": 2, "per_device_batch_size": 2, "eval_batch_size": 2, "eval_every_steps": 2,
         "save_state_every_steps": 2, "progress_bar": False}  # fmt: skip


def refcoco_data(tmp_path: Path) -> dict:
    """The refs of tests/data/test_readers.py (train: a.png, 3 expressions; val: b.png) as the original pickle."""
    folder = tmp_path / "images"
    (folder / "val2014").mkdir(parents=True)
    Image.new("RGB", (7, 5), (200, 10, 10)).save(folder / "a.png")
    Image.new("L", (6, 4), 90).save(folder / "b.png")
    Image.new("RGB", (5, 5), (0, 0, 250)).save(folder / "val2014" / "c.png")
    refs, instances = refcoco_files(tmp_path)
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    return {"dataset": "refcoco", "refs": str(refs_path), "instances": str(instances), "image_dir": str(folder)}


def vqa_data(tmp_path: Path) -> dict:
    """The questions of tests/data/test_readers.py: image 42 ('red', '1') then image 7 ('yes')."""
    questions, annotations = vqa_files(tmp_path)
    return {"dataset": "vqa", "questions": str(questions), "annotations": str(annotations),
            "image_dir": str(vqa_images(tmp_path))}  # fmt: skip


def write_config(tmp_path: Path, model: dict, data: dict) -> str:
    config = {"model": model, "data": data, "training": {"output_dir": str(tmp_path / "run"), **SHORT}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_train_grounding_on_refcoco_files(tmp_path, capsys):
    from vlzoo.models.transvg_pp import TransvgPlusPlusForVisualGrounding

    config = write_config(tmp_path, TINY_TRANSVG_PP, refcoco_data(tmp_path))
    assert main(["train", config, "data.image_size=20", "data.integer_boxes=true"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    run = tmp_path / "run"
    state = json.loads((run / "checkpoints" / "step_2" / "trainer_state.json").read_text())
    [(step, metrics)] = state["eval_history"]  # evaluated on the val split (b.png, one expression)
    assert step == 2 and 0.0 <= metrics["eval_grounding_accuracy"] <= 1.0
    model = TransvgPlusPlusForVisualGrounding.from_pretrained(run)
    assert model.config.architectures == ["TransvgPlusPlusForVisualGrounding"] and model.config.hidden_size == 32


def test_train_vqa_on_vqav2_files_learns_the_training_answers(tmp_path, capsys):
    config = write_config(tmp_path, TINY_METER, {**vqa_data(tmp_path), "num_validation": 1, "image_size": 8})
    # human answers outside the vocabulary ("dark red", "orange") get no target rather than stopping the run
    assert main(["train", config]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    saved = AutoConfig.from_pretrained(tmp_path / "run")
    assert saved.architectures == ["MeterForQuestionAnswering"]
    # the answers of image 42's questions; image 7 ('yes') is held out for evaluation
    assert saved.id2label == {0: "1", 1: "red"}
    assert saved.label2id == {"1": 0, "red": 1}


def test_refcoco_rows_splits_and_resized_boxes(tmp_path):
    data = refcoco_data(tmp_path)
    train_rows, eval_rows = build_datasets(data, task="grounding")
    assert list(train_rows["expression"]) == ["left red thing", "the red one", "grey blob"]
    assert list(eval_rows["scene_id"]) == ["b.png"]  # eval_split defaults to "val"
    assert build_datasets({**data, "eval_split": None}, task="grounding")[1] is None
    test_a = build_datasets({**data, "split": "testA", "eval_split": "testA"}, task="grounding")[0]
    assert list(test_a["scene_id"]) == ["val2014/c.png"]
    # integer_boxes truncates x, y, w, h first: [1.0, 2.0, 3.0, 1.5] -> [1, 2, 1 + 3, 2 + 1]
    assert build_datasets({**data, "integer_boxes": True}, task="grounding")[0][0]["bbox"] == [1.0, 2.0, 4.0, 3.0]
    # the shorter side becomes 10: a.png 7x5 -> 14x10 (x2), b.png 6x4 -> 15x10 (x2.5); boxes scale with them
    resized, resized_eval = build_datasets({**data, "image_size": 10}, task="grounding")
    assert resized[0]["image"].size == (14, 10) and resized[0]["bbox"] == [2.0, 4.0, 8.0, 7.0]
    assert resized[2]["bbox"] == [0.0, 0.0, 4.0, 4.0]
    assert resized_eval[0]["image"].size == (15, 10) and resized_eval[0]["bbox"] == [0.0, 0.0, 15.0, 10.0]


def test_vqa_rows_hold_out_and_eval_files(tmp_path):
    data = vqa_data(tmp_path)
    train_rows, no_eval = build_datasets(data, task="vqa")
    assert list(train_rows["answer"]) == ["red", "1", "yes"] and no_eval is None
    assert train_rows[0]["image"].size == (4, 4)
    train_rows, held_out = build_datasets({**data, "num_validation": 1, "image_size": 8}, task="vqa")
    assert list(train_rows["question"]) == ["What color is it?", "How many squares?"]
    assert list(held_out["question"]) == ["Is it grey?"] and held_out[0]["image"].size == (8, 8)
    first = build_datasets({**data, "num_train": 1}, task="vqa")[0]
    assert list(first["scene_id"]) == ["COCO_val2014_000000000042.jpg"] * 2  # one image, both its questions
    # eval files instead of a hold-out; num_validation keeps at most that many of their images
    evaluated = {**data, "eval_questions": data["questions"], "eval_annotations": data["annotations"]}
    assert len(build_datasets(evaluated, task="vqa")[1]) == 3
    assert list(build_datasets({**evaluated, "num_validation": 1}, task="vqa")[1]["answer"]) == ["red", "1"]
    # a template naming the folder of the split (VQAv2's train2014/ and val2014/ under one image_dir)
    folder = Path(data["image_dir"]) / "val2014"
    folder.mkdir()
    for name in Path(data["image_dir"]).glob("*.jpg"):
        name.rename(folder / name.name)
    nested = {**data, "image_name_template": "{split}/COCO_{split}_{image_id:012d}.jpg"}
    assert list(build_datasets(nested, task="vqa")[0]["scene_id"])[-1] == "val2014/COCO_val2014_000000000007.jpg"
    custom = {**nested, "split": "mine", "image_name_template": "val2014/COCO_val2014_{image_id:012d}.jpg"}
    assert len(build_datasets(custom, task="vqa")[0]) == 3


def test_vqa_files_ignore_answers_outside_the_vocabulary_unless_the_config_says_otherwise():
    family = get_family("meter")
    section = {"family": "meter", "task": "vqa"}
    assert with_data_defaults(section, family, {"dataset": "vqa"})["objective"] == {"unknown_answers": "ignore"}
    kept = {**section, "objective": {"unknown_answers": "error", "min_answer_count": 2}}
    assert with_data_defaults(kept, family, {"dataset": "vqa"}) == kept
    assert with_data_defaults(section, family, {"dataset": "shapes"}) == section


def _fails(argv: list[str], capsys) -> str:
    """Run `vlzoo ARGV`; assert status 1 and one `error:` line on stderr, without a traceback; return that line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("dataset", "overrides", "message"),
    [
        ("refcoco", ["model.family=ms_clip", "model.task=null"],
         r"data.dataset=refcoco trains model.task=grounding \(its rows have no data for other tasks\), "
         r"got model.task='contrastive'"),
        ("vqa", ["model.family=meter", "model.task=itm"],
         r"data.dataset=vqa trains model.task=vqa .*got model.task='itm'"),
        ("vqa", ["model.family=transvg_pp", "model.task=grounding"], r"data.dataset=vqa trains model.task=vqa .*got model.task='grounding'"),
        ("refcoco", ["data.instances=null"], r"data.dataset=refcoco needs data.refs, data.instances and data.image_dir"),
        ("vqa", ["data.annotations=null"], r"data.dataset=vqa needs data.questions, data.annotations and data.image_dir"),
        ("refcoco", ["data.questions=q.json"],
         r"unknown keys in section 'data': \['questions'\]; valid keys: dataset, refs, instances, image_dir"),
        ("vqa", ["data.integer_boxes=true"], r"unknown keys in section 'data': \['integer_boxes'\]"),
        ("refcoco", ["data.dataset=coco"], r"data.dataset must be 'shapes', 'captions', 'refcoco' or 'vqa', got 'coco'"),
        ("refcoco", ["data.refs=missing.json"], r"data.refs='missing.json' is not a file"),
        ("vqa", ["data.image_dir=missing"], r"data.image_dir='missing' is not a directory"),
        ("refcoco", ["data.integer_boxes=1"], r"data.integer_boxes must be true or false, got 1"),
        ("refcoco", ["data.eval_split=testB"],
         r"data.eval_split='testB' \(null: no evaluation\): split='testB' has no refs in refs\(unc\).p; "
         r"it has the splits \['testA', 'train', 'val'\]"),
        ("refcoco", ["data.eval_split=null", "data.num_validation=1"], r"data.num_validation=1 needs data.eval_split"),
        ("refcoco", ["data.image_size=0"], r"data.image_size must be an int >= 1, got 0"),
        ("vqa", ["data.eval_questions=questions.json"], r"data.eval_questions and data.eval_annotations go together"),
        ("vqa", ["data.num_validation=2"],
         r"data.num_validation=2 would hold out every image of .*questions.json \(2 images\); lower it, or give "
         r"data.eval_questions"),
        ("vqa", ["data.image_name_template=images.jpg"], r"data.image_name_template must be a file name with "),
    ],
)  # fmt: skip
def test_data_errors_are_one_line(dataset, overrides, message, tmp_path, capsys, monkeypatch):
    model = {"refcoco": TINY_TRANSVG_PP, "vqa": TINY_METER}[dataset]
    data = {"refcoco": refcoco_data, "vqa": vqa_data}[dataset](tmp_path)
    config = write_config(tmp_path, model, data)
    monkeypatch.chdir(tmp_path)
    line = _fails(["train", config, *overrides], capsys)
    assert re.search(message, line), line
    assert not (tmp_path / "run").exists()  # nothing written
