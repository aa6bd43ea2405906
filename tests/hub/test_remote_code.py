"""Remote code: every registered family's saved folder loads in an interpreter where `import vlzoo` raises.

For each family (parametrized over the registry, with the first of its tester's tiny configurations and its tiny
processor) the folders are written by `save_with_remote_code`; one fresh interpreter (PYTHONPATH unset, cwd outside the repository, its
own HF_MODULES_CACHE, stdin from /dev/null, vlzoo blocked by a `sys.meta_path` finder) loads every family's folders
with `trust_remote_code=True` through AutoConfig, AutoModel, the AutoModelFor... classes of the folder's auto_map,
AutoProcessor, AutoImageProcessor, AutoTokenizer, the family's transformers pipelines and vlzoo's own pipeline tasks
it declares (bundled as the folder's custom pipelines); the results must equal those of the installed vlzoo, where the
same folder still runs vlzoo's registered pipelines without `trust_remote_code`. Loading without `trust_remote_code`
must raise.
"""

import json
import pickle
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.common import harness
from vlzoo.hub import save_with_remote_code
from vlzoo.registry import Family, families

from .remote import ok as _ok
from .remote import run_remote
from .remote_loader import flatten_outputs, to_plain

# How each pipeline task is called ("<image>" and "<other image>" are replaced by image files): transformers' tasks and
# vlzoo's own (keys of vlzoo.pipelines.PIPELINE_TASKS), which run from the folder's bundled code without vlzoo.
PIPELINE_CALLS = {
    "zero-shot-image-classification": (["<image>"], {"candidate_labels": ["red", "blue", "a dog"], "hypothesis_template": "{}"}),
    "image-feature-extraction": (["<image>"], {}),
    "image-classification": (["<image>"], {}),
    "image-text-retrieval": ([], {"images": ["<image>", "<other image>"], "texts": "a red square", "top_k": 2}),
    "image-text-matching": (["<image>", ["a red square", "a blue dog"]], {}),
    "vlzoo-visual-question-answering": (["<image>", "what colour is the square?"], {"top_k": 3}),
    "visual-grounding": ([["<image>", "<other image>"], "the red square"], {}),
    "vlzoo-image-captioning": (["<image>"], {"max_new_tokens": 4}),
}  # fmt: skip


def _with_images(value, images: dict[str, str]):
    """`value` (a call's arguments) with the image placeholders replaced by image files."""
    if isinstance(value, str):
        return images.get(value, value)
    if isinstance(value, (list, tuple)):
        return type(value)(_with_images(item, images) for item in value)
    if isinstance(value, dict):
        return {key: _with_images(item, images) for key, item in value.items()}
    return value


def _pipeline_model_class(family: Family, task: str) -> type:
    """The class whose folder a task's pipeline runs on: the head its pipeline needs (its class attribute `head`),
    else (retrieval) the matching head or the first dual encoder of the family."""
    from transformers.pipelines import PIPELINE_REGISTRY

    head = getattr(PIPELINE_REGISTRY.supported_tasks[task]["impl"], "head", None)
    if isinstance(head, str) and head:
        return family.heads[head]
    if "itm" in family.heads:
        return family.heads["itm"]
    return next(
        cls for cls in family.model_classes if hasattr(cls, "get_image_features") and hasattr(cls, "get_text_features")
    )


def _auto_class(name: str):
    """A transformers Auto class, or None for vlzoo's own head Auto classes (unusable without vlzoo)."""
    return getattr(transformers, name, None)


def _fit_to_tokenizer(config, tokenizer):
    """The config with every vocabulary grown to the tokenizer's and its special ids set to the tokenizer's, so
    that texts the pipelines tokenize fit the model (the testers' tiny configs use tiny vocabularies)."""
    if tokenizer is None:
        return config
    data = config.to_dict()

    def fit(values: dict) -> None:
        if isinstance(values.get("vocab_size"), int) and values["vocab_size"] < len(tokenizer):
            values["vocab_size"] = len(tokenizer)
            for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if values.get(name) is not None and getattr(tokenizer, name, None) is not None:
                    values[name] = getattr(tokenizer, name)
        for value in values.values():
            if isinstance(value, dict):
                fit(value)

    fit(data)
    return type(config).from_dict(data)


def _rebuild(reference, tensors: dict, prefix: str = ""):
    """`reference` (an installed model's output) with every tensor replaced by the remote one of the same name."""
    if isinstance(reference, torch.Tensor):
        return tensors[prefix.rstrip(".")]
    if isinstance(reference, (tuple, list)):
        return type(reference)(_rebuild(v, tensors, f"{prefix}{i}.") for i, v in enumerate(reference))
    if hasattr(reference, "items"):
        return type(reference)(**{k: _rebuild(v, tensors, f"{prefix}{k}.") for k, v in reference.items()})
    return reference


def _assert_close_json(actual, expected, where: str = "result") -> None:
    if isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6), where
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_close_json(a, e, f"{where}[{index}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_close_json(actual[key], expected[key], f"{where}.{key}")
    else:
        assert actual == expected, where


def _model_classes_by_auto_name(auto_map: dict, family: Family) -> dict[str, type]:
    """Auto class name -> the family's model class its auto_map entry names (AutoConfig left out)."""
    by_name = {cls.__name__: cls for cls in family.model_classes}
    return {name: by_name[ref.rpartition(".")[2]] for name, ref in auto_map.items() if name != "AutoConfig"}


def _save(model_class: type, config, processor, folder: Path) -> Path:
    torch.manual_seed(0)
    save_with_remote_code(model_class(config).eval(), processor, folder)
    return folder


def _custom_pipelines(folder: Path) -> dict:
    """The `custom_pipelines` the folder's config class carries, read from its bundled configuration module."""
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    module = (folder / f"{auto_map['AutoConfig'].partition('.')[0]}.py").read_text()
    marker = f"{auto_map['AutoConfig'].rpartition('.')[2]}.custom_pipelines = "
    return json.loads(module.partition(marker)[2]) if marker in module else {}


@dataclass
class Plan:
    """One family's folders and the checks the clean interpreter runs on them."""

    family: Family
    tester: Any
    processor: Any
    auto_map: dict
    pairs: dict[str, type]
    checks: list[dict] = field(default_factory=list)
    models: list[tuple[dict, type, Path, dict]] = field(default_factory=list)  # check, class, folder, inputs
    preprocessing: list[tuple[dict, type]] = field(default_factory=list)  # check, expected class
    pipelines: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)


def _plan(family: Family, root: Path) -> Plan:
    """Write the family's folders with `save_with_remote_code` and list what to load from them."""
    from transformers.pipelines import PIPELINE_REGISTRY

    from vlzoo.pipelines import PIPELINE_TASKS

    tester = harness.tester_for(family)
    processor = tester.tiny_processor()
    base = family.auto_models.get("AutoModel") or family.heads[family.default_task]
    # The first tiny configuration: one per family keeps the clean interpreter's work small.
    name, build = next(iter(tester.configs.items()))
    config = build()
    base_folder = _save(base, config, processor, root / f"{name}-{base.__name__}")
    auto_map = json.loads((base_folder / "config.json").read_text())["auto_map"]
    plan = Plan(family, tester, processor, auto_map, _model_classes_by_auto_name(auto_map, family))
    plan.checks = [
        {"kind": "untrusted", "auto": "AutoConfig", "folder": str(base_folder)},
        {"kind": "untrusted", "auto": "AutoModel", "folder": str(base_folder)},
        {"kind": "config", "auto": "AutoConfig", "folder": str(base_folder)},
    ]
    for model_class in dict.fromkeys(plan.pairs.values()):
        autos = [auto for auto, cls in plan.pairs.items() if cls is model_class and _auto_class(auto) is not None]
        if not autos:
            continue  # only vlzoo's own head Auto classes load it
        folder = root / f"{name}-{model_class.__name__}"
        if folder != base_folder:
            _save(model_class, config, processor, folder)
        inputs = tester.inputs(model_class, config)
        inputs_file = root / f"{folder.name}-inputs.safetensors"
        save_file({key: value.contiguous() for key, value in inputs.items()}, inputs_file)
        for auto in autos:
            check = {"kind": "model", "auto": auto, "folder": str(folder), "inputs": str(inputs_file)}
            check["outputs"] = str(root / f"{folder.name}-{auto}.safetensors")
            plan.models.append((check, model_class, folder, inputs))

    if family.processor_class is not None:
        (root / "sample.pkl").write_bytes(pickle.dumps(tester.processor_sample()))
        check = {"kind": "processor", "auto": "AutoProcessor", "folder": str(base_folder)}
        check.update(sample=str(root / "sample.pkl"), outputs=str(root / "processor.safetensors"))
        plan.preprocessing.append((check, type(processor)))
    for auto, part in (("AutoTokenizer", "tokenizer"), ("AutoImageProcessor", "image_processor")):
        if getattr(processor, part, None) is not None:
            check = {"kind": part, "auto": auto, "folder": str(base_folder)}
            plan.preprocessing.append((check, type(getattr(processor, part))))

    images = {"<image>": str(root / "image.png"), "<other image>": str(root / "other.png")}
    Image.new("RGB", (45, 37), (200, 30, 60)).save(images["<image>"])
    Image.new("RGB", (30, 52), (20, 40, 220)).save(images["<other image>"])
    pipeline_folders: dict[type, Path] = {}
    for task in family.pipelines:
        if task not in PIPELINE_CALLS:
            raise AssertionError(f"family {family.key} declares the pipeline {task!r}: add its call to PIPELINE_CALLS")
        if task in PIPELINE_TASKS:
            model_class = _pipeline_model_class(family, task)
        else:
            loaded_by = [auto.__name__ for auto in PIPELINE_REGISTRY.supported_tasks[task]["pt"]]
            auto = next((auto for auto in loaded_by if auto in plan.pairs), None)
            if auto is None:
                raise AssertionError(f"the {task} pipeline loads {loaded_by}; the auto_map has none: {auto_map}")
            model_class = plan.pairs[auto]
        if model_class not in pipeline_folders:
            fitted = _fit_to_tokenizer(build(), getattr(processor, "tokenizer", None))
            pipeline_folders[model_class] = _save(
                model_class, fitted, processor, root / f"pipe-{model_class.__name__}"
            )
        args, kwargs = _with_images(PIPELINE_CALLS[task], images)
        check = {"kind": "pipeline", "task": task, "folder": str(pipeline_folders[model_class])}
        plan.pipelines.append({**check, "args": args, "kwargs": kwargs})

    plan.checks += [check for check, *_ in plan.models]
    plan.checks += [check for check, _ in plan.preprocessing]
    plan.checks += plan.pipelines
    return plan


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, Plan | str]:
    """Every family's plan (or the error that stopped it), its checks run in ONE clean interpreter for all
    families: starting an interpreter with torch and transformers costs seconds, the tiny models milliseconds."""
    found: dict[str, Plan | str] = {}
    for family in families():
        try:
            found[family.key] = _plan(family, tmp_path_factory.mktemp(family.key))
        except Exception:
            found[family.key] = traceback.format_exc()
    ready = [plan for plan in found.values() if isinstance(plan, Plan)]
    results = run_remote([check for plan in ready for check in plan.checks], tmp_path_factory.mktemp("remote"))
    remaining = iter(results["results"])
    for plan in ready:
        plan.results = [next(remaining) for _ in plan.checks]
    return found


@pytest.mark.parametrize("family", families(), ids=lambda family: family.key)
def test_folder_loads_without_vlzoo(family: Family, plans):
    from vlzoo.pipelines.task_heads import HEAD_AUTO_CLASSES

    plan = plans[family.key]
    if not isinstance(plan, Plan):
        pytest.fail(f"writing the folders of {family.key} failed:\n{plan}")
    tester, processor, pairs = plan.tester, plan.processor, plan.pairs
    by_check = dict(zip([id(check) for check in plan.checks], plan.results, strict=True))

    # The folder offers the config, AutoModel, the family's Auto classes and its heads' Auto classes.
    heads = {HEAD_AUTO_CLASSES[task].__name__: cls for task, cls in family.heads.items() if task in HEAD_AUTO_CLASSES}
    assert plan.auto_map["AutoConfig"].rpartition(".")[2] == family.config_class.__name__
    assert pairs["AutoModel"] is (family.auto_models.get("AutoModel") or family.heads[family.default_task])
    for name, cls in {**family.auto_models, **heads}.items():
        assert pairs.get(name) is cls, f"auto_map[{name!r}] should name {cls.__name__}: {plan.auto_map}"

    for check in plan.checks[:2]:
        result = by_check[id(check)]
        assert result.get("raised") == "ValueError", f"{check['auto']} loaded without trust_remote_code: {result}"
        assert "trust_remote_code" in result["message"]
    assert _ok(by_check[id(plan.checks[2])], "AutoConfig")["class"] == family.config_class.__name__

    assert plan.models, f"no transformers Auto class of {family.key}'s auto_map was loaded: {plan.auto_map}"
    for check, model_class, folder, inputs in plan.models:
        result = _ok(by_check[id(check)], f"{check['auto']} on {folder.name}")
        assert result["class"] == model_class.__name__
        if check["auto"] in family.auto_models or check["auto"] in heads:  # installed, vlzoo's own class wins
            assert type(getattr(transformers, check["auto"]).from_pretrained(folder)) is model_class
        installed = model_class.from_pretrained(folder).eval()
        with torch.no_grad():
            expected = installed(**inputs)
        remote = load_file(check["outputs"])
        flat = flatten_outputs(expected)
        assert remote.keys() == flat.keys()
        for name, tensor in flat.items():
            torch.testing.assert_close(remote[name], tensor, rtol=1e-5, atol=1e-6, msg=f"{check['auto']}: {name}")
        torch.testing.assert_close(
            tester.main_output(model_class, _rebuild(expected, remote)),
            tester.main_output(model_class, expected),
            rtol=1e-5,
            atol=1e-6,
        )

    for check, expected_class in plan.preprocessing:
        result = by_check[id(check)]
        remote = not expected_class.__module__.startswith("transformers.")
        assert result["ok"], f"{check['auto']} failed without vlzoo:\n{result['trace']}"
        assert result["module"].startswith("transformers_modules.") == remote, result
        assert result["class"] == expected_class.__name__
        if check["kind"] == "processor":
            # installed, the folder's processor is vlzoo's own class (the auto_map entries are not in its way)
            assert type(transformers.AutoProcessor.from_pretrained(check["folder"])) is expected_class
            for part, (name, _) in result["parts"].items():
                assert name == type(getattr(processor, part)).__name__, part
            encoded = processor(**tester.processor_sample())
            loaded = load_file(check["outputs"])
            tensors = {key: value for key, value in encoded.items() if isinstance(value, torch.Tensor)}
            assert loaded.keys() == tensors.keys()
            for key, value in tensors.items():
                torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)

    from vlzoo.pipelines import PIPELINE_TASKS

    own = {task for task in family.pipelines if task in PIPELINE_TASKS}
    for check in plan.pipelines:
        task, folder = check["task"], Path(check["folder"])
        result = by_check[id(check)]
        _ok(result, f"pipeline {task}")
        # vlzoo's tasks: the folder's config class declares its bundled pipelines (all of the family's own tasks,
        # loading the folder's AutoModel, the class it was saved from); config.json itself does not
        assert "custom_pipelines" not in json.loads((folder / "config.json").read_text())
        declared = _custom_pipelines(folder)
        assert set(declared) == own, declared
        if task in own:
            assert result["pipeline_module"].startswith("transformers_modules."), result
            assert result["pipeline_class"] == PIPELINE_TASKS[task].__name__
            assert declared[task]["pt"] == ["AutoModel"]
            assert result["class"] == _pipeline_model_class(family, task).__name__
        else:
            assert not result["pipeline_module"].startswith("transformers_modules."), result
        # installed, the same folder runs vlzoo's registered pipeline, without trust_remote_code
        pipe = transformers.pipeline(task, model=str(folder))
        if task in own:
            assert type(pipe) is PIPELINE_TASKS[task]
        _assert_close_json(result["result"], to_plain(pipe(*check["args"], **check["kwargs"])), task)
