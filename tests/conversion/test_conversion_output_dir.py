"""The output folder appears complete or not at all, and replacing it never deletes what vlzoo did not write."""

import json
import os
from pathlib import Path

import pytest

from vlzoo.conversion import atomic_output_dir
from vlzoo.conversion.output_dir import MARKER_FILE, check_output_dir, list_files, remove_recorded_files


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER_FILE)


def _write(target: Path, **files: str) -> None:
    """A folder written by vlzoo holding ``files``."""
    with atomic_output_dir(target, overwrite=True) as temporary:
        for name, text in files.items():
            (temporary / name).write_text(text)


def test_success_moves_the_folder_into_place_with_a_marker(tmp_path: Path):
    target = tmp_path / "out"
    with atomic_output_dir(target, writer="vlzoo test") as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".out.")
        assert not target.exists()
        (temporary / "model.safetensors").write_text("weights")
        (temporary / "sub").mkdir()
        (temporary / "sub" / "a.json").write_text("{}")
    assert _entries(target) == ["model.safetensors", "sub"]
    assert _entries(tmp_path) == ["out"]
    marker = json.loads((target / MARKER_FILE).read_text())
    assert marker == {"writer": "vlzoo test", "files": ["model.safetensors", "sub/a.json"]}


def test_failure_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output_dir(target) as temporary:
            (temporary / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert _entries(tmp_path) == []


def test_a_folder_vlzoo_wrote_is_replaced_only_with_overwrite_and_survives_a_failure(tmp_path: Path):
    target = tmp_path / "out"
    _write(target, **{"old.txt": "old", "parity.json": "{}"})
    with pytest.raises(FileExistsError, match="not empty.*overwrite"):
        with atomic_output_dir(target):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(target, overwrite=True) as temporary:
            (temporary / "new.txt").write_text("new")
            raise KeyboardInterrupt
    assert _entries(target) == ["old.txt", "parity.json"]
    assert _entries(tmp_path) == ["out"]
    with atomic_output_dir(target, overwrite=True) as temporary:
        (temporary / "new.txt").write_text("new")
    # Nothing of the previous folder survives next to the new files (no stale parity.json).
    assert _entries(target) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_refuses_a_folder_vlzoo_did_not_write(tmp_path: Path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=f"not written by vlzoo.*{MARKER_FILE}"):
        with atomic_output_dir(target, overwrite=True):
            pass
    assert (target / "notes.txt").read_text() == "precious"


def test_overwrite_refuses_files_added_to_a_vlzoo_folder(tmp_path: Path):
    target = tmp_path / "out"
    _write(target, **{"config.json": "{}"})
    (target / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"files vlzoo did not write \(notes.txt\)"):
        with atomic_output_dir(target, overwrite=True) as temporary:
            (temporary / "config.json").write_text("new")
    assert (target / "notes.txt").read_text() == "precious" and (target / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_forged_marker_cannot_reach_outside_the_folder(tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    target = tmp_path / "out"
    target.mkdir()
    (target / MARKER_FILE).write_text(json.dumps({"writer": "x", "files": ["../outside.txt", str(outside)]}))
    assert remove_recorded_files(target)
    assert outside.read_text() == "keep"


@pytest.mark.parametrize("where", ["inside", "symlinked"])
def test_an_output_folder_holding_an_input_is_refused(tmp_path: Path, where: str):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"weights")
    if where == "inside":
        output = tmp_path  # e.g. --output-dir . next to the checkpoint
    else:
        real = tmp_path / "real"
        real.mkdir()
        checkpoint = real / "model.pth"
        checkpoint.write_bytes(b"weights")
        output = tmp_path / "link"
        os.symlink(real, output)  # the output folder is a symlink to the folder that holds the input
    with pytest.raises(ValueError, match="contains the input file"):
        with atomic_output_dir(output, overwrite=True, inputs=[checkpoint]):
            pass
    assert checkpoint.read_bytes() == b"weights"


def test_an_input_symlink_pointing_into_the_output_folder_is_refused(tmp_path: Path):
    target = tmp_path / "out"
    _write(target, **{"model.pth": "weights"})
    link = tmp_path / "checkpoint.pth"
    os.symlink(target / "model.pth", link)
    with pytest.raises(ValueError, match="contains the input file"):
        check_output_dir(target, overwrite=True, inputs=[link, None])
    assert (target / "model.pth").read_text() == "weights"


def test_empty_existing_folder_is_fine_and_a_file_is_refused(tmp_path: Path):
    target = tmp_path / "empty"
    target.mkdir()
    with atomic_output_dir(target) as temporary:
        (temporary / "a").write_text("a")
    assert _entries(target) == ["a"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        with atomic_output_dir(blocker, overwrite=True):
            pass


def test_parent_folders_are_created(tmp_path: Path):
    target = tmp_path / "a" / "b" / "out"
    with atomic_output_dir(target) as temporary:
        (temporary / "x").write_text("x")
    assert _entries(target) == ["x"]
    assert list_files(target) == ["x"]
