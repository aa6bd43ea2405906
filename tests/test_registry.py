"""The registry: what a `Family` record holds and checks, and what the package derives from it (the top-level names,
the command-line choices, the objective and evaluation of each task, the converter, the demo)."""

import subprocess
import sys

import pytest
import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY

import vlzoo
from vlzoo.cli import main
from vlzoo.registry import (
    CAPABILITIES,
    DEFAULT_EVALUATIONS,
    TOP_LEVEL_NAMES,
    DemoSpec,
    Family,
    TaskEvaluation,
    families,
    family_for_model_type,
    get_family,
    register_family,
    unregister_family,
)


class _Config(PreTrainedConfig):
    model_type = "vlzoo_registry_test"


class _Model(PreTrainedModel):
    config_class = _Config

    def __init__(self, config):
        super().__init__(config)
        self.linear = torch.nn.Linear(2, 2)
        self.post_init()


def _family(**overrides) -> Family:
    values = {"key": "registry_test", "name": "Registry test", "config_class": _Config, "heads": {"itm": _Model}}
    return Family(**{**values, **overrides})


@pytest.fixture
def registered():
    """Families registered by a test are removed afterwards."""
    keys: list[str] = []

    def register(family: Family) -> Family:
        register_family(family)
        keys.append(family.key)
        return family

    yield register
    for key in keys:
        unregister_family(key)


# ----- MS-CLIP's record and what is derived from it -----


def test_ms_clip_record():
    from vlzoo.models.ms_clip import MsClipModel
    from vlzoo.models.ms_clip.configuration_ms_clip import PRESETS
    from vlzoo.models.ms_clip.conversion_ms_clip import MsClipConverter

    family = get_family("ms_clip")
    assert family.heads == {"contrastive": MsClipModel} and family.default_task == "contrastive"
    assert family.capabilities == frozenset({"dual_encoder"})
    assert family_for_model_type(family.model_type) is family and family_for_model_type("bert") is None
    converter = family.build_converter()
    assert isinstance(converter, MsClipConverter) and converter.variants == tuple(PRESETS)
    assert family.default_preset in PRESETS
    assert family.evaluation("contrastive") is DEFAULT_EVALUATIONS["contrastive"]


def test_every_family_satisfies_the_record_rules():
    for family in families():
        assert family.capabilities <= set(CAPABILITIES), family.key
        assert set(family.heads.values()) <= set(family.model_classes), family.key
        for task in family.heads:
            family.objective_factory(task)  # every head can be trained
        if family.demo is not None:
            assert set(family.demo.tasks) <= set(family.heads)


def test_top_level_names_come_from_the_registry():
    expected = [*TOP_LEVEL_NAMES, *(name for family in families() for name in family.exports)]
    assert vlzoo.__all__ == expected
    for family in families():
        package = __import__(family.export_package, fromlist=["_"])
        for name in family.exports:
            assert getattr(vlzoo, name) is getattr(package, name)
    from vlzoo import MsClipModel  # the import users write

    assert MsClipModel.__name__ == "MsClipModel"
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchModel'"):
        _ = vlzoo.NoSuchModel


def test_import_vlzoo_stays_light():
    code = (
        "import sys, vlzoo; "
        "heavy = [m for m in ('vlzoo.training', 'vlzoo.demo', 'vlzoo.conversion', 'vlzoo.data', 'datasets') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


def test_command_line_choices_come_from_the_registry(capsys):
    converters = [f.key for f in families() if f.converter is not None]
    demos = [f for f in families() if f.demo is not None]
    assert main(["convert", "--help"]) == 0
    named = ", ".join(f"{f.key} ({f.name})" for f in families() if f.converter is not None)
    assert f"one of: {named}" in " ".join(capsys.readouterr().out.split())
    assert main(["demo", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for family in demos:
        names = " | ".join((family.key, *family.demo.aliases))
        assert f"{names} ({family.name}): {family.demo.description}" in help_text
    assert main(["convert", "nope"]) == 2
    assert f"families with a converter: {', '.join(converters)}" in capsys.readouterr().err


# ----- the record's checks -----


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key": "Bad-Key"}, "Family.key must be lowercase"),
        ({"heads": {}}, "heads must map at least one task"),
        ({"heads": {"itm": torch.nn.Linear}}, r"heads\['itm'\] must be a PreTrainedModel subclass"),
        ({"capabilities": frozenset({"telepathy"})}, "capabilities must be a frozenset of"),
        ({"objectives": {"vqa": object}}, r"objectives for tasks \['vqa'\] without a head"),
        ({"exports": ("not a name",)}, "exports must be Python names"),
    ],
)
def test_records_are_checked_at_construction(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _family(**overrides)


def test_a_demo_needs_a_head_for_its_task():
    demo = DemoSpec(
        description="d", task="contrastive", models={"a": _Config}, processor=object, evaluate=print, summary=""
    )
    with pytest.raises(ValueError, match="its demo trains task 'contrastive', which has no head"):
        _family(demo=demo)
    with pytest.raises(ValueError, match="DemoSpec.max_steps must be an int >= 1"):
        DemoSpec(
            description="d", task="t", models={"a": _Config}, processor=object, evaluate=print, summary="", max_steps=0
        )


def test_registration_refuses_conflicts(registered):
    registered(_family())
    register_family(get_family("registry_test"))  # the same record again: nothing changes
    with pytest.raises(ValueError, match="key 'registry_test' is already registered"):
        register_family(_family())
    with pytest.raises(ValueError, match="model type 'vlzoo_registry_test' is already family 'registry_test'"):
        register_family(_family(key="other"))
    with pytest.raises(ValueError, match="exports \\['MsClipModel'\\] are already exported by family 'ms_clip'"):
        register_family(_family(key="other", config_class=type("C", (_Config,), {"model_type": "x"}),
                                exports=("MsClipModel",), package="vlzoo.models.ms_clip"))  # fmt: skip
    with pytest.raises(ValueError, match="are names of vlzoo itself"):
        register_family(_family(key="other2", config_class=type("D", (_Config,), {"model_type": "y"}),
                                exports=("families",), package="vlzoo"))  # fmt: skip
    with pytest.raises(ValueError, match="exports \\['Missing'\\] are not attributes of vlzoo.registry"):
        register_family(_family(key="other3", config_class=type("E", (_Config,), {"model_type": "z"}),
                                exports=("Missing",), package="vlzoo.registry"))  # fmt: skip
    assert [f.key for f in families()].count("registry_test") == 1
    assert not {"other", "other2", "other3"} & {f.key for f in families()}
    with pytest.raises(ValueError, match="'ms_clip' is a built-in family"):
        unregister_family("ms_clip")


def test_declared_pipelines_must_exist_with_the_head_they_need(registered, monkeypatch):
    with pytest.raises(ValueError, match="pipeline task 'no-such-task', which transformers.pipeline does not know"):
        register_family(_family(pipelines=("no-such-task",)))
    assert "registry_test" not in {f.key for f in families()}  # nothing is left behind

    class NeedsGrounding:
        head = "grounding"

    monkeypatch.setitem(PIPELINE_REGISTRY.supported_tasks, "vlzoo-test-grounding", {"impl": NeedsGrounding, "pt": ()})
    with pytest.raises(ValueError, match="needs a 'grounding' head; its heads: itm"):
        register_family(_family(pipelines=("vlzoo-test-grounding",)))
    registered(_family(pipelines=("image-text-retrieval",)))


# ----- objectives and evaluations by task -----


def test_objectives_default_to_the_shared_table_and_a_family_may_override():
    from vlzoo.training.objectives import OBJECTIVES

    family = _family(heads={"itm": _Model, "captioning": _Model})
    assert family.objective_factory("itm") is OBJECTIVES["itm"]
    with pytest.raises(ValueError, match="'captioning' head but no objective trains it"):
        family.objective_factory("captioning")
    with pytest.raises(ValueError, match="has no head for task 'vqa'; its tasks: itm, captioning"):
        family.objective_factory("vqa")

    class Captioning:
        def __init__(self, processor, *, max_length=None):
            self.processor, self.max_length = processor, max_length

    family = _family(heads={"itm": _Model, "captioning": _Model}, objectives={"captioning": Captioning})
    objective = family.objective("captioning", "the processor", max_length=7)
    assert isinstance(objective, Captioning) and (objective.processor, objective.max_length) == ("the processor", 7)


def test_evaluations_by_task(registered, tmp_path, capsys):
    calls = []

    def matching(model_dir, *, num_test, image_size):
        calls.append((model_dir, num_test, image_size))
        return num_test / 100

    family = registered(_family(evaluations={"itm": TaskEvaluation("matching accuracy", "shapes/test", matching)}))
    assert family.evaluation("itm").metric == "matching accuracy"
    _Model(_Config()).save_pretrained(tmp_path / "model")
    assert main(["eval", str(tmp_path / "model"), "--num-test", "8", "--image-size", "40"]) == 0
    assert capsys.readouterr().out.strip() == "matching accuracy on shapes/test (8 images): 0.0800"
    assert calls == [(tmp_path / "model", 8, 40)]
    assert main(["eval", str(tmp_path / "model"), "--task", "contrastive"]) == 1
    assert "family 'registry_test' has no head for task 'contrastive'" in capsys.readouterr().err


def test_eval_of_a_folder_with_a_broken_config_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{not json")
    assert main(["eval", str(tmp_path)]) == 1
    assert "config.json is not a valid config.json" in capsys.readouterr().err


def test_heads_are_registered_with_the_pipelines_auto_classes_until_unregistered(tmp_path):
    from vlzoo.pipelines import AutoModelForImageTextMatching

    _Model(_Config()).save_pretrained(tmp_path)
    register_family(_family())
    try:
        assert type(AutoModelForImageTextMatching.from_pretrained(tmp_path)) is _Model
    finally:
        unregister_family("registry_test")
    with pytest.raises(ValueError, match="vlzoo_registry_test"):
        AutoModelForImageTextMatching.from_pretrained(tmp_path)


def test_importing_vlzoo_prints_nothing():
    """Registering every family is silent: no warning from transformers about models vlzoo does not use."""
    run = subprocess.run(
        [sys.executable, "-c", "import vlzoo; vlzoo.registry.families()"], capture_output=True, text=True, check=True
    )
    assert run.stdout == "" and run.stderr == "", run.stderr
