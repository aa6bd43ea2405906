"""RefCOCO-style annotations to TransVG++ training and Acc@0.5: `read_refcoco` -> grounding rows -> the family's
objective through `vlzoo.training.train` -> the saved folder scored by `evaluate_grounding` (the documented call;
`vlzoo train` reads shapes and caption files only)."""

import json

import pytest
import torch
from PIL import Image

from tests.models.transvg_pp.tester import tiny_config
from vlzoo.data import read_refcoco, task_dataset
from vlzoo.evaluation.grounding import evaluate_grounding
from vlzoo.models.transvg import TransvgProcessor
from vlzoo.registry import get_family
from vlzoo.training import TrainingArguments, train


@pytest.fixture
def refcoco(tmp_path):
    images = tmp_path / "train2014"
    images.mkdir()
    for name, size in (("a.jpg", (60, 40)), ("b.jpg", (32, 48))):
        Image.new("RGB", size, "gray").save(images / name)
    refs = [
        {"ref_id": 0, "ann_id": 1, "image_id": 10, "split": "train", "sentences": [{"sent": "left red thing"}]},
        {"ref_id": 1, "ann_id": 2, "image_id": 10, "split": "train", "sentences": [{"sent": "the dog"}]},
        {"ref_id": 2, "ann_id": 3, "image_id": 11, "split": "testA", "sentences": [{"sent": "man on the right"}]},
    ]
    instances = {
        "images": [{"id": 10, "file_name": "a.jpg"}, {"id": 11, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 10, "bbox": [2.7, 3.2, 20.9, 10.5]},
            {"id": 2, "image_id": 10, "bbox": [30.0, 5.0, 12.0, 30.0]},
            {"id": 3, "image_id": 11, "bbox": [10.6, 8.4, 15.5, 20.2]},
        ],
    }
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    return tmp_path / "refs.json", tmp_path / "instances.json", images


def test_integer_boxes_truncate_like_the_original_loader(refcoco):
    rows = task_dataset(read_refcoco(*refcoco, split="train"), "grounding")
    exact = task_dataset(read_refcoco(*refcoco, split="train", integer_boxes=True), "grounding")
    torch.testing.assert_close(torch.tensor(rows["bbox"][0]), torch.tensor([2.7, 3.2, 23.6, 13.7]))
    # TransVG: bbox = int(x, y, w, h); x2 = x + w, y2 = y + h
    assert exact["bbox"][0] == [2.0, 3.0, 22.0, 13.0]
    assert exact["expression"] == ["left red thing", "the dog"]
    with pytest.raises(TypeError, match="integer_boxes"):
        read_refcoco(*refcoco, integer_boxes="yes")


def test_train_and_evaluate_transvg_pp_from_refcoco(refcoco, tmp_path):
    train_rows = task_dataset(read_refcoco(*refcoco, split="train", integer_boxes=True), "grounding")
    test_rows = task_dataset(read_refcoco(*refcoco, split="testA", integer_boxes=True), "grounding")
    family = get_family("transvg_pp")
    config = tiny_config()
    torch.manual_seed(0)
    model = family.head("grounding")(config)
    processor = TransvgProcessor.from_model_config(config)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_batch_size=2, seed=0)
    result = train(model, family.objective("grounding", processor), train_rows, args=args, processor=processor)
    assert result.global_step == 2 and all(
        torch.isfinite(torch.tensor([loss for _, loss in result.train_loss_history]))
    )
    scores = evaluate_grounding(result.final_model_dir, test_rows)
    assert len(scores.iou) == 1 and 0.0 <= scores.accuracy <= 1.0
    box = scores.results[0]["box"]
    assert 0 <= box["xmin"] <= box["xmax"] <= 32 and 0 <= box["ymin"] <= box["ymax"] <= 48
