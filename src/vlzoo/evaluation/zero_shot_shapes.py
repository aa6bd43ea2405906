"""Zero-shot classification of the shapes test split through transformers' `zero-shot-image-classification`: the
evaluation of contrastive models (`vlzoo eval`) and the metric and figure of the MS-CLIP demo (`vlzoo demo`)."""

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ..registry import DemoScore

DEFAULT_TEMPLATE = "a {}"


def local_model_dir(model_dir: str | Path) -> Path:
    """`model_dir` as an existing local save_pretrained folder; a missing one fails here, never through the Hub.

    Raises:
        FileNotFoundError: the folder does not exist or has no config.json.
    """
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} does not exist (a local save_pretrained folder)")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model folder {str(model_dir)!r} has no config.json: not a save_pretrained folder")
    return path


def zero_shot_scores(
    model_dir: str | Path,
    images: list[Image.Image],
    labels: list[str],
    *,
    hypothesis_template: str = DEFAULT_TEMPLATE,
    description: str = "zero-shot",
) -> torch.Tensor:
    """Class probabilities `[n_images, n_labels]` from `pipeline("zero-shot-image-classification", model=DIR)`.

    The folder is loaded exactly as a user would load it (Auto classes, its own tokenizer and image processor).
    """
    from transformers import pipeline

    model_dir = local_model_dir(model_dir)
    if not images:
        raise ValueError("images is empty: nothing to classify")
    if not labels:
        raise ValueError("labels is empty: zero-shot classification needs candidate labels")
    classifier = pipeline("zero-shot-image-classification", model=str(model_dir))
    index = {label: i for i, label in enumerate(labels)}
    scores = torch.zeros(len(images), len(labels))
    for row, image in enumerate(tqdm(images, desc=description, unit="img")):
        for result in classifier(image, candidate_labels=labels, hypothesis_template=hypothesis_template):
            scores[row, index[result["label"]]] = result["score"]
    return scores


def evaluate_zero_shot_on_shapes(
    model_dir: str | Path, *, num_test: int = 500, image_size: int = 64, seed: int = 0
) -> float:
    """Top-1 zero-shot accuracy of a saved contrastive model on the shapes test split (class = main object)."""
    from ..data import class_names, load_shapes

    local_model_dir(model_dir)  # before the data is generated
    test = load_shapes(num_train=1, num_validation=1, num_test=num_test, image_size=image_size, seed=seed)["test"]
    scores = zero_shot_scores(model_dir, [image.convert("RGB") for image in test["image"]], class_names())
    return float((scores.argmax(dim=1) == torch.tensor(test["label"])).float().mean())


def _test_images(test: Any) -> tuple[list[Image.Image], list[int]]:
    """The RGB images and true classes of a shapes test split (class = main object)."""
    return [image.convert("RGB") for image in test["image"]], list(test["label"])


def zero_shot_demo_score(model_dir: str | Path, test: Any) -> "DemoScore":
    """Top-1 zero-shot accuracy of a saved model on a shapes test split, with its class probabilities (for the
    figure): the demo metric of contrastive families."""
    from ..data import class_names
    from ..registry import DemoScore

    images, truth = _test_images(test)
    scores = zero_shot_scores(model_dir, images, class_names(), description=f"zero-shot {Path(model_dir).name}")
    accuracy = float((scores.argmax(dim=1) == torch.tensor(truth)).float().mean())
    return DemoScore(accuracy, scores)


def draw_zero_shot_figure(path: str | Path, test: Any, results: Mapping[str, "DemoScore"]) -> None:
    """Test images with true and predicted classes, and each model's image-by-class probability heatmap.

    `results` maps a model name to its `zero_shot_demo_score` (whose details are the class probabilities).
    """
    from ..data import class_names

    images, truth = _test_images(test)
    labels = class_names()
    scores = {name: result.details for name, result in results.items()}
    shown, cell, thumb = min(8, len(images)), 9, 72
    font = ImageFont.load_default()
    width = 150 + thumb * shown
    heat_top = thumb + 58
    height = heat_top + len(scores) * (len(labels) * cell + 30)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for col in range(shown):
        x = 150 + col * thumb
        canvas.paste(images[col].resize((thumb - 4, thumb - 4), Image.NEAREST), (x, 0))
        draw.text((x, thumb), labels[truth[col]][:12], fill="black", font=font)
        for k, (name, table) in enumerate(scores.items()):
            guess = int(table[col].argmax())
            color = "green" if guess == truth[col] else "red"
            draw.text((x, thumb + 14 * (k + 1)), f"{name[:2]}:{labels[guess][:9]}", fill=color, font=font)
    for k, (name, table) in enumerate(scores.items()):
        top = heat_top + k * (len(labels) * cell + 30)
        draw.text((4, top), f"{name}: P(class | image)", fill="black", font=font)
        top += 14
        peak = float(table[:shown].max()) or 1.0
        for row, label in enumerate(labels):
            y = top + row * cell
            draw.text((4, y - 2), label, fill="black", font=font)
            for col in range(shown):
                level = int(255 * (1 - float(table[col, row]) / peak))
                x = 150 + col * thumb
                draw.rectangle([x, y, x + thumb - 5, y + cell - 2], fill=(255, level, level))
    canvas.save(path)


__all__ = [
    "DEFAULT_TEMPLATE",
    "draw_zero_shot_figure",
    "evaluate_zero_shot_on_shapes",
    "local_model_dir",
    "zero_shot_demo_score",
    "zero_shot_scores",
]
