"""Test-wide settings: offline Hub, quiet progress bars, and the location of the shared fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`../shared/fixtures` next to the repository; tests that need it skip when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(reason=f"shared fixtures not found at {FIXTURES} (they are provided next to the repository)")
    return FIXTURES


@pytest.fixture
def fixture_io():
    """A loader of `<family>/<case>/io.safetensors`, skipping when the shared fixtures are absent."""
    from safetensors.torch import load_file

    def load(case: str) -> dict:
        path = FIXTURES / case / "io.safetensors"
        if not path.is_file():
            pytest.skip(reason=f"reference fixture {path} not found (../shared/fixtures is not checked out)")
        return load_file(path)

    return load
