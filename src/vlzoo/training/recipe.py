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
  dataset: shapes            # shapes | captions
  num_train: 2000            # shapes: scenes generated; captions: at most this many images, in file order
  num_validation: 200        # shapes: scenes generated; captions: images held out from the end of the file for
                             # evaluation (or at most this many of eval_annotations)
  image_size: 64             # shapes: side of the scenes; captions: images resized to this shorter side as read
  annotations: null          # captions: a JSONL/CSV/COCO/Karpathy file (vlzoo.data.read_caption_dataset) ...
  image_dir: null            # ... and its image folder
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
    allowed = {"shapes": SHAPES_KEYS, "captions": CAPTION_KEYS}
    if not isinstance(data["dataset"], str) or data["dataset"] not in allowed:
        raise ValueError(f"data.dataset must be 'shapes' or 'captions', got {data['dataset']!r}")
    _check_keys("data", data, allowed[data["dataset"]])
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
    """(train, eval or None): the rows `task`'s objective reads (`vlzoo.data.task_dataset`) of the shapes data or of
    a caption file with its image folder.

    For captions, `num_train` keeps at most that many training images (file order), `num_validation` holds out
    that many images from the end of `annotations` for evaluation (or keeps at most that many of
    `eval_annotations`), and `image_size` resizes every image to that shorter side as it is read.
    """
    values = {k: v for k, v in data_section.items() if k != "dataset"}
    if data_section["dataset"] == "shapes":
        from ..data import load_shapes

        splits = load_shapes(**values)
        return task_rows(splits["train"], task), task_rows(splits["validation"], task)
    from ..data import read_caption_dataset

    if not values.get("annotations") or not values.get("image_dir"):
        raise ValueError("data.dataset=captions needs data.annotations and data.image_dir")
    num_train, num_validation = _optional_count(values, "num_train"), _optional_count(values, "num_validation")
    image_size = _optional_count(values, "image_size")
    train_set = read_caption_dataset(values["annotations"], values["image_dir"], split=values.get("split", "train"))
    eval_set = None
    if values.get("eval_annotations"):
        eval_set = read_caption_dataset(
            values["eval_annotations"], values["image_dir"], split=values.get("eval_split", "validation")
        )
        if num_validation is not None:
            eval_set = eval_set.select(range(min(num_validation, len(eval_set))))
    elif num_validation is not None:
        if num_validation >= len(train_set):
            raise ValueError(
                f"data.num_validation={num_validation} would hold out every image of {values['annotations']} "
                f"({len(train_set)} images); lower it, or give data.eval_annotations"
            )
        kept = len(train_set) - num_validation
        eval_set = train_set.select(range(kept, len(train_set)))
        train_set = train_set.select(range(kept))
    if num_train is not None:
        train_set = train_set.select(range(min(num_train, len(train_set))))
    train_set, eval_set = task_rows(train_set, task), task_rows(eval_set, task)
    if image_size is not None:
        train_set = train_set.with_transform(_ShorterSide(image_size))
        eval_set = eval_set.with_transform(_ShorterSide(image_size)) if eval_set is not None else None
    return train_set, eval_set


def task_rows(dataset: Any, task: str) -> Any:
    """The rows `task`'s objective reads; data of tasks outside `vlzoo.data.TASKS` (a family's own) as they are."""
    from ..data.tasks import TASKS, task_dataset

    if dataset is None or task not in TASKS:
        return dataset
    return task_dataset(dataset, task)


class _ShorterSide:
    """Resize the `image` column so its shorter side is `size` (bicubic, aspect ratio kept); a picklable transform."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from PIL import Image

        images = []
        for image in batch["image"]:
            scale = self.size / min(image.size)
            target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            images.append(image if target == image.size else image.resize(target, Image.BICUBIC))
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
    model_section = with_labels_from_data(config["model"], family, train_set)
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
    "with_labels_from_data",
    "load_run_config",
    "model_family",
    "model_task",
    "pretrained_source",
    "run_training",
]
