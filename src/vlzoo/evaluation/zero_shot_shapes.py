"""Zero-shot classification of the shapes test split through transformers' `zero-shot-image-classification`."""

from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

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


__all__ = ["DEFAULT_TEMPLATE", "evaluate_zero_shot_on_shapes", "local_model_dir", "zero_shot_scores"]
