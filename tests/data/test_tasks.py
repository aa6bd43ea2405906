"""Per-task views of the scene schema and the VQA answer vocabulary, checked row by row against the nested scenes."""

import json

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from transformers import PreTrainedConfig

from vlzoo.data import (
    TASKS,
    build_answer_vocabulary,
    caption_rows,
    example_features,
    load_shapes,
    referring_rows,
    shapes_task_dataset,
    task_dataset,
    vqa_rows,
)

SMALL = {"num_train": 10, "num_validation": 3, "num_test": 2, "image_size": 32, "seed": 7}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="module")
def shapes(cache) -> DatasetDict:
    return load_shapes(**SMALL, cache_dir=cache)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_vqa_rows_have_one_row_per_question(shapes):
    scenes = shapes["train"]
    rows = vqa_rows(scenes)
    expected = [
        (scene_index, question, answer, answers, question_type, scene["scene_id"])
        for scene_index, scene in enumerate(scenes)
        for question, answer, question_type, answers in zip(
            scene["questions"]["question"],
            scene["questions"]["answer"],
            scene["questions"]["type"],
            scene["answers"],
            strict=True,
        )
    ]
    assert len(rows) == len(expected) > len(scenes)
    assert rows.column_names == ["image", "question", "answer", "answers", "question_type", "scene_id"]
    for row, (scene_index, question, answer, answers, question_type, scene_id) in zip(rows, expected, strict=True):
        assert (row["question"], row["answer"], row["answers"]) == (question, answer, answers)
        assert (row["question_type"], row["scene_id"]) == (question_type, scene_id)
        assert row["image"].mode == "RGB"
        assert np.array_equal(pixels(row["image"]), pixels(scenes[scene_index]["image"]))
    assert set(rows["question_type"]) == {"color", "shape", "count", "position"}


def test_referring_rows_keep_pixel_boxes(shapes):
    scenes = shapes["validation"]
    rows = referring_rows(scenes)
    expected = [
        (index, expression, bbox)
        for index, scene in enumerate(scenes)
        for expression, bbox in zip(scene["objects"]["expression"], scene["objects"]["bbox"], strict=True)
    ]
    assert len(rows) == len(expected)
    assert rows.column_names == ["image", "expression", "bbox", "scene_id"]
    for row, (index, expression, bbox) in zip(rows, expected, strict=True):
        assert row["expression"] == expression and row["bbox"] == bbox
        assert row["scene_id"] == scenes[index]["scene_id"]
        assert np.array_equal(pixels(row["image"]), pixels(scenes[index]["image"]))
        x0, y0, x1, y1 = row["bbox"]
        assert 0 <= x0 < x1 <= SMALL["image_size"] and 0 <= y0 < y1 <= SMALL["image_size"]


def test_caption_rows_select_columns_and_drop_uncaptioned_rows(shapes):
    rows = caption_rows(shapes["train"])
    assert rows.column_names == ["image", "captions", "scene_id", "label"]
    assert rows["captions"] == shapes["train"]["captions"]

    scene = {name: shapes["train"][0][name] for name in ("captions", "objects", "questions", "answers", "scene_id")}
    columns = {name: [value, value] for name, value in scene.items()}
    columns["image"] = [shapes["train"][0]["image"], shapes["train"][1]["image"]]
    columns["captions"] = [[], ["only this one"]]
    real_like = Dataset.from_dict(columns, features=example_features())
    kept = caption_rows(real_like)
    assert kept.column_names == ["image", "captions", "scene_id"]
    assert kept["captions"] == [["only this one"]]
    assert np.array_equal(pixels(kept[0]["image"]), pixels(shapes["train"][1]["image"]))


def test_task_dataset_maps_every_task_and_split(shapes, cache):
    views = {"contrastive": "captions", "itm": "captions", "mlm": "captions", "vqa": "question", "grounding": "bbox"}
    assert set(views) == set(TASKS)
    for task, column in views.items():
        splits = task_dataset(shapes, task)
        assert isinstance(splits, DatasetDict) and list(splits) == list(shapes)
        assert all(column in part.column_names for part in splits.values())
    direct = shapes_task_dataset("vqa", split="test", **SMALL, cache_dir=cache)
    assert direct["question"] == vqa_rows(shapes["test"])["question"]
    # The scenes themselves are untouched (the MS-CLIP demo and the cache read them as before).
    scene_columns = ["image", "label", "captions", "objects", "questions", "answers", "scene_id"]
    assert shapes["train"].column_names == scene_columns


def test_views_reject_bad_inputs(shapes):
    with pytest.raises(ValueError, match="task must be one of"):
        task_dataset(shapes, "captioning")
    with pytest.raises(ValueError, match="split must be one of"):
        shapes_task_dataset("vqa", split="dev")
    with pytest.raises(TypeError, match="needs a datasets.Dataset"):
        vqa_rows([{"image": None}])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['questions'\]"):
        vqa_rows(shapes["train"].remove_columns("questions"))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['objects'\]"):
        referring_rows(shapes["train"].remove_columns("objects"))


def test_answer_vocabulary_counts_majority_answers():
    rows = [
        {"answers": ["Two", "2", "3"]},  # "2" wins
        {"answers": ["2"]},
        {"answers": ["yes"]},
        {"answers": ["yes", "no", "no"]},  # "no" wins
        {"answers": ["blue", "red"]},  # tie: the first given wins
        {"answers": []},  # unanswered (test split): skipped
    ]
    vocabulary = build_answer_vocabulary(rows)
    assert vocabulary["id2label"] == {0: "2", 1: "blue", 2: "no", 3: "yes"}
    assert vocabulary["label2id"] == {"2": 0, "blue": 1, "no": 2, "yes": 3}
    assert build_answer_vocabulary(rows, min_count=2)["id2label"] == {0: "2"}


def test_answer_vocabulary_from_scenes_equals_from_question_rows(shapes):
    scenes = shapes["train"]
    from_rows = build_answer_vocabulary(vqa_rows(scenes))
    assert build_answer_vocabulary(scenes) == from_rows
    majority = [answers[0] for per_scene in scenes["answers"] for answers in per_scene]
    counts = {answer: majority.count(answer) for answer in set(majority)}
    assert list(from_rows["id2label"].values()) == sorted(counts, key=lambda a: (-counts[a], a))

    config = PreTrainedConfig(**from_rows)
    reloaded = PreTrainedConfig.from_dict(json.loads(config.to_json_string()))
    assert reloaded.id2label == from_rows["id2label"] and reloaded.label2id == from_rows["label2id"]


def test_answer_vocabulary_rejects_bad_inputs():
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        build_answer_vocabulary([{"answers": ["yes"]}], min_count=0)
    with pytest.raises(ValueError, match="lower min_count"):
        build_answer_vocabulary([{"answers": ["yes"]}], min_count=2)
    with pytest.raises(ValueError, match="column 'answers'"):
        build_answer_vocabulary([{"question": "why?"}])
    with pytest.raises(ValueError, match="must hold a list of answers"):
        build_answer_vocabulary([{"answers": "yes"}])
