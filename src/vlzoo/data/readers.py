"""Readers that bring caption, referring-expression and VQA annotation files into the ``shapes`` schema.

Every reader returns a `datasets.Dataset` with the columns of `vlzoo.data.schema.example_features()`: `image`
(decoded as RGB from the file path, read lazily), `captions`, `objects`, `questions`, `answers` and `scene_id`
(the image's file name relative to `image_dir`). Real data has no class `label`, so that column is omitted.
Columns a format does not provide are empty lists. One example per image, in the order images first appear.
"""

import csv
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets

from vlzoo.conversion.plain_pickle import load_plain_pickle

from .schema import empty_objects, empty_questions, example_features

PathLike = str | os.PathLike
CAPTION_FORMATS = ("jsonl", "csv", "coco", "karpathy", "json list")
PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")
_SPLIT_ALIASES = {"validation": ("validation", "val"), "val": ("val", "validation")}


def _split_matches(value: object, split: str) -> bool:
    return value in _SPLIT_ALIASES.get(split, (split,))


def _read_text(path: Path, argument: str) -> str:
    if not path.is_file():
        raise ValueError(f"{argument}={str(path)!r} is not a file")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{argument}={str(path)!r} is empty")
    return text


def _load_json(path: Path, argument: str) -> object:
    text = _read_text(path, argument)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{argument}={str(path)!r} is not valid JSON: {error}") from error


def _require(record: object, keys: Iterable[str], where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where} should be a JSON object, got {type(record).__name__}")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{where} lacks the key(s) {missing}; it has {sorted(record)}")
    return record


class _Collector:
    """Gathers rows per image, checking each image file once."""

    def __init__(self, image_dir: PathLike):
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise ValueError(f"image_dir={str(image_dir)!r} is not a directory")
        self.rows: dict[str, dict] = {}

    def row(self, name: str, candidates: Iterable[Path] = ()) -> dict:
        if not isinstance(name, str) or not name:
            raise ValueError(f"image file name must be a non-empty string, got {name!r}")
        if name not in self.rows:
            paths = [*candidates, self.image_dir / name]
            path = next((p for p in paths if p.is_file()), None)
            if path is None:
                raise ValueError(f"image file {name!r} not found in image_dir={str(self.image_dir)!r}")
            self.rows[name] = {
                "image": str(path.resolve()),
                "captions": [],
                "objects": empty_objects(),
                "questions": empty_questions(),
                "answers": [],
                "scene_id": name,
            }
        return self.rows[name]

    def dataset(self, split: str, what: str) -> datasets.Dataset:
        if not self.rows:
            raise ValueError(f"no examples found for split={split!r} in {what}")
        rows = list(self.rows.values())
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        return datasets.Dataset.from_dict(columns, features=example_features(), split=datasets.NamedSplit(split))


def _caption_list(record: dict, where: str) -> list[str]:
    captions = record["captions"] if "captions" in record else [record["caption"]]
    if isinstance(captions, str) or not isinstance(captions, list):
        raise ValueError(f"{where}: 'captions' should be a list of strings, got {type(captions).__name__}")
    for caption in captions:
        if not isinstance(caption, str):
            raise ValueError(f"{where}: captions should be strings, got {caption!r}")
    return [caption.strip() for caption in captions]


def _add_records(collector: _Collector, records: Iterable[tuple[str, object]]) -> None:
    for where, record in records:
        record = _require(record, ["image"], where)
        if "caption" not in record and "captions" not in record:
            raise ValueError(f"{where} has neither 'caption' nor 'captions'; it has {sorted(record)}")
        collector.row(record["image"])["captions"].extend(_caption_list(record, where))


def _jsonl_records(text: str, path: Path) -> Iterable[tuple[str, object]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path.name} line {number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path.name} line {number} is not valid JSON: {error}") from error


def _add_csv(collector: _Collector, text: str, path: Path) -> None:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
        raise ValueError(f"{path.name}: a CSV caption file needs the header 'image,caption', got {reader.fieldnames}")
    for number, record in enumerate(reader, start=2):
        if not record["image"] or record["caption"] is None:
            raise ValueError(f"{path.name} line {number}: empty 'image' or missing 'caption'")
        collector.row(record["image"])["captions"].append(record["caption"].strip())


def _add_coco(collector: _Collector, data: dict, path: Path) -> None:
    names = {}
    for index, image in enumerate(data["images"]):
        image = _require(image, ["id", "file_name"], f"{path.name} images[{index}]")
        names[image["id"]] = image["file_name"]
    by_image: dict[object, list[str]] = {}
    for index, annotation in enumerate(data["annotations"]):
        annotation = _require(annotation, ["image_id", "caption"], f"{path.name} annotations[{index}]")
        if annotation["image_id"] not in names:
            raise ValueError(
                f"{path.name} annotations[{index}] refers to image_id {annotation['image_id']!r}, "
                "which is not in 'images'"
            )
        by_image.setdefault(annotation["image_id"], []).append(str(annotation["caption"]).strip())
    for image_id, name in names.items():
        if image_id in by_image:
            collector.row(name)["captions"].extend(by_image[image_id])


def _add_karpathy(collector: _Collector, data: dict, path: Path, split: str) -> None:
    seen_splits = set()
    for index, image in enumerate(data["images"]):
        image = _require(image, ["filename", "split", "sentences"], f"{path.name} images[{index}]")
        seen_splits.add(image["split"])
        if not _split_matches(image["split"], split):
            continue
        name = image["filename"]
        candidates = [collector.image_dir / image["filepath"] / name] if image.get("filepath") else []
        row = collector.row(name, candidates)
        for sentence in image["sentences"]:
            row["captions"].append(
                str(_require(sentence, ["raw"], f"{path.name} images[{index}] sentence")["raw"]).strip()
            )
    if not collector.rows:
        raise ValueError(
            f"split={split!r} has no images in {path.name}; it has the splits {sorted(map(str, seen_splits))}"
        )


def _caption_format(path: Path, text: str) -> tuple[str, object]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl", None
    if suffix == ".csv":
        return "csv", None
    stripped = text.lstrip()
    if suffix == ".json" or stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            if stripped[:1] == "{":
                return "jsonl", None
            raise ValueError(f"annotations={str(path)!r} is not valid JSON or JSON Lines") from None
        if isinstance(data, list):
            return "json list", data
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            if isinstance(data.get("annotations"), list):
                return "coco", data
            if all(isinstance(image, dict) and "sentences" in image for image in data["images"]):
                return "karpathy", data
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"annotations={str(path)!r}: unknown caption JSON layout (top level {keys}); expected COCO captions "
            "({'images', 'annotations'}), Karpathy ({'images': [{'filename', 'split', 'sentences'}]}) or a list of "
            "{'image', 'caption(s)'} records"
        )
    first_line = stripped.splitlines()[0]
    if {"image", "caption"} <= {field.strip() for field in first_line.split(",")}:
        return "csv", None
    raise ValueError(
        f"annotations={str(path)!r}: unknown caption format; expected one of {CAPTION_FORMATS} "
        "(.jsonl, .csv or .json files)"
    )


def read_caption_dataset(annotations: PathLike, image_dir: PathLike, *, split: str = "train") -> datasets.Dataset:
    """Image-caption pairs from JSONL, CSV, COCO captions JSON or Karpathy JSON into the shared schema.

    JSONL lines (or a JSON list) are `{"image": "a.jpg", "caption": "..."}` or `{"image": ..., "captions": [...]}`;
    CSV has the header `image,caption`; rows, lines and annotations of one image are merged into one example.
    Karpathy files are filtered by `split` ("validation" also matches "val"; "restval" is its own split); for the
    other formats `split` only names the returned split.
    """
    path = Path(annotations)
    text = _read_text(path, "annotations")
    collector = _Collector(image_dir)
    kind, data = _caption_format(path, text)
    if kind == "jsonl":
        _add_records(collector, _jsonl_records(text, path))
    elif kind == "json list":
        _add_records(collector, ((f"{path.name}[{index}]", record) for index, record in enumerate(data)))
    elif kind == "csv":
        _add_csv(collector, text, path)
    elif kind == "coco":
        _add_coco(collector, data, path)
    else:
        _add_karpathy(collector, data, path, split)
    return collector.dataset(split, path.name)


def _load_refs(path: Path) -> list:
    if not path.is_file():
        raise ValueError(f"refs_path={str(path)!r} is not a file")
    with path.open("rb") as file:
        magic = file.read(1)
    if path.suffix.lower() in PICKLE_SUFFIXES or magic == b"\x80":
        refs = load_plain_pickle(path)
    else:
        refs = _load_json(path, "refs_path")
    if not isinstance(refs, list):
        raise ValueError(f"refs_path={str(path)!r} should hold a list of refs, got {type(refs).__name__}")
    return refs


def read_refcoco(
    refs_path: PathLike,
    instances_path: PathLike,
    image_dir: PathLike,
    *,
    split: str = "train",
    integer_boxes: bool = False,
) -> datasets.Dataset:
    """RefCOCO/RefCOCO+/RefCOCOg referring expressions into the shared schema, one example per image.

    `refs_path` is a JSON list or the original pickle (`refs(unc).p`, loaded by a restricted unpickler that runs
    no code) of `{"ref_id", "ann_id", "image_id", "split", "sentences": [{"sent"}]}`; refs are kept when their
    `split` matches ("validation" also matches "val"). `instances_path` is COCO-style JSON: image file names come
    from its `images`, boxes from its `annotations` (`[x, y, w, h]`, converted to xyxy). `objects` gets one entry
    per (ref, sentence) with `expression` = the sentence, `shape` = the COCO category name (empty when unknown)
    and empty `color` and `size`; other columns are empty. `integer_boxes=True` truncates `x, y, w, h` to ints
    before `x + w`, `y + h`, as TransVG's data loader does (its published accuracies are measured on those boxes).

    Grounding rows for `vlzoo.training.train` or `vlzoo.evaluation.grounding.evaluate_grounding` are
    `vlzoo.data.task_dataset(read_refcoco(...), "grounding")`.
    """
    if not isinstance(integer_boxes, bool):
        raise TypeError(f"integer_boxes must be a bool, got {type(integer_boxes).__name__}")
    path = Path(refs_path)
    refs = _load_refs(path)
    instances = _require(
        _load_json(Path(instances_path), "instances_path"), ["images", "annotations"], "instances_path"
    )
    images, annotations = {}, {}
    for index, image in enumerate(instances["images"]):
        image = _require(image, ["id", "file_name"], f"instances_path images[{index}]")
        images[image["id"]] = image
    for index, annotation in enumerate(instances["annotations"]):
        annotation = _require(annotation, ["id", "image_id", "bbox"], f"instances_path annotations[{index}]")
        annotations[annotation["id"]] = annotation
    categories = {category["id"]: category.get("name", "") for category in instances.get("categories", [])}
    collector = _Collector(image_dir)
    seen_splits = set()
    for index, ref in enumerate(refs):
        ref = _require(ref, ["ann_id", "image_id", "split", "sentences"], f"{path.name} ref {index}")
        seen_splits.add(ref["split"])
        if not _split_matches(ref["split"], split):
            continue
        annotation = annotations.get(ref["ann_id"])
        if annotation is None:
            raise ValueError(f"{path.name} ref {index}: ann_id {ref['ann_id']!r} is not in instances_path")
        if annotation["image_id"] != ref["image_id"]:
            raise ValueError(
                f"{path.name} ref {index}: image_id {ref['image_id']!r} differs from its annotation's "
                f"image_id {annotation['image_id']!r}"
            )
        image = images.get(ref["image_id"])
        if image is None:
            raise ValueError(f"{path.name} ref {index}: image_id {ref['image_id']!r} is not in instances_path")
        x, y, w, h = (float(int(v)) if integer_boxes else float(v) for v in annotation["bbox"])
        objects = collector.row(image["file_name"])["objects"]
        for sentence in ref["sentences"]:
            sentence = _require(sentence, ["sent"], f"{path.name} ref {index} sentence")
            objects["shape"].append(categories.get(annotation.get("category_id"), ""))
            objects["color"].append("")
            objects["size"].append("")
            objects["bbox"].append([x, y, x + w, y + h])
            objects["expression"].append(str(sentence["sent"]).strip())
    if not collector.rows:
        raise ValueError(
            f"split={split!r} has no refs in {path.name}; it has the splits {sorted(map(str, seen_splits))}"
        )
    return collector.dataset(split, path.name)


def read_vqa(
    questions_path: PathLike,
    annotations_path: PathLike | None,
    image_dir: PathLike,
    *,
    image_name_template: str | Callable[[int], str] = "COCO_{split}_{image_id:012d}.jpg",
    split: str | None = None,
) -> datasets.Dataset:
    """VQAv2 question and annotation files into the shared schema, questions grouped per image.

    `questions[i]` has `answer` = the annotation's `multiple_choice_answer` and `type` = its `answer_type`
    ("yes/no", "number", "other"); `answers[i]` holds all human answers (ten in VQAv2) for soft-score training.
    Without `annotations_path` (test sets) answers and types are empty. Image files are
    `image_name_template.format(split=..., image_id=...)`, or `image_name_template(image_id)` for a callable;
    `split` defaults to the questions file's `data_subtype` (e.g. "val2014") and also names the returned split.
    """
    questions_file = Path(questions_path)
    data = _require(_load_json(questions_file, "questions_path"), ["questions"], "questions_path")
    if split is None:
        split = data.get("data_subtype")
    if isinstance(image_name_template, str):
        if split is None and "{split" in image_name_template:
            raise ValueError(
                f"image_name_template={image_name_template!r} needs a split, but split is None and "
                f"{questions_file.name} has no 'data_subtype': pass split=..."
            )

        def image_name(image_id: int) -> str:
            return image_name_template.format(split=split, image_id=image_id)

    elif callable(image_name_template):
        image_name = image_name_template
    else:
        raise TypeError(f"image_name_template must be a str or a callable, got {type(image_name_template).__name__}")
    answers_by_question = None
    if annotations_path is not None:
        annotation_data = _require(
            _load_json(Path(annotations_path), "annotations_path"), ["annotations"], "annotations_path"
        )
        answers_by_question = {}
        for index, annotation in enumerate(annotation_data["annotations"]):
            where = f"annotations_path annotations[{index}]"
            annotation = _require(annotation, ["question_id", "multiple_choice_answer", "answers"], where)
            answers_by_question[annotation["question_id"]] = annotation
    collector = _Collector(image_dir)
    for index, question in enumerate(data["questions"]):
        question = _require(
            question, ["image_id", "question", "question_id"], f"{questions_file.name} questions[{index}]"
        )
        row = collector.row(image_name(question["image_id"]))
        answer, answer_type, human_answers = "", "", []
        if answers_by_question is not None:
            annotation = answers_by_question.get(question["question_id"])
            if annotation is None:
                raise ValueError(f"question_id {question['question_id']!r} has no entry in annotations_path")
            answer = str(annotation["multiple_choice_answer"])
            answer_type = str(annotation.get("answer_type", ""))
            human_answers = [str(a["answer"]) for a in annotation["answers"]]
        row["questions"]["question"].append(str(question["question"]))
        row["questions"]["answer"].append(answer)
        row["questions"]["type"].append(answer_type)
        row["answers"].append(human_answers)
    return collector.dataset(split or "train", questions_file.name)


__all__ = ["read_caption_dataset", "read_refcoco", "read_vqa"]
