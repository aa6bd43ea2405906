"""Captions, referring expressions and questions for a synthetic scene, chosen by the scene's own generator."""

import numpy as np

from .scenes import COLORS, SHAPES, Scene, SceneObject

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
# "left of" / "above" questions are asked only for pairs whose centres differ by at least this fraction of the side.
POSITION_MARGIN = 0.15


def article(phrase: str) -> str:
    """'a' or 'an' for `phrase`."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


def number(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def region(obj: SceneObject, image_size: int) -> str:
    """Where the object's centre lies on a 3x3 grid, as a prepositional phrase ('in the top left', 'on the right')."""
    cx, cy = obj.center
    col = min(int(3 * cx / image_size), 2)
    row = min(int(3 * cy / image_size), 2)
    vertical = ("top", "middle", "bottom")[row]
    horizontal = ("left", "center", "right")[col]
    if (row, col) == (1, 1):
        return "in the center"
    if row == 1:
        return f"on the {horizontal}"
    if col == 1:
        return f"at the {vertical}"
    return f"in the {vertical} {horizontal}"


def referring_expressions(objects: tuple[SceneObject, ...]) -> list[str]:
    """One expression per object that picks it out of `objects`.

    Colour and shape when they suffice ("the red circle"); else add the size ("the small red circle"); else the
    position among the objects that share colour, shape and size ("the small red circle on the left", or "the
    second small red circle from the left" for three or more).
    """
    expressions = []
    for obj in objects:
        same_name = [o for o in objects if o.name == obj.name]
        if len(same_name) == 1:
            expressions.append(f"the {obj.name}")
            continue
        group = [o for o in same_name if o.size == obj.size]
        phrase = f"{obj.size} {obj.name}"
        if len(group) == 1:
            expressions.append(f"the {phrase}")
        elif len(group) == 2:
            other = group[1] if group[0] is obj else group[0]
            dx, dy = obj.center[0] - other.center[0], obj.center[1] - other.center[1]
            if abs(dx) >= abs(dy):
                expressions.append(f"the {phrase} on the {'left' if dx < 0 else 'right'}")
            else:
                expressions.append(f"the {phrase} at the {'top' if dy < 0 else 'bottom'}")
        else:
            rank = sorted(group, key=lambda o: o.center).index(obj)
            expressions.append(f"the {ORDINALS[rank]} {phrase} from the left")
    return expressions


def _choose(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def captions(scene: Scene, image_size: int, rng: np.random.Generator) -> list[str]:
    """[main object as 'a {color} {shape}', all objects with sizes and background, count and position]."""
    main = scene.main
    others = [o for i, o in enumerate(scene.objects) if i != scene.main_index]
    others.sort(key=lambda o: o.center)
    listed = [f"{article(o.size)} {o.size} {o.name}" for o in [main, *others]]
    background = f"{article(scene.background)} {scene.background} background"
    scene_caption = _choose(
        rng,
        [
            f"{_join(listed)} on {background}",
            f"{background} with {_join(listed)}",
            f"{_join(listed)}, drawn on {background}",
        ],
    )
    n = len(scene.objects)
    where = region(main, image_size)
    if n == 1:
        count_caption = _choose(
            rng, [f"a single {main.name} {where}", f"one object: {article(main.color)} {main.name} {where}"]
        )
    else:
        count_caption = _choose(
            rng,
            [
                f"{number(n)} objects; the large {main.name} is {where}",
                f"the large {main.name} {where} and {number(n - 1)} smaller {'shape' if n == 2 else 'shapes'}",
                f"{number(n)} shapes in total, the biggest is {article(main.color)} {main.name} {where}",
            ],
        )
    return [f"{article(main.color)} {main.name}", scene_caption, count_caption]


def _count_question(scene: Scene, rng: np.random.Generator, attribute: str) -> tuple[str, str, str]:
    if attribute == "color":
        color = _choose(rng, list(COLORS))
        n = sum(o.color == color for o in scene.objects)
        question = _choose(rng, [f"How many {color} objects are there?", f"How many {color} shapes are in the image?"])
    elif attribute == "shape":
        shape = _choose(rng, list(SHAPES))
        n = sum(o.shape == shape for o in scene.objects)
        question = _choose(rng, [f"How many {plural(shape)} are there?", f"How many {plural(shape)} can you see?"])
    else:
        n = len(scene.objects)
        question = _choose(rng, ["How many objects are there?", "How many shapes are in the image?"])
    return question, str(n), "count"


def _position_question(
    scene: Scene, expressions: list[str], image_size: int, rng: np.random.Generator
) -> tuple[str, str, str]:
    margin = POSITION_MARGIN * image_size
    pairs = []
    for i, a in enumerate(scene.objects):
        for j, b in enumerate(scene.objects):
            if i == j:
                continue
            dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
            if abs(dx) >= margin:
                pairs.append((i, j, _choose(rng, ["left of", "right of"]), dx))
            if abs(dy) >= margin:
                pairs.append((i, j, _choose(rng, ["above", "below"]), dy))
    if pairs:
        i, j, relation, delta = _choose(rng, pairs)
        holds = (delta < 0) if relation in ("left of", "above") else (delta > 0)
        return f"Is {expressions[i]} {relation} {expressions[j]}?", "yes" if holds else "no", "position"
    # Single object (or objects stacked near each other): ask where it is in the image.
    index = int(rng.integers(len(scene.objects)))
    cx, cy = scene.objects[index].center
    dx, dy = cx - image_size / 2, cy - image_size / 2
    if abs(dx) >= abs(dy):
        answer = "left" if dx < 0 else "right"
        return f"Is {expressions[index]} on the left or the right of the image?", answer, "position"
    answer = "top" if dy < 0 else "bottom"
    return f"Is {expressions[index]} at the top or the bottom of the image?", answer, "position"


def questions(
    scene: Scene, expressions: list[str], image_size: int, rng: np.random.Generator
) -> list[tuple[str, str, str]]:
    """(question, answer, type) for types color, shape, count (twice) and position; answers are lowercase."""
    main = scene.main
    color_options = [(f"What color is the large {main.shape}?", main.color)]
    shape_options = [
        (f"What shape is the large {main.color} object?", main.shape),
        ("What shape is the large object?", main.shape),
    ]
    for obj in scene.objects:
        if sum(o.shape == obj.shape for o in scene.objects) == 1:
            color_options.append((f"What color is the {obj.shape}?", obj.color))
        if sum(o.color == obj.color for o in scene.objects) == 1:
            shape_options.append((f"What shape is the {obj.color} object?", obj.shape))
    result = [(*_choose(rng, color_options), "color"), (*_choose(rng, shape_options), "shape")]
    result.append(_count_question(scene, rng, _choose(rng, ["total", "color", "shape"])))
    result.append(_count_question(scene, rng, _choose(rng, ["color", "shape"])))
    if result[3][0] == result[2][0]:
        result.pop()
    result.append(_position_question(scene, expressions, image_size, rng))
    return result


__all__ = ["article", "captions", "plural", "questions", "referring_expressions", "region"]
