"""Tests for the synthetic ``shapes`` DatasetDict: schema, determinism, caching and the truth of every annotation."""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict, Image, Value

from vlzoo.data import COLORS, SHAPES, SIZES, class_names, class_prompts, load_shapes
from vlzoo.data import shapes as shapes_module
from vlzoo.data.scenes import BACKGROUND_RGB, COLOR_RGB

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SMALL = {"num_train": 24, "num_validation": 6, "num_test": 8, "seed": 3}
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
EXPRESSION = re.compile(
    rf"^the (?:(?P<ordinal>{'|'.join(ORDINALS)}) )?(?:(?P<size>small|large) )?(?P<color>{'|'.join(COLORS)}) "
    rf"(?P<shape>{'|'.join(SHAPES)})(?P<where> on the left| on the right| at the top| at the bottom| from the left)?$"
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> DatasetDict:
    return load_shapes(**SMALL, cache_dir=tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def rows(shapes) -> list[dict]:
    return [row for split in shapes.values() for row in split]


def centers(objects: dict) -> list[tuple[float, float]]:
    return [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in objects["bbox"]]


def resolve(expression: str, objects: dict) -> list[int]:
    """Indices of the objects an expression denotes, read with the expression grammar, not with the library."""
    match = EXPRESSION.match(expression)
    assert match, f"expression {expression!r} does not follow the grammar"
    found = [
        i
        for i in range(len(objects["shape"]))
        if objects["color"][i] == match["color"]
        and objects["shape"][i] == match["shape"]
        and (match["size"] is None or objects["size"][i] == match["size"])
    ]
    where = (match["where"] or "").strip()
    if not where:
        return found
    xy = centers(objects)
    if where == "from the left":
        return [sorted(found, key=lambda i: xy[i])[ORDINALS.index(match["ordinal"])]]
    axis, pick = {
        "on the left": (0, min),
        "on the right": (0, max),
        "at the top": (1, min),
        "at the bottom": (1, max),
    }[where]
    return [pick(found, key=lambda i: xy[i][axis])]


def image_bytes(row: dict) -> bytes:
    return np.asarray(row["image"]).tobytes()


def test_vocabulary_and_prompts():
    assert len(SHAPES) >= 6 and len(set(SHAPES)) == len(SHAPES)
    assert len(COLORS) >= 6 and len(set(COLORS)) == len(COLORS)
    assert SIZES == ("small", "large")
    names = class_names()
    assert len(names) == len(COLORS) * len(SHAPES) == len(set(names))
    assert names[1] == f"{COLORS[0]} {SHAPES[1]}"
    prompts = class_prompts("a drawing of a {} shape")
    assert prompts[len(SHAPES)] == f"a drawing of a {COLORS[1]} {SHAPES[0]} shape"
    assert class_prompts()[0] == f"a photo of a {names[0]}."
    with pytest.raises(ValueError, match="template"):
        class_prompts("no placeholder")


def test_palette_is_distinct_from_backgrounds():
    for color, rgb in COLOR_RGB.items():
        for background, neutral in BACKGROUND_RGB.items():
            distance = np.abs(np.subtract(rgb, neutral)).max()
            assert distance > 60, f"{color} is too close to the {background} background"


def test_schema(shapes):
    assert list(shapes) == ["train", "validation", "test"]
    assert [len(shapes[s]) for s in shapes] == [SMALL["num_train"], SMALL["num_validation"], SMALL["num_test"]]
    features = shapes["train"].features
    assert list(features) == ["image", "label", "captions", "objects", "questions", "answers", "scene_id"]
    assert isinstance(features["image"], Image)
    assert isinstance(features["label"], ClassLabel) and features["label"].names == class_names()
    assert features["scene_id"] == Value("string")
    assert set(features["objects"]) == {"shape", "color", "size", "bbox", "expression"}
    assert features["objects"]["bbox"].feature.length == 4
    assert features["objects"]["bbox"].feature.feature == Value("float32")
    assert set(features["questions"]) == {"question", "answer", "type"}
    row = shapes["validation"][0]
    assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
    assert row["scene_id"] == "validation-000000"


def test_same_arguments_give_identical_data_in_a_fresh_cache(shapes, tmp_path):
    again = load_shapes(**SMALL, cache_dir=tmp_path)
    for split in shapes:
        first, second = shapes[split], again[split]
        assert first.cache_files[0]["filename"] != second.cache_files[0]["filename"]
        for a, b in zip(first, second, strict=True):
            assert image_bytes(a) == image_bytes(b)
            assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}


def test_smaller_split_is_a_prefix_and_splits_are_disjoint(shapes, tmp_path):
    smaller = load_shapes(num_train=5, num_validation=1, num_test=1, seed=SMALL["seed"], cache_dir=tmp_path)
    for a, b in zip(smaller["train"], shapes["train"].select(range(5)), strict=True):
        assert image_bytes(a) == image_bytes(b) and a["captions"] == b["captions"]
    seen = {}
    for split in shapes:
        for row in shapes[split]:
            key = image_bytes(row)
            assert key not in seen, f"{row['scene_id']} repeats {seen.get(key)}"
            seen[key] = row["scene_id"]
    other_seed = load_shapes(num_train=5, num_validation=1, num_test=1, seed=SMALL["seed"] + 1, cache_dir=tmp_path)
    assert all(image_bytes(row) not in seen for row in other_seed["train"])


def test_cache_is_reused_and_parameters_invalidate_it(monkeypatch, tmp_path):
    first = load_shapes(**SMALL, cache_dir=tmp_path)
    calls = []
    original = shapes_module.make_example

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(shapes_module, "make_example", counting)
    again = load_shapes(**SMALL, cache_dir=tmp_path)
    assert calls == []
    assert again["train"].cache_files == first["train"].cache_files
    changed = load_shapes(**{**SMALL, "image_size": 48}, cache_dir=tmp_path)
    assert len(calls) == sum(len(split) for split in changed.values())
    assert changed["train"][0]["image"].size == (48, 48)
    assert changed["train"].cache_files != first["train"].cache_files


def test_cache_is_reused_in_a_new_process(tmp_path):
    first = load_shapes(num_train=3, num_validation=1, num_test=1, seed=11, cache_dir=tmp_path)
    files = sorted(f["filename"] for split in first.values() for f in split.cache_files)
    mtimes = [os.path.getmtime(f) for f in files]
    script = (
        "import sys\n"
        "from vlzoo.data import shapes\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('generator ran')\n"
        "shapes.make_example = refuse\n"
        "d = shapes.load_shapes(num_train=3, num_validation=1, num_test=1, seed=11, cache_dir=sys.argv[1])\n"
        "print('\\n'.join(sorted(f['filename'] for s in d.values() for f in s.cache_files)))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "123"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == files
    assert [os.path.getmtime(f) for f in files] == mtimes


def test_main_object_label_and_captions(shapes, rows):
    names = class_names()
    for row in rows:
        objects = row["objects"]
        large = [i for i, size in enumerate(objects["size"]) if size == "large"]
        assert len(large) == 1 and all(size in SIZES for size in objects["size"])
        main = large[0]
        name = f"{objects['color'][main]} {objects['shape'][main]}"
        assert names[row["label"]] == name
        assert row["captions"][0] in (f"a {name}", f"an {name}")
        assert len(row["captions"]) >= 3
        for shape, color, size in zip(objects["shape"], objects["color"], objects["size"], strict=True):
            assert f"{size} {color} {shape}" in row["captions"][1]
        areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in objects["bbox"]]
        assert all(areas[main] > area for i, area in enumerate(areas) if i != main)
        assert 1 <= len(objects["shape"]) <= 4


def test_boxes_lie_inside_the_image(rows):
    for row in rows:
        width, height = row["image"].size
        for x0, y0, x1, y1 in row["objects"]["bbox"]:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def colour_mask(row: dict, color: str) -> np.ndarray:
    return (np.asarray(row["image"]) == np.asarray(COLOR_RGB[color], dtype=np.uint8)).all(axis=-1)


def test_single_object_boxes_are_tight_around_the_coloured_pixels(tmp_path):
    data = load_shapes(num_train=30, num_validation=1, num_test=1, max_objects=1, image_size=48, cache_dir=tmp_path)
    for row in data["train"]:
        (color,), (bbox,) = row["objects"]["color"], row["objects"]["bbox"]
        ys, xs = np.nonzero(colour_mask(row, color))
        assert len(xs) > 20
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [int(v) for v in bbox]
        others = [c for c in COLORS if c != color]
        assert not any(colour_mask(row, c).any() for c in others)


def test_coloured_pixels_fall_in_their_boxes_in_busy_scenes(tmp_path):
    data = load_shapes(num_train=30, num_validation=1, num_test=1, min_objects=3, cache_dir=tmp_path)
    checked = 0
    for row in data["train"]:
        objects = row["objects"]
        for color in set(objects["color"]):
            boxes = [b for b, c in zip(objects["bbox"], objects["color"], strict=True) if c == color]
            ys, xs = np.nonzero(colour_mask(row, color))
            inside = np.zeros(len(xs), dtype=bool)
            for x0, y0, x1, y1 in boxes:
                inside |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
            assert inside.all(), f"{row['scene_id']}: {color} pixels outside the {color} boxes"
            checked += 1
        for color, (x0, y0, x1, y1) in zip(objects["color"], objects["bbox"], strict=True):
            assert colour_mask(row, color)[int(y0) : int(y1), int(x0) : int(x1)].any()
    assert checked >= 60


def test_referring_expressions_are_unique_and_resolve(tmp_path):
    data = load_shapes(
        num_train=60, num_validation=1, num_test=1, min_objects=4, max_objects=8, seed=5, cache_dir=tmp_path
    )
    qualified = 0
    for row in data["train"]:
        expressions = row["objects"]["expression"]
        assert len(set(expressions)) == len(expressions)
        for index, expression in enumerate(expressions):
            assert resolve(expression, row["objects"]) == [index], (row["scene_id"], expression)
        qualified += sum(" small " in e or " from the left" in e for e in expressions)
    assert qualified > 0, "no scene needed a size or a position to tell objects apart"


def test_answers_are_true(rows):
    types_seen = set()
    for row in rows:
        objects, qa = row["objects"], row["questions"]
        n = len(objects["shape"])
        assert row["answers"] == [[answer] for answer in qa["answer"]]
        for question, answer, kind in zip(qa["question"], qa["answer"], qa["type"], strict=True):
            types_seen.add(kind)
            assert answer == answer.lower() and answer
            if kind == "count":
                word = re.match(r"How many (\w+)", question)[1]
                if word in ("objects", "shapes"):
                    expected = n
                elif word in COLORS:
                    expected = objects["color"].count(word)
                else:
                    expected = sum(f"{shape}s" == word or f"{shape}es" == word for shape in objects["shape"])
                assert answer == str(expected), question
            elif kind == "color":
                m = re.match(r"What color is the (large )?(\w+)\?$", question)
                found = [
                    i for i in range(n) if objects["shape"][i] == m[2] and (not m[1] or objects["size"][i] == "large")
                ]
                assert len(found) == 1 and objects["color"][found[0]] == answer, question
            elif kind == "shape":
                m = re.match(r"What shape is the (large )?(?:(\w+) )?object\?$", question)
                found = [
                    i
                    for i in range(n)
                    if (not m[2] or objects["color"][i] == m[2]) and (not m[1] or objects["size"][i] == "large")
                ]
                assert len(found) == 1 and objects["shape"][found[0]] == answer, question
            else:
                assert kind == "position"
                check_position(question, answer, objects, row["image"].size[0])
    assert types_seen == {"color", "shape", "count", "position"}


def check_position(question: str, answer: str, objects: dict, size: int) -> None:
    xy = centers(objects)
    for i, a in enumerate(objects["expression"]):
        for j, b in enumerate(objects["expression"]):
            for relation, axis, sign in (("left of", 0, -1), ("right of", 0, 1), ("above", 1, -1), ("below", 1, 1)):
                if question == f"Is {a} {relation} {b}?":
                    delta = xy[i][axis] - xy[j][axis]
                    assert abs(delta) >= 0.1 * size, f"{question}: the two objects are too close to tell"
                    assert answer == ("yes" if sign * delta > 0 else "no"), question
                    return
    for i, a in enumerate(objects["expression"]):
        if question == f"Is {a} on the left or the right of the image?":
            assert answer == ("left" if xy[i][0] < size / 2 else "right")
            return
        if question == f"Is {a} at the top or the bottom of the image?":
            assert answer == ("top" if xy[i][1] < size / 2 else "bottom")
            return
    raise AssertionError(f"position question {question!r} names no object of the scene")


def test_larger_images_and_crowded_scenes():
    for index in range(12):
        example = shapes_module.make_example("test", 0, index, 32, 8, 8)
        assert len(example["objects"]["shape"]) == 8
        example = shapes_module.make_example("test", 0, index, 160, 1, 2)
        assert example["image"].size == (160, 160)


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"num_train": 0}, ValueError, "num_train"),
        ({"num_validation": -1}, ValueError, "num_validation"),
        ({"num_test": 2.5}, TypeError, "num_test"),
        ({"image_size": 16}, ValueError, "image_size"),
        ({"min_objects": 0}, ValueError, "min_objects"),
        ({"max_objects": 9}, ValueError, "max_objects"),
        ({"min_objects": 3, "max_objects": 2}, ValueError, "min_objects"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": True}, TypeError, "seed"),
        ({"cache_dir": 3}, TypeError, "cache_dir"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, argument, tmp_path):
    kwargs.setdefault("cache_dir", tmp_path)
    with pytest.raises(error, match=argument):
        load_shapes(**kwargs)
    assert not any(tmp_path.iterdir())


def test_default_cache_dir_follows_vlzoo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path))
    data = load_shapes(num_train=2, num_validation=1, num_test=1)
    assert data["train"].cache_files[0]["filename"].startswith(str(tmp_path / "shapes"))


@pytest.mark.slow
def test_generation_speed(tmp_path):
    start = time.perf_counter()
    load_shapes(num_train=2400, num_validation=200, num_test=400, cache_dir=tmp_path)
    assert time.perf_counter() - start < 15
