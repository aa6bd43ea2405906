"""Offline loading of vlzoo's evaluate metric modules shipped inside the package."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("grounding_accuracy", "retrieval_recall", "vqa_accuracy", "zero_shot_accuracy")


def metric_path(name: str) -> Path:
    """Folder of the metric script `name` (the folder `evaluate.load` accepts), inside the installed package."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown vlzoo metric {name!r}; valid names are {list(METRIC_NAMES)}.")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs: Any) -> "evaluate.EvaluationModule":
    """`evaluate.load` a vlzoo metric from the package itself, so it works without the Hub (`HF_HUB_OFFLINE=1`).

    Args:
        name: one of `METRIC_NAMES`.
        **kwargs: passed to `evaluate.load` (`keep_in_memory`, `cache_dir`, `experiment_id`, `num_process`, ...).

    Example:
        >>> metric = load_metric("vqa_accuracy")
        >>> metric.compute(predictions=["two"], references=[["2"] * 10])
        {'accuracy': 1.0}
    """
    path = metric_path(name)
    import evaluate  # deferred: `import vlzoo` stays cheap

    return evaluate.load(str(path), **kwargs)
