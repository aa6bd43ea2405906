"""Training-state folders `output_dir/checkpoints/step_N`: atomic saving, rotation and finding the one to resume."""

import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from .state import STATE_FILE, TrainerState

CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete state folders under `output_dir/checkpoints`, oldest step first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
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


def save_checkpoint(
    accelerator: Accelerator, state: TrainerState, output_dir: str | Path, save_total_limit: int | None
) -> Path:
    """Save the full training state of this step; call it on every process.

    Every process writes into a temporary folder (each has its own RNG state); the main process then moves it to
    `step_N` and removes the oldest folders beyond `save_total_limit`, so an interrupted save never leaves a
    folder that looks complete. Several machines must share `output_dir`.
    """
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"step_{state.global_step}"
    partial = root / f".partial_step_{state.global_step}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        state.save(partial)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        if save_total_limit is not None:
            for old in checkpoint_dirs(output_dir)[:-save_total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


__all__ = ["CHECKPOINTS_DIR", "checkpoint_dirs", "resolve_resume_dir", "save_checkpoint"]
