"""`vlzoo train`: build the model, processor, data and objective from one config file, then run `train`.

The file has three sections (YAML or JSON):

```yaml
model:
  family: ms_clip            # a registry key
  task: contrastive          # one of the family's heads (default: its first); picks the model class and objective
  objective: {}              # keyword options of the task's objective, e.g. {negatives: hard} for itm; a new
                             # vqa head answers over the training data's answers ({min_answer_count: 1})
  preset: b32-yfcc           # a released preset, or vanilla (default: the family's default preset)
  config:                    # overrides of the preset (sub-config dicts are merged)
    vision_config: {image_size: 64, patch_size: 8, stem_strides: [2, 2, 1, 1]}
  pretrained: null           # or a save_pretrained folder to fine-tune
data:
  dataset: shapes            # shapes | captions | refcoco (trains model.task=grounding) | vqa (model.task=vqa)
  num_train: 2000            # shapes: scenes generated; the others: at most this many training images, in file order
  num_validation: 200        # shapes: scenes generated; captions, vqa: images held out from the end of the training
                             # file for evaluation (or at most this many of the eval file's); refcoco: at most this
                             # many images of eval_split
  image_size: 64             # shapes: side of the scenes; the others: images resized to this shorter side as read
                             # (refcoco boxes scaled with them)
  image_dir: null            # captions, refcoco, vqa: the folder the files below name images in
  split: train               # captions: the Karpathy split; refcoco: the refs' split; vqa: default null, the
                             # questions file's data_subtype (fills image_name_template's {split})
  eval_split: validation     # as split, for evaluation; refcoco: default val, null for no evaluation
  # captions (vlzoo.data.read_caption_dataset):
  annotations: null          # a JSONL/CSV/COCO/Karpathy caption file; vqa: the VQAv2 annotations (answers) JSON
  eval_annotations: null     # a caption file evaluated instead of held-out images; vqa: the answers of
                             # eval_questions
  # refcoco (vlzoo.data.read_refcoco):
  refs: null                 # refs JSON, or the original refs(unc).p pickle (read without running its code)
  instances: null            # COCO instances JSON: image file names and boxes
  integer_boxes: false       # truncate x, y, w, h to ints first, as TransVG's data loader does
  # vqa (vlzoo.data.read_vqa; human answers outside the training vocabulary get no target, see with_data_defaults):
  questions: null            # VQAv2 questions JSON
  image_name_template: COCO_{split}_{image_id:012d}.jpg  # e.g. "{split}/COCO_{split}_{image_id:012d}.jpg"
  eval_questions: null       # with eval_annotations: evaluated instead of held-out images
training:                    # TrainingArguments fields
  output_dir: runs/ms_clip   # absent or empty, unless training.resume_from continues the run in it
  max_steps: 500
```
Command-line overrides `section.key=value` (values parsed as YAML) win over the file.
"""

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from .arguments import TrainingArguments, load_training_config
from .run_folder import check_run_folder
from .trainer import TrainResult, train

SECTIONS = ("model", "data", "training")
MODEL_KEYS = ("family", "task", "objective", "preset", "config", "pretrained")
SHAPES_KEYS = ("dataset", "num_train", "num_validation", "num_test", "image_size", "min_objects", "max_objects", "seed",
               "cache_dir")  # fmt: skip
CAPTION_KEYS = ("dataset", "annotations", "image_dir", "split", "eval_annotations", "eval_split", "num_train",
                "num_validation", "image_size")  # fmt: skip
REFCOCO_KEYS = ("dataset", "refs", "instances", "image_dir", "split", "eval_split", "integer_boxes", "num_train",
                "num_validation", "image_size")  # fmt: skip
VQA_KEYS = ("dataset", "questions", "annotations", "image_dir", "image_name_template", "split", "eval_questions",
            "eval_annotations", "eval_split", "num_train", "num_validation", "image_size")  # fmt: skip
DATASET_KEYS = {"shapes": SHAPES_KEYS, "captions": CAPTION_KEYS, "refcoco": REFCOCO_KEYS, "vqa": VQA_KEYS}
# Read datasets whose rows fit one task only: refcoco has referring expressions and boxes, vqa questions and answers.
DATASET_TASKS = {"refcoco": "grounding", "vqa": "vqa"}
# Deeper than any real config (model.config.vision_config.key is 4); stops pathological files early.
MAX_DEPTH = 12
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `section.key=value` overrides (`value` parsed as YAML) to a copy of `config`.

    Only `model.config.*` may go deeper than `section.key`: the preset's sub-configs are mappings.
    """
    result = copy.deepcopy(config)
    for item in overrides or []:
        if not isinstance(item, str) or "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. training.max_steps=100")
        path, raw = item.split("=", 1)
        section, *keys = path.split(".")
        if section not in SECTIONS:
            raise ValueError(f"override {item!r}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        if not all(keys):
            raise ValueError(f"override {item!r}: {path!r} has an empty key")
        nested = section == "model" and keys[0] == "config"
        if len(keys) > 1 and not nested:
            raise ValueError(
                f"override {item!r}: {section}.{keys[0]} takes a value, not nested keys (only model.config.* nests)"
            )
        if len(keys) + 1 > MAX_DEPTH:
            raise ValueError(f"override {item!r} nests deeper than {MAX_DEPTH} levels")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({_one_line(error)})") from None
        node, where = result.setdefault(section, {}), section
        for key in keys[:-1]:
            if not isinstance(node, dict):
                break
            node, where = node.setdefault(key, {}), f"{where}.{key}"
        if not isinstance(node, dict):
            raise ValueError(f"override {item!r}: {where} is {type(node).__name__} {node!r}, not a mapping")
        node[keys[-1]] = value
    return result


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read the file (if any), apply overrides and check the section and key names, types and nesting."""
    config = load_training_config(path) if path is not None else {}
    config = apply_overrides(config, overrides)
    _check_depth(config)
    unknown = sorted(map(str, set(config) - set(SECTIONS)))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; valid sections: {', '.join(SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(config.setdefault(section, {}), dict):
            raise ValueError(f"section {section!r} must be a mapping, got {type(config[section]).__name__}")
    model = config["model"]
    _check_keys("model", model, MODEL_KEYS)
    for key in ("family", "task", "preset", "pretrained"):
        if model.get(key) is not None and not isinstance(model[key], str):
            raise ValueError(f"model.{key} must be a string, got {model[key]!r}")
    if model.get("config") is not None and not isinstance(model["config"], dict):
        raise ValueError(f"model.config must be a mapping of config fields, got {model['config']!r}")
    objective = model.get("objective")
    if objective is not None and (not isinstance(objective, dict) or not all(isinstance(k, str) for k in objective)):
        raise ValueError(f"model.objective must be a mapping of objective options, got {objective!r}")
    data = config["data"]
    data.setdefault("dataset", "shapes")
    if not isinstance(data["dataset"], str) or data["dataset"] not in DATASET_KEYS:
        raise ValueError(f"data.dataset must be 'shapes', 'captions', 'refcoco' or 'vqa', got {data['dataset']!r}")
    _check_keys("data", data, DATASET_KEYS[data["dataset"]])
    config["training"].setdefault("output_dir", "vlzoo-train")
    return config


def _check_depth(config: dict[str, Any]) -> None:
    pending = [(config, 1, "config")]
    while pending:
        node, depth, where = pending.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"the config nests deeper than {MAX_DEPTH} levels (at {where})")
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in children:
            if isinstance(value, (dict, list)):
                pending.append((value, depth + 1, f"{where}.{key}"))


def _check_keys(section: str, values: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(map(str, set(values) - set(allowed)))
    if unknown:
        raise ValueError(f"unknown keys in section {section!r}: {unknown}; valid keys: {', '.join(allowed)}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def pretrained_source(value: str, what: str = "model.pretrained") -> str:
    """A local save_pretrained folder, or a Hub repo id; a missing path fails here, without any network access.

    A value is taken as a path (never looked up on the Hub) when it exists, starts with "/", "." or "~",
    is not a valid repo id, or its first component is an existing folder (so "runs/typo" names a local folder).
    """
    path = Path(value).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{what}={value!r} is not a save_pretrained folder (it has no config.json)")
        return str(path)
    path_like = (
        value.startswith(("/", "~", "."))
        or "\\" in value
        or not _HUB_ID.match(value)
        or ("/" in value and Path(value.split("/", 1)[0]).is_dir())
    )
    if path_like:
        raise FileNotFoundError(f"{what}={value!r} does not exist (no such local folder)")
    return value


def model_task(model_section: dict[str, Any], family: Any) -> str:
    """`model.task`, checked against the family's heads; default the family's first task."""
    task = model_section.get("task") or family.default_task
    if task not in family.heads:
        raise ValueError(
            f"model.task={task!r} is not a task of family {family.key!r}; its tasks: {', '.join(family.heads)}"
        )
    return task


def model_family(model_section: dict[str, Any]) -> Any:
    """The `Family` record of `model.family` (default: the first registered family)."""
    from ..registry import families, get_family

    return get_family(model_section.get("family") or families()[0].key)


def build_model_and_processor(model_section: dict[str, Any]):
    """The family's model for `model.task` (from a preset with overrides, or a pretrained folder) and its processor."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import PreTrainedConfig

    family = model_family(model_section)
    model_class = family.head(model_task(model_section, family))
    pretrained = model_section.get("pretrained")
    if pretrained is not None:
        from transformers import AutoProcessor

        source = pretrained_source(pretrained)
        return model_class.from_pretrained(source), AutoProcessor.from_pretrained(source), family
    if family.config_builder is None:
        raise ValueError(f"family {family.key!r} has no presets: set model.pretrained")
    preset = model_section.get("preset") or family.default_preset
    if preset is None:
        raise ValueError(f"family {family.key!r} has no default preset: set model.preset")
    overrides = model_section.get("config") or {}
    try:
        default = family.config_builder(preset)
        _check_config_keys(default, overrides, "model.config", PreTrainedConfig)
        config = family.config_builder(preset, **_floats_as_numbers(default, overrides, PreTrainedConfig))
    except StrictDataclassError as error:
        raise ValueError(f"model.config: {_one_line(error)}") from None
    if family.processor_builder is None:
        raise ValueError(f"family {family.key!r} cannot build a processor for a new model: set model.pretrained")
    processor = family.processor_builder(config)
    return model_class(config), processor, family


def with_data_defaults(model_section: dict[str, Any], family: Any, data_section: dict[str, Any]) -> dict[str, Any]:
    """`model_section` with the objective options the data needs: VQAv2-style files (`data.dataset: vqa`) train
    with `unknown_answers: ignore`.

    Each VQAv2 question has ten human answers, and the rare ones are in no vocabulary of majority answers, so the
    VQA objective's default (stop at an answer outside the vocabulary) would stop every run; ViLT and METER likewise
    give such answers no target. A `model.objective.unknown_answers` in the config is kept.
    """
    from .objectives import VqaObjective

    options = dict(model_section.get("objective") or {})
    if data_section.get("dataset") != "vqa" or "unknown_answers" in options:
        return model_section
    factory = family.objective_factory(model_task(model_section, family))
    if not (isinstance(factory, type) and issubclass(factory, VqaObjective)):
        return model_section
    return {**model_section, "objective": {**options, "unknown_answers": "ignore"}}


def with_labels_from_data(model_section: dict[str, Any], family: Any, train_rows: Any) -> dict[str, Any]:
    """`model_section` with the label vocabulary of the training rows, for tasks whose head size comes from the data.

    An objective class with a `labels_from_data(rows, **options)` classmethod (VQA: the answer vocabulary) gets it
    called when a new model is built from a preset: the labels go into `model.config` (so the head has one output
    per answer and the saved config carries `id2label`) and into the objective. Labels the config file already
    gives (`model.config.id2label` or `model.objective.id2label`) are used as they are; a pretrained model keeps its
    own (see `build_objective`).
    """
    factory = family.objective_factory(model_task(model_section, family))
    labels_from_data = getattr(factory, "labels_from_data", None)
    options = dict(model_section.get("objective") or {})
    config = dict(model_section.get("config") or {})
    if labels_from_data is None or model_section.get("pretrained") is not None:
        return model_section
    if "id2label" in options or "id2label" in config:
        labels = {key: (options.get(key) or config.get(key)) for key in ("id2label", "label2id")}
        labels = {key: value for key, value in labels.items() if value is not None}
    else:
        labels = labels_from_data(train_rows, **options)
        if not labels.get("id2label"):
            raise ValueError(
                "the training data has no answers to build the label vocabulary from (model.task needs them); "
                "check data, or lower model.objective.min_answer_count"
            )
    options.pop("min_answer_count", None)
    return {**model_section, "config": {**config, **labels}, "objective": {**options, **labels}}


def build_objective(model_section: dict[str, Any], family: Any, processor: Any, model: Any = None):
    """The objective of `model.task` (the family's own or the shared one), built with the `model.objective` options.

    For an objective that learns labels from the data (`labels_from_data`), a model given here supplies them when
    the options do not: a pretrained VQA model is fine-tuned over its own `config.id2label`.
    """
    task = model_task(model_section, family)
    options = dict(model_section.get("objective") or {})
    if hasattr(family.objective_factory(task), "labels_from_data"):
        options.pop("min_answer_count", None)
        if "id2label" not in options and model is not None:
            options.update(id2label=model.config.id2label, label2id=model.config.label2id)
    try:
        return family.objective(task, processor, **options)
    except TypeError as error:
        raise ValueError(f"model.objective for task {task!r}: {_one_line(error)}") from None


def _floats_as_numbers(default: Any, overrides: dict[str, Any], config_type: type) -> dict[str, Any]:
    """Overrides of float fields given as strings made numbers: YAML 1.1 reads `1e-12` (no dot) as a string."""
    result = {}
    for key, value in overrides.items():
        field = getattr(default, key, None)
        if isinstance(field, config_type) and isinstance(value, dict):
            value = _floats_as_numbers(field, value, config_type)
        elif isinstance(field, float) and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"model.config.{key} must be a number, got {value!r}") from None
        result[key] = value
    return result


def _check_config_keys(default: Any, overrides: dict[str, Any], where: str, config_type: type) -> None:
    """Every override names a field of the preset's config (typos would otherwise become silent attributes)."""
    for key, value in overrides.items():
        if not isinstance(key, str) or not hasattr(default, key):
            raise ValueError(f"{where}.{key} is not a field of {type(default).__name__}")
        field = getattr(default, key)
        if isinstance(field, config_type) and isinstance(value, dict):
            _check_config_keys(field, value, f"{where}.{key}", config_type)


def _optional_count(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"data.{key} must be an int >= 1, got {value!r}")
    return value


def build_datasets(data_section: dict[str, Any], task: str = "contrastive"):
    """(train, eval or None): the rows `task`'s objective reads (`vlzoo.data.task_dataset`) of the shapes data, of a
    caption file, of RefCOCO-style refs or of VQAv2-style questions, with their image folder.

    For the files, `num_train` keeps at most that many training images (file order) and `image_size` resizes every
    image (and grounding box) to that shorter side as it is read. `num_validation` keeps at most that many images of
    the evaluation file or split; without one (captions, vqa), it holds out that many images from the end of the
    training file. refcoco and vqa fit one task each (`DATASET_TASKS`): other tasks would get no rows.
    """
    values = {k: v for k, v in data_section.items() if k != "dataset"}
    dataset = data_section["dataset"]
    if dataset == "shapes":
        from ..data import load_shapes

        splits = load_shapes(**values)
        return task_rows(splits["train"], task), task_rows(splits["validation"], task)
    expected = DATASET_TASKS.get(dataset)
    if expected is not None and task != expected:
        raise ValueError(
            f"data.dataset={dataset} trains model.task={expected} (its rows have no data for other tasks), "
            f"got model.task={task!r}"
        )
    counts = {key: _optional_count(values, key) for key in ("num_train", "num_validation", "image_size")}
    readers = {"captions": _read_captions, "refcoco": _read_refcoco, "vqa": _read_vqa}
    train_set, eval_set = readers[dataset](values, counts["num_validation"])
    if counts["num_train"] is not None:
        train_set = _first(train_set, counts["num_train"])
    train_set, eval_set = task_rows(train_set, task), task_rows(eval_set, task)
    if len(train_set) == 0:
        raise ValueError(f"data.dataset={dataset}: the training images have no rows for model.task={task!r}")
    if counts["image_size"] is not None:
        train_set = train_set.with_transform(_ShorterSide(counts["image_size"]))
        eval_set = eval_set.with_transform(_ShorterSide(counts["image_size"])) if eval_set is not None else None
    return train_set, eval_set


def _first(dataset: Any, count: int) -> Any:
    return dataset.select(range(min(count, len(dataset))))


def _hold_out(train_set: Any, num_validation: int | None, values: dict[str, Any], file_key: str, eval_key: str):
    """(train, eval): the last `num_validation` images of the training file held out for evaluation, if asked."""
    if num_validation is None:
        return train_set, None
    if num_validation >= len(train_set):
        raise ValueError(
            f"data.num_validation={num_validation} would hold out every image of {values[file_key]} "
            f"({len(train_set)} images); lower it, or give data.{eval_key}"
        )
    kept = len(train_set) - num_validation
    return train_set.select(range(kept)), train_set.select(range(kept, len(train_set)))


def _paths(values: dict[str, Any], dataset: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """The file and folder keys of `dataset`, checked to exist (so a typo names its `data.` key, not a reader's
    argument); absent optional keys are None. `image_dir` is a folder, every other key a file."""
    if not all(values.get(key) for key in required):
        *first, last = [f"data.{key}" for key in required]
        raise ValueError(f"data.dataset={dataset} needs {', '.join(first)} and {last}")
    paths = {}
    for key in (*required, *optional):
        value = values.get(key)
        if value is None:
            paths[key] = None
            continue
        if not isinstance(value, str) or not value:
            raise ValueError(f"data.{key} must be a path, got {value!r}")
        path = Path(value).expanduser()
        folder = key == "image_dir"
        if not (path.is_dir() if folder else path.is_file()):
            raise ValueError(f"data.{key}={value!r} is not {'a directory' if folder else 'a file'}")
        paths[key] = path
    return paths


def _split(values: dict[str, Any], key: str, default: str | None) -> str | None:
    value = values.get(key, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"data.{key} must be a split name (a string) or null, got {value!r}")
    return value


def _read(where: str, reader: Any, *args: Any, **kwargs: Any) -> Any:
    """`reader(*args, **kwargs)`, its ValueErrors prefixed with the `data.` keys it was reading."""
    try:
        return reader(*args, **kwargs)
    except ValueError as error:
        raise ValueError(f"{where}: {_one_line(error)}") from None


def _read_captions(values: dict[str, Any], num_validation: int | None):
    from ..data import read_caption_dataset

    if not values.get("annotations") or not values.get("image_dir"):
        raise ValueError("data.dataset=captions needs data.annotations and data.image_dir")
    train_set = read_caption_dataset(values["annotations"], values["image_dir"], split=values.get("split", "train"))
    if not values.get("eval_annotations"):
        return _hold_out(train_set, num_validation, values, "annotations", "eval_annotations")
    eval_set = read_caption_dataset(
        values["eval_annotations"], values["image_dir"], split=values.get("eval_split", "validation")
    )
    return train_set, (eval_set if num_validation is None else _first(eval_set, num_validation))


def _read_refcoco(values: dict[str, Any], num_validation: int | None):
    """The refs of `split` and of `eval_split` (default "val"; null: no evaluation), one example per image."""
    from ..data import read_refcoco

    paths = _paths(values, "refcoco", ("refs", "instances", "image_dir"))
    split, eval_split = _split(values, "split", "train"), _split(values, "eval_split", "val")
    if split is None:
        raise ValueError("data.split must be a split name of data.refs, got None")
    integer_boxes = values.get("integer_boxes", False)
    if not isinstance(integer_boxes, bool):
        raise ValueError(f"data.integer_boxes must be true or false, got {integer_boxes!r}")
    files = (paths["refs"], paths["instances"], paths["image_dir"])
    train_set = _read(f"data.split={split!r}", read_refcoco, *files, split=split, integer_boxes=integer_boxes)
    if eval_split is None:
        if num_validation is not None:
            raise ValueError(
                f"data.num_validation={num_validation} needs data.eval_split (refcoco evaluates a split of "
                "data.refs), which is null"
            )
        return train_set, None
    eval_set = _read(
        f"data.eval_split={eval_split!r} (null: no evaluation)",
        read_refcoco,
        *files,
        split=eval_split,
        integer_boxes=integer_boxes,
    )
    return train_set, (eval_set if num_validation is None else _first(eval_set, num_validation))


def _read_vqa(values: dict[str, Any], num_validation: int | None):
    """The questions with their answers, and the eval files' (or images held out from the end of `questions`)."""
    from ..data import read_vqa

    paths = _paths(values, "vqa", ("questions", "annotations", "image_dir"), ("eval_questions", "eval_annotations"))
    if (paths["eval_questions"] is None) != (paths["eval_annotations"] is None):
        raise ValueError(
            "data.eval_questions and data.eval_annotations go together (evaluation scores the answers); "
            "give both, or neither to hold out data.num_validation images"
        )
    template = values.get("image_name_template")
    if template is not None and (not isinstance(template, str) or "{image_id" not in template):
        raise ValueError(
            f"data.image_name_template must be a file name with {{image_id}} (and optionally {{split}}), "
            f"e.g. 'COCO_{{split}}_{{image_id:012d}}.jpg', got {template!r}"
        )
    options = {} if template is None else {"image_name_template": template}
    split, eval_split = _split(values, "split", None), _split(values, "eval_split", None)
    train_files = (paths["questions"], paths["annotations"], paths["image_dir"])
    train_set = _read("data.questions", read_vqa, *train_files, split=split, **options)
    if paths["eval_questions"] is None:
        return _hold_out(train_set, num_validation, values, "questions", "eval_questions")
    eval_files = (paths["eval_questions"], paths["eval_annotations"], paths["image_dir"])
    eval_set = _read("data.eval_questions", read_vqa, *eval_files, split=eval_split, **options)
    return train_set, (eval_set if num_validation is None else _first(eval_set, num_validation))


def task_rows(dataset: Any, task: str) -> Any:
    """The rows `task`'s objective reads; data of tasks outside `vlzoo.data.TASKS` (a family's own) as they are."""
    from ..data.tasks import TASKS, task_dataset

    if dataset is None or task not in TASKS:
        return dataset
    return task_dataset(dataset, task)


class _ShorterSide:
    """Resize the `image` column so its shorter side is `size` (bicubic, aspect ratio kept); a picklable transform.

    A `bbox` column (grounding rows: pixel corners of the image as stored) is scaled with its image, so boxes keep
    pointing at the same object.
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from PIL import Image

        images, boxes = [], batch.get("bbox")
        for index, image in enumerate(batch["image"]):
            scale = self.size / min(image.size)
            target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            if target != image.size:
                if boxes is not None:
                    sx, sy = target[0] / image.width, target[1] / image.height
                    x0, y0, x1, y1 = boxes[index]
                    boxes[index] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
                image = image.resize(target, Image.BICUBIC)
            images.append(image)
        batch["image"] = images
        return batch


def run_training(path: str | Path | None, overrides: list[str] | None = None) -> TrainResult:
    """Everything `vlzoo train` does; call it on every process of a distributed launch.

    The config and the output folder are checked before the model or the data are built, so a bad value fails in
    seconds and writes nothing.
    """
    config = load_run_config(path, overrides)
    args = TrainingArguments.from_dict(config["training"])
    check_run_folder(args.output_dir, resuming=args.resume_from is not None)
    family = model_family(config["model"])
    train_set, eval_set = build_datasets(config["data"], task=model_task(config["model"], family))
    model_section = with_data_defaults(config["model"], family, config["data"])
    model_section = with_labels_from_data(model_section, family, train_set)
    model, processor, family = build_model_and_processor(model_section)
    objective = build_objective(model_section, family, processor, model)
    if args.eval_every_steps is None:
        eval_set = None
    return train(model, objective, train_set, args=args, eval_dataset=eval_set, processor=processor)


__all__ = [
    "apply_overrides",
    "build_datasets",
    "build_model_and_processor",
    "build_objective",
    "with_data_defaults",
    "with_labels_from_data",
    "load_run_config",
    "model_family",
    "model_task",
    "pretrained_source",
    "run_training",
]
