"""Pipelines in remote code: which pipelines a folder carries, how they are declared, and the model class they load.

The clean-interpreter run of every family's bundled pipelines is in test_remote_code.py; these checks need no
subprocess. A family from outside vlzoo (a package written to a temporary folder) shows that the bundler takes a
family's custom pipelines from its registry record alone.
"""

import ast
import json
import sys
import uuid
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from vlzoo.hub import RemoteCodeError, add_remote_code, save_with_remote_code
from vlzoo.hub.remote_code import collect_modules, custom_pipeline_classes
from vlzoo.pipelines import PIPELINE_TASKS
from vlzoo.registry import Family, families, register_family, unregister_family

LEAF_PACKAGES = ("vlzoo.layers", "vlzoo.losses", "vlzoo.processing")
THIRD_PARTY = {"torch", "transformers", "numpy", "PIL"}


def _declared_pipelines(folder: Path, config_class: type) -> dict:
    """The `custom_pipelines` literal the bundled configuration module assigns to `config_class`."""
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    source = (folder / f"{auto_map['AutoConfig'].partition('.')[0]}.py").read_text()
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and ast.unparse(node.targets[0]) == f"{config_class.__name__}.custom_pipelines"
        ):
            return ast.literal_eval(node.value)
    return {}


@pytest.mark.parametrize("family", families(), ids=lambda family: family.key)
def test_the_declared_vlzoo_tasks_are_the_bundled_pipelines(family: Family):
    own = {task: PIPELINE_TASKS[task] for task in family.pipelines if task in PIPELINE_TASKS}
    assert custom_pipeline_classes(family) == own  # transformers' tasks load without the folder's code
    modules = collect_modules(family, own.values())
    for pipeline_class in own.values():
        assert pipeline_class.__module__ in modules
    # the registry-dependent parts of vlzoo.pipelines stay out of the folder
    assert not {"vlzoo.pipelines", "vlzoo.pipelines.saved_architecture", "vlzoo.registry"} & set(modules)


def test_pipeline_modules_import_only_what_a_hub_folder_has():
    """The modules of vlzoo's pipeline classes and what they import: stdlib, torch/transformers/PIL/numpy, vlzoo's
    leaf modules and each other, so the bundler can copy them flat beside a family's code."""
    pending = sorted({cls.__module__ for cls in PIPELINE_TASKS.values()})
    seen: set[str] = set()
    while pending:
        module_name = pending.pop()
        if module_name in seen:
            continue
        seen.add(module_name)
        path = Path(sys.modules[module_name].__file__)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                pytest.fail(f"{path.name}:{node.lineno}: a relative import; write 'from vlzoo.pipelines.x import'")
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                root = name.split(".")[0]
                if root == "vlzoo":
                    package = name.rpartition(".")[0]
                    assert package in (*LEAF_PACKAGES, "vlzoo.pipelines") and package != name, (path.name, name)
                    assert name != "vlzoo.pipelines.saved_architecture", (path.name, name)
                    if package == "vlzoo.pipelines":
                        pending.append(name)
                else:
                    assert root in sys.stdlib_module_names or root in THIRD_PARTY, (path.name, name)
    assert "vlzoo.pipelines.task_heads" in seen


def _base(family: Family) -> type:
    return family.auto_models.get("AutoModel") or family.heads[family.default_task]


def _bundle_config(family: Family, folder: Path, architecture: str | None):
    """add_remote_code on a folder holding only the family's default config with `architectures` (no weights)."""
    family.config_class(architectures=[architecture] if architecture else None).save_pretrained(folder)
    return add_remote_code(folder)


def _auto_model(result) -> str:
    return result.auto_maps["config.json"]["AutoModel"]


def _reference(result, cls: type) -> str:
    return f"{result.modules[cls.__module__].removesuffix('.py')}.{cls.__name__}"


@pytest.mark.parametrize("family", families(), ids=lambda family: family.key)
def test_auto_model_names_the_class_the_folder_was_saved_from(family: Family, tmp_path):
    """Without vlzoo, AutoModel (what a bundled pipeline loads) is the saved class, a head included; the folder's
    config class declares every vlzoo task of the family as a custom pipeline, config.json does not."""
    own = [cls for cls in family.model_classes if cls.config_class is family.config_class and cls is not _base(family)]
    saved = own[-1] if own else _base(family)
    result = _bundle_config(family, tmp_path, saved.__name__)
    assert _auto_model(result) == _reference(result, saved)
    assert set(result.pipelines) == {task for task in family.pipelines if task in PIPELINE_TASKS}
    for task, entry in result.pipelines.items():
        impl = _reference(result, PIPELINE_TASKS[task])
        assert entry == {"impl": impl, "pt": ["AutoModel"], "type": "multimodal"}
    assert _declared_pipelines(tmp_path, family.config_class) == result.pipelines
    assert "custom_pipelines" not in json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize("architecture", ["NotAFamilyClass", "CLIPModel", None])
def test_auto_model_is_the_base_class_when_no_family_class_was_saved(architecture, tmp_path):
    family = next(family for family in families() if family.key == "flava")
    result = _bundle_config(family, tmp_path, architecture)
    assert _auto_model(result) == _reference(result, _base(family))


# ---- a family from outside vlzoo with a custom pipeline of its own ----

CONFIGURATION = """
from transformers import PreTrainedConfig


class OutsideConfig(PreTrainedConfig):
    model_type = "{model_type}"

    def __init__(self, hidden_size=4, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
"""
MODELING = """
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_outside import OutsideConfig


class OutsideModel(PreTrainedModel):
    config_class = OutsideConfig

    def __init__(self, config):
        super().__init__(config)
        self.linear = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, inputs_embeds):
        return BaseModelOutput(last_hidden_state=self.linear(inputs_embeds))
"""
PIPELINE = """
from transformers import Pipeline
{extra_import}
from vlzoo.pipelines.task_heads import model_output


class OutsidePipeline(Pipeline):
    _load_tokenizer = False
    _load_image_processor = False
    _load_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, **kwargs):
        return {{}}, {{}}, {{}}

    def preprocess(self, inputs):
        return {{"inputs_embeds": inputs}}

    def _forward(self, model_inputs):
        return model_output(self.model(**model_inputs), "last_hidden_state", "outside", self.model)

    def postprocess(self, outputs):
        return outputs.sum().item()
"""


@pytest.fixture
def outside_family(tmp_path, monkeypatch):
    """`(extra_import="") -> Family`: a family package with its own pipeline task, registered like vlzoo's."""
    made: list[tuple[str, str, str]] = []

    def make(extra_import: str = "") -> Family:
        token = uuid.uuid4().hex[:8]
        package, task = f"hub_outside_{token}", f"outside-task-{token}"
        root = tmp_path / "packages" / package
        root.mkdir(parents=True)
        (root / "__init__.py").write_text("")
        (root / "configuration_outside.py").write_text(CONFIGURATION.format(model_type=f"vlzoo_outside_{token}"))
        (root / "modeling_outside.py").write_text(MODELING)
        (root / "pipeline_outside.py").write_text(PIPELINE.format(extra_import=extra_import))
        monkeypatch.syspath_prepend(str(root.parent))
        modeling = __import__(f"{package}.modeling_outside", fromlist=["OutsideModel"])
        pipeline_module = __import__(f"{package}.pipeline_outside", fromlist=["OutsidePipeline"])
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=pipeline_module.OutsidePipeline, pt_model=AutoModel, type="multimodal"
        )
        family = Family(
            key=f"hub_outside_{token}",
            name="Outside",
            config_class=modeling.OutsideConfig,
            heads={"contrastive": modeling.OutsideModel},
            auto_models={"AutoModel": modeling.OutsideModel},
            pipelines=(task,),
        )
        made.append((family.key, task, package))
        register_family(family)
        return family

    yield make
    for key, task, package in made:
        unregister_family(key)
        PIPELINE_REGISTRY.supported_tasks.pop(task, None)
        for name in [name for name in sys.modules if name.split(".")[0] == package]:
            del sys.modules[name]


def test_a_family_from_outside_vlzoo_bundles_its_own_pipeline(outside_family, tmp_path):
    family = outside_family()
    task = family.pipelines[0]
    model = family.heads["contrastive"](family.config_class()).eval()
    result = save_with_remote_code(model, None, tmp_path / "out")
    assert result.pipelines == {
        task: {"impl": "pipeline_outside.OutsidePipeline", "pt": ["AutoModel"], "type": "multimodal"}
    }
    assert {"pipeline_outside.py", "task_heads.py"} <= set(result.files)
    assert _declared_pipelines(tmp_path / "out", family.config_class) == result.pipelines
    # installed, the family's own config class is used: it declares no custom pipeline, so the registered one runs
    config = AutoConfig.from_pretrained(tmp_path / "out")
    assert type(config) is family.config_class and not hasattr(config, "custom_pipelines")
    with torch.no_grad():
        expected = model.linear(torch.ones(1, 2, 4)).sum().item()
    from transformers import pipeline

    pipe = pipeline(task, model=str(tmp_path / "out"))
    assert type(pipe).__module__.endswith("pipeline_outside") and not type(pipe).__module__.startswith("transformers")
    assert pipe(torch.ones(1, 2, 4)) == pytest.approx(expected)


def test_a_pipeline_that_imports_the_registry_is_refused(outside_family, tmp_path):
    family = outside_family("from vlzoo.registry import families")
    model = family.heads["contrastive"](family.config_class()).eval()
    with pytest.raises(RemoteCodeError, match="pipeline_outside.py:3: .* imports vlzoo.registry"):
        save_with_remote_code(model, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()
