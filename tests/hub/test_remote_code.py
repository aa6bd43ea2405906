"""Remote code: every registered family's saved folder loads in an interpreter where `import vlzoo` raises.

For each family (parametrized over the registry, with its tester's tiny configurations and processor) the folders
are written by `save_with_remote_code`; one fresh interpreter per family (PYTHONPATH unset, cwd outside the
repository, its own HF_MODULES_CACHE, stdin from /dev/null, vlzoo blocked by a `sys.meta_path` finder) loads them
with `trust_remote_code=True` through AutoConfig, AutoModel, the AutoModelFor... classes of the folder's auto_map,
AutoProcessor, AutoImageProcessor, AutoTokenizer and the family's transformers pipelines; the results must equal
those of the installed vlzoo. Loading without `trust_remote_code` must raise.
"""

import json
import pickle
from pathlib import Path

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

# How each transformers pipeline task is called ("<image>" is replaced by an image file).
PIPELINE_CALLS = {
    "zero-shot-image-classification": (["<image>"], {"candidate_labels": ["red", "blue", "a dog"], "hypothesis_template": "{}"}),
    "image-feature-extraction": (["<image>"], {}),
    "image-classification": (["<image>"], {}),
}  # fmt: skip
# vlzoo/processing/image_processor.py refuses keys it does not know in a saved image-processor dict, and
# transformers passes `auto_map` along with the others; until that module accepts it, the processor checks are
# reported as this known failure instead of failing the model checks run before them.
KNOWN_AUTO_MAP_REFUSAL = "got unexpected arguments ['auto_map']"


def _auto_class(name: str):
    """A transformers Auto class, or None for vlzoo's own head Auto classes (unusable without vlzoo)."""
    return getattr(transformers, name, None)


def _fit_to_tokenizer(config, tokenizer):
    """The config with every vocabulary grown to the tokenizer's and its special ids set to the tokenizer's, so
    that texts the pipelines tokenize fit the model (the testers' tiny configs use tiny vocabularies)."""
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


@pytest.mark.parametrize("family", families(), ids=lambda family: family.key)
def test_folder_loads_without_vlzoo(family: Family, tmp_path):
    from transformers.pipelines import PIPELINE_REGISTRY

    from vlzoo.pipelines import PIPELINE_TASKS
    from vlzoo.pipelines.task_heads import HEAD_AUTO_CLASSES

    tester = harness.tester_for(family)
    processor = tester.tiny_processor()
    base = family.auto_models.get("AutoModel") or family.heads[family.default_task]
    first = next(iter(tester.configs))
    base_folder = _save(base, tester.configs[first](), processor, tmp_path / f"{first}-{base.__name__}")

    # The folder offers the config, AutoModel, the family's Auto classes and its heads' Auto classes.
    auto_map = json.loads((base_folder / "config.json").read_text())["auto_map"]
    heads = {HEAD_AUTO_CLASSES[task].__name__: cls for task, cls in family.heads.items() if task in HEAD_AUTO_CLASSES}
    assert auto_map["AutoConfig"].rpartition(".")[2] == family.config_class.__name__
    pairs = _model_classes_by_auto_name(auto_map, family)
    assert pairs["AutoModel"] is base
    for name, cls in {**family.auto_models, **heads}.items():
        assert pairs.get(name) is cls, f"auto_map[{name!r}] should name {cls.__name__}: {auto_map}"

    checks: list[dict] = [
        {"kind": "untrusted", "auto": "AutoConfig", "folder": str(base_folder)},
        {"kind": "untrusted", "auto": "AutoModel", "folder": str(base_folder)},
        {"kind": "config", "auto": "AutoConfig", "folder": str(base_folder)},
    ]
    models = []  # (check, model class, folder, inputs)
    for config_name, build in tester.configs.items():
        config = build()
        for model_class in dict.fromkeys(pairs.values()):
            autos = [name for name, cls in pairs.items() if cls is model_class and _auto_class(name) is not None]
            if not autos:
                continue  # only vlzoo's own head Auto classes load it
            folder = tmp_path / f"{config_name}-{model_class.__name__}"
            if folder != base_folder:
                _save(model_class, config, processor, folder)
            inputs = tester.inputs(model_class, config)
            inputs_file = tmp_path / f"{folder.name}-inputs.safetensors"
            save_file({key: value.contiguous() for key, value in inputs.items()}, inputs_file)
            for auto in autos:
                check = {"kind": "model", "auto": auto, "folder": str(folder), "inputs": str(inputs_file)}
                check["outputs"] = str(tmp_path / f"{folder.name}-{auto}.safetensors")
                checks.append(check)
                models.append((check, model_class, folder, inputs))

    preprocessing = []  # (check, expected class)
    if family.processor_class is not None:
        sample = tester.processor_sample()
        (tmp_path / "sample.pkl").write_bytes(pickle.dumps(sample))
        check = {"kind": "processor", "auto": "AutoProcessor", "folder": str(base_folder)}
        check.update(sample=str(tmp_path / "sample.pkl"), outputs=str(tmp_path / "processor.safetensors"))
        preprocessing.append((check, type(processor)))
    for auto, part in (("AutoTokenizer", "tokenizer"), ("AutoImageProcessor", "image_processor")):
        if getattr(processor, part, None) is not None:
            check = {"kind": part, "auto": auto, "folder": str(base_folder)}
            preprocessing.append((check, type(getattr(processor, part))))
    checks += [check for check, _ in preprocessing]

    pipelines = []  # (check, folder)
    image = tmp_path / "image.png"
    Image.new("RGB", (45, 37), (200, 30, 60)).save(image)
    pipeline_folders: dict[type, Path] = {}
    for task in [task for task in family.pipelines if task not in PIPELINE_TASKS]:
        if task not in PIPELINE_CALLS:
            pytest.fail(f"family {family.key} declares the pipeline {task!r}: add how to call it to PIPELINE_CALLS")
        loaded_by = [auto.__name__ for auto in PIPELINE_REGISTRY.supported_tasks[task]["pt"]]
        auto = next((name for name in loaded_by if name in pairs), None)
        assert auto is not None, f"the {task} pipeline loads {loaded_by}; the folder's auto_map has none of them"
        model_class = pairs[auto]
        if model_class not in pipeline_folders:
            config = _fit_to_tokenizer(tester.configs[first](), processor.tokenizer)
            pipeline_folders[model_class] = _save(
                model_class, config, processor, tmp_path / f"pipeline-{model_class.__name__}"
            )
        args, kwargs = PIPELINE_CALLS[task]
        args = [str(image) if arg == "<image>" else arg for arg in args]
        check = {"kind": "pipeline", "task": task, "folder": str(pipeline_folders[model_class])}
        check.update(args=args, kwargs=kwargs)
        pipelines.append(check)
    checks += pipelines

    results = run_remote(checks, tmp_path)["results"]
    by_check = dict(zip([id(check) for check in checks], results, strict=True))

    for check in checks[:2]:
        result = by_check[id(check)]
        assert result.get("raised") == "ValueError", f"{check['auto']} loaded without trust_remote_code: {result}"
        assert "trust_remote_code" in result["message"]
    assert _ok(by_check[id(checks[2])], "AutoConfig")["class"] == family.config_class.__name__

    for check, model_class, folder, inputs in models:
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

    known = []
    for check, expected_class in preprocessing:
        result = by_check[id(check)]
        if not result["ok"] and KNOWN_AUTO_MAP_REFUSAL in result["error"]:
            known.append(check["auto"])
            continue
        remote = not expected_class.__module__.startswith("transformers.")
        assert result["ok"], f"{check['auto']} failed without vlzoo:\n{result['trace']}"
        assert result["module"].startswith("transformers_modules.") == remote, result
        assert result["class"] == expected_class.__name__
        if check["kind"] == "processor":
            for part, (name, _) in result["parts"].items():
                assert name == type(getattr(processor, part)).__name__, part
            encoded = processor(**tester.processor_sample())
            loaded = load_file(check["outputs"])
            tensors = {key: value for key, value in encoded.items() if isinstance(value, torch.Tensor)}
            assert loaded.keys() == tensors.keys()
            for key, value in tensors.items():
                torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)

    for check in pipelines:
        result = by_check[id(check)]
        if not result["ok"] and KNOWN_AUTO_MAP_REFUSAL in result["error"]:
            known.append(check["task"])
            continue
        _ok(result, f"pipeline {check['task']}")
        pipe = transformers.pipeline(check["task"], model=check["folder"])
        _assert_close_json(result["result"], to_plain(pipe(*check["args"], **check["kwargs"])), check["task"])

    if known:
        pytest.xfail(
            f"{', '.join(known)}: VlzooImageProcessor refuses the auto_map key of a remote-code folder's image "
            "processor config (vlzoo/processing/image_processor.py, _SAVED_METADATA_KEYS)"
        )
