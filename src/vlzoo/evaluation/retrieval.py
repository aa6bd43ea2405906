"""Image-text retrieval recall@k in both directions from one image-by-text similarity matrix."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import to_int_array, to_numpy


def retrieval_recall_at_k(
    similarity: Any, text_to_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k for image-to-text and text-to-image retrieval, as fractions in [0, 1].

    An image query is correct at k when ANY of its texts ranks among the k most similar texts (the usual
    Flickr30k/COCO protocol with several captions per image); a text query is correct at k when its image ranks among
    the k most similar images. Ranks count the candidates scoring strictly higher, so ties count in the query's
    favour. A k larger than the gallery gives 1.0.

    Args:
        similarity: `[n_images, n_texts]` scores (e.g. cosine similarities); only their order matters.
        text_to_image: `[n_texts]` index of the image each text describes; every image needs at least one text.
        ks: the cut-offs k (positive integers).

    Returns:
        `{"image_to_text_R@k": ..., "text_to_image_R@k": ... for each k, "mean_recall": mean of all of them}`.

    Example:
        >>> retrieval_recall_at_k([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7]], [0, 1, 1], ks=(1,))
        {'image_to_text_R@1': 1.0, 'text_to_image_R@1': 1.0, 'mean_recall': 1.0}
    """
    scores = to_numpy(similarity, "similarity", ndim=2, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("`similarity` contains NaN or infinite values; ranks would be undefined.")
    targets = to_int_array(text_to_image, "text_to_image")
    num_images, num_texts = scores.shape
    if len(targets) != num_texts:
        raise ValueError(
            f"`text_to_image` has {len(targets)} entries but `similarity` has {num_texts} text columns "
            f"(shape [n_images, n_texts] = {list(scores.shape)}); they must match."
        )
    if targets.min() < 0 or targets.max() >= num_images:
        raise ValueError(
            f"`text_to_image` must hold image indices in [0, {num_images}); "
            f"got values from {targets.min()} to {targets.max()}."
        )
    images_without_text = np.setdiff1d(np.arange(num_images), targets)
    if len(images_without_text) > 0:
        raise ValueError(
            f"every image needs at least one text in `text_to_image`; images {images_without_text[:10].tolist()} "
            "have none (drop them from `similarity` or add their texts)."
        )
    cutoffs = list(ks)
    if not cutoffs or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in cutoffs):
        raise ValueError(f"`ks` must be a non-empty sequence of positive integers; got {ks!r}.")

    text_ids = np.arange(num_texts)
    # Image queries: the best-scoring of an image's own texts has the smallest rank among them.
    is_own_text = np.zeros_like(scores, dtype=bool)
    is_own_text[targets, text_ids] = True
    best_own_text = np.where(is_own_text, scores, -np.inf).max(axis=1)
    image_ranks = (scores > best_own_text[:, None]).sum(axis=1)
    # Text queries: rank of the described image within the text's column.
    own_image = scores[targets, text_ids]
    text_ranks = (scores > own_image[None, :]).sum(axis=0)

    results = {}
    for k in cutoffs:
        results[f"image_to_text_R@{k}"] = float(np.mean(image_ranks < k))
    for k in cutoffs:
        results[f"text_to_image_R@{k}"] = float(np.mean(text_ranks < k))
    results["mean_recall"] = float(np.mean(list(results.values())))
    return results
