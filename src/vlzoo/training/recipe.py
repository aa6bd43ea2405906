"""`vlzoo train`: build the model, processor, data and objective from one config file, then run `train`.

The file has three sections (YAML or JSON):

```yaml
model:
  family: ms_clip            # a registry key
  preset: b32-yfcc           # a released preset, or vanilla
  config:                    # overrides of the preset (sub-config dicts are merged)
    vision_config: {image_size: 64, patch_size: 8, stem_strides: [2, 2, 1, 1]}
  pretrained: null           # or a save_pretrained folder to fine-tune
data:
  dataset: shapes            # shapes | captions
  num_train: 2000            # shapes: load_shapes arguments
  annotations: null          # captions: a JSONL/CSV/COCO/Karpathy file ...
  image_dir: null            # ... and its image folder
training:                    # TrainingArguments fields
  output_dir: runs/ms_clip
  max_steps: 500
```
Command-line overrides `section.key=value` (values parsed as YAML) win over the file.
"""

import copy
from pathlib import Path
from typing import Any

import yaml

from .arguments import TrainingArguments, load_training_config
from .contrastive_objective import ContrastiveObjective
from .trainer import TrainResult, train

SECTIONS = ("model", "data", "training")
MODEL_KEYS = ("family", "preset", "config", "pretrained")
SHAPES_KEYS = ("dataset", "num_train", "num_validation", "num_test", "image_size", "min_objects", "max_objects", "seed",
               "cache_dir")  # fmt: skip
CAPTION_KEYS = ("dataset", "annotations", "image_dir", "split", "eval_annotations", "eval_split")


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `section.key=value` overrides (`value` parsed as YAML) to a copy of `config`."""
    result = copy.deepcopy(config)
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. training.max_steps=100")
        path, raw = item.split("=", 1)
        section, *keys = path.split(".")
        if section not in SECTIONS:
            raise ValueError(f"override {item!r}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        node = result.setdefault(section, {})
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(raw)
    return result


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read the file (if any), apply overrides and check the section and key names."""
    config = load_training_config(path) if path is not None else {}
    config = apply_overrides(config, overrides)
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; valid sections: {', '.join(SECTIONS)}")
    model = config.setdefault("model", {})
    _check_keys("model", model, MODEL_KEYS)
    data = config.setdefault("data", {})
    data.setdefault("dataset", "shapes")
    allowed = {"shapes": SHAPES_KEYS, "captions": CAPTION_KEYS}
    if data["dataset"] not in allowed:
        raise ValueError(f"data.dataset must be 'shapes' or 'captions', got {data['dataset']!r}")
    _check_keys("data", data, allowed[data["dataset"]])
    config.setdefault("training", {}).setdefault("output_dir", "vlzoo-train")
    return config


def _check_keys(section: str, values: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown keys in section {section!r}: {unknown}; valid keys: {', '.join(allowed)}")


def build_model_and_processor(model_section: dict[str, Any]):
    """The family's model (from a preset with overrides, or a pretrained folder) and its processor."""
    from ..registry import get_family

    family = get_family(model_section.get("family", "ms_clip"))
    model_class = family.auto_models["AutoModel"]
    pretrained = model_section.get("pretrained")
    if pretrained is not None:
        from transformers import AutoProcessor

        return model_class.from_pretrained(pretrained), AutoProcessor.from_pretrained(pretrained), family
    if family.config_builder is None:
        raise ValueError(f"family {family.key!r} has no presets: set model.pretrained")
    config = family.config_builder(
        model_section.get("preset", family.variants[0]), **(model_section.get("config") or {})
    )
    if family.processor_builder is None:
        raise ValueError(f"family {family.key!r} cannot build a processor for a new model: set model.pretrained")
    processor = family.processor_builder(config)
    return model_class(config), processor, family


def build_datasets(data_section: dict[str, Any]):
    """(train, eval or None) in the vlzoo schema: the shapes data or a caption file with its image folder."""
    values = {k: v for k, v in data_section.items() if k != "dataset"}
    if data_section["dataset"] == "shapes":
        from ..data import load_shapes

        splits = load_shapes(**values)
        return splits["train"], splits["validation"]
    from ..data import read_caption_dataset

    if not values.get("annotations") or not values.get("image_dir"):
        raise ValueError("data.dataset=captions needs data.annotations and data.image_dir")
    train_set = read_caption_dataset(values["annotations"], values["image_dir"], split=values.get("split", "train"))
    eval_set = None
    if values.get("eval_annotations"):
        eval_set = read_caption_dataset(
            values["eval_annotations"], values["image_dir"], split=values.get("eval_split", "validation")
        )
    return train_set, eval_set


def run_training(path: str | Path | None, overrides: list[str] | None = None) -> TrainResult:
    """Everything `vlzoo train` does; call it on every process of a distributed launch."""
    config = load_run_config(path, overrides)
    args = TrainingArguments.from_dict(config["training"])
    model, processor, family = build_model_and_processor(config["model"])
    if family.training_objective != "contrastive":
        raise ValueError(f"family {family.key!r} trains with {family.training_objective!r}, not supported here")
    train_set, eval_set = build_datasets(config["data"])
    if args.eval_every_steps is None:
        eval_set = None
    return train(
        model, ContrastiveObjective(processor), train_set, args=args, eval_dataset=eval_set, processor=processor
    )


__all__ = ["apply_overrides", "build_datasets", "build_model_and_processor", "load_run_config", "run_training"]
