"""The bundler on a family written here: name clashes, rewritten imports, refused import forms, atomic saving.

The family lives in a package created in a temporary folder and is registered with `register_family` (as a family
from outside vlzoo would be); its model imports `vlzoo.layers.mlp` while the family has its own `mlp.py`.
"""

import ast
import json
import sys
import uuid

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlzoo.hub import RemoteCodeError, add_remote_code, save_with_remote_code
from vlzoo.hub.remote_code import flat_module_names
from vlzoo.registry import Family, register_family, unregister_family

from .remote import ok, run_remote
from .remote_loader import flatten_outputs

CONFIGURATION = """
from transformers import PreTrainedConfig


class ClashConfig(PreTrainedConfig):
    model_type = "{model_type}"

    def __init__(self, hidden_size=8, intermediate_size=12, **kwargs):
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        super().__init__(**kwargs)
"""
OWN_MLP = """
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 2.0, size))

    def forward(self, hidden_states):
        return hidden_states * self.weight
"""
MODELING = '''
"""A tiny model of the clash family.{docstring_extra}"""

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from vlzoo.layers.mlp import (
    FeedForward,
)
{extra_import}
from .configuration_clash import ClashConfig
from .mlp import Scale


class ClashModel(PreTrainedModel):
    config_class = ClashConfig
    base_model_prefix = "clash"

    def __init__(self, config):
        super().__init__(config)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size)
        self.scale = Scale(config.hidden_size)
        self.post_init()

    def forward(self, inputs_embeds, attention_mask=None):
        from vlzoo.layers.masks import key_padding_attention_mask  # a function-level import is bundled too

        hidden = self.scale(self.ffn(inputs_embeds))
        if attention_mask is not None:
            keep = key_padding_attention_mask(attention_mask, dtype=hidden.dtype)[:, 0, 0, :] == 0
            hidden = hidden * keep[..., None]
        return BaseModelOutput(last_hidden_state=hidden)
'''


@pytest.fixture
def make_family(tmp_path, monkeypatch):
    """`(extra_import="", docstring_extra="") -> Family`: writes the clash family's package and registers it."""
    registered: list[str] = []
    packages: list[str] = []

    def make(extra_import: str = "", docstring_extra: str = "") -> Family:
        token = uuid.uuid4().hex[:8]
        package = f"hub_clash_{token}"
        root = tmp_path / "packages" / package
        root.mkdir(parents=True)
        (root / "__init__.py").write_text("")
        (root / "configuration_clash.py").write_text(CONFIGURATION.format(model_type=f"vlzoo_hub_clash_{token}"))
        (root / "mlp.py").write_text(OWN_MLP)
        (root / "modeling_clash.py").write_text(
            MODELING.format(extra_import=extra_import, docstring_extra=docstring_extra)
        )
        monkeypatch.syspath_prepend(str(root.parent))
        packages.append(package)
        modeling = __import__(f"{package}.modeling_clash", fromlist=["ClashModel"])
        family = Family(
            key=f"hub_clash_{token}",
            name="Clash",
            config_class=modeling.ClashConfig,
            heads={"contrastive": modeling.ClashModel},
            auto_models={"AutoModel": modeling.ClashModel},
        )
        register_family(family)
        registered.append(family.key)
        return family

    yield make
    for key in registered:
        unregister_family(key)
    for name in [name for name in sys.modules if name.split(".")[0] in packages]:
        del sys.modules[name]


def _model(family: Family):
    torch.manual_seed(0)
    return family.heads["contrastive"](family.config_class()).eval()


def test_clashing_names_are_renamed_and_the_folder_loads_without_vlzoo(make_family, tmp_path):
    family = make_family()
    package = family.config_class.__module__.rpartition(".")[0]
    model = _model(family)
    folder = tmp_path / "clash"
    bundled = save_with_remote_code(model, None, folder)

    # the family keeps its own names; the shared module of the same name takes its package path
    assert bundled.modules == {
        f"{package}.configuration_clash": "configuration_clash.py",
        f"{package}.modeling_clash": "modeling_clash.py",
        f"{package}.mlp": "mlp.py",
        "vlzoo.layers.mlp": "vlzoo_layers_mlp.py",
        "vlzoo.layers.masks": "masks.py",
        # what the shared MLP imports in turn (its CPU inference fast path)
        "vlzoo.layers.fast_path": "fast_path.py",
        "vlzoo.layers.attention": "attention.py",
        "vlzoo.layers.multiway": "multiway.py",
        "vlzoo.layers.tracing": "tracing.py",
    }
    text = (folder / "modeling_clash.py").read_text()
    original = (tmp_path / "packages" / package / "modeling_clash.py").read_text()
    header = len(text.splitlines()) - len(original.splitlines())
    assert 0 < header <= 3
    for line, rewritten in (
        ("from vlzoo.layers.mlp import (", "from .vlzoo_layers_mlp import ("),
        ("from .mlp import Scale", "from .mlp import Scale"),
        ("        from vlzoo.layers.masks import key_padding_attention_mask", "        from .masks import"),
    ):
        index = next(i for i, source in enumerate(original.splitlines()) if source.startswith(line))
        assert text.splitlines()[index + header].startswith(rewritten), line  # same line, module rewritten
    for name in bundled.files:
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] not in ("vlzoo", package), (name, node.module)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_clash.ClashConfig",
        "AutoModel": "modeling_clash.ClashModel",
    }

    inputs = {"inputs_embeds": torch.randn(2, 3, 8), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    save_file(inputs, tmp_path / "inputs.safetensors")
    check = {"kind": "model", "auto": "AutoModel", "folder": str(folder)}
    check.update(inputs=str(tmp_path / "inputs.safetensors"), outputs=str(tmp_path / "outputs.safetensors"))
    # neither vlzoo nor the family's package can be imported there
    result = ok(run_remote([check], tmp_path)["results"][0], "AutoModel")
    assert result["class"] == "ClashModel"
    with torch.no_grad():
        expected = flatten_outputs(model(**inputs))
    remote = load_file(tmp_path / "outputs.safetensors")
    assert remote.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(remote[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("extra_import", "docstring_extra", "message"),
    [
        ("import vlzoo.layers.norms", "", "'import vlzoo.layers.norms' cannot be bundled"),
        ("from vlzoo.layers import FeedForward as _FeedForward", "", "is not a module file"),
        ("from vlzoo.conversion.errors import ConversionError", "", "may import only the family's own modules"),
        ("from . import mlp", "", "transformers follows only 'from .module import name'"),
        ("", "\n\nfrom .helpers import x  (an example in the docstring)\n", "importing helpers"),
    ],
    ids=["import-statement", "package", "outside-leaf-packages", "from-dot-import", "docstring-line"],
)
def test_unbundleable_imports_are_refused_and_nothing_is_written(
    make_family, tmp_path, extra_import, docstring_extra, message
):
    family = make_family(extra_import, docstring_extra)
    with pytest.raises(RemoteCodeError, match=message) as raised:
        save_with_remote_code(_model(family), None, tmp_path / "out")
    if extra_import:
        assert "modeling_clash.py:" in str(raised.value)  # file and line
    assert not (tmp_path / "out").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["packages"]  # no temporary folder left either


def test_a_failed_bundling_leaves_an_existing_folder_unchanged(make_family, tmp_path):
    family = make_family("import vlzoo.layers.norms")
    folder = tmp_path / "saved"
    _model(family).save_pretrained(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(RemoteCodeError):
        add_remote_code(folder)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_flat_names_prefix_shared_modules_only_on_a_clash():
    assert flat_module_names(["vlzoo.layers.attention", "vlzoo.models.x.attention", "vlzoo.losses.mlm"]) == {
        "vlzoo.layers.attention": "vlzoo_layers_attention",
        "vlzoo.models.x.attention": "attention",
        "vlzoo.losses.mlm": "mlm",
    }
    assert flat_module_names(["vlzoo.layers.heads", "vlzoo.losses.heads"]) == {
        "vlzoo.layers.heads": "vlzoo_layers_heads",
        "vlzoo.losses.heads": "vlzoo_losses_heads",
    }


def test_folders_of_other_models_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(RemoteCodeError, match="model_type 'clip', which no vlzoo family has"):
        add_remote_code(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        add_remote_code(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        add_remote_code(tmp_path / "empty")


def test_the_model_must_match_the_folder(make_family, tmp_path):
    family, other = make_family(), make_family()
    _model(family).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="pass the model that was saved in this folder"):
        add_remote_code(tmp_path, model=_model(other))


def test_a_symlinked_config_is_replaced_not_written_through(make_family, tmp_path):
    family = make_family()
    saved = tmp_path / "saved"
    _model(family).save_pretrained(saved)
    linked = tmp_path / "linked"
    linked.mkdir()
    for path in saved.iterdir():
        (linked / path.name).symlink_to(path)
    before = (saved / "config.json").read_text()
    add_remote_code(linked)
    assert (saved / "config.json").read_text() == before
    assert not (linked / "config.json").is_symlink()
    assert "auto_map" in json.loads((linked / "config.json").read_text())


def test_loading_the_folder_keeps_vlzoo_classes_where_vlzoo_is_installed(make_family, tmp_path):
    from transformers import AutoModel

    family = make_family()
    save_with_remote_code(_model(family), None, tmp_path / "out")
    assert type(AutoModel.from_pretrained(tmp_path / "out")) is family.heads["contrastive"]
