"""Per-task views of the scene schema, so each training objective reads its rows directly.

The scene schema (`vlzoo.data.schema`) holds one row per image with every annotation nested inside it. The
objectives want one row per training example instead:

| task | view | one row per | columns |
|---|---|---|---|
| "contrastive", "itm", "mlm" | `caption_rows` | image with captions | `image`, `captions`, `scene_id` (+ `label`) |
| "vqa" | `vqa_rows` | question | `image`, `question`, `answer`, `answers`, `question_type`, `scene_id` |
| "grounding" | `referring_rows` | referring expression | `image`, `expression`, `bbox`, `scene_id` |

Views never change the scenes (the shapes cache and the MS-CLIP demo read `load_shapes` as before); images are
copied as encoded bytes, not decoded and re-encoded.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from numbers import Integral
from typing import Any

import datasets
from datasets import Features, Image, Sequence, Value

from vlzoo.evaluation.vqa import normalize_vqa_answer

from .shapes import SPLITS, load_shapes

TASKS = ("contrastive", "itm", "mlm", "vqa", "grounding")

VQA_FEATURES = {
    "question": Value("string"),
    "answer": Value("string"),
    "answers": Sequence(Value("string")),
    "question_type": Value("string"),
    "scene_id": Value("string"),
}
REFERRING_FEATURES = {
    "expression": Value("string"),
    "bbox": Sequence(Value("float32"), length=4),
    "scene_id": Value("string"),
}


def _check_scene_dataset(dataset: Any, columns: Iterable[str], view: str) -> datasets.Dataset:
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"{view} needs a datasets.Dataset in the scene schema (from load_shapes or a vlzoo.data reader), "
            f"got {type(dataset).__name__}."
        )
    missing = [column for column in ("image", *columns) if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{view}: the dataset lacks the column(s) {missing}; it has {dataset.column_names}. "
            "Pass a dataset in the scene schema (vlzoo.data.schema.example_features)."
        )
    return dataset


def _flatten(dataset: datasets.Dataset, explode: Callable[[dict], list[dict]], features: dict) -> datasets.Dataset:
    """Rows from `explode(scene)` for every scene, each with the scene's encoded image (never decoded here)."""
    encoded = dataset.cast_column("image", Image(decode=False))

    def rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"image": [], **{name: [] for name in features}}
        for index in range(len(batch["image"])):
            scene = {name: values[index] for name, values in batch.items()}
            for row in explode(scene):
                out["image"].append(scene["image"])
                for name in features:
                    out[name].append(row[name])
        return out

    flat = encoded.map(
        rows,
        batched=True,
        remove_columns=encoded.column_names,
        features=Features({"image": Image(decode=False), **features}),
        desc="flattening",
    )
    return flat.cast_column("image", Image(mode="RGB"))


def caption_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    """Images with their captions (`image`, `captions`, `scene_id`, and `label` when present); rows without captions
    are dropped. The contrastive, ITM and MLM objectives pick one caption per row and epoch."""
    dataset = _check_scene_dataset(dataset, ["captions", "scene_id"], "caption_rows")
    keep = [column for column in ("image", "captions", "scene_id", "label") if column in dataset.column_names]
    dataset = dataset.select_columns(keep)
    if all(len(captions) > 0 for captions in dataset["captions"]):
        return dataset
    return dataset.filter(lambda captions: len(captions) > 0, input_columns="captions", desc="dropping uncaptioned")


def vqa_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    """One row per question: `image`, `question`, `answer` (the reference answer), `answers` (every human answer,
    for soft scores: one in shapes, ten in VQAv2), `question_type` (shapes: color, shape, count, position; VQAv2:
    the answer type) and `scene_id`. Questions of unannotated test files keep an empty `answers` list."""
    dataset = _check_scene_dataset(dataset, ["questions", "answers", "scene_id"], "vqa_rows")

    def explode(scene: dict) -> list[dict]:
        questions = scene["questions"]
        if len(scene["answers"]) != len(questions["question"]):
            raise ValueError(
                f"scene {scene['scene_id']!r} has {len(questions['question'])} questions but "
                f"{len(scene['answers'])} answer lists; the schema needs one list per question."
            )
        return [
            {
                "question": question,
                "answer": answer,
                "answers": list(answers),
                "question_type": question_type,
                "scene_id": scene["scene_id"],
            }
            for question, answer, question_type, answers in zip(
                questions["question"], questions["answer"], questions["type"], scene["answers"], strict=True
            )
        ]

    return _flatten(dataset, explode, VQA_FEATURES)


def referring_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    """One row per referring expression: `image`, `expression`, `bbox` and `scene_id`.

    `bbox` is `[x0, y0, x1, y1]` in pixels of the original image with pixel-edge corners (the object covers
    `x0 <= x < x1`, `y0 <= y < y1`), as in the scene schema; the grounding objective maps it onto the processed
    canvas. Objects without an expression are skipped.
    """
    dataset = _check_scene_dataset(dataset, ["objects", "scene_id"], "referring_rows")

    def explode(scene: dict) -> list[dict]:
        objects = scene["objects"]
        return [
            {"expression": expression, "bbox": list(bbox), "scene_id": scene["scene_id"]}
            for expression, bbox in zip(objects["expression"], objects["bbox"], strict=True)
            if expression
        ]

    return _flatten(dataset, explode, REFERRING_FEATURES)


_VIEWS = {
    "contrastive": caption_rows,
    "itm": caption_rows,
    "mlm": caption_rows,
    "vqa": vqa_rows,
    "grounding": referring_rows,
}


def task_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict, task: str
) -> datasets.Dataset | datasets.DatasetDict:
    """The rows `task`'s objective trains on (see the module table), for one split or every split of a dict."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({split: _VIEWS[task](part) for split, part in dataset.items()})
    return _VIEWS[task](dataset)


def shapes_task_dataset(task: str, split: str = "train", **load_shapes_kwargs: Any) -> datasets.Dataset:
    """`task_dataset(load_shapes(**load_shapes_kwargs)[split], task)`: shapes rows ready for `task`'s objective.

    Example:
        >>> questions = shapes_task_dataset("vqa", num_train=8, num_validation=2, num_test=2)  # doctest: +SKIP
        >>> questions[0]["question"], questions[0]["answers"], questions[0]["question_type"]  # doctest: +SKIP
        ('What color is the large triangle?', ['orange'], 'color')
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return task_dataset(load_shapes(**load_shapes_kwargs)[split], task)


def _question_answer_lists(dataset: Any, answers_column: str) -> Iterable[list[str]]:
    """Every question's answer list, from a VQA view (a list per row) or the scene schema (a list of lists)."""
    if isinstance(dataset, datasets.Dataset):
        if answers_column not in dataset.column_names:
            raise ValueError(f"the dataset has no column {answers_column!r}; it has {dataset.column_names}.")
        values = dataset[answers_column]
    else:
        try:
            values = [row[answers_column] for row in dataset]
        except (KeyError, TypeError) as error:
            raise ValueError(f"every row must be a mapping with the column {answers_column!r} ({error!r}).") from None
    for index, value in enumerate(values):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(
                f"row {index}: column {answers_column!r} must hold a list of answers (or a list of such lists per "
                f"scene), got {value!r}."
            )
        if value and all(isinstance(item, (list, tuple)) for item in value):
            yield from (list(item) for item in value)
        elif all(isinstance(item, str) for item in value):
            yield list(value)
        else:
            raise ValueError(f"row {index}: column {answers_column!r} mixes answers and lists of answers: {value!r}.")


def build_answer_vocabulary(
    dataset: Any, *, min_count: int = 1, answers_column: str = "answers"
) -> dict[str, dict[Any, Any]]:
    """The answer classes of a VQA head: answers that are the majority answer of at least `min_count` questions.

    Each question counts once, for its most frequent normalised answer (`normalize_vqa_answer`; ties go to the
    answer given first), which is how VQAv2's `multiple_choice_answer` and the ViLT/METER vocabularies are made
    (METER keeps answers with 9 or more). Labels are the normalised answers, ordered by decreasing count, then
    alphabetically, so the order does not depend on the order of the rows. Questions without answers are skipped.

    Args:
        dataset: `vqa_rows` output (a list of answers per row), a scene-schema dataset (a list of answer lists per
            row), or any sequence of row dicts with `answers_column`.
        min_count: keep answers that win at least this many questions.
        answers_column: the column holding the answers.

    Returns:
        `{"id2label": {0: answer, ...}, "label2id": {answer: 0, ...}}`: give both to the model config
        (`config.update(vocabulary)` or `Config(**vocabulary)`; setting only `id2label` leaves a stale `label2id`)
        and `id2label` to `VqaObjective`. Saved configs write the ids as strings; `from_pretrained` turns them back.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, Integral) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}.")
    counts: Counter[str] = Counter()
    for answers in _question_answer_lists(dataset, answers_column):
        if not answers:
            continue
        if not all(isinstance(answer, str) for answer in answers):
            raise TypeError(f"answers must be strings, got {answers!r}.")
        counts[Counter(normalize_vqa_answer(answer) for answer in answers).most_common(1)[0][0]] += 1
    labels = sorted((answer for answer, count in counts.items() if count >= min_count), key=lambda a: (-counts[a], a))
    if not labels:
        raise ValueError(
            f"no answer is the majority answer of {min_count} or more questions (found {len(counts)} distinct "
            "answers); lower min_count or check the answers column."
        )
    return {"id2label": dict(enumerate(labels)), "label2id": {label: index for index, label in enumerate(labels)}}


__all__ = [
    "TASKS",
    "build_answer_vocabulary",
    "caption_rows",
    "referring_rows",
    "shapes_task_dataset",
    "task_dataset",
    "vqa_rows",
]
