"""Acc@0.5 as TransVG evaluates it: the fixture's IoU and accuracy, the clamp on the padded canvas (not the image),
the grounding objective and `evaluate_grounding` on the same model, and `vlzoo eval` for grounding folders."""

import pytest
import torch
from accelerate import Accelerator
from PIL import Image

from tests.models.transvg_pp.tester import tiny_config
from vlzoo.evaluation import grounding_iou
from vlzoo.evaluation.grounding import (
    canvas_grounding_accuracy,
    canvas_grounding_iou,
    evaluate_grounding,
)
from vlzoo.layers.box_ops import convert_boxes
from vlzoo.models.transvg import TransvgProcessor
from vlzoo.models.transvg.family import grounding_objective
from vlzoo.models.transvg_pp import TransvgPlusPlusForVisualGrounding
from vlzoo.registry import DEFAULT_EVALUATIONS, get_family


def test_fixture_iou_and_accuracy(fixture_io):
    """`utils/eval_utils.trans_vg_eval_val` of the original on the fixture's predictions and targets."""
    io = fixture_io("transvg/transvg-tiny")
    iou = canvas_grounding_iou(io["output.pred_boxes"], io["input.target_boxes"])
    diff = float((torch.from_numpy(iou) - io["output.iou"].double()).abs().max())
    print(f"transvg-tiny IoU max abs diff: {diff:.2e}")
    assert diff <= 1e-6
    accuracy = canvas_grounding_accuracy(io["output.pred_boxes"], io["input.target_boxes"])
    assert accuracy == pytest.approx(float(io["output.accu"]), abs=1e-7)


def test_predictions_are_clamped_to_the_canvas_not_the_image():
    # An image filling x in [0.3, 0.7] of the canvas; the prediction reaches into the left padding.
    target = torch.tensor([[0.4, 0.375, 0.2, 0.25]])  # corners (0.3, 0.25)-(0.5, 0.5)
    prediction = torch.tensor([[0.25, 0.375, 0.5, 0.25]])  # corners (0.0, 0.25)-(0.5, 0.5)
    on_canvas = canvas_grounding_iou(prediction, target)[0]
    clipped_to_image = grounding_iou([[0.3, 0.25, 0.5, 0.5]], [[0.3, 0.25, 0.5, 0.5]])[0]
    assert on_canvas == pytest.approx(grounding_iou([[0.0, 0.25, 0.5, 0.5]], [[0.3, 0.25, 0.5, 0.5]])[0])
    assert on_canvas < 0.5 < clipped_to_image
    # Beyond the canvas the corners are clamped to it: the same IoU as the box ending at the canvas border.
    outside = canvas_grounding_iou(torch.tensor([[0.5, 0.5, 1.6, 0.5]]), torch.tensor([[0.5, 0.5, 1.0, 0.5]]))
    assert outside[0] == pytest.approx(1.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="pred_boxes"):
        canvas_grounding_iou([[0.5, 0.5, 0.2]], [[0.5, 0.5, 0.2, 0.2]])
    with pytest.raises(ValueError, match="target_boxes"):
        canvas_grounding_iou([[0.5, 0.5, 0.2, 0.2]], [[0.5, 0.5, 0.2]])
    with pytest.raises(ValueError, match="NaN"):
        canvas_grounding_iou([[0.5, float("nan"), 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]])
    with pytest.raises(ValueError, match="threshold"):
        canvas_grounding_accuracy([[0.5, 0.5, 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]], threshold=1.5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny TransVG++ whose boxes cover about two thirds of the canvas around its centre (so IoUs are not all 0)."""
    torch.manual_seed(0)
    config = tiny_config()
    model = TransvgPlusPlusForVisualGrounding(config).eval()
    with torch.no_grad():
        model.bbox_head.layers[-1].weight.mul_(0.1)
        model.bbox_head.layers[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.7, 0.7]))
    path = tmp_path_factory.mktemp("transvg_pp")
    model.save_pretrained(path)
    TransvgProcessor.from_model_config(config).save_pretrained(path)
    return path


def _rows(square: bool) -> dict:
    sizes = [(48, 48), (40, 40), (64, 64)] if square else [(80, 40), (30, 60), (64, 40)]
    images = [Image.new("RGB", size, color) for size, color in zip(sizes, ("red", "green", "blue"), strict=True)]
    boxes = [[w * 0.3, h * 0.35, w * 0.65, h * 0.7] for w, h in sizes]
    return {"image": images, "expression": ["the red one", "a green square", "blue"], "bbox": boxes}


def _objective_metrics(folder, rows) -> dict:
    model = TransvgPlusPlusForVisualGrounding.from_pretrained(folder).eval()
    objective = grounding_objective(TransvgProcessor.from_pretrained(folder))
    listed = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    return objective.evaluate(model, listed, Accelerator(cpu=True), batch_size=2)


def _raw_canvas_iou(folder, rows):
    model = TransvgPlusPlusForVisualGrounding.from_pretrained(folder).eval()
    processor = TransvgProcessor.from_pretrained(folder)
    with torch.no_grad():
        boxes = model(**processor(images=rows["image"], text=rows["expression"])).pred_boxes
    sizes = [(image.height, image.width) for image in rows["image"]]
    targets = processor.image_processor.transform_boxes(torch.tensor(rows["bbox"]), sizes)
    return boxes, canvas_grounding_iou(boxes, targets)


@pytest.mark.parametrize("square", [True, False], ids=["square", "padded"])
def test_objective_scores_raw_predictions_on_the_canvas(folder, square):
    rows = _rows(square)
    boxes, iou = _raw_canvas_iou(folder, rows)
    metrics = _objective_metrics(folder, rows)
    assert 0 < iou.mean() < 1
    assert metrics["eval_mean_iou"] == pytest.approx(float(iou.mean()), abs=1e-6)
    assert metrics["eval_grounding_accuracy"] == pytest.approx(float((iou >= 0.5).mean()))
    if not square:  # the boxes do reach into the padding, so the canvas clamp is what is tested
        corners = convert_boxes(boxes, "cxcywh", "xyxy")
        assert ((corners[:, 0] < 0.25) | (corners[:, 1] < 0.25)).any()


def test_evaluate_grounding_through_the_pipeline(folder):
    square = _rows(True)
    _, iou = _raw_canvas_iou(folder, square)
    result = evaluate_grounding(folder, square, batch_size=2)
    assert result.mean_iou == pytest.approx(float(iou.mean()), abs=1e-5)
    assert result.accuracy == pytest.approx(float((iou >= 0.5).mean()))
    assert [r["expression"] for r in result.results] == square["expression"]
    # Padded images: the pipeline's boxes end at the image border, so they never score below the canvas clamp.
    padded = _rows(False)
    _, canvas_iou = _raw_canvas_iou(folder, padded)
    assert (evaluate_grounding(folder, padded).iou >= canvas_iou - 1e-6).all()
    with pytest.raises(ValueError, match="bbox"):
        evaluate_grounding(folder, {"image": square["image"], "expression": square["expression"]})
    with pytest.raises(ValueError, match="threshold"):
        evaluate_grounding(folder, square, threshold=0)


@pytest.mark.parametrize("key", ["transvg", "transvg_pp"])
def test_vlzoo_eval_uses_the_shared_grounding_evaluation(key):
    assert get_family(key).evaluation("grounding") is DEFAULT_EVALUATIONS["grounding"]


def test_vlzoo_eval_command_on_a_grounding_folder(folder, capsys):
    from vlzoo.cli import main

    assert main(["eval", str(folder), "--num-test", "4"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("grounding Acc@0.5 on shapes/test referring expressions (4 images): ")
    value = float(line.rsplit(" ", 1)[1])
    assert 0.0 <= value <= 1.0
