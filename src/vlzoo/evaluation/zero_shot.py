"""Zero-shot classification accuracy, from predicted labels or from top-k over class logits."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import to_int_array, to_numpy


def zero_shot_accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Fraction in [0, 1] of examples whose predicted label equals the reference label.

    Args:
        predictions: predicted class ids (or label strings), one per example; a list, array or tensor.
        references: the true class ids (or label strings), same length.

    Example:
        >>> zero_shot_accuracy([0, 2, 1, 1], [0, 1, 1, 1])
        0.75
    """
    predicted = to_numpy(predictions, "predictions", ndim=1)
    expected = to_numpy(references, "references", ndim=1)
    if predicted.shape != expected.shape:
        raise ValueError(
            f"`predictions` and `references` must have the same length; got {len(predicted)} and {len(expected)}."
        )
    return float(np.mean(predicted == expected))


def zero_shot_accuracy_from_logits(logits: Any, labels: Sequence[int], k: int = 1) -> float:
    """Top-k accuracy in [0, 1] from class scores.

    An example counts as correct when fewer than `k` classes score strictly higher than its true class, so ties are
    resolved in the example's favour (independent of class order, unlike `torch.topk`).

    Args:
        logits: `[N, C]` scores (logits, probabilities or similarities: only their order matters).
        labels: `[N]` true class ids in `[0, C)`.
        k: number of top classes that may contain the true class, `1 <= k <= C`.

    Example:
        >>> zero_shot_accuracy_from_logits([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], [2, 0], k=2)
        1.0
    """
    scores = to_numpy(logits, "logits", ndim=2, dtype=np.float64)
    targets = to_int_array(labels, "labels")
    num_examples, num_classes = scores.shape
    if len(targets) != num_examples:
        raise ValueError(f"`labels` has {len(targets)} entries but `logits` has {num_examples} rows; they must match.")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}) for `logits` with {num_classes} classes; "
            f"got values from {targets.min()} to {targets.max()}."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_classes:
        raise ValueError(f"`k` must be an integer in [1, {num_classes}] (the number of classes); got {k!r}.")
    true_scores = scores[np.arange(num_examples), targets]
    rank = (scores > true_scores[:, None]).sum(axis=1)
    return float(np.mean(rank < k))
