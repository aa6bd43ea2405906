"""Data for vlzoo: the synthetic ``shapes`` DatasetDict and readers that bring real files into the same schema."""

from vlzoo.conversion.plain_pickle import load_plain_pickle

from .readers import read_caption_dataset, read_refcoco, read_vqa
from .schema import example_features
from .shapes import COLORS, SCHEMA_VERSION, SHAPES, SIZES, class_names, class_prompts, load_shapes
from .tasks import (
    TASKS,
    build_answer_vocabulary,
    caption_rows,
    referring_rows,
    shapes_task_dataset,
    task_dataset,
    vqa_rows,
)

__all__ = [
    "COLORS",
    "SCHEMA_VERSION",
    "SHAPES",
    "SIZES",
    "TASKS",
    "build_answer_vocabulary",
    "caption_rows",
    "class_names",
    "class_prompts",
    "example_features",
    "load_plain_pickle",
    "load_shapes",
    "read_caption_dataset",
    "read_refcoco",
    "read_vqa",
    "referring_rows",
    "shapes_task_dataset",
    "task_dataset",
    "vqa_rows",
]
