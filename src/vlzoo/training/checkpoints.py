"""Training-state folders `output_dir/checkpoints/step_N`: atomic saving, checked resuming and safe rotation.

A state folder holds what `Accelerator.save_state` writes (model weights as safetensors; optimizer and RNG states,
which Accelerate reloads with `torch.load(weights_only=True)`) and `trainer_state.json`, which records vlzoo's
counters, the learning-rate schedule and the size and SHA-256 of every other file. Before anything is loaded the
folder is checked against that record: a missing, truncated or altered file is named, and a file the trainer
never writes is refused, in particular Accelerate's `custom_checkpoint_N.pkl`, which `load_state` unpickles with
`weights_only=False` (that is, it would run any code the file holds). The trainer registers no custom objects, so
it never writes such files.
"""

import hashlib
import re
import shutil
from pathlib import Path

from accelerate import Accelerator
from transformers.utils import logging

from .errors import StateFolderError
from .state import STATE_FILE, TrainerState

logger = logging.get_logger(__name__)

CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# Everything `Accelerator.save_state` writes for the trainer's one model and one optimizer, on any process count.
_STATE_FILES = re.compile(r"^(model\.safetensors|optimizer\.bin|random_states_\d+\.pkl|scaler\.pt)$")
# Files `load_state` would read, some of them with full unpickling; the trainer itself writes none beyond the above.
_LOADABLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete state folders under `output_dir/checkpoints`, oldest step first."""
    return _step_dirs(Path(output_dir) / CHECKPOINTS_DIR)


def _step_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def resolve_resume_dir(resume_from: str, output_dir: str | Path) -> Path:
    """`resume_from` as a state folder; "latest" means the newest one under `output_dir/checkpoints`."""
    if resume_from == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise ValueError(
                f"resume_from='latest' but {str(Path(output_dir) / CHECKPOINTS_DIR)!r} holds no state folder "
                "(step_N with trainer_state.json); train once with save_state_every_steps set, or pass a folder."
            )
        return found[-1]
    path = Path(resume_from)
    if not (path / STATE_FILE).is_file():
        raise ValueError(
            f"resume_from={resume_from!r} is not a trainer state folder (expected a folder holding {STATE_FILE}, "
            "such as output_dir/checkpoints/step_N) nor 'latest'."
        )
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def file_record(directory: str | Path) -> dict[str, dict]:
    """`{name: {"size", "sha256"}}` for every file of a freshly saved state folder except `trainer_state.json`.

    Raises:
        StateFolderError: the folder holds a file the trainer does not write (so resuming would refuse it).
    """
    record = {}
    for path in sorted(Path(directory).iterdir()):
        if path.name == STATE_FILE:
            continue
        if not path.is_file() or not _STATE_FILES.match(path.name):
            raise StateFolderError(
                f"Accelerator.save_state wrote {path.name} into {directory}, which the trainer does not expect "
                "(objects registered with accelerator.register_for_checkpointing are not supported)."
            )
        record[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return record


def verify_state_dir(directory: str | Path, *, num_processes: int = 1) -> TrainerState:
    """Check a state folder against its `trainer_state.json` before anything in it is loaded; returns the state.

    Every process checks every file, so all of them agree on whether to resume.

    Raises:
        StateFolderError: naming the first file that is missing, truncated, altered or unexpected.
    """
    directory = Path(directory)
    state = TrainerState.load(directory)
    state_file = directory / STATE_FILE
    for name in state.files:
        if not _STATE_FILES.match(name):
            raise StateFolderError(f"{state_file} lists {name!r}, a file the trainer never writes.")
    needed = ["model.safetensors", "optimizer.bin", *(f"random_states_{i}.pkl" for i in range(num_processes))]
    for name in needed:
        if name not in state.files:
            raise StateFolderError(
                f"{state_file} records no {name} ({num_processes} process(es) need it); resume with the number of "
                "processes the state was written with."
            )
    for path in sorted(directory.iterdir()):
        if path.name == STATE_FILE or path.name in state.files:
            continue
        if "custom_checkpoint" in path.name or path.name.lower().endswith(_LOADABLE_SUFFIXES) or path.is_dir():
            raise StateFolderError(
                f"{path} was not written by the trainer; it is refused because Accelerate's load_state would load "
                "it (custom_checkpoint_*.pkl with full unpickling, which runs any code the file holds)."
            )
    for name, expected in state.files.items():
        path = directory / name
        if not path.is_file():
            raise StateFolderError(f"{path} is missing.")
        size = path.stat().st_size
        if size != expected["size"]:
            raise StateFolderError(f"{path} is truncated or altered: {size} bytes, {expected['size']} were saved.")
        if _sha256(path) != expected["sha256"]:
            raise StateFolderError(f"{path} is corrupt: its SHA-256 differs from the one saved with it.")
    return state


def previous_good_state_dir(directory: str | Path, *, num_processes: int = 1) -> Path | None:
    """The newest intact `step_M` folder next to `directory` with M smaller than its step, or None."""
    directory = Path(directory)
    match = _STEP_DIR.match(directory.name)
    if match is None:
        return None
    step = int(match.group(1))
    for candidate in reversed(_step_dirs(directory.parent)):
        if int(_STEP_DIR.match(candidate.name).group(1)) >= step:
            continue
        try:
            verify_state_dir(candidate, num_processes=num_processes)
        except (StateFolderError, OSError):
            continue
        return candidate
    return None


def load_state_dir(accelerator: Accelerator, directory: Path) -> TrainerState:
    """Verify `directory`, then restore model, optimizer and RNG states from it; returns vlzoo's state.

    Raises:
        StateFolderError: one line naming the broken file and the newest intact earlier state folder, if any.
    """
    try:
        state = verify_state_dir(directory, num_processes=accelerator.num_processes)
        accelerator.load_state(str(directory), load_kwargs={"weights_only": True})
    except Exception as error:
        previous = previous_good_state_dir(directory, num_processes=accelerator.num_processes)
        hint = (
            f"the previous intact state folder is {previous}: resume from it with resume_from={str(previous)!r}"
            if previous is not None
            else "no earlier intact state folder was found next to it"
        )
        detail = str(error).rstrip(".") if isinstance(error, StateFolderError) else f"{type(error).__name__}: {error}"
        raise StateFolderError(f"cannot resume from {directory}: {detail}; {hint}.") from error
    return state


def _removable(directory: Path) -> bool:
    """Whether a state folder holds only what its `trainer_state.json` records (so the trainer wrote all of it)."""
    try:
        recorded = set(TrainerState.load(directory).files) | {STATE_FILE}
    except StateFolderError:
        return False
    return all(path.name in recorded and path.is_file() and not path.is_symlink() for path in directory.iterdir())


def _remove_state_dir(directory: Path) -> bool:
    """Delete a state folder if it is `_removable`; returns whether it did."""
    if not _removable(directory):
        return False
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return True


def save_checkpoint(
    accelerator: Accelerator,
    state: TrainerState,
    output_dir: str | Path,
    save_total_limit: int | None,
    scheduler_state: dict,
) -> Path:
    """Save the full training state of this step; call it on every process.

    Every process writes into a temporary folder (each has its own RNG state); the main process then records the
    files in `trainer_state.json`, moves the folder to `step_N` and removes the oldest folders beyond
    `save_total_limit`, so an interrupted save never leaves a folder that looks complete. Only folders holding
    nothing but what the trainer wrote are ever removed. Several machines must share `output_dir`.

    Raises:
        FileExistsError: `step_N` exists and holds files the trainer did not write.
    """
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"step_{state.global_step}"
    # The trainer's own temporary folder (hidden name), left over only by an interrupted save.
    partial = root / f".partial_step_{state.global_step}"
    if final.exists() and not _removable(final):  # checked on every process, so all of them stop together
        raise FileExistsError(
            f"{final} exists and holds files the trainer did not write; move them out or choose another "
            "output_dir (it is never deleted)."
        )
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.scheduler_state = scheduler_state
        state.files = file_record(partial)
        state.save(partial)
        if final.exists():
            _remove_state_dir(final)
        partial.rename(final)
        if save_total_limit is not None:
            for old in checkpoint_dirs(output_dir)[:-save_total_limit]:
                if not _remove_state_dir(old):
                    logger.warning(f"Kept {old} beyond save_total_limit: it holds files the trainer did not write.")
    accelerator.wait_for_everyone()
    return final


__all__ = [
    "CHECKPOINTS_DIR",
    "checkpoint_dirs",
    "file_record",
    "load_state_dir",
    "previous_good_state_dir",
    "resolve_resume_dir",
    "save_checkpoint",
    "verify_state_dir",
]
