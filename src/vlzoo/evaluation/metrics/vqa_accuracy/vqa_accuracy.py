"""evaluate metric: VQAv2 accuracy with the official answer normalisation (a fraction in [0, 1])."""

import datasets
import evaluate

from vlzoo.evaluation.functional import vqa_accuracy

_DESCRIPTION = """
VQAv2 accuracy. Answers are normalised as in the official evaluation (punctuation, lower case, number words to
digits, articles dropped, contractions restored); per question the score is the mean over leave-one-out subsets of
the human answers of min(1, matches / 3). Normalisation is always applied, also when all human answers agree; with a
single human answer the score is an exact match. The mean over questions is returned in [0, 1] (papers report x100).
"""

_CITATION = """
@inproceedings{goyal2017making,
  title={Making the {V} in {VQA} Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the predicted answer of each question.
    references (`list[list[str]]`): the human answers of each question (10 in VQAv2).
Returns:
    accuracy (`float`): VQA accuracy in [0, 1].
Examples:
    >>> import vlzoo.evaluation
    >>> metric = vlzoo.evaluation.load_metric("vqa_accuracy")
    >>> metric.compute(predictions=["Two", "yes."], references=[["2"] * 10, ["yes"] * 10])
    {'accuracy': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    """VQAv2 accuracy (see `vlzoo.evaluation.vqa_accuracy`)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.List(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        return {"accuracy": vqa_accuracy(predictions, references)}
