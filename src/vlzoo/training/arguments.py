"""Training arguments for the vlzoo trainer, validated on construction and loadable from YAML or JSON."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


@dataclass
class TrainingArguments:
    """Everything the trainer needs besides the model, the objective and the data.

    Steps are optimizer steps: with `gradient_accumulation_steps=k`, `k` batches make one step. Every invalid value
    raises a `ValueError` naming the field when the object is built, so a bad config fails before any work starts.

    Args:
        output_dir: Folder for the final model (`save_pretrained` layout) and `checkpoints/step_N` state folders.
            It must be absent or empty unless the run resumes: a finished model is never silently replaced.
        num_epochs: Passes over the training data; ignored when `max_steps` is set.
        max_steps: Total optimizer steps; overrides `num_epochs` (the data is cycled as often as needed).
        max_time_seconds: Wall-time budget of one `train` call. The step that crosses it finishes, then evaluation and
            saving run as at a normal end. Useful for time-boxed demos; the learning-rate schedule still spans the
            planned steps, so the stopped run is a prefix of the full one.
        per_device_batch_size: Examples per batch on each process (global batch = this x processes x accumulation).
        eval_batch_size: Examples per evaluation batch on each process; defaults to `per_device_batch_size`.
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay, applied to parameters with 2 or more dimensions only (matrices,
            embeddings, convolutions); biases, norm gains and scalars such as a logit scale are not decayed.
        warmup_steps: Optimizer steps of linear warmup from 0; the rate then follows a cosine down to 0 at the last
            planned step.
        max_grad_norm: Clip the global gradient norm to this value before each optimizer step; `None` disables it.
        mixed_precision: "no", "fp16" or "bf16" (Accelerate autocast; on CPU only "bf16" changes the compute dtype).
            `None` (the default) defers to the launcher: `accelerate launch --mixed_precision bf16` or an Accelerate
            config file (through `ACCELERATE_MIXED_PRECISION`), else "no". A value set here wins over the launcher.
        gradient_accumulation_steps: Batches whose gradients are summed (as a mean) before one optimizer step.
        gradient_checkpointing: Recompute activations in the backward pass to save memory; the model must support it.
        eval_every_steps: Evaluate every this many optimizer steps, and at the end; `None` evaluates only at the end.
        save_state_every_steps: Write the full training state (model, optimizer, scheduler, RNG, counters) to
            `output_dir/checkpoints/step_N` every this many steps, and when a run stops early on time or on request.
        save_total_limit: Keep only the newest this many state folders; `None` keeps all of them.
        resume_from: A state folder written by the trainer, or "latest" for the newest one under
            `output_dir/checkpoints`. Resuming is the only way to train into a non-empty `output_dir`. The folder is
            checked first against the sizes and SHA-256 sums recorded in its `trainer_state.json`; files the
            trainer never writes (such as Accelerate's `custom_checkpoint_N.pkl`, which would be unpickled with
            `weights_only=False`) are refused.
        seed: Seeds Python, NumPy and torch, the shuffling order (a function of seed and epoch) and objectives.
        num_workers: DataLoader worker processes (0 loads in the training process).
        log_every_steps: Average the training loss over this many steps into `train_loss_history`.
        progress_bar: Show a tqdm bar with the loss on the main process.
        save_final_model: Write the trained model (and processor, if given) to `output_dir` at the end, with a
            minimal model card (README.md: Hub metadata, how to load it; licence unknown) unless the model writes
            its own (a PEFT adapter does).
        remote_code: With the final model, also write the code that loads it where vlzoo is not installed
            (`vlzoo.hub.add_remote_code`: the family's modules, its pipelines and `auto_map`), so that
            `AutoModel.from_pretrained(output_dir, trust_remote_code=True)` and the family's pipelines work without
            vlzoo. Needs `save_final_model` and a model of a registered vlzoo family (not a PEFT wrapper: merge
            the adapter first).
    """

    output_dir: str
    num_epochs: int = 1
    max_steps: int | None = None
    max_time_seconds: float | None = None
    per_device_batch_size: int = 32
    eval_batch_size: int | None = None
    learning_rate: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    mixed_precision: str | None = None
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    eval_every_steps: int | None = None
    save_state_every_steps: int | None = None
    save_total_limit: int | None = 2
    resume_from: str | None = None
    seed: int = 0
    num_workers: int = 0
    log_every_steps: int = 10
    progress_bar: bool = True
    save_final_model: bool = True
    remote_code: bool = False

    def __post_init__(self):
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir):
            raise ValueError(f"TrainingArguments.output_dir must be a non-empty path, got {self.output_dir!r}.")
        self.output_dir = str(self.output_dir)
        for name in ("num_epochs", "per_device_batch_size", "gradient_accumulation_steps", "log_every_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("max_steps", "eval_batch_size", "eval_every_steps", "save_state_every_steps", "save_total_limit"):
            _check_int(name, getattr(self, name), minimum=1, optional=True)
        for name in ("warmup_steps", "num_workers"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("seed", self.seed, minimum=0)
        self.learning_rate = _check_float("learning_rate", self.learning_rate, positive=True)
        self.weight_decay = _check_float("weight_decay", self.weight_decay, positive=False)
        self.max_grad_norm = _check_float("max_grad_norm", self.max_grad_norm, positive=True, optional=True)
        self.max_time_seconds = _check_float("max_time_seconds", self.max_time_seconds, positive=True, optional=True)
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(
                f"TrainingArguments.mixed_precision must be one of {MIXED_PRECISION_CHOICES} or None (the launcher's "
                f"setting), got {self.mixed_precision!r}."
            )
        for name in ("gradient_checkpointing", "progress_bar", "save_final_model", "remote_code"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainingArguments.{name} must be true or false, got {getattr(self, name)!r}.")
        if self.remote_code and not self.save_final_model:
            raise ValueError(
                "TrainingArguments.remote_code=True writes code next to the final model, but save_final_model is false; "
                "set save_final_model=True or remote_code=False."
            )
        if self.resume_from is not None and (
            not isinstance(self.resume_from, (str, Path)) or not str(self.resume_from)
        ):
            raise ValueError(
                f"TrainingArguments.resume_from must be a state folder or 'latest', got {self.resume_from!r}."
            )
        if self.resume_from is not None:
            self.resume_from = str(self.resume_from)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names accepted by `from_dict`, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingArguments":
        """Build from a mapping such as the `training` section of a config file.

        Unknown keys raise a `ValueError` listing the valid ones. Float fields also accept numeric strings, because
        YAML 1.1 reads `5e-4` (no dot) as a string.
        """
        if not isinstance(values, dict):
            raise ValueError(f"training arguments must be a mapping, got {type(values).__name__}.")
        valid = cls.field_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"Unknown training argument(s) {unknown}; valid names are: {', '.join(valid)}.")
        if "output_dir" not in values:
            raise ValueError("training arguments must set output_dir (the folder for the model and checkpoints).")
        float_fields = {"learning_rate", "weight_decay", "max_grad_norm", "max_time_seconds"}
        parsed = {
            key: _parse_float_string(key, value) if key in float_fields else value for key, value in values.items()
        }
        return cls(**parsed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy that `from_dict` accepts."""
        return dataclasses.asdict(self)


def load_training_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML (`.yaml`/`.yml`) or JSON (`.json`) config file whose top level is a mapping of sections.

    The file is only parsed here; validate its `training` section with `TrainingArguments.from_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist (or is not a file).")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"config path {str(path)!r} has suffix {suffix!r}; expected .yaml, .yml or .json.")
    try:
        text = path.read_text(encoding="utf-8")
        config = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"config file {str(path)!r} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {problem}{where}.") from None
    except RecursionError:
        raise ValueError(f"config file {str(path)!r} nests too deeply to be a config.") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of sections, got {type(config).__name__}.")
    for section, value in config.items():
        if not isinstance(value, dict):
            raise ValueError(
                f"section {section!r} of config file {str(path)!r} must be a mapping, got {type(value).__name__}."
            )
    return config


def _check_int(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"TrainingArguments.{name} must be {expected}, got {value!r}.")


def _check_float(name: str, value: Any, *, positive: bool, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    bound = "> 0" if positive else ">= 0"
    valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not valid or (value <= 0 if positive else value < 0) or value != value:
        expected = f"a number {bound}" + (" or None" if optional else "")
        raise ValueError(f"TrainingArguments.{name} must be {expected}, got {value!r}.")
    return float(value)


def _parse_float_string(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"TrainingArguments.{name} must be a number, got {value!r}.") from None


__all__ = ["MIXED_PRECISION_CHOICES", "TrainingArguments", "load_training_config"]
