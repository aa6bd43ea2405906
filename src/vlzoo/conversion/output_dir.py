"""Write an output folder all at once, and replace only folders that vlzoo itself wrote.

A folder is written into a hidden sibling and moved into place only when complete. Every folder written this way
carries ``.vlzoo-output.json``, the list of files vlzoo put there. Replacing a folder (``overwrite``) is allowed
only when that list covers everything in it, and only the listed files are removed: an input checkpoint, a
reference file or anything a user added to the folder is never deleted.
"""

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from transformers.utils import logging

logger = logging.get_logger(__name__)

MARKER_FILE = ".vlzoo-output.json"

__all__ = [
    "MARKER_FILE",
    "atomic_output_dir",
    "check_inputs_outside",
    "check_output_dir",
    "check_replaceable",
    "list_files",
    "read_marker",
    "recorded_files",
    "recorded_path",
    "remove_recorded_files",
    "write_marker",
]


def list_files(folder: str | Path) -> list[str]:
    """Every file (and symlink) under ``folder``, as sorted POSIX paths relative to it, the marker excluded."""
    root = Path(folder)
    found = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        # A symlink to a folder is an entry of its own: it is listed, never followed.
        links = [name for name in subdirectories if (here / name).is_symlink()]
        subdirectories[:] = [name for name in subdirectories if name not in links]
        for name in [*files, *links]:
            relative = (here / name).relative_to(root).as_posix()
            if relative != MARKER_FILE:
                found.append(relative)
    return sorted(found)


def write_marker(folder: str | Path, *, writer: str, files: Iterable[str] | None = None) -> None:
    """Record in ``folder`` that ``writer`` (e.g. "vlzoo convert") wrote ``files`` (default: all files there now)."""
    names = sorted(files) if files is not None else list_files(folder)
    content = {"writer": writer, "files": names}
    (Path(folder) / MARKER_FILE).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def read_marker(folder: str | Path) -> dict | None:
    """The marker of ``folder``, or None when it has none or it is unreadable (then vlzoo did not write it)."""
    path = Path(folder) / MARKER_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = content.get("files") if isinstance(content, dict) else None
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        return None
    return content


def recorded_files(folder: str | Path) -> set[str] | None:
    """The files the marker of ``folder`` lists, or None when vlzoo did not write ``folder``."""
    marker = read_marker(folder)
    return None if marker is None else set(marker["files"])


def check_replaceable(folder: str | Path, *, what: str = "output_dir") -> None:
    """Refuse to replace ``folder`` unless vlzoo wrote it and it holds nothing else.

    Raises:
        FileExistsError: no (readable) marker, or files the marker does not list; the message names them.
    """
    folder = Path(folder)
    recorded = recorded_files(folder)
    if recorded is None:
        raise FileExistsError(
            f"{what} {folder} was not written by vlzoo (it has no {MARKER_FILE}); vlzoo only replaces folders it "
            "wrote itself: choose another folder or remove this one yourself"
        )
    unknown = [name for name in list_files(folder) if name not in recorded]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise FileExistsError(
            f"{what} {folder} holds files vlzoo did not write ({shown}); vlzoo never deletes them: move them out "
            "or choose another folder"
        )


def check_inputs_outside(
    output_dir: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output_dir"
) -> None:
    """Refuse an ``output_dir`` that is or contains one of ``inputs`` (symlinks resolved both ways).

    Raises:
        ValueError: naming the input that lies inside ``output_dir``.
    """
    target = Path(output_dir)
    target_forms = {Path(os.path.abspath(target)), target.resolve()}
    for item in inputs:
        if item is None:
            continue
        path = Path(item)
        for form in {Path(os.path.abspath(path)), path.resolve()}:
            if any(form == base or form.is_relative_to(base) for base in target_forms):
                raise ValueError(
                    f"{what} {target} contains the input file {path}; writing the output there could delete it: "
                    "choose an output folder that holds none of the inputs"
                )


def check_output_dir(
    output_dir: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> Path:
    """Refuse an unusable ``output_dir``; returns it as a Path.

    Refused: a file; a folder that contains one of ``inputs``; a non-empty folder without ``overwrite``; with
    ``overwrite``, a folder vlzoo did not write or that holds files vlzoo did not write (see `check_replaceable`).
    """
    target = Path(output_dir)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"output_dir {target} exists and is not a folder; choose another path")
    check_inputs_outside(target, inputs)
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output_dir {target} already exists and is not empty; choose another folder or pass overwrite=True "
                f"(--overwrite) to replace a folder vlzoo wrote, once the new one is complete"
            )
        check_replaceable(target)
    return target


@contextmanager
def atomic_output_dir(
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    writer: str = "vlzoo",
) -> Iterator[Path]:
    """Yield a temporary folder next to ``output_dir`` that becomes ``output_dir`` only if the block succeeds.

    On success the folder gets a marker listing its files (recording ``writer``). On any exception the temporary
    folder is removed and ``output_dir`` is left exactly as it was. With ``overwrite=True`` an existing folder is
    replaced once the new one is complete, but only a folder vlzoo wrote that holds nothing else; only its listed
    files are removed. ``inputs`` (checkpoint, config and reference files) must lie outside ``output_dir``.

    Raises:
        FileExistsError: ``output_dir`` is a file, or a non-empty folder and ``overwrite`` is false, or a folder
            vlzoo may not replace.
        ValueError: ``output_dir`` contains one of ``inputs``.
    """
    inputs = tuple(inputs)
    target = check_output_dir(output_dir, overwrite=overwrite, inputs=inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    temporary.mkdir()
    try:
        yield temporary
        write_marker(temporary, writer=writer)
        _move_into_place(temporary, target, overwrite=overwrite, inputs=inputs)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def recorded_path(folder: str | Path, name: str) -> Path | None:
    """``folder / name`` for a name a marker lists, or None when it would lead out of ``folder``.

    A marker written by vlzoo never holds such names; this keeps an altered one from reaching other files.
    """
    folder = Path(folder)
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name:
        return None
    path = folder / relative
    if not path.parent.resolve().is_relative_to(folder.resolve()):
        return None  # reached through a symlinked folder: the file is not inside this folder
    return path


def remove_recorded_files(folder: str | Path) -> bool:
    """Delete the files the marker of ``folder`` lists, then its empty subfolders, the marker and ``folder``.

    Anything not listed stays; returns whether ``folder`` itself could be removed.
    """
    folder = Path(folder)
    for name in recorded_files(folder) or set():
        path = recorded_path(folder, name)
        if path is not None and (path.is_symlink() or path.is_file()):
            path.unlink()
    (folder / MARKER_FILE).unlink(missing_ok=True)
    for directory, _, _ in sorted(os.walk(folder), key=lambda item: -len(Path(item[0]).parts)):
        try:
            Path(directory).rmdir()
        except OSError:
            pass  # not empty: it holds something vlzoo did not list
    return not folder.exists()


def _move_into_place(temporary: Path, target: Path, *, overwrite: bool, inputs: tuple) -> None:
    # Re-checked here: the folder may have appeared or changed while the block ran.
    check_output_dir(target, overwrite=overwrite, inputs=inputs)
    if not target.exists():
        os.rename(temporary, target)
        return
    if not any(target.iterdir()):
        target.rmdir()
        os.rename(temporary, target)
        return
    previous = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, previous)
    try:
        os.rename(temporary, target)
    except OSError:
        os.rename(previous, target)
        raise
    if not remove_recorded_files(previous):
        logger.warning(f"Kept {previous}: it holds files vlzoo did not write (they appeared during the write)")
    logger.info(f"Replaced the previous contents of {target}")
