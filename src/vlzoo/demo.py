"""`vlzoo demo [FAMILY]`: train a family's small demo models with the same budget on shapes, save them, score each
saved folder and compare. What is trained and measured is the family's `DemoSpec` (`vlzoo.registry`); without a
family the first one in registry order that has a demo runs (MS-CLIP: MS-CLIP-S vs vanilla CLIP, zero-shot)."""

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .conversion.output_dir import atomic_output_dir
from .registry import DemoScore, DemoSpec, Family, families, get_family


def demo_families() -> list[Family]:
    """The families `vlzoo demo` can run, in registry order (the first is the default)."""
    return [family for family in families() if family.demo is not None]


def demo_family(key: str | None = None) -> Family:
    """The family `vlzoo demo` runs for `key`, a family key or one of its demo's aliases (None: the first family with
    a demo); a ValueError lists the valid ones."""
    available = demo_families()
    if key is None:
        if not available:
            raise ValueError("no registered family has a demo")
        return available[0]
    aliased = [family for family in available if key in family.demo.aliases]
    if aliased and key not in {family.key for family in families()}:
        return aliased[0]
    family = get_family(key)
    if family.demo is None:
        raise ValueError(
            f"family {key!r} has no demo; families with a demo: {', '.join(f.key for f in available) or 'none'}"
        )
    return family


def demo_config(kind: str, family: str | None = None) -> Any:
    """The config of demo model `kind` of `family` (default: `vlzoo demo`'s; MS-CLIP: "ms_clip" or "vanilla")."""
    models = demo_family(family).demo.models
    if kind not in models:
        raise ValueError(f"kind must be one of {', '.join(map(repr, models))}, got {kind!r}")
    return models[kind]()


def demo_processor(family: str | None = None) -> Any:
    """The processor `family`'s demo models train with (MS-CLIP: the real CLIP BPE at the demo resolution)."""
    return demo_family(family).demo.processor()


@dataclass
class DemoResult:
    """What a demo run measured; `summary()` is its final line."""

    family: str
    spec: DemoSpec
    scores: dict[str, float]
    parameters: dict[str, int]
    references: dict[str, float]
    seconds: float
    figure: Path | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.spec.models)

    def summary(self) -> str:
        return self.spec.summary.format(
            score=self.scores, details=self.details, parameters=self.parameters, **self.references
        )


def run_demo(
    output_dir: str | Path = "vlzoo-demo",
    *,
    family: str | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Train every model of the family's demo with the same budget, save, evaluate each saved folder.

    `max_steps`, `batch_size`, `num_train` and `num_test` default to the family's `DemoSpec`. Everything is written
    into a temporary sibling of `output_dir`, which becomes `output_dir` only when the demo succeeds. An existing
    non-empty `output_dir` is refused before any work; with `overwrite=True` one that vlzoo wrote (and that holds
    nothing else) is replaced as a whole, so no file of an earlier run survives.

    Raises:
        FileExistsError: `output_dir` holds files and `overwrite` is false, or it holds files vlzoo did not write.
        ValueError: an unknown family, a family without a demo, or a budget that is not an int >= 1.
    """
    chosen = demo_family(family)
    spec = chosen.demo
    budget = {"max_steps": max_steps, "batch_size": batch_size, "num_train": num_train, "num_test": num_test}
    for name, value in budget.items():
        if value is None:
            budget[name] = value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    start = time.perf_counter()
    transformers_logger = logging.getLogger("transformers")
    level = transformers_logger.level  # the demo quiets transformers while it runs, then gives the level back
    with atomic_output_dir(output_dir, overwrite=overwrite, writer="vlzoo demo") as temporary:
        try:
            result = _run(
                temporary,
                chosen,
                budget["max_steps"],
                budget["batch_size"],
                budget["num_train"],
                budget["num_test"],
                seed,
            )
        finally:
            transformers_logger.setLevel(level)
    if result.figure is not None:
        result.figure = Path(output_dir) / result.figure.name
    result.seconds = time.perf_counter() - start
    return result


def _run(
    output: Path, family: Family, max_steps: int, batch_size: int, num_train: int, num_test: int, seed: int
) -> DemoResult:
    from .data import load_shapes
    from .training import TrainingArguments, train
    from .training.recipe import task_rows

    spec = family.demo
    start = time.perf_counter()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    logging.getLogger("transformers").setLevel(logging.ERROR)

    data = load_shapes(num_train=num_train, num_test=num_test, seed=seed, **spec.data)
    test = data["test"]

    scores: dict[str, DemoScore] = {}
    parameters: dict[str, int] = {}
    for name, build_config in spec.models.items():
        torch.manual_seed(seed)
        previous: Path | None = None
        for task in spec.tasks:
            folder = output / name if len(spec.tasks) == 1 else output / name / task
            # a family's own task (FLAVA "pretraining") reads the scenes as they are, as in `vlzoo train`
            train_rows = task_rows(data["train"], task)
            labels = _labels_from_data(family, task, train_rows)
            if previous is None:
                config = build_config()
                for key, value in labels.items():
                    setattr(config, key, value)
                model = family.head(task)(config)
                parameters[name] = sum(p.numel() for p in model.parameters())
            else:
                model = family.head(task).from_pretrained(previous, **labels)
            processor = spec.processor()
            args = TrainingArguments(
                output_dir=str(folder),
                max_steps=max_steps,
                per_device_batch_size=batch_size,
                seed=seed,
                **spec.training(max_steps),
            )
            objective = family.objective(task, processor, **labels)
            train(model, objective, train_rows, args=args, processor=processor)
            previous = folder
        scores[name] = spec.evaluate(output / name, test)

    figure = None
    if spec.figure is not None:
        figure = output / spec.figure_name
        spec.figure(figure, test, scores)
    references = dict(spec.references(test, data["train"]))
    values = {name: score.value for name, score in scores.items()}
    details = {name: score.details for name, score in scores.items()}
    result = DemoResult(family.key, spec, values, parameters, references, time.perf_counter() - start, figure, details)
    summary = {
        spec.metric: values,
        "parameters": parameters,
        **references,
        "seconds": result.seconds,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "num_train": num_train,
        "num_test": len(test),
    }
    if any(isinstance(value, Mapping) for value in details.values()):
        summary["details"] = {name: dict(value) for name, value in details.items() if isinstance(value, Mapping)}
    (output / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def _labels_from_data(family: Family, task: str, train_rows: Any) -> dict[str, Any]:
    """`id2label`/`label2id` from the training rows for tasks whose objective learns them (VQA answers)."""
    labels_from_data = getattr(family.objective_factory(task), "labels_from_data", None)
    return dict(labels_from_data(train_rows)) if labels_from_data is not None else {}


__all__ = ["DemoResult", "demo_config", "demo_families", "demo_family", "demo_processor", "run_demo"]
