"""The run folder `output_dir`: never an existing folder unless resuming, and only vlzoo's own files replaced.

A new run needs an absent or empty `output_dir`, so a finished model (and files such as a `parity.json` that
described it) is never silently mixed with or replaced by new weights. Resuming reuses the folder. The folder's
`.vlzoo-output.json` lists the final-model files the trainer wrote there; the next final save of a resumed run
replaces exactly those (removing the ones it no longer writes) and refuses to overwrite any other file.
"""

import os
import shutil
from pathlib import Path

from ..conversion.output_dir import MARKER_FILE, recorded_files, write_marker
from .checkpoints import CHECKPOINTS_DIR

WRITER = "vlzoo train"
PARTIAL_PREFIX = ".partial_"

__all__ = ["check_run_folder", "final_model_clashes", "install_final_model", "mark_run_folder"]


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check_run_folder(output_dir: str | Path, *, resuming: bool) -> None:
    """Refuse an `output_dir` a run may not write into; call it on every process before anything is written.

    Raises:
        FileExistsError: a file; a non-empty folder for a new run; for a resumed run, a folder holding top-level
            files the trainer did not write.
    """
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"output_dir {folder} exists and is not a folder; choose another path.")
    if not folder.is_dir():
        return
    entries = sorted(path.name for path in folder.iterdir())
    if not entries:
        return
    if not resuming:
        raise FileExistsError(
            f"output_dir {folder} already holds files ({_shown(entries)}); a new training run never replaces an "
            "existing folder: choose a new output_dir, remove this one, or continue its run with resume_from='latest'."
        )
    ours = (recorded_files(folder) or set()) | {MARKER_FILE, CHECKPOINTS_DIR}
    foreign = [name for name in entries if name not in ours and not name.startswith(PARTIAL_PREFIX)]
    if foreign:
        raise FileExistsError(
            f"output_dir {folder} holds files the trainer did not write ({_shown(foreign)}); the final model would "
            "be saved next to them: move them out or choose another output_dir."
        )


def mark_run_folder(output_dir: str | Path) -> None:
    """Create `output_dir` and mark it as a vlzoo run folder (main process only)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if recorded_files(folder) is None:
        write_marker(folder, writer=WRITER, files=[])


def final_model_clashes(partial: str | Path, output_dir: str | Path) -> list[str]:
    """Names in `partial` that would overwrite a file of `output_dir` the trainer did not write."""
    output = Path(output_dir)
    recorded = recorded_files(output) or set()
    return sorted(
        path.name
        for path in Path(partial).iterdir()
        if (output / path.name).exists() or (output / path.name).is_symlink()
        if path.name not in recorded
    )


def install_final_model(partial: str | Path, output_dir: str | Path) -> list[str]:
    """Move the files of `partial` into `output_dir`, drop the previous final model's leftovers; returns the names.

    Call `final_model_clashes` first (on every process): this replaces only files the marker records.
    """
    partial, output = Path(partial), Path(output_dir)
    previous = recorded_files(output) or set()
    names = sorted(path.name for path in partial.iterdir())
    for name in names:
        target = output / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # recorded: written by an earlier final save of this run
        os.replace(partial / name, target)
    for name in sorted(previous - set(names)):
        if name in ("", ".", "..", MARKER_FILE, CHECKPOINTS_DIR) or "/" in name or "\\" in name:
            continue  # only the trainer's own top-level names, never a path out of the folder
        stale = output / name
        if stale.is_symlink() or stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            shutil.rmtree(stale)
    write_marker(output, writer=WRITER, files=names)
    partial.rmdir()
    return names
