"""Training objectives per task: each turns task rows into batches and model outputs into the task's loss and metrics.

Every objective is built as `OBJECTIVES[task](processor, **options)` and follows `vlzoo.training.Objective`
(`collate`, `compute_loss`, `evaluate`, `set_epoch`). `vlzoo.data.task_dataset(dataset, task)` gives the rows each
one reads.
"""

from vlzoo.data.tasks import build_answer_vocabulary

from .contrastive_objective import ContrastiveObjective
from .grounding_objective import BoxTransform, GroundingObjective
from .itm_objective import ItmObjective
from .mlm_objective import MlmObjective
from .vqa_objective import VqaObjective

OBJECTIVES: dict[str, type] = {
    "contrastive": ContrastiveObjective,
    "vqa": VqaObjective,
    "itm": ItmObjective,
    "mlm": MlmObjective,
    "grounding": GroundingObjective,
}

__all__ = [
    "OBJECTIVES",
    "BoxTransform",
    "ContrastiveObjective",
    "GroundingObjective",
    "ItmObjective",
    "MlmObjective",
    "VqaObjective",
    "build_answer_vocabulary",
]
