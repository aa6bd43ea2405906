"""The `vlzoo` command line: train from a config file with overrides, convert, eval, and argument errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

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


# ----- every sub-command fails with one line on stderr, no traceback, nothing written -----

REPO = Path(__file__).resolve().parents[1]
MARKER = ".vlzoo-output.json"


def _fails(argv: list[str], capsys, *, status: int = 1) -> str:
    """Run `vlzoo ARGV`; assert the status and one `error:` line on stderr; return that line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("file_name", "text", "message"),
    [
        ("bad.yaml", "training:\n  max_steps: [1, 2\n", r"is not valid YAML: .*\(line \d+, column \d+\)"),
        ("bad.json", '{"training": {"max_steps": 3,}}', r"is not valid JSON"),
        ("keys.yaml", "training:\n  max_step: 3\n", r"Unknown training argument\(s\) \['max_step'\]"),
        ("data.yaml", "data:\n  num_trains: 3\n", r"unknown keys in section 'data': \['num_trains'\]"),
        ("section.yaml", "optimizer:\n  lr: 1\n", r"unknown config sections \['optimizer'\]"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, r"nests too deeply"),
        (
            "nested.yaml",
            "model:\n  config:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(20)),
            "nests deeper",
        ),
        ("value.yaml", "training:\n  max_steps: abc\n", r"max_steps must be an int >= 1 or None, got 'abc'"),
        ("type.yaml", "model:\n  config:\n    vision_config: {hidden_size: abc}\n", r"model.config: .*hidden_size"),
        ("typo.yaml", "model:\n  config:\n    projection_dm: 8\n", r"model.config.projection_dm is not a field"),
        ("family.yaml", "model:\n  family: nope\n", r"unknown family 'nope'"),
    ],
)
def test_train_config_errors_are_one_line(tmp_path, capsys, monkeypatch, file_name, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / file_name).write_text(text)
    line = _fails(["train", file_name, "training.output_dir=run"], capsys)
    assert re.search(message, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == [file_name]  # nothing written


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.max_steps.x=1"], r"training.max_steps takes a value, not nested keys"),
        (["model.config.vision_config=3", "model.config.vision_config.x=1"], r"model.config.vision_config is int 3"),
        (["model.family.x=1"], r"model.family takes a value, not nested keys"),
        (["training.max_steps=[1"], r"the value is not valid YAML"),
        (["training..max_steps=1"], r"has an empty key"),
        (["training.mixed_precision=fp8"], r"mixed_precision must be one of"),
        (["data.dataset=captions"], r"needs data.annotations and data.image_dir"),
        (["model.pretrained=./missing"], r"model.pretrained='./missing' does not exist"),
        (["model.pretrained=runs/missing"], r"model.pretrained='runs/missing' does not exist"),
    ],
)
def test_train_override_errors_are_one_line(tmp_path, capsys, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # so "runs/missing" names a local folder, not a Hub repository
    line = _fails(["train", *overrides, "training.output_dir=out"], capsys)
    assert re.search(message, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_train_missing_config_file(tmp_path, capsys):
    line = _fails(["train", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml' does not exist" in line


def test_train_refuses_an_existing_model_folder_and_leaves_it_untouched(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights of another run")
    (model_dir / "parity.json").write_text('{"passed": true}')
    before = _contents(model_dir)
    line = _fails(["train", f"training.output_dir={model_dir}", "training.max_steps=1"], capsys)
    assert f"output_dir {model_dir} already holds files" in line and "resume_from='latest'" in line
    assert _contents(model_dir) == before


def test_eval_of_a_missing_folder_fails_at_once_without_the_hub(tmp_path, capsys, monkeypatch):
    import transformers

    import vlzoo.data

    def forbidden(*args, **kwargs):
        raise AssertionError("vlzoo eval must not load a model or data for a missing folder")

    monkeypatch.setattr(transformers, "pipeline", forbidden)
    monkeypatch.setattr(vlzoo.data, "load_shapes", forbidden)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    line = _fails(["eval", str(tmp_path / "runs" / "missing")], capsys)
    assert "model folder" in line and "missing' does not exist" in line
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in _fails(["eval", str(tmp_path / "empty")], capsys)


def test_argument_syntax_errors_return_the_argparse_status(capsys):
    assert main(["eval"]) == 2
    assert main(["convert", "ms_clip", "--output-dir", "x"]) == 2  # no --checkpoint
    err = capsys.readouterr().err
    assert "Traceback" not in err and "required" in err


def test_convert_errors_are_one_line(tmp_path, capsys):
    assert "no converter for family 'nope'" in _fails(["convert", "nope"], capsys, status=2)
    missing = _fails(["convert", "ms_clip", "--checkpoint", str(tmp_path / "nope.pth"), "--output-dir",
                      str(tmp_path / "out")], capsys)  # fmt: skip
    assert "nope.pth" in missing
    assert not (tmp_path / "out").exists()


def test_convert_overwrite_never_deletes_the_input_or_foreign_files(fixtures_dir, tmp_path, capsys):
    import shutil

    case = fixtures_dir / "msclip" / "vanilla-tiny"
    work = tmp_path / "work"
    shutil.copytree(case, work)
    inputs = _contents(work)
    # The output folder is the folder of the inputs.
    args = ["convert", "ms_clip", "--checkpoint", str(work / "model.pth"), "--original-config",
            str(work / "original_config.json"), "--verify-against", str(work / "io.safetensors"), "--overwrite"]  # fmt: skip
    line = _fails([*args, "--output-dir", str(work)], capsys)
    assert "contains the input file" in line
    # Through a symlink to that folder.
    (tmp_path / "alias").symlink_to(work)
    assert "contains the input file" in _fails([*args, "--output-dir", str(tmp_path / "alias")], capsys)
    # A folder vlzoo did not write.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert "was not written by vlzoo" in _fails([*args, "--output-dir", str(mine)], capsys)
    assert _contents(work) == inputs and (mine / "notes.txt").read_text() == "keep"
    # A folder an earlier conversion wrote is replaced, and what the new conversion does not write is gone.
    out = tmp_path / "out"
    assert main([*args, "--output-dir", str(out)]) == 0
    (out / "parity.json").write_text('{"passed": true, "stale": true}')
    marker = json.loads((out / MARKER).read_text())
    assert "parity.json" in marker["files"] and marker["writer"] == "vlzoo convert"
    assert main([*args, "--output-dir", str(out)]) == 0
    assert "stale" not in (out / "parity.json").read_text()


# ----- demo -----

TINY_DEMO = ["--max-steps", "1", "--batch-size", "2", "--num-train", "4", "--num-test", "2"]


def test_demo_refuses_an_existing_folder_before_any_work(tmp_path, capsys, monkeypatch):
    import vlzoo.demo

    monkeypatch.setattr(vlzoo.demo, "_run", lambda *args: pytest.fail("the demo trained into a refused folder"))
    out = tmp_path / "vlzoo-demo"
    out.mkdir()
    (out / "results.json").write_text("{}")
    line = _fails(["demo", "--output-dir", str(out), *TINY_DEMO], capsys)
    assert "already exists and is not empty" in line and "--overwrite" in line
    (out / MARKER).write_text(json.dumps({"writer": "vlzoo demo", "files": []}))  # results.json is not listed
    assert "files vlzoo did not write (results.json)" in _fails(
        ["demo", "--output-dir", str(out), "--overwrite", *TINY_DEMO], capsys
    )
    assert (out / "results.json").read_text() == "{}"
    assert "max_steps must be an int >= 1" in _fails(["demo", "--output-dir", str(tmp_path / "x"), "--max-steps", "0"],
                                                     capsys)  # fmt: skip


def test_demo_overwrite_replaces_its_own_folder_and_leaves_no_stale_file(tmp_path, capsys, monkeypatch):
    from vlzoo.conversion import atomic_output_dir

    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "vlzoo-demo"
    with atomic_output_dir(out, writer="vlzoo demo") as earlier:  # an earlier run's folder, with a parity report
        (earlier / "ms_clip").mkdir()
        (earlier / "ms_clip" / "model.safetensors").write_bytes(b"old")
        (earlier / "ms_clip" / "parity.json").write_text('{"passed": true}')
    assert main(["demo", "--output-dir", str(out), "--overwrite", *TINY_DEMO]) == 0
    printed = capsys.readouterr().out
    assert f"saved: {out}/ms_clip, {out}/vanilla" in printed
    assert not (out / "ms_clip" / "parity.json").exists()
    assert (out / "ms_clip" / "model.safetensors").read_bytes() != b"old"
    assert json.loads((out / "results.json").read_text())["max_steps"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "vlzoo-demo"]  # no temporary folder left


# ----- the README's caption-training command -----

# The README test's shortening (tests/test_readme_commands.py SHORT_RUN) plus a hold-out that fits 8 images.
SHORT_CAPTION_RUN = [
    "training.max_steps=2",
    "training.per_device_batch_size=4",
    "training.eval_every_steps=2",
    "training.save_state_every_steps=2",
    "training.progress_bar=false",
    "data.num_validation=2",
]


def _caption_folder(folder: Path, count: int = 8) -> None:
    from PIL import Image

    images = folder / "images"
    images.mkdir()
    rows = []
    for index in range(count):
        Image.new("RGB", (48 + index, 40), (30 * index, 255 - 30 * index, 90)).save(images / f"{index}.png")
        rows.append(json.dumps({"image": f"{index}.png", "caption": f"picture number {index}"}))
    (folder / "captions.jsonl").write_text("\n".join(rows) + "\n")


def test_readme_caption_training_command(tmp_path, capsys, monkeypatch):
    _caption_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    command = ["train", str(REPO / "examples" / "train_shapes.yaml"), "data.dataset=captions",
               "data.annotations=captions.jsonl", "data.image_dir=images"]  # fmt: skip
    assert main([*command, *SHORT_CAPTION_RUN]) == 0
    assert "model saved to runs/ms_clip-shapes" in capsys.readouterr().out
    run = tmp_path / "runs" / "ms_clip-shapes"
    state = json.loads((run / "checkpoints" / "step_2" / "trainer_state.json").read_text())
    assert [step for step, _ in state["eval_history"]] == [2]  # evaluated on the 2 held-out images
    assert AutoModel.from_pretrained(run).config.vision_config.image_size == 64


def test_caption_data_keys(tmp_path):
    from vlzoo.training.recipe import build_datasets

    _caption_folder(tmp_path)
    base = {
        "dataset": "captions",
        "annotations": str(tmp_path / "captions.jsonl"),
        "image_dir": str(tmp_path / "images"),
    }
    train_set, eval_set = build_datasets({**base, "num_validation": 3, "num_train": 4, "image_size": 20})
    assert list(train_set["scene_id"]) == ["0.png", "1.png", "2.png", "3.png"]  # at most 4, in file order
    assert list(eval_set["scene_id"]) == ["5.png", "6.png", "7.png"]  # the last 3 are held out
    assert train_set[1]["image"].size == (24, 20) and eval_set[0]["image"].size == (26, 20)  # shorter side 20
    train_all, no_eval = build_datasets(base)
    assert len(train_all) == 8 and no_eval is None and train_all[0]["image"].size == (48, 40)
    with pytest.raises(ValueError, match=r"num_validation=8 would hold out every image .*\(8 images\)"):
        build_datasets({**base, "num_validation": 8})
    with pytest.raises(ValueError, match=r"data.image_size must be an int >= 1, got 0"):
        build_datasets({**base, "image_size": 0})


def _tiny_train_config(tmp_path: Path) -> Path:
    config = {
        "model": TINY_MODEL,
        "data": {"dataset": "shapes", "num_train": 8, "num_validation": 4, "num_test": 4, "image_size": 32,
                 "cache_dir": str(tmp_path / "cache")},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "per_device_batch_size": 4,
                     "save_state_every_steps": 1, "save_total_limit": None, "progress_bar": False},
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_resume_from_a_broken_state_and_divergence_are_one_line(tmp_path, capsys):
    config = _tiny_train_config(tmp_path)
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    states = tmp_path / "run" / "checkpoints"
    (states / "step_2" / "optimizer.bin").write_bytes(b"")
    line = _fails(["train", str(config), "training.resume_from=latest", "training.max_steps=3"], capsys)
    assert f"cannot resume from {states / 'step_2'}: {states / 'step_2' / 'optimizer.bin'} is truncated" in line
    assert f"previous intact state folder is {states / 'step_1'}" in line
    line = _fails(["train", str(config), f"training.output_dir={tmp_path / 'wild'}", "training.learning_rate=1e30",
                   "training.max_grad_norm=null", "training.max_steps=6"], capsys)  # fmt: skip
    assert re.match(r"error: training diverged at step \d+: ", line), line
    assert not (tmp_path / "wild" / "model.safetensors").exists()
