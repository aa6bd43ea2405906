"""The run folder `output_dir`: never an existing folder unless resuming, and only vlzoo's own files replaced.

A new run needs an absent or empty `output_dir`, so a finished model (and files such as a `parity.json` that
described it) is never silently mixed with or replaced by new weights. Resuming reuses the folder. The folder's
`.vlzoo-output.json` lists the final-model files the trainer wrote there; the next final save of a resumed run
replaces exactly those (removing the ones it no longer writes) and refuses to overwrite any other file.
"""

import os
from pathlib import Path

from ..conversion.output_dir import MARKER_FILE, list_files, recorded_files, recorded_path, write_marker
from .checkpoints import CHECKPOINTS_DIR

WRITER = "vlzoo train"
PARTIAL_PREFIX = ".partial_"

__all__ = ["check_run_folder", "final_model_clashes", "install_final_model", "mark_run_folder"]


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _foreign(output: Path, name: str, recorded: set[str]) -> list[str]:
    """Files under the top-level entry `name` of `output` that the marker does not list."""
    target = output / name
    if target.is_dir() and not target.is_symlink():
        return [f"{name}/{sub}" for sub in list_files(target) if f"{name}/{sub}" not in recorded]
    return [] if name in recorded else [name]


def check_run_folder(output_dir: str | Path, *, resuming: bool) -> None:
    """Refuse an `output_dir` a run may not write into; call it on every process before anything is written.

    Raises:
        FileExistsError: a file; a non-empty folder for a new run; for a resumed run, a folder holding files the
            trainer did not write (outside `checkpoints`).
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
    recorded = recorded_files(folder) or set()
    foreign = [
        item
        for name in entries
        if name not in (MARKER_FILE, CHECKPOINTS_DIR) and not name.startswith(PARTIAL_PREFIX)
        for item in _foreign(folder, name, recorded)
    ]
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
    """Files of `output_dir` the final model in `partial` would overwrite although the trainer did not write them."""
    output = Path(output_dir)
    recorded = recorded_files(output) or set()
    clashes = []
    for path in sorted(Path(partial).iterdir()):
        if (output / path.name).exists() or (output / path.name).is_symlink():
            clashes += _foreign(output, path.name, recorded)
    return clashes


def _remove(output: Path, names: set[str]) -> None:
    """Delete the listed files of `output` (never a path leading out of it), then the folders they leave empty."""
    folders = set()
    for name in names:
        path = recorded_path(output, name)
        if path is None or name == MARKER_FILE or name.split("/")[0] == CHECKPOINTS_DIR:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
            folders.update(parent for parent in path.parents if parent != output and output in parent.parents)
    for folder in sorted(folders, key=lambda item: -len(item.parts)):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def install_final_model(partial: str | Path, output_dir: str | Path) -> list[str]:
    """Move the final model from `partial` into `output_dir`, removing the previous one's files; returns the files.

    Call `final_model_clashes` first (on every process): only files the marker records are replaced or removed.
    """
    partial, output = Path(partial), Path(output_dir)
    files = list_files(partial)
    _remove(output, recorded_files(output) or set())
    for path in sorted(partial.iterdir()):
        os.replace(path, output / path.name)
    write_marker(output, writer=WRITER, files=files)
    partial.rmdir()
    return files
