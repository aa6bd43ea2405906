"""The issue's bad inputs not covered next to their feature: empty expressions, degenerate and out-of-image boxes in
training rows and labels, and images smaller than the backbone stride (or than one patch)."""

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the families and the pipelines)
from tests.models.transvg import tester as transvg_tester
from tests.models.transvg_pp import tester as transvg_pp_tester
from vlzoo.models.transvg import TransvgForVisualGrounding, TransvgProcessor
from vlzoo.models.transvg.family import grounding_objective
from vlzoo.models.transvg.processing_transvg import bert_uncased_tokenizer
from vlzoo.models.transvg_pp import TransvgPlusPlusForVisualGrounding

MODELS = {
    "transvg": (TransvgForVisualGrounding, transvg_tester.tiny_config),
    "transvg_pp": (TransvgPlusPlusForVisualGrounding, transvg_pp_tester.tiny_config),
}


@pytest.fixture(scope="module", params=list(MODELS))
def folder(request, tmp_path_factory):
    torch.manual_seed(0)
    model_class, build = MODELS[request.param]
    config = build()
    path = tmp_path_factory.mktemp(request.param)
    model_class(config).save_pretrained(path)
    TransvgProcessor.from_model_config(config).save_pretrained(path)
    return path


def test_empty_expression():
    # The processor encodes it as the original does ([CLS] [SEP] and padding); the pipeline and training refuse it.
    processor = TransvgProcessor(tokenizer=bert_uncased_tokenizer(6))
    encoded = processor(text=["", "a dog"])
    assert encoded["input_ids"][0].tolist() == [101, 102, 0, 0, 0, 0]
    assert encoded["attention_mask"][0].tolist() == [1, 1, 0, 0, 0, 0]
    objective = grounding_objective(processor)
    row = {"image": Image.new("RGB", (40, 30)), "expression": "  ", "bbox": [1, 2, 10, 20]}
    with pytest.raises(ValueError, match="non-empty expression"):
        objective.collate([row])


def test_pipeline_refuses_an_empty_expression(folder):
    grounder = pipeline("visual-grounding", model=str(folder))
    with pytest.raises(ValueError, match="empty"):
        grounder(Image.new("RGB", (40, 30)), " ")


def test_degenerate_and_out_of_image_boxes_in_training_rows():
    objective = grounding_objective(TransvgProcessor(tokenizer=bert_uncased_tokenizer(8)))
    image = Image.new("RGB", (60, 40))  # on the 640 canvas: 640 x 427, 106 rows of padding above
    for box in ([10, 5, 10, 20], [30, 5, 20, 20], [0, 0, float("nan"), 4], [1, 2, 3]):
        with pytest.raises(ValueError, match="box"):
            objective.collate([{"image": image, "expression": "a dog", "bbox": box}])  # message names the box
    # Beyond the canvas: refused with the mapped box; into the padding only: still on the canvas, kept.
    with pytest.raises(ValueError, match="inside the canvas"):
        objective.collate([{"image": image, "expression": "a dog", "bbox": [50, 5, 200, 20]}])
    kept = objective.collate([{"image": image, "expression": "a dog", "bbox": [50, -5, 60, 10]}])["labels"]
    assert kept.shape == (1, 4) and (kept[:, 2:] > 0).all()


@pytest.mark.parametrize("key", list(MODELS))
def test_degenerate_labels_given_to_the_model(key):
    model_class, build = MODELS[key]
    model = model_class(build()).eval()
    inputs = (transvg_tester if key == "transvg" else transvg_pp_tester).grounding_inputs(model.config, batch=2)
    for labels in ([[0.5, 0.5, 0.2, -0.1]] * 2, [[0.5, float("inf"), 0.2, 0.2]] * 2):
        with pytest.raises(ValueError, match="positive width and height"):
            model(**inputs, labels=torch.tensor(labels))
    # boxes reaching outside the canvas are valid targets for the released loss (L1 + GIoU stay finite)
    loss = model(**inputs, labels=torch.tensor([[0.9, 0.5, 0.6, 0.3]] * 2)).loss
    assert torch.isfinite(loss)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (31, 5)])
def test_images_smaller_than_the_stride_are_letterboxed_to_the_canvas(folder, size):
    # The processor scales every image to the canvas (64 px here), so a 1 x 1 image reaches the backbone at 64 px
    # (TransVG: stride 32; TransVG++: 16 px patches) and the box comes back inside the original pixels.
    grounder = pipeline("visual-grounding", model=str(folder))
    box = grounder(Image.new("RGB", size, "red"), "a red dot")["box"]
    assert 0 <= box["xmin"] <= box["xmax"] <= size[0] and 0 <= box["ymin"] <= box["ymax"] <= size[1]


@pytest.mark.parametrize("key", list(MODELS))
def test_pixel_values_smaller_than_the_canvas_are_refused(key):
    # Given to the model directly, without the processor: a clear error names the expected size.
    model_class, build = MODELS[key]
    model = model_class(build()).eval()
    inputs = (transvg_tester if key == "transvg" else transvg_pp_tester).grounding_inputs(model.config, batch=2)
    small = {**inputs, "pixel_values": torch.randn(2, 3, 16, 16), "pixel_mask": None}
    with pytest.raises(ValueError, match="64"):
        model(**small)
