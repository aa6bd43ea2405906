"""evaluate metric: image-text retrieval recall@k in both directions (fractions in [0, 1])."""

import datasets
import evaluate
import numpy as np

from vlzoo.evaluation.functional import retrieval_recall_at_k

_DESCRIPTION = """
Image-text retrieval recall@k. One example is one TEXT: its similarity to every image of the gallery, and the index of
the image it describes. From all rows, image-to-text R@k (an image is retrieved correctly when ANY of its texts ranks
in the top k) and text-to-image R@k are computed, as fractions in [0, 1], plus their mean. Ranks count the candidates
scoring strictly higher, so ties count in the query's favour. Every image needs at least one text.
"""

_CITATION = """
@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2015}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): for each text, its similarity to each of the `n_images` images (the columns of
        an `[n_images, n_texts]` similarity matrix, i.e. its transpose).
    references (`list[int]`): for each text, the index of the image it describes.
    ks (`tuple[int, ...]`, defaults to (1, 5, 10)): the cut-offs k.
Returns:
    `image_to_text_R@k` and `text_to_image_R@k` for each k, and `mean_recall` (`float`s in [0, 1]).
Examples:
    >>> import vlzoo.evaluation
    >>> metric = vlzoo.evaluation.load_metric("retrieval_recall")
    >>> metric.compute(predictions=[[0.9, 0.2], [0.1, 0.8], [0.3, 0.7]], references=[0, 1, 1], ks=(1,))
    {'image_to_text_R@1': 1.0, 'text_to_image_R@1': 1.0, 'mean_recall': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    """Retrieval recall@k (see `vlzoo.evaluation.retrieval_recall_at_k`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.List(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self, predictions: list[list[float]], references: list[int], ks: tuple[int, ...] = (1, 5, 10)
    ) -> dict[str, float]:
        lengths = {len(row) for row in predictions}
        if len(lengths) != 1:
            raise ValueError(
                "every text must be scored against the same images; "
                f"`predictions` rows have lengths {sorted(lengths)}."
            )
        similarity = np.asarray(predictions, dtype=np.float64).T
        return retrieval_recall_at_k(similarity, references, ks=ks)
