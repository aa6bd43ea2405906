"""TransVG / TransVG++ conversion through the user's entry point: fixture parity per case, and refusals."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlzoo.conversion import ConversionError, convert_checkpoint
from vlzoo.models.transvg.conversion_transvg import TransvgConverter
from vlzoo.pipelines.task_heads import AutoModelForVisualGrounding

REPO = Path(__file__).resolve().parents[3]
CASES = {"transvg-tiny": "transvg", "transvgpp-tiny": "transvg_pp"}


def _convert_script():
    spec = importlib.util.spec_from_file_location("transvg_convert", REPO / "conversion" / "transvg" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES)
def test_fixture_parity_through_convert_script(case, fixtures_dir, tmp_path, capsys):
    folder = fixtures_dir / "transvg" / case
    out = tmp_path / case
    status = _convert_script().main(
        [
            "--family", CASES[case],
            "--checkpoint", str(folder / "best_checkpoint.pth"),
            "--original-config", str(folder / "original_config.json"),
            "--output-dir", str(out),
            "--verify-against", str(folder / "io.safetensors"),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    parity = json.loads((out / "parity.json").read_text())
    io = load_file(folder / "io.safetensors")
    expected = {name[len("output.") :] for name in io if name.startswith("output.")}
    assert parity["passed"] and expected <= set(parity["outputs"])
    worst = max(parity["outputs"][name]["max_abs_diff"] for name in expected)
    print(f"{case}: max |diff| over {len(expected)} outputs = {worst:.3e}")
    assert worst <= 1e-4

    # a normal transformers folder: the pipelines' Auto class loads it and reproduces the boxes
    model = AutoModelForVisualGrounding.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        boxes = model(
            pixel_values=io["input.pixel_values"],
            pixel_mask=io["input.pixel_mask"],
            input_ids=io["input.input_ids"],
            attention_mask=io["input.attention_mask"],
        ).pred_boxes
    assert (boxes - io["output.pred_boxes"]).abs().max() <= 1e-4


def test_vlzoo_convert_command_runs_the_same_converter(fixtures_dir, tmp_path):
    from vlzoo.cli import main

    folder = fixtures_dir / "transvg" / "transvgpp-tiny"
    argv = ["convert", "transvg_pp", "--checkpoint", str(folder / "best_checkpoint.pth"), "--original-config",
            str(folder / "original_config.json"), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    report = (tmp_path / "out" / "conversion_report.txt").read_text()
    assert "language_branch.language_backbone.embeddings.position_ids" in report  # dropped on purpose


def test_parity_failure_writes_nothing(fixtures_dir, tmp_path):
    # BERT's head count is not in the weights: a wrong one converts but cannot reproduce the outputs
    folder = fixtures_dir / "transvg" / "transvg-tiny"
    wrong = json.loads((folder / "original_config.json").read_text())
    wrong["tiny_overrides"]["bert_config"]["num_attention_heads"] = 1
    with pytest.raises(ConversionError, match="text_features"):
        convert_checkpoint(
            TransvgConverter(),
            folder / "best_checkpoint.pth",
            tmp_path / "out",
            original_config=wrong,
            verify_against=folder / "io.safetensors",
        )
    assert not (tmp_path / "out").exists()


def test_heads_are_required_from_args(fixtures_dir, tmp_path):
    # a tiny BERT (width 32) has no default head count: without the original config the conversion says what to pass
    folder = fixtures_dir / "transvg" / "transvg-tiny"
    with pytest.raises(ConversionError, match="bert_config.num_attention_heads"):
        convert_checkpoint(TransvgConverter(), folder / "best_checkpoint.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_family_is_refused(fixtures_dir, tmp_path):
    folder = fixtures_dir / "transvg" / "transvgpp-tiny"
    with pytest.raises(ConversionError, match="does not look like a checkpoint of TransVG"):
        convert_checkpoint(TransvgConverter(), folder / "best_checkpoint.pth", tmp_path / "out")


def test_dilated_backbone_is_refused(tmp_path):
    from .original_format import write_original_checkpoint

    path = write_original_checkpoint(tmp_path / "ckpt.pth", dilation=True)
    with pytest.raises(ConversionError, match="dilation"):
        convert_checkpoint(
            TransvgConverter(), path, tmp_path / "out", original_config={"bert_config": {"num_attention_heads": 2}}
        )


@pytest.mark.parametrize("text_feature_layer", [None, 1])
def test_synthetic_original_checkpoint_round_trip(tmp_path, text_feature_layer):
    """An original-format container written from a vlzoo model (another geometry than the fixture: no pooler-free
    shortcut, 3 DETR heads, BERT layer 1 of 2 feeding the fusion) converts back to the same outputs."""
    from .original_format import write_original_checkpoint

    model, path = write_original_checkpoint(
        tmp_path / "ckpt.pth", text_feature_layer=text_feature_layer, return_model=True
    )
    result = convert_checkpoint(
        TransvgConverter(), path, tmp_path / "out", original_config={"bert_config": {"num_attention_heads": 2}}
    )
    assert result.config.text_feature_layer == text_feature_layer
    assert result.neutralised == () or all("Namespace" in n or "argparse" in n for n in result.neutralised)
    converted = AutoModelForVisualGrounding.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    from tests.models.transvg.tester import grounding_inputs

    inputs = grounding_inputs(model.config, batch=2)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        torch.testing.assert_close(converted(**inputs).pred_boxes, model.eval()(**inputs).pred_boxes, rtol=0, atol=0)


def test_namespace_is_never_executed(tmp_path):
    from .original_format import write_original_checkpoint

    path = write_original_checkpoint(tmp_path / "ckpt.pth")
    from vlzoo.conversion import load_checkpoint

    loaded = load_checkpoint(path)
    assert isinstance(loaded.extra["args"], (dict, argparse.Namespace)) or hasattr(loaded.extra["args"], "__dict__")
