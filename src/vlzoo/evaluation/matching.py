"""Image-text matching accuracy: how often a 2-way match head tells matched pairs from mismatched ones."""

from typing import Any

import numpy as np

from ._arrays import to_int_array, to_numpy


def image_text_matching_accuracy(itm_logits: Any, labels: Any) -> float:
    """Fraction in [0, 1] of image-text pairs whose higher ITM logit is the right class.

    Args:
        itm_logits: `[N, 2]` scores of the match head; index 1 means "matched" (METER, FLAVA, BEiT-3 convention).
        labels: `[N]` 1 for a matched pair, 0 for a mismatched one.

    A tie counts as "not matched" (index 0), as `argmax` decides.

    Example:
        >>> image_text_matching_accuracy([[0.1, 2.0], [1.0, -1.0], [0.0, 3.0]], [1, 0, 0])
        0.6666666666666666
    """
    logits = to_numpy(itm_logits, "itm_logits", ndim=2, dtype=np.float64)
    if logits.shape[1] != 2:
        raise ValueError(f"`itm_logits` must have shape [N, 2] (not matched, matched); got {list(logits.shape)}.")
    if not np.all(np.isfinite(logits)):
        raise ValueError("`itm_logits` contains NaN or infinite values.")
    targets = to_int_array(labels, "labels")
    if len(targets) != len(logits):
        raise ValueError(
            f"`labels` has {len(targets)} entries but `itm_logits` has {len(logits)} rows; they must match."
        )
    if not np.isin(targets, (0, 1)).all():
        raise ValueError(
            f"`labels` must hold 0 (not matched) or 1 (matched); got values {np.unique(targets).tolist()}."
        )
    return float(np.mean(logits.argmax(axis=1) == targets))


__all__ = ["image_text_matching_accuracy"]
