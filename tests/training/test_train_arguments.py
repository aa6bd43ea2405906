"""TrainingArguments validation and config-file loading."""

import json

import pytest

from vlzoo.training import TrainingArguments, load_training_config


def test_defaults_and_round_trip(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path))
    assert (args.num_epochs, args.per_device_batch_size, args.learning_rate) == (1, 32, 5e-4)
    assert (args.mixed_precision, args.save_total_limit, args.max_steps) == (None, 2, None)
    assert TrainingArguments.from_dict(args.to_dict()) == args
    json.dumps(args.to_dict())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_epochs", 0),
        ("num_epochs", 1.5),
        ("max_steps", 0),
        ("max_time_seconds", 0),
        ("per_device_batch_size", True),
        ("eval_batch_size", -1),
        ("learning_rate", 0.0),
        ("learning_rate", "fast"),
        ("weight_decay", -0.1),
        ("warmup_steps", -1),
        ("max_grad_norm", 0),
        ("mixed_precision", "fp8"),
        ("gradient_accumulation_steps", 0),
        ("gradient_checkpointing", "yes"),
        ("eval_every_steps", 0),
        ("save_state_every_steps", 0),
        ("save_total_limit", 0),
        ("resume_from", ""),
        ("seed", -1),
        ("num_workers", -2),
        ("log_every_steps", 0),
        ("progress_bar", 1),
        ("output_dir", ""),
    ],
)
def test_invalid_values_name_the_field(tmp_path, field, value):
    values = {"output_dir": str(tmp_path), field: value}
    with pytest.raises(ValueError, match=f"TrainingArguments.{field} must be"):
        TrainingArguments(**values)


def test_from_dict_rejects_unknown_and_missing_keys(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown training argument\(s\) \['epochs'\]; valid names are: output_dir"):
        TrainingArguments.from_dict({"output_dir": str(tmp_path), "epochs": 3})
    with pytest.raises(ValueError, match="must set output_dir"):
        TrainingArguments.from_dict({"num_epochs": 3})
    with pytest.raises(ValueError, match="must be a mapping"):
        TrainingArguments.from_dict([("output_dir", "x")])


def test_yaml_and_json_configs_load(tmp_path):
    yaml_path = tmp_path / "run.yaml"
    # YAML 1.1 reads 5e-4 (no dot) as a string; float fields accept it.
    yaml_path.write_text(
        "model:\n  family: ms_clip\ntraining:\n  output_dir: out\n  learning_rate: 5e-4\n  max_steps: 20\n"
        "  mixed_precision: bf16\n  max_grad_norm: null\n"
    )
    config = load_training_config(yaml_path)
    assert config["model"] == {"family": "ms_clip"}
    args = TrainingArguments.from_dict(config["training"])
    assert (args.learning_rate, args.max_steps, args.mixed_precision, args.max_grad_norm) == (5e-4, 20, "bf16", None)

    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps({"training": args.to_dict()}))
    assert TrainingArguments.from_dict(load_training_config(json_path)["training"]) == args


def test_bad_config_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml' does not exist"):
        load_training_config(tmp_path / "missing.yaml")
    toml = tmp_path / "run.toml"
    toml.write_text("[training]\n")
    with pytest.raises(ValueError, match="expected .yaml, .yml or .json"):
        load_training_config(toml)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping of sections"):
        load_training_config(listing)
    section = tmp_path / "section.yml"
    section.write_text("training: 3\n")
    with pytest.raises(ValueError, match="section 'training'"):
        load_training_config(section)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "training:\n  max_steps: [1, 2\n", r"bad.yaml' is not valid YAML: .*\(line \d+, column \d+\)"),
        ("bad.json", '{"training": {"max_steps": 3,}}', r"bad.json' is not valid JSON: .*\(line 1, column \d+\)"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, r"deep.json' nests too deeply"),
        ("latin1.yaml", b"training: {output_dir: caf\xe9}\n", r"latin1.yaml' is not UTF-8 text"),
    ],
)
def test_malformed_config_files_raise_one_clear_value_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=message) as error:
        load_training_config(path)
    assert "\n" not in str(error.value)
