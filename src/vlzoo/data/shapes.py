"""The built-in ``shapes`` data set: deterministic synthetic scenes as a cached `datasets.DatasetDict`."""

import hashlib
import json
import os
from pathlib import Path

import datasets
import numpy as np
from transformers.utils import logging

from .scene_text import captions, questions, referring_expressions
from .scenes import COLORS, SHAPES, SIZES, render_scene
from .schema import example_features

logger = logging.get_logger(__name__)

# Bump whenever the drawing, the text or the schema changes: it is part of every cache key.
SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 2048
MAX_OBJECTS = 8


def class_names() -> list[str]:
    """The 42 classes "{color} {shape}", in `label` order (colour-major)."""
    return [f"{color} {shape}" for color in COLORS for shape in SHAPES]


def class_prompts(template: str = "a photo of a {}.") -> list[str]:
    """`template` filled with each class name, for zero-shot classification."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template must be a string with exactly one '{{}}' placeholder, got {template!r}")
    return [template.format(name) for name in class_names()]


def split_seed(seed: int, split: str) -> int:
    """A 64-bit seed for `split`, independent of the other splits' seeds for the same `seed`."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1, dtype=np.uint64)
    return int(state[0])


def make_example(split: str, seed: int, index: int, image_size: int, min_objects: int, max_objects: int) -> dict:
    """Example `index` of `split`: a pure function of (split seed, index) and the drawing parameters."""
    rng = np.random.default_rng([split_seed(seed, split), index])
    scene = render_scene(rng, image_size, min_objects, max_objects)
    expressions = referring_expressions(scene.objects)
    qa = questions(scene, expressions, image_size, rng)
    return {
        "image": scene.image,
        "label": class_names().index(scene.main.name),
        "captions": captions(scene, image_size, rng),
        "objects": {
            "shape": [o.shape for o in scene.objects],
            "color": [o.color for o in scene.objects],
            "size": [o.size for o in scene.objects],
            "bbox": [list(o.bbox) for o in scene.objects],
            "expression": expressions,
        },
        "questions": {
            "question": [q for q, _, _ in qa],
            "answer": [a for _, a, _ in qa],
            "type": [t for _, _, t in qa],
        },
        "answers": [[a] for _, a, _ in qa],
        "scene_id": f"{split}-{index:06d}",
    }


def _generate(split: str, seed: int, num_examples: int, image_size: int, min_objects: int, max_objects: int):
    for index in range(num_examples):
        yield make_example(split, seed, index, image_size, min_objects, max_objects)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def default_cache_dir() -> Path:
    """`$VLZOO_CACHE/shapes` when set, else `~/.cache/vlzoo/shapes`."""
    root = os.environ.get("VLZOO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vlzoo") / "shapes"


def load_shapes(
    *,
    num_train: int = 2000,
    num_validation: int = 200,
    num_test: int = 500,
    image_size: int = 64,
    min_objects: int = 1,
    max_objects: int = 4,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """Synthetic scenes of coloured shapes for captioning, classification, grounding and VQA.

    Each image holds `min_objects`..`max_objects` objects drawn with PIL: exactly one "large" object (the main
    object, whose "{color} {shape}" class is `label`; its size range guarantees it is the largest shape) and
    "small" others, with limited overlap, on a solid, gradient or lightly noisy neutral background that never
    takes an object colour. Columns follow `vlzoo.data.schema.example_features`:
    `captions[0]` is "a {color} {shape}" for the main object, `captions[1]` lists every object with its size and
    the background, `captions[2]` gives the count and the main object's position; `objects` holds pixel-edge xyxy
    boxes and a referring expression unique within the image; `questions` has types color, shape, count and
    position, and `answers[i]` is `[questions["answer"][i]]`.

    Example `i` of a split depends only on (`seed`, split, `i`) and the drawing parameters, so a smaller split is a
    prefix of a larger one. Each split is cached under `cache_dir` with a key made from its parameters and
    `SCHEMA_VERSION`: the same arguments reuse the files (also in a new process), changed ones regenerate.
    """
    num_train = _check_int("num_train", num_train, 1)
    num_validation = _check_int("num_validation", num_validation, 1)
    num_test = _check_int("num_test", num_test, 1)
    image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    min_objects = _check_int("min_objects", min_objects, 1, MAX_OBJECTS)
    max_objects = _check_int("max_objects", max_objects, 1, MAX_OBJECTS)
    if min_objects > max_objects:
        raise ValueError(f"min_objects ({min_objects}) must be <= max_objects ({max_objects})")
    seed = _check_int("seed", seed, 0)
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str, os.PathLike or None, got {type(cache_dir).__name__}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    features = example_features(class_names())
    splits = {}
    for split, count in zip(SPLITS, (num_train, num_validation, num_test), strict=True):
        params = {
            "split": split,
            "num_examples": count,
            "image_size": image_size,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "seed": seed,
            "schema_version": SCHEMA_VERSION,
        }
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        fingerprint = f"vlzoo-shapes-v{SCHEMA_VERSION}-{split}-{digest}"
        logger.info("shapes %s split: %d examples, cache %s (%s)", split, count, cache, fingerprint)
        gen_kwargs = {k: v for k, v in params.items() if k != "schema_version"}
        splits[split] = datasets.Dataset.from_generator(
            _generate,
            features=features,
            gen_kwargs=gen_kwargs,
            cache_dir=str(cache),
            split=datasets.NamedSplit(split),
            fingerprint=fingerprint,
        )
    return datasets.DatasetDict(splits)


__all__ = [
    "COLORS",
    "SCHEMA_VERSION",
    "SHAPES",
    "SIZES",
    "class_names",
    "class_prompts",
    "default_cache_dir",
    "load_shapes",
    "make_example",
    "split_seed",
]
