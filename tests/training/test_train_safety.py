"""What the trainer refuses: replacing a folder, resuming from a broken or tampered state folder, saving NaN weights.

Also that the launcher's mixed-precision choice takes effect unless the arguments set one.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from vlzoo.training import StateFolderError, TrainerCallback, TrainingDivergedError, checkpoint_dirs, train

from .toy import ToyObjective, toy_args, toy_dataset, toy_model

MARKER = ".vlzoo-output.json"
RUN = {"per_device_batch_size": 4, "max_steps": 4, "save_state_every_steps": 2, "save_total_limit": None}


class FakeProcessor:
    """Writes a processor file and one in a subfolder, like a processor's save_pretrained."""

    def save_pretrained(self, directory) -> None:
        (Path(directory) / "processor_config.json").write_text("{}")
        (Path(directory) / "tokenizer").mkdir(exist_ok=True)
        (Path(directory) / "tokenizer" / "vocab.json").write_text("{}")


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_with_states(output_dir: Path, **overrides) -> None:
    """A finished 4-step run with state folders step_2 and step_4."""
    train(toy_model(), ToyObjective(), toy_dataset(16), args=toy_args(output_dir, **{**RUN, **overrides}))
    assert [p.name for p in checkpoint_dirs(output_dir)] == ["step_2", "step_4"]


# ----- the output folder -----


def test_a_new_run_never_replaces_an_existing_model_folder(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"old weights")
    (model_dir / "parity.json").write_text('{"passed": true}')
    before = _contents(model_dir)
    with pytest.raises(FileExistsError, match=r"output_dir .*model already holds files \(model.safetensors, parity"):
        train(toy_model(), ToyObjective(), toy_dataset(8), args=toy_args(model_dir, save_final_model=True))
    assert _contents(model_dir) == before


def test_resume_reuses_the_folder_and_leaves_no_stale_file_of_the_previous_final_model(tmp_path):
    run_dir = tmp_path / "run"
    data = toy_dataset(16)
    first = toy_args(run_dir, save_final_model=True, **RUN)
    train(toy_model(), ToyObjective(), data, args=first, processor=FakeProcessor())
    assert (run_dir / "processor_config.json").is_file()
    old_weights = (run_dir / "model.safetensors").read_bytes()

    # Resumed for two more steps without a processor: the old processor file must not outlive the old weights.
    more = toy_args(run_dir, save_final_model=True, resume_from="latest", **{**RUN, "max_steps": 6})
    result = train(toy_model(), ToyObjective(), data, args=more)
    assert result.global_step == 6
    assert (run_dir / "model.safetensors").read_bytes() != old_weights
    expected = ["README.md", "config.json", "model.safetensors"]  # the card describes the new weights
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([MARKER, "checkpoints", *expected])
    assert json.loads((run_dir / MARKER).read_text())["files"] == expected


def test_a_file_added_inside_a_final_model_subfolder_is_refused_then_the_subfolder_is_cleaned(tmp_path):
    run_dir = tmp_path / "run"
    data = toy_dataset(16)
    train(
        toy_model(),
        ToyObjective(),
        data,
        args=toy_args(run_dir, save_final_model=True, **RUN),
        processor=FakeProcessor(),
    )
    (run_dir / "tokenizer" / "notes.txt").write_text("mine")
    more = toy_args(run_dir, save_final_model=True, resume_from="latest", **{**RUN, "max_steps": 6})
    with pytest.raises(FileExistsError, match=r"did not write \(tokenizer/notes.txt\)"):
        train(toy_model(), ToyObjective(), data, args=more)
    (run_dir / "tokenizer" / "notes.txt").unlink()
    train(toy_model(), ToyObjective(), data, args=more)  # no processor this time: its files go
    assert not (run_dir / "tokenizer").exists() and not (run_dir / "processor_config.json").exists()


def test_resume_refuses_a_folder_holding_files_the_trainer_did_not_write(tmp_path):
    run_dir = tmp_path / "run"
    _run_with_states(run_dir, save_final_model=True)
    (run_dir / "notes.txt").write_text("mine")
    args = toy_args(run_dir, save_final_model=True, resume_from="latest", **{**RUN, "max_steps": 6})
    with pytest.raises(FileExistsError, match=r"did not write \(notes.txt\)"):
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_rotation_keeps_a_state_folder_holding_a_file_the_trainer_did_not_write(tmp_path):
    run_dir = tmp_path / "run"
    data = toy_dataset(16)
    train(toy_model(), ToyObjective(), data, args=toy_args(run_dir, **{**RUN, "max_steps": 2}))
    (run_dir / "checkpoints" / "step_2" / "notes.txt").write_text("mine")
    args = toy_args(run_dir, resume_from="latest", **{**RUN, "max_steps": 6, "save_total_limit": 1})
    train(toy_model(), ToyObjective(), data, args=args)
    # step_4 (the trainer's own) was rotated away; step_2 stays because of notes.txt.
    assert [p.name for p in checkpoint_dirs(run_dir)] == ["step_2", "step_6"]
    assert (run_dir / "checkpoints" / "step_2" / "notes.txt").read_text() == "mine"


# ----- resuming from broken or tampered state folders -----


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: _truncate(d / "model.safetensors"), r"model.safetensors is truncated or altered"),
        (lambda d: _flip_last_byte(d / "optimizer.bin"), r"optimizer.bin is corrupt: its SHA-256 differs"),
        (lambda d: (d / "random_states_0.pkl").unlink(), r"random_states_0.pkl is missing"),
        (lambda d: _truncate(d / "trainer_state.json"), r"trainer_state.json is corrupt: not valid JSON"),
        (
            lambda d: (d / "trainer_state.json").write_text("{}"),
            r"trainer_state.json is incomplete: it has no 'train_loss_history'",
        ),
    ],
    ids=["truncated-weights", "corrupt-optimizer", "missing-rng", "truncated-state", "empty-state"],
)
def test_a_broken_state_folder_is_named_with_the_previous_good_one(tmp_path, damage, message):
    run_dir = tmp_path / "run"
    _run_with_states(run_dir)
    damage(run_dir / "checkpoints" / "step_4")
    args = toy_args(run_dir, resume_from="latest", **{**RUN, "max_steps": 6})
    with pytest.raises(StateFolderError) as error:
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"cannot resume from {run_dir / 'checkpoints' / 'step_4'}:")
    assert re.search(message, text), text
    assert f"previous intact state folder is {run_dir / 'checkpoints' / 'step_2'}" in text


def test_a_broken_first_state_folder_says_there_is_no_earlier_one(tmp_path):
    run_dir = tmp_path / "run"
    _run_with_states(run_dir)
    _truncate(run_dir / "checkpoints" / "step_2" / "model.safetensors")
    args = toy_args(tmp_path / "resumed", resume_from=str(run_dir / "checkpoints" / "step_2"), **RUN)
    with pytest.raises(StateFolderError, match="model.safetensors is truncated.*no earlier intact state folder"):
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)


class _Payload:
    """Unpickling this runs code: it creates the file `path`."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('executed')",))


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "extra.pt", "scheduler.bin"])
def test_an_unexpected_pickle_in_a_state_folder_is_refused_and_never_run(tmp_path, name):
    run_dir = tmp_path / "run"
    _run_with_states(run_dir)
    sentinel = tmp_path / "executed"
    torch.save({"state": _Payload(sentinel)}, run_dir / "checkpoints" / "step_4" / name)
    args = toy_args(run_dir, resume_from="latest", **{**RUN, "max_steps": 6})
    with pytest.raises(StateFolderError, match=rf"{name} was not written by the trainer.*full unpickling"):
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)
    assert not sentinel.exists()


def test_a_recorded_file_replaced_by_a_malicious_pickle_is_never_run(tmp_path):
    """Even with its record forged to match, the optimizer state is read with weights_only=True."""
    import hashlib

    run_dir = tmp_path / "run"
    _run_with_states(run_dir)
    state_dir = run_dir / "checkpoints" / "step_4"
    sentinel = tmp_path / "executed"
    torch.save({"state": _Payload(sentinel)}, state_dir / "optimizer.bin")
    record = json.loads((state_dir / "trainer_state.json").read_text())
    data = (state_dir / "optimizer.bin").read_bytes()
    record["files"]["optimizer.bin"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (state_dir / "trainer_state.json").write_text(json.dumps(record))
    args = toy_args(run_dir, resume_from="latest", **{**RUN, "max_steps": 6})
    with pytest.raises(StateFolderError, match=r"cannot resume from .*step_4: UnpicklingError"):
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)
    assert not sentinel.exists()


def test_state_folders_hold_no_pickled_custom_objects(tmp_path):
    run_dir = tmp_path / "run"
    _run_with_states(run_dir)
    state_dir = run_dir / "checkpoints" / "step_4"
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
        "trainer_state.json",
    ]
    saved = json.loads((state_dir / "trainer_state.json").read_text())
    assert saved["scheduler"]["last_epoch"] == 4  # the schedule's state is JSON
    assert sorted(saved["files"]) == ["model.safetensors", "optimizer.bin", "random_states_0.pkl"]


# ----- divergence -----


class NaNAfter(ToyObjective):
    def __init__(self, step: int):
        super().__init__()
        self.calls, self.step = 0, step

    def compute_loss(self, model, batch):
        self.calls += 1
        loss = super().compute_loss(model, batch)
        return loss * float("nan") if self.calls >= self.step else loss


def test_a_nan_loss_stops_training_at_its_step_without_saving(tmp_path):
    run_dir = tmp_path / "run"
    args = toy_args(run_dir, save_final_model=True, **{**RUN, "max_steps": 6})
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step 3: the training loss is not finite.*"
                       r"last state folder is .*step_2") as error:  # fmt: skip
        train(toy_model(), NaNAfter(3), toy_dataset(16), args=args)
    assert error.value.step == 3
    assert [p.name for p in checkpoint_dirs(run_dir)] == ["step_2"]
    assert not (run_dir / "model.safetensors").exists()


def test_a_huge_learning_rate_stops_with_a_clear_error(tmp_path):
    args = toy_args(tmp_path / "run", save_final_model=True, learning_rate=1e30, max_grad_norm=None, max_steps=20)
    with pytest.raises(TrainingDivergedError, match=r"training diverged at step \d+: .*learning_rate \(now 1e\+30\)"):
        train(toy_model(), ToyObjective(), toy_dataset(16), args=args)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_nan_weights_after_the_last_step_are_not_saved(tmp_path):
    class PoisonLastStep(TrainerCallback):
        def __init__(self, model):
            self.model = model

        def on_step_end(self, args, state):
            if state.global_step == args.max_steps:
                with torch.no_grad():
                    self.model.head.bias.fill_(float("inf"))

    model = toy_model()
    args = toy_args(tmp_path / "run", save_final_model=True, max_steps=2)
    with pytest.raises(TrainingDivergedError, match=r"step 2: parameter .*head.bias holds NaN or infinite values"):
        train(model, ToyObjective(), toy_dataset(16), args=args, callbacks=[PoisonLastStep(model)])
    assert not (tmp_path / "run" / "model.safetensors").exists()


# ----- mixed precision -----


class RecordDtype(ToyObjective):
    """Records the dtype the model's head computes in (bf16 under Accelerate's autocast)."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def compute_loss(self, model, batch):
        hook = model.head.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))
        try:
            return super().compute_loss(model, batch)
        finally:
            hook.remove()


@pytest.mark.parametrize(("configured", "expected"), [(None, torch.bfloat16), ("no", torch.float32)])
def test_the_launchers_mixed_precision_applies_unless_set_explicitly(tmp_path, monkeypatch, configured, expected):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    objective = RecordDtype()
    train(toy_model(), objective, toy_dataset(8), args=toy_args(tmp_path, max_steps=1, mixed_precision=configured))
    assert objective.dtypes == {expected}
