"""Shuffling whose order is a pure function of (seed, epoch), so every process and every resume agree on it."""

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of `range(num_examples)` drawn from a generator seeded with `seed + epoch`.

    Unlike a `RandomSampler` with a running generator, the order of epoch `e` does not depend on how many epochs
    were iterated before in this process, which is what lets a resumed run and each data-parallel shard (Accelerate
    splits the batches of one shared order) see exactly the batches of an uninterrupted single run.
    """

    def __init__(self, num_examples: int, seed: int = 0):
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.num_examples, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_examples


__all__ = ["EpochShuffleSampler"]
