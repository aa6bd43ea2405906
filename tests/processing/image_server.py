"""Test helpers: image files on disk and served over HTTP on 127.0.0.1, so URL inputs are tested without a network."""

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` on a free local port for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def write_images(directory: Path) -> dict[str, Path]:
    """An 8-bit RGB PNG with distinct pixels and a 16-bit grayscale PNG (mode "I;16") whose values exceed 255."""
    rng = np.random.default_rng(0)
    rgb = directory / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8), mode="RGB").save(rgb)
    gray16 = directory / "gray16.png"
    Image.fromarray(np.full((20, 28), 40000, dtype=np.uint16)).save(gray16)
    return {"rgb": rgb, "gray16": gray16}
