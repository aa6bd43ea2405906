"""`vlzoo demo grounding` (or `vlzoo demo transvg_pp`): a small TransVG++ trained on the shapes referring expressions,
saved, reloaded through the `visual-grounding` pipeline and scored by TransVG's Acc@0.5 on the test split, against
the best fixed box (the mean training box on the canvas)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from ...registry import DemoScore

DEMO_IMAGE_SIZE = 64
DEMO_PATCH_SIZE = 8
DEMO_QUERY_LENGTH = 12  # the longest shapes expression is 11 word pieces with [CLS] and [SEP]
DEMO_WIDTH = 64
# one or two objects per scene: the expression picks one of them (four is beyond a few CPU minutes from scratch)
DEMO_MAX_OBJECTS = 2
FIGURE_EXAMPLES = 8
FIGURE_SCALE = 3
EVALUATION_BATCH = 64
# `vlzoo demo`'s wall-time guard for the training run, so the demo stays within about 5 minutes on a loaded machine
TRAINING_SECONDS = 240


def demo_config() -> Any:
    """A small TransVG++: ViT 64 wide, 8 heads, 4 blocks with the text cross-attention in blocks 1 and 3, over 8 x 8
    patches of the 64 px canvas, positions started from the 2-D sine table (a from-scratch ViT otherwise sits at the
    mean box for a thousand steps before it localises anything); BERT 64 wide with 2 layers on the full uncased
    vocabulary; no dropout."""
    from .configuration_transvg_pp import TransvgPlusPlusConfig

    return TransvgPlusPlusConfig(
        text_config={
            "vocab_size": 30522,
            "hidden_size": DEMO_WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 2 * DEMO_WIDTH,
            "max_position_embeddings": DEMO_QUERY_LENGTH,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        hidden_size=DEMO_WIDTH,
        num_hidden_layers=4,
        num_attention_heads=8,
        intermediate_size=2 * DEMO_WIDTH,
        language_layers=[1, 3],
        image_size=DEMO_IMAGE_SIZE,
        patch_size=DEMO_PATCH_SIZE,
        box_head_hidden_size=128,
        max_query_length=DEMO_QUERY_LENGTH,
        position_embedding_init="sine",
    )


def demo_processor() -> Any:
    """The TransVG test transform at 64 px and the uncased BERT WordPiece padded to 12 tokens."""
    from ..transvg.processing_transvg import TransvgProcessor

    return TransvgProcessor.from_model_config(demo_config())


def demo_training(max_steps: int) -> dict[str, Any]:
    return {
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "warmup_steps": max(1, max_steps // 20),
        "max_time_seconds": TRAINING_SECONDS,
        "log_every_steps": 25,
    }


def _box(values: Any) -> list[float]:
    return [float(v) for v in values]


def demo_score(model_dir: Path, test: Any) -> DemoScore:
    """Acc@0.5 of the saved folder through `pipeline("visual-grounding")` on every test expression
    (`vlzoo.evaluation.grounding.evaluate_grounding`: TransVG's IoU on the canvas; the shapes images are square,
    so the pipeline's pixel boxes are exactly the original's clamped predictions)."""
    from ...data import task_dataset
    from ...evaluation.grounding import evaluate_grounding

    rows = task_dataset(test, "grounding")
    result = evaluate_grounding(model_dir, rows, batch_size=EVALUATION_BATCH)
    examples, seen = [], set()
    for index, scene in enumerate(rows["scene_id"]):  # the first expression of each of the first scenes
        if scene in seen:
            continue
        seen.add(scene)
        box = result.results[index]["box"]
        examples.append(
            {
                "scene": len(seen) - 1,
                "expression": rows["expression"][index],
                "truth": _box(rows["bbox"][index]),
                "prediction": _box(box[key] for key in ("xmin", "ymin", "xmax", "ymax")),
                "iou": float(result.iou[index]),
            }
        )
        if len(examples) == FIGURE_EXAMPLES:
            break
    return DemoScore(result.accuracy, {"accuracy": result.accuracy, "mean_iou": result.mean_iou, "examples": examples})


def demo_references(test: Any, train: Any) -> dict[str, float]:
    """`baseline`: Acc@0.5 on the test expressions of one fixed box for every expression, the mean of the training
    boxes on the canvas (normalised cx, cy, w, h)."""
    from ...data import task_dataset
    from ...evaluation.grounding import canvas_grounding_accuracy

    transform = demo_processor().image_processor.transform_boxes

    def canvas_boxes(rows: Any) -> torch.Tensor:
        sizes = [(image.height, image.width) for image in rows["image"]]
        return transform(torch.tensor(rows["bbox"], dtype=torch.float32), sizes)

    train_rows, test_rows = task_dataset(train, "grounding"), task_dataset(test, "grounding")
    targets = canvas_boxes(test_rows)
    mean_box = canvas_boxes(train_rows).mean(dim=0, keepdim=True).expand_as(targets)
    return {"baseline": canvas_grounding_accuracy(mean_box, targets)}


def demo_figure(path: Path, test: Any, results: Mapping[str, DemoScore]) -> None:
    """The first test scenes (x3) with the predicted box (red) and the true one (green), expression and IoU below."""
    from ...pipelines.visual_grounding import draw_grounding

    font = ImageFont.load_default()
    side = DEMO_IMAGE_SIZE * FIGURE_SCALE
    cell, text_height = side + 16, 44
    rows = list(results.items())
    columns = max(len(result.details["examples"]) for _, result in rows)
    canvas = Image.new("RGB", (8 + cell * columns, (side + text_height + 20) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for line, (name, result) in enumerate(rows):
        top = line * (side + text_height + 20)
        for column, example in enumerate(result.details["examples"]):
            image = test[example["scene"]]["image"].convert("RGB")
            image = image.resize((image.width * FIGURE_SCALE, image.height * FIGURE_SCALE), Image.NEAREST)
            boxes = [
                {"box": dict(zip(("xmin", "ymin", "xmax", "ymax"), (v * FIGURE_SCALE for v in box), strict=True))}
                for box in (example["prediction"], example["truth"])
            ]
            drawn = draw_grounding(image, boxes, labels=["", ""], width=2)  # red: prediction, green: truth
            x = 8 + column * cell
            canvas.paste(drawn, (x, top + 4))
            hit = example["iou"] >= 0.5
            draw.text((x, top + side + 8), example["expression"][:32], fill="black", font=font)
            draw.text((x, top + side + 22), f"IoU {example['iou']:.2f}", fill="green" if hit else "red", font=font)
        details = result.details
        draw.text(
            (8, top + side + text_height),
            f"{name}: Acc@0.5 {details['accuracy']:.3f}, mean IoU {details['mean_iou']:.3f} "
            "(red: predicted box, green: true box)",
            fill="black",
            font=font,
        )
    canvas.save(path)


__all__ = [
    "demo_config",
    "demo_figure",
    "demo_processor",
    "demo_references",
    "demo_score",
    "demo_training",
]
