"""The `vlzoo` command line: train from a config file with overrides, convert, eval, and argument errors."""

import json
import subprocess
import sys

import pytest
import yaml
from transformers import AutoModel

from vlzoo.cli import main
from vlzoo.training.recipe import apply_overrides, load_run_config

TINY_MODEL = {
    "family": "ms_clip",
    "preset": "b32-yfcc",
    "config": {
        "projection_dim": 16,
        "num_shared_layers": 2,
        "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 2, "image_size": 32,
                          "patch_size": 16, "num_hidden_layers": 2, "stem_strides": [2, 2, 2, 1],
                          "lateral_adapter_layers": [1], "branch_strides": [2], "adapter_kernel_sizes": [8]},
        "text_config": {"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 2, "num_hidden_layers": 2},
    },
}  # fmt: skip


def test_train_from_config_file_with_overrides(tmp_path, capsys):
    config = {
        "model": TINY_MODEL,
        "data": {"dataset": "shapes", "num_train": 24, "num_validation": 8, "num_test": 4, "image_size": 32,
                 "cache_dir": str(tmp_path / "cache")},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 50, "per_device_batch_size": 8,
                     "progress_bar": False},
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "training.max_steps=3", "training.eval_every_steps=2"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    model = AutoModel.from_pretrained(tmp_path / "run")
    assert model.config.vision_config.image_size == 32
    assert (tmp_path / "run" / "tokenizer.json").is_file()


def test_train_on_a_caption_file(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i, color in enumerate(["red", "green", "blue", "yellow"]):
        Image.new("RGB", (40, 36), color).save(images / f"{i}.png")
        rows.append(json.dumps({"image": f"{i}.png", "caption": f"a {color} picture"}))
    (tmp_path / "captions.jsonl").write_text("\n".join(rows) + "\n")
    config = {
        "model": TINY_MODEL,
        "data": {"dataset": "captions", "annotations": str(tmp_path / "captions.jsonl"), "image_dir": str(images)},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "per_device_batch_size": 2,
                     "progress_bar": False},
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "cfg.json")]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_overrides_and_config_errors(tmp_path, capsys):
    assert apply_overrides({}, ["training.max_steps=7", "model.config.projection_dim=8"]) == {
        "training": {"max_steps": 7},
        "model": {"config": {"projection_dim": 8}},
    }
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["max_steps"])
    with pytest.raises(ValueError, match="unknown section"):
        apply_overrides({}, ["optimizer.lr=1"])
    with pytest.raises(ValueError, match="valid keys"):
        load_run_config(None, ["data.num_trains=3"])
    with pytest.raises(ValueError, match="captions"):
        load_run_config(None, ["data.dataset=coco"])
    assert main(["train", "training.max_steps=0", "model.preset=vanilla"]) == 1
    assert "max_steps" in capsys.readouterr().err


def test_convert_command_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlzoo",
            "convert",
            "ms_clip",
            "--checkpoint",
            str(bad),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_convert_command_on_fixture(fixtures_dir, tmp_path):
    case = fixtures_dir / "msclip" / "vanilla-tiny"
    status = main(
        ["convert", "ms_clip", "--checkpoint", str(case / "model.pth"), "--original-config",
         str(case / "original_config.json"), "--output-dir", str(tmp_path / "out"), "--verify-against",
         str(case / "io.safetensors")]
    )  # fmt: skip
    assert status == 0
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["passed"]
