"""GroundingObjective: boxes mapped onto a letterboxed canvas, the transform contract, errors, and training a toy
box head with Acc@0.5 checked against the metric function."""

import pytest
import torch
from PIL import Image

from vlzoo.data import task_dataset
from vlzoo.evaluation import grounding_accuracy
from vlzoo.layers.box_ops import convert_boxes
from vlzoo.losses import box_regression_loss
from vlzoo.training import EvaluatingObjective, train
from vlzoo.training.objectives import GroundingObjective

from .toy import toy_args
from .toy_heads import LetterboxProcessor, ToyVisionLanguageModel, shapes_data, single_thread, words_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    scenes = shapes_data(tmp_path_factory.mktemp("shapes"))
    return {
        "expressions": task_dataset(scenes, "grounding"),
        "processor": LetterboxProcessor(words_of(scenes["train"])),
    }


def test_targets_are_normalised_boxes_on_the_padded_canvas(data):
    objective = GroundingObjective(data["processor"])
    assert isinstance(objective, EvaluatingObjective)
    # 64 x 32 image -> 32 x 16 on the 32 x 32 canvas, 8 rows of padding above: pixel box (16, 8)-(48, 24) becomes
    # (8, 12)-(24, 20) on the canvas, i.e. centre (0.5, 0.5), size (0.5, 0.25).
    wide = {"image": Image.new("RGB", (64, 32), "red"), "expression": "the red square", "bbox": [16, 8, 48, 24]}
    # 20 x 40 image -> 16 x 32, 8 columns of padding on the left: (0, 0)-(10, 40) becomes (8, 0)-(16, 32).
    tall = {"image": Image.new("RGB", (20, 40), "blue"), "expression": "the blue square", "bbox": [0, 0, 10, 40]}
    batch = objective.collate([wide, tall])
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "pixel_mask", "labels"}
    assert batch["labels"].dtype == torch.float32
    torch.testing.assert_close(batch["labels"], torch.tensor([[0.5, 0.5, 0.5, 0.25], [12 / 32, 0.5, 8 / 32, 1.0]]))
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["pixel_mask"].sum(dim=(1, 2)).tolist() == [32 * 16, 16 * 32]

    # A box_transform option takes precedence over the processor's method.
    calls = []

    def halve(boxes, image_sizes):
        calls.append(image_sizes)
        return torch.tensor([[0.5, 0.5, 0.5, 0.5]] * len(boxes))

    batch = GroundingObjective(data["processor"], box_transform=halve).collate([wide, tall])
    assert calls == [[(32, 64), (40, 20)]]  # (height, width) of the original images
    assert torch.equal(batch["labels"], torch.full((2, 4), 0.5))


def test_bad_rows_and_transforms_raise(data):
    processor = data["processor"]
    objective = GroundingObjective(processor)
    row = {"image": Image.new("RGB", (32, 32)), "expression": "the red circle", "bbox": [4, 4, 12, 12]}
    with pytest.raises(ValueError, match=r"no column\(s\) \['bbox'\]"):
        objective.collate([{k: v for k, v in row.items() if k != "bbox"}])
    with pytest.raises(ValueError, match="x0 < x1 and y0 < y1"):
        objective.collate([{**row, "bbox": [4, 4, 3, 12]}])
    with pytest.raises(ValueError, match="pixel corners"):
        objective.collate([{**row, "bbox": [4, 4, 12]}])
    with pytest.raises(TypeError, match="must hold PIL images"):
        objective.collate([{**row, "image": torch.zeros(3, 32, 32)}])
    with pytest.raises(ValueError, match="non-empty expression"):
        objective.collate([{**row, "expression": ""}])
    outside = GroundingObjective(processor, box_transform=lambda boxes, sizes: boxes)  # forgot to normalise
    with pytest.raises(ValueError, match=r"not a normalised \(cx, cy, w, h\) box"):
        outside.collate([row])
    off_canvas = GroundingObjective(processor, box_transform=lambda boxes, sizes: torch.tensor([[0.9, 0.5, 0.4, 0.2]]))
    with pytest.raises(ValueError, match="inside the canvas"):  # centre inside, right edge at 1.1
        off_canvas.collate([row])
    rounding = GroundingObjective(
        processor, box_transform=lambda boxes, sizes: torch.tensor([[0.75, 0.5, 0.5001, 1.0]])
    )
    target = rounding.collate([row])["labels"][0]  # a border box a rounding error too wide is clipped to the canvas
    torch.testing.assert_close(target, torch.tensor([0.749975, 0.5, 0.50005, 1.0]), atol=2e-6, rtol=0)
    flat = GroundingObjective(processor, box_transform=lambda boxes, sizes: boxes[:, :3])
    with pytest.raises(ValueError, match=r"must return a \[1, 4\] tensor"):
        flat.collate([row])

    class NoBoxes:
        def __call__(self, **kwargs):
            return processor(**kwargs)

    with pytest.raises(TypeError, match="has no transform_boxes method"):
        GroundingObjective(NoBoxes())
    with pytest.raises(ValueError, match="threshold must be a number"):
        GroundingObjective(processor, threshold=0)
    with pytest.raises(ValueError, match="both 0"):
        GroundingObjective(processor, l1_weight=0, giou_weight=0)


def test_trains_and_reports_acc_at_half(data, tmp_path):
    processor, expressions = data["processor"], data["expressions"]
    objective = GroundingObjective(processor, l1_weight=1.0, giou_weight=1.0)  # TransVG's weights
    model = ToyVisionLanguageModel(len(processor.tokenizer))
    args = toy_args(tmp_path, per_device_batch_size=16, num_epochs=6, eval_batch_size=6)
    result = train(model, objective, expressions["train"], args=args, eval_dataset=expressions["validation"])

    losses = [loss for _, loss in result.train_loss_history]
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8  # per-batch losses are noisy: compare 8-step means
    metrics = result.eval_history[-1][1]

    rows = list(expressions["validation"])
    batch = objective.collate(rows)
    model.eval()
    with torch.no_grad():
        predictions = model(**{k: v for k, v in batch.items() if k != "labels"}).pred_boxes
    targets = batch["labels"]
    expected = box_regression_loss(predictions, targets, l1_weight=1.0, giou_weight=1.0)
    for name in ("loss", "loss_l1", "loss_giou"):
        assert metrics[f"eval_{name}"] == pytest.approx(expected[name].item(), rel=1e-5)
    corners = convert_boxes(predictions, "cxcywh", "xyxy").clamp(0, 1)
    target_corners = convert_boxes(targets, "cxcywh", "xyxy")
    assert metrics["eval_grounding_accuracy"] == pytest.approx(grounding_accuracy(corners, target_corners))
    assert metrics["eval_grounding_accuracy"] == pytest.approx(
        grounding_accuracy(predictions, targets, box_format="cxcywh")
    )
    assert 0 < metrics["eval_mean_iou"] < 1
    assert metrics["eval_grounding_accuracy"] > 0.15  # a box drawn at random scores about 0.03
