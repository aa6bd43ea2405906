"""Hub remote code: make a saved folder load with `trust_remote_code=True` where vlzoo is not installed.

transformers loads remote code from one flat folder and follows only same-folder relative imports
(`from .module import X`); an absolute `vlzoo` import fails on load (hf_conventions.md §5, §11). So the family's
modules, and every `vlzoo.layers` / `vlzoo.losses` / `vlzoo.processing` module they import, are copied into the
folder with those imports rewritten to same-folder ones. What to copy is found by parsing imports with `ast`,
starting from the classes of the family's registry record: nothing is listed per family.

Names: family modules keep theirs (`modeling_ms_clip.py`); shared modules keep theirs too (`attention.py`) unless
two bundled modules share a name, then the shared ones take their package path (`vlzoo_layers_attention.py`).

Data files that shared modules read next to themselves (the CLIP BPE merges in `vlzoo/processing/vocab/`) are not
copied: transformers copies only Python modules into its module cache, so they could not be found there anyway.
The saved processor files (tokenizer.json, ...) hold what they provide; save the processor with the model.

`auto_map` entries are written into config.json (AutoConfig, AutoModel, the family's other Auto classes and the
Auto classes of its heads) and into the processor, image-processor and tokenizer configs of the folder. `AutoModel`
names the class the folder was saved from (its `config.architectures`), so that without vlzoo it loads the
checkpoint with its head, as transformers' own `register_for_auto_class` does; a folder of another class (a base
model) maps it to the family's base class.

Pipelines: the custom pipeline tasks the family declares (`Family.pipelines`, those registered with
`PIPELINE_REGISTRY.register_pipeline`, such as vlzoo's "image-text-matching") are bundled too, and the config class of
the folder gets them as `custom_pipelines` (task -> {"impl": "module.Class", "pt": ["AutoModel"], "type": ...}), the
attribute transformers' `pipeline(task, model=FOLDER, trust_remote_code=True)` reads. It is a class attribute written
into the bundled configuration module, not a config.json key: where vlzoo is installed, its own config class is used
(the registered model type wins), so `pipeline(task, model=FOLDER)` keeps using vlzoo's registered pipelines and
needs no `trust_remote_code` for them, as before.
"""

import ast
import importlib
import io
import json
import os
import tempfile
import tokenize
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import logging

from vlzoo.registry import Family, families

logger = logging.get_logger(__name__)

__all__ = [
    "LEAF_PACKAGES",
    "RemoteCode",
    "RemoteCodeError",
    "add_remote_code",
    "collect_modules",
    "custom_pipeline_classes",
    "family_of_folder",
    "flat_module_names",
    "save_with_remote_code",
]

# The shared packages whose modules are bundled beside a family's own (they import nothing else of vlzoo).
LEAF_PACKAGES = ("vlzoo.layers", "vlzoo.losses", "vlzoo.processing")
CONFIG_FILE = "config.json"
PROCESSOR_FILE = "processor_config.json"
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
TOKENIZER_FILE = "tokenizer_config.json"
# vlzoo's pipelines: their modules import each other and are bundled with the pipeline classes that need them.
PIPELINE_PACKAGE = "vlzoo.pipelines"
# The Auto classes a bundled custom pipeline loads its model with: the folder's AutoModel, the class it was saved from.
PIPELINE_MODEL_CLASSES = ("AutoModel",)


class RemoteCodeError(ValueError):
    """A folder cannot be given remote code (an import the bundler cannot follow, an unknown class, ...)."""


@dataclass(frozen=True)
class RemoteCode:
    """What `add_remote_code` wrote.

    Attributes:
        folder: the folder.
        family: the registry key of the model's family.
        modules: dotted module name -> the file name written for it (`vlzoo.layers.attention` -> `attention.py`).
        auto_maps: JSON file name -> the `auto_map` written into it.
        pipelines: custom pipeline task -> its `custom_pipelines` entry (`impl`, `pt`, `type`).
    """

    folder: Path
    family: str
    modules: Mapping[str, str]
    auto_maps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pipelines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """The Python files written, sorted."""
        return sorted(self.modules.values())


# ----------------------------------------------------------------------------------------------------------------
# Finding the modules
# ----------------------------------------------------------------------------------------------------------------


def _family_classes(family: Family) -> list[type]:
    """Every class of the record whose code a folder may need, in a stable order, without repeats."""
    candidates = [
        family.config_class,
        *family.sub_config_classes,
        *family.model_classes,
        family.image_processor_class,
        family.tokenizer_class,
        family.processor_class,
    ]
    found: list[type] = []
    for cls in candidates:
        if cls is not None and cls not in found:
            found.append(cls)
    return found


def custom_pipeline_classes(family: Family) -> dict[str, type]:
    """Task -> pipeline class, for the tasks of `family.pipelines` that transformers knows only as custom pipelines.

    Custom means registered with `PIPELINE_REGISTRY.register_pipeline` (the class's `_registered_impl` holds the
    task), as vlzoo's own tasks are; transformers' tasks (also those whose class vlzoo swapped for a checking
    subclass) load without any code of the folder and are left out.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    found: dict[str, type] = {}
    for task in family.pipelines:
        entry = PIPELINE_REGISTRY.supported_tasks.get(task) or {}
        impl = entry.get("impl")
        if isinstance(impl, type) and task in (getattr(impl, "_registered_impl", None) or {}):
            found[task] = impl
    return found


def _is_vlzoo(module_name: str) -> bool:
    return module_name == "vlzoo" or module_name.startswith("vlzoo.")


def _is_leaf(module_name: str) -> bool:
    return any(module_name.startswith(package + ".") for package in LEAF_PACKAGES)


def _module_file(module_name: str) -> Path | None:
    """The source file of a module (not a package), or None when there is none."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or spec.submodule_search_locations is not None:
        return None
    path = Path(spec.origin)
    return path if path.suffix == ".py" and path.is_file() else None


@dataclass(frozen=True)
class _Import:
    """One `from X import ...` statement that names a bundled module: where it is and what it names."""

    line: int
    column: int
    target: str


def _where(path: Path, node: ast.AST) -> str:
    return f"{path}:{node.lineno}"


def _in_packages(module_name: str, packages: Iterable[str]) -> bool:
    return any(module_name == package or module_name.startswith(package + ".") for package in packages)


def _resolve_imports(module_name: str, path: Path, allowed: set[str]) -> list[_Import]:
    """The statements of `path` that import modules to bundle, each resolved to the module it names.

    Bundled: vlzoo's modules and those of the family's own packages (`allowed`). Raises `RemoteCodeError` for a
    form the bundler cannot rewrite into a same-folder import, or a vlzoo module outside `allowed` and
    `LEAF_PACKAGES`.
    """
    package = module_name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[_Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_vlzoo(alias.name) or _in_packages(alias.name, allowed):
                    raise RemoteCodeError(
                        f"{_where(path, node)}: 'import {alias.name}' cannot be bundled; write "
                        f"'from {alias.name} import <name>' with a module of {', '.join(LEAF_PACKAGES)} or of the "
                        "family"
                    )
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not (_is_vlzoo(node.module or "") or _in_packages(node.module or "", allowed)):
                continue
            target = node.module
        elif node.level == 1 and node.module:
            target = f"{package}.{node.module}"
        else:
            dots = "." * node.level
            raise RemoteCodeError(
                f"{_where(path, node)}: 'from {dots}{node.module or ''} import ...' cannot be bundled: transformers "
                "follows only 'from .module import name' (one dot, a module of the same folder); import "
                "vlzoo.<package>.<module> instead"
            )
        if _module_file(target) is None:
            raise RemoteCodeError(
                f"{_where(path, node)}: 'from {'.' * node.level}{node.module} import ...' names {target}, which is "
                "not a module file (a package or a name inside one cannot be bundled); import from the module that "
                "defines the names"
            )
        if not (_is_leaf(target) or target.rpartition(".")[0] in allowed):
            raise RemoteCodeError(
                f"{_where(path, node)}: {module_name} imports {target}; remote code may import only the family's "
                f"own modules and those of {', '.join(LEAF_PACKAGES)} (pipelines also those of {PIPELINE_PACKAGE})"
            )
        found.append(_Import(node.lineno, node.col_offset, target))
    return found


def _family_packages(family: Family, classes: Iterable[type]) -> tuple[list[str], set[str]]:
    """The modules defining `classes` (the roots; transformers' own classes need no code) and the family's packages.

    A root must lie in vlzoo or in the top-level package of the family's config class (a family registered from
    outside vlzoo); its package, unless it is one of `LEAF_PACKAGES`, is one of the family's packages. With a pipeline
    class among `classes`, the modules of `PIPELINE_PACKAGE` (the shared pipeline parts) may be imported as well.
    """
    from transformers import Pipeline

    home = family.config_class.__module__.split(".")[0]
    roots: list[str] = []
    packages: set[str] = set()
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, Pipeline):
            packages.add(PIPELINE_PACKAGE)
        module_name = cls.__module__
        if module_name.startswith("transformers."):
            continue
        if not (_is_vlzoo(module_name) or module_name.split(".")[0] == home):
            raise RemoteCodeError(
                f"family {family.key!r}: class {cls.__qualname__} comes from {module_name}, which is neither the "
                "family's package, vlzoo nor transformers; its code cannot be bundled"
            )
        roots.append(module_name)
    roots = list(dict.fromkeys(roots))
    return roots, packages | {name.rpartition(".")[0] for name in roots if not _is_leaf(name)}


def collect_modules(family: Family, extra_classes: Iterable[type] = ()) -> dict[str, Path]:
    """Dotted module name -> source file, for the modules of the family's classes and everything they import.

    The roots are the modules defining the record's classes (config, sub-configs, models, preprocessing) and
    `extra_classes`; imports of vlzoo modules and of the family's packages are followed transitively.
    """
    roots, allowed = _family_packages(family, [*_family_classes(family), *extra_classes])
    modules: dict[str, Path] = {}
    pending = list(roots)
    while pending:
        module_name = pending.pop(0)
        if module_name in modules:
            continue
        path = _module_file(module_name)
        if path is None:
            raise RemoteCodeError(f"family {family.key!r}: {module_name} has no Python source file to bundle")
        modules[module_name] = path
        pending += [item.target for item in _resolve_imports(module_name, path, allowed)]
    return modules


def flat_module_names(module_names: Iterable[str]) -> dict[str, str]:
    """Dotted module name -> its module name in the flat folder.

    Each keeps its last component unless another bundled module has the same one; then the shared (leaf) modules
    are named after their full path (`vlzoo_layers_attention`), and so are family modules that still clash.
    """
    names = sorted(set(module_names))
    by_base: dict[str, list[str]] = {}
    for name in names:
        by_base.setdefault(name.rpartition(".")[2], []).append(name)
    flat: dict[str, str] = {}
    for base, group in by_base.items():
        family_modules = [name for name in group if not _is_leaf(name)]
        for name in group:
            clash = len(group) > 1 and (_is_leaf(name) or len(family_modules) > 1)
            flat[name] = name.replace(".", "_") if clash else base
    seen: dict[str, str] = {}
    for name, short in flat.items():
        if short in seen:
            raise RemoteCodeError(f"modules {seen[short]} and {name} would both be bundled as {short}.py")
        seen[short] = name
    return flat


# ----------------------------------------------------------------------------------------------------------------
# Rewriting and writing
# ----------------------------------------------------------------------------------------------------------------


def _rewrite(source: str, imports: list[_Import], flat: Mapping[str, str], path: Path) -> str:
    """`source` with the module part of each listed `from X import` statement replaced by `.flat_name`.

    Only the module tokens change: every statement keeps its line, and multi-line imports keep their layout.
    """
    lines = source.splitlines(keepends=True)
    starts = {}
    for item in imports:
        # ast columns count UTF-8 bytes, tokenize columns count characters.
        line = lines[item.line - 1]
        column = len(line.encode("utf-8")[: item.column].decode("utf-8"))
        starts[(item.line, column)] = item.target
    edits: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        target = starts.get(token.start)
        if target is None or token.string != "from":
            continue
        end = index + 1
        while end < len(tokens) and not (tokens[end].type == tokenize.NAME and tokens[end].string == "import"):
            end += 1
        module_tokens = [t for t in tokens[index + 1 : end] if t.type in (tokenize.NAME, tokenize.OP)]
        if end == len(tokens) or not module_tokens:
            raise RemoteCodeError(f"{path}:{token.start[0]}: cannot find the module of this import statement")
        edits.append((module_tokens[0].start, module_tokens[-1].end, "." + flat[target]))
    if len(edits) != len(starts):
        raise RemoteCodeError(f"{path}: found {len(edits)} of the {len(starts)} vlzoo imports to rewrite")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for (start_row, start_col), (end_row, end_col), text in sorted(edits, reverse=True):
        start = offsets[start_row - 1] + start_col
        end = offsets[end_row - 1] + end_col
        source = source[:start] + text + source[end:]
    return source


def _header(module_name: str) -> str:
    from vlzoo import __version__

    return (
        f"# Bundled from {module_name} (vlzoo {__version__}) so that this folder loads without vlzoo; its vlzoo\n"
        "# imports were rewritten to modules of this folder.\n"
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write `path` through a temporary file; a symlink at `path` is replaced, never written through."""
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}; expected an object")
    return data


def _write_json(path: Path, data: dict) -> None:
    _write_atomically(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _check_sources(sources: Mapping[str, str], forbidden: Iterable[str]) -> None:
    """Read the files to write the way transformers will: no import of `forbidden` packages left (vlzoo, the
    family's own), and every relative import one of the files."""
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    present = {Path(name).stem for name in sources}
    with tempfile.TemporaryDirectory(prefix="vlzoo-remote-code-") as temporary:
        for file_name, text in sources.items():
            path = Path(temporary) / file_name
            path.write_text(text, encoding="utf-8")
            left = sorted(set(get_imports(path)) & set(forbidden))
            if left:
                raise RemoteCodeError(
                    f"{file_name} still imports {', '.join(left)} after rewriting; it would not load without it"
                )
            missing = sorted(set(get_relative_imports(path)) - present)
            if missing:
                raise RemoteCodeError(
                    f"transformers reads {file_name} as importing {', '.join(missing)} from the folder, which the "
                    "bundle does not hold (a line starting with 'from .x import' inside a string counts too)"
                )


# ----------------------------------------------------------------------------------------------------------------
# auto_map
# ----------------------------------------------------------------------------------------------------------------


def family_of_folder(folder: str | Path) -> tuple[Family, type[PreTrainedConfig]]:
    """The family whose config (or sub-config) has the `model_type` of `folder`'s config.json, and that class."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}; save the model there first")
    model_type = _read_json(path).get("model_type")
    if not isinstance(model_type, str):
        raise ValueError(f"{path} has no model_type string; it is not a saved transformers model")
    for family in families():
        for config_class in (family.config_class, *family.sub_config_classes):
            if config_class.model_type == model_type:
                return family, config_class
    known = ", ".join(family.model_type for family in families())
    raise RemoteCodeError(
        f"{path} has model_type {model_type!r}, which no vlzoo family has (families: {known}); only vlzoo models "
        "get remote code"
    )


def _reference(cls: type, flat: Mapping[str, str]) -> str:
    return f"{flat[cls.__module__]}.{cls.__name__}"


def _model_auto_map(
    family: Family, config_class: type[PreTrainedConfig], config: dict, flat: Mapping[str, str], classes: dict
) -> dict[str, str]:
    """config.json's auto_map: the config, AutoModel, the family's Auto classes and its heads' Auto classes."""
    from vlzoo.pipelines.task_heads import HEAD_AUTO_CLASSES

    auto_map = {"AutoConfig": _reference(config_class, flat)}
    if config_class is not family.config_class:  # a tower saved on its own: its class is the folder's AutoModel
        architectures = config.get("architectures") or []
        model_class = classes.get(architectures[0]) if architectures else None
        if model_class is not None and getattr(model_class, "config_class", None) is config_class:
            auto_map["AutoModel"] = _reference(model_class, flat)
        return auto_map
    base = family.auto_models.get("AutoModel") or family.heads[family.default_task]
    for auto_name, model_class in family.auto_models.items():
        auto_map[auto_name] = _reference(model_class, flat)
    auto_map["AutoModel"] = _reference(_saved_class(config, config_class, classes) or base, flat)
    for task, model_class in family.heads.items():
        if task in HEAD_AUTO_CLASSES:
            auto_map.setdefault(HEAD_AUTO_CLASSES[task].__name__, _reference(model_class, flat))
    return auto_map


def _saved_class(config: dict, config_class: type[PreTrainedConfig], classes: Mapping[str, type]) -> type | None:
    """The model class config.json's `architectures` names, when it is a bundled model class of `config_class`."""
    architectures = config.get("architectures") or []
    model_class = classes.get(architectures[0]) if isinstance(architectures, list) and architectures else None
    if isinstance(model_class, type) and issubclass(model_class, PreTrainedModel):
        if getattr(model_class, "config_class", None) is config_class:
            return model_class
    return None


def _declared(name: Any, what: str, path: Path, classes: Mapping[str, type], family: Family) -> type | None:
    """The bundled class a preprocessing config names, None for a transformers class; an unknown name raises."""
    if not isinstance(name, str) or not name:
        return None
    for candidate in (name, name.removesuffix("Fast")):
        if candidate in classes and not classes[candidate].__module__.startswith("transformers."):
            return classes[candidate]
    if hasattr(transformers, name):
        return None
    raise RemoteCodeError(
        f"{path} names the {what} {name!r}, which is neither a class of family {family.key!r} nor of transformers; "
        "it could not load without vlzoo"
    )


def _preprocessing_auto_maps(
    folder: Path, family: Family, flat: Mapping[str, str], classes: Mapping[str, type]
) -> dict[str, dict]:
    """Add auto_map entries to the processor, image-processor and tokenizer configs found in `folder`.

    Returns the updated file contents by name (written by the caller).
    """
    updated: dict[str, dict] = {}
    path = folder / PROCESSOR_FILE
    if path.is_file():
        data = _read_json(path)
        changed = False
        processor_class = _declared(data.get("processor_class"), "processor class", path, classes, family)
        if processor_class is not None:
            data["auto_map"] = {**(data.get("auto_map") or {}), "AutoProcessor": _reference(processor_class, flat)}
            changed = True
        nested = data.get("image_processor")
        if isinstance(nested, dict):
            image_class = _declared(nested.get("image_processor_type"), "image processor", path, classes, family)
            if image_class is not None:
                nested["auto_map"] = {
                    **(nested.get("auto_map") or {}),
                    "AutoImageProcessor": _reference(image_class, flat),
                }
                changed = True
        if changed:
            updated[PROCESSOR_FILE] = data
    path = folder / IMAGE_PROCESSOR_FILE
    if path.is_file():
        data = _read_json(path)
        image_class = _declared(data.get("image_processor_type"), "image processor", path, classes, family)
        if image_class is not None:
            data["auto_map"] = {**(data.get("auto_map") or {}), "AutoImageProcessor": _reference(image_class, flat)}
            processor_class = _declared(data.get("processor_class"), "processor class", path, classes, family)
            if processor_class is not None:
                data["auto_map"]["AutoProcessor"] = _reference(processor_class, flat)
            updated[IMAGE_PROCESSOR_FILE] = data
    path = folder / TOKENIZER_FILE
    if path.is_file():
        data = _read_json(path)
        tokenizer_class = _declared(data.get("tokenizer_class"), "tokenizer class", path, classes, family)
        if tokenizer_class is not None:
            previous = data.get("auto_map")
            auto_map = dict(previous) if isinstance(previous, dict) else {}
            # (slow, fast) as transformers writes it; both name the one tokenizer class.
            auto_map["AutoTokenizer"] = [_reference(tokenizer_class, flat), None]
            data["auto_map"] = auto_map
            updated[TOKENIZER_FILE] = data
    return updated


def _check_references(
    sources: Mapping[str, str], auto_maps: Mapping[str, Mapping[str, Any]], pipelines: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every `module.Class` of the auto_maps and of the pipelines' `impl` is a class defined at the top level of one of
    the files to write."""
    refs: list[str] = [entry["impl"] for entry in pipelines.values()]
    for auto_map in auto_maps.values():
        for value in auto_map.values():
            refs += [value] if isinstance(value, str) else [item for item in value if isinstance(item, str)]
    defined: dict[str, set[str]] = {}
    for file_name, text in sources.items():
        tree = ast.parse(text)
        defined[Path(file_name).stem] = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for ref in refs:
        module, _, class_name = ref.rpartition(".")
        if class_name not in defined.get(module, set()):
            raise RemoteCodeError(f"auto_map entry {ref!r} names no class defined in the bundled {module}.py")


# ----------------------------------------------------------------------------------------------------------------
# Custom pipelines
# ----------------------------------------------------------------------------------------------------------------


def _custom_pipelines(classes: Mapping[str, type], flat: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` entries of the bundled pipeline classes, in transformers' format."""
    from transformers.pipelines import PIPELINE_REGISTRY

    entries: dict[str, dict[str, Any]] = {}
    for task, pipeline_class in sorted(classes.items()):
        entry: dict[str, Any] = {"impl": _reference(pipeline_class, flat), "pt": list(PIPELINE_MODEL_CLASSES)}
        kind = PIPELINE_REGISTRY.supported_tasks[task].get("type")
        if isinstance(kind, str):
            entry["type"] = kind
        entries[task] = entry
    return entries


def _declare_pipelines(source: str, config_class: type, pipelines: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """`source` (the bundled module defining `config_class`) with `custom_pipelines` set on that class at its end."""
    defined = {node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    if config_class.__name__ not in defined:
        raise RemoteCodeError(f"{path} does not define {config_class.__name__} at its top level")
    # JSON of strings, lists and objects is a Python literal as well.
    literal = json.dumps({task: dict(entry) for task, entry in pipelines.items()}, indent=4, sort_keys=True)
    return (
        source.rstrip("\n")
        + "\n\n\n"
        + "# The custom pipelines of this folder, added by vlzoo's Hub bundler: transformers' `pipeline(task, model=FOLDER,\n"
        + "# trust_remote_code=True)` reads them from the config. A class attribute rather than a config.json key, so\n"
        + "# that where vlzoo is installed (its own config class wins) its registered pipelines are used as before.\n"
        + f"{config_class.__name__}.custom_pipelines = {literal}\n"
    )


# ----------------------------------------------------------------------------------------------------------------
# The public functions
# ----------------------------------------------------------------------------------------------------------------


def _preprocessing_classes(processor: Any) -> list[type]:
    """The classes of a processor and of its parts (image processor, tokenizer), when given."""
    if processor is None:
        return []
    found = [type(processor)]
    for attribute in ("image_processor", "tokenizer"):
        part = getattr(processor, attribute, None)
        if part is not None:
            found.append(type(part))
    return found


def add_remote_code(folder: str | Path, *, model: PreTrainedModel | None = None, processor: Any = None) -> RemoteCode:
    """Write the family's code and `auto_map` entries into a folder saved with `save_pretrained`.

    Afterwards `AutoConfig`, `AutoModel`, the family's `AutoModelFor...` classes, `AutoProcessor`,
    `AutoImageProcessor`, `AutoTokenizer`, transformers' pipelines and the family's custom pipelines (vlzoo's tasks
    it declares) load the folder with `trust_remote_code=True` where vlzoo is not installed; where it is, vlzoo's
    registered classes and pipelines still win. Existing files of the same
    names are replaced (never written through a symlink); nothing else in the folder changes.

    Args:
        folder: a folder holding config.json (and usually the weights and the processor files).
        model: the model saved there, checked against config.json; optional.
        processor: the processor saved there; its classes are bundled as well when vlzoo defines them.

    Raises:
        FileNotFoundError: no config.json in `folder`.
        RemoteCodeError: the folder is not a vlzoo model's, or its code cannot be bundled (the message names the
            file, line and import).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist or is not a folder")
    family, config_class = family_of_folder(folder)
    if model is not None:
        if not isinstance(model, PreTrainedModel):
            raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
        if type(model.config) is not config_class:
            raise ValueError(
                f"model has a {type(model.config).__name__}, but {folder}/{CONFIG_FILE} is a "
                f"{config_class.__name__}: pass the model that was saved in this folder"
            )
    extra = [cls for cls in _preprocessing_classes(processor) if not cls.__module__.startswith("transformers.")]
    if model is not None:
        extra.append(type(model))
    pipeline_classes = custom_pipeline_classes(family)
    extra += [cls for cls in pipeline_classes.values() if cls not in extra]
    modules = collect_modules(family, extra)
    _, allowed = _family_packages(family, [*_family_classes(family), *extra])
    flat = flat_module_names(modules)
    classes: dict[str, type] = {}
    for cls in [*_family_classes(family), *extra]:
        classes.setdefault(cls.__name__, cls)

    sources: dict[str, str] = {}
    written: dict[str, str] = {}
    for module_name, path in modules.items():
        imports = _resolve_imports(module_name, path, allowed)
        file_name = f"{flat[module_name]}.py"
        sources[file_name] = _header(module_name) + _rewrite(path.read_text(encoding="utf-8"), imports, flat, path)
        written[module_name] = file_name
    pipelines = _custom_pipelines(pipeline_classes, flat)
    if pipelines:
        file_name = written[family.config_class.__module__]
        sources[file_name] = _declare_pipelines(sources[file_name], family.config_class, pipelines, file_name)
    _check_sources(sources, {"vlzoo", family.config_class.__module__.split(".")[0]})

    config = _read_json(folder / CONFIG_FILE)
    auto_map = _model_auto_map(family, config_class, config, flat, classes)
    config["auto_map"] = auto_map
    updates = {CONFIG_FILE: config, **_preprocessing_auto_maps(folder, family, flat, classes)}
    auto_maps: dict[str, Any] = {CONFIG_FILE: auto_map}
    for name, data in updates.items():
        if name == PROCESSOR_FILE and isinstance(data.get("image_processor"), dict):
            nested = data["image_processor"].get("auto_map")
            if nested:
                auto_maps[f"{PROCESSOR_FILE}:image_processor"] = nested
        if name != CONFIG_FILE and "auto_map" in data:
            auto_maps[name] = data["auto_map"]
    _check_references(sources, auto_maps, pipelines)
    # Everything is checked: only writing is left.
    for file_name, text in sources.items():
        _write_atomically(folder / file_name, text)
    for name, data in updates.items():
        _write_json(folder / name, data)
    if family.processor_class is not None and PROCESSOR_FILE not in updates:
        if IMAGE_PROCESSOR_FILE in updates:
            # an image processor saved alone (a conversion without the tokenizer files): loadable as what it is
            logger.warning(
                f"{folder} holds an image processor but no {family.processor_class.__name__} files: "
                "AutoImageProcessor loads it, AutoProcessor does not (the tokenizer files are missing)."
            )
        else:
            logger.warning(
                f"{folder} holds no {family.processor_class.__name__} files; AutoProcessor will not load it. Save the "
                "processor into the folder first (save_with_remote_code does both)."
            )
    logger.info(f"Wrote remote code for {family.name} into {folder}: {', '.join(sorted(written.values()))}")
    return RemoteCode(folder=folder, family=family.key, modules=written, auto_maps=auto_maps, pipelines=pipelines)


def save_with_remote_code(
    model: PreTrainedModel, processor: Any, folder: str | Path, *, overwrite: bool = False
) -> RemoteCode:
    """`save_pretrained` the model and the processor into `folder`, with the code to load both without vlzoo.

    The folder is written all at once: on any failure (a module that cannot be bundled included) nothing is left
    behind, and an existing folder is replaced only with `overwrite` and only if vlzoo wrote it.

    Args:
        model: a vlzoo model.
        processor: its processor (or None: then AutoProcessor will not load the folder).
        folder: the folder to create (absent or empty unless `overwrite`).
        overwrite: replace a folder that vlzoo wrote and that holds nothing else, once the new one is complete.
    """
    from vlzoo.conversion.output_dir import atomic_output_dir

    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    with atomic_output_dir(folder, overwrite=overwrite, writer="vlzoo.hub.save_with_remote_code") as temporary:
        model.save_pretrained(temporary)
        if processor is not None:
            processor.save_pretrained(temporary)
        result = add_remote_code(temporary, model=model, processor=processor)
    return RemoteCode(
        folder=Path(folder),
        family=result.family,
        modules=result.modules,
        auto_maps=result.auto_maps,
        pipelines=result.pipelines,
    )
