"""evaluate metric: visual grounding accuracy (Acc@0.5), the share of boxes with IoU >= threshold."""

import datasets
import evaluate

from vlzoo.evaluation.functional import grounding_accuracy

_DESCRIPTION = """
Visual grounding accuracy (Acc@0.5 on RefCOCO/RefCOCO+/RefCOCOg/ReferItGame/Flickr30k Entities): the fraction, in
[0, 1], of referring expressions whose predicted box overlaps the ground-truth box with IoU >= `threshold`.
"""

_CITATION = """
@inproceedings{yu2016modeling,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2016}
}
@inproceedings{deng2021transvg,
  title={TransVG: End-to-End Visual Grounding with Transformers},
  author={Deng, Jiajun and Yang, Zhengyuan and Chen, Tianlang and Zhou, Wengang and Li, Houqiang},
  booktitle={IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one predicted box (4 numbers) per example.
    references (`list[list[float]]`): the ground-truth box of each example, same format and coordinate frame.
    threshold (`float`, defaults to 0.5): IoU needed for a hit, in (0, 1].
    box_format (`str`, defaults to "xyxy"): "xyxy" (corners), "xywh" (top-left corner and size) or "cxcywh".
Returns:
    accuracy (`float`): fraction of hits, in [0, 1].
Examples:
    >>> import vlzoo.evaluation
    >>> metric = vlzoo.evaluation.load_metric("grounding_accuracy")
    >>> metric.compute(predictions=[[0, 0, 10, 10], [0, 0, 10, 10]], references=[[0, 0, 10, 10], [5, 5, 15, 15]])
    {'accuracy': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GroundingAccuracy(evaluate.Metric):
    """Grounding accuracy (see `vlzoo.evaluation.grounding_accuracy`)."""

    def _info(self) -> evaluate.MetricInfo:
        box = datasets.List(datasets.Value("float64"), length=4)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": box, "references": box}),
        )

    def _compute(
        self,
        predictions: list[list[float]],
        references: list[list[float]],
        threshold: float = 0.5,
        box_format: str = "xyxy",
    ) -> dict[str, float]:
        return {"accuracy": grounding_accuracy(predictions, references, threshold=threshold, box_format=box_format)}
