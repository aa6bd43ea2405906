"""evaluate metric: zero-shot classification accuracy, top-1 from predicted labels or top-k from class scores."""

import datasets
import evaluate

from vlzoo.evaluation.functional import zero_shot_accuracy, zero_shot_accuracy_from_logits

_DESCRIPTION = """
Zero-shot classification accuracy: the fraction (in [0, 1]) of images whose predicted class is the true class. Give
either one predicted class id per image, or one row of class scores per image (logits, probabilities or image-text
similarities) together with `k` for top-k accuracy; ties count in the image's favour.
"""

_CITATION = """
@inproceedings{radford2021learning,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and Agarwal,
          Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and Krueger, Gretchen
          and Sutskever, Ilya},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]` or `list[list[float]]`): a predicted class id per example, or a row of `C` class scores
        per example.
    references (`list[int]`): the true class id of each example.
    k (`int`, defaults to 1): top-k cut-off; only with class scores, `1 <= k <= C`.
Returns:
    accuracy (`float`): fraction of correct examples, in [0, 1].
Examples:
    >>> import vlzoo.evaluation
    >>> metric = vlzoo.evaluation.load_metric("zero_shot_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], k=2)
    {'accuracy': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroShotAccuracy(evaluate.Metric):
    """Zero-shot classification accuracy (see `vlzoo.evaluation.zero_shot_accuracy`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features(
                    {"predictions": datasets.List(datasets.Value("float64")), "references": datasets.Value("int64")}
                ),
            ],
        )

    def _compute(self, predictions: list, references: list[int], k: int = 1) -> dict[str, float]:
        if len(predictions) > 0 and isinstance(predictions[0], list):
            return {"accuracy": zero_shot_accuracy_from_logits(predictions, references, k=k)}
        if k != 1:
            raise ValueError(f"`k`={k} needs class scores as `predictions` (one row per example), not class ids.")
        return {"accuracy": zero_shot_accuracy(predictions, references)}
