"""Hooks into the training loop for logging, early stopping or custom checks, without changing the loop."""

from .arguments import TrainingArguments
from .state import TrainerState


class TrainerCallback:
    """Subclass and override the events you need; every method is a no-op by default.

    Callbacks run on every process (check `state.is_main_process` before writing files or printing). Setting
    `state.should_stop = True` in any event ends training after the current step, on all processes, followed by
    the usual final evaluation and saving.
    """

    def on_train_begin(self, args: TrainingArguments, state: TrainerState) -> None:
        """Before the first step (after a resume has restored `state`)."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState) -> None:
        """After each optimizer step; `state.global_step` already counts it."""

    def on_log(self, args: TrainingArguments, state: TrainerState, logs: dict[str, float]) -> None:
        """When a training loss average is recorded (`logs` holds `loss` and `learning_rate`)."""

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, metrics: dict[str, float]) -> None:
        """After each evaluation, with the objective's metrics."""

    def on_train_end(self, args: TrainingArguments, state: TrainerState) -> None:
        """After the last step, evaluation and saving."""


__all__ = ["TrainerCallback"]
