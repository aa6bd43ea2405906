"""Family files stay bundleable as Hub remote code: they import only transformers, torch and vlzoo's leaf modules.

A published folder is flat, so the bundler copies a family's files plus the `vlzoo.layers` / `vlzoo.losses` /
`vlzoo.processing` modules they import and rewrites those imports to same-folder ones (hf_conventions.md §5, §11).
"""

import ast
from pathlib import Path

import pytest

from vlzoo.registry import families

SRC = Path(__file__).resolve().parents[2] / "src" / "vlzoo"
LEAF_PACKAGES = ("layers", "losses", "processing")
BUNDLED_PREFIXES = ("configuration_", "modeling_", "processing_", "image_processing_", "tokenization_")
THIRD_PARTY = {
    "torch",
    "transformers",
    "huggingface_hub",
    "tokenizers",
    "numpy",
    "PIL",
    "safetensors",
    "ftfy",
    "regex",
}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, relative level) for every import statement of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def _bundled_files() -> list[Path]:
    files = []
    for family in families():
        folder = SRC / "models" / family.key
        files += [p for p in sorted(folder.glob("*.py")) if p.name.startswith(BUNDLED_PREFIXES)]
    for package in LEAF_PACKAGES:
        files += [p for p in sorted((SRC / package).glob("*.py")) if p.name != "__init__.py"]
    return files


@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_are_bundleable(path: Path):
    for module, level in _imports(path):
        if level > 1:
            pytest.fail(
                f"{path.name}: 'from {'.' * level}{module}' cannot be followed by the bundler; import vlzoo.X.Y"
            )
        if level == 1:
            continue  # a sibling in the same folder
        root = module.split(".")[0]
        if root == "vlzoo":
            parts = module.split(".")
            assert len(parts) == 3 and parts[1] in LEAF_PACKAGES, (
                f"{path.name} imports {module}: family files may use vlzoo.layers/losses/processing modules only"
            )
        else:
            stdlib = root in __import__("sys").stdlib_module_names
            assert stdlib or root in THIRD_PARTY, f"{path.name} imports {module}, which a Hub folder cannot rely on"


def test_bundled_basenames_are_unique():
    names = [p.name for p in _bundled_files()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
