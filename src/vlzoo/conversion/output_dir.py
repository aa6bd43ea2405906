"""Write an output folder all at once: into a hidden sibling, moved into place only when complete."""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["atomic_output_dir", "check_output_dir"]


def check_output_dir(output_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an ``output_dir`` that is a file, or a non-empty folder without ``overwrite``; returns it as a Path."""
    target = Path(output_dir)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"output_dir {target} exists and is not a folder; choose another path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output_dir {target} already exists and is not empty; choose another folder or pass overwrite=True "
            f"(--overwrite) to replace it once the new one is complete"
        )
    return target


@contextmanager
def atomic_output_dir(output_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``output_dir`` that becomes ``output_dir`` only if the block succeeds.

    On any exception the temporary folder is removed and ``output_dir`` is left exactly as it was. With
    ``overwrite=True`` an existing folder is replaced, but only after the new one is complete.

    Raises:
        FileExistsError: ``output_dir`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    target = check_output_dir(output_dir, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    temporary.mkdir()
    try:
        yield temporary
        _move_into_place(temporary, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _move_into_place(temporary: Path, target: Path, *, overwrite: bool) -> None:
    # Re-checked here: the folder may have appeared while the block ran.
    check_output_dir(target, overwrite=overwrite)
    if not target.exists():
        os.rename(temporary, target)
        return
    previous = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, previous)
    try:
        os.rename(temporary, target)
    except OSError:
        os.rename(previous, target)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    logger.info(f"Replaced the previous contents of {target}")
