"""Layout and drawing of one synthetic ``shapes`` scene, a pure function of a seeded random generator."""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "diamond")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")

# Saturated object colours; backgrounds are neutral (chroma <= 35 even with noise), so no background pixel can
# take an object's colour and an object's pixels are exactly its palette colour (polygons are not anti-aliased).
COLOR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 35),
    "purple": (150, 60, 190),
    "orange": (245, 135, 25),
}
BACKGROUND_RGB = {
    "white": (250, 250, 250),
    "light gray": (200, 200, 200),
    "gray": (135, 135, 135),
    "dark gray": (70, 70, 70),
    "black": (15, 15, 15),
    "beige": (235, 225, 200),
}
BACKGROUND_KINDS = ("solid", "gradient", "noise")
NOISE_STD = 6.0

# Circumradius ranges as fractions of the image side. The smallest large shape (a triangle or star, area about
# 1.3 r^2) still covers more pixels than the biggest small one (a circle, pi r^2): 1.3 * 0.18^2 > pi * 0.10^2,
# so the single large object is also the largest one.
RADIUS_RANGE = {"small": (0.08, 0.10), "large": (0.18, 0.24)}
# Objects may overlap a little: centres are at least this fraction of the sum of their circumradii apart.
MIN_CENTER_DISTANCE = 0.9
_PLACEMENT_TRIES = 50
_LAYOUT_TRIES = 200


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; `bbox` is pixel-edge xyxy: the shape covers pixels x0 <= x < x1 and y0 <= y < y1."""

    shape: str
    color: str
    size: str
    bbox: tuple[float, float, float, float]

    @property
    def center(self) -> tuple[float, float]:
        return (self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A rendered scene: `objects` in drawing order, exactly one of them (`main_index`) is large."""

    image: Image.Image
    objects: tuple[SceneObject, ...]
    main_index: int
    background: str

    @property
    def main(self) -> SceneObject:
        return self.objects[self.main_index]


def shape_outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices of `shape` with circumradius `r` centred on (cx, cy); a circle is approximated finely."""
    if shape == "circle":
        return _regular(cx, cy, r, 64, 0.0)
    if shape == "square":
        h = r / math.sqrt(2)
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return _regular(cx, cy, r, 3, -90.0)
    if shape == "hexagon":
        return _regular(cx, cy, r, 6, 0.0)
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.45 * r
            angle = math.radians(-90.0 + 36.0 * k)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        w = 0.32 * r
        a = math.sqrt(r * r - w * w)
        corners = [(w, a), (w, w), (a, w), (a, -w), (w, -w), (w, -a)]
        corners += [(-x, -y) for x, y in corners]
        return [(cx + x, cy + y) for x, y in corners]
    raise ValueError(f"shape={shape!r} is not one of {SHAPES}")


def _regular(cx: float, cy: float, r: float, sides: int, start_deg: float) -> list[tuple[float, float]]:
    angles = [math.radians(start_deg + 360.0 * k / sides) for k in range(sides)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    names = list(BACKGROUND_RGB)
    kind = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    first = names[rng.integers(len(names))]
    base = np.asarray(BACKGROUND_RGB[first], dtype=np.float32)
    if kind == "solid":
        return np.broadcast_to(base, (size, size, 3)).copy(), first
    if kind == "noise":
        pixels = base + rng.normal(0.0, NOISE_STD, size=(size, size, 3)).astype(np.float32)
        return pixels, f"noisy {first}"
    second = names[(names.index(first) + 1 + rng.integers(len(names) - 1)) % len(names)]
    angle = rng.uniform(0.0, 2.0 * math.pi)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    t = np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]
    t = (t - t.min()) / (t.max() - t.min())
    pixels = (1.0 - t[..., None]) * base + t[..., None] * np.asarray(BACKGROUND_RGB[second], dtype=np.float32)
    return pixels, f"{first} to {second} gradient"


def _layout(rng: np.random.Generator, size: int, count: int) -> list[tuple[float, float, float]]:
    """Circles (cx, cy, r), the large one first, inside the image with limited overlap."""
    radii = [rng.uniform(*RADIUS_RANGE["large"]) * size]
    radii += [rng.uniform(*RADIUS_RANGE["small"]) * size for _ in range(count - 1)]
    for _ in range(_LAYOUT_TRIES):
        placed: list[tuple[float, float, float]] = []
        for r in radii:
            for _ in range(_PLACEMENT_TRIES):
                cx, cy = rng.uniform(r + 1.0, size - r - 1.0, size=2)
                if all(math.hypot(cx - x, cy - y) >= MIN_CENTER_DISTANCE * (r + q) for x, y, q in placed):
                    placed.append((float(cx), float(cy), r))
                    break
            else:
                break
        if len(placed) == count:
            return placed
    raise RuntimeError(f"could not place {count} objects in a {size}x{size} image")


def render_scene(rng: np.random.Generator, image_size: int, min_objects: int, max_objects: int) -> Scene:
    """Draw one scene from `rng`: background, then one large and `n - 1` small objects in a random order."""
    pixels, background = _background(rng, image_size)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")
    count = int(rng.integers(min_objects, max_objects + 1))
    circles = _layout(rng, image_size, count)
    order = rng.permutation(count)
    objects = []
    mask = Image.new("L", (image_size, image_size))
    draw = ImageDraw.Draw(mask)
    for slot in order:
        cx, cy, r = circles[slot]
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = COLORS[rng.integers(len(COLORS))]
        draw.rectangle((0, 0, image_size, image_size), fill=0)
        draw.polygon(shape_outline(shape, cx, cy, r), fill=255)
        bbox = mask.getbbox()
        if bbox is None:
            raise RuntimeError(f"{shape} of radius {r:.1f} px drew no pixels")
        image.paste(COLOR_RGB[color], mask=mask)
        size = "large" if slot == 0 else "small"
        objects.append(SceneObject(shape, color, size, tuple(float(v) for v in bbox)))
    return Scene(image, tuple(objects), int(np.flatnonzero(order == 0)[0]), background)


__all__ = [
    "BACKGROUND_RGB",
    "COLORS",
    "COLOR_RGB",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "render_scene",
    "shape_outline",
]
