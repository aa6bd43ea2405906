"""Loads saved folders (or Hub repositories) with `trust_remote_code=True` in an interpreter where `import vlzoo`
raises.

Run as `python -I remote_loader.py SPEC.json` (a fresh interpreter, started by tests/hub/remote.py). The spec lists
checks; each one's result (class loaded, error, outputs written to files) goes to the spec's `results` file, and
the tests compare them with what the installed vlzoo gives. With `"block_vlzoo": false` vlzoo is imported instead
(a check may then run its command line). This file imports nothing of vlzoo or of the tests at module level, so
the tests may import `flatten_outputs` and `to_plain` from it as well.
"""

import contextlib
import importlib
import importlib.abc
import importlib.util
import io
import json
import pickle
import sys
import traceback
from typing import Any


class _BlockVlzoo(importlib.abc.MetaPathFinder):
    """Makes every `import vlzoo...` (and `find_spec("vlzoo")`) raise, although vlzoo is installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "vlzoo" or name.startswith("vlzoo."):
            raise ImportError(f"vlzoo is blocked in this interpreter (import of {name})")
        return None


def flatten_outputs(outputs: Any, prefix: str = "") -> dict:
    """Every tensor of a model output by dotted name (`vision_model_output.pooler_output`, `hidden_states.0`)."""
    import torch

    found = {}
    items = outputs.items() if hasattr(outputs, "items") else enumerate(outputs)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            found[name] = value
        elif hasattr(value, "items") or isinstance(value, (tuple, list)):
            found.update(flatten_outputs(value, f"{name}."))
    return found


def to_plain(value: Any) -> Any:
    """Pipeline results as JSON values (tensors and arrays become nested lists)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _run(check: dict) -> dict:
    import torch
    import transformers
    from safetensors.torch import load_file, save_file

    kind, folder = check["kind"], check.get("folder")
    if kind == "cli":
        output, errors = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
            status = importlib.import_module("vlzoo.cli").main(check["argv"])
        return {"status": status, "stdout": output.getvalue(), "stderr": errors.getvalue()}
    if kind == "untrusted":
        try:
            getattr(transformers, check["auto"]).from_pretrained(folder)
        except ValueError as error:
            return {"raised": "ValueError", "message": str(error)}
        return {"raised": None}
    if kind == "pipeline":
        pipe = transformers.pipeline(check["task"], model=folder, trust_remote_code=True)
        result = pipe(*check["args"], **check["kwargs"])
        return {
            "class": type(pipe.model).__name__,
            "module": type(pipe.model).__module__,
            "pipeline_class": type(pipe).__name__,
            "pipeline_module": type(pipe).__module__,
            "result": to_plain(result),
        }
    trust = check.get("trust", True)
    loaded = getattr(transformers, check["auto"]).from_pretrained(folder, trust_remote_code=trust)
    found = {"class": type(loaded).__name__, "module": type(loaded).__module__}
    if kind == "model":
        loaded.eval()
        inputs = load_file(check["inputs"])
        with torch.no_grad():
            outputs = loaded(**inputs)
        tensors = {name: tensor.detach().contiguous().clone() for name, tensor in flatten_outputs(outputs).items()}
        save_file(tensors, check["outputs"])
    elif kind == "processor":
        with open(check["sample"], "rb") as handle:
            sample = pickle.load(handle)
        parts = {
            name: type(getattr(loaded, name)) for name in ("image_processor", "tokenizer") if hasattr(loaded, name)
        }
        found["parts"] = {name: [cls.__name__, cls.__module__] for name, cls in parts.items()}
        encoded = loaded(**sample)
        save_file({k: v.contiguous() for k, v in encoded.items() if isinstance(v, torch.Tensor)}, check["outputs"])
    return found


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    if spec.get("block_vlzoo", True):
        sys.meta_path.insert(0, _BlockVlzoo())
    else:
        importlib.import_module("vlzoo")
    environment = {}
    try:
        importlib.util.find_spec("vlzoo")
        environment["find_spec"] = "found"
    except ImportError as error:
        environment["find_spec"] = f"ImportError: {error}"
    results = []
    for check in spec["checks"]:
        try:
            results.append({"ok": True, **_run(check)})
        except Exception as error:  # recorded for the test to report
            results.append({"ok": False, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()})
    environment["vlzoo_modules"] = sorted(name for name in sys.modules if name.split(".")[0] == "vlzoo")
    with open(spec["results"], "w", encoding="utf-8") as handle:
        json.dump({"environment": environment, "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
