"""The one vlzoo training loop (Accelerate): every family trains through `train` and only supplies an `Objective`.

The same script runs on one process or many; the launcher decides:

- one machine, several processes: `torchrun --nproc_per_node N train.py`, or `accelerate launch --num_processes N
  train.py` with GPUs. On CPU use torchrun (MULTI_CPU, gloo backend): `accelerate launch --cpu --num_processes 2`
  starts only ONE process (Accelerate 1.15).
- several machines: on machine R of M run `torchrun --nnodes M --node_rank R --nproc_per_node N --master_addr HOST
  --master_port PORT train.py`, or `accelerate launch --num_machines M --machine_rank R --main_process_ip HOST
  --main_process_port PORT --num_processes M*N train.py`. `output_dir` must be on a filesystem every machine sees.
- tests and notebooks: `accelerate.debug_launcher(fn, num_processes=2)` runs `fn` in two CPU processes.

`per_device_batch_size` is per process, so the global batch is per_device_batch_size x processes x accumulation.
"""

import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.utils import logging

from .arguments import TrainingArguments
from .callbacks import TrainerCallback
from .checkpoints import checkpoint_dirs, load_state_dir, resolve_resume_dir, save_checkpoint
from .errors import TrainingDivergedError
from .objective import Objective
from .optimization import build_optimizer, build_scheduler
from .run_folder import check_run_folder, final_model_clashes, install_final_model, mark_run_folder
from .sampling import EpochShuffleSampler
from .state import TrainerState

logger = logging.get_logger(__name__)

# Why a run stopped, in increasing priority when processes disagree (only the time budget can differ).
_STOP_REASONS = (None, "callback", "max_time", "max_steps", "num_epochs")


@dataclass
class TrainResult:
    """What `train` did.

    Args:
        global_step: Optimizer steps taken in total (including those before a resume).
        epochs_completed: Full passes over the training data.
        train_loss_history: `(step, mean loss over the steps since the previous entry)`, every `log_every_steps`
            steps and at the last step, averaged over processes.
        eval_history: `(step, metrics)` for every evaluation.
        output_dir: The run's output folder.
        final_model_dir: Where the final model was saved, or `None` when `save_final_model` is false.
        elapsed_seconds: Wall time of this `train` call.
        stop_reason: "num_epochs", "max_steps", "max_time" or "callback".
    """

    global_step: int
    epochs_completed: int
    train_loss_history: list[tuple[int, float]]
    eval_history: list[tuple[int, dict[str, float]]]
    output_dir: str
    final_model_dir: str | None
    elapsed_seconds: float
    stop_reason: str


def train(
    model: torch.nn.Module,
    objective: Objective,
    train_dataset: Any,
    *,
    args: TrainingArguments,
    eval_dataset: Any | None = None,
    processor: Any | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> TrainResult:
    """Train `model` in place on `train_dataset` with the loss from `objective`, then save it to `args.output_dir`.

    Args:
        model: A `PreTrainedModel` (or a PEFT model wrapping one); any `nn.Module` works when
            `save_final_model=False`.
        objective: Supplies `collate` and `compute_loss` (and `evaluate` when `eval_dataset` is given).
        train_dataset: A map-style dataset of rows: a list of dicts, a `datasets.Dataset` or a torch `Dataset`.
        args: See `TrainingArguments`.
        eval_dataset: Rows passed to `objective.evaluate` every `args.eval_every_steps` steps and at the end.
        processor: Saved next to the final model with `save_pretrained` when given.
        callbacks: `TrainerCallback`s called on every process.

    Returns:
        A `TrainResult`. Call `train` on every process when launched on several.

    Raises:
        FileExistsError: `args.output_dir` already holds files and the run does not resume (a new run never
            replaces a folder), or a resumed run would overwrite files the trainer did not write.
        StateFolderError: the state folder to resume from has a missing, truncated, altered or unexpected file.
        TrainingDivergedError: the loss, the gradient norm or the parameters stopped being finite; nothing of that
            step is saved.
    """
    start = time.monotonic()
    _check_inputs(model, objective, train_dataset, args, eval_dataset, processor)
    check_run_folder(args.output_dir, resuming=args.resume_from is not None)
    callbacks = list(callbacks or [])

    # AcceleratorState is a process-wide singleton that refuses a second mixed-precision setting; each `train`
    # call configures its own (the distributed process group, held by PartialState, is kept). mixed_precision=None
    # lets Accelerate read the launcher's choice (ACCELERATE_MIXED_PRECISION, set by `accelerate launch`).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    _check_process_count(accelerator)
    set_seed(args.seed)
    if args.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.train()

    sampler = EpochShuffleSampler(len(train_dataset), seed=args.seed)
    loader = DataLoader(
        train_dataset,
        batch_size=args.per_device_batch_size,
        sampler=sampler,
        collate_fn=objective.collate,
        num_workers=args.num_workers,
        drop_last=False,
    )
    loader = accelerator.prepare(loader)
    batches_per_epoch = len(loader)
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps is not None else args.num_epochs * steps_per_epoch
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    scheduler = build_scheduler(optimizer, args.warmup_steps, total_steps)
    # The scheduler's state goes into trainer_state.json (JSON), not through Accelerate's pickled custom objects.
    model, optimizer = accelerator.prepare(model, optimizer)

    state = TrainerState()
    if args.resume_from is not None:
        resume_dir = resolve_resume_dir(args.resume_from, args.output_dir)
        state = load_state_dir(accelerator, resume_dir)
        scheduler.load_state_dict(state.scheduler_state)
        if state.batches_in_epoch >= batches_per_epoch:
            raise ValueError(
                f"resume_from={args.resume_from!r}: the state has consumed {state.batches_in_epoch} batches of an epoch "
                f"that now has {batches_per_epoch}; resume with the dataset, batch size and process count it was "
                "written with."
            )
        logger.info(f"Resumed from {resume_dir} at step {state.global_step} (epoch {state.epoch}).")
    state.max_steps = total_steps
    state.is_main_process = accelerator.is_main_process
    if accelerator.is_main_process:
        mark_run_folder(args.output_dir)
    logger.info(
        f"Training {total_steps} steps: {batches_per_epoch} batches of {args.per_device_batch_size} per process and "
        f"epoch, {accelerator.num_processes} process(es), accumulation {args.gradient_accumulation_steps}."
    )

    progress = tqdm(
        total=total_steps,
        initial=state.global_step,
        desc="training",
        unit="step",
        disable=not accelerator.is_local_main_process or not args.progress_bar,
    )
    for callback in callbacks:
        callback.on_train_begin(args, state)

    limit_reason = "max_steps" if args.max_steps is not None else "num_epochs"
    stop_reason = limit_reason if state.global_step >= total_steps else None
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    loss_batches = 0
    while stop_reason is None:
        epoch = state.epoch
        sampler.set_epoch(epoch)
        if callable(getattr(objective, "set_epoch", None)):
            objective.set_epoch(epoch, args.seed)
        epoch_loader = loader
        if state.batches_in_epoch:
            epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch)
        epoch_loader.set_epoch(epoch)

        for batch in epoch_loader:
            with accelerator.accumulate(model):
                loss = objective.compute_loss(model, batch)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and args.max_grad_norm is not None:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().double()
            loss_batches += 1
            state.batches_in_epoch += 1
            if state.batches_in_epoch == batches_per_epoch:
                state.epoch += 1
                state.batches_in_epoch = 0
            if not accelerator.sync_gradients:
                continue

            state.global_step += 1
            progress.update(1)
            for callback in callbacks:
                callback.on_step_end(args, state)
            local_reason = None
            if state.global_step >= total_steps:
                local_reason = limit_reason
            elif args.max_time_seconds is not None and time.monotonic() - start >= args.max_time_seconds:
                local_reason = "max_time"
            elif state.should_stop:
                local_reason = "callback"
            # The loss sum since the last log turns non-finite with the first bad batch; a fp16 step the gradient
            # scaler skipped is not a divergence.
            problems = torch.stack(
                [~torch.isfinite(loss_sum), torch.zeros((), dtype=torch.bool, device=loss_sum.device)]
            )
            if grad_norm is not None and not accelerator.optimizer_step_was_skipped:
                problems[1] = ~torch.isfinite(torch.as_tensor(grad_norm, device=loss_sum.device))
            stop_reason, diverged = _agree_on_stop(accelerator, local_reason, problems)
            if any(diverged):
                progress.close()
                what = "the training loss" if diverged[0] else "the gradient norm"
                raise _diverged(state.global_step, f"{what} is not finite", args)

            eval_due = args.eval_every_steps is not None and state.global_step % args.eval_every_steps == 0
            if eval_dataset is not None and (eval_due or stop_reason is not None):
                _evaluate(objective, model, eval_dataset, accelerator, args, state, callbacks)
                if stop_reason is None:
                    stop_reason, _ = _agree_on_stop(accelerator, "callback" if state.should_stop else None)

            if state.global_step % args.log_every_steps == 0 or stop_reason is not None:
                mean = accelerator.reduce(loss_sum / loss_batches, reduction="mean").item()
                logs = {"loss": mean, "learning_rate": scheduler.get_last_lr()[0]}
                state.train_loss_history.append((state.global_step, mean))
                loss_sum.zero_()
                loss_batches = 0
                progress.set_postfix(loss=f"{mean:.4f}")
                logger.info(f"step {state.global_step}: " + ", ".join(f"{k}={v:.6g}" for k, v in logs.items()))
                for callback in callbacks:
                    callback.on_log(args, state, logs)

            save_due = args.save_state_every_steps is not None and (
                state.global_step % args.save_state_every_steps == 0 or stop_reason in ("max_time", "callback")
            )
            if save_due:
                _check_finite_parameters(model, state.global_step, args)
                save_checkpoint(accelerator, state, args.output_dir, args.save_total_limit, scheduler.state_dict())
            if stop_reason is not None:
                break
    progress.close()

    final_model_dir = None
    if args.save_final_model:
        _check_finite_parameters(model, state.global_step, args)
        final_model_dir = _save_final_model(accelerator, model, processor, args, state.global_step)
    for callback in callbacks:
        callback.on_train_end(args, state)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    # Undo Accelerate's mixed-precision forward patch and wrappers: the caller keeps using `model` afterwards.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    accelerator.free_memory()
    return TrainResult(
        global_step=state.global_step,
        epochs_completed=state.epoch,
        train_loss_history=list(state.train_loss_history),
        eval_history=list(state.eval_history),
        output_dir=args.output_dir,
        final_model_dir=final_model_dir,
        elapsed_seconds=time.monotonic() - start,
        stop_reason=stop_reason,
    )


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Turn on activation (gradient) checkpointing through the model's own transformers API.

    Uses `activation_checkpointing_enable()` (transformers >= 5.24) or else `gradient_checkpointing_enable()`;
    a model without either, or with `supports_gradient_checkpointing = False`, raises a `ValueError`.
    """
    if getattr(model, "supports_gradient_checkpointing", True) is False:
        raise ValueError(
            f"gradient_checkpointing=True but {type(model).__name__} declares supports_gradient_checkpointing=False."
        )
    for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):
        method = getattr(model, name, None)
        if callable(method):
            method()
            return
    raise ValueError(
        f"gradient_checkpointing=True but {type(model).__name__} has neither activation_checkpointing_enable() nor "
        "gradient_checkpointing_enable(); use a transformers PreTrainedModel or set gradient_checkpointing=False."
    )


def _check_inputs(
    model: Any, objective: Any, train_dataset: Any, args: Any, eval_dataset: Any, processor: Any
) -> None:
    if not isinstance(args, TrainingArguments):
        raise TypeError(f"args must be a TrainingArguments, got {type(args).__name__}.")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(objective, Objective):
        raise TypeError(
            f"objective must provide collate(examples) and compute_loss(model, batch), got {type(objective).__name__}."
        )
    for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if dataset is None:
            continue
        if (
            isinstance(dataset, IterableDataset)
            or not hasattr(dataset, "__len__")
            or not hasattr(dataset, "__getitem__")
        ):
            raise TypeError(
                f"{name} must be a map-style dataset with len() and indexing (a list of dicts, a datasets.Dataset, "
                f"a torch Dataset), got {type(dataset).__name__}."
            )
        if len(dataset) == 0:
            raise ValueError(f"{name} is empty.")
    if train_dataset is None:
        raise TypeError("train_dataset must be a map-style dataset, got None.")
    if eval_dataset is not None and not callable(getattr(objective, "evaluate", None)):
        raise ValueError(f"eval_dataset was given but {type(objective).__name__} has no evaluate() method.")
    if args.eval_every_steps is not None and eval_dataset is None:
        raise ValueError(f"eval_every_steps={args.eval_every_steps} but no eval_dataset was given.")
    if args.save_final_model and not callable(getattr(model, "save_pretrained", None)):
        raise ValueError(
            f"save_final_model=True but {type(model).__name__} has no save_pretrained(); "
            "use a transformers PreTrainedModel or set save_final_model=False."
        )
    if processor is not None and not callable(getattr(processor, "save_pretrained", None)):
        raise TypeError(f"processor must have save_pretrained(), got {type(processor).__name__}.")
    if args.remote_code:
        _check_remote_code_model(model)


def _check_remote_code_model(model: Any) -> None:
    """remote_code=True bundles the code of a vlzoo family's model: refuse anything else before training starts."""
    from ..registry import family_for_model_type

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not isinstance(model, PreTrainedModel) or family_for_model_type(model_type or "") is None:
        raise ValueError(
            f"remote_code=True needs a transformers model of a registered vlzoo family (its code is what is bundled); "
            f"got {type(model).__name__} (model_type {model_type!r}). A PEFT model saves only its adapter: merge it "
            "(merge_and_unload) first, or set remote_code=False."
        )


def _check_process_count(accelerator: Accelerator) -> None:
    """Fail loudly when a launcher started several processes but Accelerate set up only one.

    That happens on CPU when a `PartialState` or `Accelerator` was created before `train` without `cpu=True`:
    every process would then train alone on all the data and they would overwrite each other's files.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise RuntimeError(
            f"The launcher started WORLD_SIZE={launched} processes but Accelerate runs {accelerator.num_processes} "
            f"({accelerator.distributed_type}). On CPU, create no PartialState/Accelerator before train(), or "
            "create it with cpu=True."
        )


def _agree_on_stop(
    accelerator: Accelerator, reason: str | None, problems: torch.Tensor | None = None
) -> tuple[str | None, list[bool]]:
    """The same stop decision and divergence flags on every process, in one reduction.

    Time budgets and callbacks may disagree between processes, and a loss may turn non-finite on one process only.
    """
    flags = problems if problems is not None else torch.zeros(2, dtype=torch.bool, device=accelerator.device)
    code = torch.cat([torch.tensor([_STOP_REASONS.index(reason)], device=flags.device), flags.long()])
    if accelerator.num_processes > 1:
        code = accelerator.reduce(code, reduction="max")
    values = code.tolist()
    return _STOP_REASONS[int(values[0])], [bool(value) for value in values[1:]]


def _diverged(step: int, what: str, args: TrainingArguments) -> TrainingDivergedError:
    saved = checkpoint_dirs(args.output_dir)
    last = f"the last state folder is {saved[-1]}" if saved else "no state folder was saved"
    return TrainingDivergedError(
        f"training diverged at step {step}: {what}; nothing of this step was saved ({last}). Lower learning_rate "
        f"(now {args.learning_rate:g}), set max_grad_norm, or check the data.",
        step,
    )


def _check_finite_parameters(model: torch.nn.Module, step: int, args: TrainingArguments) -> None:
    """Refuse to save NaN or infinite weights (one device synchronisation for all parameters)."""
    parameters = list(model.named_parameters())
    if not parameters or bool(torch.stack([torch.isfinite(p.detach()).all() for _, p in parameters]).all()):
        return
    name = next(name for name, p in parameters if not bool(torch.isfinite(p.detach()).all()))
    raise _diverged(step, f"parameter {name} holds NaN or infinite values", args)


def _evaluate(
    objective: Any,
    model: torch.nn.Module,
    dataset: Any,
    accelerator: Accelerator,
    args: TrainingArguments,
    state: TrainerState,
    callbacks: list[TrainerCallback],
) -> None:
    model.eval()
    with torch.no_grad():
        metrics = objective.evaluate(model, dataset, accelerator, args.eval_batch_size or args.per_device_batch_size)
    model.train()
    if not isinstance(metrics, dict):
        raise TypeError(
            f"{type(objective).__name__}.evaluate must return a dict of metrics, got {type(metrics).__name__}."
        )
    metrics = {name: float(value) for name, value in metrics.items()}
    state.eval_history.append((state.global_step, metrics))
    logger.info(f"step {state.global_step} evaluation: " + ", ".join(f"{k}={v:.6g}" for k, v in metrics.items()))
    for callback in callbacks:
        callback.on_evaluate(args, state, metrics)


def _save_final_model(
    accelerator: Accelerator, model: torch.nn.Module, processor: Any, args: TrainingArguments, steps: int
) -> str:
    """`save_pretrained` into a temporary folder, then move the files into `output_dir` (main process only).

    The folder gets the remote code with `args.remote_code` and a minimal model card (`_write_card`). Only files an
    earlier final save of this run wrote are replaced; the ones it wrote and this one does not are removed, so no
    stale file describes the new weights.
    """
    output = Path(args.output_dir)
    partial = output / ".partial_final_model"  # the trainer's own temporary folder, left over only by a crash
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if isinstance(unwrapped, PreTrainedModel):
        unwrapped.save_pretrained(partial, is_main_process=accelerator.is_main_process, save_function=accelerator.save)
    else:
        unwrapped.save_pretrained(partial, is_main_process=accelerator.is_main_process)
    if accelerator.is_main_process and processor is not None:
        processor.save_pretrained(partial)
    if accelerator.is_main_process:
        if args.remote_code:
            from ..hub.remote_code import add_remote_code

            add_remote_code(partial, model=unwrapped, processor=processor)
        _write_card(partial, output.name, steps)
    accelerator.wait_for_everyone()
    clashes = final_model_clashes(partial, output)  # on every process, so that all of them stop together
    accelerator.wait_for_everyone()
    if clashes:
        if accelerator.is_main_process:
            shutil.rmtree(partial)
        raise FileExistsError(
            f"output_dir {output} holds {', '.join(clashes)}, which the trainer did not write; the final model was "
            "not saved over them: move them out and resume, or choose another output_dir."
        )
    if accelerator.is_main_process:
        install_final_model(partial, output)
    accelerator.wait_for_everyone()
    return str(output)


def _write_card(folder: Path, name: str, steps: int) -> None:
    """A minimal model card for the saved model, unless it wrote its own (PEFT does) or has no config.json."""
    from ..hub.cards import CARD_FILE, write_minimal_model_card

    if (folder / CARD_FILE).exists() or not (folder / "config.json").is_file():
        return
    write_minimal_model_card(
        folder, description=f"Trained with vlzoo's trainer for {steps} optimizer steps.", repo=name
    )


__all__ = ["TrainResult", "enable_activation_checkpointing", "train"]
