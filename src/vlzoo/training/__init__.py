"""One Accelerate training loop for every vlzoo family; a family or task contributes an objective, not a loop."""

from .arguments import MIXED_PRECISION_CHOICES, TrainingArguments, load_training_config
from .callbacks import TrainerCallback
from .checkpoints import CHECKPOINTS_DIR, checkpoint_dirs, resolve_resume_dir
from .errors import StateFolderError, TrainingDivergedError
from .evaluation import evaluation_batches, mean_loss
from .objective import EvaluatingObjective, Objective
from .objectives.contrastive_objective import ContrastiveObjective
from .optimization import build_optimizer, build_scheduler, parameter_groups
from .sampling import EpochShuffleSampler
from .state import TrainerState
from .trainer import TrainResult, enable_activation_checkpointing, train

__all__ = [
    "CHECKPOINTS_DIR",
    "MIXED_PRECISION_CHOICES",
    "ContrastiveObjective",
    "EpochShuffleSampler",
    "EvaluatingObjective",
    "Objective",
    "StateFolderError",
    "TrainResult",
    "TrainerCallback",
    "TrainerState",
    "TrainingDivergedError",
    "TrainingArguments",
    "build_optimizer",
    "build_scheduler",
    "checkpoint_dirs",
    "enable_activation_checkpointing",
    "evaluation_batches",
    "load_training_config",
    "mean_loss",
    "parameter_groups",
    "resolve_resume_dir",
    "train",
]
