"""Parity reports: tolerance, shape and missing-name failures, JSON and table output, io.safetensors splitting."""

import json
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch

from vlzoo.conversion import ParityReport, compare_outputs, load_io_tensors


def test_within_and_beyond_tolerance():
    expected = {"logits": torch.tensor([[1.0, 2.0]]), "ids": torch.tensor([3, 4])}
    actual = {"logits": torch.tensor([[1.0 + 5e-5, 2.0]]), "ids": torch.tensor([3, 4]), "extra": torch.zeros(1)}
    report = compare_outputs(expected, actual, atol=1e-4)
    assert report.passed
    assert report.outputs[0].max_abs_diff == pytest.approx(5e-5, rel=1e-2)
    assert [o.name for o in report.outputs] == ["logits", "ids"]
    strict = compare_outputs(expected, actual, atol=1e-5)
    assert not strict.passed
    assert strict.failures[0].name == "logits"
    assert "> atol 1e-05" in strict.failures[0].message


def test_shape_mismatch_missing_name_and_nan_fail():
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(2), "c": torch.tensor([1.0, float("nan")])}
    actual = {"a": torch.zeros(3, 2), "c": torch.tensor([1.0, 2.0])}
    report = compare_outputs(expected, actual)
    assert not report.passed
    messages = {o.name: o.message for o in report.outputs}
    assert messages["a"] == "shape [3, 2], expected [2, 3]"
    assert messages["b"] == "missing from the model outputs"
    assert "non-finite" in messages["c"]
    # NaN where the reference also has NaN is agreement.
    same_nan = compare_outputs({"c": torch.tensor([float("nan"), 1.0])}, {"c": torch.tensor([float("nan"), 1.0])})
    assert same_nan.passed


def test_integer_outputs_must_match_exactly():
    report = compare_outputs({"ids": torch.tensor([5, 6])}, {"ids": torch.tensor([5, 7])}, atol=0.5)
    assert not report.passed and report.outputs[0].max_abs_diff == 1.0


def test_nothing_to_compare_is_not_a_pass():
    assert not compare_outputs({}, {"a": torch.zeros(1)}).passed
    with pytest.raises(ValueError, match="atol"):
        compare_outputs({}, {}, atol=-1.0)


def test_json_and_table(tmp_path: Path):
    report = compare_outputs({"a": torch.ones(2, 2), "b": torch.ones(1)}, {"a": torch.ones(2, 2)}, atol=1e-4)
    report.skipped = ["loss"]
    report.metadata = {"family": "Tiny", "checkpoint": "model.pth"}
    path = tmp_path / "parity.json"
    report.to_json(path)
    data = json.loads(path.read_text())
    assert data["passed"] is False and data["atol"] == 1e-4
    assert data["outputs"]["a"] == {"shape": [2, 2], "max_abs_diff": 0.0, "passed": True}
    assert data["outputs"]["b"]["passed"] is False and data["outputs"]["b"]["max_abs_diff"] is None
    assert data["skipped"] == ["loss"] and data["metadata"]["family"] == "Tiny"
    table = report.format()
    lines = table.splitlines()
    assert lines[0].split() == ["output", "shape", "max", "|diff|", "result"]
    assert lines[1].split()[:4] == ["a", "2x2", "0.000e+00", "ok"]
    assert "FAIL: missing from the model outputs" in lines[2]
    assert lines[-1] == "parity FAILED at atol=0.0001 (1/2 ok); not compared: loss"
    assert isinstance(report, ParityReport) and not math.isnan(report.atol)


def test_load_io_tensors(tmp_path: Path):
    path = tmp_path / "io.safetensors"
    safetensors.torch.save_file(
        {"input.pixel_values": torch.zeros(1, 3), "output.image_embeds.raw": torch.ones(2)}, str(path)
    )
    inputs, outputs = load_io_tensors(path)
    assert list(inputs) == ["pixel_values"] and list(outputs) == ["image_embeds.raw"]
    assert torch.equal(outputs["image_embeds.raw"], torch.ones(2))
    safetensors.torch.save_file({"input.a": torch.zeros(1), "weights": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="key 'weights'"):
        load_io_tensors(path)
    safetensors.torch.save_file({"input.a": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="no 'output"):
        load_io_tensors(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_io_tensors(tmp_path / "missing.safetensors")
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_io_tensors(path)


def test_shipped_fixture_splits_into_inputs_and_outputs():
    fixture = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "msclip" / "msclip-s-tiny"
    if not fixture.is_dir():
        pytest.skip(reason="../shared/fixtures/msclip is not available next to the repository")
    inputs, outputs = load_io_tensors(fixture / "io.safetensors")
    assert {"input_ids", "pixel_values"} <= set(inputs)
    assert "logits_per_image" in outputs
    # Comparing the reference with itself passes; with a perturbation it fails.
    assert compare_outputs(outputs, outputs).passed
    moved = {k: v + 1e-3 if v.is_floating_point() else v for k, v in outputs.items()}
    assert not compare_outputs(outputs, moved).passed
