"""Saving the training state and resuming from it reproduces an uninterrupted run exactly."""

import json

import pytest

from vlzoo.training import EpochShuffleSampler, TrainerCallback, checkpoint_dirs, train

from .toy import ToyObjective, assert_same_weights, toy_args, toy_dataset, toy_model, weights

# 24 rows in batches of 4 with accumulation 2: 6 batches and 3 optimizer steps per epoch; 7 steps span 3 epochs.
RUN = {
    "per_device_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "max_steps": 7,
    "warmup_steps": 2,
    "weight_decay": 0.1,
    "max_grad_norm": 0.5,
    "learning_rate": 2e-2,
}


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state):
        state.should_stop = state.global_step == self.step


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    data = toy_dataset(24)
    reference_model = toy_model()
    reference = train(reference_model, ToyObjective(), data, args=toy_args(tmp_path / "reference", **RUN))
    assert reference.global_step == 7

    # Interrupted at step 4 (epoch 1, 2 batches in): states at step 2 (periodic) and step 4 (stop).
    interrupted_dir = tmp_path / "interrupted"
    first = train(
        toy_model(),
        ToyObjective(),
        data,
        args=toy_args(interrupted_dir, save_state_every_steps=2, **RUN),
        callbacks=[StopAt(4)],
    )
    assert (first.global_step, first.stop_reason) == (4, "callback")
    assert [p.name for p in checkpoint_dirs(interrupted_dir)] == ["step_2", "step_4"]
    saved = json.loads((interrupted_dir / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert (saved["global_step"], saved["epoch"], saved["batches_in_epoch"]) == (4, 1, 2)

    # A differently initialised model proves the weights come from the state folder.
    resumed_model = toy_model(seed=123)
    objective = ToyObjective()
    resumed = train(
        resumed_model,
        objective,
        data,
        args=toy_args(interrupted_dir, save_state_every_steps=2, resume_from="latest", **RUN),
    )
    assert resumed.global_step == 7
    assert resumed.epochs_completed == 2
    assert [step for step, _ in resumed.train_loss_history] == [step for step, _ in reference.train_loss_history]
    assert [loss for _, loss in resumed.train_loss_history] == pytest.approx(
        [loss for _, loss in reference.train_loss_history], abs=1e-7
    )
    assert_same_weights(weights(resumed_model), weights(reference_model), atol=1e-7)
    # The resumed run skipped the 2 batches (8 rows) of epoch 1 it had already trained on, then began epoch 2.
    sampler = EpochShuffleSampler(len(data), seed=0)
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    sampler.set_epoch(2)
    epoch_2 = list(sampler)
    assert epoch_1 != epoch_2
    assert objective.collated_ids[:24] == epoch_1[8:] + epoch_2[:8]
    # Rotation keeps the newest two folders.
    assert [p.name for p in checkpoint_dirs(interrupted_dir)] == ["step_4", "step_6"]


def test_resume_from_an_explicit_folder(tmp_path):
    data = toy_dataset(24)
    run_dir = tmp_path / "run"
    train(toy_model(), ToyObjective(), data, args=toy_args(run_dir, save_state_every_steps=2, **RUN))
    reference_model = toy_model()
    train(reference_model, ToyObjective(), data, args=toy_args(tmp_path / "reference", **RUN))

    resumed_model = toy_model(seed=5)
    state_dir = run_dir / "checkpoints" / "step_6"
    result = train(
        resumed_model, ToyObjective(), data, args=toy_args(tmp_path / "elsewhere", resume_from=str(state_dir), **RUN)
    )
    assert result.global_step == 7
    assert_same_weights(weights(resumed_model), weights(reference_model), atol=1e-7)


def test_resume_errors_name_the_problem(tmp_path):
    data = toy_dataset(8)
    with pytest.raises(ValueError, match="resume_from='latest'.*holds no state folder"):
        train(toy_model(), ToyObjective(), data, args=toy_args(tmp_path, resume_from="latest"))
    with pytest.raises(ValueError, match="is not a trainer state folder"):
        train(toy_model(), ToyObjective(), data, args=toy_args(tmp_path, resume_from=str(tmp_path / "missing")))
