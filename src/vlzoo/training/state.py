"""Trainer progress: the counters and histories saved with each checkpoint and shown to callbacks.

They are stored as JSON (`trainer_state.json`), together with the learning-rate schedule's state and the size and
SHA-256 of every other file of the state folder, so vlzoo's own state never goes through pickle and a truncated or
altered file is found before anything is loaded.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateFolderError

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where training stands. The first seven fields are saved in every state folder; the rest are runtime only.

    `batches_in_epoch` counts this process's batches consumed in the current epoch (not optimizer steps); a resumed
    run skips exactly that many. Callbacks may set `should_stop = True` to end training after the current step.
    `scheduler_state` is the learning-rate scheduler's `state_dict()` (plain numbers) and `files` maps each other
    file of the state folder to its `{"size", "sha256"}`.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    train_loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    scheduler_state: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
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
            "scheduler": self.scheduler_state,
            "files": self.files,
        }
        (Path(directory) / STATE_FILE).write_text(json.dumps(content, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "TrainerState":
        """Read and check what `save` wrote.

        Raises:
            StateFolderError: the file is missing, not JSON, or a field is absent or of the wrong type; the message
                names the file and the field.
        """
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise StateFolderError(f"{str(directory)!r} is not a trainer state folder: it has no {STATE_FILE}.")
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise StateFolderError(f"{path} is corrupt: not valid JSON ({error}).") from None
        if not isinstance(content, dict):
            raise StateFolderError(f"{path} is corrupt: it holds a JSON {type(content).__name__}, not an object.")

        def get(key: str, check, expected: str):
            if key not in content:
                raise StateFolderError(f"{path} is incomplete: it has no {key!r}.")
            value = content[key]
            if not check(value):
                raise StateFolderError(f"{path} is corrupt: {key!r} must be {expected}, got {value!r:.80}.")
            return value

        def count(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 0

        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        def file_entry(value) -> bool:
            return (
                isinstance(value, dict)
                and count(value.get("size"))
                and isinstance(value.get("sha256"), str)
                and len(value["sha256"]) == 64
            )

        losses = get(
            "train_loss_history",
            lambda v: (
                isinstance(v, list)
                and all(isinstance(i, list) and len(i) == 2 and count(i[0]) and number(i[1]) for i in v)
            ),
            "a list of [step, loss]",
        )
        evaluations = get(
            "eval_history",
            lambda v: (
                isinstance(v, list)
                and all(isinstance(i, list) and len(i) == 2 and count(i[0]) and isinstance(i[1], dict) for i in v)
            ),
            "a list of [step, metrics]",
        )
        return cls(
            global_step=get("global_step", count, "an int >= 0"),
            epoch=get("epoch", count, "an int >= 0"),
            batches_in_epoch=get("batches_in_epoch", count, "an int >= 0"),
            train_loss_history=[(step, loss) for step, loss in losses],
            eval_history=[(step, metrics) for step, metrics in evaluations],
            scheduler_state=get("scheduler", lambda v: isinstance(v, dict), "the scheduler's state (an object)"),
            files=get(
                "files",
                lambda v: isinstance(v, dict) and all(isinstance(k, str) and file_entry(e) for k, e in v.items()),
                "an object of file name -> {size, sha256}",
            ),
        )


__all__ = ["STATE_FILE", "TrainerState"]
