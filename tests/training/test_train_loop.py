"""The training loop on one process: learning, saving, accumulation, mixed precision, checkpointing, evaluation, stops."""

import math
import time

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel

from vlzoo.training import CHECKPOINTS_DIR, TrainerCallback, checkpoint_dirs, parameter_groups, train

from .toy import (
    ToyObjective,
    ToyRegressionConfig,
    ToyRegressionModel,
    assert_same_weights,
    toy_args,
    toy_dataset,
    toy_model,
    weights,
)


def test_loss_decreases_and_saved_model_reloads(tmp_path):
    model = toy_model()
    data = toy_dataset(48)
    args = toy_args(tmp_path / "run", num_epochs=5, save_final_model=True)
    result = train(model, ToyObjective(), data, args=args)

    assert result.global_step == 30  # 48 rows / 8 per batch = 6 steps per epoch, 5 epochs
    assert result.epochs_completed == 5
    assert result.stop_reason == "num_epochs"
    assert [step for step, _ in result.train_loss_history] == list(range(1, 31))
    losses = [loss for _, loss in result.train_loss_history]
    assert sum(losses[-6:]) / 6 < 0.5 * sum(losses[:6]) / 6

    assert result.final_model_dir == str(tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [".vlzoo-output.json", "README.md", "config.json", "model.safetensors"]  # nothing partial left
    reloaded = ToyRegressionModel.from_pretrained(result.final_model_dir)
    probe = torch.randn(5, ToyRegressionConfig().input_size)
    model.cpu().eval()  # trained on the accelerator when there is one
    with torch.no_grad():
        # Weights reload bit for bit; outputs may differ in the last bit when the kernels see other alignments.
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(reloaded.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
        torch.testing.assert_close(reloaded(probe).predictions, model(probe).predictions, atol=1e-6, rtol=0)


def test_gradient_accumulation_counts_optimizer_steps_and_matches_a_larger_batch(tmp_path):
    data = toy_dataset(16)
    steps = []

    class CountSteps(TrainerCallback):
        def on_step_end(self, args, state):
            steps.append(state.global_step)

    accumulated = toy_model()
    result = train(
        accumulated,
        ToyObjective(),
        data,
        args=toy_args(tmp_path / "a", per_device_batch_size=2, gradient_accumulation_steps=2),
        callbacks=[CountSteps()],
    )
    assert result.global_step == 4  # 8 batches, accumulation 2
    assert steps == [1, 2, 3, 4]

    # The mean loss over two batches of 2 has the gradient of one batch of 4 holding the same rows.
    large_batch = toy_model()
    train(large_batch, ToyObjective(), data, args=toy_args(tmp_path / "b", per_device_batch_size=4))
    assert_same_weights(weights(accumulated), weights(large_batch), atol=1e-6)


def test_bf16_mixed_precision_runs_on_cpu_and_leaves_model_unpatched(tmp_path):
    model = toy_model()
    output_dtypes = []
    model.head.register_forward_hook(lambda module, inputs, output: output_dtypes.append(output.dtype))
    result = train(model, ToyObjective(), toy_dataset(16), args=toy_args(tmp_path, mixed_precision="bf16"))

    assert result.global_step == 2
    assert output_dtypes and set(output_dtypes) == {torch.bfloat16}
    assert all(math.isfinite(loss) for _, loss in result.train_loss_history)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    output_dtypes.clear()
    model.cpu()(torch.randn(2, ToyRegressionConfig().input_size))
    assert output_dtypes == [torch.float32]  # autocast removed from the model handed back


def test_gradient_checkpointing_uses_the_model_api_and_keeps_the_result(tmp_path):
    data = toy_dataset(16)
    plain = toy_model()
    train(plain, ToyObjective(), data, args=toy_args(tmp_path / "plain"))
    checkpointed = toy_model()
    train(checkpointed, ToyObjective(), data, args=toy_args(tmp_path / "ckpt", gradient_checkpointing=True))

    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    # Two batches: a checkpointed block runs again during each backward pass.
    assert [layer.forward_calls for layer in plain.layers] == [2, 2]
    assert [layer.forward_calls for layer in checkpointed.layers] == [4, 4]
    assert_same_weights(weights(checkpointed), weights(plain), atol=1e-6)


def test_gradient_checkpointing_on_unsupported_models_raises(tmp_path):
    class NoCheckpointing(ToyRegressionModel):
        supports_gradient_checkpointing = False

    args = toy_args(tmp_path, gradient_checkpointing=True)
    with pytest.raises(ValueError, match="supports_gradient_checkpointing=False"):
        train(NoCheckpointing(ToyRegressionConfig()), ToyObjective(), toy_dataset(8), args=args)

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 1)

    with pytest.raises(ValueError, match="activation_checkpointing_enable"):
        train(Plain(), ToyObjective(), toy_dataset(8), args=args)


@pytest.mark.parametrize(("max_steps", "expected_steps"), [(7, [3, 6, 7]), (6, [3, 6])])
def test_evaluation_runs_every_n_steps_and_at_the_end(tmp_path, max_steps, expected_steps):
    objective = ToyObjective()
    seen = []

    class RecordEvaluations(TrainerCallback):
        def on_evaluate(self, args, state, metrics):
            seen.append((state.global_step, metrics))

    result = train(
        toy_model(),
        objective,
        toy_dataset(16),
        args=toy_args(tmp_path, per_device_batch_size=4, max_steps=max_steps, eval_every_steps=3),
        eval_dataset=toy_dataset(12, seed=7),
        callbacks=[RecordEvaluations()],
    )
    assert [step for step, _ in result.eval_history] == expected_steps
    assert seen == result.eval_history
    assert all(set(metrics) == {"eval_loss"} and math.isfinite(metrics["eval_loss"]) for _, metrics in seen)
    assert objective.evaluated_in_train_mode == [False] * len(expected_steps)
    # max_steps overrides num_epochs: 16 rows / 4 = 4 steps per epoch, cycled.
    assert result.epochs_completed == max_steps // 4
    assert objective.epochs_set == [(epoch, 0) for epoch in range(math.ceil(max_steps / 4))]


def test_max_time_stops_early_then_evaluates_and_saves(tmp_path):
    class SlowObjective(ToyObjective):
        def compute_loss(self, model, batch):
            time.sleep(0.05)
            return super().compute_loss(model, batch)

    budget = 0.4
    result = train(
        toy_model(),
        SlowObjective(),
        toy_dataset(16),
        args=toy_args(
            tmp_path,
            per_device_batch_size=4,
            max_steps=500,
            max_time_seconds=budget,
            save_state_every_steps=1000,
            save_final_model=True,
        ),
        eval_dataset=toy_dataset(8, seed=3),
    )
    assert result.stop_reason == "max_time"
    assert 1 <= result.global_step < 500
    assert result.elapsed_seconds >= budget
    assert result.eval_history[-1][0] == result.global_step
    assert result.train_loss_history[-1][0] == result.global_step
    assert [p.name for p in checkpoint_dirs(tmp_path)] == [f"step_{result.global_step}"]
    assert (tmp_path / "model.safetensors").is_file()


def test_callback_can_stop_training(tmp_path):
    class StopAtThree(TrainerCallback):
        def on_step_end(self, args, state):
            if state.global_step == 3:
                state.should_stop = True

    result = train(toy_model(), ToyObjective(), toy_dataset(40), args=toy_args(tmp_path), callbacks=[StopAtThree()])
    assert result.stop_reason == "callback"
    assert result.global_step == 3
    assert not (tmp_path / CHECKPOINTS_DIR).exists()  # no state saving was requested


def test_weight_decay_skips_one_dimensional_parameters():
    model = toy_model()
    decayed, undecayed = parameter_groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and undecayed["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model.embed.weight), id(model.head.weight)} | {
        id(layer.fc.weight) for layer in model.layers
    }
    assert all(p.ndim == 1 for p in undecayed["params"])
    assert len(decayed["params"]) + len(undecayed["params"]) == len(list(model.parameters()))

    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(model, weight_decay=0.1)


def test_bad_inputs_are_rejected_before_training(tmp_path):
    args = toy_args(tmp_path)
    with pytest.raises(TypeError, match="objective must provide collate"):
        train(toy_model(), object(), toy_dataset(8), args=args)
    with pytest.raises(TypeError, match="args must be a TrainingArguments"):
        train(toy_model(), ToyObjective(), toy_dataset(8), args={"output_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="train_dataset is empty"):
        train(toy_model(), ToyObjective(), [], args=args)
    with pytest.raises(ValueError, match="no eval_dataset"):
        train(toy_model(), ToyObjective(), toy_dataset(8), args=toy_args(tmp_path, eval_every_steps=2))

    class NoEvaluate:
        collate = ToyObjective.collate
        compute_loss = ToyObjective.compute_loss

    with pytest.raises(ValueError, match="has no evaluate"):
        train(toy_model(), NoEvaluate(), toy_dataset(8), args=args, eval_dataset=toy_dataset(4))

    class NotSaveable(nn.Module):
        pass

    assert not isinstance(NotSaveable(), PreTrainedModel)
    with pytest.raises(ValueError, match="has no save_pretrained"):
        train(NotSaveable(), ToyObjective(), toy_dataset(8), args=toy_args(tmp_path, save_final_model=True))


def test_worker_processes_load_the_same_batches(tmp_path):
    data = toy_dataset(24)
    in_process, with_workers = toy_model(), toy_model()
    train(in_process, ToyObjective(), data, args=toy_args(tmp_path / "a", per_device_batch_size=4, num_epochs=2))
    args = toy_args(tmp_path / "b", per_device_batch_size=4, num_epochs=2, num_workers=2)
    train(with_workers, ToyObjective(), data, args=args)
    assert_same_weights(weights(with_workers), weights(in_process))


def test_gradient_clipping_is_applied(tmp_path):
    # AdamW is scale invariant except for eps (1e-8): gradients clipped far below eps barely move the weights.
    moved = {}
    for max_grad_norm in (None, 1e-12):
        model = toy_model()
        before = weights(model)
        args = toy_args(tmp_path / str(max_grad_norm), max_grad_norm=max_grad_norm, weight_decay=0.0)
        train(model, ToyObjective(), toy_dataset(16), args=args)
        moved[max_grad_norm] = max((weights(model)[k] - before[k]).abs().max().item() for k in before)
    assert moved[None] > 1e-3
    assert moved[1e-12] < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with loss scaling needs a CUDA device")
def test_fp16_mixed_precision_on_cuda(tmp_path):
    model = toy_model()
    output_dtypes = []
    model.head.register_forward_hook(lambda module, inputs, output: output_dtypes.append(output.dtype))
    args = toy_args(tmp_path, mixed_precision="fp16", num_epochs=4, save_final_model=True)
    result = train(model, ToyObjective(), toy_dataset(32), args=args)

    assert result.global_step == 16
    assert set(output_dtypes) == {torch.float16}
    assert next(model.parameters()).device.type == "cuda"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    losses = [loss for _, loss in result.train_loss_history]
    assert all(math.isfinite(loss) for loss in losses) and sum(losses[-4:]) < sum(losses[:4])
    reloaded = ToyRegressionModel.from_pretrained(tmp_path)
    assert_same_weights(weights(reloaded), weights(model))
