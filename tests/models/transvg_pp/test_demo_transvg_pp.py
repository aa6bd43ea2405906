"""`vlzoo demo grounding` on a tiny budget: the alias, the one summary line, the figure and results.json; the
baseline is the mean training box scored like the model."""

import json
import re

import pytest
import torch
from PIL import Image

from vlzoo.cli import build_parser, main
from vlzoo.demo import demo_family
from vlzoo.registry import DemoSpec

LINE = re.compile(r"^grounding acc@0\.5: transvg_pp=(\d\.\d{3}) baseline=(\d\.\d{3})$")


def test_grounding_is_an_alias_of_the_transvg_pp_demo():
    assert demo_family("grounding").key == "transvg_pp"
    assert demo_family("transvg_pp") is demo_family("grounding")
    assert demo_family(None).key == "ms_clip"  # `vlzoo demo` alone still runs MS-CLIP's
    assert build_parser().parse_args(["demo", "grounding"]).family == "grounding"
    with pytest.raises(ValueError, match="aliases"):
        DemoSpec(
            description="x", task="grounding", models={"a": dict}, processor=dict, evaluate=dict, summary="",
            aliases=("Not A Name",),
        )  # fmt: skip


def test_demo_grounding_tiny_budget(tmp_path, capsys):
    output = tmp_path / "demo"
    budget = ["--max-steps", "2", "--batch-size", "4", "--num-train", "6", "--num-test", "3"]
    assert main(["demo", "grounding", "--output-dir", str(output), *budget]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert LINE.match(lines[-1]), lines[-1]
    assert lines[-3] == f"saved: {output}/transvg_pp; figure: {output}/grounding.png"

    results = json.loads((output / "results.json").read_text())
    accuracy = results["grounding_accuracy"]["transvg_pp"]
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= results["baseline"] <= 1.0
    assert LINE.match(lines[-1]).groups() == (f"{accuracy:.3f}", f"{results['baseline']:.3f}")
    assert results["max_steps"] == 2 and results["batch_size"] == 4 and results["num_train"] == 6
    details = results["details"]["transvg_pp"]
    assert details["accuracy"] == accuracy and 0.0 <= details["mean_iou"] <= 1.0
    examples = details["examples"]
    assert 1 <= len(examples) <= 3 and all(len(e["truth"]) == 4 and len(e["prediction"]) == 4 for e in examples)

    with Image.open(output / "grounding.png") as figure:
        assert figure.format == "PNG" and figure.width > 3 * 64 and figure.height > 3 * 64
    assert (output / "transvg_pp" / "config.json").is_file()


def test_baseline_is_the_mean_training_box():
    from vlzoo.data import load_shapes, task_dataset
    from vlzoo.evaluation.grounding import canvas_grounding_accuracy
    from vlzoo.models.transvg_pp.demo_transvg_pp import DEMO_IMAGE_SIZE, demo_references

    data = load_shapes(num_train=20, num_validation=1, num_test=10, image_size=DEMO_IMAGE_SIZE)
    baseline = demo_references(data["test"], data["train"])["baseline"]
    train, test = task_dataset(data["train"], "grounding"), task_dataset(data["test"], "grounding")
    # Square 64 px scenes on the 64 px canvas: the canvas box is the pixel box / 64.
    mean = torch.tensor(train["bbox"]).mean(dim=0) / DEMO_IMAGE_SIZE
    mean_cxcywh = torch.cat([(mean[:2] + mean[2:]) / 2, mean[2:] - mean[:2]])
    truth = torch.tensor(test["bbox"]) / DEMO_IMAGE_SIZE
    truth_cxcywh = torch.cat([(truth[:, :2] + truth[:, 2:]) / 2, truth[:, 2:] - truth[:, :2]], dim=1)
    expected = canvas_grounding_accuracy(mean_cxcywh.expand(len(truth), 4), truth_cxcywh)
    assert baseline == pytest.approx(expected)
