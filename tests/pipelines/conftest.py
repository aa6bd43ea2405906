"""Shared fixtures of the task-pipeline tests: the registered toy models, their preprocessing and test images."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.pipelines.toy_models import register_toy_models, toy_processor, toy_tokenizer


@pytest.fixture(scope="session")
def toys():
    """Registers the toy configs and head models with the Auto classes (and vlzoo's pipelines)."""
    register_toy_models()


@pytest.fixture(scope="session")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture(scope="session")
def processor(tokenizer):
    return toy_processor(tokenizer)


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Five RGB images of different sizes and aspect ratios (wide, tall, square, odd), with random content."""
    rng = np.random.default_rng(0)
    sizes = [(48, 40), (20, 50), (33, 33), (128, 45), (37, 53)]  # (width, height)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for width, height in sizes]


@pytest.fixture(scope="session")
def sixteen_bit() -> Image.Image:
    """A 16-bit grayscale image: PIL's RGB conversion would clip it, vlzoo's image rule refuses it."""
    return Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on shared CPU cores run faster without thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
