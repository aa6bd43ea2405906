"""Tests for the readers of caption, RefCOCO and VQA files: formats, the shared schema and loud errors."""

import csv
import json
import os
import pickle
from pathlib import Path

import pytest
from datasets import concatenate_datasets
from PIL import Image

from vlzoo.data import example_features, load_shapes, read_caption_dataset, read_refcoco, read_vqa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Three tiny images: an RGB PNG, a grayscale PNG and an RGB PNG in a subfolder."""
    folder = tmp_path / "images"
    (folder / "val2014").mkdir(parents=True)
    Image.new("RGB", (7, 5), (200, 10, 10)).save(folder / "a.png")
    Image.new("L", (6, 4), 90).save(folder / "b.png")
    Image.new("RGB", (5, 5), (0, 0, 250)).save(folder / "val2014" / "c.png")
    return folder


def check_schema(dataset) -> None:
    assert dataset.features == example_features()
    assert "label" not in dataset.features


def by_scene(dataset) -> dict[str, dict]:
    return {row["scene_id"]: row for row in dataset}


def test_jsonl_with_caption_and_captions(image_dir, tmp_path):
    path = tmp_path / "caps.jsonl"
    lines = [
        {"image": "a.png", "caption": " a red patch "},
        {"image": "b.png", "captions": ["grey", "a grey patch"]},
        {"image": "a.png", "caption": "red again"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    data = read_caption_dataset(path, image_dir, split="validation")
    check_schema(data)
    assert str(data.split) == "validation"
    assert [row["scene_id"] for row in data] == ["a.png", "b.png"]
    rows = by_scene(data)
    assert rows["a.png"]["captions"] == ["a red patch", "red again"]
    assert rows["b.png"]["captions"] == ["grey", "a grey patch"]
    image = rows["b.png"]["image"]
    assert image.mode == "RGB" and image.size == (6, 4) and image.getpixel((0, 0)) == (90, 90, 90)
    assert rows["a.png"]["objects"]["bbox"] == [] and rows["a.png"]["questions"]["question"] == []
    assert rows["a.png"]["answers"] == []


def test_csv_rows_are_grouped_per_image(image_dir, tmp_path):
    path = tmp_path / "caps.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "caption"])
        writer.writerows([["b.png", "one, with a comma"], ["a.png", "two"], ["b.png", 'three "quoted"']])
    rows = by_scene(read_caption_dataset(path, image_dir))
    assert rows["b.png"]["captions"] == ["one, with a comma", 'three "quoted"']
    assert rows["a.png"]["captions"] == ["two"]


def test_coco_captions(image_dir, tmp_path):
    path = tmp_path / "captions_val2014.json"
    coco = {
        "images": [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "b.png"}, {"id": 3, "file_name": "x.png"}],
        "annotations": [
            {"id": 1, "image_id": 9, "caption": "grey square"},
            {"id": 2, "image_id": 7, "caption": "red square"},
            {"id": 3, "image_id": 9, "caption": "a dull grey patch"},
        ],
    }
    path.write_text(json.dumps(coco))
    data = read_caption_dataset(path, image_dir)
    check_schema(data)
    assert [(row["scene_id"], row["captions"]) for row in data] == [
        ("a.png", ["red square"]),
        ("b.png", ["grey square", "a dull grey patch"]),
    ]


def karpathy(tmp_path) -> Path:
    path = tmp_path / "dataset_coco.json"
    images = [
        {"filename": "a.png", "split": "train", "sentences": [{"raw": "Red."}, {"raw": "A red image."}]},
        {"filename": "c.png", "filepath": "val2014", "split": "val", "sentences": [{"raw": "Blue."}]},
        {"filename": "b.png", "split": "test", "sentences": [{"raw": "Grey."}]},
    ]
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def test_karpathy_is_filtered_by_split(image_dir, tmp_path):
    path = karpathy(tmp_path)
    train = read_caption_dataset(path, image_dir, split="train")
    assert [(row["scene_id"], row["captions"]) for row in train] == [("a.png", ["Red.", "A red image."])]
    validation = read_caption_dataset(path, image_dir, split="validation")
    assert [row["captions"] for row in validation] == [["Blue."]]
    assert validation[0]["image"].getpixel((1, 1)) == (0, 0, 250)
    with pytest.raises(ValueError, match=r"split='restval'.*\['test', 'train', 'val'\]"):
        read_caption_dataset(path, image_dir, split="restval")


def test_caption_errors(image_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="empty"):
        read_caption_dataset(empty, image_dir)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"image": "nowhere.png", "caption": "x"}))
    with pytest.raises(ValueError, match="nowhere.png"):
        read_caption_dataset(missing, image_dir)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("just some words\n")
    with pytest.raises(ValueError, match="unknown caption format"):
        read_caption_dataset(unknown, image_dir)
    odd_json = tmp_path / "odd.json"
    odd_json.write_text(json.dumps({"images": 3}))
    with pytest.raises(ValueError, match="unknown caption JSON layout"):
        read_caption_dataset(odd_json, image_dir)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,text\na.png,hello\n")
    with pytest.raises(ValueError, match="image,caption"):
        read_caption_dataset(bad_csv, image_dir)
    no_caption = tmp_path / "nocap.jsonl"
    no_caption.write_text(json.dumps({"image": "a.png", "text": "x"}))
    with pytest.raises(ValueError, match="line 1.*caption"):
        read_caption_dataset(no_caption, image_dir)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"image": "a.png", "caption": "x"}))
    with pytest.raises(ValueError, match="image_dir"):
        read_caption_dataset(ok, tmp_path / "no_such_dir")


def test_sniffs_json_lines_and_csv_without_a_known_extension(image_dir, tmp_path):
    jsonl = tmp_path / "caps.txt"
    jsonl.write_text(
        json.dumps({"image": "a.png", "caption": "x"}) + "\n" + json.dumps({"image": "b.png", "caption": "y"})
    )
    assert [row["captions"] for row in read_caption_dataset(jsonl, image_dir)] == [["x"], ["y"]]
    as_list = tmp_path / "caps.json"
    as_list.write_text(json.dumps([{"image": "b.png", "captions": ["y", "z"]}]))
    assert read_caption_dataset(as_list, image_dir)[0]["captions"] == ["y", "z"]
    table = tmp_path / "caps.tsv.txt"
    table.write_text("image,caption\na.png,hello\n")
    assert read_caption_dataset(table, image_dir)[0]["captions"] == ["hello"]


def refcoco_files(tmp_path) -> tuple[list, Path]:
    refs = [
        {"ref_id": 0, "ann_id": 11, "image_id": 1, "split": "train", "file_name": "COCO_1_11.jpg",
         "sentences": [{"sent": "left red thing", "raw": "Left red thing"}, {"sent": "the red one"}]},
        {"ref_id": 1, "ann_id": 12, "image_id": 1, "split": "train", "sentences": [{"sent": "grey blob"}]},
        {"ref_id": 2, "ann_id": 13, "image_id": 2, "split": "testA", "sentences": [{"sent": "blue"}]},
        {"ref_id": 3, "ann_id": 14, "image_id": 3, "split": "val", "sentences": [{"sent": "grey"}]},
    ]  # fmt: skip
    instances = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 7, "height": 5},
            {"id": 2, "file_name": "val2014/c.png", "width": 5, "height": 5},
            {"id": 3, "file_name": "b.png", "width": 6, "height": 4},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "bbox": [1.0, 2.0, 3.0, 1.5], "category_id": 5},
            {"id": 12, "image_id": 1, "bbox": [0, 0, 2, 2], "category_id": 6},
            {"id": 13, "image_id": 2, "bbox": [1, 1, 2, 2], "category_id": 5},
            {"id": 14, "image_id": 3, "bbox": [0, 0, 6, 4], "category_id": 99},
        ],
        "categories": [{"id": 5, "name": "person"}, {"id": 6, "name": "dog"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    return refs, path


@pytest.mark.parametrize("refs_format", ["json", "pickle-0", "pickle-2", "pickle-5"])
def test_refcoco(image_dir, tmp_path, refs_format):
    refs, instances = refcoco_files(tmp_path)
    if refs_format == "json":
        refs_path = tmp_path / "refs.json"
        refs_path.write_text(json.dumps(refs))
    else:
        refs_path = tmp_path / "refs(unc).p"
        refs_path.write_bytes(pickle.dumps(refs, protocol=int(refs_format.split("-")[1])))
    train = read_refcoco(refs_path, instances, image_dir, split="train")
    check_schema(train)
    assert len(train) == 1
    objects = train[0]["objects"]
    assert train[0]["scene_id"] == "a.png"
    assert objects["expression"] == ["left red thing", "the red one", "grey blob"]
    assert objects["bbox"] == [[1.0, 2.0, 4.0, 3.5], [1.0, 2.0, 4.0, 3.5], [0.0, 0.0, 2.0, 2.0]]
    assert objects["shape"] == ["person", "person", "dog"]
    assert objects["color"] == ["", "", ""] and objects["size"] == ["", "", ""]
    assert train[0]["captions"] == [] and train[0]["questions"]["question"] == []
    test_a = read_refcoco(refs_path, instances, image_dir, split="testA")
    assert test_a[0]["scene_id"] == "val2014/c.png" and test_a[0]["objects"]["bbox"] == [[1.0, 1.0, 3.0, 3.0]]
    validation = read_refcoco(refs_path, instances, image_dir, split="validation")
    assert validation[0]["objects"]["shape"] == [""]


def test_refcoco_errors(image_dir, tmp_path):
    refs, instances = refcoco_files(tmp_path)
    refs_path = tmp_path / "refs.json"
    refs_path.write_text(json.dumps(refs))
    with pytest.raises(ValueError, match=r"split='testB'.*\['testA', 'train', 'val'\]"):
        read_refcoco(refs_path, instances, image_dir, split="testB")
    refs[0]["ann_id"] = 999
    refs_path.write_text(json.dumps(refs))
    with pytest.raises(ValueError, match="ann_id 999"):
        read_refcoco(refs_path, instances, image_dir)
    refs_path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_refcoco(refs_path, instances, image_dir)
    refs_path.write_text(json.dumps({"refs": []}))
    with pytest.raises(ValueError, match="list of refs"):
        read_refcoco(refs_path, instances, image_dir)


class WritesAFile:
    """A pickle payload that creates a file when unpickled (the classic `__reduce__` attack, made harmless)."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


class RunsAShellCommand:
    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


@pytest.mark.parametrize("payload", [WritesAFile, RunsAShellCommand])
@pytest.mark.parametrize("nested", [False, True])
def test_malicious_refs_pickle_runs_nothing(image_dir, tmp_path, payload, nested):
    _, instances = refcoco_files(tmp_path)
    control, marker = tmp_path / "control-marker", tmp_path / "attack-marker"
    live = pickle.loads(pickle.dumps(payload(control)))  # the payload is real: plain pickle runs it
    if hasattr(live, "close"):
        live.close()
    assert control.exists()
    evil = payload(marker)
    refs = (
        [{"ref_id": 0, "ann_id": 11, "image_id": 1, "split": "train", "sentences": [{"sent": evil}]}]
        if nested
        else evil
    )
    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(ValueError, match="refusing to load global"):
        read_refcoco(refs_path, instances, image_dir)
    assert not marker.exists()


def test_pickle_sniffed_without_a_pickle_extension(image_dir, tmp_path):
    refs, instances = refcoco_files(tmp_path)
    refs_path = tmp_path / "refs.bin"
    refs_path.write_bytes(pickle.dumps(refs, protocol=4))
    assert read_refcoco(refs_path, instances, image_dir)[0]["objects"]["expression"][2] == "grey blob"
    refs_path.write_bytes(pickle.dumps({1, 2}, protocol=4))  # a set needs no global but is not plain data either
    with pytest.raises(ValueError, match="not a pickle of plain data"):
        read_refcoco(refs_path, instances, image_dir)


def vqa_files(tmp_path, data_subtype: str | None = "val2014") -> tuple[Path, Path]:
    questions = {
        "questions": [
            {"image_id": 42, "question": "What color is it?", "question_id": 420},
            {"image_id": 7, "question": "Is it grey?", "question_id": 70},
            {"image_id": 42, "question": "How many squares?", "question_id": 421},
        ]
    }
    if data_subtype:
        questions["data_subtype"] = data_subtype
    human = ["red"] * 8 + ["dark red", "orange"]
    annotations = {
        "annotations": [
            {"question_id": 70, "image_id": 7, "multiple_choice_answer": "yes", "answer_type": "yes/no",
             "answers": [{"answer": "yes", "answer_id": k + 1} for k in range(10)]},
            {"question_id": 420, "image_id": 42, "multiple_choice_answer": "red", "answer_type": "other",
             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(human)]},
            {"question_id": 421, "image_id": 42, "multiple_choice_answer": "1", "answer_type": "number",
             "answers": [{"answer": "1"}] * 9 + [{"answer": "2"}]},
        ]
    }  # fmt: skip
    q_path, a_path = tmp_path / "questions.json", tmp_path / "annotations.json"
    q_path.write_text(json.dumps(questions))
    a_path.write_text(json.dumps(annotations))
    return q_path, a_path


def vqa_images(tmp_path) -> Path:
    folder = tmp_path / "vqa_images"
    folder.mkdir()
    for image_id in (42, 7):
        Image.new("RGB", (4, 4), (image_id, 0, 0)).save(folder / f"COCO_val2014_{image_id:012d}.jpg", format="PNG")
    return folder


def test_vqa(tmp_path):
    q_path, a_path = vqa_files(tmp_path)
    data = read_vqa(q_path, a_path, vqa_images(tmp_path))
    check_schema(data)
    assert str(data.split) == "val2014"
    assert [row["scene_id"] for row in data] == ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000007.jpg"]
    first = data[0]
    assert first["image"].getpixel((0, 0)) == (42, 0, 0)
    assert first["questions"] == {
        "question": ["What color is it?", "How many squares?"],
        "answer": ["red", "1"],
        "type": ["other", "number"],
    }
    assert first["answers"] == [["red"] * 8 + ["dark red", "orange"], ["1"] * 9 + ["2"]]
    assert data[1]["questions"]["type"] == ["yes/no"] and data[1]["answers"] == [["yes"] * 10]
    assert first["captions"] == [] and first["objects"]["expression"] == []


def test_vqa_without_annotations_and_with_a_callable_template(tmp_path):
    q_path, _ = vqa_files(tmp_path, data_subtype=None)
    folder = vqa_images(tmp_path)
    with pytest.raises(ValueError, match="split"):
        read_vqa(q_path, None, folder)
    data = read_vqa(q_path, None, folder, image_name_template=lambda image_id: f"COCO_val2014_{image_id:012d}.jpg")
    assert str(data.split) == "train"
    assert data[0]["questions"]["answer"] == ["", ""] and data[0]["answers"] == [[], []]
    named = read_vqa(q_path, None, folder, split="val2014")
    assert str(named.split) == "val2014" and len(named) == 2


def test_vqa_errors(tmp_path):
    q_path, a_path = vqa_files(tmp_path)
    folder = vqa_images(tmp_path)
    with pytest.raises(ValueError, match="COCO_test2015_000000000042.jpg"):
        read_vqa(q_path, a_path, folder, split="test2015")
    annotations = json.loads(a_path.read_text())
    annotations["annotations"].pop(0)
    a_path.write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match="question_id 70"):
        read_vqa(q_path, a_path, folder)
    with pytest.raises(TypeError, match="image_name_template"):
        read_vqa(q_path, None, folder, image_name_template=3)
    a_path.write_text("{not json")
    with pytest.raises(ValueError, match="annotations_path.*not valid JSON"):
        read_vqa(q_path, a_path, folder)


def test_readers_concatenate_with_shapes(image_dir, tmp_path):
    path = tmp_path / "caps.jsonl"
    path.write_text(json.dumps({"image": "a.png", "caption": "red"}))
    real = read_caption_dataset(path, image_dir)
    synthetic = load_shapes(num_train=2, num_validation=1, num_test=1, cache_dir=tmp_path / "cache")["train"]
    mixed = concatenate_datasets([synthetic.remove_columns("label"), real])
    assert len(mixed) == 3 and mixed[2]["captions"] == ["red"] and mixed[0]["image"].size == (64, 64)
