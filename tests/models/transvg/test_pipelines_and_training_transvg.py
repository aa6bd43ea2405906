"""The `visual-grounding` pipeline and `vlzoo train` on TransVG and TransVG++ folders (tiny models, real tokenizer)."""

import json

import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the families and the pipelines)
from tests.models.transvg import tester as transvg_tester
from tests.models.transvg_pp import tester as transvg_pp_tester
from vlzoo.models.transvg import TransvgForVisualGrounding, TransvgProcessor
from vlzoo.models.transvg_pp import TransvgPlusPlusForVisualGrounding
from vlzoo.pipelines.visual_grounding import draw_grounding

FULL_VOCAB = {"vocab_size": 30522}
MODELS = {
    "transvg": (TransvgForVisualGrounding, transvg_tester.tiny_config),
    "transvg_pp": (TransvgPlusPlusForVisualGrounding, transvg_pp_tester.tiny_config),
}


def _config(key):
    _, build = MODELS[key]
    text = {**build().text_config.to_dict(), **FULL_VOCAB}
    return build(text_config={k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                    "num_attention_heads", "intermediate_size", "max_position_embeddings")})  # fmt: skip


@pytest.fixture(scope="module", params=list(MODELS))
def folder(request, tmp_path_factory):
    torch.manual_seed(0)
    model_class, _ = MODELS[request.param]
    config = _config(request.param)
    path = tmp_path_factory.mktemp(request.param)
    model_class(config).save_pretrained(path)
    TransvgProcessor.from_model_config(config).save_pretrained(path)
    return path


IMAGES = [Image.new("RGB", (90, 40), (200, 30, 30)), Image.new("L", (30, 70), 120)]
TEXTS = ["the red box on the left", "a gray thing"]


def _manual(folder):
    """The boxes computed by hand: processor -> model -> post_process_grounding."""
    model = TransvgForVisualGrounding if "transvg_pp" not in folder.name else TransvgPlusPlusForVisualGrounding
    model = model.from_pretrained(folder).eval()
    processor = TransvgProcessor.from_pretrained(folder)
    inputs = processor(images=IMAGES, text=TEXTS)
    with torch.no_grad():
        boxes = model(**inputs).pred_boxes
    return processor.image_processor.post_process_grounding(boxes, [(i.height, i.width) for i in IMAGES])


def test_visual_grounding_pipeline_gives_original_pixel_boxes(folder, tmp_path):
    grounder = pipeline("visual-grounding", model=str(folder))
    results = grounder(IMAGES, TEXTS)
    expected = _manual(folder)
    assert [r["expression"] for r in results] == TEXTS
    for result, box, image in zip(results, expected, IMAGES, strict=True):
        found = [result["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
        torch.testing.assert_close(torch.tensor(found), box, rtol=0, atol=1e-3)
        assert 0 <= found[0] <= found[2] <= image.width and 0 <= found[1] <= found[3] <= image.height
    drawn = draw_grounding(IMAGES[0], results[0], tmp_path / "boxes.png")
    assert drawn.size == IMAGES[0].size and (tmp_path / "boxes.png").is_file()


def test_pipeline_accepts_expressions_longer_than_the_query_length(folder):
    grounder = pipeline("visual-grounding", model=str(folder))
    long = " ".join(["the small red square next to the big blue circle"] * 3)
    result = grounder(IMAGES[0], long)
    assert set(result["box"]) == {"xmin", "ymin", "xmax", "ymax"}


@pytest.mark.parametrize("key", list(MODELS))
def test_vlzoo_train_grounding_on_shapes(key, tmp_path):
    from vlzoo.training.recipe import run_training

    config = _config(key).to_diff_dict()
    text = config["text_config"]
    config["text_config"] = {k: text[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                  "num_attention_heads", "intermediate_size", "max_position_embeddings")}  # fmt: skip
    keep = {"image_size", "max_query_length", "text_config"}
    if key == "transvg":
        keep |= {"backbone_config", "visual_encoder_config", "fusion_encoder_config"}
    else:
        keep |= {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "language_layers",
                 "box_head_hidden_size"}  # fmt: skip
    overrides = [
        f"model.family={key}",
        "model.task=grounding",
        f"model.config={json.dumps({k: v for k, v in config.items() if k in keep})}",
        "data.num_train=16",
        "data.num_validation=8",
        "data.image_size=64",
        f"training.output_dir={tmp_path / 'run'}",
        "training.max_steps=3",
        "training.per_device_batch_size=4",
        "training.eval_batch_size=4",
        "training.eval_every_steps=3",
        "training.learning_rate=1e-3",
    ]
    result = run_training(None, overrides)
    assert result.global_step == 3
    losses = [loss for _, loss in result.train_loss_history]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    metrics = result.eval_history[-1][1]
    assert 0.0 <= metrics["eval_grounding_accuracy"] <= 1.0
    reloaded = pipeline("visual-grounding", model=str(result.final_model_dir))
    assert "box" in reloaded(IMAGES[0], "a square")
