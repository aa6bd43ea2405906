"""What the task objectives share: argument checks, keyed random draws, processor calls, model output lookup and an
evaluation that scores every example exactly once whatever the batch size and process count."""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from ..evaluation import evaluation_batches

LABELS = "labels"
EXAMPLE_INDEX = "example_index"


def check_processor(processor: Any) -> None:
    if not callable(processor):
        raise TypeError(f"processor must be callable like a transformers processor, got {type(processor).__name__}.")


def check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}.")
    return int(value)


def check_column_names(**columns: Any) -> None:
    for name, value in columns.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty column name (str), got {value!r}.")


def require_columns(example: Any, columns: Sequence[str], owner: str) -> None:
    """A `ValueError` naming the missing row keys and the option that renames them."""
    if not isinstance(example, Mapping):
        raise TypeError(f"{owner} expects rows that are mappings (dicts), got {type(example).__name__}.")
    missing = [column for column in columns if column not in example]
    if missing:
        raise ValueError(
            f"{owner}: a row has no column(s) {missing}; its columns are {sorted(example)}. Set the objective's "
            "*_column options to match the dataset, or build the rows with vlzoo.data.task_dataset."
        )


class EpochKeyed:
    """The seed and epoch the trainer announces before each epoch (`set_epoch`); draws keyed on them are the same in
    every worker and process and after a resume."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Select this epoch's draws (called by the trainer before each epoch)."""
        self.epoch = epoch
        self.seed = seed


def keyed_draw(*parts: Any) -> int:
    """A 64-bit number that depends only on `parts`: draws keyed on a row's content, not on a running counter, give
    the same result in any worker, shard or batch, and after a resume."""
    key = "\x1f".join(str(part) for part in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def keyed_seed(*parts: Any) -> int:
    """`keyed_draw` cut to the 63 bits `torch.Generator.manual_seed` takes."""
    return keyed_draw(*parts) >> 1


def keyed_generator(*parts: Any) -> torch.Generator:
    return torch.Generator().manual_seed(keyed_seed(*parts))


def caption_list(value: Any, column: str) -> list[str]:
    captions = [value] if isinstance(value, str) else value
    if not isinstance(captions, (list, tuple)) or not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError(
            f"column {column!r} must hold a caption string or a non-empty list of strings, got {value!r}."
        )
    return list(captions)


def choose_caption(value: Any, column: str, caption_index: int | None, seed: int, epoch: int) -> str:
    """Caption `caption_index` of a row, or one drawn from (seed, epoch, the row's captions) when it is `None`, as
    `ContrastiveObjective` chooses."""
    captions = caption_list(value, column)
    if caption_index is not None:
        if caption_index >= len(captions):
            raise ValueError(f"caption_index={caption_index} but an example has only {len(captions)} caption(s).")
        return captions[caption_index]
    if len(captions) == 1:
        return captions[0]
    return captions[keyed_draw(seed, epoch, *captions) % len(captions)]


def process(processor: Any, images: list, texts: list[str], max_length: int | None) -> dict[str, torch.Tensor]:
    """`processor(images=..., text=..., return_tensors="pt", padding=True)`, truncated to `max_length` if given."""
    kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True}
    if max_length is not None:
        kwargs.update(truncation=True, max_length=max_length)
    inputs = dict(processor(images=images, text=texts, **kwargs))
    for name in ("input_ids", "pixel_values"):
        if name not in inputs:
            raise ValueError(
                f"the processor returned {sorted(inputs)}, without {name!r}; it must encode images and text."
            )
    return inputs


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without the objective's own keys (targets stay with the objective, which computes the loss)."""
    return {name: value for name, value in batch.items() if name not in (LABELS, EXAMPLE_INDEX)}


def model_output(outputs: Any, names: Sequence[str], owner: str) -> torch.Tensor:
    """The first of `names` the model returned (a `ModelOutput`, a dict or an object with those attributes)."""
    for name in names:
        value = outputs.get(name) if isinstance(outputs, Mapping) else getattr(outputs, name, None)
        if value is not None:
            return value
    found = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
    raise ValueError(f"{owner} needs the model output {' or '.join(map(repr, names))}; the model returned {found}.")


def column_values(dataset: Any, column: str) -> list | None:
    """All values of `column` without decoding images (a `datasets.Dataset` column), or `None` when it is absent."""
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return list(dataset[column]) if column in names else None
    values = []
    for row in dataset:
        if not isinstance(row, Mapping) or column not in row:
            return None
        values.append(row[column])
    return values


class _IndexedRows(Dataset):
    """`(index, row)` pairs, so evaluation knows which example each batch entry is."""

    def __init__(self, rows: Any):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.rows[index]


def evaluate_examples(
    dataset: Any,
    collate: Callable[[list[dict[str, Any]], list[int]], dict[str, torch.Tensor]],
    score: Callable[[dict[str, torch.Tensor], list[int]], torch.Tensor],
    accelerator: Accelerator,
    batch_size: int,
) -> torch.Tensor:
    """`[len(dataset), k]` float64 per-example values, the same on every process.

    `collate(rows, indices)` builds a batch and `score(batch, indices) -> [batch, k]` gives each entry's values (a
    loss, a hit, ...); `indices` are the rows' positions in `dataset`.
    Each process scores its shard (`evaluation_batches`); the examples that pad the last batches are scored twice
    and averaged back to one, so the result does not depend on the batch size or the number of processes, unlike a
    mean over batches.
    """
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty: there is nothing to score.")

    def indexed_collate(items: list[tuple[int, Any]]) -> dict[str, torch.Tensor]:
        indices = [index for index, _ in items]
        batch = collate([row for _, row in items], indices)
        batch[EXAMPLE_INDEX] = torch.tensor(indices, dtype=torch.long)
        return batch

    totals = None
    for batch in evaluation_batches(_IndexedRows(dataset), indexed_collate, accelerator, batch_size):
        index = batch.pop(EXAMPLE_INDEX)
        values = score(batch, index.tolist()).detach().double()
        if values.dim() != 2 or values.shape[0] != index.shape[0]:
            raise ValueError(f"score must return [batch, k] values, got shape {tuple(values.shape)}.")
        if totals is None:
            totals = torch.zeros(len(dataset), values.shape[1] + 1, dtype=torch.float64, device=values.device)
        totals.index_add_(0, index.to(values.device), torch.cat([values, torch.ones_like(values[:, :1])], dim=1))
    if totals is None:
        raise ValueError("the evaluation produced no batches.")
    totals = accelerator.reduce(totals, reduction="sum")
    copies = totals[:, -1:]
    if (copies == 0).any():
        raise RuntimeError("some evaluation examples were not scored on any process.")
    return (totals[:, :-1] / copies).cpu()


__all__ = [
    "EXAMPLE_INDEX",
    "LABELS",
    "caption_list",
    "check_column_names",
    "check_optional_int",
    "check_processor",
    "choose_caption",
    "column_values",
    "evaluate_examples",
    "keyed_generator",
    "keyed_draw",
    "keyed_seed",
    "model_inputs",
    "model_output",
    "process",
    "require_columns",
]
