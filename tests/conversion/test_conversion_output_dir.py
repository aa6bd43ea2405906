"""The output folder appears complete or not at all."""

from pathlib import Path

import pytest

from vlzoo.conversion import atomic_output_dir


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_moves_the_folder_into_place(tmp_path: Path):
    target = tmp_path / "out"
    with atomic_output_dir(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".out.")
        assert not target.exists()
        (temporary / "model.safetensors").write_text("weights")
    assert _entries(target) == ["model.safetensors"]
    assert _entries(tmp_path) == ["out"]


def test_failure_leaves_nothing_behind(tmp_path: Path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output_dir(target) as temporary:
            (temporary / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert _entries(tmp_path) == []


def test_existing_folder_needs_overwrite_and_survives_a_failure(tmp_path: Path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="not empty.*overwrite"):
        with atomic_output_dir(target):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(target, overwrite=True) as temporary:
            (temporary / "new.txt").write_text("new")
            raise KeyboardInterrupt
    assert _entries(target) == ["old.txt"]
    assert _entries(tmp_path) == ["out"]
    with atomic_output_dir(target, overwrite=True) as temporary:
        (temporary / "new.txt").write_text("new")
    assert _entries(target) == ["new.txt"]
    assert _entries(tmp_path) == ["out"]


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
