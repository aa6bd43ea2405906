"""The README's Python examples run as written, and the example scripts and configs work."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from vlzoo.demo import run_demo
from vlzoo.models.ms_clip import MsClipConfig, MsClipModel, MsClipTokenizer
from vlzoo.training.recipe import build_model_and_processor, load_run_config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _readme_demos() -> list[str]:
    """The families whose demo folder the README's examples read (`vlzoo-demo-NAME/...`)."""
    return sorted(set(re.findall(r"vlzoo-demo-([a-z_0-9]+)/", README)))


README_DEMOS = _readme_demos()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A small untrained stand-in for the folder `vlzoo demo` writes (same resolution and tokenizer)."""
    from vlzoo.demo import demo_processor

    root = tmp_path_factory.mktemp("cwd")
    torch.manual_seed(0)
    config = MsClipConfig.from_preset(
        "b32-yfcc",
        projection_dim=16,
        num_shared_layers=1,
        vision_config={"hidden_size": 32, "intermediate_size": 40, "num_attention_heads": 2, "image_size": 64,
                       "patch_size": 32, "num_hidden_layers": 1, "lateral_adapter_layers": [], "branch_strides": [],
                       "adapter_kernel_sizes": []},
        text_config={"hidden_size": 32, "intermediate_size": 40, "num_attention_heads": 2, "num_hidden_layers": 2},
    )  # fmt: skip
    MsClipModel(config).save_pretrained(root / "vlzoo-demo" / "ms_clip")
    demo_processor().save_pretrained(root / "vlzoo-demo" / "ms_clip")
    # The folder the README's `vlzoo convert ... --remote-code` writes (here from the same small model).
    from vlzoo.hub import save_with_remote_code

    save_with_remote_code(MsClipModel(config), demo_processor(), root / "ms_clip-b32-yfcc")
    # The other families' demos as `vlzoo demo FAMILY --output-dir vlzoo-demo-FAMILY` writes them, at a tiny budget.
    for name in README_DEMOS:
        run_demo(root / f"vlzoo-demo-{name}", family=name, max_steps=1, batch_size=4, num_train=8, num_test=6)
    return root


def test_readme_has_the_two_setup_commands():
    assert "pip install -e . && vlzoo demo" in README
    assert 'pip install -e ".[test]" && pytest' in README


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_examples_run(index, demo_folder, monkeypatch):
    monkeypatch.chdir(demo_folder)
    exec(compile(_python_blocks()[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})


def test_example_training_config_builds():
    config = load_run_config(REPO / "examples" / "train_shapes.yaml")
    model, processor, family = build_model_and_processor(config["model"])
    assert family.key == "ms_clip" and model.config.vision_config.image_size == 64
    assert isinstance(processor.tokenizer, MsClipTokenizer)


def test_lora_example_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("lora_example", REPO / "examples" / "lora_finetune_counting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(
        [
            "--output-dir",
            str(tmp_path),
            "--base-steps",
            "2",
            "--lora-steps",
            "2",
            "--num-train",
            "32",
            "--num-test",
            "8",
        ]
    )
    assert 0.0 <= result["before"] <= 1.0 and 0.0 <= result["after"] <= 1.0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_eval_command_reports_zero_shot_accuracy(demo_folder, monkeypatch, capsys):
    from vlzoo.cli import main

    monkeypatch.chdir(demo_folder)
    monkeypatch.setenv("VLZOO_CACHE", str(demo_folder / "cache"))
    assert main(["eval", "vlzoo-demo/ms_clip", "--num-test", "6"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = float(line.rsplit(" ", 1)[1])
    assert "zero-shot accuracy on shapes/test (6 images)" in line and 0.0 <= accuracy <= 1.0
