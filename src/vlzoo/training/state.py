"""Trainer progress: the counters and histories saved with each checkpoint and shown to callbacks."""

import json
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands. The first five fields are saved in every state folder; the rest are runtime only.

    `batches_in_epoch` counts this process's batches consumed in the current epoch (not optimizer steps); a resumed
    run skips exactly that many. Callbacks may set `should_stop = True` to end training after the current step.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    train_loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    max_steps: int = 0
    is_main_process: bool = True
    should_stop: bool = False

    def save(self, directory: str | Path) -> None:
        """Write `trainer_state.json` into `directory`."""
        content = {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "train_loss_history": [list(item) for item in self.train_loss_history],
            "eval_history": [list(item) for item in self.eval_history],
        }
        (Path(directory) / STATE_FILE).write_text(json.dumps(content, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "TrainerState":
        """Read the counters and histories written by `save`."""
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise ValueError(f"{str(directory)!r} is not a trainer state folder: it has no {STATE_FILE}.")
        content = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            global_step=content["global_step"],
            epoch=content["epoch"],
            batches_in_epoch=content["batches_in_epoch"],
            train_loss_history=[(step, loss) for step, loss in content["train_loss_history"]],
            eval_history=[(step, metrics) for step, metrics in content["eval_history"]],
        )


__all__ = ["STATE_FILE", "TrainerState"]
