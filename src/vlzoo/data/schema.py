"""The one column schema shared by the synthetic ``shapes`` data and every reader of real files."""

from datasets import ClassLabel, Features, Image, Sequence, Value

# `Sequence({...})` of a dict is stored (and returned) as a dict of lists, as in the Hub's detection datasets:
# `row["objects"] == {"shape": [...], "color": [...], "size": [...], "bbox": [[x0, y0, x1, y1], ...],
# "expression": [...]}` and `row["questions"] == {"question": [...], "answer": [...], "type": [...]}`.
OBJECT_FEATURES = {
    "shape": Value("string"),
    "color": Value("string"),
    "size": Value("string"),
    "bbox": Sequence(Value("float32"), length=4),
    "expression": Value("string"),
}
QUESTION_FEATURES = {"question": Value("string"), "answer": Value("string"), "type": Value("string")}


def example_features(class_names: list[str] | None = None) -> Features:
    """Features of one example; `label` is present only when `class_names` is given (synthetic data).

    Images decode as RGB (`Image(mode="RGB")`) so grayscale or palette files from real data sets batch with the rest.
    """
    columns = {"image": Image(mode="RGB")}
    if class_names is not None:
        columns["label"] = ClassLabel(names=list(class_names))
    columns.update(
        {
            "captions": Sequence(Value("string")),
            "objects": Sequence(dict(OBJECT_FEATURES)),
            "questions": Sequence(dict(QUESTION_FEATURES)),
            "answers": Sequence(Sequence(Value("string"))),
            "scene_id": Value("string"),
        }
    )
    return Features(columns)


def empty_objects() -> dict[str, list]:
    """An `objects` value with no entries."""
    return {name: [] for name in OBJECT_FEATURES}


def empty_questions() -> dict[str, list]:
    """A `questions` value with no entries."""
    return {name: [] for name in QUESTION_FEATURES}


__all__ = ["OBJECT_FEATURES", "QUESTION_FEATURES", "empty_objects", "empty_questions", "example_features"]
