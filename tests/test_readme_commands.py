"""Every shell command in the README runs as written.

Commands are read from the README's ```bash blocks, so a command added there without a way to run it here fails
`test_every_readme_command_is_exercised`. The set-up commands (`pip install ...`, `pytest`, `vlzoo demo`) are what
`.ci/run` executes in a fresh virtual environment; the others run here in a scratch folder holding what the README
says the user has (a downloaded checkpoint, a caption file, the repository's examples). Training commands run
exactly as written with only the run length shrunk by appended overrides (a `slow` test runs one at full length);
the multi-GPU and multi-machine launches are parsed by Accelerate's own launcher parser and their vlzoo command
is run on one process.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocesses import run_in_new_session

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# Appended to training commands so that they finish in seconds; everything else stays as written.
SHORT_RUN = [
    "training.max_steps=2",
    "training.per_device_batch_size=4",
    "training.eval_every_steps=2",
    "training.save_state_every_steps=2",
    "training.progress_bar=false",
]
SHORT_SHAPES = ["data.num_train=16", "data.num_validation=8"]


def readme_commands() -> list[str]:
    """Every command of the README's bash blocks (`a && b` gives two), without trailing comments."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


def ci_commands() -> list[str]:
    script = (REPO / ".ci" / "run").read_text()
    return [part.strip() for line in script.splitlines() for part in re.split(r"&&|\(|\)", line) if part.strip()]


# The README's set-up commands: `.ci/run` runs them in a fresh virtual environment.
CI_RUN = {"pip install -e .", 'pip install -e ".[test]"', "pytest", "vlzoo demo"}


def _kind(command: str) -> str:
    words = shlex.split(command)
    if command in CI_RUN:
        return "ci"
    if words[:2] == ["vlzoo", "convert"] or words[:2] == ["python", "conversion/ms_clip/convert.py"]:
        return "convert"
    if words[:2] == ["vlzoo", "demo"]:
        return "demo"
    if words[:2] == ["vlzoo", "publish"]:
        return "publish"
    if words[:2] == ["vlzoo", "train"]:
        return "train"
    if words[:1] == ["torchrun"]:
        return "torchrun"
    if words[:2] == ["accelerate", "launch"]:
        return "accelerate"
    if words[:2] in (["vlzoo", "list"], ["vlzoo", "--help"]):
        return "cli"
    return "unknown"


def test_every_readme_command_is_exercised():
    commands = readme_commands()
    assert len(commands) >= 8, commands
    unknown = [command for command in commands if _kind(command) == "unknown"]
    assert not unknown, f"README commands without a test that runs them: {unknown}"


def test_setup_commands_are_what_ci_runs():
    setup = [command for command in readme_commands() if _kind(command) == "ci"]
    assert setup == ["pip install -e .", "vlzoo demo", 'pip install -e ".[test]"', "pytest"]
    ci = ci_commands()
    for command in setup:
        assert command in ci, f".ci/run does not run the README's {command!r}"
    script = (REPO / ".ci" / "run").read_text()
    assert "venv" in script, ".ci/run must install into a fresh virtual environment"


# --------------------------------------------------------------------------------------------------------------
# A scratch folder with what the README's commands expect to find


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The current folder of a user: the repository's examples and a small caption data set."""
    from PIL import Image

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copytree(REPO / "conversion", tmp_path / "conversion")
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for index, color in enumerate(["red", "green", "blue", "yellow", "white", "black", "purple", "orange"]):
        Image.new("RGB", (48, 40), color).save(images / f"{index}.png")
        rows.append(json.dumps({"image": f"{index}.png", "caption": f"a {color} picture"}))
    (tmp_path / "captions.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _released_checkpoint(folder: Path, name: str, variant: str) -> Path:
    """A released-size original checkpoint with random weights, in the authors' layout."""
    import torch

    from tests.models.ms_clip.original_format import to_original_state_dict
    from vlzoo.models.ms_clip import MsClipConfig, MsClipModel

    torch.manual_seed(0)
    model = MsClipModel(MsClipConfig.from_preset(variant))
    path = folder / name
    torch.save(to_original_state_dict(model), path)
    return path


def _run_cli(words: list[str]) -> int:
    from vlzoo.cli import main

    return main(words)


# The other families' README conversions run on the parity fixture of the same head, stored under the released file
# name; tiny geometry keeps no head-count convention, so its original config is passed as well.
FIXTURES = REPO.parent / "shared" / "fixtures"
STAND_INS = {
    "beit3": "beit3/beit3-vqa-tiny/beit3_tiny_patch16_48_vqa.pth",
    "meter": "meter/meter-vqa-tiny/meter_tiny_vqa.ckpt",
    "flava": "flava/flava-model-tiny/flava_model_tiny.pt",
    "transvg": "transvg/transvg-tiny/best_checkpoint.pth",
}


def _convert_words(words: list[str], user_folder: Path, made: dict[str, Path]) -> list[str]:
    """The command's words, after putting the checkpoint it names in place (plus the stand-in's config)."""
    checkpoint = words[words.index("--checkpoint") + 1]
    family = words[2] if words[0] == "vlzoo" else "ms_clip"
    if family == "ms_clip":
        if checkpoint not in made:
            made[checkpoint] = _released_checkpoint(user_folder, checkpoint, words[words.index("--variant") + 1])
        return words
    stand_in = FIXTURES / STAND_INS[family]
    if not stand_in.is_file():
        pytest.skip(reason=f"the parity fixtures are not at {FIXTURES} (the {family} conversion runs on one)")
    shutil.copyfile(stand_in, user_folder / checkpoint)
    return [*words, "--original-config", str(stand_in.parent / "original_config.json")]


def test_readme_convert_and_publish_commands_run_as_written(user_folder, tmp_path):
    from transformers import AutoConfig

    from tests.hub.local_hub import LocalHub
    from tests.hub.remote import run_remote
    from tests.hub.test_publish import TOKEN, _hub_env

    commands = [command for command in readme_commands() if _kind(command) == "convert"]
    assert commands
    made: dict[str, Path] = {}
    for command in commands:
        words = _convert_words(shlex.split(command), user_folder, made)
        output_dir = user_folder / words[words.index("--output-dir") + 1]
        shutil.rmtree(output_dir, ignore_errors=True)
        if words[0] == "vlzoo":
            assert _run_cli(words[1:]) == 0, command
        else:
            run = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, cwd=user_folder)
            assert run.returncode == 0, run.stderr[-3000:]
        config = AutoConfig.from_pretrained(output_dir)
        assert config.model_type == f"vlzoo_{words[2] if words[0] == 'vlzoo' else 'ms_clip'}", command
        if "--variant" in words:
            assert config.projection_dim == 512
        assert (output_dir / "model.safetensors").is_file() and (output_dir / "README.md").is_file()
        assert ("auto_map" in json.loads((output_dir / "config.json").read_text())) == ("--remote-code" in words)

    publishes = [shlex.split(command) for command in readme_commands() if _kind(command) == "publish"]
    assert publishes
    with LocalHub(TOKEN) as hub:
        for index, words in enumerate(publishes):
            folder = user_folder / words[2]
            assert folder.is_dir(), f"{words[2]} is not made by a README command before it is published"
            argv = ["publish", str(folder), *words[3:]]  # the check interpreter runs elsewhere: absolute folder
            result = run_remote([{"kind": "cli", "argv": argv}], tmp_path / f"publish{index}", _hub_env(hub),
                                block_vlzoo=False)["results"][0]  # fmt: skip
            assert result["ok"] and result["status"] == 0, result
            files = hub.repos[words[words.index("--repo-id") + 1]].files
            assert {"config.json", "model.safetensors", "README.md"} <= set(files)
            assert any(name.endswith(".py") for name in files)  # remote code, on by default


DEMO_BUDGET = ["--max-steps", "1", "--batch-size", "4", "--num-train", "8", "--num-test", "6"]


def test_readme_demo_commands_run(user_folder, capsys):
    commands = [shlex.split(command) for command in readme_commands() if _kind(command) == "demo"]
    assert commands
    for words in commands:
        assert _run_cli([*words[1:], *DEMO_BUDGET]) == 0, words
        output_dir = user_folder / words[words.index("--output-dir") + 1]
        assert (output_dir / "results.json").is_file()
        assert "acc" in capsys.readouterr().out  # the demo's result line


def test_readme_other_commands_run(user_folder, capsys):
    commands = [shlex.split(command) for command in readme_commands() if _kind(command) == "cli"]
    assert commands
    for words in commands:
        assert _run_cli(words[1:]) == 0, words
        assert capsys.readouterr().out


def _train_commands() -> list[str]:
    return [command for command in readme_commands() if _kind(command) == "train"]


@pytest.mark.parametrize("index", range(len(_train_commands())))
def test_readme_train_commands_run(index, user_folder, capsys):
    from transformers import AutoModel

    words = shlex.split(_train_commands()[index])
    # the caption set made here holds 8 images, fewer than the example file's 200 held out for validation
    extra = SHORT_RUN + (["data.num_validation=2"] if "data.dataset=captions" in words else SHORT_SHAPES)
    assert _run_cli([*words[1:], *extra]) == 0
    out = capsys.readouterr().out
    saved = re.search(r"model saved to (\S+)", out)
    assert saved, out
    model = AutoModel.from_pretrained(user_folder / saved.group(1))
    for word in words[2:]:  # each model override given on the command line reached the saved model
        key, _, value = word.partition("=")
        if key.startswith("model.config."):
            assert str(getattr(model.config, key.removeprefix("model.config."))) == value, word


def test_readme_torchrun_command_runs_on_two_processes(user_folder):
    commands = [command for command in readme_commands() if _kind(command) == "torchrun"]
    assert commands
    for command in commands:
        words = shlex.split(command)
        torchrun = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
        run = run_in_new_session([*torchrun, *SHORT_RUN, *SHORT_SHAPES], timeout=300, what=command, cwd=user_folder)
        assert run.returncode == 0, run.stdout[-4000:]
        assert "model saved to" in run.stdout


def test_readme_accelerate_launches_parse_and_their_command_runs(user_folder, capsys):
    from accelerate.commands.launch import launch_command_parser

    commands = [command for command in readme_commands() if _kind(command) == "accelerate"]
    assert commands
    parser = launch_command_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[2:])
        assert args.module and args.training_script == "vlzoo", command
        assert args.training_script_args[0] == "train"
        assert (user_folder / args.training_script_args[1]).is_file()
    # The script part of the last launch, on this one process.
    assert _run_cli([*args.training_script_args, *SHORT_RUN, *SHORT_SHAPES]) == 0
    assert "model saved to" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_example_training_config_at_full_length(user_folder):
    """`vlzoo train examples/train_shapes.yaml` exactly as written (several minutes)."""
    assert _run_cli(["train", "examples/train_shapes.yaml"]) == 0
