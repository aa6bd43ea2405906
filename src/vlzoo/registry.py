"""One `Family` record per architecture: everything the rest of vlzoo needs to know about a family.

Adding a family is its folder under `vlzoo/models/` (with `family.py` defining `build_family()`) plus one entry in
`_BUILTIN_FAMILIES` (or a call to `register_family` from outside the package). Everything else is derived from the record:

- the top-level names of `vlzoo` (`exports`, resolved lazily by `vlzoo.__getattr__`);
- the Auto classes: `AutoConfig`, `auto_models`, the processors, and for the heads vlzoo's pipelines load
  (`vlzoo.pipelines.task_heads.HEAD_AUTO_CLASSES`: "vqa", "itm", "grounding") the Auto class of that head;
- `vlzoo convert FAMILY` (`converter`), `vlzoo train` (`heads` and `objective` for `model.task`),
  `vlzoo eval` (`evaluation` for a task), `vlzoo demo FAMILY` (`demo`);
- the pipeline tasks a family supports (`pipelines`: each must exist, with the head its pipeline needs);
- the common model harness in tests/common (`model_classes`, `capabilities`, `lora_target_modules`).
"""

import contextlib
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
)

# What the common harness may assume about a family's models; each family declares the ones that hold.
CAPABILITIES: dict[str, str] = {
    "dual_encoder": "separate image and text towers scored by a similarity: `get_image_features`, "
    "`get_text_features`, `logits_per_image` / `logits_per_text`, `vision_model_output` / `text_model_output`",
    "fusion_encoder": "image and text are encoded jointly (cross-attention or multiway layers): one forward takes "
    "both modalities, and task heads read the fused sequence",
    "generation": "a head produces text with `generate()` (transformers' GenerationMixin), e.g. captioning",
    "boxes": "a head predicts boxes (`pred_boxes`, normalised cx, cy, w, h) for grounding",
}

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_TASK = re.compile(r"^[a-z][a-z0-9-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TaskEvaluation:
    """How `vlzoo eval` scores a saved model on one task.

    Args:
        metric: what is reported, e.g. "zero-shot accuracy".
        data: the data it is measured on, e.g. "shapes/test".
        run: `(model_dir, *, num_test, image_size) -> float`; `model_dir` is an existing local folder.
    """

    metric: str
    data: str
    run: Callable[..., float] = field(compare=False)

    def describe(self, value: float, num_test: int) -> str:
        """The line `vlzoo eval` prints."""
        return f"{self.metric} on {self.data} ({num_test} images): {value:.4f}"


def _zero_shot_on_shapes(model_dir: str | Path, *, num_test: int, image_size: int) -> float:
    from .evaluation.zero_shot_shapes import evaluate_zero_shot_on_shapes

    return evaluate_zero_shot_on_shapes(model_dir, num_test=num_test, image_size=image_size)


def _grounding_on_shapes(model_dir: str | Path, *, num_test: int, image_size: int) -> float:
    from .data import load_shapes, task_dataset
    from .evaluation.grounding import evaluate_grounding

    test = load_shapes(num_train=1, num_validation=1, num_test=num_test, image_size=image_size)["test"]
    return evaluate_grounding(model_dir, task_dataset(test, "grounding")).accuracy


# The evaluation of a task when the family declares none of its own.
DEFAULT_EVALUATIONS: dict[str, TaskEvaluation] = {
    "contrastive": TaskEvaluation("zero-shot accuracy", "shapes/test", _zero_shot_on_shapes),
    # TransVG's Acc@0.5 (IoU on the padded canvas) of the visual-grounding pipeline's boxes
    "grounding": TaskEvaluation("grounding Acc@0.5", "shapes/test referring expressions", _grounding_on_shapes),
}


@dataclass(frozen=True)
class DemoScore:
    """One model's result in a demo: the metric value and whatever the figure draws (e.g. class probabilities)."""

    value: float
    details: Any = None


def demo_schedule(
    learning_rate: float, *, weight_decay: float = 0.01, log_every_steps: int = 25
) -> Callable[[int], dict[str, Any]]:
    """A `DemoSpec.training`: AdamW at `learning_rate` with a warm-up over the first tenth of the steps, the
    schedule every built-in demo uses."""

    def training(max_steps: int) -> dict[str, Any]:
        return {
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "warmup_steps": max_steps // 10,
            "log_every_steps": log_every_steps,
        }

    return training


@dataclass(frozen=True)
class DemoSpec:
    """What `vlzoo demo FAMILY` trains and compares; the mechanism itself (`vlzoo.demo`) is the same for every family.

    Each model is `family.head(task)(config)`, trained with the same budget by `family.objective(task, processor)`
    on the task's rows of the shapes training split, saved with `save_pretrained`, then scored from its folder.
    With several tasks the model is trained in stages: the first task's head from the config, each later task's
    head `from_pretrained` the previous stage's folder (e.g. ITM pretraining, then VQA fine-tuning). A task whose
    objective learns its labels from the data (`labels_from_data`: VQA answers) gets them from the training rows.

    Args:
        description: one line for `vlzoo demo --help`.
        task: the head and objective every model uses, or a tuple of tasks trained in that order.
        models: name -> config builder, in order: the family's model first, then its baselines. Each model is saved
            in `OUTPUT_DIR/<name>` (with several tasks, each stage in `OUTPUT_DIR/<name>/<task>`).
        processor: builds the processor every model trains with (and that is saved next to it).
        evaluate: `(model_dir, test_split) -> DemoScore`, run on each saved folder (`OUTPUT_DIR/<name>`).
        summary: the final line, a `str.format` template with `score[<name>]`, `details[<name>]` (the `DemoScore`
            details), `parameters[<name>]` and the keys of `references` (e.g.
            `"accuracy: a={score[a]:.3f} chance={chance:.3f}"`).
        metric: the key of the scores in results.json.
        references: `(test_split, train_split) -> {name: value}`, reference values for the summary and results.json
            (chance, a prior learned from the training split).
        figure: `(path, test_split, {name: DemoScore})`, draws `OUTPUT_DIR/<figure_name>`; None draws nothing.
        figure_name: the figure's file name.
        data: `vlzoo.data.load_shapes` arguments besides num_train, num_test and seed.
        training: `max_steps -> TrainingArguments fields` besides output_dir, max_steps, batch size and seed.
        max_steps, batch_size, num_train, num_test: the default budget (optimizer steps per model, examples per
            step, training scenes, test scenes).
        aliases: other names `vlzoo demo NAME` accepts for this demo (e.g. "grounding"), never a family key.
    """

    description: str
    task: str | tuple[str, ...]
    models: Mapping[str, Callable[[], PreTrainedConfig]] = field(compare=False)
    processor: Callable[[], Any] = field(compare=False)
    evaluate: Callable[[Path, Any], DemoScore] = field(compare=False)
    summary: str
    metric: str = "accuracy"
    references: Callable[[Any, Any], Mapping[str, float]] = field(default=lambda test, train: {}, compare=False)
    figure: Callable[[Path, Any, Mapping[str, DemoScore]], None] | None = field(default=None, compare=False)
    figure_name: str = "figure.png"
    data: Mapping[str, Any] = field(default_factory=dict)
    training: Callable[[int], Mapping[str, Any]] = field(default=lambda max_steps: {}, compare=False)
    max_steps: int = 250
    batch_size: int = 64
    num_train: int = 6000
    num_test: int = 500
    aliases: tuple[str, ...] = ()

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks trained in order (one for most demos)."""
        return (self.task,) if isinstance(self.task, str) else tuple(self.task)

    def __post_init__(self):
        if not self.tasks or not all(isinstance(task, str) and _TASK.match(task) for task in self.tasks):
            raise ValueError(f"DemoSpec.task must be a task name or a tuple of them, got {self.task!r}")
        if not self.models or not all(isinstance(name, str) and _KEY.match(name) for name in self.models):
            raise ValueError(
                f"DemoSpec.models must map lowercase folder names to config builders, got {list(self.models)!r}"
            )
        for name in ("max_steps", "batch_size", "num_train", "num_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DemoSpec.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.aliases, tuple) or not all(isinstance(a, str) and _KEY.match(a) for a in self.aliases):
            raise ValueError(f"DemoSpec.aliases must be a tuple of lowercase names, got {self.aliases!r}")


@dataclass(frozen=True)
class Family:
    """Everything vlzoo knows about one architecture family.

    Args:
        key: folder and file name (`ms_clip`); lowercase letters, digits and underscores.
        name: display name (`MS-CLIP`), shown by the command line next to the key.
        config_class: the top-level config (its `model_type` is `vlzoo_<key>`).
        heads: task -> model class (`{"contrastive": MsClipModel}`; fusion families: `"vqa"`, `"itm"`, `"mlm"`,
            `"grounding"`, `"captioning"`, `"visual-reasoning"`, `"image-classification"`). The first task is the
            default of `vlzoo train` and `vlzoo eval`. Heads of the tasks in
            `vlzoo.pipelines.task_heads.HEAD_AUTO_CLASSES` are registered with that Auto class.
        auto_models: transformers Auto class name -> model class (`{"AutoModel": MsClipModel, ...}`).
        sub_config_classes: configs of sub-towers, registered with `AutoConfig` as well.
        extra_model_classes: other public model classes (tower-only classes), tested by the common harness.
        image_processor_class, tokenizer_class, processor_class: preprocessing classes.
        objectives: task -> objective factory `(processor, **options)`, for tasks whose objective is not the
            shared one of `vlzoo.training.objectives.OBJECTIVES`.
        evaluations: task -> `TaskEvaluation`, for tasks whose evaluation is not `DEFAULT_EVALUATIONS`'.
        pipelines: the transformers or vlzoo pipeline tasks the family supports.
        exports: names the top-level `vlzoo` namespace offers, attributes of `package`.
        package: the module `exports` are read from (default `vlzoo.models.<key>`).
        capabilities: what the common harness may assume (keys of `CAPABILITIES`).
        converter: builds the family's `vlzoo.conversion.FamilyConverter` (`vlzoo convert FAMILY`); None = none.
        demo: what `vlzoo demo FAMILY` compares; None = no demo.
        lora_target_modules: documented default PEFT LoRA targets (module-name suffixes).
        default_preset: the preset `vlzoo train` builds when the config names none.
        presets: every released preset `config_builder` knows -> its documented parameter count (that of the
            default head, `heads[default_task]`); the common harness builds each on the meta device and checks it.
        config_builder: `(preset, **overrides) -> config`, for building a model from a released configuration.
        processor_builder: `config -> processor` matching that model (resolution, vocabulary).
    """

    key: str
    name: str
    config_class: type[PreTrainedConfig]
    heads: Mapping[str, type[PreTrainedModel]]
    auto_models: Mapping[str, type[PreTrainedModel]] = field(default_factory=dict)
    sub_config_classes: tuple[type[PreTrainedConfig], ...] = ()
    extra_model_classes: tuple[type[PreTrainedModel], ...] = ()
    image_processor_class: type | None = None
    tokenizer_class: type | None = None
    processor_class: type | None = None
    objectives: Mapping[str, Callable[..., Any]] = field(default_factory=dict, compare=False)
    evaluations: Mapping[str, TaskEvaluation] = field(default_factory=dict)
    pipelines: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()
    package: str | None = None
    capabilities: frozenset[str] = frozenset()
    converter: Callable[[], Any] | None = field(default=None, compare=False)
    demo: DemoSpec | None = None
    lora_target_modules: tuple[str, ...] = ()
    default_preset: str | None = None
    presets: Mapping[str, int] = field(default_factory=dict)
    config_builder: Callable[..., PreTrainedConfig] | None = field(default=None, compare=False)
    processor_builder: Callable[[PreTrainedConfig], Any] | None = field(default=None, compare=False)

    def __post_init__(self):
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise ValueError(f"Family.key must be lowercase letters, digits and underscores, got {self.key!r}")
        if not (isinstance(self.config_class, type) and issubclass(self.config_class, PreTrainedConfig)):
            raise TypeError(f"family {self.key!r}: config_class must be a PreTrainedConfig subclass")
        if not isinstance(self.heads, Mapping) or not self.heads:
            raise ValueError(f"family {self.key!r}: heads must map at least one task to a model class")
        for task, head in self.heads.items():
            if not isinstance(task, str) or not _TASK.match(task):
                raise ValueError(f"family {self.key!r}: head task names are lowercase words with '-', got {task!r}")
            if not (isinstance(head, type) and issubclass(head, PreTrainedModel)):
                raise TypeError(
                    f"family {self.key!r}: heads[{task!r}] must be a PreTrainedModel subclass, got {head!r}"
                )
        for what in ("objectives", "evaluations"):
            unknown = sorted(set(getattr(self, what)) - set(self.heads))
            if unknown:
                raise ValueError(
                    f"family {self.key!r}: {what} for tasks {unknown} without a head; its heads: {', '.join(self.heads)}"
                )
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if not isinstance(self.capabilities, frozenset) or unknown:
            raise ValueError(
                f"family {self.key!r}: capabilities must be a frozenset of {sorted(CAPABILITIES)}, got "
                f"{sorted(self.capabilities)!r}"
            )
        bad = [name for name in self.exports if not isinstance(name, str) or not _IDENTIFIER.match(name)]
        if bad:
            raise ValueError(f"family {self.key!r}: exports must be Python names, got {bad!r}")
        if self.presets and self.config_builder is None:
            raise ValueError(f"family {self.key!r}: presets need a config_builder that builds them")
        if self.default_preset is not None and self.presets and self.default_preset not in self.presets:
            raise ValueError(
                f"family {self.key!r}: default_preset {self.default_preset!r} is not one of its presets "
                f"{', '.join(self.presets)}"
            )
        missing = [task for task in (self.demo.tasks if self.demo else ()) if task not in self.heads]
        if missing:
            raise ValueError(
                f"family {self.key!r}: its demo trains task {missing[0]!r}, which has no head; heads: "
                f"{', '.join(self.heads)}"
            )

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def default_task(self) -> str:
        """The first task of `heads`: what `vlzoo train` and `vlzoo eval` use when no task is named."""
        return next(iter(self.heads))

    @property
    def export_package(self) -> str:
        return self.package or f"vlzoo.models.{self.key}"

    @property
    def model_classes(self) -> tuple[type[PreTrainedModel], ...]:
        """Every public model class of the family (heads, Auto classes, towers), without repeats."""
        classes: list[type[PreTrainedModel]] = []
        for cls in (*self.heads.values(), *self.auto_models.values(), *self.extra_model_classes):
            if cls not in classes:
                classes.append(cls)
        return tuple(classes)

    def head(self, task: str) -> type[PreTrainedModel]:
        """The model class of `task`; a ValueError names the family's tasks."""
        if task not in self.heads:
            raise ValueError(f"family {self.key!r} has no head for task {task!r}; its tasks: {', '.join(self.heads)}")
        return self.heads[task]

    def objective_factory(self, task: str) -> Callable[..., Any]:
        """The objective of `task`: the family's own, else the shared one of `vlzoo.training.objectives`."""
        self.head(task)
        if task in self.objectives:
            return self.objectives[task]
        from .training.objectives import OBJECTIVES  # imported on use: training pulls in accelerate and datasets

        if task not in OBJECTIVES:
            raise ValueError(
                f"family {self.key!r} has a {task!r} head but no objective trains it: declare one in "
                f"Family.objectives (shared objectives: {', '.join(OBJECTIVES)})"
            )
        return OBJECTIVES[task]

    def objective(self, task: str, processor: Any, **options: Any) -> Any:
        """A training objective for `task`, built as `factory(processor, **options)`."""
        return self.objective_factory(task)(processor, **options)

    def evaluation(self, task: str) -> TaskEvaluation:
        """How `vlzoo eval` scores `task`: the family's own evaluation, else `DEFAULT_EVALUATIONS[task]`."""
        self.head(task)
        found = self.evaluations.get(task) or DEFAULT_EVALUATIONS.get(task)
        if found is None:
            raise ValueError(
                f"family {self.key!r} has no evaluation for task {task!r}; declare one in Family.evaluations"
            )
        return found

    def build_converter(self) -> Any:
        """The family's `FamilyConverter`; a ValueError when the family has no converter."""
        if self.converter is None:
            raise ValueError(f"family {self.key!r} has no converter")
        return self.converter()


# ----------------------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------------------

# key -> the module whose `build_family()` returns the family's record (imported on first use).
_BUILTIN_FAMILIES: dict[str, str] = {
    "ms_clip": "vlzoo.models.ms_clip.family",
    "flava": "vlzoo.models.flava.family",
    "meter": "vlzoo.models.meter.family",
    "beit3": "vlzoo.models.beit3.family",
    "transvg": "vlzoo.models.transvg.family",
    "transvg_pp": "vlzoo.models.transvg_pp.family",
}
_FAMILIES: dict[str, Family] = {}  # every registered family, in registration order
# The public names `vlzoo` defines itself (the families' `exports` follow them in `vlzoo.__all__`).
TOP_LEVEL_NAMES = (
    "families",
    "get_family",
    "list_pretrained",
    "register_all",
    "register_family",
    "register_pipelines",
    "unregister_family",
)


def get_family(key: str) -> Family:
    """The `Family` record for `key` (`ms_clip`, ...); a ValueError lists the valid keys."""
    if key not in _FAMILIES:
        if key not in _BUILTIN_FAMILIES:
            valid = ", ".join([*_FAMILIES, *(k for k in _BUILTIN_FAMILIES if k not in _FAMILIES)])
            raise ValueError(f"unknown family {key!r}; valid families: {valid}")
        register_family(importlib.import_module(_BUILTIN_FAMILIES[key]).build_family())
    return _FAMILIES[key]


def families() -> list[Family]:
    """Every family: the built-in ones, then those registered with `register_family`, in that order."""
    for key in _BUILTIN_FAMILIES:
        get_family(key)
    builtin = [_FAMILIES[key] for key in _BUILTIN_FAMILIES]
    return builtin + [family for key, family in _FAMILIES.items() if key not in _BUILTIN_FAMILIES]


def family_for_model_type(model_type: str) -> Family | None:
    """The family whose config has `model_type` (a saved folder's config.json), or None."""
    return next((family for family in families() if family.model_type == model_type), None)


def exporting_family(name: str) -> Family | None:
    """The family that exports `name` to the top-level `vlzoo` namespace, or None."""
    return next((family for family in families() if name in family.exports), None)


def register_family(family: Family) -> None:
    """Add `family` to the registry and register its config, models, heads and preprocessing with transformers.

    Registering the same record again changes nothing. A different family with the same key or model type, or
    exports that another family (or vlzoo itself) already provides, is refused with a ValueError.
    """
    if not isinstance(family, Family):
        raise TypeError(f"family must be a Family, got {type(family).__name__}")
    existing = _FAMILIES.get(family.key)
    if existing is family:
        return
    if existing is not None:
        raise ValueError(
            f"a family with key {family.key!r} is already registered; unregister_family({family.key!r}) first"
        )
    for other in _FAMILIES.values():
        if other.model_type == family.model_type:
            raise ValueError(
                f"family {family.key!r}: model type {family.model_type!r} is already family {other.key!r}'s"
            )
        shared = sorted(set(other.exports) & set(family.exports))
        if shared:
            raise ValueError(f"family {family.key!r}: exports {shared} are already exported by family {other.key!r}")
    reserved = sorted(set(TOP_LEVEL_NAMES) & set(family.exports))
    if reserved:
        raise ValueError(f"family {family.key!r}: exports {reserved} are names of vlzoo itself")
    _check_exports(family)
    for auto_name in family.auto_models:
        if not hasattr(transformers, auto_name):
            raise ValueError(f"family {family.key!r}: auto_models key {auto_name!r} is not a transformers Auto class")
    _FAMILIES[family.key] = family
    try:
        _register_with_transformers(family)
        _check_pipelines(family)
    except BaseException:
        _FAMILIES.pop(family.key)
        _forget_in_transformers(family)
        raise


def unregister_family(key: str) -> Family:
    """Remove a family added with `register_family` (built-in families stay); returns its record.

    Its Auto-class entries are removed as well, so `AutoModel` and the pipelines no longer load its folders.
    """
    if key in _BUILTIN_FAMILIES:
        raise ValueError(f"{key!r} is a built-in family; only families added with register_family can be removed")
    if key not in _FAMILIES:
        raise ValueError(f"no family {key!r} is registered")
    family = _FAMILIES.pop(key)
    _forget_in_transformers(family)
    return family


def register_all() -> None:
    """Build and register every built-in family (called by `import vlzoo`)."""
    families()


def _check_exports(family: Family) -> None:
    if not family.exports:
        return
    module = importlib.import_module(family.export_package)
    missing = [name for name in family.exports if not hasattr(module, name)]
    if missing:
        raise ValueError(f"family {family.key!r}: exports {missing} are not attributes of {family.export_package}")


def _check_pipelines(family: Family) -> None:
    """Every declared pipeline task exists, and a task whose pipeline needs a head has it among the family's heads."""
    from transformers.pipelines import PIPELINE_REGISTRY

    for task in family.pipelines:
        try:
            _, entry, _ = PIPELINE_REGISTRY.check_task(task)
        except KeyError:
            raise ValueError(
                f"family {family.key!r} declares the pipeline task {task!r}, which transformers.pipeline does not know"
            ) from None
        head = getattr(entry.get("impl"), "head", None)
        if isinstance(head, str) and head and head not in family.heads:
            raise ValueError(
                f"family {family.key!r} declares the pipeline task {task!r}, which needs a {head!r} head; its heads: "
                f"{', '.join(family.heads)}"
            )


@contextlib.contextmanager
def _transformers_quiet() -> Iterator[None]:
    """transformers' logging at error level for the duration (restored after, whatever it was)."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def _register_with_transformers(family: Family) -> None:
    for config_class in (family.config_class, *family.sub_config_classes):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_name, model_class in family.auto_models.items():
        getattr(transformers, auto_name).register(family.config_class, model_class, exist_ok=True)
    from .pipelines.task_heads import HEAD_AUTO_CLASSES, register_head_model

    for task, model_class in family.heads.items():
        if task in HEAD_AUTO_CLASSES:  # the Auto class vlzoo's pipelines load this task's models with
            register_head_model(task, family.config_class, model_class)
    if family.image_processor_class is not None:
        # transformers looks mappings up by config class *name*: a family config named like one of transformers'
        # own (FlavaConfig) makes it import that model's image processors, which warn about torchvision.
        with _transformers_quiet():
            AutoImageProcessor.register(
                family.config_class, image_processor_classes={"pil": family.image_processor_class}, exist_ok=True
            )
    if family.tokenizer_class is not None:
        AutoTokenizer.register(family.config_class, tokenizer_class=family.tokenizer_class, exist_ok=True)
    if family.processor_class is not None:
        AutoProcessor.register(family.config_class, family.processor_class, exist_ok=True)


def _forget_in_transformers(family: Family) -> None:
    """Undo `_register_with_transformers` (transformers has no public way to unregister)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING

    mappings = [
        getattr(transformers, name)._model_mapping for name in family.auto_models if hasattr(transformers, name)
    ]
    from .pipelines.task_heads import HEAD_AUTO_CLASSES

    mappings += [HEAD_AUTO_CLASSES[task]._model_mapping for task in family.heads if task in HEAD_AUTO_CLASSES]
    mappings += [IMAGE_PROCESSOR_MAPPING, TOKENIZER_MAPPING, PROCESSOR_MAPPING]
    for mapping in mappings:
        getattr(mapping, "_extra_content", {}).pop(family.config_class, None)
    for config_class in (family.config_class, *family.sub_config_classes):
        getattr(CONFIG_MAPPING, "_extra_content", {}).pop(config_class.model_type, None)


__all__ = [
    "CAPABILITIES",
    "DEFAULT_EVALUATIONS",
    "DemoScore",
    "DemoSpec",
    "Family",
    "TOP_LEVEL_NAMES",
    "TaskEvaluation",
    "exporting_family",
    "families",
    "family_for_model_type",
    "get_family",
    "register_all",
    "register_family",
    "unregister_family",
]
